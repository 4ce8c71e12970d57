package authz

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/identity"
)

// pickCatalog has three roles whose covers do not repeat one another, as policies/catalog.hcl
// writes them: a role ranked higher is taken to include the lower ones.
var pickCatalog = NewCatalog([]CatalogTarget{{Name: "shop", Kind: "postgres",
	Tables: []CatalogTable{{Name: "public.orders"}, {Name: "public.customers"}},
	Roles: []CredentialRole{
		{Name: "read", Covers: []string{"sql:select"}},
		{Name: "write", Covers: []string{"sql:insert", "sql:update", "sql:delete"}},
		{Name: "admin", Covers: []string{"sql:ddl"}},
	}}}, nil)

func pickConnect(name string) Connect {
	return Connect{Peer: identity.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/agent/" + name),
		Attestation: &identity.Attestation{}}, Target: "shop"}
}

// TestPickRoleRule checks the rule of PickRole: the most privileged role credential:use permits whose
// covers include an action the caller's policies permit; none is a refusal that names what to fix.
func TestPickRoleRule(t *testing.T) {
	e, _ := newEngine(t, map[string]string{"p.cedar": `
// reader: select on one table; may use every role, so only the rule keeps it on "read".
@id("reader-select")
permit (principal == Workload::"spiffe://example.org/agent/reader", action == Action::"sql:select", resource == Table::"shop/public.orders");
@id("reader-roles")
permit (principal == Workload::"spiffe://example.org/agent/reader", action == Action::"credential:use", resource in Target::"shop");

// migrator: select, and DDL held for approval (permitted before approval, with an obligation).
@id("migrator-select")
permit (principal == Workload::"spiffe://example.org/agent/migrator", action == Action::"sql:select", resource in Target::"shop");
@id("migrator-ddl-hold")
@approval("required")
permit (principal == Workload::"spiffe://example.org/agent/migrator", action == Action::"sql:ddl", resource in Target::"shop")
when { context.approval.state == "none" || context.approval.state == "pending" };
@id("migrator-roles")
permit (principal == Workload::"spiffe://example.org/agent/migrator", action == Action::"credential:use", resource in Target::"shop");

// writer: updates, with write and admin permitted: write is enough.
@id("writer-update")
permit (principal == Workload::"spiffe://example.org/agent/writer", action == Action::"sql:update", resource == Table::"shop/public.customers");
@id("writer-roles")
permit (principal == Workload::"spiffe://example.org/agent/writer", action == Action::"credential:use", resource in Target::"shop")
when { resource.rank >= 1 };

// cramped: DDL permitted, but only the read role: it gets read, and the pick says DDL is uncovered.
@id("cramped-select")
permit (principal == Workload::"spiffe://example.org/agent/cramped", action in [Action::"sql:select", Action::"sql:ddl"], resource in Target::"shop");
@id("cramped-read")
permit (principal == Workload::"spiffe://example.org/agent/cramped", action == Action::"credential:use", resource == CredentialRole::"shop/read");

// roleless: may select, but no credential:use at all.
@id("roleless-select")
permit (principal == Workload::"spiffe://example.org/agent/roleless", action == Action::"sql:select", resource in Target::"shop");

// forbidden: may select and use read, but a forbid takes read away.
@id("forbidden-select")
permit (principal == Workload::"spiffe://example.org/agent/forbidden", action == Action::"sql:select", resource in Target::"shop");
@id("forbidden-read")
permit (principal == Workload::"spiffe://example.org/agent/forbidden", action == Action::"credential:use", resource == CredentialRole::"shop/read");
@id("no-read-role")
forbid (principal == Workload::"spiffe://example.org/agent/forbidden", action == Action::"credential:use", resource == CredentialRole::"shop/read");

// idle: may use admin, but its policies permit no action any role covers.
@id("idle-admin")
permit (principal == Workload::"spiffe://example.org/agent/idle", action == Action::"credential:use", resource == CredentialRole::"shop/admin");
`})
	az := NewAuthorizer(e, pickCatalog)
	for _, tc := range []struct {
		caller, want string
		for_         []string
		uncovered    []string
		refusal      string // a fragment of the refusal, when want is ""
	}{
		{caller: "reader", want: "read", for_: []string{"sql:select"}}, // control: the narrowest role
		{caller: "migrator", want: "admin", for_: []string{"sql:ddl"}},
		{caller: "writer", want: "write", for_: []string{"sql:update"}},
		{caller: "cramped", want: "read", for_: []string{"sql:select"}, uncovered: []string{"sql:ddl"}},
		{caller: "roleless", refusal: "read: no policy permits it; write: no policy permits it; admin: no policy permits it"},
		{caller: "forbidden", refusal: "read: forbidden by policy no-read-role"},
		{caller: "idle", refusal: "credential:use permits admin, but no policy permits any action it covers"},
	} {
		t.Run(tc.caller, func(t *testing.T) {
			pick, err := az.PickRole(pickConnect(tc.caller))
			if tc.want == "" {
				var no *NoRole
				if pick.Role != "" || !errors.As(err, &no) || !errors.Is(err, ErrNoRole) || !errors.Is(err, ErrDenied) {
					t.Fatalf("pick %+v, err %v; want a *NoRole refusal", pick, err)
				}
				if !strings.Contains(err.Error(), tc.refusal) || !strings.Contains(err.Error(), `target "shop"`) {
					t.Fatalf("refusal %q does not say %q", err, tc.refusal)
				}
				return
			}
			if err != nil || pick.Role != tc.want {
				t.Fatalf("pick %+v, err %v; want role %q", pick, err, tc.want)
			}
			if !slices.Equal(pick.For, tc.for_) || !slices.Equal(pick.Uncovered, tc.uncovered) {
				t.Errorf("pick for %q uncovered %q; want %q and %q", pick.For, pick.Uncovered, tc.for_, tc.uncovered)
			}
			if !pick.Decision.Allow || len(pick.Decision.Reasons) == 0 {
				t.Errorf("the pick's credential:use decision %+v names no permit", pick.Decision)
			}
		})
	}
}

// TestPickRoleNeedsRoles: a target without credential roles has nothing to pick (its credential is
// fixed in the broker's configuration), which is an error, not an empty pick.
func TestPickRoleNeedsRoles(t *testing.T) {
	e, _ := newEngine(t, map[string]string{"p.cedar": `@id("all-connect") permit (principal, action == Action::"connect", resource);`})
	az := NewAuthorizer(e, NewCatalog([]CatalogTarget{{Name: "shop"}}, nil))
	if pick, err := az.PickRole(pickConnect("reader")); err == nil || errors.Is(err, ErrDenied) || pick.Role != "" {
		t.Fatalf("pick %+v, err %v", pick, err)
	}
}
