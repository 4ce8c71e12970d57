package authz

import (
	"errors"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/policies"
)

var httpCatalog = NewCatalog([]CatalogTarget{{Name: "api", Kind: "http",
	Routes: []CatalogRoute{
		{Pattern: "GET /v1/customers/{id}", Tags: []string{"pii"}, Params: []string{"id"},
			Fields: []CatalogField{{Path: "$.email", Tags: []string{"pii"}}, {Path: "$.ssn", Tags: []string{"pii", "sensitive"}}}},
		{Pattern: "GET /v1/customers", Query: []string{"limit"}},
		{Pattern: "DELETE /v1/orders/{id}", Params: []string{"id"}},
		{Pattern: "POST /v1/refunds", Body: map[string]string{"order_id": "Long", "amount": "Long", "reason": "String", "notify": "Bool"}},
	},
	Roles: []CredentialRole{{Name: "api-read", Covers: []string{"http:get"}}, {Name: "api-write", Covers: []string{"http:get", "http:post", "http:delete"}}},
}}, []GroupRule{{Name: "agents", IDs: []string{"spiffe://example.org/agent/*"}}})

// httpEngine is an engine whose schema has the records generated from httpCatalog.
func httpEngine(t testing.TB, src string) *Authorizer {
	t.Helper()
	s, err := ParseSchemaFor("svidbroker.cedarschema", policies.Schema, httpCatalog)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"p.cedar": src})
	e, err := New(Config{Dir: dir, Schema: s})
	if err != nil {
		t.Fatal(err)
	}
	return NewAuthorizer(e, httpCatalog)
}

func httpConnect(name string) Connect {
	return Connect{Peer: identity.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/agent/" + name),
		Attestation: &identity.Attestation{}}, Target: "api"}
}

const httpPolicies = `
@id("read-customers")
@record("metadata")
permit (principal in Group::"agents", action == Action::"http:get", resource in Target::"api")
unless { context.params has id && context.params.id == "13" };

@id("small-pages")
permit (principal in Group::"agents", action == Action::"http:get", resource == Route::"api/GET /v1/customers")
when { context.query has limit && context.query.limit == "5" };

@id("refunds-held")
@approval("required")
permit (principal in Group::"agents", action == Action::"http:post", resource == Route::"api/POST /v1/refunds")
when { context.body has amount && context.body.amount <= 100 && context.body has reason && !(context.body has notify && context.body.notify) };

@id("clear-fields")
permit (principal in Group::"agents", action == Action::"field:read-unmasked", resource in Route::"api/GET /v1/customers/{id}")
when { !resource.tags.contains("sensitive") };

@id("ssn-partial")
@mask("partial")
forbid (principal in Group::"agents", action == Action::"field:read-unmasked", resource in Target::"api")
when { resource.tags.contains("sensitive") && resource.path == "$.ssn" };
`

func TestHTTPActionPerMethod(t *testing.T) {
	for m, want := range map[string]string{"GET": "http:get", "HEAD": "http:head", "POST": "http:post", "PUT": "http:put",
		"PATCH": "http:patch", "DELETE": "http:delete", "OPTIONS": "http:options", "get": "", "CONNECT": "", "TRACE": "", "": ""} {
		if got := HTTPAction(m); got != want {
			t.Errorf("HTTPAction(%q) = %q, want %q", m, got, want)
		}
	}
	// Every action HTTPAction names is one of the schema's.
	s := testSchema(t)
	for _, a := range s.HTTPActions() {
		if HTTPAction(strings.ToUpper(strings.TrimPrefix(a, "http:"))) != a {
			t.Errorf("schema action %s has no method", a)
		}
	}
	if len(s.HTTPActions()) != 7 {
		t.Errorf("schema HTTP actions: %v", s.HTTPActions())
	}
}

