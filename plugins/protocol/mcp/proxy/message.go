package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Versions whose rules differ.
const (
	version20260728 = "2026-07-28"
	version20250326 = "2025-03-26"
)

// message is one JSON-RPC message of a body: a request or notification (req), or a client's
// response to a server-initiated request (resp).
type message struct {
	raw  json.RawMessage
	req  *jsonrpc.Request
	resp *jsonrpc.Response
}

// post is a client's POST, checked.
type post struct {
	messages []message
	batch    bool
	version  string // the protocol version in force
}

// wireError is a refusal of a client's message: a JSON-RPC error for id (none: an HTTP error).
type wireError struct {
	status int
	code   int64
	msg    string
	id     jsonrpc.ID
}

func (e *wireError) Error() string { return e.msg }

func badMessage(format string, args ...any) *wireError {
	return &wireError{status: http.StatusBadRequest, code: jsonrpc.CodeInvalidRequest, msg: "svidbroker: " + fmt.Sprintf(format, args...)}
}

func headerMismatch(msg string) *wireError {
	return &wireError{status: http.StatusBadRequest, code: mcp.CodeHeaderMismatch, msg: "svidbroker: " + msg}
}

// parsePost checks a client's POST: its media types, its JSON-RPC framing and IDs, batches only where
// the version allows them, and the MCP headers against the body. Errors never quote arguments.
func parsePost(h http.Header, body []byte, maxBatch int) (*post, *wireError) {
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "application/json" || params["charset"] != "" && !strings.EqualFold(params["charset"], "utf-8") {
		return nil, &wireError{status: http.StatusUnsupportedMediaType, code: jsonrpc.CodeInvalidRequest, msg: "svidbroker: send MCP messages with Content-Type: application/json"}
	}
	if !acceptsBoth(h.Values("Accept")) {
		return nil, &wireError{status: http.StatusNotAcceptable, code: jsonrpc.CodeInvalidRequest, msg: "svidbroker: send Accept: application/json, text/event-stream"}
	}
	p := &post{}
	body = bytes.TrimSpace(body)
	var raws []json.RawMessage
	if len(body) > 0 && body[0] == '[' {
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, &wireError{status: http.StatusBadRequest, code: jsonrpc.CodeParseError, msg: "svidbroker: the body is not JSON: send one JSON-RPC message, or a batch where the protocol version allows it"}
		}
		if len(raws) == 0 {
			return nil, badMessage("an empty batch")
		}
		if len(raws) > maxBatch {
			return nil, badMessage("a batch of %d messages; at most %d are accepted", len(raws), maxBatch)
		}
		p.batch = true
	} else {
		raws = []json.RawMessage{body}
	}
	ids := map[any]bool{}
	for i, raw := range raws {
		m, werr := decode(raw)
		if werr != nil {
			if p.batch {
				werr.msg += fmt.Sprintf(" (message %d of the batch)", i+1)
			}
			return nil, werr
		}
		var id jsonrpc.ID
		if m.req != nil {
			id = m.req.ID
		} else {
			id = m.resp.ID
		}
		if id.IsValid() {
			if ids[id.Raw()] {
				return nil, badMessage("two messages of the batch have the same id; each request needs its own")
			}
			ids[id.Raw()] = true
		}
		p.messages = append(p.messages, m)
	}
	if werr := p.checkVersion(h); werr != nil {
		return nil, werr
	}
	if p.batch && p.version != version20250326 {
		return nil, badMessage("protocol version %s does not allow batches: send one message per request", p.version)
	}
	if werr := p.checkHeaders(h); werr != nil {
		return nil, werr
	}
	return p, nil
}

func acceptsBoth(vs []string) bool {
	var js, sse bool
	for _, v := range vs {
		for t := range strings.SplitSeq(v, ",") {
			mt, _, _ := mime.ParseMediaType(strings.TrimSpace(t))
			switch mt {
			case "application/json":
				js = true
			case "text/event-stream":
				sse = true
			case "*/*":
				js, sse = true, true
			}
		}
	}
	return js && sse
}

