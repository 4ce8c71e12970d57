package session

import (
	"slices"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
)

type maskingPlan []string

func (p maskingPlan) Masked() []string { return p }

// TestMaskingPlanIsRecorded: what a verdict's plan masks is in the operation's record, for the
// verdict decided and for the verdict kept; a plan that masks nothing records nothing (the control).
func TestMaskingPlanIsRecorded(t *testing.T) {
	snk := &sink{}
	s := openTest(t, snk, nil)
	var calls int
	for _, key := range []string{"a", "a", "b"} {
		plan := maskingPlan{"$.ssn=partial"}
		if key == "b" {
			plan = nil
		}
		v := s.Decide(t.Context(), Operation{Action: "http", Key: key, Decide: decider("allow", &calls),
			Prepare: func(Verdict) (any, error) { return plan, nil },
			Record:  &audit.Record{Kind: audit.KindStatement, Statement: &audit.Statement{Protocol: "http", Text: key}}})
		if v.Err != nil {
			t.Fatal(v.Err)
		}
	}
	var got [][]string
	for _, r := range snk.recs {
		if r.Kind == audit.KindStatement {
			got = append(got, r.Statement.Masked)
		}
	}
	if len(got) != 3 || !slices.Equal(got[0], []string{"$.ssn=partial"}) || !slices.Equal(got[1], got[0]) || got[2] != nil {
		t.Fatalf("records' masked %q, want the plan's twice, then none", got)
	}
	if calls != 2 {
		t.Errorf("decided %d times, want 2 (the second kept)", calls)
	}
}

// TestKeptPlanLastsOnePolicyEpoch: a kept verdict's plan is made again once a new policy set is
// loaded.
func TestKeptPlanLastsOnePolicyEpoch(t *testing.T) {
	dir := t.TempDir()
	writePolicy(t, dir, permitBoth)
	core, az := policyCore(t, dir, nil)
	s, err := core.Open(t.Context(), OpenRequest{TLS: peerTLS(t, "spiffe://example.org/agent/b", time.Now().Add(time.Hour)), Remote: remote})
	if err != nil {
		t.Fatal(err)
	}
	made := 0
	var calls int
	decide := func(key int) {
		v := s.Decide(t.Context(), Operation{Action: "http", Key: key, Decide: decider("allow", &calls),
			Prepare: func(Verdict) (any, error) { made++; return maskingPlan{"$.ssn=redact"}, nil }})
		if v.Err != nil || v.Plan == nil {
			t.Fatalf("verdict %+v", v)
		}
	}
	// An epoch is also one second of the clock: try again, with another operation, if one ended
	// between the two decisions.
	key := 0
	for ; ; key++ {
		made = 0
		epoch := az.Epoch()
		decide(key)
		decide(key)
		if az.Epoch() == epoch {
			break
		}
		if key == 5 {
			t.Fatal("no two decisions within one second")
		}
	}
	if made != 1 {
		t.Fatalf("plan made %d times for 2 decisions in one epoch, want once", made)
	}
	writePolicy(t, dir, permitB)
	if err := az.Engine.Reload(); err != nil {
		t.Fatal(err)
	}
	decide(key)
	if made != 2 {
		t.Fatalf("plan made %d times after a new policy set, want twice", made)
	}
}
