package config

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/authz"
)

// Defaults.
const (
	DefaultAdminListen             = "127.0.0.1:8210"
	DefaultHandshakeTimeout        = 10 * time.Second
	DefaultMaxConcurrentHandshakes = 64
	DefaultMaxConnections          = 1024
	DefaultMaxMessageBytes         = 1 << 20
	DefaultShutdownGrace           = 30 * time.Second
	DefaultSVIDExpiryGrace         = 30 * time.Second
)

// Supported values, in the order users see them in errors.
var (
	protocols   = []string{"postgres"}
	authMethods = []string{"svid", "vault", "vault-kv"}
	logLevels   = []string{"debug", "info", "warn", "error"}
	logFormats  = []string{"text", "json"}
)

// validator collects every problem, so the user sees them all at once.
type validator struct {
	c     *Config
	diags hcl.Diagnostics
}

func (v *validator) fail(summary, detail string, at ...string) {
	v.diags = append(v.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: v.c.locate(at...)})
}

func (v *validator) oneOf(value string, allowed []string, at ...string) {
	if !slices.Contains(allowed, value) {
		v.fail("Unsupported value", fmt.Sprintf("%s is %q; use one of %q.", at[len(at)-1], value, allowed), at...)
	}
}

func (v *validator) duration(raw string, def time.Duration, at ...string) time.Duration {
	if raw == "" {
		return def
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d <= 0 {
		v.fail("Invalid duration", fmt.Sprintf("%s is %q; write a positive duration such as \"10s\" or \"2m\".", at[len(at)-1], raw), at...)
		return def
	}
	return d
}

func (v *validator) positive(n *int, def int, at ...string) {
	switch {
	case *n == 0:
		*n = def
	case *n < 0:
		v.fail("Invalid value", fmt.Sprintf("%s must be positive.", at[len(at)-1]), at...)
	}
}

func (v *validator) hostPort(addr string, at ...string) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		v.fail("Invalid address", fmt.Sprintf("%s is %q; write host:port, such as \"127.0.0.1:15432\".", at[len(at)-1], addr), at...)
	}
}