// TestHTTPDecidesOnTheRouteWithItsContext: the method's action on the route, with the path
// parameters, declared query and typed body members in the context, and the obligations.
func TestHTTPDecidesOnTheRouteWithItsContext(t *testing.T) {
	a := httpEngine(t, httpPolicies)
	c := httpConnect("a")
	get := func(id string) HTTPRequest {
		return HTTPRequest{Target: "api", Route: "GET /v1/customers/{id}", Method: "GET", Path: "/v1/customers/" + id, Params: map[string]string{"id": id}}
	}
	refund := func(amount int64, notify any) HTTPRequest {
		body := map[string]any{"order_id": int64(7), "amount": amount, "reason": "damaged"}
		if notify != nil {
			body["notify"] = notify
		}
		return HTTPRequest{Target: "api", Route: "POST /v1/refunds", Method: "POST", Path: "/v1/refunds", Body: body}
	}
	list := func(q map[string]string) HTTPRequest {
		return HTTPRequest{Target: "api", Route: "GET /v1/customers", Method: "GET", Path: "/v1/customers", Query: q}
	}
	tests := []struct {
		name     string
		r        HTTPRequest
		allow    bool
		policies []string
		approval string
		says     string // in the error
	}{
		{"a customer", get("42"), true, []string{"read-customers"}, "", ""},
		{"the customer a parameter condition forbids", get("13"), false, nil, "", `GET (action http:get) on route "GET /v1/customers/{id}" of target "api" denied: no policy permits it; to allow it, permit Action::"http:get" on Route::"api/GET /v1/customers/{id}" for this caller`},
		{"a declared query", list(map[string]string{"limit": "5"}), true, []string{"read-customers", "small-pages"}, "", ""},
		{"a small refund, held", refund(100, false), true, []string{"refunds-held"}, "required", ""},
		{"a large refund", refund(101, nil), false, nil, "", `POST (action http:post) on route "POST /v1/refunds"`},
		{"a refund that notifies", refund(5, true), false, nil, "", "no policy permits it"},
		{"a delete", HTTPRequest{Target: "api", Route: "DELETE /v1/orders/{id}", Method: "DELETE", Path: "/v1/orders/1", Params: map[string]string{"id": "1"}}, false, nil, "", `permit Action::"http:delete" on Route::"api/DELETE /v1/orders/{id}"`},
		// Requests that do not fit their route are refused before Cedar is asked.
		{"a route the catalog does not list", HTTPRequest{Target: "api", Route: "GET /v1/secrets", Method: "GET", Path: "/v1/secrets"}, false, nil, "", `route "GET /v1/secrets" is not in the catalog of target "api"`},
		{"another method than the route's", HTTPRequest{Target: "api", Route: "DELETE /v1/orders/{id}", Method: "GET", Path: "/v1/orders/1"}, false, nil, "", `method "GET" is not the method of route "DELETE /v1/orders/{id}"`},
		{"an undeclared query parameter", list(map[string]string{"limit": "5", "admin": "1"}), false, nil, "", `declares no query parameter "admin"`},
		{"an undeclared body member", HTTPRequest{Target: "api", Route: "POST /v1/refunds", Method: "POST", Body: map[string]any{"role": "x"}}, false, nil, "", `declares no body member "role"`},
		{"a body member of another type", refund(5, "yes"), false, nil, "", `body member "notify" is declared Bool, the request gives a String`},
		{"a float body member", HTTPRequest{Target: "api", Route: "POST /v1/refunds", Method: "POST", Body: map[string]any{"amount": 1.5}}, false, nil, "", `declared Long, the request gives a float64`},
		{"a parameter of no route", HTTPRequest{Target: "api", Route: "GET /v1/customers", Method: "GET", Params: map[string]string{"id": "1"}}, false, nil, "", "has no path parameter {id}"},
		{"another target", HTTPRequest{Target: "other", Route: "GET /v1/customers", Method: "GET"}, false, nil, "", `on a connection to target "api"`},
		{"a method without an action", HTTPRequest{Target: "api", Route: "GET /v1/customers", Method: "TRACE"}, false, nil, "", `method "TRACE" has no action`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := a.HTTP(c, tc.r, ApprovalState{})
			if d.Allow != tc.allow || (err == nil) != tc.allow {
				t.Fatalf("allow %v, error %v; want allow %v", d.Allow, err, tc.allow)
			}
			if d.ID == "" {
				t.Error("no decision ID")
			}
			if strings.Join(d.Reasons, ",") != strings.Join(tc.policies, ",") || d.Obligations.Approval != tc.approval {
				t.Errorf("policies %v approval %q; want %v %q", d.Reasons, d.Obligations.Approval, tc.policies, tc.approval)
			}
			if tc.says != "" && (err == nil || !strings.Contains(err.Error(), tc.says)) {
				t.Errorf("error %v; want %q", err, tc.says)
			}
			if err != nil && strings.Contains(err.Error(), "damaged") {
				t.Errorf("the error quotes a body value: %v", err)
			}
		})
	}
	// A denial by a forbid names the policy, as a statement's does, and is ErrDenied.
	b := httpEngine(t, httpPolicies+`
@id("no-deletes")
@reason("orders are kept")
forbid (principal, action == Action::"http:delete", resource);
@id("deletes")
permit (principal, action == Action::"http:delete", resource);
`)
	_, err := b.HTTP(c, HTTPRequest{Target: "api", Route: "DELETE /v1/orders/{id}", Method: "DELETE", Params: map[string]string{"id": "1"}}, ApprovalState{})
	var denied *Denied
	if !errors.Is(err, ErrDenied) || !errors.As(err, &denied) || !strings.Contains(err.Error(), `on route "DELETE /v1/orders/{id}" of target "api" denied by policy no-deletes`) {
		t.Fatalf("got %v", err)
	}
}

