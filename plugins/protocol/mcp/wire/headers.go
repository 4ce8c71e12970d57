package wire

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// Encoded header values (SEP-2243): a value that is not plain printable ASCII, or that starts or ends
// with a space or tab, travels as =?base64?<standard base64 of its UTF-8>?=.
const (
	b64Prefix = "=?base64?"
	b64Suffix = "?="
)

// namedMethods carry the name of what they act on, which Mcp-Name repeats: the params member holding it.
var namedMethods = map[string]string{"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}

// DecodeHeaderValue decodes an Mcp-Name or Mcp-Param-* value: the =?base64?...?= form, else the
// value as it is. ok is false for a malformed encoded form.
func DecodeHeaderValue(v string) (s string, ok bool) {
	inner, found := strings.CutPrefix(v, b64Prefix)
	if !found {
		return v, true
	}
	inner, found = strings.CutSuffix(inner, b64Suffix)
	if !found {
		return v, true
	}
	b, err := base64.StdEncoding.DecodeString(inner)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// EncodeHeaderValue is the inverse of DecodeHeaderValue, as an MCP client encodes a value.
func EncodeHeaderValue(s string) string {
	plain := s == "" || !(s[0] == ' ' || s[0] == '\t' || s[len(s)-1] == ' ' || s[len(s)-1] == '\t')
	for i := 0; plain && i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			plain = false
		}
	}
	if plain && strings.HasPrefix(s, b64Prefix) && strings.HasSuffix(s, b64Suffix) {
		plain = false
	}
	if plain {
		return s
	}
	return b64Prefix + base64.StdEncoding.EncodeToString([]byte(s)) + b64Suffix
}

// headerEquals reports whether header value hv stands for body value s: equal as sent, or equal once
// decoded from the base64 form.
func headerEquals(hv, s string) bool {
	if hv == s {
		return true
	}
	d, ok := DecodeHeaderValue(hv)
	return ok && d == s && d != hv
}

// requestMeta returns the members of a request's params._meta (nil when absent).
func requestMeta(m Message) (map[string]jsontext.Value, *Error) {
	if m.Req == nil || len(m.Req.Params) == 0 {
		return nil, nil
	}
	_, params, err := objectMembers(m.Req.Params)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, jsonrpc.CodeInvalidParams, m.ID(), "params must be an object")
	}
	raw, ok := params["_meta"]
	if !ok {
		return nil, nil
	}
	_, meta, err := objectMembers(raw)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, jsonrpc.CodeInvalidParams, m.ID(), "params._meta must be an object")
	}
	return meta, nil
}

// bodyName reads the name member of a named method's params.
func bodyName(m Message) (string, bool) {
	member, ok := namedMethods[m.Req.Method]
	if !ok || len(m.Req.Params) == 0 {
		return "", false
	}
	_, params, err := objectMembers(m.Req.Params)
	if err != nil {
		return "", false
	}
	raw, ok := params[member]
	var s string
	if !ok || raw.Kind() != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// checkStandardHeaders checks Mcp-Method, Mcp-Name and Mcp-Param-*: required where the header's
// version requires them, and equal to the body wherever present.
func checkStandardHeaders(h http.Header, p *Post, headerVersion string) *Error {
	first := p.Messages[0]
	id := first.ID()
	method, e := oneHeader(h, HeaderMethod)
	if e != nil {
		e.ID = id
		return e
	}
	name, e := oneHeader(h, HeaderName)
	if e != nil {
		e.ID = id
		return e
	}
	var params []string
	for k := range h {
		if len(k) > len(HeaderParamPrefix) && strings.EqualFold(k[:len(HeaderParamPrefix)], HeaderParamPrefix) {
			params = append(params, k)
		}
	}
	single := !p.Batch && len(p.Messages) == 1
	rules, _ := VersionRules(headerVersion)
	if !single {
		if method != "" || name != "" || len(params) > 0 {
			return mismatch(id, "Mcp-Method, Mcp-Name and Mcp-Param-* describe one request; do not send them with a batch")
		}
		return nil
	}
	if first.Req == nil {
		if method != "" || name != "" || len(params) > 0 {
			return mismatch(id, "a response carries no Mcp-Method, Mcp-Name or Mcp-Param-* headers")
		}
		return nil
	}
	switch {
	case method == "" && rules.StandardHeaders:
		return mismatch(id, "protocol version %s requires the Mcp-Method header; set it to the request's method", headerVersion)
	case method != "" && method != first.Req.Method:
		return mismatch(id, "the Mcp-Method header does not match the body's method %s; send the same method in both", methodName(first.Req.Method))
	}
	member, named := namedMethods[first.Req.Method]
	switch {
	case !named && name != "":
		return mismatch(id, "Mcp-Name is sent only with tools/call, resources/read and prompts/get, not %s", methodName(first.Req.Method))
	case named:
		bn, ok := bodyName(first)
		if !ok {
			return refuse(http.StatusBadRequest, jsonrpc.CodeInvalidParams, id, "%s needs params.%s, a string", first.Req.Method, member)
		}
		if name == "" && rules.StandardHeaders {
			return mismatch(id, "protocol version %s requires the Mcp-Name header for %s; set it to params.%s", headerVersion, first.Req.Method, member)
		}
		if name != "" && !headerEquals(name, bn) {
			return mismatch(id, "the Mcp-Name header does not match params.%s of the body; send the same value in both", member)
		}
	}
	if len(params) > 0 {
		if first.Req.Method != "tools/call" {
			return mismatch(id, "Mcp-Param-* headers are sent only with tools/call")
		}
		for _, k := range params {
			vs := h.Values(k)
			if len(vs) != 1 {
				return mismatch(id, "the %s header appears more than once", clip(k))
			}
			if _, ok := DecodeHeaderValue(vs[0]); !ok {
				return mismatch(id, "the %s header holds a malformed =?base64?...?= value", clip(k))
			}
		}
	}
	return nil
}

// StandardHeaders returns the Mcp-Method and Mcp-Name headers of a request as a go-sdk client sends
// them, built from the body: for the engine to set on the upstream request in place of the client's.
// Mcp-Name goes as it is (the SDK's server compares it undecoded) unless it cannot be a header value,
// when it goes in the =?base64?...?= form.
func StandardHeaders(m Message) http.Header {
	h := http.Header{}
	if m.Req == nil {
		return h
	}
	h.Set(HeaderMethod, m.Req.Method)
	if name, ok := bodyName(m); ok {
		if !validHeaderValue(name) {
			name = b64Prefix + base64.StdEncoding.EncodeToString([]byte(name)) + b64Suffix
		}
		h.Set(HeaderName, name)
	}
	return h
}

// validHeaderValue reports whether s can travel as a header value unchanged: no control characters,
// no leading or trailing space or tab.
func validHeaderValue(s string) bool {
	if s == "" || s[0] == ' ' || s[0] == '\t' || s[len(s)-1] == ' ' || s[len(s)-1] == '\t' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}
