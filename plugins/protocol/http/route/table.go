package route

import (
	"errors"
	"fmt"
	"strings"

	"github.com/svidbroker/svidbroker/plugins/protocol/http/jsonmask"
)

// Block is a `route "METHOD /path" { ... }` block in a target's catalog:
//
//	route "GET /v1/customers/{id}" {
//	  tags = ["customers"]
//	  field "$.ssn" { tags = ["pii"] }
//	  field "$.items[*].email" { tags = ["pii", "contact"] }
//	}
//	route "POST /v1/refunds" {
//	  query = ["dry_run"]
//	  body  = { order_id = "Long", reason = "String" }
//	}
//
// The label is the method, one space and a path template: literal segments, {name} for one segment
// and, last only, {name...} for one or more. Fields are response fields, as jsonmask paths, with
// tags that policies decide masking by, as they do columns'. Query lists the query parameters the
// route takes and Body the members of its JSON request body with their types (see BodyTypes): the
// engine refuses any other, and policies see them in the request's context.
type Block struct {
	Pattern string            `hcl:"pattern,label"`
	Tags    []string          `hcl:"tags,optional"`
	Query   []string          `hcl:"query,optional"`
	Body    map[string]string `hcl:"body,optional"`
	Fields  []FieldBlock      `hcl:"field,block"`
}

// FieldBlock is a `field "$.json.path" { tags = [...] }` block.
type FieldBlock struct {
	Path string   `hcl:"path,label"`
	Tags []string `hcl:"tags,optional"`
}

// Route is a parsed route.
type Route struct {
	Pattern string // as written, e.g. "GET /v1/customers/{id}"
	Method  string
	Tags    []string
	Fields  []Field
	// Params are the template's parameter names, in order.
	Params []string
	// Query are the declared query parameters, in the order written.
	Query []string
	// Body maps each declared JSON body member to its type, one of BodyTypes; nil when the route
	// takes no body.
	Body map[string]string
	segs []segment
}

// Field is a tagged response field.
type Field struct {
	Path jsonmask.Path
	Tags []string
}

// Table is a target's routes. It is immutable and safe for concurrent use.
type Table struct {
	byMethod map[string][]*Route
}

// Sentinel outcomes of Match: no route is a default deny; a bad target is refused before any
// decision, whatever the routes.
var (
	ErrNoRoute   = errors.New("route: no route matches the request")
	ErrBadTarget = errors.New("route: request target refused")
)

// NewTable parses blocks. It refuses a malformed pattern or field path, a route listed twice, and two
// routes of one method that some path would match both, since the route decided on must be the only
// one that path can mean.
func NewTable(blocks []Block) (*Table, error) {
	t := &Table{byMethod: map[string][]*Route{}}
	for _, b := range blocks {
		r, err := Parse(b)
		if err != nil {
			return nil, err
		}
		for _, o := range t.byMethod[r.Method] {
			if overlap(o.segs, r.segs) {
				return nil, fmt.Errorf("route %q overlaps route %q: some paths match both; make them distinct (a literal segment where the other has a parameter is an overlap too)", b.Pattern, o.Pattern)
			}
		}
		t.byMethod[r.Method] = append(t.byMethod[r.Method], r)
	}
	return t, nil
}

// Routes returns the table's routes, by method and then in the order written.
func (t *Table) Routes() []*Route {
	var out []*Route
	for _, m := range methodOrder {
		out = append(out, t.byMethod[m]...)
	}
	return out
}

// Match is a request matched to a route.
type Match struct {
	Route *Route
	// Params are the path parameters in the pattern's order, each decoded once. A {name...}
	// parameter holds its segments joined by "/".
	Params []Param
	// Path is the canonical path to forward: the path decided on, each segment encoded one way.
	Path string
	// RawQuery is the query, checked but unchanged, to forward as is ("" for none).
	RawQuery string
}

// Param is a path parameter.
type Param struct {
	Name  string
	Value string
}

// Param returns the named parameter's value, "" if the route has none by that name.
func (m Match) Param(name string) string {
	for _, p := range m.Params {
		if p.Name == name {
			return p.Value
		}
	}
	return ""
}

// Match finds the route for a request: its method, its request target as it came on the wire (the
// request-URI, r.RequestURI in net/http) and its Host. The target is checked and decoded strictly
// (see ParseTarget); an error wraps ErrBadTarget, or is ErrNoRoute. Either way the request is denied.
func (t *Table) Match(method, target, host string) (Match, error) {
	tg, err := ParseTarget(target, host)
	if err != nil {
		return Match{}, err
	}
	for _, r := range t.byMethod[method] {
		if params, ok := r.match(tg.Segments); ok {
			return Match{Route: r, Params: params, Path: tg.Path(), RawQuery: tg.RawQuery}, nil
		}
	}
	return Match{}, ErrNoRoute
}

func (r *Route) match(segs []string) ([]Param, bool) {
	var params []Param
	for i, s := range r.segs {
		if i >= len(segs) {
			return nil, false
		}
		switch s.kind {
		case segLiteral:
			if segs[i] != s.text {
				return nil, false
			}
		case segParam:
			params = append(params, Param{Name: s.text, Value: segs[i]})
		case segRest:
			return append(params, Param{Name: s.text, Value: strings.Join(segs[i:], "/")}), true
		}
	}
	return params, len(segs) == len(r.segs)
}
