package audit

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// scripted is the chain of two sessions as the PostgreSQL engine records them: an agent's session
// with allowed, forbidden, default-denied and held statements (approved, denied, expired), its lease
// acquired and revoked; and an intruder's refused connection.
func scripted() []Entry {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	sql := func(id string, allow bool, policies ...string) *Decision {
		return &Decision{ID: id, Action: "sql", Resource: `Target::"shop"`, Allow: allow, Policies: policies}
	}
	held := func(id string) *Decision {
		d := sql(id, false, "migrator-ddl-hold")
		d.Approval = "required"
		return d
	}
	stmt := func(text string) *Statement { return &Statement{Protocol: "simple", Text: text} }
	recs := []Record{
		{Kind: KindSessionStart, Session: "a", Remote: "127.0.0.1:5000",
			Decision: &Decision{ID: "c1", Action: "connect", Allow: true, Policies: []string{"agents-connect"}}},
		{Kind: KindLease, Session: "a", LeaseID: "database/creds/ro/L1", Detail: map[string]string{"event": "acquired"}},
		{Kind: KindStatement, Session: "a", Statement: stmt("SELECT id FROM orders"), Decision: sql("s1", true, "read-orders")},
		{Kind: KindDenied, Session: "a", Statement: stmt("DELETE FROM orders"), Error: "SQLSTATE 42501",
			Decision: sql("s2", false, "forbid-delete"), Detail: map[string]string{"refused": "forbidden by policy"}},
		{Kind: KindDenied, Session: "a", Statement: stmt("TRUNCATE audit_trail"), Error: "SQLSTATE 42501",
			Decision: sql("s3", false), Detail: map[string]string{"refused": "no policy permitted it: denied by default"}},
		{Kind: KindApproval, Session: "a", Decision: held("s4"), Detail: map[string]string{"request": "r1", "state": "pending"}},
		{Kind: KindApproval, Session: "a", Detail: map[string]string{"request": "r1", "state": "approved", "approver": "alice@example.org"}},
		{Kind: KindStatement, Session: "a", Statement: stmt("ALTER TABLE orders ADD c int"), Decision: sql("s5", true, "migrator-ddl-hold")},
		{Kind: KindApproval, Session: "a", Decision: held("s6"), Detail: map[string]string{"request": "r2", "state": "pending"}},
		{Kind: KindApproval, Session: "a", Detail: map[string]string{"request": "r2", "state": "denied", "approver": "bob@example.org"}},
		{Kind: KindDenied, Session: "a", Statement: stmt("DROP TABLE orders"), Error: "SQLSTATE 42501",
			Decision: held("s6"), Detail: map[string]string{"refused": "approval denied", "request": "r2"}},
		{Kind: KindApproval, Session: "a", Decision: held("s7"), Detail: map[string]string{"request": "r3", "state": "pending"}},
		{Kind: KindApproval, Session: "a", Detail: map[string]string{"request": "r3", "state": "expired", "approver": ""}},
		{Kind: KindDenied, Session: "a", Statement: stmt("DROP TABLE customers"), Error: "SQLSTATE 42501",
			Decision: held("s7"), Detail: map[string]string{"refused": "approval expired", "request": "r3"}},
		{Kind: KindDenied, Session: "a", Statement: stmt("SELEC 1"), Error: "SQLSTATE 42601",
			Detail: map[string]string{"refused": "it does not parse"}},
		{Kind: KindLease, Session: "a", LeaseID: "database/creds/ro/L1", Detail: map[string]string{"event": "revoked"}},
		{Kind: KindSessionEnd, Session: "a", Detail: map[string]string{"reason": "client ended the session", "duration": "2s"}},
		{Kind: KindDecision, Session: "b", Remote: "127.0.0.1:5001", SPIFFEID: "spiffe://example.org/agent/intruder",
			Decision: &Decision{ID: "c2", Action: "connect", Allow: false}},
		{Kind: KindDecision, Session: "d", Decision: &Decision{Action: "connect", Resource: `Target::"shop"`},
			Detail: map[string]string{"refused": "not in the target's allow list"}},
		{Kind: KindSessionStart, Session: "c", Decision: &Decision{ID: "c3", Action: "connect", Allow: true, Policies: []string{"agents-connect"}}},
		{Kind: KindSessionEnd, Session: "c", Detail: map[string]string{"reason": "session not established: backend unavailable"}},
	}
	out := make([]Entry, len(recs))
	for i, r := range recs {
		r.Time, r.Target = t0.Add(time.Duration(i)*time.Second), "shop"
		if r.SPIFFEID == "" {
			r.SPIFFEID = "spiffe://example.org/agent/analyst"
		}
		out[i] = Entry{Seq: uint64(i + 1), Record: r}
	}
	return out
}

