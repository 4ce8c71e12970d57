package route

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits on a request target.
const (
	MaxTargetLen = 8 << 10
	MaxSegments  = 64
)

// Target is a request target, checked and decoded.
type Target struct {
	// Segments are the path's segments, each percent-decoded once; none is empty, "." or "..", and
	// none holds "/", "\", "%", a control character or invalid UTF-8.
	Segments []string
	// RawQuery is the query as received, checked for well-formed percent-encoding.
	RawQuery string
}

// Path returns the canonical path: "/" and the segments, each encoded the one way Path always
// encodes (unreserved characters and -._~!$'()*+,=:@ as they are, every other byte as %XX). Parsing
// it gives the same segments, so the path forwarded is the path decided on.
func (t Target) Path() string {
	if len(t.Segments) == 0 {
		return "/"
	}
	var b strings.Builder
	for _, s := range t.Segments {
		b.WriteByte('/')
		for i := 0; i < len(s); i++ {
			if c := s[i]; literalByte(c) {
				b.WriteByte(c)
			} else {
				b.WriteByte('%')
				b.WriteByte("0123456789ABCDEF"[c>>4])
				b.WriteByte("0123456789ABCDEF"[c&0xf])
			}
		}
	}
	return b.String()
}

func badTarget(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadTarget, fmt.Sprintf(format, a...))
}

// ParseTarget checks and decodes a request target. It accepts the origin form ("/path?query") and
// the absolute form ("https://host/path?query") when its host is Host; it refuses the asterisk and
// authority forms, fragments, and, rather than normalizing them, any path an upstream might read
// differently from the broker: encoded "/" or "\", dot segments written or encoded ("..", "%2e%2e",
// "..;x"), empty segments (so no "//" and no trailing "/"), double encoding ("%25" that decodes to
// "%"), control bytes and NUL, bytes outside RFC 3986, invalid percent-encoding and invalid UTF-8.
// Errors say what is wrong and where, never quote the path.
func ParseTarget(target, host string) (Target, error) {
	if len(target) > MaxTargetLen {
		return Target{}, badTarget("the target is %d bytes, at most %d", len(target), MaxTargetLen)
	}
	if !strings.HasPrefix(target, "/") {
		rest, ok := cutScheme(target)
		if !ok {
			return Target{}, badTarget("the target must be a path (origin form) or an http(s) URL (absolute form)")
		}
		authority, path, _ := strings.Cut(rest, "/")
		if i := strings.IndexAny(authority, "?#"); i >= 0 {
			return Target{}, badTarget("the absolute-form target has no path")
		}
		if strings.Contains(authority, "@") {
			return Target{}, badTarget("the absolute-form target carries user information")
		}
		if authority == "" || !strings.EqualFold(authority, host) {
			return Target{}, badTarget("the absolute-form target names another host than the Host header")
		}
		if !strings.Contains(rest, "/") {
			return Target{}, badTarget("the absolute-form target has no path")
		}
		target = "/" + path
	}
	if strings.IndexByte(target, '#') >= 0 {
		return Target{}, badTarget("the target carries a fragment")
	}
	path, query, hasQuery := strings.Cut(target, "?")
	if hasQuery {
		if err := checkQuery(query); err != nil {
			return Target{}, err
		}
	}
	t := Target{RawQuery: query}
	if path == "/" {
		return t, nil
	}
	parts := strings.Split(path[1:], "/")
	if len(parts) > MaxSegments {
		return Target{}, badTarget("the path has %d segments, at most %d", len(parts), MaxSegments)
	}
	for i, raw := range parts {
		seg, err := decodeSegment(raw)
		if err != nil {
			return Target{}, badTarget("path segment %d: %s", i+1, err)
		}
		t.Segments = append(t.Segments, seg)
	}
	return t, nil
}

func cutScheme(target string) (string, bool) {
	for _, s := range []string{"https://", "http://"} {
		if len(target) >= len(s) && strings.EqualFold(target[:len(s)], s) {
			return target[len(s):], true
		}
	}
	return "", false
}

// decodeSegment decodes one raw path segment, refusing what ParseTarget lists.
func decodeSegment(raw string) (string, error) {
	if raw == "" {
		return "", fmt.Errorf("empty segment (\"//\" or a trailing \"/\")")
	}
	var b []byte
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '%':
			if i+2 >= len(raw) || unhex(raw[i+1]) < 0 || unhex(raw[i+2]) < 0 {
				return "", fmt.Errorf("invalid percent-encoding")
			}
			c = byte(unhex(raw[i+1])<<4 | unhex(raw[i+2]))
			i += 2
			switch {
			case c == '/' || c == '\\':
				return "", fmt.Errorf("an encoded slash or backslash")
			case c == '%':
				return "", fmt.Errorf("an encoded %%, as double encoding would carry")
			case c < 0x20 || c == 0x7f:
				return "", fmt.Errorf("an encoded control character")
			}
		case literalByte(c) || c == ';' || c == '&':
		default:
			return "", fmt.Errorf("byte 0x%02x must be percent-encoded", c)
		}
		b = append(b, c)
	}
	s := string(b)
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("invalid UTF-8 once decoded")
	}
	if dot, _, _ := strings.Cut(s, ";"); dot == "." || dot == ".." {
		return "", fmt.Errorf("a dot segment")
	}
	return s, nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// checkQuery checks the query's bytes (RFC 3986 query characters) and percent-encoding.
func checkQuery(q string) error {
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '%':
			if i+2 >= len(q) || unhex(q[i+1]) < 0 || unhex(q[i+2]) < 0 {
				return badTarget("the query has invalid percent-encoding")
			}
			i += 2
		case literalByte(c) || c == ';' || c == '&' || c == '/' || c == '?':
		default:
			return badTarget("query byte 0x%02x must be percent-encoded", c)
		}
	}
	return nil
}
