package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/svidbroker/svidbroker/broker/authz"
)

// pairs is a repeatable NAME=VALUE flag.
type pairs map[string]string

func (p pairs) String() string { return "" }

func (p pairs) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want NAME=VALUE, got %q", s)
	}
	if _, dup := p[k]; dup {
		return fmt.Errorf("%s is given twice", k)
	}
	p[k] = v
	return nil
}

// explainHTTP holds `policy explain`'s flags for an HTTP request.
type explainHTTP struct {
	params, query, body pairs
}

// httpFlags adds the HTTP request's flags to fs: the route, a field, the path parameters, query
// parameters and body members (each NAME=VALUE, repeatable), and the path forwarded.
func httpFlags(fs *flag.FlagSet, spec *authz.RequestSpec) *explainHTTP {
	h := &explainHTTP{params: pairs{}, query: pairs{}, body: pairs{}}
	fs.StringVar(&spec.Route, "route", "", "for an HTTP request: the target's route as its catalog writes it, \"GET /v1/customers/{id}\"")
	fs.StringVar(&spec.Field, "field", "", "with --route, for field:read-unmasked: a response field of the route, \"$.ssn\"; with --tool, for mcp:read-unmasked: a result field of the tool")
	fs.Var(h.params, "param", "with --route: a path parameter, `NAME=VALUE` (repeat for each)")
	fs.Var(h.query, "query", "with --route: a declared query parameter, `NAME=VALUE` (repeat for each)")
	fs.Var(h.body, "body", "with --route: a declared JSON body member, `NAME=VALUE`, read as the catalog declares it (String, Long, Bool; repeat for each)")
	fs.StringVar(&spec.Path, "path", "", "with --route: the path forwarded (default: the template with the --param values)")
	return h
}

// defaultHTTPAction is the action asked of a route when --action is not given.
func defaultHTTPAction(spec authz.RequestSpec) string {
	if spec.Field != "" {
		return authz.ActionFieldUnmasked
	}
	method, _, _ := strings.Cut(spec.Route, " ")
	return authz.HTTPAction(method)
}

// apply puts the HTTP flags into spec, reading each body member as its route declares it.
func (h *explainHTTP) apply(cat *authz.Catalog, spec *authz.RequestSpec) error {
	if spec.Route == "" {
		if len(h.params)+len(h.query)+len(h.body) > 0 || spec.Field != "" && spec.MCP.Tool == "" || spec.Path != "" {
			return fmt.Errorf("--param, --query, --body, --field and --path describe an HTTP request: give its --route")
		}
		return nil
	}
	spec.Params, spec.Query = h.params, h.query
	if len(h.body) == 0 {
		return nil
	}
	var declared map[string]string
	for _, t := range cat.Targets {
		if t.Name != spec.Target {
			continue
		}
		for _, r := range t.Routes {
			if r.Pattern == spec.Route {
				declared = r.Body
			}
		}
	}
	spec.Body = map[string]any{}
	for name, raw := range h.body {
		switch declared[name] {
		case "Long":
			n, err := strconv.ParseInt(raw, 10, 64)
			if err != nil {
				return fmt.Errorf("--body %s: the route declares it Long: give an integer", name)
			}
			spec.Body[name] = n
		case "Bool":
			b, err := strconv.ParseBool(raw)
			if err != nil {
				return fmt.Errorf("--body %s: the route declares it Bool: give true or false", name)
			}
			spec.Body[name] = b
		default: // String, or undeclared: BuildRequest names an undeclared member
			spec.Body[name] = raw
		}
	}
	return nil
}
