package authz

import (
	"fmt"
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
	params, query := map[string]bool{}, map[string]bool{}
	body := map[string]string{}
	bodyRoute := map[string]string{}
	if c != nil {
		for _, t := range c.Targets {
			for _, r := range t.Routes {
				for _, p := range r.Params {
					params[p] = true
				}
				for _, q := range r.Query {
					query[q] = true
				}
				for name, typ := range r.Body {
					if !slices.Contains([]string{"String", "Long", "Bool"}, typ) {
						return "", fmt.Errorf("authz: catalog %q route %q: body member %q has type %q; use String, Long or Bool", t.Name, r.Pattern, name, typ)
					}
					if prev, ok := body[name]; ok && prev != typ {
						return "", fmt.Errorf("authz: body member %q is %s in route %s and %s in route %q of catalog %q: context.body has one type per name; rename one",
							name, prev, bodyRoute[name], typ, r.Pattern, t.Name)
					}
					body[name], bodyRoute[name] = typ, fmt.Sprintf("%q of catalog %q", r.Pattern, t.Name)
				}
			}
		}
	}
	var b strings.Builder
	b.WriteString("// Generated from the catalog's routes.\n")
	strs := func(m map[string]bool) map[string]string {
		out := map[string]string{}
		for k := range m {
			out[k] = "String"
		}
		return out
	}
	for _, rec := range []struct {
		name  string
		attrs map[string]string
	}{{"HTTPParams", strs(params)}, {"HTTPQuery", strs(query)}, {"HTTPBody", body}} {
		fmt.Fprintf(&b, "type %s = {", rec.name)
		for i, name := range slices.Sorted(maps.Keys(rec.attrs)) {
			if !attributeName(name) {
				return "", fmt.Errorf("authz: %s: %q is not a usable name: letters, digits, \"_\", \"-\" and \".\", starting with a letter or \"_\"", rec.name, name)
			}
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, " %q?: %s", name, rec.attrs[name])
		}
		b.WriteString(" };\n")
	}
	return b.String(), nil
}

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
