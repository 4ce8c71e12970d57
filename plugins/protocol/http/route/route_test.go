package route

import (
	"errors"
	"strings"
	"testing"
)

func table(t testing.TB, patterns ...string) *Table {
	t.Helper()
	var bs []Block
	for _, p := range patterns {
		bs = append(bs, Block{Pattern: p})
	}
	tb, err := NewTable(bs)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

var routes = []string{
	"GET /",
	"GET /v1/customers/{id}",
	"GET /v1/customers/{id}/orders",
	"DELETE /v1/orders/{id}",
	"GET /files/{path...}",
	"POST /v1/search:run",
}

func TestMatch(t *testing.T) {
	tb := table(t, routes...)
	tests := []struct {
		method, target, host string
		route                string
		params               []Param
		path, query          string
	}{
		{"GET", "/v1/customers/42", "", "GET /v1/customers/{id}", []Param{{"id", "42"}}, "/v1/customers/42", ""},
		{"GET", "/v1/customers/42?x=1&y=%20", "", "GET /v1/customers/{id}", []Param{{"id", "42"}}, "/v1/customers/42", "x=1&y=%20"},
		{"GET", "/v1/customers/a%20b/orders", "", "GET /v1/customers/{id}/orders", []Param{{"id", "a b"}}, "/v1/customers/a%20b/orders", ""},
		{"GET", "/v1/customers/%41", "", "GET /v1/customers/{id}", []Param{{"id", "A"}}, "/v1/customers/A", ""},
		{"GET", "/v1/customers/a;b", "", "GET /v1/customers/{id}", []Param{{"id", "a;b"}}, "/v1/customers/a%3Bb", ""},
		{"GET", "/v1/customers/%C3%A9", "", "GET /v1/customers/{id}", []Param{{"id", "é"}}, "/v1/customers/%C3%A9", ""},
		{"GET", "/v1/customers/...", "", "GET /v1/customers/{id}", []Param{{"id", "..."}}, "/v1/customers/...", ""},
		{"DELETE", "/v1/orders/7", "", "DELETE /v1/orders/{id}", []Param{{"id", "7"}}, "/v1/orders/7", ""},
		{"GET", "/files/a/b/c.txt", "", "GET /files/{path...}", []Param{{"path", "a/b/c.txt"}}, "/files/a/b/c.txt", ""},
		{"GET", "/", "", "GET /", nil, "/", ""},
		{"POST", "/v1/search:run", "", "POST /v1/search:run", nil, "/v1/search:run", ""},
		{"GET", "https://api.example.com/v1/customers/1", "API.example.com", "GET /v1/customers/{id}", []Param{{"id", "1"}}, "/v1/customers/1", ""},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			m, err := tb.Match(tc.method, tc.target, tc.host)
			if err != nil {
				t.Fatal(err)
			}
			if m.Route.Pattern != tc.route || m.Path != tc.path || m.RawQuery != tc.query || len(m.Params) != len(tc.params) {
				t.Fatalf("got %s %v %q %q", m.Route.Pattern, m.Params, m.Path, m.RawQuery)
			}
			for i, p := range tc.params {
				if m.Params[i] != p || m.Param(p.Name) != p.Value {
					t.Errorf("param %d: got %v, want %v", i, m.Params[i], p)
				}
			}
			// The canonical path matches the same route with the same parameters.
			again, err := tb.Match(tc.method, m.Path, "")
			if err != nil || again.Route != m.Route || again.Path != m.Path {
				t.Errorf("the canonical path %q re-matches %v, %v", m.Path, again.Route, err)
			}
		})
	}
}

func TestMatchRefusesAmbiguousTargets(t *testing.T) {
	tb := table(t, routes...)
	bad := []string{
		"/v1/customers/1%2F..%2F..%2Fadmin", "/v1/customers/1%2f", "/v1/customers/a%5Cb", "/v1/customers/a\\b",
		"/v1/customers/../orders/1", "/v1/customers/./1", "/v1/customers/%2e%2e", "/v1/customers/%2E", "/v1/customers/.%2e",
		"/v1/customers/..;x", "/v1/customers/%2e%2e;/orders", "/files/a/..%2f..%2fetc", "/files/a/../../etc",
		"/v1//customers/1", "/v1/customers/1/", "//v1/customers/1", "/v1/customers/%00", "/v1/customers/a%0a",
		"/v1/customers/a\x00", "/v1/customers/a b", "/v1/customers/%zz", "/v1/customers/%4", "/v1/customers/%",
		"/v1/customers/%252F", "/v1/customers/%FF", "/v1/customers/\xc3\xa9", "/v1/customers/1#frag",
		"/v1/customers/1?a=%zz", "/v1/customers/1?a=b c", "/v1/customers/1?a=\x01",
		"*", "api.example.com:443", "v1/customers/1", "", "https://evil.example.com/v1/customers/1",
		"https://api.example.com@evil/v1/customers/1", "https://api.example.com", "ftp://api.example.com/v1/customers/1",
		"/" + strings.Repeat("a/", MaxSegments) + "a", "/v1/customers/" + strings.Repeat("a", MaxTargetLen),
	}
	for _, target := range bad {
		_, err := tb.Match("GET", target, "api.example.com")
		if !errors.Is(err, ErrBadTarget) {
			t.Errorf("%.60q: got %v, want ErrBadTarget", target, err)
		}
		if err != nil && len(target) > 16 && strings.Contains(err.Error(), target) {
			t.Errorf("the error quotes the target: %v", err)
		}
	}
}

