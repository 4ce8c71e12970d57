package postgres

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

var testTimeouts = Timeouts{Statement: 30 * time.Second, Lock: 5 * time.Second, IdleInTransaction: time.Minute}

// relayedTimeouts runs sql through the client side of a session with testTimeouts, in the simple and
// the extended protocol, and reports whether it reached the backend in each.
func relayedTimeouts(t *testing.T, sql string) (simple, extended bool) {
	t.Helper()
	for i, msgs := range [][]pgproto3.Message{
		{&pgproto3.Query{String: sql}},
		{&pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}},
	} {
		var toBackend bytes.Buffer
		s := newRelaySession(t, relayIO{fromClient: bytes.NewReader(encodeMessages(t, msgs...)), toBackend: &toBackend})
		s.timeouts = testTimeouts
		_ = s.clientToBackend()
		_ = s.backend.Flush()
		sent := false
		for _, m := range decodeFrontendStream(t, toBackend.Bytes()) {
			switch m := m.(type) {
			case *pgproto3.Query:
				sent = sent || m.String == sql
			case *pgproto3.Parse:
				sent = sent || m.Query == sql
			}
		}
		if i == 0 {
			simple = sent
		} else {
			extended = sent
		}
	}
	return simple, extended
}

// TestTimeoutsAreHeldUnderTheirCeilings: an agent cannot turn a timeout off or raise it above its
// target's ceiling, in any form of SET; values within the ceiling, and returning to the session's own
// value, pass.
func TestTimeoutsAreHeldUnderTheirCeilings(t *testing.T) {
	for _, c := range []struct {
		sql  string
		pass bool
	}{
		{"SET statement_timeout = 0", false},
		{"SET statement_timeout = '0'", false},
		{"SET statement_timeout = '0.4'", false},
		{"SET statement_timeout = '400us'", false},
		{"SET statement_timeout = '31s'", false},
		{"SET statement_timeout = '1h'", false},
		{"SET statement_timeout = 31000", false},
		{"SET LOCAL statement_timeout = 0", false},
		{"SET SESSION lock_timeout TO '6s'", false},
		{"SET idle_in_transaction_session_timeout = 0", false},
		{"SET idle_in_transaction_session_timeout = '2min'", false},
		{"SET statement_timeout = '0x7fffffff'", false},
		{"SET statement_timeout = '1e9'", false},
		{"SET statement_timeout = '5 parsecs'", false},
		{"SELECT 1; SET statement_timeout = 0", false},
		{"SET Statement_Timeout = 0", false},
		// Controls.
		{"SET statement_timeout = '30s'", true},
		{"SET statement_timeout = 1000", true},
		{"SET LOCAL lock_timeout = '1.5s'", true},
		{"SET idle_in_transaction_session_timeout = '1min'", true},
		{"SET statement_timeout TO DEFAULT", true},
		{"RESET lock_timeout", true},
		{"RESET ALL", true},
		{"SET work_mem = '4MB'", true},
	} {
		t.Run(c.sql, func(t *testing.T) {
			simple, extended := relayedTimeouts(t, c.sql)
			if simple != c.pass || extended != c.pass {
				t.Errorf("reached the backend: simple %t, extended %t; want %t", simple, extended, c.pass)
			}
		})
	}
}

// TestTimeoutRefusalNamesTheSettingAndCeiling: the error tells the agent what to fix.
func TestTimeoutRefusalNamesTheSettingAndCeiling(t *testing.T) {
	s := newRelaySession(t, relayIO{})
	s.timeouts = testTimeouts
	for sql, want := range map[string][]string{
		"SET statement_timeout = 0":                   {"statement_timeout", "turns the timeout off", "30s"},
		"SET lock_timeout = '1min'":                   {"lock_timeout", "ceiling of 5s"},
		"SET statement_timeout = 'soon'":              {"statement_timeout", "not a duration", "30s"},
		"SET statement_timeout = '100us'":             {"statement_timeout", "less than 1ms"},
		"SET idle_in_transaction_session_timeout = 0": {"idle_in_transaction_session_timeout", "1m0s"},
	} {
		sts, resp := s.classify(sql)
		if resp != nil {
			t.Fatal(resp.Message)
		}
		r := s.checkSettings(sql, sts)
		if r == nil {
			t.Fatalf("%s: not refused", sql)
		}
		if r.resp.Code != "42501" || r.reason != refusedTimeout {
			t.Errorf("%s: code %s, reason %q", sql, r.resp.Code, r.reason)
		}
		for _, w := range want {
			if !strings.Contains(r.resp.Message, w) {
				t.Errorf("%s: %q does not say %q", sql, r.resp.Message, w)
			}
		}
	}
}

// TestStartupTimeouts: timeouts given as startup parameters are held to the same ceilings, and a
// session's backend starts with statement_timeout and lock_timeout at their ceilings unless the client
// asked for less.
func TestStartupTimeouts(t *testing.T) {
	rest, set, err := testTimeouts.startupTimeouts(map[string]string{"application_name": "a", "lock_timeout": "2s"})
	if err != nil {
		t.Fatal(err)
	}
	if rest["application_name"] != "a" || len(rest) != 1 {
		t.Errorf("other parameters: %v", rest)
	}
	if set["statement_timeout"] != "30000" || set["lock_timeout"] != "2s" {
		t.Errorf("timeouts: %v", set)
	}
	if _, ok := set["idle_in_transaction_session_timeout"]; ok {
		t.Errorf("idle_in_transaction_session_timeout set by default: %v", set)
	}
	for _, p := range []map[string]string{{"statement_timeout": "0"}, {"Lock_Timeout": "1h"}, {"idle_in_transaction_session_timeout": "x"}} {
		if _, _, err := testTimeouts.startupTimeouts(p); err == nil || !strings.Contains(err.Error(), "startup parameter") {
			t.Errorf("%v: %v", p, err)
		}
	}
}

func TestTimeoutsValidate(t *testing.T) {
	var d Timeouts
	if err := d.Validate(); err != nil || d != (Timeouts{DefaultStatementTimeout, DefaultLockTimeout, DefaultIdleInTransaction}) {
		t.Errorf("defaults: %+v, %v", d, err)
	}
	for _, bad := range []Timeouts{{Statement: time.Microsecond}, {Lock: 30 * 24 * time.Hour}, {IdleInTransaction: -time.Second}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
