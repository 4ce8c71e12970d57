package postgres

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
)

// TestRefusedStatementsAreRecordedAsRefused: a refused statement's record never carries an allowing
// decision, even when a policy allowed it subject to an approval it did not get; it says why it was
// refused (by default, awaiting an approval that was denied, expired or failed, unparsable) and, for
// approvals, which request. A statement held and approved is recorded as allowed, after its approval
// records.
func TestRefusedStatementsAreRecordedAsRefused(t *testing.T) {
	for _, c := range []struct {
		name     string
		sql      string
		outcome  authz.ApprovalState
		err      error
		refused  string // Detail "refused"; "" for an allowed statement
		policies []string
		states   []string // the approval records' states
	}{
		{name: "allowed", sql: "SELECT 1 FROM orders", policies: []string{"read"}},
		{name: "default deny", sql: "DELETE FROM orders", refused: refusedDefault},
		{name: "approved", sql: "UPDATE orders SET total = 1", outcome: authz.ApprovalState{State: "approved", Approver: "alice"},
			policies: []string{"update-approved"}, states: []string{"pending", "approved"}},
		{name: "approval denied", sql: "UPDATE orders SET total = 2", outcome: authz.ApprovalState{State: "denied", Approver: "bob"},
			refused: "approval denied", policies: []string{"update-held"}, states: []string{"pending", "denied"}},
		{name: "approval expired", sql: "UPDATE orders SET total = 3", err: context.DeadlineExceeded,
			refused: "approval expired", policies: []string{"update-held"}, states: []string{"pending", "expired"}},
		{name: "approval failed", sql: "UPDATE orders SET total = 4", err: errors.New("approval service unreachable"),
			refused: "approval failed", policies: []string{"update-held"}, states: []string{"pending", "failed"}},
		{name: "unparsable", sql: "SELEC 1", refused: refusedUnparsed},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, _, _ := newVerdictSession(t)
			sink := &recordingSink{}
			s.rec = recorder{sink: sink, session: "s1", target: "shop"}
			s.insp.approve = func(context.Context, Approval) (authz.ApprovalState, error) { return c.outcome, c.err }
			if err := s.onQuery(&pgproto3.Query{String: c.sql}); err != nil {
				t.Fatal(err)
			}
			var stmt *audit.Record
			var states []string
			for i, r := range sink.recs {
				switch r.Kind {
				case audit.KindApproval:
					states = append(states, r.Detail["state"])
					if r.Decision != nil && r.Decision.Allow {
						t.Errorf("held statement recorded as allowed: %+v", r.Decision)
					}
				case audit.KindStatement, audit.KindDenied:
					stmt = &sink.recs[i]
				}
			}
			if !slices.Equal(states, c.states) {
				t.Errorf("approval states %v, want %v", states, c.states)
			}
			if stmt == nil {
				t.Fatal("no statement record")
			}
			line := audit.Format(audit.Entry{Record: *stmt})
			if c.refused == "" {
				if stmt.Kind != audit.KindStatement || stmt.Decision == nil || !stmt.Decision.Allow || !slices.Equal(stmt.Decision.Policies, c.policies) {
					t.Fatalf("allowed statement recorded as %s %+v", stmt.Kind, stmt.Decision)
				}
				return
			}
			if stmt.Kind != audit.KindDenied || stmt.Detail["refused"] != c.refused {
				t.Fatalf("refused statement recorded as %s %q, want %s %q", stmt.Kind, stmt.Detail["refused"], audit.KindDenied, c.refused)
			}
			if d := stmt.Decision; d != nil && (d.Allow || !slices.Equal(d.Policies, c.policies)) {
				t.Errorf("refused statement's decision %+v; want a refusal by %v", d, c.policies)
			}
			if strings.Contains(line, "allow") {
				t.Errorf("refused statement reads as allowed: %q", line)
			}
			if len(c.states) > 0 && stmt.Detail["request"] == "" {
				t.Errorf("refusal after an approval names no request: %+v", stmt.Detail)
			}
		})
	}
}

// TestRefusalBackendErrorIsNotTheSessionsError: the error the backend gives for deniedPortal, which
// the broker causes after each refusal (34000), is not recorded; a backend error answering a
// statement is.
func TestRefusalBackendErrorIsNotTheSessionsError(t *testing.T) {
	for _, c := range []struct {
		name   string
		answer *item
		want   int
	}{
		{"after a refusal", &item{kind: itDenied, denial: errStatementDenied("denied")}, 0},
		{"a statement's error", &item{kind: itQuery}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newRelaySession(t, relayIO{})
			sink := &recordingSink{}
			s.rec = recorder{sink: sink, session: "s1"}
			s.summarize(c.answer, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "34000", Message: `portal "x" does not exist`})
			n := 0
			for _, r := range sink.recs {
				if r.Kind == audit.KindError {
					n++
				}
			}
			if n != c.want {
				t.Errorf("%d error records, want %d: %+v", n, c.want, sink.recs)
			}
		})
	}
}

