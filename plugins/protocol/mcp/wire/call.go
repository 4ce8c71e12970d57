package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// ToolCall is the engine's view of a tools/call request's params.
type ToolCall struct {
	Name string
	// Arguments are decoded with UseNumber: json.Number, string, bool, nil, []any, map[string]any.
	// Nil when the call has no arguments.
	Arguments map[string]any
	// RawArguments are the arguments as sent (nil when absent).
	RawArguments json.RawMessage
	// ProgressToken is _meta.progressToken: a string or a json.Number (nil when absent).
	ProgressToken any
	// Traceparent and Tracestate are the W3C trace context of _meta ("" when absent).
	Traceparent, Tracestate string
	// Meta holds every member of _meta as sent.
	Meta map[string]json.RawMessage
}

// CallParams reads a tools/call request's params: name (a non-empty string), arguments (an object,
// when present) and _meta. Member names are matched exactly. Errors are *Error (invalid params),
// naming the member at fault, never its value.
func CallParams(req *jsonrpc.Request) (*ToolCall, error) {
	bad := func(format string, args ...any) error {
		return refuse(http.StatusBadRequest, jsonrpc.CodeInvalidParams, req.ID, format, args...)
	}
	if req.Method != "tools/call" {
		return nil, bad("%s is not tools/call", methodName(req.Method))
	}
	if len(req.Params) == 0 {
		return nil, bad("tools/call needs params with a name")
	}
	_, params, err := objectMembers(req.Params)
	if err != nil {
		return nil, bad("tools/call params %v", err)
	}
	c := &ToolCall{}
	raw, ok := params["name"]
	if !ok || raw.Kind() != '"' || json.Unmarshal(raw, &c.Name) != nil || c.Name == "" {
		return nil, bad("tools/call needs params.name, a non-empty string naming the tool")
	}
	if raw, ok := params["arguments"]; ok {
		if raw.Kind() != '{' {
			return nil, bad("params.arguments of tools/call must be an object")
		}
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if err := d.Decode(&c.Arguments); err != nil {
			return nil, bad("params.arguments of tools/call is not a JSON object")
		}
		c.RawArguments = json.RawMessage(raw)
	}
	if raw, ok := params["_meta"]; ok {
		_, meta, err := objectMembers(raw)
		if err != nil {
			return nil, bad("params._meta must be an object")
		}
		c.Meta = make(map[string]json.RawMessage, len(meta))
		for k, v := range meta {
			c.Meta[k] = json.RawMessage(v)
		}
		if v, ok := meta["progressToken"]; ok {
			switch v.Kind() {
			case '"':
				var s string
				_ = json.Unmarshal(v, &s)
				c.ProgressToken = s
			case '0':
				c.ProgressToken = json.Number(v)
			default:
				return nil, bad("params._meta.progressToken must be a string or a number")
			}
		}
		for key, dst := range map[string]*string{"traceparent": &c.Traceparent, "tracestate": &c.Tracestate} {
			if v, ok := meta[key]; ok {
				if v.Kind() != '"' || json.Unmarshal(v, dst) != nil {
					return nil, bad("params._meta.%s must be a string", key)
				}
			}
		}
	}
	return c, nil
}

// Canonical encodes v (as decoded with UseNumber) canonically: object members sorted by name (byte
// order), no insignificant space, numbers exactly as written, strings escaped as encoding/json does
// without HTML escaping.
func Canonical(v any) ([]byte, error) {
	return appendCanonical(nil, v)
}

func appendCanonical(dst []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		if v {
			return append(dst, "true"...), nil
		}
		return append(dst, "false"...), nil
	case json.Number:
		if !json.Valid([]byte(v)) {
			return nil, fmt.Errorf("mcp wire: %q is not a JSON number", string(v))
		}
		return append(dst, v...), nil
	case string:
		return appendString(dst, v), nil
	case []any:
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendCanonical(dst, e); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(appendString(dst, k), ':')
			var err error
			if dst, err = appendCanonical(dst, v[k]); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	}
	return nil, fmt.Errorf("mcp wire: %T is not a JSON value decoded with UseNumber", v)
}

func appendString(dst []byte, s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(dst, bytes.TrimSuffix(b.Bytes(), []byte{'\n'})...)
}

// ArgsDigest is "sha256:<hex>" of the canonical encoding of a call's arguments (nil arguments digest
// as an empty object, as a call without arguments means the same as one with {}).
func ArgsDigest(args map[string]any) (string, error) {
	if args == nil {
		args = map[string]any{}
	}
	b, err := Canonical(args)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}
