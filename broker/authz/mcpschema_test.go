package authz

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/policies"
)

func TestMCPArgsSchemaTypesEachProperty(t *testing.T) {
	got, err := MCPArgsSchema(map[string]map[string]json.RawMessage{"tools": mcpSchemas})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`type MCPArgs = { "amount"?: Long, "columns"?: Set<String>, "filter"?: { "since"?: Long, "status"?: String }, "id"?: Long, "limit"?: Long, "order_id"?: Long, "reason"?: String, "table"?: String, "text"?: String, "urgent"?: Bool };`,
		"//   tools/refund .ratio: a number that may be fractional",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("MCPArgsSchema lacks %q:\n%s", want, got)
		}
	}
	// Without tools, an empty record, which the schema still parses with.
	empty, err := MCPArgsSchema(nil)
	if err != nil || !strings.Contains(empty, "type MCPArgs = { };") {
		t.Errorf("no tools: %q, %v", empty, err)
	}
	if _, err := ParseSchema("s", policies.Schema); err != nil {
		t.Errorf("the schema without tools: %v", err)
	}
}

func TestMCPArgsSchemaRules(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tools  map[string]map[string]json.RawMessage
		want   string // in the fragment
		errors string // in the error, if one is expected
	}{
		{"an integral enum of numbers is a Long", one(`{"type":"object","properties":{"n":{"type":"number","enum":[0,2,3e2]}}}`), `"n"?: Long`, ""},
		{"a const whole number is a Long", one(`{"type":"object","properties":{"n":{"type":"number","const":7}}}`), `"n"?: Long`, ""},
		{"a fractional enum is left out", one(`{"type":"object","properties":{"n":{"type":"number","enum":[1,2.5]}}}`), "t/a .n: a number that may be fractional", ""},
		{"a fractional multipleOf is left out", one(`{"type":"object","properties":{"n":{"type":"number","multipleOf":0.5}}}`), "{ }", ""},
		{"an array of numbers is left out", one(`{"type":"object","properties":{"l":{"type":"array","items":{"type":"integer"}}}}`), "t/a .l: an array of other than strings", ""},
		{"several types are left out", one(`{"type":"object","properties":{"x":{"type":["string","integer"]}}}`), "t/a .x: no single JSON type", ""},
		{"no type is left out", one(`{"type":"object","properties":{"x":{"anyOf":[{"type":"string"}]}}}`), "t/a .x: no single JSON type", ""},
		{"an odd name is left out", one(`{"type":"object","properties":{"a b":{"type":"string"},"ok":{"type":"string"}}}`), `{ "ok"?: String }`, ""},
		{"a name cannot break the comment", one(`{"type":"object","properties":{"x\ntype Evil = {};":{"type":"string"}}}`), "not letters, digits", ""},
		{"records nest four deep", one(`{"type":"object","properties":{"a":{"type":"object","properties":{"b":{"type":"object","properties":{"c":{"type":"object","properties":{"d":{"type":"object","properties":{"e":{"type":"object","properties":{"f":{"type":"string"}}}}}}}}}}}}}`),
			`{ "a"?: { "b"?: { "c"?: { "d"?: { } } } } }`, ""},
		{"two tools merge records", map[string]map[string]json.RawMessage{"t": {
			"a": json.RawMessage(`{"type":"object","properties":{"f":{"type":"object","properties":{"x":{"type":"string"}}}}}`),
			"b": json.RawMessage(`{"type":"object","properties":{"f":{"type":"object","properties":{"y":{"type":"integer"}}}}}`)}},
			`{ "f"?: { "x"?: String, "y"?: Long } }`, ""},
		{"two types of one name", map[string]map[string]json.RawMessage{"t": {
			"a": json.RawMessage(`{"type":"object","properties":{"id":{"type":"string"}}}`)}, "u": {
			"b": json.RawMessage(`{"type":"object","properties":{"id":{"type":"integer"}}}`)}},
			"", `argument "id" is String in tool "a" of target "t" and Long in tool "b" of target "u"`},
		{"two types of a nested name", map[string]map[string]json.RawMessage{"t": {
			"a": json.RawMessage(`{"type":"object","properties":{"f":{"type":"object","properties":{"x":{"type":"string"}}}}}`),
			"b": json.RawMessage(`{"type":"object","properties":{"f":{"type":"object","properties":{"x":{"type":"boolean"}}}}}`)}},
			"", `argument "f.x" is String in tool "a"`},
		{"not a schema", one(`[1]`), "t/a: its input schema is not a JSON Schema object", ""},
		{"a boolean subschema", one(`{"type":"object","properties":{"x":true,"y":{"type":"string"}}}`), "t/a .x: not a JSON Schema object", ""},
		{"a bad type", one(`{"type":"object","properties":{"x":{"type":7}}}`), `t/a .x: "type" is neither`, ""},
		{"a multipleOf of zero", one(`{"type":"object","properties":{"n":{"type":"number","multipleOf":0}}}`), "t/a .n: a number that may be fractional", ""},
		{"an integral enum beside a fractional multipleOf", one(`{"type":"object","properties":{"n":{"type":"number","multipleOf":0.5,"enum":[1,2]}}}`), `"n"?: Long`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MCPArgsSchema(tc.tools)
			if tc.errors != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errors) {
					t.Fatalf("error %v, want %q", err, tc.errors)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("fragment lacks %q:\n%s", tc.want, got)
			}
			// Whatever the schemas, the fragment parses with the schema.
			if _, err := ParseSchemaFor("s", policies.Schema, NewCatalog([]CatalogTarget{{Name: "t", Kind: "mcp", ToolSchemas: tc.tools["t"]}}, nil)); err != nil {
				t.Errorf("the schema with the fragment: %v", err)
			}
		})
	}
}