func TestMatchUnknownRoute(t *testing.T) {
	tb := table(t, routes...)
	for _, c := range [][2]string{
		{"GET", "/v1/customers"}, {"GET", "/v1/customers/1/orders/2"}, {"HEAD", "/v1/customers/1"},
		{"POST", "/v1/customers/1"}, {"GET", "/V1/customers/1"}, {"GET", "/files"}, {"get", "/v1/customers/1"},
		{"DELETE", "/v1/orders"},
	} {
		if _, err := tb.Match(c[0], c[1], ""); !errors.Is(err, ErrNoRoute) {
			t.Errorf("%s %s: got %v, want ErrNoRoute", c[0], c[1], err)
		}
	}
}

func TestNewTableRefuses(t *testing.T) {
	tests := []struct {
		patterns []string
		want     string
	}{
		{[]string{"GET /v1/customers/{id}", "GET /v1/customers/search"}, "overlaps"},
		{[]string{"GET /v1/{a}/x", "GET /v1/y/{b}"}, "overlaps"},
		{[]string{"GET /files/{p...}", "GET /files/a/b"}, "overlaps"},
		{[]string{"GET /v1/customers/{id}", "GET /v1/customers/{key}"}, "overlaps"},
		{[]string{"GET /a", "GET /a"}, "overlaps"},
		{[]string{"get /a"}, "METHOD"},
		{[]string{"CONNECT /a"}, "METHOD"},
		{[]string{"GET  /a"}, "must start"},
		{[]string{"GET a"}, "must start"},
		{[]string{"GET /a/"}, "empty path segment"},
		{[]string{"GET /a//b"}, "empty path segment"},
		{[]string{"GET /a/{id}.json"}, "not allowed"},
		{[]string{"GET /a/%2F"}, "not allowed"},
		{[]string{"GET /a/../b"}, "dot segment"},
		{[]string{"GET /a/{1x}"}, "name"},
		{[]string{"GET /a/{id}/{id}"}, "twice"},
		{[]string{"GET /a/{rest...}/b"}, "last segment"},
	}
	for _, tc := range tests {
		var bs []Block
		for _, p := range tc.patterns {
			bs = append(bs, Block{Pattern: p})
		}
		if _, err := NewTable(bs); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error with %q", tc.patterns, err, tc.want)
		}
	}
	// Controls: distinct routes of one method, and the same path under two methods.
	table(t, "GET /v1/customers/{id}", "GET /v1/customers/{id}/orders", "GET /v1/orders/{id}", "DELETE /v1/customers/{id}",
		"GET /files/{p...}", "GET /file", "GET /")
}

func TestNewTableFields(t *testing.T) {
	tb, err := NewTable([]Block{{Pattern: "GET /v1/customers/{id}", Tags: []string{"customers"}, Fields: []FieldBlock{
		{Path: "$.ssn", Tags: []string{"pii"}}, {Path: "$.items[*].email", Tags: []string{"pii", "contact"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := tb.Match("GET", "/v1/customers/1", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Route.Fields) != 2 || m.Route.Fields[1].Path.String() != "$.items[*].email" || m.Route.Fields[1].Tags[1] != "contact" {
		t.Errorf("fields: %+v", m.Route.Fields)
	}
	for _, fb := range [][]FieldBlock{
		{{Path: "ssn", Tags: []string{"pii"}}},
		{{Path: "$.ssn", Tags: []string{"pii"}}, {Path: "$.ssn", Tags: []string{"x"}}},
		{{Path: "$.ssn"}},
	} {
		if _, err := NewTable([]Block{{Pattern: "GET /a", Fields: fb}}); err == nil {
			t.Errorf("%+v: accepted", fb)
		}
	}
}