// TestMaskedColumnsAreListedOnlyWhereAResultCarriesThem: a statement that reads no masked table (BEGIN,
// SELECT 1, one over another table) lists no masked columns; one that reads the table, or whose result
// is masked as derived from it, lists them.
func TestMaskedColumnsAreListedOnlyWhereAResultCarriesThem(t *testing.T) {
	all := []string{"public.customers.email=hash", "public.customers.ssn=hash"}
	for _, c := range []struct {
		sql  string
		want []string
	}{
		{"BEGIN", nil},
		{"COMMIT", nil},
		{"SELECT 1", nil},
		{"SELECT id FROM orders", nil},
		{"CREATE TABLE t (a int)", nil},
		{"CREATE TABLE t AS SELECT * FROM customers", all},
		{"SELECT * FROM customer_contacts_view", all},
		{"SELECT email FROM customers", all},
		{"SELECT * FROM customer_contacts()", all},
		{"BEGIN; SELECT name FROM customers", all},
	} {
		t.Run(c.sql, func(t *testing.T) {
			p, sts := reviewPlan(t, c.sql)
			if got := p.maskedIn(sts); !slices.Equal(got, c.want) {
				t.Errorf("masked %v, want %v", got, c.want)
			}
		})
	}
}

// TestUnparsableStatementsGetTheParsersMessageAndPosition: SQL the broker cannot parse is refused
// with what PostgreSQL would answer (42601, the parser's message, the error's position), in both
// protocols, and recorded as refused because it does not parse.
func TestUnparsableStatementsGetTheParsersMessageAndPosition(t *testing.T) {
	const sql = "SELECT * FROM orders WHERE"
	for _, c := range []struct {
		name string
		send func(s *session) error
	}{
		{"simple", func(s *session) error { return s.onQuery(&pgproto3.Query{String: sql}) }},
		{"extended", func(s *session) error { return s.onParse(&pgproto3.Parse{Query: sql}) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newRelaySession(t, relayIO{})
			sink := &recordingSink{}
			s.rec = recorder{sink: sink, session: "s1"}
			if err := c.send(s); err != nil {
				t.Fatal(err)
			}
			if len(s.queue.items) == 0 || s.queue.items[0].kind != itDenied {
				t.Fatalf("not refused: %+v", s.queue.items)
			}
			e := s.queue.items[0].denial
			if e.Code != "42601" || e.Message != "syntax error at end of input" || e.Position != 27 || e.Severity != "ERROR" {
				t.Errorf("refused with %+v", e)
			}
			if len(sink.recs) != 1 || sink.recs[0].Detail["refused"] != refusedUnparsed || sink.recs[0].Error != "SQLSTATE 42601" {
				t.Errorf("recorded %+v", sink.recs)
			}
		})
	}
}

// TestAStatementTheBackendFailedToParseCanBeParsedAgain: a named statement whose Parse the backend
// refused (an undefined column) does not exist, at the server or at the broker: the client may Parse
// the name again (pgx does, with its statement cache) and is not told it already exists (42P05).
func TestAStatementTheBackendFailedToParseCanBeParsedAgain(t *testing.T) {
	again := encodeMessages(t, &pgproto3.Parse{Name: "stmtcache_1", Query: "SELECT emial FROM orders"}, &pgproto3.Sync{})
	var toBackend bytes.Buffer
	s := newRelaySession(t, relayIO{fromClient: bytes.NewReader(again), toBackend: &toBackend})
	if err := s.onParse(&pgproto3.Parse{Name: "stmtcache_1", Query: "SELECT emial FROM orders"}); err != nil {
		t.Fatal(err)
	}
	h := s.queue.head()
	if out, ok := s.answer(h, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "42703", Message: `column "emial" does not exist`}).(*pgproto3.ErrorResponse); !ok || out.Code != "42703" {
		t.Fatalf("the backend's error became %+v", out)
	}
	s.queue.skipToSync()
	s.queue.pop()
	toBackend.Reset()
	_ = s.clientToBackend() // until the client's stream ends
	for _, it := range s.queue.items {
		if it.kind == itDenied {
			t.Fatalf("the second Parse was refused: %+v", it.denial)
		}
	}
	if !bytes.Contains(toBackend.Bytes(), []byte("SELECT emial FROM orders")) {
		t.Fatal("the second Parse did not reach the backend")
	}
}