func one(schema string) map[string]map[string]json.RawMessage {
	return map[string]map[string]json.RawMessage{"t": {"a": json.RawMessage(schema)}}
}

func TestMCPArgsValidatePoliciesStrictly(t *testing.T) {
	s, err := ParseSchemaFor("svidbroker.cedarschema", policies.Schema, mcpCatalog)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, src, want string
	}{
		{"a misspelt name under has", `@id("p")
forbid (principal, action == Action::"mcp:call", resource == Tool::"tools/refund")
when { context.args has amout && context.args.amout > 100 };`, `p.cedar:1 @id("p"): context.args.amout: no tool of an mcp target's pins declares argument "amout" (declared here: amount, columns,`},
		{"a misspelt nested name", `@id("p")
permit (principal, action == Action::"mcp:call", resource)
when { context.args has filter && context.args.filter has stauts };`, `context.args.filter.stauts: no tool of an mcp target's pins declares argument "stauts" (declared here: since, status)`},
		{"a misspelt name by index", `@id("p")
permit (principal, action == Action::"mcp:call", resource)
when { context.args has table && context.args["tabel"] == "x" };`, `context.args.tabel: no tool`},
		{"a wrong type", `@id("p")
permit (principal, action == Action::"mcp:call", resource)
when { context.args has amount && context.args.amount == "100" };`, `p.cedar:1 @id("p"): the types Long and String`},
		{"an unguarded optional", `@id("p")
permit (principal, action == Action::"mcp:call", resource)
when { context.args.amount > 1 };`, `optional attribute`},
		{"args of an HTTP context", `@id("p")
permit (principal, action == Action::"http:get", resource)
when { context.args.table == "x" };`, `p.cedar:1 @id("p")`},
		{"a tool's resource attribute", `@id("p")
permit (principal, action == Action::"mcp:read", resource)
when { resource.name == "x" };`, "attribute `name` on entity type `MCPResource` not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writePolicies(t, dir, map[string]string{"p.cedar": tc.src})
			_, err := LoadDir(dir, s)
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("loaded (%v); want refused", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
	// The forms a policy should use load.
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"p.cedar": mcpPolicies + `
@id("nested")
permit (principal, action == Action::"mcp:call", resource)
when { context.args has filter && context.args.filter has status && context.args.filter.status == "open" &&
       context.args has columns && context.args.columns.contains("id") && context.method == "tools/call" };`})
	if _, err := LoadDir(dir, s); err != nil {
		t.Fatalf("well-formed policies refused: %v", err)
	}
}

