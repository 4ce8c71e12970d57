package wire

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// A ParamBinding says that the argument at Path travels, too, in the header Mcp-Param-<Header>: a
// tool declares it with "x-mcp-header" on a property of its input schema (SEP-2243).
type ParamBinding struct {
	Path   []string
	Header string
}

// ParamBindings reads the x-mcp-header annotations of a tool's input schema, at any depth of
// properties, sorted by header name.
func ParamBindings(tool *mcp.Tool) ([]ParamBinding, error) {
	if tool == nil || tool.InputSchema == nil {
		return nil, nil
	}
	raw, err := json.Marshal(tool.InputSchema)
	if err != nil {
		return nil, fmt.Errorf("mcp wire: tool %s: encoding its input schema: %w", clip(tool.Name), err)
	}
	var out []ParamBinding
	if err := collectBindings(raw, nil, &out); err != nil {
		return nil, fmt.Errorf("mcp wire: tool %s: %w", clip(tool.Name), err)
	}
	slices.SortFunc(out, func(a, b ParamBinding) int { return strings.Compare(a.Header, b.Header) })
	return out, nil
}

func collectBindings(schema []byte, path []string, out *[]ParamBinding) error {
	_, m, err := objectMembers(schema)
	if err != nil {
		return nil // a boolean schema or the like binds nothing
	}
	if len(path) > 0 {
		if h, ok := m["x-mcp-header"]; ok {
			var name string
			if h.Kind() != '"' || json.Unmarshal(h, &name) != nil || name == "" || !isToken(name) {
				return fmt.Errorf("property %s: x-mcp-header must name an HTTP header", strings.Join(path, "."))
			}
			for _, b := range *out {
				if strings.EqualFold(b.Header, name) {
					return fmt.Errorf("property %s: x-mcp-header %s is declared twice", strings.Join(path, "."), name)
				}
			}
			*out = append(*out, ParamBinding{Path: slices.Clone(path), Header: name})
		}
	}
	props, ok := m["properties"]
	if !ok {
		return nil
	}
	names, pm, err := objectMembers(props)
	if err != nil {
		return nil
	}
	for _, n := range names {
		if err := collectBindings(pm[n], append(path, n), out); err != nil {
			return err
		}
	}
	return nil
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// argumentAt returns the raw argument at path (false when absent).
func argumentAt(args json.RawMessage, path []string) (jsontext.Value, bool) {
	cur := jsontext.Value(args)
	for _, p := range path {
		if len(cur) == 0 || cur.Kind() != '{' {
			return nil, false
		}
		_, m, err := objectMembers(cur)
		if err != nil {
			return nil, false
		}
		next, ok := m[p]
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, len(cur) > 0
}

// headerForm is the header text of a primitive argument: strings as they are, booleans as
// true/false, integers (within ±(2^53-1)) in decimal. ok is false for anything else.
func headerForm(v jsontext.Value) (string, bool) {
	switch v.Kind() {
	case '"':
		var s string
		return s, json.Unmarshal(v, &s) == nil
	case 't':
		return "true", true
	case 'f':
		return "false", true
	case '0':
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil || n > maxSafeInteger || n < -maxSafeInteger {
			return "", false
		}
		return strconv.FormatInt(n, 10), true
	}
	return "", false
}

// CheckParamHeaders checks a tools/call's Mcp-Param-* headers against the tool's definition (the
// pinned one): every bound argument that is present (and not null) has its header (where the
// Mcp-Protocol-Version header names a version that requires them), equal to it; an absent one has none; and no Mcp-Param-* header is left that the schema does not bind. Errors are
// *Error (header mismatch) naming the header and the argument's path, never its value.
func CheckParamHeaders(h http.Header, req *jsonrpc.Request, tool *mcp.Tool) error {
	bindings, err := ParamBindings(tool)
	if err != nil {
		if _, cerr := CallParams(req); cerr != nil {
			return cerr
		}
		return refuse(http.StatusBadRequest, CodeHeaderMismatch, req.ID, "%v", err)
	}
	return CheckBoundHeaders(h, req, bindings)
}

// CheckBoundHeaders is CheckParamHeaders with the tool's ParamBindings, read once per definition.
func CheckBoundHeaders(h http.Header, req *jsonrpc.Request, bindings []ParamBinding) error {
	call, err := CallParams(req)
	if err != nil {
		return err
	}
	rules, _ := VersionRules(h.Get(HeaderProtocolVersion))
	required := rules.StandardHeaders
	bound := map[string]bool{}
	for _, b := range bindings {
		name := http.CanonicalHeaderKey(HeaderParamPrefix + b.Header)
		bound[name] = true
		vs := h.Values(name)
		if len(vs) > 1 {
			return mismatch(req.ID, "the %s header appears more than once", name)
		}
		arg, present := argumentAt(call.RawArguments, b.Path)
		if !present || arg.Kind() == 'n' {
			if len(vs) == 1 {
				return mismatch(req.ID, "the %s header is sent but argument %s is absent", name, strings.Join(b.Path, "."))
			}
			continue
		}
		if len(vs) == 0 && !required {
			continue
		}
		if len(vs) == 0 {
			return mismatch(req.ID, "tool %s requires the %s header for argument %s; set it to the argument's value", clip(call.Name), name, strings.Join(b.Path, "."))
		}
		want, ok := headerForm(arg)
		if !ok {
			return mismatch(req.ID, "argument %s travels in the %s header and must be a string, boolean or integer", strings.Join(b.Path, "."), name)
		}
		got, ok := DecodeHeaderValue(vs[0])
		if !ok {
			return mismatch(req.ID, "the %s header holds a malformed =?base64?...?= value", name)
		}
		if got != want {
			return mismatch(req.ID, "the %s header does not match argument %s; send the same value in both", name, strings.Join(b.Path, "."))
		}
	}
	for k := range h {
		if len(k) > len(HeaderParamPrefix) && strings.EqualFold(k[:len(HeaderParamPrefix)], HeaderParamPrefix) && !bound[http.CanonicalHeaderKey(k)] {
			return mismatch(req.ID, "tool %s declares no argument for the %s header; do not send it", clip(call.Name), clip(k))
		}
	}
	return nil
}

// ParamHeaders returns the Mcp-Param-* headers of a call as a client sends them: for the engine to
// set on the upstream request in place of the client's, from the body it checked.
func ParamHeaders(call *ToolCall, tool *mcp.Tool) (http.Header, error) {
	bindings, err := ParamBindings(tool)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	for _, b := range bindings {
		arg, ok := argumentAt(call.RawArguments, b.Path)
		if !ok || arg.Kind() == 'n' {
			continue
		}
		if s, ok := headerForm(arg); ok {
			h.Set(HeaderParamPrefix+b.Header, EncodeHeaderValue(s))
		}
	}
	return h, nil
}
