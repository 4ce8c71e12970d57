package postgres

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/policies"
)

// verdictPolicies let agents read the shop, and update it only with a person's approval.
const verdictPolicies = `
@id("read") permit (principal in Group::"agents", action == Action::"sql:select", resource in Target::"shop");
@id("update-held") @approval("required")
permit (principal in Group::"agents", action == Action::"sql:update", resource in Target::"shop")
when { context.approval.state == "none" || context.approval.state == "pending" };
@id("update-approved")
permit (principal in Group::"agents", action == Action::"sql:update", resource in Target::"shop")
when { context.approval.state == "approved" };
`

// newVerdictSession is a relay session deciding by verdictPolicies, in dir, for agent a.
func newVerdictSession(t testing.TB) (*session, *authz.Engine, string) {
	t.Helper()
	schema, err := authz.ParseSchema("svidbroker.cedarschema", policies.Schema)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeVerdictPolicies(t, dir, verdictPolicies)
	e, err := authz.New(authz.Config{Dir: dir, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	catalog := &authz.Catalog{
		Targets: []authz.CatalogTarget{{Name: "shop", Kind: "postgres", Environment: "dev"}},
		Groups:  []authz.GroupRule{{Name: "agents", IDs: []string{"spiffe://example.org/agent/*"}}},
	}
	s := newRelaySession(t, relayIO{})
	s.insp.authz = authz.NewAuthorizer(e, catalog)
	s.insp.connect = authz.Connect{Peer: identity.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/agent/a")}, Target: "shop"}
	return s, e, dir
}

func writeVerdictPolicies(t testing.TB, dir, src string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "p.cedar"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestVerdictsAreReusedWithinAnEpoch: a literal variant of a statement decided before, in the same
// authorization epoch, gets the decision already made (its ID shows it: the engine gives each decision
// one of its own), without asking the engine; a policy reload is seen by the very next statement; and
// a statement that needs approval is held every time, its approval never reused.
func TestVerdictsAreReusedWithinAnEpoch(t *testing.T) {
	s, e, dir := newVerdictSession(t)
	decide := func(sql string) (authz.Decision, bool) {
		t.Helper()
		sts, denial := s.classify(sql)
		if denial != nil {
			t.Fatalf("%s: %s", sql, denial.Message)
		}
		d, _, _, refusal := s.decideAndPlan(sql, sts, authz.ApprovalState{}, true)
		return d, refusal == nil
	}
	reused := false
	for try := 0; try < 5 && !reused; try++ { // a second may turn between the two (a new epoch)
		epoch := s.insp.authz.Epoch()
		s.memo = authz.Memo{} // only a kept verdict can give the first decision again
		first, ok1 := decide("SELECT abalance FROM pgbench_accounts WHERE aid = 1")
		s.memo = authz.Memo{}
		second, ok2 := decide("SELECT abalance FROM pgbench_accounts WHERE aid = 2")
		if !ok1 || !ok2 || first.ID == "" {
			t.Fatalf("select refused: %+v %+v", first, second)
		}
		reused = first.ID == second.ID && s.insp.authz.Epoch() == epoch
	}
	if !reused {
		t.Fatal("a literal variant was decided again within one epoch")
	}

	writeVerdictPolicies(t, dir, `@id("nothing") forbid (principal, action, resource);`)
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if d, ok := decide("SELECT abalance FROM pgbench_accounts WHERE aid = 3"); ok {
		t.Fatalf("after a reload that forbids everything, a kept verdict allowed: %+v", d)
	}

	writeVerdictPolicies(t, dir, verdictPolicies)
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	held := 0
	s.insp.approve = func(context.Context, Approval) (authz.ApprovalState, error) {
		held++
		return authz.ApprovalState{State: "approved", Approver: "alice"}, nil
	}
	// The two are literal variants, one classification: a verdict kept for the first would let the
	// second run without an approval.
	for i, sql := range []string{"UPDATE pgbench_accounts SET abalance = 1 WHERE aid = 1", "UPDATE pgbench_accounts SET abalance = 2 WHERE aid = 2"} {
		if d, ok := decide(sql); !ok || held != i+1 {
			t.Fatalf("%s: allowed %v after %d approvals, want %d: %+v", sql, ok, held, i+1, d)
		}
	}
}
