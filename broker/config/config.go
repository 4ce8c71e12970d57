package config

import (
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Config is a whole configuration file. Fields tagged hcl are what users write; the rest are derived by
// Validate.
type Config struct {
	// TrustDomain is the broker's own SPIFFE trust domain. Only SVIDs of this trust domain are accepted.
	TrustDomain string `hcl:"trust_domain"`
	// FederatedTrustDomains are other trust domains whose SVIDs are accepted. Their bundles come from
	// the Workload API, so the broker's registration entry must federate with them.
	FederatedTrustDomains []string `hcl:"federated_trust_domains,optional"`
	// WorkloadAPISocket is the SPIRE agent's Workload API address, such as
	// "unix:///run/spire/agent.sock". Default: the SPIFFE_ENDPOINT_SOCKET environment variable.
	WorkloadAPISocket string `hcl:"workload_api_socket,optional"`

	SPIREServer *SPIREServer `hcl:"spire_server,block"`
	JWT         *JWT         `hcl:"jwt,block"`
	Session     *Session     `hcl:"session,block"`
	Policy      *Policy      `hcl:"policy,block"`
	// Approvers configures OIDC-authenticated approvers (policy.approver = "oidc").
	Approvers *Approvers `hcl:"approvers,block"`
	Audit     *Audit     `hcl:"audit,block"`
	Vault     *Vault     `hcl:"vault,block"`
	// Catalogs describe targets' tables, tagged columns and credential roles, for policies.
	Catalogs []CatalogBlock `hcl:"catalog,block"`
	// Groups put workloads into Cedar groups by SPIFFE ID pattern or by selectors.
	Groups  []GroupBlock `hcl:"group,block"`
	Log     *Log         `hcl:"log,block"`
	Admin   *Admin       `hcl:"admin,block"`
	Console *Console     `hcl:"console,block"`
	Metrics *Metrics     `hcl:"metrics,block"`
	Tracing *Tracing     `hcl:"tracing,block"`
	Notify  *Notify      `hcl:"notify,block"`
	Limits  *Limits      `hcl:"limits,block"`
	Targets []Target     `hcl:"target,block"`

	// Path is the file the configuration was loaded from.
	Path string
	// TD is TrustDomain, parsed.
	TD spiffeid.TrustDomain
	// Trusted is TD followed by the federated trust domains, parsed.
	Trusted []spiffeid.TrustDomain

	file *hcl.File // the parsed source, to name file:line in validation errors
}

// SPIREServer configures lookups of what SPIRE attested about callers (their registration entry's
// selectors and their node). When set, every new session needs a successful lookup: if SPIRE cannot be
// reached once a cached answer is older than cache_ttl, or no entry issues the caller's ID any more, the
// session is refused.
type SPIREServer struct {
	// Address is "unix:///path/api.sock" (the local admin socket) or "host:port" (the server's TCP
	// endpoint; the broker authenticates with its SVID, so its registration entry must be an admin entry).
	Address string `hcl:"address"`
	// ServerID is the server's SPIFFE ID, verified on TCP. Default spiffe://<trust_domain>/spire/server.
	ServerID string `hcl:"server_id,optional"`
	// CacheTTL is how long an answer is reused. Default "30s".
	CacheTTL string `hcl:"cache_ttl,optional"`

	ServerIDParsed spiffeid.ID
	CacheTTLD      time.Duration
}

// Policy configures Cedar authorization. When set, Cedar decides every connection (action "connect" on
// Target::"<name>"), and targets may not also list allow_spiffe_ids.
type Policy struct {
	// Dir holds the policies (*.cedar, *.cedar.json), read recursively.
	Dir string `hcl:"dir"`
	// ReloadInterval is how often the directory is checked for changes. Default "2s". SIGHUP reloads
	// at once.
	ReloadInterval string `hcl:"reload_interval,optional"`
	// MaskKeyFile holds the key (at least 32 random bytes; `svidbroker audit keygen` makes one) of the
	// "hash" masking strategy. Without it, columns a policy masks with "hash" come back NULL.
	MaskKeyFile string `hcl:"mask_key_file,optional"`
	// DefaultMask is the strategy for a column whose read-unmasked is denied by a policy that names
	// none: "partial", "hash", "redact" or "null". Default "redact".
	DefaultMask string `hcl:"default_mask,optional"`
	// Approver is how held statements get approved: "" (none: statements that need approval are
	// refused), "oidc" (people who log in at the approvers block's provider decide, as Cedar's approve
	// action permits; see Approvers) or "dev" (POST /approvals/{id}/approve on the admin listener; it
	// authenticates no one, so it is for development and demos, and needs a loopback admin listener;
	// "admin-api" is its former name).
	Approver string `hcl:"approver,optional"`
	// ApprovalTimeout bounds how long a statement waits for a person's approval. Default "5m".
	ApprovalTimeout string `hcl:"approval_timeout,optional"`

	ReloadIntervalD  time.Duration
	ApprovalTimeoutD time.Duration
}

// Audit configures the tamper-evident session log. Without it, sessions are not recorded and the
// broker says so at every start.
type Audit struct {
	// Dir holds the chain and its checkpoints, in files. Set Dir or a postgres block, not both.
	Dir string `hcl:"dir,optional"`
	// Postgres keeps the chain in a PostgreSQL database that a fleet of brokers shares (one chain
	// each). The broker logs in with its own SVID, as with `auth = "svid"` backends.
	Postgres *AuditPostgres `hcl:"postgres,block"`
	// Chain names this broker's chain; each broker needs its own. Default: the host name.
	Chain string `hcl:"chain,optional"`
	// MACKeyFile and SigningKeyFile are written by `svidbroker audit keygen`.
	MACKeyFile     string `hcl:"mac_key_file"`
	SigningKeyFile string `hcl:"signing_key_file"`
	// Data is how much of the results is recorded: "summary" (the default: command tag, rows, bytes),
	// "full" (also the rows, as the client saw them: masked, up to a cap per statement) or "none". A
	// policy's @record("full") records the rows of the statements it decides even under "summary".
	Data string `hcl:"data,optional"`
	// OnFailure is what happens to statements when the audit store fails: "refuse" (the default: no
	// unrecorded statement runs, and new connections are refused) or "continue" (statements run
	// unrecorded, and every session says so in the broker's log). "continue" is an explicit choice
	// of availability over evidence.
	OnFailure string `hcl:"on_failure,optional"`
	// CheckpointInterval is how often the chain's head is signed. Default "10s"; a tail truncated after
	// the last checkpoint of an unclean stop cannot be detected, so keep it short.
	CheckpointInterval string `hcl:"checkpoint_interval,optional"`
	// Durability is when a statement may go on relative to its record. "commit" (the default): a
	// statement reaches the backend once its record is written to the store (the broker dying loses
	// no record of anything that ran), and nothing commits until every record up to it is on stable
	// storage; records of reads are flushed within FlushInterval. "statement": every statement waits
	// until its record is on stable storage.
	Durability string `hcl:"durability,optional"`
	// FlushInterval bounds how long a written record waits for a flush when no commit asks for one
	// sooner: a kernel crash or power loss can lose at most this much of the records of reads.
	// Default "10ms".
	FlushInterval string `hcl:"flush_interval,optional"`
	// Witness is where every signed checkpoint is also sent, so that a cut of the log together with
	// its checkpoints shows. Without it, that cut back to an earlier checkpoint cannot be detected.
	Witness *AuditWitness `hcl:"witness,block"`

	CheckpointIntervalD, FlushIntervalD time.Duration
}

// Vault configures the credentials that backends with auth = "vault" (or "vault-kv") use. The broker
// logs in with its own SPIFFE identity, by exactly one of: cert_role (the cert auth method with its
// X.509-SVID), a jwt block (the jwt auth method with a JWT-SVID), or, for development only,
// dev_token_file (a static token; the broker warns at every start).
type Vault struct {
	// Address is Vault's URL.
	Address string `hcl:"address"`
	// CAFile verifies Vault's certificate.
	CAFile string `hcl:"ca_file"`
	// CertRole is the auth/cert role the broker logs in with, using its X.509-SVID.
	CertRole string `hcl:"cert_role,optional"`
	// JWT logs in with a JWT-SVID through the jwt auth method.
	JWT *VaultJWT `hcl:"jwt,block"`
	// DevTokenFile holds a static Vault token. Development only: a static secret is what svidbroker
	// exists to remove.
	DevTokenFile string `hcl:"dev_token_file,optional"`
	// AuthMount is the auth method's path. Default: "cert" or "jwt".
	AuthMount string `hcl:"auth_mount,optional"`
	// Mount is the database secrets engine's path, for backends' vault_role. Default "database".
	Mount string `hcl:"mount,optional"`
	// JournalDir records the leases in use, so that a restart revokes those a crash left behind.
	JournalDir string `hcl:"journal_dir"`
	// Timeout bounds each call to Vault, retries included; a session whose credential does not come
	// within it is refused. Default "10s".
	Timeout string `hcl:"timeout,optional"`
	// Reuse lets sessions of the same caller and target share a lease, which then outlives the last
	// of them by this long. Default "0s": every session has a lease of its own.
	Reuse string `hcl:"reuse,optional"`

	TimeoutD, ReuseD time.Duration
	// Method is the login method the validation chose: "cert", "jwt" or "token".
	Method string
}

// VaultJWT is a JWT-SVID login.
type VaultJWT struct {
	// Role is the jwt auth role.
	Role string `hcl:"role"`
	// Audience is the JWT-SVID's audience; the role's bound_audiences must name it.
	Audience string `hcl:"audience"`
}

// AuditPostgres is the audit database.
type AuditPostgres struct {
	Address    string `hcl:"address"`
	Database   string `hcl:"database"`
	User       string `hcl:"user"`
	CAFile     string `hcl:"ca_file"`
	ServerName string `hcl:"server_name,optional"`
}

// JWT configures the verification of JWT-SVIDs presented as bearer tokens (HTTP targets).
type JWT struct {
	// Audience is the broker's audience: a token must carry exactly this one. Required.
	Audience string `hcl:"audience"`
	// Issuer, if set, must equal a token's iss claim.
	Issuer string `hcl:"issuer,optional"`
	// OIDC lists trust domains whose keys are published only through OIDC discovery.
	OIDC []OIDCTrustDomain `hcl:"oidc,block"`
}

// OIDCTrustDomain is a trust domain verified through its OIDC discovery endpoint (for example SPIRE's
// oidc-discovery-provider).
type OIDCTrustDomain struct {
	// TrustDomain is the block's label.
	TrustDomain string `hcl:"trust_domain,label"`
	// IssuerURL is the issuer; discovery reads IssuerURL/.well-known/openid-configuration.
	IssuerURL string `hcl:"issuer_url"`
}

// Session configures the life of authenticated sessions.
type Session struct {
	// SVIDExpiryGrace is how long a session may outlive its client's SVID. The client then reconnects
	// with its rotated SVID. Default "30s".
	SVIDExpiryGrace string `hcl:"svid_expiry_grace,optional"`

	SVIDExpiryGraceD time.Duration
}

// Log configures the operational log (not the audit log).
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `hcl:"level,optional"`
	// Format is text or json. Default text.
	Format string `hcl:"format,optional"`
}

