package policies_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/authz/policytest"
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/policies"
)

// TestPacks runs every pack's own tests against that pack alone, and the combined tests against all
// packs together, as the demo loads them.
func TestPacks(t *testing.T) {
	packs, err := os.ReadDir("packs")
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string][2]string{"all packs": {"packs", "tests"}}
	for _, p := range packs {
		if p.IsDir() {
			dir := filepath.Join("packs", p.Name())
			runs[p.Name()] = [2]string{dir, dir}
		}
	}
	if len(runs) < 5 {
		t.Fatalf("expected the baseline, analyst, support and migrator packs; found %d runs", len(runs))
	}
	for name, dirs := range runs {
		t.Run(name, func(t *testing.T) {
			// The schema with the records the tests' catalogs generate, as `svidbroker policy test`.
			schema, err := policytest.Schema(dirs[1], nil)
			if err != nil {
				t.Fatal(err)
			}
			e, err := authz.New(authz.Config{Dir: dirs[0], Schema: schema})
			if err != nil {
				t.Fatal(err)
			}
			results, err := policytest.Run(e, dirs[1])
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range results {
				if len(r.Diff) > 0 {
					t.Errorf("%s:%d %q:\n    %s", r.File, r.Line, r.Name, strings.Join(r.Diff, "\n    "))
				}
			}
			if len(results) == 0 {
				t.Fatal("no tests ran")
			}
		})
	}
}

