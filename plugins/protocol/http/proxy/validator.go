package proxy

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/svidbroker/svidbroker/broker/config"
)

// ConfigValidator checks the blocks of http targets in the broker's configuration. cmd passes it to
// config.Load under the name "http".
type ConfigValidator struct{}

var _ config.Protocol = ConfigValidator{}

// ValidateBackend checks an http target's backend block: the upstream's host:port (server_name
// defaults to its host), how the broker authenticates (auth, as for postgres; vault_password_key
// defaults to "token"), the credential header and the CA that verifies the upstream.
func (ConfigValidator) ValidateBackend(t *config.Target, c *config.Check) {
	b := &t.Backend
	c.HostPort(b.Address, "backend", "address")
	if b.ServerName == "" {
		b.ServerName, _, _ = net.SplitHostPort(b.Address)
	}
	if b.Database != "" {
		c.Fail("Database on an http target", "backend.database belongs to postgres targets; an http target's routes are in its catalog.", "backend", "database")
	}
	if b.User != "" {
		c.Fail("User on an http target", "backend.user belongs to postgres targets; with auth = \"svid\" the broker presents its SVID to the upstream.", "backend", "user")
	}
	c.BackendAuth(b)
	if b.VaultPasswordKey == "" {
		b.VaultPasswordKey = "token"
	}
	if b.CredentialHeader == "" {
		b.CredentialHeader = "Authorization"
	}
	if err := checkCredentialHeader(b.CredentialHeader); err != nil {
		c.Fail("Invalid credential header", "backend.credential_header: "+err.Error()+".", "backend", "credential_header")
	}
	if b.CredentialPrefix == nil {
		prefix := ""
		if strings.EqualFold(b.CredentialHeader, "Authorization") {
			prefix = "Bearer "
		}
		b.CredentialPrefix = &prefix
	}
	if strings.ContainsAny(*b.CredentialPrefix, "\r\n\x00") {
		c.Fail("Invalid credential prefix", "backend.credential_prefix holds a line break or NUL.", "backend", "credential_prefix")
	}
	if b.Auth == "svid" && (b.CredentialHeader != "Authorization" || *b.CredentialPrefix != "Bearer ") {
		c.Fail("Credential header without a credential", "with auth = \"svid\" the broker presents its SVID and sends no header: remove credential_header and credential_prefix, or use auth = \"vault\".", "backend", "credential_header")
	}
	c.BackendCAFile(b)
}

// ValidateTimeouts fills in an http target's timeouts (upstream, idle, read_header), with defaults
// when it has none.
func (ConfigValidator) ValidateTimeouts(t *config.Target, c *config.Check) {
	if t.Timeouts == nil {
		t.Timeouts = &config.Timeouts{}
	}
	tt := t.Timeouts
	for _, f := range []struct{ raw, name string }{
		{tt.MaxStatementTimeout, "max_statement_timeout"}, {tt.MaxLockTimeout, "max_lock_timeout"}, {tt.IdleInTransaction, "idle_in_transaction"},
	} {
		if f.raw != "" {
			c.Fail("Timeout of another protocol", fmt.Sprintf("timeouts.%s belongs to postgres targets; an http target takes upstream, idle and read_header.", f.name), "timeouts", f.name)
		}
	}
	for _, f := range []struct {
		raw  string
		def  time.Duration
		d    *time.Duration
		name string
	}{
		{tt.Upstream, DefaultUpstream, &tt.UpstreamD, "upstream"},
		{tt.Idle, DefaultIdle, &tt.IdleD, "idle"},
		{tt.ReadHeader, DefaultReadHeader, &tt.ReadHeaderD, "read_header"},
	} {
		*f.d = c.Duration(f.raw, f.def, "timeouts", f.name)
		if *f.d < time.Millisecond || *f.d > 24*time.Hour {
			c.Fail("Timeout out of range", fmt.Sprintf("timeouts.%s is %q; take a value from 1ms to 24h.", f.name, f.raw), "timeouts", f.name)
		}
	}
}
