package route

import (
	"fmt"
	"strings"
)

// Methods a route may name. CONNECT and TRACE are not proxied.
var methods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "OPTIONS": true,
}

type segKind uint8

const (
	segLiteral segKind = iota
	segParam           // {name}: one segment
	segRest            // {name...}: one or more segments, last only
)

type segment struct {
	kind segKind
	text string // the literal, or the parameter's name
}

// maxPatternSegments bounds a pattern; requests are bounded by MaxSegments.
const maxPatternSegments = 32

// parsePattern parses "METHOD /path/{param}/{rest...}".
func parsePattern(p string) (method string, segs []segment, err error) {
	method, path, ok := strings.Cut(p, " ")
	if !ok || !methods[method] {
		return "", nil, fmt.Errorf("route %q: want \"METHOD /path\" with METHOD one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS (upper case) and one space", p)
	}
	if !strings.HasPrefix(path, "/") {
		return "", nil, fmt.Errorf("route %q: the path must start with \"/\"", p)
	}
	if path == "/" {
		return method, nil, nil
	}
	names := map[string]bool{}
	parts := strings.Split(path[1:], "/")
	if len(parts) > maxPatternSegments {
		return "", nil, fmt.Errorf("route %q: %d path segments, at most %d", p, len(parts), maxPatternSegments)
	}
	for i, part := range parts {
		switch {
		case part == "":
			return "", nil, fmt.Errorf("route %q: empty path segment %d (no \"//\" and no trailing \"/\")", p, i+1)
		case strings.HasPrefix(part, "{") && strings.HasSuffix(part, "}"):
			name, rest := strings.CutSuffix(part[1:len(part)-1], "...")
			if !validName(name) {
				return "", nil, fmt.Errorf("route %q: parameter %q: a name is a letter or \"_\" then letters, digits or \"_\"", p, part)
			}
			if names[name] {
				return "", nil, fmt.Errorf("route %q: parameter {%s} appears twice", p, name)
			}
			names[name] = true
			kind := segParam
			if rest {
				if i != len(parts)-1 {
					return "", nil, fmt.Errorf("route %q: {%s...} matches the rest of the path, so it must be the last segment", p, name)
				}
				kind = segRest
			}
			segs = append(segs, segment{kind: kind, text: name})
		case part == "." || part == "..":
			return "", nil, fmt.Errorf("route %q: segment %d is a dot segment", p, i+1)
		default:
			for j := 0; j < len(part); j++ {
				if !literalByte(part[j]) {
					return "", nil, fmt.Errorf("route %q: segment %q: %q is not allowed in a literal segment (letters, digits and -._~!$'()*+,=:@; a parameter takes a whole segment, as {id})", p, part, part[j])
				}
			}
			segs = append(segs, segment{kind: segLiteral, text: part})
		}
	}
	return method, segs, nil
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// literalByte reports whether c may stand unencoded in a canonical path segment: the unreserved
// characters and the sub-delimiters but ";" and "&", which some servers give a meaning in paths.
func literalByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$'()*+,=:@", c) >= 0
}

// overlap reports whether some path matches both segment lists.
func overlap(a, b []segment) bool {
	for i := 0; ; i++ {
		switch {
		case i == len(a) && i == len(b):
			return true
		case i == len(a) || i == len(b):
			return false
		case a[i].kind == segRest || b[i].kind == segRest:
			return true // both have a segment here, and the rest matches anything after
		case a[i].kind == segLiteral && b[i].kind == segLiteral && a[i].text != b[i].text:
			return false
		}
	}
}