func sliceReader(es []Entry) Reader {
	return func(f func(Entry) error) error {
		for _, e := range es {
			if err := f(e); err != nil {
				return err
			}
		}
		return nil
	}
}

// TestReplaySaysWhatHappened reads each line of a scripted session's replay for its meaning: what was
// allowed and refused, by which policy or by default, each approval held, approved, denied or
// expired and by whom, the lease acquired and revoked. A refused statement never reads as allowed.
func TestReplaySaysWhatHappened(t *testing.T) {
	want := []struct {
		kind string
		has  []string
	}{
		{KindSessionStart, []string{"analyst → shop", "connect allowed by agents-connect (decision c1)"}},
		{KindLease, []string{"database/creds/ro/L1 acquired"}},
		{KindStatement, []string{"SELECT id FROM orders", "sql allowed by read-orders (decision s1)"}},
		{KindDenied, []string{"DELETE FROM orders", "refused (SQLSTATE 42501): forbidden by forbid-delete (decision s2)"}},
		{KindDenied, []string{"TRUNCATE audit_trail", "refused (SQLSTATE 42501): no policy permitted it: denied by default (decision s3)"}},
		{KindApproval, []string{"request r1 held for approval by migrator-ddl-hold"}},
		{KindApproval, []string{"request r1 approved by alice@example.org"}},
		{KindStatement, []string{"ALTER TABLE", "sql allowed by migrator-ddl-hold (decision s5)"}},
		{KindApproval, []string{"request r2 held for approval by migrator-ddl-hold"}},
		{KindApproval, []string{"request r2 denied by bob@example.org"}},
		{KindDenied, []string{"DROP TABLE orders", "refused (SQLSTATE 42501): approval denied, request r2, held by migrator-ddl-hold (decision s6)"}},
		{KindApproval, []string{"request r3 held for approval by migrator-ddl-hold"}},
		{KindApproval, []string{"request r3 expired"}},
		{KindDenied, []string{"DROP TABLE customers", "refused (SQLSTATE 42501): approval expired, request r3, held by migrator-ddl-hold (decision s7)"}},
		{KindDenied, []string{"SELEC 1", "refused (SQLSTATE 42601): it does not parse"}},
		{KindLease, []string{"database/creds/ro/L1 revoked"}},
		{KindSessionEnd, []string{"client ended the session after 2s"}},
	}
	tl, err := Timeline(sliceReader(scripted()), "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(tl) != len(want) {
		t.Fatalf("%d records in the timeline, want %d", len(tl), len(want))
	}
	for i, w := range want {
		line := Format(tl[i])
		t.Run(strings.Fields(line)[1]+"_"+w.kind, func(t *testing.T) {
			if tl[i].Record.Kind != w.kind || !strings.Contains(line, " "+w.kind+" ") {
				t.Errorf("%q: kind %s, want %s", line, tl[i].Record.Kind, w.kind)
			}
			for _, s := range w.has {
				if !strings.Contains(line, s) {
					t.Errorf("%q does not say %q", line, s)
				}
			}
			if w.kind == KindDenied && strings.Contains(line, "allow") {
				t.Errorf("a refused statement reads as allowed: %q", line)
			}
			if strings.HasSuffix(line, "by ") || strings.Contains(line, "by  ") || strings.Contains(line, "by (") {
				t.Errorf("%q names no one after \"by\"", line)
			}
			if strings.Count(line, "expired") > 0 && strings.Contains(line, "by ") && w.kind == KindApproval {
				t.Errorf("an expired approval names an approver: %q", line)
			}
		})
	}
}