// Validate fills in defaults and checks every value, returning an *Error that lists each problem.
func (c *Config) Validate() error {
	v := &validator{c: c}

	td, err := spiffeid.TrustDomainFromString(c.TrustDomain)
	if err != nil {
		v.fail("Invalid trust domain", fmt.Sprintf("trust_domain %q: %v. Write a bare name such as \"example.org\".", c.TrustDomain, err), "trust_domain")
	}
	c.TD = td
	c.Trusted = []spiffeid.TrustDomain{td}
	for _, name := range c.FederatedTrustDomains {
		ftd, err := spiffeid.TrustDomainFromString(name)
		switch {
		case err != nil:
			v.fail("Invalid trust domain", fmt.Sprintf("federated_trust_domains entry %q: %v.", name, err), "federated_trust_domains")
		case slices.Contains(c.Trusted, ftd):
			v.fail("Duplicate trust domain", fmt.Sprintf("federated_trust_domains lists %q twice, or lists the broker's own.", name), "federated_trust_domains")
		default:
			c.Trusted = append(c.Trusted, ftd)
		}
	}
	if c.SPIREServer != nil {
		ss := c.SPIREServer
		if ss.Address == "" {
			v.fail("Empty address", "spire_server.address must be \"unix:///path/api.sock\" or \"host:port\".", "spire_server", "address")
		} else if !strings.HasPrefix(ss.Address, "unix://") {
			v.hostPort(ss.Address, "spire_server", "address")
		}
		if ss.ServerID != "" {
			id, err := spiffeid.FromString(ss.ServerID)
			if err != nil {
				v.fail("Invalid SPIFFE ID", fmt.Sprintf("server_id %q: %v.", ss.ServerID, err), "spire_server", "server_id")
			}
			ss.ServerIDParsed = id
		}
		ss.CacheTTLD = v.duration(ss.CacheTTL, 30*time.Second, "spire_server", "cache_ttl")
	}
	if c.JWT != nil {
		if c.JWT.Audience == "" {
			v.fail("Empty audience", "jwt.audience must name the broker's audience, such as \"svidbroker\".", "jwt", "audience")
		}
		for _, o := range c.JWT.OIDC {
			at := []string{"jwt", "oidc:" + o.TrustDomain}
			if _, err := spiffeid.TrustDomainFromString(o.TrustDomain); err != nil {
				v.fail("Invalid trust domain", fmt.Sprintf("oidc %q: %v.", o.TrustDomain, err), at...)
			}
			if u, err := url.Parse(o.IssuerURL); err != nil || u.Scheme != "https" || u.Host == "" {
				v.fail("Invalid issuer URL", fmt.Sprintf("issuer_url %q must be an https URL.", o.IssuerURL), append(at, "issuer_url")...)
			}
		}
	}
	if c.Policy != nil {
		if st, err := os.Stat(c.Policy.Dir); err != nil || !st.IsDir() {
			v.fail("Missing policy directory", fmt.Sprintf("policy.dir %q is not a directory.", c.Policy.Dir), "policy", "dir")
		}
		c.Policy.ReloadIntervalD = v.duration(c.Policy.ReloadInterval, 2*time.Second, "policy", "reload_interval")
		c.Policy.ApprovalTimeoutD = v.duration(c.Policy.ApprovalTimeout, 5*time.Minute, "policy", "approval_timeout")
		if c.Policy.Approver != "" && c.Policy.Approver != "admin-api" {
			v.fail("Unknown approver", fmt.Sprintf("policy.approver is %q; use \"admin-api\" or leave it out.", c.Policy.Approver), "policy", "approver")
		}
		switch c.Policy.DefaultMask {
		case "":
			c.Policy.DefaultMask = "redact"
		case "partial", "hash", "redact", "null":
		default:
			v.fail("Unknown masking strategy", fmt.Sprintf("policy.default_mask is %q; use partial, hash, redact or null.", c.Policy.DefaultMask), "policy", "default_mask")
		}
	}
	for _, g := range c.Groups {
		if len(g.IDs) == 0 && len(g.Selectors) == 0 {
			v.fail("Empty group", fmt.Sprintf("group %q has neither ids nor selectors, so nothing can join it.", g.Name), "group:"+g.Name)
		}
		for _, pat := range g.IDs {
			if err := authz.ValidateIDPattern(pat); err != nil {
				v.fail("Invalid group pattern", err.Error()+".", "group:"+g.Name, "ids")
			}
		}
	}
	if a := c.Audit; a != nil {
		if a.Chain == "" {
			a.Chain, _ = os.Hostname()
		}
		for _, f := range []struct{ path, attr string }{{a.MACKeyFile, "mac_key_file"}, {a.SigningKeyFile, "signing_key_file"}} {
			if _, err := os.Stat(f.path); err != nil {
				v.fail("Unreadable audit key", fmt.Sprintf("audit.%s: %v. Create keys with `svidbroker audit keygen --dir DIR`.", f.attr, err), "audit", f.attr)
			}
		}
		a.CheckpointIntervalD = v.duration(a.CheckpointInterval, 10*time.Second, "audit", "checkpoint_interval")
		if a.Data == "" {
			a.Data = "summary"
		}
		v.oneOf(a.Data, []string{"summary", "full", "none"}, "audit", "data")
		if a.OnFailure == "" {
			a.OnFailure = "refuse"
		}
		v.oneOf(a.OnFailure, []string{"refuse", "continue"}, "audit", "on_failure")
		if a.Durability == "" {
			a.Durability = "commit"
		}
		v.oneOf(a.Durability, []string{"commit", "statement"}, "audit", "durability")
		a.FlushIntervalD = v.duration(a.FlushInterval, 10*time.Millisecond, "audit", "flush_interval")
		if a.FlushIntervalD > time.Second {
			v.fail("Flush interval too long", fmt.Sprintf("audit.flush_interval %s: at most 1s; a kernel crash can lose the records of this long.", a.FlushIntervalD), "audit", "flush_interval")
		}
		if (a.Dir == "") == (a.Postgres == nil) {
			v.fail("Audit store", "audit needs exactly one store: dir (files) or a postgres block.", "audit")
		}
		v.auditWitness(a)
		if pg := a.Postgres; pg != nil {
			v.hostPort(pg.Address, "audit", "postgres", "address")
			if pg.ServerName == "" {
				pg.ServerName, _, _ = net.SplitHostPort(pg.Address)
			}
			if _, err := os.Stat(pg.CAFile); err != nil {
				v.fail("Unreadable CA file", fmt.Sprintf("audit.postgres.ca_file: %v.", err), "audit", "postgres", "ca_file")
			}
		}
	}
	if vb := c.Vault; vb != nil {
		if u, err := url.Parse(vb.Address); err != nil || u.Scheme != "https" || u.Host == "" {
			v.fail("Invalid Vault address", fmt.Sprintf("vault.address %q must be an https URL.", vb.Address), "vault", "address")
		}
		if _, err := os.Stat(vb.CAFile); err != nil {
			v.fail("Unreadable CA file", fmt.Sprintf("vault.ca_file: %v.", err), "vault", "ca_file")
		}
		if vb.Mount == "" {
			vb.Mount = "database"
		}
		v.vaultLogin(vb)
		vb.TimeoutD = v.duration(vb.Timeout, 10*time.Second, "vault", "timeout")
		if vb.Reuse != "" && vb.Reuse != "0s" && vb.Reuse != "0" {
			vb.ReuseD = v.duration(vb.Reuse, 0, "vault", "reuse")
		}
	}
	if c.Session == nil {
		c.Session = &Session{}
	}
	c.Session.SVIDExpiryGraceD = v.duration(c.Session.SVIDExpiryGrace, DefaultSVIDExpiryGrace, "session", "svid_expiry_grace")
	if c.WorkloadAPISocket == "" {
		c.WorkloadAPISocket = os.Getenv("SPIFFE_ENDPOINT_SOCKET")
	}
	if c.WorkloadAPISocket == "" {
		v.fail("Missing Workload API address", "Set workload_api_socket (for example \"unix:///run/spire/agent.sock\") or the SPIFFE_ENDPOINT_SOCKET environment variable.", "workload_api_socket")
	}

	if c.Log == nil {
		c.Log = &Log{}
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	v.oneOf(c.Log.Level, logLevels, "log", "level")
	v.oneOf(c.Log.Format, logFormats, "log", "format")

	if c.Admin == nil {
		c.Admin = &Admin{}
	}
	if c.Admin.Listen == nil {
		def := DefaultAdminListen
		c.Admin.Listen = &def
	}
	if *c.Admin.Listen != "" {
		v.hostPort(*c.Admin.Listen, "admin", "listen")
	}

	if c.Limits == nil {
		c.Limits = &Limits{}
	}
	l := c.Limits
	l.HandshakeTimeoutD = v.duration(l.HandshakeTimeout, DefaultHandshakeTimeout, "limits", "handshake_timeout")
	l.ShutdownGraceD = v.duration(l.ShutdownGrace, DefaultShutdownGrace, "limits", "shutdown_grace")
	v.positive(&l.MaxConcurrentHandshakes, DefaultMaxConcurrentHandshakes, "limits", "max_concurrent_handshakes")
	v.positive(&l.MaxConnections, DefaultMaxConnections, "limits", "max_connections")
	v.positive(&l.MaxMessageBytes, DefaultMaxMessageBytes, "limits", "max_message_bytes")

	if len(c.Targets) == 0 {
		v.fail("No targets", "Add at least one target block; without one the broker has nothing to serve.", "target")
	}
	names := map[string]bool{}
	listens := map[string]*Target{}
	for i := range c.Targets {
		t := &c.Targets[i]
		at := "target:" + t.Name
		if names[t.Name] {
			v.fail("Duplicate target", fmt.Sprintf("target %q is defined twice.", t.Name), at)
		}
		names[t.Name] = true
		v.oneOf(t.Protocol, protocols, at, "protocol")
		v.hostPort(t.Listen, at, "listen")
		// PostgreSQL targets may share a listener: the client's database names the target.
		if other, ok := listens[t.Listen]; ok && (other.Protocol != "postgres" || t.Protocol != "postgres") {
			v.fail("Duplicate listener", fmt.Sprintf("targets %q and %q both listen on %s; only postgres targets can share a listener.", other.Name, t.Name, t.Listen), at, "listen")
		}
		listens[t.Listen] = t
		t.Allowed = nil
		for _, s := range t.AllowSPIFFEIDs {
			id, err := spiffeid.FromString(s)
			if err != nil {
				v.fail("Invalid SPIFFE ID", fmt.Sprintf("allow_spiffe_ids entry %q: %v.", s, err), at, "allow_spiffe_ids")
				continue
			}
			if !slices.Contains(c.Trusted, id.TrustDomain()) {
				v.fail("Foreign SPIFFE ID", fmt.Sprintf("allow_spiffe_ids entry %q is not in trust domain %q or a federated one; add its trust domain to federated_trust_domains.", s, c.TrustDomain), at, "allow_spiffe_ids")
				continue
			}
			t.Allowed = append(t.Allowed, id)
		}
		if c.Policy != nil && len(t.AllowSPIFFEIDs) > 0 {
			v.fail("Two authorizations", "with a policy block, Cedar decides connections: move allow_spiffe_ids into a policy.", at, "allow_spiffe_ids")
		}
		v.backend(&t.Backend, at)
		v.credentialRoles(t, at)
		v.timeouts(t, at)
	}
	for _, cb := range c.Catalogs {
		if !names[cb.Target] {
			v.fail("Catalog for no target", fmt.Sprintf("catalog %q names no target block.", cb.Target), "catalog:"+cb.Target)
		}
	}
	if len(v.diags) > 0 {
		return &Error{Diags: v.diags}
	}
	return nil
}

func (v *validator) backend(b *Backend, target string) {
	at := func(attr string) []string { return []string{target, "backend", attr} }
	v.hostPort(b.Address, at("address")...)
	if b.ServerName == "" {
		b.ServerName, _, _ = net.SplitHostPort(b.Address)
	}
	if b.Database == "" {
		v.fail("Empty database", "backend.database must name a database; the backend would otherwise pick one for the user.", at("database")...)
	}
	if b.Auth == "" {
		b.Auth = "svid"
	}
	v.oneOf(b.Auth, authMethods, at("auth")...)
	switch b.Auth {
	case "svid":
		if b.User == "" {
			v.fail("Empty user", "backend.user must name the role the broker logs in as with its SVID.", at("user")...)
		}
	case "vault":
		// Where the credential comes from (vault_role, vault_path or the catalog's credential roles)
		// is checked with the catalog: credentialRoles.
		if b.VaultKVPath != "" || b.VaultKVMount != "" {
			v.fail("kv-v2 with a dynamic source", "vault_kv_mount and vault_kv_path belong to auth = \"vault-kv\".", at("vault_kv_path")...)
		}
	case "vault-kv":
		if b.VaultKVPath == "" {
			v.fail("Missing vault_kv_path", "with auth = \"vault-kv\", backend.vault_kv_path names the kv-v2 secret holding the credential.", at("vault_kv_path")...)
		}
		if b.VaultRole != "" || b.VaultPath != "" {
			v.fail("Dynamic source with kv-v2", "vault_role and vault_path belong to auth = \"vault\".", at("vault_role")...)
		}
		if b.VaultKVMount == "" {
			b.VaultKVMount = "secret"
		}
	}
	if strings.HasPrefix(b.Auth, "vault") && v.c.Vault == nil {
		v.fail("Missing vault block", fmt.Sprintf("auth = %q needs a top-level vault block (address, ca_file, a login, journal_dir).", b.Auth), at("auth")...)
	}
	pemBytes, err := os.ReadFile(b.CAFile)
	if err != nil {
		v.fail("Unreadable CA file", fmt.Sprintf("backend.ca_file: %v.", err), at("ca_file")...)
	} else if !x509.NewCertPool().AppendCertsFromPEM(pemBytes) {
		v.fail("Invalid CA file", fmt.Sprintf("backend.ca_file %s holds no PEM certificate.", b.CAFile), at("ca_file")...)
	}
}

// Default target timeouts, and the largest PostgreSQL takes (INT_MAX milliseconds).
const (
	DefaultMaxStatementTimeout = 5 * time.Minute
	DefaultMaxLockTimeout      = time.Minute
	DefaultIdleInTransaction   = 3 * time.Minute
	maxPostgresTimeout         = 2147483647 * time.Millisecond
)

// timeouts fills in a target's timeouts block, with defaults when it has none.
func (v *validator) timeouts(t *Target, target string) {
	if t.Timeouts == nil {
		t.Timeouts = &Timeouts{}
	}
	tt := t.Timeouts
	for _, f := range []struct {
		raw  string
		def  time.Duration
		d    *time.Duration
		name string
	}{
		{tt.MaxStatementTimeout, DefaultMaxStatementTimeout, &tt.MaxStatementTimeoutD, "max_statement_timeout"},
		{tt.MaxLockTimeout, DefaultMaxLockTimeout, &tt.MaxLockTimeoutD, "max_lock_timeout"},
		{tt.IdleInTransaction, DefaultIdleInTransaction, &tt.IdleInTransactionD, "idle_in_transaction"},
	} {
		*f.d = v.duration(f.raw, f.def, target, "timeouts", f.name)
		if *f.d < time.Millisecond || *f.d > maxPostgresTimeout {
			v.fail("Timeout out of range", fmt.Sprintf("timeouts.%s is %q; PostgreSQL takes timeouts from 1ms to %s (about 24 days).", f.name, f.raw, maxPostgresTimeout), target, "timeouts", f.name)
		}
	}
}

// vaultLogin checks that exactly one login method is configured, and names it.
func (v *validator) vaultLogin(vb *Vault) {
	var methods []string
	if vb.CertRole != "" {
		methods, vb.Method = append(methods, "cert_role"), "cert"
	}
	if vb.JWT != nil {
		methods, vb.Method = append(methods, "jwt"), "jwt"
		if vb.JWT.Role == "" || vb.JWT.Audience == "" {
			v.fail("Incomplete jwt login", "vault.jwt needs role and audience (the JWT-SVID's audience, named by the role's bound_audiences).", "vault", "jwt")
		}
	}
	if vb.DevTokenFile != "" {
		methods, vb.Method = append(methods, "dev_token_file"), "token"
		if _, err := os.Stat(vb.DevTokenFile); err != nil {
			v.fail("Unreadable token file", fmt.Sprintf("vault.dev_token_file: %v.", err), "vault", "dev_token_file")
		}
	}
	if len(methods) != 1 {
		v.fail("Vault login", fmt.Sprintf("the vault block needs exactly one login: cert_role, a jwt block, or (development only) dev_token_file; it has %d (%s).",
			len(methods), strings.Join(methods, ", ")), "vault")
	}
}
