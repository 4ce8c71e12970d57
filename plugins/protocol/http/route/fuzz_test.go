package route

import (
	"net/url"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
)

func FuzzRouteMatch(f *testing.F) {
	for _, s := range []string{
		"/v1/customers/42", "/v1/customers/42/orders?x=1", "/files/a/b/c", "/v1/customers/%2e%2e", "/files/..%2f..%2fetc",
		"/v1/customers/a%20b", "https://api.example.com/v1/customers/1", "/v1//customers", "/v1/customers/%252F", "/",
		"/v1/customers/..;/x", "/files/a/%2E/b",
	} {
		f.Add("GET", s)
	}
	f.Add("DELETE", "/v1/orders/1")
	tb := table(f, routes...)
	f.Fuzz(func(t *testing.T, method, target string) {
		m, err := tb.Match(method, target, "api.example.com")
		if err != nil {
			return
		}
		again, err := tb.Match(method, m.Path, "")
		if err != nil || again.Route != m.Route || again.Path != m.Path || len(again.Params) != len(m.Params) {
			t.Fatalf("%q matched %s as %q, which re-matches %v (%v)", target, m.Route.Pattern, m.Path, again.Route, err)
		}
		for i := range m.Params {
			if again.Params[i] != m.Params[i] {
				t.Fatalf("%q: parameter %v became %v", target, m.Params[i], again.Params[i])
			}
		}
		// The reference: net/url's reading of the raw path.
		path, _, _ := strings.Cut(target, "?")
		if i := strings.Index(path, "://"); i >= 0 {
			_, path, _ = strings.Cut(path[i+3:], "/")
		}
		low := strings.ToLower(path)
		if strings.Contains(low, "%2f") || strings.Contains(low, "%5c") || strings.Contains(path, "\\") {
			t.Fatalf("%q matched with an encoded slash", target)
		}
		for _, seg := range strings.Split(path, "/") {
			dec, err := url.PathUnescape(seg)
			if err != nil {
				t.Fatalf("%q matched with a segment net/url cannot decode", target)
			}
			if dec == "." || dec == ".." || strings.HasPrefix(dec, "..;") || strings.Contains(dec, "%") {
				t.Fatalf("%q matched with a dot segment or double encoding", target)
			}
		}
		if u, err := url.ParseRequestURI(m.Path); err != nil || u.Path != "/"+strings.Join(segsOf(m), "/") && len(segsOf(m)) > 0 {
			t.Fatalf("the canonical path %q reads as %v (%v) to net/url", m.Path, u, err)
		}
	})
}

// segsOf parses m.Path back into segments.
func segsOf(m Match) []string {
	tg, _ := ParseTarget(m.Path, "")
	return tg.Segments
}

func TestBlockDecodesFromHCL(t *testing.T) {
	src := `
route "GET /v1/customers/{id}" {
  tags = ["customers"]
  field "$.ssn" { tags = ["pii"] }
  field "$.items[*].email" { tags = ["pii", "contact"] }
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
	m, err := tb.Match("GET", "/v1/customers/7", "")
	if err != nil || len(m.Route.Fields) != 2 || m.Route.Tags[0] != "customers" || m.Route.Fields[1].Tags[1] != "contact" {
		t.Fatalf("got %+v, %v", m.Route, err)
	}
	if _, err := tb.Match("DELETE", "/v1/orders/7", ""); err != nil {
		t.Fatal(err)
	}
}