// TestReplayOfRefusedAndFailedSessions: an intruder's refused connection says it was refused and
// why, without "decision decision"; a session that never established says why in its end.
func TestReplayOfRefusedAndFailedSessions(t *testing.T) {
	for _, c := range []struct {
		session string
		has     []string
	}{
		{"b", []string{"decision", "connect to shop refused: no policy permitted it: denied by default (decision c2)"}},
		{"c", []string{"session not established: backend unavailable"}},
		{"d", []string{"connect to shop refused: not in the target's allow list"}},
	} {
		t.Run(c.session, func(t *testing.T) {
			tl, err := Timeline(sliceReader(scripted()), c.session)
			if err != nil || len(tl) == 0 {
				t.Fatalf("timeline %v %v", tl, err)
			}
			line := Format(tl[len(tl)-1])
			for _, s := range c.has {
				if !strings.Contains(line, s) {
					t.Errorf("%q does not say %q", line, s)
				}
			}
			if strings.Contains(line, "decision decision") {
				t.Errorf("%q", line)
			}
		})
	}
}

// TestExportOfRefusalsNeverAllows: in the export (the records as JSON), no refused statement and no
// held approval carries an allowing decision, and each refusal says why.
func TestExportOfRefusalsNeverAllows(t *testing.T) {
	for _, e := range scripted() {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var back Entry
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		r := back.Record
		switch {
		case r.Kind == KindDenied && (r.Detail["refused"] == "" || r.Decision != nil && r.Decision.Allow):
			t.Errorf("refused statement exported as %s", b)
		case r.Kind == KindApproval && r.Decision != nil && r.Decision.Allow:
			t.Errorf("held statement exported as allowed: %s", b)
		case r.Kind == KindLease && (r.LeaseID == "" || r.Detail["event"] == ""):
			t.Errorf("lease event without its lease or event: %s", b)
		}
	}
}

// TestSessionsFilterByDecision: --decision deny finds sessions with refused statements as well as
// refused connections; allow finds those in which nothing was refused.
func TestSessionsFilterByDecision(t *testing.T) {
	for _, c := range []struct {
		decision string
		want     []string
	}{
		{"deny", []string{"a", "b", "d"}},
		{"allow", []string{"c"}},
		{"", []string{"a", "b", "d", "c"}},
	} {
		t.Run(c.decision, func(t *testing.T) {
			ss, err := Sessions(sliceReader(scripted()), Filter{Decision: c.decision})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range ss {
				got = append(got, s.Session)
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Errorf("sessions %v, want %v", got, c.want)
			}
		})
	}
}