// Admin configures the admin listener, which serves /healthz and /readyz.
type Admin struct {
	// Listen is a loopback host:port. Default 127.0.0.1:8210. Set "" to disable.
	Listen *string `hcl:"listen,optional"`
	// Pprof serves Go's runtime profiles under /debug/pprof/ on the admin listener. Default false.
	Pprof bool `hcl:"pprof,optional"`
}

// Limits bound the resources a client can hold before and after it authenticates.
type Limits struct {
	// HandshakeTimeout bounds a client's whole pre-authentication phase (protocol preamble and TLS
	// handshake). Default "10s".
	HandshakeTimeout string `hcl:"handshake_timeout,optional"`
	// MaxConcurrentHandshakes caps clients that have connected but not yet authenticated, per listener.
	// Further clients wait for a slot until their handshake deadline. Default 64.
	MaxConcurrentHandshakes int `hcl:"max_concurrent_handshakes,optional"`
	// MaxConnections caps authenticated sessions per listener. Default 1024.
	MaxConnections int `hcl:"max_connections,optional"`
	// MaxMessageBytes caps the size of one protocol message, in either direction. Default 1 MiB.
	MaxMessageBytes int `hcl:"max_message_bytes,optional"`
	// ShutdownGrace is how long `serve` waits for sessions to finish after SIGTERM before it closes
	// them. Default "30s".
	ShutdownGrace string `hcl:"shutdown_grace,optional"`

	HandshakeTimeoutD time.Duration
	ShutdownGraceD    time.Duration
}

