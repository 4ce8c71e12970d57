package stack

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"

	"github.com/svidbroker/svidbroker/broker/audit"
)

// BrokerOptions configure a broker run against the stack.
type BrokerOptions struct {
	// Name tells brokers on one stack apart: it names the log file (LogDir/Name.log) and the default
	// configuration file (Dir/Name.hcl). Default "svidbroker".
	Name string
	// Binary is the svidbroker executable. Required.
	Binary string
	// ConfigPath is where the generated configuration is written. Default Dir/Name.hcl.
	ConfigPath string
	// Allow, if set, lists the personas that may connect to target "shop" (allow_spiffe_ids) instead of
	// Cedar policies.
	Allow []string
	// PolicyDir is the policy directory, copied into the stack. Default: the repository's
	// policies/packs (baseline, analyst, support, migrator).
	PolicyDir string
	// Extra is appended to the generated configuration, for tests of other settings.
	Extra string
	// Approver is policy.approver. Default "admin-api" (the development approver); "oidc" needs an
	// approvers block in Extra.
	Approver string
	// ApprovalTimeout is policy.approval_timeout: how long a held operation waits. Default "30s".
	ApprovalTimeout string
	// TargetExtra is added to each target block (a timeouts block, for example).
	TargetExtra string
	// NoAudit leaves the audit block out (sessions unrecorded).
	NoAudit bool
	// AuditDir, if set, is where the audit log goes (for example a small filesystem a test fills).
	AuditDir string
	// AuditKeys, if set, is the directory of the audit keys, generated there unless it holds them
	// already (a chain kept from an earlier run continues with its keys). Default Dir/Name-audit-keys.
	AuditKeys string
	// AuditOnFailure sets audit.on_failure ("refuse", the default, or "continue").
	AuditOnFailure string
	// AuditDurability sets audit.durability ("commit", the default, or "statement").
	AuditDurability string
	// AuditWitnessDir, if set, is a directory the audit block's witness keeps checkpoints in.
	AuditWitnessDir string
	// AuditWitness, if set, is the body of the audit block's witness block (instead of AuditWitnessDir).
	AuditWitness string
	// AuditData sets audit.data ("full" records the masked data of decisions with @record("full")).
	AuditData string
	// SecondTarget, if set, adds a target of that name on the same listener, with the same backend:
	// the client's database then names the target.
	SecondTarget string
	// VaultRoles makes the backend use auth = "vault" with no fixed role: Cedar picks each session's
	// credential role among the catalog's (shop-read, shop-write, shop-admin, which ConfigureVault
	// sets up). Extra must then hold the vault block.
	VaultRoles bool
	// VaultRole, if set, makes the backend use auth = "vault" with this one role for every session,
	// for a broker without Cedar (with Allow): a catalog's credential roles and a fixed role exclude
	// each other. Extra must then hold the vault block.
	VaultRole string
	// BackendCredential, if set, replaces the backend's credential lines (auth and what it needs),
	// such as auth = "vault" with vault_path; Extra must then hold the vault block.
	BackendCredential string
	// BackendAddress, if set, is the host:port the broker reaches PostgreSQL at (a proxy in front of
	// it, for tests of a failing network). Default the stack's PostgreSQL.
	BackendAddress string
}

// Broker is a running svidbroker process.
type Broker struct {
	// ConfigPath is the configuration it runs with.
	ConfigPath string
	// PolicyDir is the policy directory it runs with, when it uses Cedar.
	PolicyDir string
	// AuditDir, AuditKeys and Chain locate its audit log (keys as `svidbroker audit keygen` writes
	// them), unless NoAudit.
	AuditDir, AuditKeys, Chain string
	// Addr is target "shop"'s PostgreSQL listener; AdminAddr serves /healthz and /readyz.
	Addr, AdminAddr string
	// PinsDir holds the copies of the catalog's pin files the configuration names (see resolvePins).
	PinsDir string
	proc    *process
}

