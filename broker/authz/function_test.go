package authz

import (
	"errors"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/identity"
)

// TestFunctionDecisions: each database function a statement may call is decided on its own attributes;
// one denial refuses the statement, naming the function; allows combine with the statement's own
// decision, the strictest obligations winning.
func TestFunctionDecisions(t *testing.T) {
	e, _ := newEngine(t, map[string]string{"p.cedar": `
@id("read") permit (principal in Group::"agents", action == Action::"sql:select", resource in Target::"shop");
@id("read-functions") @record("full") permit (principal in Group::"agents", action == Action::"sql:call-function", resource in Target::"shop") when { !resource.writes };
@id("no-definer") forbid (principal, action == Action::"sql:call-function", resource) when { resource.securityDefiner };`})
	a := NewAuthorizer(e, testCatalog)
	c := Connect{Peer: identity.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/agent/a")}, Target: "shop"}
	var memo Memo
	st := Statement{Kind: "select"}
	prior, err := a.Statement(c, st, nil, ApprovalState{}, &memo)
	if err != nil {
		t.Fatal(err)
	}
	stable := Function{Schema: "public", Name: "total", Arguments: "integer", Volatility: "stable", Language: "sql", Owner: "o"}
	d, err := a.Functions(c, st, []Function{stable}, ApprovalState{}, prior, &memo)
	if err != nil || !d.Allow || d.Obligations.Record != "full" || len(d.Reasons) != 2 {
		t.Fatalf("a stable function: %+v, %v", d, err)
	}
	for _, f := range []Function{
		{Schema: "public", Name: "purge", Volatility: "volatile", Language: "plpgsql"},
		{Schema: "public", Name: "as_owner", Volatility: "immutable", SecurityDefiner: true, Language: "sql"},
	} {
		_, err := a.Functions(c, st, []Function{stable, f}, ApprovalState{}, prior, &memo)
		var denied *Denied
		if !errors.As(err, &denied) || !strings.Contains(err.Error(), "public."+f.Name+"()") {
			t.Errorf("%s: %v", f.Name, err)
		}
	}
	// The same name with other attributes (another session's catalog) is decided on its own.
	volatileTotal := stable
	volatileTotal.Volatility = "volatile"
	if _, err := a.Functions(c, st, []Function{volatileTotal}, ApprovalState{}, prior, &memo); err == nil {
		t.Fatal("the memo gave a stable function's decision for a volatile one of the same name")
	}
	if d, err := a.Functions(c, st, nil, ApprovalState{}, prior, &memo); err != nil || d.ID != prior.ID {
		t.Fatalf("no functions: %+v %v", d, err)
	}
}
