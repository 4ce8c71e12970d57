package jsonmask

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Path is a parsed field path in the subset of JSONPath the catalog uses. It starts at "$" and goes on
// by steps:
//
//	.name        the member "name" of an object (name: letters, digits, "_" and "-", not a digit first)
//	["a key"]    the member with that key, written as a JSON string (any key, escapes allowed)
//	.*           every member of an object
//	[*]          every element of an array
//	..name       the member "name" of an object at any depth below (also ..["a key"])
//
// Array indexes, slices and filters are not supported: a field is masked wherever the path reaches
// it, never by position. Keys are compared after decoding, exactly and case-sensitively.
type Path struct {
	text  string
	steps []step
}

type stepKind uint8

const (
	stepName       stepKind = iota // .name or ["name"]
	stepAnyMember                  // .*
	stepAnyElement                 // [*]
	stepDescendant                 // ..name: the name at this level or any below
)

type step struct {
	kind stepKind
	name string
}

// maxPathLen bounds a path's text; catalogs write short paths.
const maxPathLen = 1024

// ParsePath parses a field path such as "$.ssn", "$.items[*].email" or "$..ssn". Its errors say which
// character is wrong and why.
func ParsePath(s string) (Path, error) {
	if len(s) > maxPathLen {
		return Path{}, fmt.Errorf("jsonmask: field path of %d bytes, at most %d", len(s), maxPathLen)
	}
	if !strings.HasPrefix(s, "$") {
		return Path{}, fmt.Errorf("jsonmask: field path %q must start with \"$\"", s)
	}
	p := Path{text: s}
	i := 1
	for i < len(s) {
		switch {
		case strings.HasPrefix(s[i:], ".."):
			i += 2
			name, n, err := parseMember(s, i, false)
			if err != nil {
				return Path{}, err
			}
			p.steps = append(p.steps, step{kind: stepDescendant, name: name})
			i += n
		case s[i] == '.':
			i++
			if i < len(s) && s[i] == '*' {
				p.steps = append(p.steps, step{kind: stepAnyMember})
				i++
				continue
			}
			name, n, err := parseMember(s, i, true)
			if err != nil {
				return Path{}, err
			}
			p.steps = append(p.steps, step{kind: stepName, name: name})
			i += n
		case strings.HasPrefix(s[i:], "[*]"):
			p.steps = append(p.steps, step{kind: stepAnyElement})
			i += 3
		case s[i] == '[':
			name, n, err := parseBracket(s, i)
			if err != nil {
				return Path{}, err
			}
			p.steps = append(p.steps, step{kind: stepName, name: name})
			i += n
		default:
			return Path{}, fmt.Errorf("jsonmask: field path %q: unexpected %q at offset %d (want \".name\", \"[\\\"key\\\"]\", \".*\", \"[*]\" or \"..name\")", s, s[i], i)
		}
	}
	if len(p.steps) == 0 {
		return Path{}, fmt.Errorf("jsonmask: field path %q names the whole body; name a field, such as \"$.ssn\"", s)
	}
	return p, nil
}

// parseMember parses the name after "." or ".." at s[i:]; after ".." (dot false) a bracketed key
// is allowed too.
func parseMember(s string, i int, dot bool) (string, int, error) {
	if i < len(s) && s[i] == '[' && !dot {
		return parseBracket(s, i)
	}
	j := i
	for j < len(s) && isNameByte(s[j], j == i) {
		j++
	}
	if j == i {
		return "", 0, fmt.Errorf("jsonmask: field path %q: a name must follow the dot at offset %d (letters, digits, \"_\", \"-\"; quote other keys as [\"key\"])", s, i-1)
	}
	return s[i:j], j - i, nil
}

func isNameByte(c byte, first bool) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		return true
	case c >= '0' && c <= '9', c == '-':
		return !first
	}
	return false
}

// parseBracket parses ["key"] at s[i:], the key a JSON string.
func parseBracket(s string, i int) (string, int, error) {
	if i+1 >= len(s) || s[i+1] != '"' {
		return "", 0, fmt.Errorf("jsonmask: field path %q: at offset %d, write a key as [\"key\"] or every element as [*]; array indexes are not supported", s, i)
	}
	// Find the closing quote, skipping escaped characters.
	j := i + 2
	for j < len(s) && s[j] != '"' {
		if s[j] == '\\' {
			j++
		}
		j++
	}
	if j >= len(s) || j+1 >= len(s) || s[j+1] != ']' {
		return "", 0, fmt.Errorf("jsonmask: field path %q: the key at offset %d is not closed by \"]", s, i)
	}
	var key string
	if err := json.Unmarshal([]byte(s[i+1:j+1]), &key); err != nil {
		return "", 0, fmt.Errorf("jsonmask: field path %q: the key at offset %d is not a valid JSON string", s, i)
	}
	return key, j + 2 - i, nil
}

// String returns the path as written.
func (p Path) String() string { return p.text }