// TestFieldMaskFollowsTheDecidingForbid: a field is clear when field:read-unmasked is permitted, else
// masked with the deciding forbid's @mask, else the default; a field the route does not list is masked.
func TestFieldMaskFollowsTheDecidingForbid(t *testing.T) {
	a := httpEngine(t, httpPolicies)
	c := httpConnect("a")
	r := HTTPRequest{Target: "api", Route: "GET /v1/customers/{id}", Method: "GET", Path: "/v1/customers/1", Params: map[string]string{"id": "1"}}
	for _, tc := range []struct {
		field, want string
		policies    string
	}{
		{"$.email", "", "clear-fields"},
		{"$.ssn", "partial", "ssn-partial"},
		{"$.phone", "redact", ""}, // not a field of the route: masked with the default
	} {
		got, d := a.FieldMask(c, r, tc.field, ApprovalState{}, "redact")
		if got != tc.want || strings.Join(d.Reasons, ",") != tc.policies || d.ID == "" {
			t.Errorf("%s: mask %q by %v, want %q by %q", tc.field, got, d.Reasons, tc.want, tc.policies)
		}
	}
	// FieldMasks decides the same, for all fields at once.
	got, ds := a.FieldMasks(c, r, []string{"$.email", "$.ssn", "$.phone"}, ApprovalState{}, "redact")
	if strings.Join(got, ",") != ",partial,redact" || strings.Join(ds[1].Reasons, ",") != "ssn-partial" || ds[2].ID == "" {
		t.Errorf("FieldMasks: %q, %v", got, ds)
	}
	// Without any permit, the default mask.
	none := httpEngine(t, `@id("x") permit (principal, action == Action::"connect", resource);`)
	if got, _ := none.FieldMask(c, r, "$.email", ApprovalState{}, "hash"); got != "hash" {
		t.Errorf("default deny: %q, want the default", got)
	}
	// A request that does not fit its route masks every field.
	bad := r
	bad.Query = map[string]string{"x": "1"}
	if got, _ := a.FieldMask(c, bad, "$.email", ApprovalState{}, "null"); got != "null" {
		t.Errorf("an ill-fitting request: %q", got)
	}
	if got, _ := a.FieldMasks(c, bad, []string{"$.email", "$.ssn"}, ApprovalState{}, "null"); strings.Join(got, ",") != "null,null" {
		t.Errorf("an ill-fitting request: %q", got)
	}
}