// Target is one backend that agents reach through the broker, on its own listener.
type Target struct {
	// Name identifies the target in logs and, later, in policy (Target::"name").
	Name string `hcl:"name,label"`
	// Protocol is the wire protocol the listener speaks. Supported: "postgres", "http".
	Protocol string `hcl:"protocol"`
	// Listen is the host:port agents connect to.
	Listen string `hcl:"listen"`
	// AllowSPIFFEIDs lists, exactly, the workloads that may connect, for deployments without a policy
	// block. IDs are compared as parsed SPIFFE IDs, never by prefix. With neither, nobody may connect.
	AllowSPIFFEIDs []string `hcl:"allow_spiffe_ids,optional"`

	Backend Backend `hcl:"backend,block"`

	// Timeouts limit how long the target's sessions may hold the backend. Defaults apply without it.
	Timeouts *Timeouts `hcl:"timeouts,block"`

	// MCP configures an mcp target's engine (mcp_target.go); validated by the mcp plugin.
	MCP *MCPTarget `hcl:"mcp,block"`

	// Allowed is AllowSPIFFEIDs, parsed.
	Allowed []spiffeid.ID
	// VaultRoles maps each credential_role of the target's catalog to the Vault database engine role
	// its sessions lease from, when Cedar picks each session's role (auth = "vault" without
	// vault_role or vault_path). Nil when the target's credential is fixed in its backend block.
	VaultRoles map[string]string
}

