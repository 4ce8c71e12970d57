package policytest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/broker/authz"
)

const httpCatalog = `
catalog "api" {
  kind = "http"
  route "GET /v1/customers/{id}" {
    field "$.ssn" { tags = ["pii", "sensitive"] }
    field "$.name" { tags = ["contact"] }
  }
  route "GET /v1/customers" { query = ["limit"] }
  route "POST /v1/refunds" {
    body = { order_id = "Long", amount = "Long", reason = "String", notify = "Bool" }
  }
}
group "agents" { ids = ["spiffe://example.org/agent/*"] }
`

const httpPolicy = `
@id("customers")
permit (principal in Group::"agents", action == Action::"http:get", resource == Route::"api/GET /v1/customers/{id}")
unless { context.params has id && context.params.id == "13" };

@id("pages")
permit (principal in Group::"agents", action == Action::"http:get", resource == Route::"api/GET /v1/customers")
when { context.query has limit && context.query.limit == "5" && context.path == "/v1/customers" };

@id("refunds")
@approval("required")
permit (principal in Group::"agents", action == Action::"http:post", resource == Route::"api/POST /v1/refunds")
when { context.body has amount && context.body.amount <= 100 && !(context.body has notify && context.body.notify) };

@id("clear")
permit (principal in Group::"agents", action == Action::"field:read-unmasked", resource in Target::"api");

@id("ssn")
@mask("partial")
forbid (principal in Group::"agents", action == Action::"field:read-unmasked", resource in Target::"api")
when { resource.tags.contains("sensitive") && context.params has id && context.params.id != "0" };
`

// httpRun writes the policy and a test file holding the catalog and tests, loads the policies with
// the schema the tests' catalogs generate, and runs the tests.
func httpRun(t *testing.T, tests string) ([]Result, error) {
	t.Helper()
	dir := t.TempDir()
	for name, src := range map[string]string{"p.cedar": httpPolicy, "p.test.hcl": httpCatalog + tests} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	schema, err := Schema(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := authz.New(authz.Config{Dir: dir, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	return Run(e, dir)
}

// TestHTTPRequestsInTestFiles: a test states a route, its parameters, query and body, and a field's
// mask; each reaches the policies as the broker gives them.
func TestHTTPRequestsInTestFiles(t *testing.T) {
	results, err := httpRun(t, `
test "a customer" {
  principal = "spiffe://example.org/agent/a"
  action    = "http:get"
  target    = "api"
  route     = "GET /v1/customers/{id}"
  params    = { id = "42" }
  expect    = "allow"
  reasons   = ["customers"]
}
test "customer 13" {
  principal = "spiffe://example.org/agent/a"
  action    = "http:get"
  target    = "api"
  route     = "GET /v1/customers/{id}"
  params    = { id = "13" }
  expect    = "deny"
}
test "a page of five" {
  principal = "spiffe://example.org/agent/a"
  action    = "http:get"
  target    = "api"
  route     = "GET /v1/customers"
  query     = { limit = "5" }
  expect    = "allow"
}
test "a page of fifty" {
  principal = "spiffe://example.org/agent/a"
  action    = "http:get"
  target    = "api"
  route     = "GET /v1/customers"
  query     = { limit = "50" }
  expect    = "deny"
}
test "a small refund, held" {
  principal = "spiffe://example.org/agent/a"
  action    = "http:post"
  target    = "api"
  route     = "POST /v1/refunds"
  body      = { order_id = 7, amount = 100, reason = "damaged", notify = false }
  expect    = "allow"
  obligations { approval = "required" }
}
test "a large refund" {
  principal = "spiffe://example.org/agent/a"
  action    = "http:post"
  target    = "api"
  route     = "POST /v1/refunds"
  body      = { order_id = 7, amount = 101, reason = "damaged" }
  expect    = "deny"
}
test "ssn masked" {
  principal = "spiffe://example.org/agent/a"
  action    = "field:read-unmasked"
  target    = "api"
  route     = "GET /v1/customers/{id}"
  params    = { id = "1" }
  field     = "$.ssn"
  expect    = "deny"
  obligations { mask = "partial" }
}
test "name clear" {
  principal = "spiffe://example.org/agent/a"
  action    = "field:read-unmasked"
  target    = "api"
  route     = "GET /v1/customers/{id}"
  params    = { id = "1" }
  field     = "$.name"
  expect    = "allow"
}
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 8 {
		t.Fatalf("%d results", len(results))
	}
	for _, r := range results {
		if len(r.Diff) > 0 {
			t.Errorf("%s: %s", r.Name, strings.Join(r.Diff, "; "))
		}
	}
	// A wrong expectation fails, saying what differs: the tests can fail.
	results, err = httpRun(t, `
test "ssn expected clear" {
  principal = "spiffe://example.org/agent/a"
  action    = "field:read-unmasked"
  target    = "api"
  route     = "GET /v1/customers/{id}"
  params    = { id = "1" }
  field     = "$.ssn"
  expect    = "allow"
}
`)
	if err != nil || len(results) != 1 || !strings.Contains(strings.Join(results[0].Diff, ";"), `expected allow, got deny by "ssn"`) {
		t.Fatalf("%+v, %v", results, err)
	}
}

// TestHTTPTestMistakesAreRefused: a request the broker would never ask is an error in the test file,
// saying what to fix.
func TestHTTPTestMistakesAreRefused(t *testing.T) {
	head := "test \"x\" {\n  principal = \"spiffe://example.org/agent/a\"\n  target = \"api\"\n  expect = \"allow\"\n"
	for name, tc := range map[string]struct{ body, says string }{
		"unknown route":        {`action = "http:get"` + "\n" + `route = "GET /v1/nope"`, `route "GET /v1/nope" is not in the catalog of target "api"`},
		"another method":       {`action = "http:delete"` + "\n" + `route = "GET /v1/customers"`, `the broker asks "http:get" of a GET route`},
		"undeclared query":     {`action = "http:get"` + "\n" + `route = "GET /v1/customers"` + "\n" + `query = { offset = "1" }`, `declares no query parameter "offset"`},
		"undeclared member":    {`action = "http:post"` + "\n" + `route = "POST /v1/refunds"` + "\n" + `body = { admin = true }`, `declares no body member "admin"`},
		"member of a type":     {`action = "http:post"` + "\n" + `route = "POST /v1/refunds"` + "\n" + `body = { amount = "5" }`, `"amount" is declared Long, the request gives a String`},
		"fractional amount":    {`action = "http:post"` + "\n" + `route = "POST /v1/refunds"` + "\n" + `body = { amount = 1.5 }`, "an integer"},
		"unknown field":        {`action = "field:read-unmasked"` + "\n" + `route = "GET /v1/customers/{id}"` + "\n" + `field = "$.email"`, `lists no field "$.email"`},
		"field without action": {`action = "http:get"` + "\n" + `route = "GET /v1/customers/{id}"` + "\n" + `field = "$.ssn"`, "field:read-unmasked"},
		"route missing":        {`action = "http:get"`, "name the route"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := httpRun(t, head+tc.body+"\n}\n")
			if err == nil || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "p.test.hcl:") {
				t.Fatalf("error %v; want file:line and %q", err, tc.says)
			}
		})
	}
}