// decode decodes one message: IDs are strings or integers, never null or fractions; a method is a
// request with an id, or a notification (notifications/...) without one.
func decode(raw json.RawMessage) (message, *wireError) {
	var probe struct {
		ID     json.RawMessage `json:"id"`
		Method *string         `json:"method"`
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&probe); err != nil {
		return message{}, &wireError{status: http.StatusBadRequest, code: jsonrpc.CodeParseError, msg: "svidbroker: a message is not a JSON object"}
	}
	hasID := len(probe.ID) > 0
	if hasID {
		var v any
		d := json.NewDecoder(bytes.NewReader(probe.ID))
		d.UseNumber()
		_ = d.Decode(&v)
		switch v := v.(type) {
		case string:
		case json.Number:
			// IDs are decoded as float64 by the SDK: beyond 2^53 two IDs would be one.
			if n, err := v.Int64(); err != nil || n > 1<<53 || n < -(1<<53) {
				return message{}, badMessage("an id must be a string or an integer of at most 2^53 in magnitude")
			}
		default:
			return message{}, badMessage("an id must be a string or an integer (null is not an id)")
		}
	}
	msg, err := jsonrpc.DecodeMessage(raw)
	if err != nil {
		return message{}, badMessage("a message is not JSON-RPC 2.0: %s", decodeWhy(err))
	}
	m := message{raw: raw}
	switch msg := msg.(type) {
	case *jsonrpc.Request:
		m.req = msg
		notification := strings.HasPrefix(msg.Method, "notifications/")
		switch {
		case msg.Method == "":
			return message{}, badMessage("a message has an empty method")
		case notification && hasID:
			return message{}, badMessage("method %s is a notification: send it without an id", quoteMethod(msg.Method))
		case !notification && !hasID:
			return message{}, badMessage("method %s is a request: send it with an id (a notification is never answered)", quoteMethod(msg.Method))
		}
	case *jsonrpc.Response:
		m.resp = msg
	}
	return m, nil
}

func decodeWhy(err error) string {
	s := err.Error()
	if strings.Contains(s, "version tag") {
		return `"jsonrpc" must be "2.0"`
	}
	return "it has neither a method nor a result or error with an id"
}

// quoteMethod quotes a method name the agent sent, bounded.
func quoteMethod(m string) string {
	if len(m) > 64 {
		m = m[:64] + "..."
	}
	return fmt.Sprintf("%q", m)
}

// checkVersion sets the version in force: the header, or initialize's, or 2025-03-26.
func (p *post) checkVersion(h http.Header) *wireError {
	v := h.Get("Mcp-Protocol-Version")
	for _, m := range p.messages {
		if m.req != nil && m.req.Method == "initialize" {
			var ip struct {
				ProtocolVersion string `json:"protocolVersion"`
			}
			if json.Unmarshal(m.req.Params, &ip) == nil && v == "" {
				v = ip.ProtocolVersion
				if !slices.Contains(mcp.SupportedProtocolVersions(), v) {
					v = version20250326 // the server negotiates; the header of later requests says
				}
			}
		}
	}
	if v == "" {
		v = version20250326
	}
	if !slices.Contains(mcp.SupportedProtocolVersions(), v) {
		return badMessage("protocol version %s is not one the broker knows (%s)", quoteMethod(v), strings.Join(mcp.SupportedProtocolVersions(), ", "))
	}
	p.version = v
	return nil
}

// checkHeaders checks Mcp-Method and Mcp-Name against the body: required for 2026-07-28, and, when
// present, equal to the body for any version.
func (p *post) checkHeaders(h http.Header) *wireError {
	method, hasMethod := h["Mcp-Method"]
	name, hasName := h["Mcp-Name"]
	if p.batch {
		if hasMethod || hasName {
			return badMessage("Mcp-Method and Mcp-Name describe one message, not a batch")
		}
		return nil
	}
	m := p.messages[0]
	if m.req == nil {
		return nil
	}
	want := m.req.Method
	wantName, named := messageName(m.req)
	if p.version >= version20260728 {
		if !hasMethod {
			return badMessage("protocol version %s requires the Mcp-Method header", p.version)
		}
		if named && !hasName {
			return badMessage("protocol version %s requires the Mcp-Name header for %s", p.version, want)
		}
	}
	if hasMethod && (len(method) != 1 || method[0] != want) {
		return headerMismatch("the Mcp-Method header does not match the body's method")
	}
	if hasName && (len(name) != 1 || !named || name[0] != wantName) {
		return headerMismatch("the Mcp-Name header does not match the body's name")
	}
	return nil
}

// messageName is the name a method's params carry: a tool's, a prompt's, a resource's URI.
func messageName(req *jsonrpc.Request) (string, bool) {
	var p struct {
		Name string `json:"name"`
		URI  string `json:"uri"`
	}
	switch req.Method {
	case "tools/call", "prompts/get":
		_ = json.Unmarshal(req.Params, &p)
		return p.Name, true
	case "resources/read":
		_ = json.Unmarshal(req.Params, &p)
		return p.URI, true
	}
	return "", false
}

// errorResponse encodes a JSON-RPC error response.
func errorResponse(id jsonrpc.ID, code int64, msg string) []byte {
	b, _ := jsonrpc.EncodeMessage(&jsonrpc.Response{ID: id, Error: &jsonrpc.Error{Code: code, Message: msg}})
	return b
}

// writeWireError answers a refused POST: a JSON-RPC error, with HTTP status e.status.
func writeWireError(w http.ResponseWriter, e *wireError) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(e.status)
	_, _ = w.Write(errorResponse(e.id, e.code, e.msg))
}

// writeHTTPError answers a request refused before any message: a JSON error body.
func writeHTTPError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"error": msg})
	_, _ = w.Write(append(b, '\n'))
}
