package config

import (
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
	// The defaults of a target's timeouts block.
	DefaultMaxStatementTimeout = 5 * time.Minute
	DefaultMaxLockTimeout      = time.Minute
	DefaultIdleInTransaction   = 3 * time.Minute
)

// Supported values, in the order users see them in errors.
var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"text", "json"}
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
// plugins validate the blocks that belong to them: each target's protocol must be one of
// plugins.Protocols, whose validator checks the target's backend and timeouts blocks, and
// plugins.Vault checks the vault block.
func (c *Config) Validate(plugins Plugins) error {
	v := &validator{c: c}
	v.trustDomains()
	v.spireServer()
	v.jwt()
	v.policy()
	v.groups()
	v.audit()
	v.vault(plugins.Vault)
	v.session()
	v.workloadAPI()
	v.log()
	v.admin()
	v.approvers()
	v.console()
	v.metrics()
	v.tracing()
	v.notify()
	v.limits()
	v.targets(plugins.Protocols)
	if len(v.diags) > 0 {
		return &Error{Diags: v.diags}
	}
	return nil
}

func (v *validator) trustDomains() {
	c := v.c
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
}

func (v *validator) spireServer() {
	ss := v.c.SPIREServer
	if ss == nil {
		return
	}
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

func (v *validator) jwt() {
	j := v.c.JWT
	if j == nil {
		return
	}
	if j.Audience == "" {
		v.fail("Empty audience", "jwt.audience must name the broker's audience, such as \"svidbroker\".", "jwt", "audience")
	}
	for _, o := range j.OIDC {
		at := []string{"jwt", "oidc:" + o.TrustDomain}
		if _, err := spiffeid.TrustDomainFromString(o.TrustDomain); err != nil {
			v.fail("Invalid trust domain", fmt.Sprintf("oidc %q: %v.", o.TrustDomain, err), at...)
		}
		if u, err := url.Parse(o.IssuerURL); err != nil || u.Scheme != "https" || u.Host == "" {
			v.fail("Invalid issuer URL", fmt.Sprintf("issuer_url %q must be an https URL.", o.IssuerURL), append(at, "issuer_url")...)
		}
	}
}

func (v *validator) policy() {
	p := v.c.Policy
	if p == nil {
		return
	}
	if st, err := os.Stat(p.Dir); err != nil || !st.IsDir() {
		v.fail("Missing policy directory", fmt.Sprintf("policy.dir %q is not a directory.", p.Dir), "policy", "dir")
	}
	p.ReloadIntervalD = v.duration(p.ReloadInterval, 2*time.Second, "policy", "reload_interval")
	p.ApprovalTimeoutD = v.duration(p.ApprovalTimeout, 5*time.Minute, "policy", "approval_timeout")
	switch p.DefaultMask {
	case "":
		p.DefaultMask = "redact"
	case "partial", "hash", "redact", "null":
	default:
		v.fail("Unknown masking strategy", fmt.Sprintf("policy.default_mask is %q; use partial, hash, redact or null.", p.DefaultMask), "policy", "default_mask")
	}
}

func (v *validator) groups() {
	for _, g := range v.c.Groups {
		if len(g.IDs) == 0 && len(g.Selectors) == 0 {
			v.fail("Empty group", fmt.Sprintf("group %q has neither ids nor selectors, so nothing can join it.", g.Name), "group:"+g.Name)
		}
		for _, pat := range g.IDs {
			if err := authz.ValidateIDPattern(pat); err != nil {
				v.fail("Invalid group pattern", err.Error()+".", "group:"+g.Name, "ids")
			}
		}
	}
}

func (v *validator) audit() {
	a := v.c.Audit
	if a == nil {
		return
	}
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

func (v *validator) vault(plugin VaultValidator) {
	vb := v.c.Vault
	switch {
	case vb == nil:
	case plugin == nil:
		v.fail("Unsupported block", "this broker has no Vault credential plugin to use the vault block with.", "vault")
	default:
		plugin.ValidateVault(vb, &Check{v: v, block: []string{"vault"}})
	}
}

func (v *validator) session() {
	if v.c.Session == nil {
		v.c.Session = &Session{}
	}
	s := v.c.Session
	s.SVIDExpiryGraceD = v.duration(s.SVIDExpiryGrace, DefaultSVIDExpiryGrace, "session", "svid_expiry_grace")
}

func (v *validator) workloadAPI() {
	c := v.c
	if c.WorkloadAPISocket == "" {
		c.WorkloadAPISocket = os.Getenv("SPIFFE_ENDPOINT_SOCKET")
	}
	if c.WorkloadAPISocket == "" {
		v.fail("Missing Workload API address", "Set workload_api_socket (for example \"unix:///run/spire/agent.sock\") or the SPIFFE_ENDPOINT_SOCKET environment variable.", "workload_api_socket")
	}
}

func (v *validator) log() {
	if v.c.Log == nil {
		v.c.Log = &Log{}
	}
	l := v.c.Log
	if l.Level == "" {
		l.Level = "info"
	}
	if l.Format == "" {
		l.Format = "text"
	}
	v.oneOf(l.Level, logLevels, "log", "level")
	v.oneOf(l.Format, logFormats, "log", "format")
}

func (v *validator) admin() {
	if v.c.Admin == nil {
		v.c.Admin = &Admin{}
	}
	a := v.c.Admin
	if a.Listen == nil {
		def := DefaultAdminListen
		a.Listen = &def
	}
	if *a.Listen != "" {
		v.hostPort(*a.Listen, "admin", "listen")
	}
}

func (v *validator) limits() {
	if v.c.Limits == nil {
		v.c.Limits = &Limits{}
	}
	l := v.c.Limits
	l.HandshakeTimeoutD = v.duration(l.HandshakeTimeout, DefaultHandshakeTimeout, "limits", "handshake_timeout")
	l.ShutdownGraceD = v.duration(l.ShutdownGrace, DefaultShutdownGrace, "limits", "shutdown_grace")
	v.positive(&l.MaxConcurrentHandshakes, DefaultMaxConcurrentHandshakes, "limits", "max_concurrent_handshakes")
	v.positive(&l.MaxConnections, DefaultMaxConnections, "limits", "max_connections")
	v.positive(&l.MaxMessageBytes, DefaultMaxMessageBytes, "limits", "max_message_bytes")
}