// TestGeneratedRecordsValidatePolicies: policies are validated against the records the catalog
// generates: a declared name with its type passes, an undeclared one or a wrong type is refused.
func TestGeneratedRecordsValidatePolicies(t *testing.T) {
	s, err := ParseSchemaFor("svidbroker.cedarschema", policies.Schema, httpCatalog)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		cond string
		ok   bool
	}{
		{`context.params has id && context.params.id == "1"`, true},
		{`context.query has limit && context.query.limit == "5"`, true},
		{`context.body has amount && context.body.amount > 5`, true},
		{`context.body has notify && context.body.notify`, true},
		{`context.query has offset`, false},                           // not declared: always false
		{`!(context.body has amout)`, false},                          // misspelt: always true
		{`context.params.name == "x"`, false},                         // no route has {name}
		{`context.body has reason && context.body.reason > 5`, false}, // a String
		{`context.body.amount > 5`, false},                            // optional: test with has first
	}
	for _, tc := range cases {
		dir := t.TempDir()
		writePolicies(t, dir, map[string]string{"p.cedar": `@id("p") permit (principal, action == Action::"http:get", resource) when { ` + tc.cond + ` };`})
		_, err := LoadDir(dir, s)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.cond, err, tc.ok)
		}
	}
	// A forbid on a misspelt name is refused, naming the declared ones; without routes every name
	// is undeclared.
	for _, sc := range []struct {
		schema *Schema
		says   string
	}{
		{s, `context.body.amout: no route of the catalog declares body member "amout" (declared: amount, notify, order_id, reason)`},
		{testSchema(t), `context.params.id: no route of the catalog declares path parameter "id"; a test of an undeclared name is always false`},
	} {
		dir := t.TempDir()
		writePolicies(t, dir, map[string]string{"p.cedar": `@id("big") forbid (principal, action == Action::"http:post", resource) when { context.body has amout && context.body.amout > 100 };
@id("id") forbid (principal, action == Action::"http:get", resource) when { context.params has id };`})
		if _, err := LoadDir(dir, sc.schema); err == nil || !strings.Contains(err.Error(), sc.says) {
			t.Errorf("got %v, want %q", err, sc.says)
		}
	}
}

