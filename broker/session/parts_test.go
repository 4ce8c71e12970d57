package session

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"

	"github.com/svidbroker/svidbroker/broker/authz"
)

// partDecider decides the parts of an operation by kind ("allow", "deny", "hold": requires approval
// until one is granted), and keeps the approval state each part was decided with, in call order.
type partDecider struct {
	kinds []string
	calls []string // "i:state"
}

func (p *partDecider) part(i int, ap authz.ApprovalState) (authz.Decision, error) {
	p.calls = append(p.calls, strconv.Itoa(i)+":"+ap.State)
	switch p.kinds[i] {
	case "deny":
		return authz.Decision{ID: "d-deny"}, errors.New("part denied by no-deletes")
	case "hold":
		if ap.State != "approved" {
			return authz.Decision{ID: "d-hold", Allow: true, Obligations: authz.Obligations{Approval: "required"}}, nil
		}
	}
	return authz.Decision{ID: "d-" + strconv.Itoa(i), Allow: true}, nil
}

// TestDecideParts: the parts of an operation are decided in order; the first refused refuses it, and
// later parts are not decided; a part that needs an approval holds the operation once, is decided
// again with the approval, and the parts after it are decided with the approval granted, the verdict
// carrying the last part's decision; zero parts are allowed.
func TestDecideParts(t *testing.T) {
	approvals := 0
	approve := func(context.Context, Approval) (authz.ApprovalState, error) {
		approvals++
		return authz.ApprovalState{State: "approved", Approver: "alice"}, nil
	}
	cases := []struct {
		name    string
		kinds   []string
		noHold  bool
		want    Outcome
		wantErr error
		calls   []string
		holds   int
		last    string
	}{
		{name: "all allowed", kinds: []string{"allow", "allow"}, want: Allow, calls: []string{"0:", "1:"}, last: "d-1"},
		{name: "second denied", kinds: []string{"allow", "deny", "allow"}, want: Block, wantErr: ErrBlocked, calls: []string{"0:", "1:"}},
		{name: "second held", kinds: []string{"allow", "hold", "allow"}, want: Held,
			calls: []string{"0:", "1:", "1:approved", "2:approved"}, holds: 1, last: "d-2"},
		{name: "two held, one approval", kinds: []string{"hold", "hold"}, want: Held,
			calls: []string{"0:", "0:approved", "1:approved"}, holds: 1, last: "d-1"},
		{name: "held, not holdable", kinds: []string{"allow", "hold"}, noHold: true, want: Block, wantErr: ErrApproval, calls: []string{"0:", "1:"}},
		{name: "no parts", kinds: nil, want: Allow},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			approvals = 0
			s := openTest(t, &sink{}, approve)
			p := &partDecider{kinds: c.kinds}
			v := s.Decide(t.Context(), Operation{Action: "sql", Text: "a; b", Parts: len(c.kinds), Part: p.part, NoHold: c.noHold})
			if v.Outcome != c.want || (c.wantErr == nil) != (v.Err == nil) || c.wantErr != nil && !errors.Is(v.Err, c.wantErr) {
				t.Fatalf("verdict %v (%v), want %v (%v)", v.Outcome, v.Err, c.want, c.wantErr)
			}
			if !slices.Equal(p.calls, c.calls) {
				t.Errorf("parts decided %q, want %q", p.calls, c.calls)
			}
			if approvals != c.holds {
				t.Errorf("%d approvals asked for, want %d", approvals, c.holds)
			}
			if c.last != "" && v.Decision.ID != c.last {
				t.Errorf("verdict decision %q, want the last part's %q", v.Decision.ID, c.last)
			}
		})
	}
}

// TestDecideStillRequired: an operation whose policies still require approval once it was granted is
// blocked, its verdict's approval state "required" and its Cause saying why.
func TestDecideStillRequired(t *testing.T) {
	s := openTest(t, &sink{}, func(context.Context, Approval) (authz.ApprovalState, error) {
		return authz.ApprovalState{State: "approved"}, nil
	})
	always := func(authz.ApprovalState) (authz.Decision, error) {
		return authz.Decision{ID: "d", Allow: true, Obligations: authz.Obligations{Approval: "required"}}, nil
	}
	v := s.Decide(t.Context(), Operation{Action: "sql", Decide: always})
	if v.Outcome != Block || !errors.Is(v.Err, ErrApproval) || v.Approval.State != "required" || v.Request == "" || v.Cause == nil {
		t.Fatalf("verdict %+v, want a block for an approval still required", v)
	}
}

// TestDecidePrepare: an allowed operation's plan is made once and kept with its verdict; a plan that
// refuses blocks the operation with its error, and is not kept; a held operation's plan is made
// every time.
func TestDecidePrepare(t *testing.T) {
	s := openTest(t, &sink{}, func(context.Context, Approval) (authz.ApprovalState, error) {
		return authz.ApprovalState{State: "approved"}, nil
	})
	type plan struct{ n int }
	made := 0
	refuse := errors.New("its data could include masked columns")
	prepare := func(fail bool) func(Verdict) (any, error) {
		return func(v Verdict) (any, error) {
			made++
			if fail {
				return nil, refuse
			}
			return &plan{n: made}, nil
		}
	}
	var calls int
	for range 3 {
		v := s.Decide(t.Context(), Operation{Action: "sql", Key: "select", Decide: decider("allow", &calls), Prepare: prepare(false)})
		if p, ok := v.Plan.(*plan); v.Err != nil || !ok || p.n != 1 {
			t.Fatalf("verdict %+v, want the plan made first", v)
		}
	}
	made = 0
	for range 2 {
		v := s.Decide(t.Context(), Operation{Action: "sql", Key: "copy", Decide: decider("allow", &calls), Prepare: prepare(true)})
		if v.Outcome != Block || v.Err != refuse || v.Plan != nil {
			t.Fatalf("verdict %+v, want a block by the plan", v)
		}
	}
	if made != 2 {
		t.Errorf("a refusing plan made %d times in 2, want 2 (never kept)", made)
	}
	made = 0
	for range 2 {
		if v := s.Decide(t.Context(), Operation{Action: "sql", Key: "update", Decide: decider("hold", &calls), Prepare: prepare(false)}); v.Outcome != Held {
			t.Fatalf("verdict %+v, want held", v)
		}
	}
	if made != 2 {
		t.Errorf("a held operation's plan made %d times in 2, want 2", made)
	}
}
