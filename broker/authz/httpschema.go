package authz

import (
	"fmt"

	"github.com/cedar-policy/cedar-go"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"maps"
	"slices"
	"strings"
)

// HTTPRecords generates the record types HTTPContext refers to from the catalog's routes:
// HTTPParams (every path parameter name, String), HTTPQuery (every declared query parameter,
// String) and HTTPBody (every declared body member, with its declared type), each attribute
// optional, since a request carries only its own route's. With no routes each is an empty record.
//
// A name is one record attribute for every route, so a body member declared with two types in two
// routes is an error: rename one. Names are letters, digits, "_", "-" and "." (the route package
// refuses others when the catalog loads); any other is an error here too.
func HTTPRecords(c *Catalog) (string, error) {
	recs, err := httpRecordAttrs(c)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("// Generated from the catalog's routes.\n")
	for _, rec := range []struct{ name, attr string }{{"HTTPParams", "params"}, {"HTTPQuery", "query"}, {"HTTPBody", "body"}} {
		fmt.Fprintf(&b, "type %s = {", rec.name)
		attrs := recs[rec.attr]
		for i, name := range slices.Sorted(maps.Keys(attrs)) {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, " %q?: %s", name, attrs[name])
		}
		b.WriteString(" };\n")
	}
	return b.String(), nil
}

// httpRecordAttrs gives the attributes of the generated records by the context attribute that holds
// them ("params", "query", "body"): name to Cedar type.
func httpRecordAttrs(c *Catalog) (map[string]map[string]string, error) {
	recs := map[string]map[string]string{"params": {}, "query": {}, "body": {}}
	bodyRoute := map[string]string{}
	if c == nil {
		return recs, nil
	}
	for _, t := range c.Targets {
		for _, r := range t.Routes {
			for _, p := range r.Params {
				recs["params"][p] = "String"
			}
			for _, q := range r.Query {
				recs["query"][q] = "String"
			}
			for _, name := range slices.Sorted(maps.Keys(r.Body)) {
				typ := r.Body[name]
				if !slices.Contains([]string{"String", "Long", "Bool"}, typ) {
					return nil, fmt.Errorf("authz: catalog %q route %q: body member %q has type %q; use String, Long or Bool", t.Name, r.Pattern, name, typ)
				}
				if prev, ok := recs["body"][name]; ok && prev != typ {
					return nil, fmt.Errorf("authz: body member %q is %s in route %s and %s in route %q of catalog %q: context.body has one type per name; rename one",
						name, prev, bodyRoute[name], typ, r.Pattern, t.Name)
				}
				recs["body"][name], bodyRoute[name] = typ, fmt.Sprintf("%q of catalog %q", r.Pattern, t.Name)
			}
		}
	}
	for attr, names := range recs {
		for name := range names {
			if !attributeName(name) {
				return nil, fmt.Errorf("authz: context.%s: %q is not a usable name: letters, digits, \"_\", \"-\" and \".\", starting with a letter or \"_\"", attr, name)
			}
		}
	}
	return recs, nil
}

// undeclaredHTTPNames lists the places a policy tests or reads a name of context.params,
// context.query or context.body that no route declares. The validator lets `context.body has amout`
// pass (it is merely always false), so a misspelt name would silently disable a forbid: it is
// refused instead.
func undeclaredHTTPNames(p *cedar.Policy, recs map[string]map[string]string) []string {
	var out []string
	a := (*xast.Policy)(p.AST())
	for _, c := range a.Conditions {
		xast.Inspect(xast.NewNode(c.Body), func(n xast.IsNode) bool {
			var op xast.StrOpNode
			switch n := n.(type) {
			case xast.NodeTypeHas:
				op = n.StrOpNode
			case xast.NodeTypeAccess:
				op = n.StrOpNode
			default:
				return true
			}
			inner, ok := op.Arg.(xast.NodeTypeAccess)
			if !ok {
				return true
			}
			if v, ok := inner.Arg.(xast.NodeTypeVariable); !ok || v.Name != "context" {
				return true
			}
			names, ok := recs[string(inner.Value)]
			if !ok {
				return true
			}
			if _, declared := names[string(op.Value)]; !declared {
				msg := fmt.Sprintf("context.%s.%s: no route of the catalog declares %s %q", inner.Value, op.Value, httpNameKind[string(inner.Value)], op.Value)
				if len(names) > 0 {
					msg += fmt.Sprintf(" (declared: %s)", strings.Join(slices.Sorted(maps.Keys(names)), ", "))
				}
				out = append(out, msg+"; a test of an undeclared name is always false")
			}
			return true
		})
	}
	return out
}

var httpNameKind = map[string]string{"params": "path parameter", "query": "query parameter", "body": "body member"}

// attributeName reports whether s is a name the generated schema can quote as is.
func attributeName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}