// TestCanListsTheAnalystsCapabilities asks everything the analyst may do under all packs, every
// action of the schema on every catalog resource, and checks it against the packs' intent.
func TestCanListsTheAnalystsCapabilities(t *testing.T) {
	e := allPacks(t)
	cat := config.NewCatalog([]config.CatalogBlock{{Target: "shop", Kind: "postgres",
		Tables: []config.TableBlock{
			{Name: "public.customers", Columns: []config.ColumnBlock{{Name: "name"}, {Name: "email", Tags: []string{"pii"}}}},
			{Name: "public.orders", Columns: []config.ColumnBlock{{Name: "total"}}},
		},
		Roles: []config.RoleBlock{{Name: "shop-read"}, {Name: "shop-admin"}},
	}}, []config.GroupBlock{{Name: "analysts", Selectors: []string{"agent:name:analyst"}}})
	caps, err := authz.NewAuthorizer(e, cat).Can(t.Context(), spiffeid.RequireFromString("spiffe://example.org/agent/analyst"), []string{"agent:name:analyst"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]authz.Capability{}
	for _, c := range caps {
		got[c.Action+" "+c.Resource] = c
	}
	want := map[string]bool{
		`connect Target::"shop"`:                                     true,
		`sql:select Table::"shop/public.customers"`:                  true,
		`sql:select Table::"shop/public.orders"`:                     true,
		`sql:update Table::"shop/public.orders"`:                     false,
		`sql:ddl Table::"shop/public.orders"`:                        false,
		`credential:use CredentialRole::"shop/shop-read"`:            true,
		`credential:use CredentialRole::"shop/shop-admin"`:           false,
		`column:read-unmasked Column::"shop/public.customers.name"`:  true,
		`column:read-unmasked Column::"shop/public.customers.email"`: false,
		`column:read-unmasked Column::"shop/public.orders.total"`:    true,
		// Statements that touch no table are asked of the target: BEGIN, SHOW, SELECT 1, DO.
		`sql:transaction Target::"shop"`:        true,
		`sql:utility Target::"shop"`:            true,
		`sql:select Target::"shop"`:             true,
		`sql:admin Target::"shop"`:              false,
		`sql:admin Table::"shop/public.orders"`: false,
	}
	for k, allow := range want {
		c, ok := got[k]
		if !ok {
			t.Errorf("%s: not listed", k)
			continue
		}
		if c.Allow != allow {
			t.Errorf("%s: allow = %v, want %v (policies %v)", k, c.Allow, allow, c.Reasons)
		}
	}
	if m := got[`column:read-unmasked Column::"shop/public.customers.email"`].Obligations.Mask; m != "hash" {
		t.Errorf("email mask = %q, want hash", m)
	}
}

// TestEachPersonaGetsItsCredentialRole picks the credential role of each persona's sessions under all
// packs and the catalog the stack and the demo use (policies/catalog.hcl): the roles they may use and
// what their policies permit decide it; a caller no policy gives a role is refused.
func TestEachPersonaGetsItsCredentialRole(t *testing.T) {
	e := allPacks(t)
	file, diags := hclparse.NewParser().ParseHCLFile("catalog.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var c struct {
		Catalogs []config.CatalogBlock `hcl:"catalog,block"`
		Groups   []config.GroupBlock   `hcl:"group,block"`
	}
	if diags := gohcl.DecodeBody(file.Body, nil, &c); diags.HasErrors() {
		t.Fatal(diags)
	}
	az := authz.NewAuthorizer(e, config.NewCatalog(c.Catalogs, c.Groups))
	for _, tc := range []struct {
		persona  string
		attested bool
		target   string
		want     string
		for_     string
	}{
		{"analyst", true, "shop", "shop-read", "sql:select"},
		{"support", true, "shop", "shop-read", "sql:select"},
		{"migrator", true, "shop", "shop-admin", "sql:ddl sql:lock"}, // DDL held for approval still needs the role
		{"stranger", true, "shop", "", ""},
		{"analyst", false, "shop", "", ""}, // unattested: the baseline forbids everything
		{"analyst", true, "api", "api-read", "http:get"},
		{"support", true, "api", "api-read", "http:get"},
		{"migrator", true, "api", "api-write", "http:get http:post http:delete"}, // writes held for approval need the role
		{"intruder", true, "api", "", ""},
		{"support", false, "api", "", ""},
	} {
		peer := identity.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/agent/" + tc.persona)}
		if tc.attested {
			peer.Attestation = &identity.Attestation{Selectors: []string{"agent:name:" + tc.persona}}
		}
		pick, err := az.PickRole(authz.Connect{Peer: peer, Target: tc.target})
		if pick.Role != tc.want || (tc.want == "") != (err != nil) {
			t.Errorf("%s (attested %v) on %s: role %q, err %v; want %q", tc.persona, tc.attested, tc.target, pick.Role, err, tc.want)
			continue
		}
		if tc.want == "" {
			if !errors.Is(err, authz.ErrNoRole) {
				t.Errorf("%s: error %v is not ErrNoRole", tc.persona, err)
			}
			continue
		}
		if strings.Join(pick.For, " ") != tc.for_ || len(pick.Uncovered) > 0 {
			t.Errorf("%s: role %s for %q, uncovered %q; want for %s", tc.persona, pick.Role, pick.For, pick.Uncovered, tc.for_)
		}
	}
}

func TestColumnMaskStrategies(t *testing.T) {
	e := allPacks(t)
	cat := config.NewCatalog([]config.CatalogBlock{{Target: "shop", Tables: []config.TableBlock{{Name: "public.customers",
		Columns: []config.ColumnBlock{{Name: "name"}, {Name: "email", Tags: []string{"pii"}}}}}}},
		[]config.GroupBlock{{Name: "analysts", Selectors: []string{"agent:name:analyst"}}, {Name: "support", Selectors: []string{"agent:name:support"}}})
	az := authz.NewAuthorizer(e, cat)
	for _, tc := range []struct{ persona, column, want string }{
		{"analyst", "name", ""},
		{"analyst", "email", "hash"},
		{"support", "email", "partial"},
		{"stranger", "name", "redact"}, // no policy: the configured default
	} {
		c := authz.Connect{Peer: identity.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/agent/" + tc.persona),
			Attestation: &identity.Attestation{Selectors: []string{"agent:name:" + tc.persona}}}, Target: "shop"}
		got, d := az.ColumnMask(c, "public.customers", tc.column, authz.Statement{Kind: "select"}, authz.ApprovalState{}, "redact")
		if got != tc.want {
			t.Errorf("%s reads %s: mask %q (decision %+v), want %q", tc.persona, tc.column, got, d, tc.want)
		}
	}
}

