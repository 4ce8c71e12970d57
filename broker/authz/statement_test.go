package authz

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/identity"
)

// TestStatementDecisions: every table access must be allowed, a statement without tables is asked of
// the target, uncataloged tables are in their target, and the memo gives the engine's own answer.
func TestStatementDecisions(t *testing.T) {
	e, dir := newEngine(t, map[string]string{"p.cedar": `
@id("read") permit (principal in Group::"agents", action == Action::"sql:select", resource in Target::"shop");
@id("no-admin") forbid (principal, action == Action::"sql:admin", resource);`})
	a := NewAuthorizer(e, testCatalog)
	now := time.Unix(1_700_000_000, 0)
	a.now = func() time.Time { return now }
	c := Connect{Peer: identity.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/agent/a")}, Target: "shop"}
	var memo Memo
	sel := Statement{Kind: "select", Tables: []string{"public.customers", "public.elsewhere"}}
	d1, err := a.Statement(c, sel, []Access{{"select", "public.customers"}, {"select", "public.elsewhere"}}, ApprovalState{}, &memo)
	if err != nil || !d1.Allow {
		t.Fatalf("select of a cataloged and an uncataloged table: %+v %v", d1, err)
	}
	d2, _ := a.Statement(c, sel, []Access{{"select", "public.customers"}, {"select", "public.elsewhere"}}, ApprovalState{}, &memo)
	if d2.Allow != d1.Allow || len(memo.entries) != 2 {
		t.Fatalf("memo: %d entries", len(memo.entries))
	}
	_, err = a.Statement(c, Statement{Kind: "delete", Tables: []string{"public.customers"}}, []Access{{"delete", "public.customers"}}, ApprovalState{}, &memo)
	var denied *Denied
	if !errors.As(err, &denied) || !strings.Contains(err.Error(), "DELETE on table public.customers") {
		t.Fatalf("delete: %v", err)
	}
	// An admin construct inside a SELECT is asked of the target, and the forbid holds.
	_, err = a.Statement(c, Statement{Kind: "admin"}, []Access{{"admin", "public.customers"}}, ApprovalState{}, &memo)
	if !errors.As(err, &denied) || denied.Decision.Reasons[0] != "no-admin" {
		t.Fatalf("admin: %v", err)
	}
	d, err := a.Statement(c, Statement{Kind: "select"}, nil, ApprovalState{}, &memo)
	if err != nil || !d.Allow {
		t.Fatalf("SELECT without tables: %v", err)
	}
	// A new policy set is seen at once, memo or not.
	writePolicies(t, dir, map[string]string{"p.cedar": `@id("nothing") forbid (principal, action, resource);`})
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Statement(c, sel, []Access{{"select", "public.customers"}}, ApprovalState{}, &memo); err == nil {
		t.Fatal("the memo kept a decision of the previous policy set")
	}
	// And a new second starts afresh.
	now = now.Add(time.Second)
	if _, err := a.Statement(c, sel, []Access{{"select", "public.customers"}}, ApprovalState{}, &memo); err == nil || len(memo.entries) != 1 {
		t.Fatalf("after a second: %v, %d entries", err, len(memo.entries))
	}
}
