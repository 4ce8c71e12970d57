package session

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
)

func openTest(t *testing.T, snk *sink, approve ApproveFunc) *Session {
	t.Helper()
	core, err := New(Config{Target: "api", Audit: snk, Logger: slog.New(slog.DiscardHandler), Approve: approve, ApprovalTimeout: time.Minute,
		Authorize: func(context.Context, authz.Connect) (authz.Decision, error) { return authz.Decision{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	s, err := core.Open(t.Context(), OpenRequest{TLS: peerTLS(t, "spiffe://example.org/agent/a", time.Now().Add(time.Hour)), Remote: remote})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// decider decides as policy would: deny, allow, or require an approval until one is granted.
func decider(kind string, calls *int) func(authz.ApprovalState) (authz.Decision, error) {
	return func(ap authz.ApprovalState) (authz.Decision, error) {
		*calls++
		switch kind {
		case "deny":
			return authz.Decision{ID: "d-deny", Reasons: []string{"no-deletes"}}, errors.New("DELETE /v1/orders/{id} denied by no-deletes")
		case "hold":
			if ap.State != "approved" {
				return authz.Decision{ID: "d-hold", Allow: true, Obligations: authz.Obligations{Approval: "required"}}, nil
			}
		case "mask":
			return authz.Decision{ID: "d-mask", Allow: true, Obligations: authz.Obligations{Mask: "redact"}}, nil
		}
		return authz.Decision{ID: "d-allow", Allow: true, Reasons: []string{"reads"}}, nil
	}
}

// TestDecideVerdicts: each kind of decision gives its verdict, with the deciding decision, the
// records the audit log needs, and the reason a blocked operation was refused.
func TestDecideVerdicts(t *testing.T) {
	approved := func(context.Context, Approval) (authz.ApprovalState, error) {
		return authz.ApprovalState{State: "approved", Approver: "alice"}, nil
	}
	denied := func(context.Context, Approval) (authz.ApprovalState, error) {
		return authz.ApprovalState{State: "denied", Approver: "bob"}, nil
	}
	cases := []struct {
		name     string
		kind     string
		approve  ApproveFunc
		noHold   bool
		want     Outcome
		wantErr  error
		calls    int
		approval []string // the approval records' states
	}{
		{name: "allowed", kind: "allow", want: Allow, calls: 1},
		{name: "masked", kind: "mask", want: Mask, calls: 1},
		{name: "denied", kind: "deny", want: Block, wantErr: ErrBlocked, calls: 1},
		{name: "held and approved", kind: "hold", approve: approved, want: Held, calls: 2, approval: []string{"pending", "approved"}},
		{name: "held and denied", kind: "hold", approve: denied, want: Block, wantErr: ErrApproval, calls: 1, approval: []string{"pending", "denied"}},
		{name: "no approver", kind: "hold", want: Block, wantErr: ErrApproval, calls: 1},
		{name: "not holdable", kind: "hold", approve: approved, noHold: true, want: Block, wantErr: ErrApproval, calls: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			snk := &sink{}
			s := openTest(t, snk, c.approve)
			var calls int
			v := s.Decide(t.Context(), Operation{Action: "http", Text: "GET /v1/customers/1", Decide: decider(c.kind, &calls),
				NoHold: c.noHold, Record: &audit.Record{Kind: audit.KindStatement, Detail: map[string]string{"route": "GET /v1/customers/{id}"}}})
			if v.Outcome != c.want || (c.wantErr == nil) != (v.Err == nil) || c.wantErr != nil && !errors.Is(v.Err, c.wantErr) {
				t.Fatalf("verdict %v (%v), want %v (%v)", v.Outcome, v.Err, c.want, c.wantErr)
			}
			if calls != c.calls {
				t.Errorf("decided %d times, want %d", calls, c.calls)
			}
			var states []string
			var statement, refusal *audit.Record
			for i, r := range snk.recs {
				switch r.Kind {
				case audit.KindApproval:
					states = append(states, r.Detail["state"])
				case audit.KindDenied:
					refusal = &snk.recs[i]
				case audit.KindStatement:
					statement = &snk.recs[i]
				}
			}
			if len(states) != len(c.approval) || len(states) > 0 && states[len(states)-1] != c.approval[len(c.approval)-1] {
				t.Errorf("approval records %q, want %q", states, c.approval)
			}
			switch {
			// A refusal is a denied record (as the audit summaries and replay count refusals), keeping
			// the operation's details, with why it was refused.
			case c.want == Block && (refusal == nil || refusal.Decision == nil || refusal.Decision.Allow || statement != nil ||
				refusal.Detail["refused"] == "" || refusal.Detail["route"] != "GET /v1/customers/{id}"):
				t.Errorf("blocked operation recorded as %+v / %+v", refusal, statement)
			case c.want != Block && refusal != nil:
				t.Errorf("allowed operation recorded a refusal %+v", refusal)
			case c.want != Block && (statement == nil || statement.Decision == nil || statement.Decision.ID != v.Decision.ID || statement.SPIFFEID == ""):
				t.Errorf("allowed operation recorded as %+v, want its decision %s", statement, v.Decision.ID)
			}
		})
	}
}

// TestDecideReusesAllowedVerdictsOnly: an allowed operation's verdict is reused for its key; a held
// one is decided (and held) every time, and an operation without a key is never reused.
func TestDecideReusesAllowedVerdictsOnly(t *testing.T) {
	approvals := 0
	s := openTest(t, &sink{}, func(context.Context, Approval) (authz.ApprovalState, error) {
		approvals++
		return authz.ApprovalState{State: "approved"}, nil
	})
	run := func(kind string, key any) int {
		var calls int
		for range 3 {
			if v := s.Decide(t.Context(), Operation{Action: "http", Key: key, Decide: decider(kind, &calls)}); v.Err != nil {
				t.Fatal(v.Err)
			}
		}
		return calls
	}
	if n := run("allow", "GET /v1/customers/{id}"); n != 1 {
		t.Errorf("an allowed operation decided %d times in 3, want once", n)
	}
	if n := run("allow", nil); n != 3 {
		t.Errorf("an operation without a key decided %d times in 3, want 3", n)
	}
	if run("hold", "DELETE /v1/orders/{id}"); approvals != 3 {
		t.Errorf("%d approvals asked for 3 held operations, want 3", approvals)
	}
}

// TestDecideRefusesWhatCannotBeRecorded: an allowed operation whose record cannot be written is
// blocked with ErrAuditUnavailable.
func TestDecideRefusesWhatCannotBeRecorded(t *testing.T) {
	snk := &sink{}
	s := openTest(t, snk, nil)
	snk.fail = errors.New("disk full")
	var calls int
	v := s.Decide(t.Context(), Operation{Action: "http", Decide: decider("allow", &calls), Record: &audit.Record{Kind: audit.KindStatement}, Durable: true})
	if v.Outcome != Block || !errors.Is(v.Err, ErrAuditUnavailable) {
		t.Fatalf("verdict %v (%v), want a block for the audit log", v.Outcome, v.Err)
	}
}

// TestDecideWithdrawn: a held operation the engine withdraws (its client went away) is blocked with a
// *Withdrawn, whatever the approver says.
func TestDecideWithdrawn(t *testing.T) {
	gone := errors.New("the client disconnected")
	s := openTest(t, &sink{}, func(ctx context.Context, _ Approval) (authz.ApprovalState, error) {
		<-ctx.Done()
		return authz.ApprovalState{State: "approved"}, nil
	})
	var calls int
	v := s.Decide(t.Context(), Operation{Action: "http", Decide: decider("hold", &calls),
		Withdrawable: func(withdraw context.CancelCauseFunc) func() error {
			withdraw(gone)
			return func() error { return gone }
		}})
	w, ok := errors.AsType[*Withdrawn](v.Err)
	if v.Outcome != Block || !ok || w.Why != gone {
		t.Fatalf("verdict %v (%v), want a withdrawal because %v", v.Outcome, v.Err, gone)
	}
}
