package route

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/svidbroker/svidbroker/plugins/protocol/http/jsonmask"
)

// Types a declared body member may have: a JSON string, an integer that fits in 64 bits, or a
// boolean. They are the Cedar types policies see the member as (context.body.amount > 100).
const (
	BodyString = "String"
	BodyLong   = "Long"
	BodyBool   = "Bool"
)

// BodyTypes lists the body member types.
var BodyTypes = []string{BodyString, BodyLong, BodyBool}

// Limits on what a route declares.
const (
	MaxDeclaredNameLen = 64
	MaxQueryParams     = 32
	MaxBodyMembers     = 64
)

// methodOrder is the order Routes lists methods in.
var methodOrder = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// Parse parses one route block: its pattern, fields, declared query parameters and body members.
// NewTable parses every block with it and checks them against each other.
func Parse(b Block) (*Route, error) {
	method, segs, err := parsePattern(b.Pattern)
	if err != nil {
		return nil, err
	}
	r := &Route{Pattern: b.Pattern, Method: method, Tags: b.Tags, segs: segs}
	for _, s := range segs {
		if s.kind != segLiteral {
			r.Params = append(r.Params, s.text)
		}
	}
	seen := map[string]bool{}
	for _, fb := range b.Fields {
		p, err := jsonmask.ParsePath(fb.Path)
		if err != nil {
			return nil, fmt.Errorf("route %q: field: %w", b.Pattern, err)
		}
		if seen[fb.Path] {
			return nil, fmt.Errorf("route %q: field %q is listed twice", b.Pattern, fb.Path)
		}
		seen[fb.Path] = true
		if len(fb.Tags) == 0 {
			return nil, fmt.Errorf("route %q: field %q has no tags; policies decide a field's masking by its tags", b.Pattern, fb.Path)
		}
		r.Fields = append(r.Fields, Field{Path: p, Tags: fb.Tags})
	}
	if len(b.Query) > MaxQueryParams {
		return nil, fmt.Errorf("route %q: %d query parameters, at most %d", b.Pattern, len(b.Query), MaxQueryParams)
	}
	for i, q := range b.Query {
		if err := declaredName(q); err != nil {
			return nil, fmt.Errorf("route %q: query parameter %q: %w", b.Pattern, q, err)
		}
		if slices.Contains(b.Query[:i], q) {
			return nil, fmt.Errorf("route %q: query parameter %q is listed twice", b.Pattern, q)
		}
	}
	r.Query = slices.Clone(b.Query)
	if b.Body != nil {
		if len(b.Body) > MaxBodyMembers {
			return nil, fmt.Errorf("route %q: %d body members, at most %d", b.Pattern, len(b.Body), MaxBodyMembers)
		}
		r.Body = map[string]string{}
		for _, name := range slices.Sorted(maps.Keys(b.Body)) {
			if err := declaredName(name); err != nil {
				return nil, fmt.Errorf("route %q: body member %q: %w", b.Pattern, name, err)
			}
			typ := b.Body[name]
			if !slices.Contains(BodyTypes, typ) {
				return nil, fmt.Errorf("route %q: body member %q has type %q; use one of %q (a JSON string, an integer, a boolean)", b.Pattern, name, typ, BodyTypes)
			}
			r.Body[name] = typ
		}
	}
	return r, nil
}

// declaredName checks a declared query parameter or body member name: a letter or "_", then
// letters, digits, "_", "-" or ".", so that it reads one way in the request, in the catalog and as
// a Cedar attribute.
func declaredName(s string) error {
	if s == "" || len(s) > MaxDeclaredNameLen {
		return fmt.Errorf("a name is 1 to %d characters", MaxDeclaredNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' ||
			i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.')
		if !ok {
			return fmt.Errorf("a name is a letter or \"_\", then letters, digits, \"_\", \"-\" or \".\"")
		}
	}
	return nil
}

// Template is the path part of the route's pattern, as written: "/v1/customers/{id}".
func (r *Route) Template() string {
	_, path, _ := strings.Cut(r.Pattern, " ")
	return path
}
