package policytest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/broker/authz"
)

const mcpCatalog = `
catalog "tools" {
  kind = "mcp"
  pins = "tools.pins.json"
  tool "get_customer" {
    tags = ["pii"]
    field "$.ssn" { tags = ["pii"] }
  }
}
group "agents" { ids = ["spiffe://example.org/agent/*"] }
`

const mcpPins = `{"version":1,"target":"tools","tools":[
 {"name":"query","inputSchema":{"type":"object","properties":{"table":{"type":"string"},"limit":{"type":"integer"},
   "filter":{"type":"object","properties":{"ids":{"type":"array","items":{"type":"string"}}}}}}},
 {"name":"get_customer","inputSchema":{"type":"object","properties":{"id":{"type":"integer"}}}}]}`

const mcpPolicy = `
@id("query-orders")
permit (principal in Group::"agents", action == Action::"mcp:call", resource == Tool::"tools/query")
when { context.args has table && context.args.table == "orders" &&
       !(context.args has filter && context.args.filter has ids && context.args.filter.ids.contains("x")) };

@id("big-queries")
forbid (principal, action == Action::"mcp:call", resource == Tool::"tools/query")
when { context.args has limit && context.args.limit > 100 };

@id("ssn")
@mask("hash")
forbid (principal, action == Action::"mcp:read-unmasked", resource in Target::"tools");

@id("prompt")
permit (principal, action == Action::"mcp:prompt", resource == Prompt::"tools/hello")
when { context.protocolVersion == "2025-11-25" };
`

// mcpRun writes the policies, the pin file and a test file holding the catalog and tests, loads the
// policies with the schema the tests' catalogs generate, and runs the tests.
func mcpRun(t *testing.T, tests string) ([]Result, error) {
	t.Helper()
	dir := t.TempDir()
	for name, src := range map[string]string{"p.cedar": mcpPolicy, "p.test.hcl": mcpCatalog + tests, "tools.pins.json": mcpPins} {
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

// TestMCPRequestsInTestFiles: a test states a tool and its arguments (nested, sets, numbers), a
// field, a prompt and the protocol version, and whether the list shows the entry; each reaches the
// policies as the broker gives them, and a wrong expectation is reported.
func TestMCPRequestsInTestFiles(t *testing.T) {
	results, err := mcpRun(t, `
test "orders" {
  principal = "spiffe://example.org/agent/a"
  action    = "mcp:call"
  target    = "tools"
  tool      = "query"
  args      = { table = "orders", limit = 5, filter = { ids = ["a", "b"] } }
  expect    = "allow"
  reasons   = ["query-orders"]
  listed    = true
}
test "a filter the permit excludes" {
  principal = "spiffe://example.org/agent/a"
  action    = "mcp:call"
  target    = "tools"
  tool      = "query"
  args      = { table = "orders", filter = { ids = ["x"] } }
  expect    = "deny"
}
test "a large limit, still listed" {
  principal = "spiffe://example.org/agent/a"
  action    = "mcp:call"
  target    = "tools"
  tool      = "query"
  args      = { table = "orders", limit = 1000 }
  expect    = "deny"
  reasons   = ["big-queries"]
  listed    = true
}
test "a masked field" {
  principal = "spiffe://example.org/agent/a"
  action    = "mcp:read-unmasked"
  target    = "tools"
  tool      = "get_customer"
  field     = "$.ssn"
  expect    = "deny"
  obligations { mask = "hash" }
}
test "a prompt under its version" {
  principal        = "spiffe://example.org/agent/a"
  action           = "mcp:prompt"
  target           = "tools"
  prompt           = "hello"
  protocol_version = "2025-11-25"
  expect           = "allow"
  listed           = true
}
test "a prompt under the default version" {
  principal = "spiffe://example.org/agent/a"
  action    = "mcp:prompt"
  target    = "tools"
  prompt    = "hello"
  expect    = "deny"
}
test "wrong: listed" {
  principal = "spiffe://example.org/agent/a"
  action    = "mcp:call"
  target    = "tools"
  tool      = "get_customer"
  expect    = "deny"
  listed    = true
}
`)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		wrong := strings.HasPrefix(r.Name, "wrong")
		if wrong != (len(r.Diff) > 0) {
			t.Errorf("%s: diff %q", r.Name, r.Diff)
		}
		if wrong && !strings.Contains(strings.Join(r.Diff, "\n"), "listed: expected shown, got hidden") {
			t.Errorf("%s: diff %q", r.Name, r.Diff)
		}
	}
	if len(results) != 7 {
		t.Errorf("%d results", len(results))
	}
}

// TestMCPTestMistakes: a case that cannot be a broker's request is an error naming the file, line
// and what is wrong.
func TestMCPTestMistakes(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`tool = "query"
  args = { limit = "many" }`, `argument "limit" is declared Long; the call gives a string`},
		{`tool = "query"
  args = { limit = 1.5 }`, `argument "limit" is declared Long: the call gives a number with a fraction`},
		{`tool = "query"
  args = ["orders"]`, "args is an object of arguments"},
		{`prompt = "hello"`, "mcp:call names no prompt"},
		{`tool = "get_customer"
  field = "$.ssn"`, "a tool's field is asked mcp:read-unmasked, not mcp:call"},
		{``, "mcp:call is asked of a tool: give its tool"},
	} {
		_, err := mcpRun(t, `
test "mistake" {
  principal = "spiffe://example.org/agent/a"
  action    = "mcp:call"
  target    = "tools"
  expect    = "deny"
  `+tc.body+`
}
`)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.body, err, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), "p.test.hcl:") {
			t.Errorf("error %v names no file and line", err)
		}
	}
}
