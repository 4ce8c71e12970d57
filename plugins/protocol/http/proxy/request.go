package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/svidbroker/svidbroker/plugins/protocol/http/route"
)

// requestError is a request the engine refuses before any decision: its status and what to fix.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, a ...any) error {
	return &requestError{http.StatusBadRequest, fmt.Sprintf(format, a...)}
}

// checkQuery parses the query (route.Match.RawQuery, already checked for its bytes): every
// parameter must be one the route declares, and appear once.
func checkQuery(raw string, rt *route.Route) (map[string]string, error) {
	if raw == "" {
		return nil, nil
	}
	values, err := url.ParseQuery(raw)
	if err != nil {
		return nil, badRequest("the query cannot be parsed (%v); separate parameters with & and encode reserved bytes", err)
	}
	q := make(map[string]string, len(values))
	for name, vs := range values {
		if !slices.Contains(rt.Query, name) {
			return nil, badRequest("query parameter %q is not declared by route %q; declare it in the route's query list in the catalog, or leave it out", name, rt.Pattern)
		}
		if len(vs) > 1 {
			return nil, badRequest("query parameter %q appears %d times; send it once", name, len(vs))
		}
		q[name] = vs[0]
	}
	return q, nil
}

// readBody reads and checks the request body. A route without declared members takes no body; one
// with them takes a JSON object of those members, each of its declared type, at most max bytes. It
// returns the members and the body to forward: the members written again, so that the upstream
// reads exactly what was decided (no duplicate keys, no escapes read another way).
func readBody(r *http.Request, rt *route.Route, max int) (map[string]any, []byte, error) {
	pattern := rt.Pattern
	if rt.Body == nil {
		if r.ContentLength != 0 {
			return nil, nil, badRequest("route %q takes no request body; declare its members in the route's body in the catalog", pattern)
		}
		return nil, nil, nil
	}
	if r.ContentLength < 0 {
		return nil, nil, badRequest("send the body with Content-Length")
	}
	if r.ContentLength > int64(max) {
		return nil, nil, &requestError{http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is %d bytes; at most %d are inspected", r.ContentLength, max)}
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" || params["charset"] != "" && !strings.EqualFold(params["charset"], "utf-8") {
		return nil, nil, &requestError{http.StatusUnsupportedMediaType, fmt.Sprintf("route %q takes a JSON body: send Content-Type: application/json", pattern)}
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, int64(max)+1))
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, nil, &requestError{http.StatusRequestTimeout, "the request body did not arrive in time; send it whole right after the head"}
		}
		return nil, nil, badRequest("the request body could not be read: %v", err)
	}
	if len(raw) > max {
		return nil, nil, &requestError{http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is larger than %d bytes", max)}
	}
	members, err := parseBody(raw, rt.Body)
	if err != nil {
		return nil, nil, badRequest("route %q: %v", pattern, err)
	}
	out, err := json.Marshal(members)
	if err != nil {
		return nil, nil, badRequest("route %q: the body cannot be written again: %v", pattern, err)
	}
	return members, out, nil
}

// parseBody parses a JSON object whose members are declared (name -> "String", "Long", "Bool"):
// each member at most once and of its type. Errors name the member, never its value.
func parseBody(raw []byte, declared map[string]string) (map[string]any, error) {
	if !utf8.Valid(raw) {
		return nil, errors.New("the body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, errors.New("the body must be one JSON object")
	}
	members := map[string]any{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errors.New("the body is not valid JSON")
		}
		name := tok.(string)
		typ, ok := declared[name]
		if !ok {
			return nil, fmt.Errorf("body member %q is not declared; declare it in the route's body in the catalog, or leave it out", name)
		}
		if _, dup := members[name]; dup {
			return nil, fmt.Errorf("body member %q appears twice; send it once", name)
		}
		tok, err = dec.Token()
		if err != nil {
			return nil, errors.New("the body is not valid JSON")
		}
		v, ok := typed(tok, typ)
		if !ok {
			if d, isDelim := tok.(json.Delim); isDelim && (d == '{' || d == '[') {
				return nil, fmt.Errorf("body member %q must be a %s, not an object or array", name, typ)
			}
			return nil, fmt.Errorf("body member %q must be a %s", name, typ)
		}
		members[name] = v
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errors.New("the body is not valid JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("the body holds more than one JSON value")
	}
	return members, nil
}

// typed converts a JSON scalar to its declared Cedar type: String (string), Long (int64; an integer
// without fraction or exponent) or Bool.
func typed(tok json.Token, typ string) (any, bool) {
	switch typ {
	case "String":
		s, ok := tok.(string)
		return s, ok
	case "Bool":
		b, ok := tok.(bool)
		return b, ok
	case "Long":
		n, ok := tok.(json.Number)
		if !ok || strings.ContainsAny(string(n), ".eE") {
			return nil, false
		}
		i, err := n.Int64()
		if err != nil || i == math.MinInt64 {
			return nil, false
		}
		return i, true
	}
	return nil, false
}
