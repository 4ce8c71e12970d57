package postgres

import (
	"fmt"
	"net"
	"time"

	"github.com/svidbroker/svidbroker/broker/config"
)

// ConfigValidator checks the blocks of postgres targets in the broker's configuration. cmd passes it
// to config.Load under the name "postgres".
type ConfigValidator struct{}

var _ config.Protocol = ConfigValidator{}

// ValidateBackend checks a postgres target's backend block: a host:port address (server_name
// defaults to its host), the database every session uses, how the broker authenticates (with
// auth = "svid", the role its SVID logs in as) and the CA that verifies the backend.
func (ConfigValidator) ValidateBackend(t *config.Target, c *config.Check) {
	b := &t.Backend
	c.HostPort(b.Address, "backend", "address")
	if b.ServerName == "" {
		b.ServerName, _, _ = net.SplitHostPort(b.Address)
	}
	if b.Database == "" {
		c.Fail("Empty database", "backend.database must name a database; the backend would otherwise pick one for the user.", "backend", "database")
	}
	c.BackendAuth(b)
	if b.Auth == "svid" && b.User == "" {
		c.Fail("Empty user", "backend.user must name the role the broker logs in as with its SVID.", "backend", "user")
	}
	if b.CredentialHeader != "" || b.CredentialPrefix != nil {
		c.Fail("Credential header on a postgres target", "backend.credential_header and credential_prefix belong to http targets; a postgres credential is a user name and password.", "backend", "credential_header")
	}
	c.BackendCAFile(b)
}

// ValidateTimeouts fills in a postgres target's timeouts block, with defaults when it has none, and
// checks that each is a timeout PostgreSQL takes.
func (ConfigValidator) ValidateTimeouts(t *config.Target, c *config.Check) {
	if t.Timeouts == nil {
		t.Timeouts = &config.Timeouts{}
	}
	tt := t.Timeouts
	for name, raw := range map[string]string{"upstream": tt.Upstream, "idle": tt.Idle, "read_header": tt.ReadHeader} {
		if raw != "" {
			c.Fail("Timeout of another protocol", fmt.Sprintf("timeouts.%s belongs to http targets; a postgres target takes max_statement_timeout, max_lock_timeout and idle_in_transaction.", name), "timeouts", name)
		}
	}
	for _, f := range []struct {
		raw  string
		def  time.Duration
		d    *time.Duration
		name string
	}{
		{tt.MaxStatementTimeout, config.DefaultMaxStatementTimeout, &tt.MaxStatementTimeoutD, "max_statement_timeout"},
		{tt.MaxLockTimeout, config.DefaultMaxLockTimeout, &tt.MaxLockTimeoutD, "max_lock_timeout"},
		{tt.IdleInTransaction, config.DefaultIdleInTransaction, &tt.IdleInTransactionD, "idle_in_transaction"},
	} {
		*f.d = c.Duration(f.raw, f.def, "timeouts", f.name)
		if *f.d < time.Millisecond || *f.d > MaxTimeout {
			c.Fail("Timeout out of range", fmt.Sprintf("timeouts.%s is %q; PostgreSQL takes timeouts from 1ms to %s (about 24 days).", f.name, f.raw, MaxTimeout), "timeouts", f.name)
		}
	}
}