// FuzzMCPArgs generates MCPArgs from any input schema and converts any arguments with it: neither
// panics, a generated fragment always parses with the schema, and a converted record holds only
// declared names.
func FuzzMCPArgs(f *testing.F) {
	f.Add(`{"type":"object","properties":{"id":{"type":"integer"},"t":{"type":"string","enum":["a"]}}}`, `{"id":1,"t":"a"}`)
	f.Add(`{"type":"object","properties":{"f":{"type":"object","properties":{"x":{"type":["integer","null"]}}}}}`, `{"f":{"x":null}}`)
	f.Add(`{"type":"object","properties":{"l":{"type":"array","items":{"type":"string"}},"n":{"type":"number","multipleOf":2}}}`, `{"l":["a"],"n":4.0}`)
	f.Add(`{"type":"object","properties":{"n":{"type":"number"}}}`, `{"n":1e308}`)
	f.Add(`{"type":"object","properties":{"n":{"type":"integer"}}}`, `{"n":-9223372036854775809}`)
	f.Fuzz(func(t *testing.T, schema, args string) {
		tools := map[string]map[string]json.RawMessage{"t": {"a": json.RawMessage(schema)}}
		frag, err := MCPArgsSchema(tools)
		if err != nil {
			return
		}
		if _, err := ParseSchemaFor("s", policies.Schema, NewCatalog([]CatalogTarget{{Name: "t", Kind: "mcp", ToolSchemas: tools["t"]}}, nil)); err != nil {
			t.Fatalf("fragment %q does not parse: %v", frag, err)
		}
		gen, _ := buildMCPArgs(tools)
		dec := json.NewDecoder(strings.NewReader(args))
		dec.UseNumber()
		var m map[string]any
		if dec.Decode(&m) != nil {
			return
		}
		rec, err := (&Authorizer{mcpArgs: gen}).MCPArgs("a", m)
		if err != nil {
			return
		}
		for k := range rec.All() {
			if _, ok := gen.attrs[string(k)]; !ok {
				t.Fatalf("undeclared argument %q converted", k)
			}
		}
	})
}

// TestUndeclaredArgsCheckNeedsAnMCPTarget: without an mcp target no MCP decision happens, and policy
// packs written for one still load; an mcp target without pins declares no argument, so a policy
// reading one is refused there (its forbid would never apply).
func TestUndeclaredArgsCheckNeedsAnMCPTarget(t *testing.T) {
	src := `@id("p")
forbid (principal, action == Action::"mcp:call", resource)
when { context.args has amount && context.args.amount > 100 };`
	for _, tc := range []struct {
		name string
		cat  *Catalog
		ok   bool
	}{
		{"no mcp target", NewCatalog([]CatalogTarget{{Name: "shop", Kind: "postgres"}}, nil), true},
		{"an mcp target without pins", NewCatalog([]CatalogTarget{{Name: "tools", Kind: "mcp"}}, nil), false},
		{"tools declared without pins", NewCatalog([]CatalogTarget{{Name: "tools", Tools: []CatalogTool{{Name: "refund"}}}}, nil), false},
		{"pins declaring the name", mcpCatalog, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSchemaFor("s", policies.Schema, tc.cat)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			writePolicies(t, dir, map[string]string{"p.cedar": src})
			_, err = LoadDir(dir, s)
			if (err == nil) != tc.ok {
				t.Errorf("load error %v, want ok %v", err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), `declares argument "amount"`) {
				t.Errorf("error %v does not name the argument", err)
			}
		})
	}
}

// MCPArgs for two tools: each property typed, the fractional number left out and said so.
func ExampleMCPArgsSchema() {
	frag, err := MCPArgsSchema(map[string]map[string]json.RawMessage{"tools": {
		"refund": json.RawMessage(`{"type":"object","properties":{"order_id":{"type":"integer"},"amount":{"type":"integer"},"reason":{"type":"string"}}}`),
		"query":  json.RawMessage(`{"type":"object","properties":{"table":{"type":"string","enum":["orders","customers"]},"ratio":{"type":"number"}}}`),
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(frag)
	// Output:
	// // Generated from the input schemas of the mcp targets' pinned tools.
	// // Left out of context.args, having no Cedar type:
	// //   tools/query .ratio: a number that may be fractional (no Cedar decimal is offered)
	// type MCPArgs = { "amount"?: Long, "order_id"?: Long, "reason"?: String, "table"?: String };
}