func TestHTTPRecordsRefusesConflictsAndOddNames(t *testing.T) {
	gen, err := HTTPRecords(httpCatalog)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`type HTTPParams = { "id"?: String };`, `type HTTPQuery = { "limit"?: String };`,
		`type HTTPBody = { "amount"?: Long, "notify"?: Bool, "order_id"?: Long, "reason"?: String };`} {
		if !strings.Contains(gen, want) {
			t.Errorf("generated:\n%s\nwant %s", gen, want)
		}
	}
	if gen, err := HTTPRecords(nil); err != nil || !strings.Contains(gen, "type HTTPBody = { };") {
		t.Errorf("no catalog: %q, %v", gen, err)
	}
	for name, routes := range map[string][]CatalogRoute{
		"two types":  {{Pattern: "POST /a", Body: map[string]string{"n": "Long"}}, {Pattern: "POST /b", Body: map[string]string{"n": "Bool"}}},
		"a bad type": {{Pattern: "POST /a", Body: map[string]string{"n": "Float"}}},
		"a quote":    {{Pattern: "GET /a", Query: []string{`a"b`}}},
		"a brace":    {{Pattern: "GET /a", Query: []string{`a}; type X = {`}}},
		"empty":      {{Pattern: "GET /a", Params: []string{""}}},
	} {
		if _, err := HTTPRecords(NewCatalog([]CatalogTarget{{Name: "api", Routes: routes}}, nil)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestPickRoleWithHTTPCovers: the read role for a caller permitted GETs, the write role for one
// permitted a DELETE held for approval, and refusal for one permitted nothing the roles cover.
func TestPickRoleWithHTTPCovers(t *testing.T) {
	a := httpEngine(t, `
@id("roles") permit (principal, action == Action::"credential:use", resource in Target::"api");
@id("reader") permit (principal == Workload::"spiffe://example.org/agent/reader", action == Action::"http:get", resource in Target::"api");
@id("deleter-get") permit (principal == Workload::"spiffe://example.org/agent/deleter", action == Action::"http:get", resource in Target::"api");
@id("deleter-delete")
@approval("required")
permit (principal == Workload::"spiffe://example.org/agent/deleter", action == Action::"http:delete", resource in Target::"api")
when { context.approval.state == "none" || context.approval.state == "pending" };
@id("misfit") permit (principal == Workload::"spiffe://example.org/agent/misfit", action == Action::"http:get", resource == Route::"api/DELETE /v1/orders/{id}");
`)
	for name, want := range map[string]string{"reader": "api-read", "deleter": "api-write", "misfit": ""} {
		pick, err := a.PickRole(httpConnect(name))
		if pick.Role != want || (want == "") != (err != nil) {
			t.Errorf("%s: picked %q (%v), want %q", name, pick.Role, err, want)
		}
		if want == "" && !errors.Is(err, ErrNoRole) {
			t.Errorf("%s: %v, want ErrNoRole", name, err)
		}
	}
}

// TestCanListsRoutesByMethodAndFields: each route is asked its own method's action, and each field
// field:read-unmasked with its mask.
func TestCanListsRoutesByMethodAndFields(t *testing.T) {
	a := httpEngine(t, httpPolicies)
	caps, err := a.Can(t.Context(), spiffeid.RequireFromString("spiffe://example.org/agent/a"), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Capability{}
	for _, c := range caps {
		got[c.Action+" "+c.Resource] = c
	}
	for k, allow := range map[string]bool{
		`http:get Route::"api/GET /v1/customers/{id}"`:                    true,
		`http:get Route::"api/GET /v1/customers"`:                         true,  // read-customers; small-pages wants limit=5
		`http:post Route::"api/POST /v1/refunds"`:                         false, // only some bodies
		`http:delete Route::"api/DELETE /v1/orders/{id}"`:                 false,
		`field:read-unmasked Field::"api/GET /v1/customers/{id} $.email"`: true,
		`field:read-unmasked Field::"api/GET /v1/customers/{id} $.ssn"`:   false,
	} {
		c, ok := got[k]
		if !ok || c.Allow != allow {
			t.Errorf("%s: listed %v allow %v, want %v", k, ok, c.Allow, allow)
		}
	}
	if m := got[`field:read-unmasked Field::"api/GET /v1/customers/{id} $.ssn"`].Obligations.Mask; m != "partial" {
		t.Errorf("ssn mask %q", m)
	}
	for k := range got {
		if strings.HasPrefix(k, "http:get Route::\"api/DELETE") || strings.HasPrefix(k, "http:delete Route::\"api/GET") {
			t.Errorf("asked of another method's route: %s", k)
		}
	}
}

// FuzzHTTPRecords holds the generated schema to its promise on any names: either HTTPRecords refuses
// them, or the schema with the records parses and declares exactly the three records, so no name can
// inject a declaration.
func FuzzHTTPRecords(f *testing.F) {
	for _, s := range [][3]string{{"id", "limit", "amount"}, {"a.b-c", "_x", "n"}, {`a"b`, "x", "y"}, {"a", "b", `c?: Long }; type Y = { "d`}, {"", "q", "b"}} {
		f.Add(s[0], s[1], s[2], "Long")
	}
	f.Fuzz(func(t *testing.T, param, query, member, typ string) {
		cat := NewCatalog([]CatalogTarget{{Name: "api", Routes: []CatalogRoute{{Pattern: "POST /a/{x}", Params: []string{param},
			Query: []string{query}, Body: map[string]string{member: typ}}}}}, nil)
		gen, err := HTTPRecords(cat)
		if err != nil {
			return
		}
		for _, n := range []string{param, query, member} {
			if !attributeName(n) {
				t.Fatalf("generated a record with name %q", n)
			}
		}
		if strings.Count(gen, "type ") != 3 || strings.Count(gen, "?:") != 3 {
			t.Fatalf("generated:\n%s", gen)
		}
		if _, err := ParseSchemaFor("svidbroker.cedarschema", policies.Schema, cat); err != nil {
			t.Fatalf("the generated records do not parse: %v\n%s", err, gen)
		}
	})
}