// TestReplayNamesTheCredentialRole: a credential:use decision's line names the role it was about,
// allowed or refused; a decision about no role (connect) still names only the target (the control).
func TestReplayNamesTheCredentialRole(t *testing.T) {
	for _, c := range []struct {
		rec  Record
		want string
	}{
		{Record{Kind: KindDecision, Target: "shop", Detail: map[string]string{"credential_role": "shop-read"},
			Decision: &Decision{ID: "r1", Action: "credential:use", Resource: `CredentialRole::"shop/shop-read"`, Allow: true, Policies: []string{"analyst-read-role"}}},
			"credential:use of role shop-read on shop allowed by analyst-read-role (decision r1)"},
		{Record{Kind: KindDecision, Target: "shop", Detail: map[string]string{"credential_role": "shop-admin", "refused": "no credential role: credential:use denied for every credential role of the target"},
			Decision: &Decision{ID: "r2", Action: "credential:use", Resource: `CredentialRole::"shop/shop-admin"`}},
			"credential:use of role shop-admin on shop refused: no credential role: credential:use denied for every credential role of the target"},
		{Record{Kind: KindDecision, Target: "shop",
			Decision: &Decision{ID: "c1", Action: "connect", Resource: `Target::"shop"`, Allow: true, Policies: []string{"analyst-connect"}}},
			"connect to shop allowed by analyst-connect (decision c1)"},
	} {
		if line := Format(Entry{Seq: 1, Record: c.rec}); !strings.Contains(line, c.want) {
			t.Errorf("%q does not say %q", line, c.want)
		}
	}
}

// TestReplayOfHTTPResults: an HTTP response's record says what its count is (masked values, not
// rows), which fields were masked, and a response withheld because it could not be masked.
func TestReplayOfHTTPResults(t *testing.T) {
	for _, c := range []struct {
		rec      Record
		has, not []string
	}{
		{Record{Kind: KindResult, Result: &Result{Tag: "HTTP 200", Rows: 2, Bytes: 71, Unit: "masked values"},
			Detail: map[string]string{"masked": "$.email=partial,$.ssn=partial"}},
			[]string{"HTTP 200: 2 masked values, 71 bytes", "masked $.email=partial,$.ssn=partial"}, []string{"rows"}},
		{Record{Kind: KindResult, Result: &Result{Tag: "refused (upstream HTTP 200)", Unit: "masked values"},
			Detail: map[string]string{"refused": "the upstream answered with \"text/html\""}},
			[]string{"0 masked values", "withheld: the upstream answered"}, []string{"rows"}},
		{Record{Kind: KindSessionStart, SPIFFEID: "spiffe://example.org/agent/support", Target: "api", Remote: "127.0.0.1:1",
			Detail: map[string]string{"authenticated_by": "JWT-SVID"}},
			[]string{"agent/support → api from 127.0.0.1:1 by its JWT-SVID"}, nil},
		{Record{Kind: KindResult, Result: &Result{Tag: "SELECT 2", Rows: 2, Bytes: 40}},
			[]string{"SELECT 2: 2 rows, 40 bytes"}, []string{"masked", "withheld", "content"}},
		// MCP: the call as recorded, its result with the tool, what was masked and the content kinds.
		{Record{Kind: KindStatement, Statement: &Statement{Protocol: "mcp", Text: `tools/call get_customer {"id":1}`},
			Decision: &Decision{ID: "d1", Action: "mcp:call", Allow: true, Policies: []string{"support-reads"}}},
			[]string{`[mcp] tools/call get_customer {"id":1}`, "mcp:call allowed by support-reads"}, nil},
		{Record{Kind: KindResult, Result: &Result{Tag: "tools/call get_customer ok", Rows: 1, Bytes: 310, Unit: "masked values"},
			Detail: map[string]string{"masked": "$.ssn=redact", "content": "text"}},
			[]string{"tools/call get_customer ok: 1 masked values, 310 bytes", "masked $.ssn=redact", "content text"}, []string{"rows"}},
		{Record{Kind: KindDenied, Statement: &Statement{Protocol: "mcp", Text: `tools/call get_customer {"id":1}`},
			Detail: map[string]string{"refused": "tool definition changed"}},
			[]string{`[mcp] tools/call get_customer {"id":1}`, "refused", "tool definition changed"}, nil},
	} {
		line := Format(Entry{Record: c.rec})
		for _, s := range c.has {
			if !strings.Contains(line, s) {
				t.Errorf("%q does not say %q", line, s)
			}
		}
		for _, s := range c.not {
			if strings.Contains(line, s) {
				t.Errorf("%q says %q", line, s)
			}
		}
	}
}