// Timeouts are a target's session time limits.
type Timeouts struct {
	// MaxStatementTimeout is the highest statement_timeout an agent may set, and the value its
	// sessions start with. Default "5m".
	MaxStatementTimeout string `hcl:"max_statement_timeout,optional"`
	// MaxLockTimeout is the highest lock_timeout an agent may set, and the value its sessions start
	// with. Default "1m".
	MaxLockTimeout string `hcl:"max_lock_timeout,optional"`
	// IdleInTransaction is how long a session may sit idle in a transaction before the broker ends
	// it, and the highest idle_in_transaction_session_timeout an agent may set. Default "3m".
	IdleInTransaction string `hcl:"idle_in_transaction,optional"`

	// Upstream bounds the wait for an http target's upstream response headers, and each read of its
	// response body. Default "30s".
	Upstream string `hcl:"upstream,optional"`
	// Idle is how long an http target's client connection may wait between requests. Default "90s".
	Idle string `hcl:"idle,optional"`
	// ReadHeader bounds the reading of one http request's headers. Default "10s".
	ReadHeader string `hcl:"read_header,optional"`

	// The same, parsed; filled in by validation (defaults included).
	MaxStatementTimeoutD, MaxLockTimeoutD, IdleInTransactionD time.Duration
	UpstreamD, IdleD, ReadHeaderD                             time.Duration
}

// Backend is where a target's sessions go, and how the broker authenticates there.
type Backend struct {
	// Address is the backend's host:port.
	Address string `hcl:"address"`
	// Database is the database every session of this target uses, whatever the client asks for
	// (postgres targets, where it is required).
	Database string `hcl:"database,optional"`
	// User is the backend role the broker logs in as, with auth = "svid".
	User string `hcl:"user,optional"`
	// Auth is how the broker proves itself to the backend. "svid": it presents its own X.509-SVID as
	// the TLS client certificate (PostgreSQL `cert` authentication with SPIRE's bundle as ssl_ca_file, and
	// the SVID's first DNS name as the role). No secret exists anywhere. "vault": each session gets a
	// dynamic credential of its own from Vault, used with SCRAM: from the database engine role that
	// Cedar picks per session among the target's catalog credential_roles (see Target.VaultRoles),
	// or from the fixed VaultRole, or from VaultPath, any path that returns a secret with a lease.
	// "vault-kv": every session uses one static credential read from a kv-v2 secret — explicitly
	// weaker: shared by sessions, living beyond them, never revoked by the broker.
	Auth string `hcl:"auth,optional"`
	// VaultRole is the database engine role every session leases credentials from, with auth = "vault",
	// for a target whose catalog lists no credential roles.
	VaultRole string `hcl:"vault_role,optional"`
	// VaultPath is a Vault path returning a leased secret, with auth = "vault" (instead of VaultRole).
	VaultPath string `hcl:"vault_path,optional"`
	// VaultMount is the secrets engine's path that VaultRole and the catalog's credential roles lease
	// from (<mount>/creds/<role>), with auth = "vault". Default: the vault block's mount. A target
	// whose credentials come from another engine than the database one (an API-token engine for an
	// http target) names it here.
	VaultMount string `hcl:"vault_mount,optional"`
	// VaultKVMount and VaultKVPath name the kv-v2 secret of auth = "vault-kv". Mount default "secret".
	VaultKVMount string `hcl:"vault_kv_mount,optional"`
	VaultKVPath  string `hcl:"vault_kv_path,optional"`
	// VaultUsernameKey and VaultPasswordKey name the secret's fields. Default "username", "password".
	VaultUsernameKey string `hcl:"vault_username_key,optional"`
	VaultPasswordKey string `hcl:"vault_password_key,optional"`
	// CAFile is a PEM bundle that verifies the backend's server certificate. TLS to the backend is
	// always on and always verified.
	CAFile string `hcl:"ca_file"`
	// ServerName is the name checked in the backend's certificate. Default: Address's host.
	ServerName string `hcl:"server_name,optional"`
	// CredentialHeader is the request header an http target's credential is sent in (http targets).
	// Default "Authorization".
	CredentialHeader string `hcl:"credential_header,optional"`
	// CredentialPrefix is written before the credential in CredentialHeader (http targets). Default
	// "Bearer " when the header is Authorization, else none; set "" for none with Authorization.
	CredentialPrefix *string `hcl:"credential_prefix,optional"`
}