// StartBroker writes a configuration for the stack (target "shop" in front of the stack's PostgreSQL,
// with the broker's SVID as its backend credential) and runs svidbroker serve as the broker persona,
// so that SPIRE attests it like any workload. It returns once /readyz answers.
func (s *Stack) StartBroker(ctx context.Context, opts BrokerOptions) (*Broker, error) {
	if _, err := os.Stat(opts.Binary); err != nil {
		return nil, fmt.Errorf("stack: svidbroker binary: %w (run `make build`)", err)
	}
	if opts.Name == "" {
		opts.Name = "svidbroker"
	}
	if opts.ConfigPath == "" {
		opts.ConfigPath = filepath.Join(s.Dir, opts.Name+".hcl")
	}
	authorization, err := s.authorization(opts)
	if err != nil {
		return nil, err
	}
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	b := &Broker{ConfigPath: opts.ConfigPath, PolicyDir: authorization.dir,
		Addr: "127.0.0.1:" + strconv.Itoa(listen), AdminAddr: "127.0.0.1:" + strconv.Itoa(admin)}
	backendAuth := fmt.Sprintf("    # The broker's own X.509-SVID is its credential: PostgreSQL trusts SPIRE's CA for this role.\n"+
		"    user        = %q\n    auth        = \"svid\"\n", BrokerDBRole)
	switch {
	case opts.BackendCredential != "":
		backendAuth = opts.BackendCredential
	case opts.VaultRoles:
		backendAuth = "    # Each session logs in with a dynamic credential of its own, leased from Vault for the\n" +
			"    # credential role Cedar picks for the caller among the catalog's.\n" +
			"    auth        = \"vault\"\n"
	case opts.VaultRole != "":
		backendAuth = fmt.Sprintf("    # Each session logs in with a dynamic credential of its own, leased from Vault.\n"+
			"    auth        = \"vault\"\n    vault_role  = %q\n", opts.VaultRole)
	}
	auditBlock := ""
	if !opts.NoAudit {
		if auditBlock, err = s.auditSetup(b, opts); err != nil {
			return nil, err
		}
	}
	backendAddr := net.JoinHostPort(s.Postgres.Host, strconv.Itoa(s.Postgres.Port))
	if opts.BackendAddress != "" {
		backendAddr = opts.BackendAddress
	}
	target := func(name string) string {
		return fmt.Sprintf(`target %q {
  protocol = "postgres"
  listen   = %q

%s
%s
  backend {
    address     = %q
    database    = "shop"
%s    ca_file     = %q
    server_name = "localhost"
  }
}
`, name, b.Addr, authorization.target, opts.TargetExtra, backendAddr, backendAuth, s.Postgres.CAPath)
	}
	targets := target("shop")
	if opts.SecondTarget != "" {
		targets += target(opts.SecondTarget)
	}
	hcl := fmt.Sprintf(`# svidbroker configuration for the local stack, written by test/stack.
trust_domain        = %q
workload_api_socket = %q

log {
  level = "debug"
}

admin {
  listen = %q
  pprof  = true
}

# What SPIRE attested about each caller (entry selectors, node) is looked up on the server's API, with
# the broker's own SVID; the broker's entry is an admin entry.
spire_server {
  address   = %q
  cache_ttl = "2s"
}

%s
%s
%s%s`, TrustDomain.Name(), s.SPIRE.Endpoint(), b.AdminAddr, s.SPIRE.ServerAddr, authorization.global, auditBlock, targets, opts.Extra)
	if authorization.catalog != nil {
		catalogs, err := catalogsOf(authorization.catalog, hcl)
		if err != nil {
			return nil, err
		}
		if catalogs, err = s.brokerPins(b, opts, catalogs); err != nil {
			return nil, err
		}
		hcl += "\n# The catalog and groups of policies/catalog.hcl, for the targets above.\n" + string(catalogs)
	}
	if err := os.WriteFile(opts.ConfigPath, []byte(hcl), 0o644); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	cmd, err := s.Command(context.WithoutCancel(ctx), PersonaBroker, opts.Binary, "serve", "--config", opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	if b.proc, err = s.launch(opts.Name, cmd, syscall.SIGTERM); err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	if err := waitFor(ctx, b.proc, "/readyz on "+b.AdminAddr, func(ctx context.Context) error {
		resp, err := client.Get("http://" + b.AdminAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		c, err := net.DialTimeout("tcp", b.Addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}); err != nil {
		return nil, err
	}
	return b, nil
}

type authorization struct {
	global, target, dir string
	// catalog is policies/catalog.hcl, whose catalog blocks StartBroker keeps for the targets the
	// configuration has (a catalog naming no target is refused, as it should be).
	catalog []byte
}

// authorization returns the configuration text that decides connections: Cedar policies copied into
// the stack (where the broker's uid can read them) with the catalog of policies/catalog.hcl, or an
// exact allow list.
func (s *Stack) authorization(opts BrokerOptions) (authorization, error) {
	if opts.Allow != nil {
		var ids []string
		for _, name := range opts.Allow {
			p, err := s.Persona(name)
			if err != nil {
				return authorization{}, err
			}
			ids = append(ids, strconv.Quote(p.ID.String()))
		}
		return authorization{target: "  # Exactly these workloads may connect.\n  allow_spiffe_ids = [" + strings.Join(ids, ", ") + "]\n"}, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return authorization{}, err
	}
	src := opts.PolicyDir
	if src == "" {
		src = filepath.Join(root, "policies", "packs")
	}
	// The catalog and groups of the stack's "shop" database, as the packs' tests use them.
	catalog, err := os.ReadFile(filepath.Join(root, "policies", "catalog.hcl"))
	if err != nil {
		return authorization{}, fmt.Errorf("stack: the shop catalog: %w", err)
	}
	dst := filepath.Join(s.Dir, opts.Name+"-policies")
	if err := copyTree(src, dst); err != nil {
		return authorization{}, err
	}
	approver := opts.Approver
	if approver == "" {
		approver = "admin-api"
	}
	approvalTimeout := opts.ApprovalTimeout
	if approvalTimeout == "" {
		approvalTimeout = "30s"
	}
	maskKey := filepath.Join(s.Dir, opts.Name+"-mask.key")
	if err := writeRandomKey(maskKey); err != nil {
		return authorization{}, err
	}
	if broker, err := s.Persona(PersonaBroker); err != nil {
		return authorization{}, err
	} else if err := os.Chown(maskKey, int(broker.UID), int(broker.UID)); err != nil {
		return authorization{}, fmt.Errorf("stack: %w", err)
	}
	return authorization{global: fmt.Sprintf(`# Cedar decides; edit the policies and they reload within reload_interval (or on SIGHUP).
policy {
  dir             = %q
  reload_interval = "1s"
  # The key of the "hash" masking strategy: equal values give equal digests, so joins still work.
  mask_key_file   = %q
  # Held statements (@approval("required")) are approved on the admin listener: POST
  # /approvals/{id}/approve. It authenticates no one; the stack and the demo only.
  approver         = %q
  approval_timeout = %q
}
`, dst, maskKey, approver, approvalTimeout), dir: dst, catalog: catalog}, nil
}

// auditSetup makes audit keys and a log directory the broker's uid owns, and returns the config block.
func (s *Stack) auditSetup(b *Broker, opts BrokerOptions) (string, error) {
	name, dir, keys, onFailure, durability := opts.Name, opts.AuditDir, opts.AuditKeys, opts.AuditOnFailure, opts.AuditDurability
	if onFailure == "" {
		onFailure = "refuse"
	}
	if durability == "" {
		durability = "commit"
	}
	broker, err := s.Persona(PersonaBroker)
	if err != nil {
		return "", err
	}
	if dir == "" {
		dir = filepath.Join(s.Dir, name+"-audit")
	}
	if keys == "" {
		keys = filepath.Join(s.Dir, name+"-audit-keys")
	}
	b.AuditDir, b.AuditKeys, b.Chain = dir, keys, name
	// A broker started again under the same name continues its chain, with its keys.
	if _, err := os.Stat(filepath.Join(b.AuditKeys, audit.MACKeyFile)); errors.Is(err, fs.ErrNotExist) {
		if err := audit.GenerateKeys(b.AuditKeys, name); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(b.AuditDir, 0o700); err != nil {
		return "", fmt.Errorf("stack: %w", err)
	}
	witness := ""
	if w := opts.AuditWitnessDir; w != "" {
		if err := os.MkdirAll(w, 0o700); err != nil {
			return "", fmt.Errorf("stack: %w", err)
		}
		if err := ChownTree(w, int(broker.UID), int(broker.UID)); err != nil {
			return "", err
		}
		witness = fmt.Sprintf("  witness {\n    dir = %q\n  }\n", w)
	}
	if opts.AuditWitness != "" {
		witness = "  witness {\n" + opts.AuditWitness + "\n  }\n"
	}
	if opts.AuditData != "" {
		witness = fmt.Sprintf("  data                = %q\n", opts.AuditData) + witness
	}
	for _, d := range []string{b.AuditDir, b.AuditKeys} {
		if err := ChownTree(d, int(broker.UID), int(broker.UID)); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf(`# Every session and statement is recorded before it reaches the database, and nothing commits
# before its records are on stable storage.
audit {
  dir                 = %q
  chain               = %q
  mac_key_file        = %q
  signing_key_file    = %q
  checkpoint_interval = "1s"
  on_failure          = %q
  durability          = %q
%s}
`, b.AuditDir, b.Chain, filepath.Join(b.AuditKeys, audit.MACKeyFile), filepath.Join(b.AuditKeys, audit.SigningKeyFile), onFailure, durability, witness), nil
}

// copyTree copies a directory of regular files, readable by every uid.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// Stop ends the broker with SIGTERM (drain, then exit) and waits for it.
func (b *Broker) Stop() error { return b.proc.stop() }

// Signal sends sig to the broker process and, for SIGKILL, waits for it to die.
func (b *Broker) Signal(sig syscall.Signal) error {
	if err := b.proc.cmd.Process.Signal(sig); err != nil {
		return err
	}
	if sig == syscall.SIGKILL {
		<-b.proc.done
	}
	return nil
}

// Exited reports whether the broker process has exited, and with what error.
func (b *Broker) Exited() (bool, error) { return b.proc.exited() }

// ClientFiles are a persona's SVID files as libpq reads them.
type ClientFiles struct {
	Cert, Key, RootCert string
}

// WriteClientFiles fetches the persona's current X.509-SVID through a real workload process and writes
// it for libpq: the SVID chain (sslcert), its key (sslkey, 0600) and the trust bundle (sslrootcert),
// which verifies the broker's SVID.
func (s *Stack) WriteClientFiles(ctx context.Context, persona, dir string) (*ClientFiles, error) {
	got, err := s.FetchSVIDs(ctx, persona, "")
	if err != nil {
		return nil, err
	}
	f := &ClientFiles{
		Cert:     filepath.Join(dir, persona+".crt"),
		Key:      filepath.Join(dir, persona+".key"),
		RootCert: filepath.Join(dir, persona+"-bundle.crt"),
	}
	for path, b := range map[string][]byte{f.Cert: got.CertPEM, f.Key: got.KeyPEM, f.RootCert: got.BundlePEM} {
		// Write and rename, so that a client never reads a half-written key during rotation.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			return nil, fmt.Errorf("stack: %w", err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return nil, fmt.Errorf("stack: %w", err)
		}
	}
	return f, nil
}

// writeRandomKey writes 32 random bytes to path, readable only by its owner.
func writeRandomKey(path string) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	if err := os.WriteFile(path, key, 0o600); err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	return nil
}

// PID is the broker process's ID.
func (b *Broker) PID() int { return b.proc.cmd.Process.Pid }

// LogPath is the file the broker's output goes to.
func (b *Broker) LogPath() string { return b.proc.logPath }

// catalogsOf returns catalog, policies/catalog.hcl, without the catalog blocks of targets that the
// configuration cfg does not have.
func catalogsOf(catalog []byte, cfg string) ([]byte, error) {
	parsed, diags := hclsyntax.ParseConfig([]byte(cfg), "svidbroker.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		return nil, fmt.Errorf("stack: the generated configuration: %s", diags.Error())
	}
	targets := map[string]bool{}
	for _, b := range parsed.Body.(*hclsyntax.Body).Blocks {
		if b.Type == "target" && len(b.Labels) == 1 {
			targets[b.Labels[0]] = true
		}
	}
	f, diags := hclwrite.ParseConfig(catalog, "catalog.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		return nil, fmt.Errorf("stack: policies/catalog.hcl: %s", diags.Error())
	}
	for _, b := range f.Body().Blocks() {
		if b.Type() == "catalog" && len(b.Labels()) == 1 && !targets[b.Labels()[0]] {
			f.Body().RemoveBlock(b)
		}
	}
	return f.Bytes(), nil
}
