package wire

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// Limits bound what the package reads. Zero fields take the defaults.
type Limits struct {
	// MaxMessageBytes bounds one JSON-RPC message (and one SSE event's data). Default 4 MiB.
	MaxMessageBytes int
	// MaxBatch bounds the messages of one batch. Default 32.
	MaxBatch int
	// MaxBodyBytes bounds a whole POST or application/json response body. Default MaxMessageBytes.
	MaxBodyBytes int
	// MaxDepth bounds JSON nesting. Default 64.
	MaxDepth int
}

// Defaults of Limits.
const (
	DefaultMaxMessageBytes = 4 << 20
	DefaultMaxBatch        = 32
	DefaultMaxDepth        = 64
)

// WithDefaults returns l with its zero fields set to the defaults.
func (l Limits) WithDefaults() Limits {
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if l.MaxBatch <= 0 {
		l.MaxBatch = DefaultMaxBatch
	}
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = l.MaxMessageBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	return l
}

// Message is one JSON-RPC message, checked strictly and then decoded as the SDK's
// jsonrpc.DecodeMessage reads it. Exactly one of Req and Resp is set.
type Message struct {
	// Raw is the message as received.
	Raw json.RawMessage
	// Req is a request (Req.IsCall()) or a notification.
	Req *jsonrpc.Request
	// Resp is a response: from a client, to a server-initiated request; from a server, to a call.
	Resp *jsonrpc.Response
}

// maxSafeInteger is the largest integer every JSON parser (IEEE doubles included) reads exactly.
const maxSafeInteger = 1<<53 - 1

// members a JSON-RPC 2.0 message may have.
var messageMembers = map[string]bool{"jsonrpc": true, "id": true, "method": true, "params": true, "result": true, "error": true}

// parseMessage checks raw strictly and decodes it. Errors name the member at fault and carry the
// message's id when it could be read.
func parseMessage(raw []byte, l Limits) (Message, *Error) {
	var none jsonrpc.ID
	if len(raw) > l.MaxMessageBytes {
		return Message{}, refuse(http.StatusRequestEntityTooLarge, jsonrpc.CodeInvalidRequest, none,
			"a JSON-RPC message is larger than %d bytes; send smaller arguments", l.MaxMessageBytes)
	}
	if err := checkValue(raw, l.MaxDepth); err != nil {
		return Message{}, refuse(http.StatusBadRequest, jsonrpc.CodeParseError, none, "%v", err)
	}
	order, m, err := objectMembers(raw)
	if err != nil {
		return Message{}, invalid(none, "a JSON-RPC message %v", err)
	}
	// The id first, so that later refusals can answer it.
	id, idErr := readID(m["id"], m["id"] != nil)
	if idErr != "" {
		return Message{}, invalid(none, "%s", idErr)
	}
	for _, k := range order {
		if !messageMembers[k] {
			return Message{}, invalid(id, "a JSON-RPC message has a member named %s; only jsonrpc, id, method, params, result and error are allowed", strconv.Quote(clip(k)))
		}
	}
	if v := m["jsonrpc"]; v == nil || string(v) != `"2.0"` {
		return Message{}, invalid(id, `"jsonrpc" must be the string "2.0"`)
	}
	_, hasMethod := m["method"]
	_, hasResult := m["result"]
	_, hasError := m["error"]
	if hasMethod {
		if v := m["method"]; v.Kind() != '"' || len(v) == 2 {
			return Message{}, invalid(id, `"method" must be a non-empty string`)
		}
		if hasResult || hasError {
			return Message{}, invalid(id, `a request has "result" or "error"; a message is either a request (method) or a response (result or error)`)
		}
		if p, ok := m["params"]; ok && p.Kind() != '{' {
			return Message{}, invalid(id, `"params" must be an object in MCP (it is %s)`, kindName(p.Kind()))
		}
	} else {
		if _, ok := m["params"]; ok {
			return Message{}, invalid(id, `a response has "params"; responses carry "result" or "error"`)
		}
		if !id.IsValid() {
			return Message{}, invalid(id, `a message has neither "method" nor "id"; a request needs "method", a response needs the "id" it answers`)
		}
		if hasResult == hasError {
			return Message{}, invalid(id, `a response must have exactly one of "result" and "error"`)
		}
		if hasResult && m["result"].Kind() != '{' {
			return Message{}, invalid(id, `"result" must be an object in MCP (it is %s)`, kindName(m["result"].Kind()))
		}
		if hasError {
			if e := checkErrorObject(m["error"]); e != "" {
				return Message{}, invalid(id, "%s", e)
			}
		}
	}
	return fromMembers(raw, m, id, hasMethod)
}

