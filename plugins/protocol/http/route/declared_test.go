package route

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
)

func TestDeclaredQueryAndBodyDecodeFromHCL(t *testing.T) {
	src := `
route "POST /v1/orders/{order}/refunds/{rest...}" {
  query = ["dry_run", "page-size"]
  body  = { order_id = "Long", reason = "String", notify = "Bool" }
}
route "GET /v1/customers" {
  query = ["limit"]
}
route "DELETE /v1/orders/{id}" {}
`
	file, diags := hclparse.NewParser().ParseHCL([]byte(src), "catalog.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var c struct {
		Routes []Block `hcl:"route,block"`
	}
	if diags := gohcl.DecodeBody(file.Body, nil, &c); diags.HasErrors() {
		t.Fatal(diags)
	}
	tb, err := NewTable(c.Routes)
	if err != nil {
		t.Fatal(err)
	}
	m, err := tb.Match("POST", "/v1/orders/7/refunds/a/b", "")
	if err != nil {
		t.Fatal(err)
	}
	r := m.Route
	if !slices.Equal(r.Params, []string{"order", "rest"}) || !slices.Equal(r.Query, []string{"dry_run", "page-size"}) ||
		!maps.Equal(r.Body, map[string]string{"order_id": "Long", "reason": "String", "notify": "Bool"}) {
		t.Fatalf("route %+v", r)
	}
	if r.Template() != "/v1/orders/{order}/refunds/{rest...}" {
		t.Errorf("template %q", r.Template())
	}
	m, err = tb.Match("DELETE", "/v1/orders/7", "")
	if err != nil || m.Route.Body != nil || m.Route.Query != nil || !slices.Equal(m.Route.Params, []string{"id"}) {
		t.Fatalf("a route without declarations: %+v, %v", m.Route, err)
	}
	var patterns []string
	for _, r := range tb.Routes() {
		patterns = append(patterns, r.Pattern)
	}
	if !slices.Equal(patterns, []string{"GET /v1/customers", "POST /v1/orders/{order}/refunds/{rest...}", "DELETE /v1/orders/{id}"}) {
		t.Errorf("Routes: %q", patterns)
	}
}

func TestParseRefusesBadDeclarations(t *testing.T) {
	many := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, "q"+strings.Repeat("x", i%5)+string(rune('a'+i%26))+string(rune('a'+i/26)))
		}
		return out
	}
	tests := []struct {
		name string
		b    Block
		want string
	}{
		{"unknown body type", Block{Pattern: "POST /a", Body: map[string]string{"amount": "Number"}}, `body member "amount" has type "Number"`},
		{"lower-case body type", Block{Pattern: "POST /a", Body: map[string]string{"amount": "long"}}, `type "long"`},
		{"empty body member", Block{Pattern: "POST /a", Body: map[string]string{"": "Long"}}, `body member ""`},
		{"body member with a bracket", Block{Pattern: "POST /a", Body: map[string]string{"a[0]": "Long"}}, `body member "a[0]"`},
		{"query with an equals sign", Block{Pattern: "GET /a", Query: []string{"a=b"}}, `query parameter "a=b"`},
		{"query starting with a digit", Block{Pattern: "GET /a", Query: []string{"1a"}}, `query parameter "1a"`},
		{"query with a space", Block{Pattern: "GET /a", Query: []string{"a b"}}, `query parameter "a b"`},
		{"query listed twice", Block{Pattern: "GET /a", Query: []string{"limit", "limit"}}, "listed twice"},
		{"long query name", Block{Pattern: "GET /a", Query: []string{strings.Repeat("a", MaxDeclaredNameLen+1)}}, "1 to 64"},
		{"too many query parameters", Block{Pattern: "GET /a", Query: many(MaxQueryParams + 1)}, "at most"},
		{"bad pattern", Block{Pattern: "GET /a/{id}.json"}, "not allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse(tc.b); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
			if _, err := NewTable([]Block{tc.b}); err == nil {
				t.Fatal("NewTable accepted it")
			}
		})
	}
	// Controls: the longest name, every body type, the most query parameters.
	for _, b := range []Block{
		{Pattern: "GET /a", Query: []string{strings.Repeat("a", MaxDeclaredNameLen), "_x", "a.b-c_1"}},
		{Pattern: "POST /a", Body: map[string]string{"s": "String", "n": "Long", "b": "Bool"}},
		{Pattern: "GET /a", Query: many(MaxQueryParams)},
	} {
		if _, err := Parse(b); err != nil {
			t.Errorf("%+v: %v", b, err)
		}
	}
}

// FuzzParseDeclarations holds Parse to its checks on any declarations: what it accepts has names of
// the declared alphabet and body types of BodyTypes.
func FuzzParseDeclarations(f *testing.F) {
	f.Add("GET /v1/customers/{id}", "limit", "amount", "Long")
	f.Add("POST /a", "a=b", "a b", "Number")
	f.Add("POST /a/{x}/{y...}", "_q.1-2", "_", "Bool")
	f.Fuzz(func(t *testing.T, pattern, query, member, typ string) {
		r, err := Parse(Block{Pattern: pattern, Query: []string{query}, Body: map[string]string{member: typ}})
		if err != nil {
			return
		}
		for _, n := range []string{query, member} {
			if declaredName(n) != nil {
				t.Fatalf("accepted name %q", n)
			}
		}
		if !slices.Contains(BodyTypes, r.Body[member]) {
			t.Fatalf("accepted type %q", typ)
		}
		for _, p := range r.Params {
			if !validName(p) {
				t.Fatalf("parameter %q", p)
			}
		}
	})
}