// allPacks loads every pack together, as the demo does.
func allPacks(t *testing.T) *authz.Engine {
	t.Helper()
	schema, err := authz.ParseSchemaFor("svidbroker.cedarschema", policies.Schema, demoCatalog(t))
	if err != nil {
		t.Fatal(err)
	}
	e, err := authz.New(authz.Config{Dir: "packs", Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// demoCatalog is policies/catalog.hcl, as the stack and the demo configure it.
func demoCatalog(t *testing.T) *authz.Catalog {
	t.Helper()
	file, diags := hclparse.NewParser().ParseHCLFile("catalog.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var c struct {
		Catalogs []config.CatalogBlock `hcl:"catalog,block"`
		Groups   []config.GroupBlock   `hcl:"group,block"`
	}
	if diags := gohcl.DecodeBody(file.Body, nil, &c); diags.HasErrors() {
		t.Fatal(diags)
	}
	if err := config.CheckRoutes(c.Catalogs); err != nil {
		t.Fatal(err)
	}
	return config.NewCatalog(c.Catalogs, c.Groups)
}

// TestFieldMaskStrategies masks each persona's API response fields under all packs, through
// FieldMask as the engine asks it: the same strategies as the personas' columns.
func TestFieldMaskStrategies(t *testing.T) {
	az := authz.NewAuthorizer(allPacks(t), demoCatalog(t))
	get := authz.HTTPRequest{Target: "api", Route: "GET /v1/customers/{id}", Method: "GET", Path: "/v1/customers/1", Params: map[string]string{"id": "1"}}
	list := authz.HTTPRequest{Target: "api", Route: "GET /v1/customers", Method: "GET", Path: "/v1/customers", Query: map[string]string{"limit": "5"}}
	for _, tc := range []struct {
		persona string
		r       authz.HTTPRequest
		field   string
		want    string
	}{
		{"analyst", get, "$.email", "hash"},
		{"analyst", list, "$.items[*].ssn", "hash"},
		{"support", get, "$.ssn", "partial"},
		{"support", list, "$.items[*].email", "partial"},
		{"migrator", get, "$.ssn", "redact"},
		{"intruder", get, "$.email", "null"}, // no policy: the configured default
	} {
		c := authz.Connect{Peer: identity.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/agent/" + tc.persona),
			Attestation: &identity.Attestation{Selectors: []string{"agent:name:" + tc.persona}}}, Target: "api"}
		got, d := az.FieldMask(c, tc.r, tc.field, authz.ApprovalState{}, "null")
		if got != tc.want {
			t.Errorf("%s reads %s: mask %q (policies %v), want %q", tc.persona, tc.field, got, d.Reasons, tc.want)
		}
	}
	// And the requests themselves: the analyst may not delete, the migrator's delete is held, the
	// intruder reads nothing.
	del := authz.HTTPRequest{Target: "api", Route: "DELETE /v1/orders/{id}", Method: "DELETE", Path: "/v1/orders/7", Params: map[string]string{"id": "7"}}
	for _, tc := range []struct {
		persona  string
		r        authz.HTTPRequest
		allow    bool
		approval string
	}{
		{"analyst", get, true, ""}, {"analyst", del, false, ""}, {"migrator", del, true, "required"}, {"intruder", get, false, ""},
	} {
		c := authz.Connect{Peer: identity.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/agent/" + tc.persona),
			Attestation: &identity.Attestation{Selectors: []string{"agent:name:" + tc.persona}}}, Target: "api"}
		d, err := az.HTTP(c, tc.r, authz.ApprovalState{})
		if d.Allow != tc.allow || (err == nil) != tc.allow || d.Obligations.Approval != tc.approval {
			t.Errorf("%s %s: allow %v approval %q (%v), want %v %q", tc.persona, tc.r.Route, d.Allow, d.Obligations.Approval, err, tc.allow, tc.approval)
		}
	}
}