// fromMembers builds the message the strict checks admitted from its members, as the SDK's
// jsonrpc.DecodeMessage reads it (FuzzMessageMatchesSDK holds the two together) without its
// decoder, which allocates tens of kilobytes per message.
func fromMembers(raw []byte, m map[string]jsontext.Value, id jsonrpc.ID, hasMethod bool) (Message, *Error) {
	msg := Message{Raw: json.RawMessage(raw)}
	if hasMethod {
		var method string
		if err := json.Unmarshal(m["method"], &method); err != nil {
			return Message{}, invalid(id, `"method" must be a non-empty string`)
		}
		msg.Req = &jsonrpc.Request{ID: id, Method: method, Params: rawMember(m["params"])}
		return msg, nil
	}
	msg.Resp = &jsonrpc.Response{ID: id, Result: rawMember(m["result"])}
	if v, ok := m["error"]; ok {
		we := &jsonrpc.Error{}
		if err := json.Unmarshal(v, we); err != nil {
			return Message{}, invalid(id, `"error" must be an object with "code" and "message"`)
		}
		msg.Resp.Error = we
	}
	return msg, nil
}

// rawMember is a member's value (objectMembers' own copy), nil when absent.
func rawMember(v jsontext.Value) json.RawMessage {
	if v == nil {
		return nil
	}
	return json.RawMessage(v)
}

// readID reads an id member: a string, or an integer written without fraction or exponent and
// within ±(2^53-1). A null id is refused, since the SDK reads it as no id at all.
func readID(v jsontext.Value, present bool) (jsonrpc.ID, string) {
	if !present {
		return jsonrpc.ID{}, ""
	}
	switch v.Kind() {
	case '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return jsonrpc.ID{}, `"id" is not a valid string`
		}
		id, _ := jsonrpc.MakeID(s)
		return id, ""
	case '0':
		lit := string(v)
		if strings.ContainsAny(lit, ".eE") {
			return jsonrpc.ID{}, `"id" must be a string or an integer written without fraction or exponent`
		}
		n, err := strconv.ParseInt(lit, 10, 64)
		if err != nil || n > maxSafeInteger || n < -maxSafeInteger {
			return jsonrpc.ID{}, fmt.Sprintf(`"id" is an integer outside ±%d; use a smaller integer or a string`, int64(maxSafeInteger))
		}
		id, _ := jsonrpc.MakeID(float64(n)) // exact: |n| <= 2^53-1
		return id, ""
	case 'n':
		return jsonrpc.ID{}, `"id" is null; a request needs a string or integer id, a notification has no "id" member`
	}
	return jsonrpc.ID{}, fmt.Sprintf(`"id" is %s; it must be a string or an integer`, kindName(v.Kind()))
}

// checkErrorObject checks a response's error member: an object with an integer code, a string
// message and optional data, nothing else.
func checkErrorObject(v jsontext.Value) string {
	order, m, err := objectMembers(v)
	if err != nil {
		return `"error" must be an object with "code" and "message"`
	}
	for _, k := range order {
		if k != "code" && k != "message" && k != "data" {
			return `"error" may hold only "code", "message" and "data"`
		}
	}
	c, ok := m["code"]
	if !ok || c.Kind() != '0' || strings.ContainsAny(string(c), ".eE") {
		return `"error.code" must be an integer`
	}
	if _, err := strconv.ParseInt(string(c), 10, 64); err != nil {
		return `"error.code" must be an integer`
	}
	if msg, ok := m["message"]; !ok || msg.Kind() != '"' {
		return `"error.message" must be a string`
	}
	return ""
}

// clip shortens a caller-chosen name for an error message.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

// Method returns the method of a request or notification ("" for a response).
func (m Message) Method() string {
	if m.Req == nil {
		return ""
	}
	return m.Req.Method
}

// ID returns the id of a call or response (the zero ID for a notification).
func (m Message) ID() jsonrpc.ID {
	switch {
	case m.Req != nil:
		return m.Req.ID
	case m.Resp != nil:
		return m.Resp.ID
	}
	return jsonrpc.ID{}
}
