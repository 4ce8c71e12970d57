package wire

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// Post is a client's POST body, checked.
type Post struct {
	Messages []Message
	Batch    bool
	// Version is the protocol version in force: the Mcp-Protocol-Version header; for an initialize,
	// the version its params ask for; else DefaultVersion. It is always a known version.
	Version string
	// VersionHeader reports that Version came from the Mcp-Protocol-Version header.
	VersionHeader bool
	// Initialize reports that the body is an initialize request (always alone).
	Initialize bool
}

// Rules returns the rules of the post's version.
func (p *Post) Rules() Rules {
	r, _ := VersionRules(p.Version)
	return r
}

// Header names the package reads.
const (
	HeaderProtocolVersion = "Mcp-Protocol-Version"
	HeaderSessionID       = "Mcp-Session-Id"
	HeaderMethod          = "Mcp-Method"
	HeaderName            = "Mcp-Name"
	HeaderParamPrefix     = "Mcp-Param-"
	HeaderLastEventID     = "Last-Event-ID"
)

// ParsePost checks a client's POST: Content-Type application/json (charset utf-8 if any), Accept
// naming both application/json and text/event-stream, the body's size, strict JSON-RPC 2.0 framing
// of each message (see parseMessage), batches only where the version allows them and within
// MaxBatch, no duplicate ids in a batch, no initialize in a batch, notifications without ids and
// requests with them, a known Mcp-Protocol-Version, Mcp-Method / Mcp-Name equal to the body when
// present and present where the version requires them (2026-07-28), Mcp-Param-* only on a
// tools/call and well-formed, params._meta's protocol version equal to the header where the version
// requires it, and no Mcp-Session-Id on a version without sessions. Errors are *Error.
func ParsePost(h http.Header, body []byte, l Limits) (*Post, error) {
	p, e := parsePost(h, body, l)
	if e != nil {
		return nil, e
	}
	return p, nil
}

func parsePost(h http.Header, body []byte, l Limits) (*Post, *Error) {
	l = l.WithDefaults()
	var none jsonrpc.ID
	if e := checkContentType(h); e != nil {
		return nil, e
	}
	if json, stream := accepts(h.Values("Accept")); !json || !stream {
		return nil, refuse(http.StatusNotAcceptable, jsonrpc.CodeInvalidRequest, none,
			"the Accept header must list both application/json and text/event-stream (the server may answer with either)")
	}
	if len(h.Values(HeaderLastEventID)) > 0 {
		return nil, invalid(none, "a POST cannot carry Last-Event-ID; resume a stream with GET")
	}
	headerVersion, e := oneHeader(h, HeaderProtocolVersion)
	if e != nil {
		return nil, e
	}
	if headerVersion != "" {
		if _, ok := VersionRules(headerVersion); !ok {
			return nil, unsupportedVersion(none, "the Mcp-Protocol-Version header")
		}
	}
	if len(body) > l.MaxBodyBytes {
		return nil, refuse(http.StatusRequestEntityTooLarge, jsonrpc.CodeInvalidRequest, none,
			"the request body is larger than %d bytes; send smaller arguments", l.MaxBodyBytes)
	}
	raws, batch, err := splitBody(body)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, jsonrpc.CodeParseError, none, "%v", err)
	}
	if batch && len(raws) == 0 {
		return nil, invalid(none, "the batch is empty; send at least one message")
	}
	if len(raws) > l.MaxBatch {
		return nil, refuse(http.StatusRequestEntityTooLarge, jsonrpc.CodeInvalidRequest, none,
			"the batch has %d messages, more than %d; send fewer at a time", len(raws), l.MaxBatch)
	}
	p := &Post{Batch: batch, Messages: make([]Message, 0, len(raws))}
	calls := map[jsonrpc.ID]bool{}
	answers := map[jsonrpc.ID]bool{}
	for _, raw := range raws {
		m, e := parseMessage(raw, l)
		if e != nil {
			return nil, e
		}
		id := m.ID()
		if m.Req != nil {
			notification := strings.HasPrefix(m.Req.Method, "notifications/")
			switch {
			case notification && m.Req.IsCall():
				return nil, invalid(id, "%s is a notification and must not have an id", methodName(m.Req.Method))
			case !notification && !m.Req.IsCall():
				return nil, invalid(id, "%s is a request and needs an id (only notifications/* methods go without)", methodName(m.Req.Method))
			}
			if m.Req.IsCall() {
				if calls[id] {
					return nil, invalid(id, "two requests in the batch share an id; give each request its own")
				}
				calls[id] = true
			}
			if m.Req.Method == "initialize" {
				p.Initialize = true
			}
		} else {
			if answers[id] {
				return nil, invalid(id, "two responses in the batch answer the same id")
			}
			answers[id] = true
		}
		p.Messages = append(p.Messages, m)
	}
	first := p.Messages[0].ID()

	// The version in force.
	switch {
	case p.Initialize:
		if batch {
			return nil, invalid(first, "initialize must be sent alone, not in a batch")
		}
		v, e := initializeVersion(p.Messages[0])
		if e != nil {
			return nil, e
		}
		p.Version = v
	case headerVersion != "":
		p.Version, p.VersionHeader = headerVersion, true
	default:
		p.Version = DefaultVersion
	}
	rules, _ := VersionRules(p.Version)
	if batch && !rules.Batches {
		return nil, invalid(first, "protocol version %s does not allow JSON-RPC batches; send one message per POST", p.Version)
	}
	if h.Get(HeaderSessionID) != "" && !rules.Sessions {
		return nil, invalid(first, "protocol version %s has no sessions; do not send Mcp-Session-Id", p.Version)
	}
	if e := checkStandardHeaders(h, p, headerVersion); e != nil {
		return nil, e
	}
	if e := checkMetaVersion(p, headerVersion); e != nil {
		return nil, e
	}
	return p, nil
}

func methodName(m string) string { return strings.ToValidUTF8(clip(m), "?") }

func checkContentType(h http.Header) *Error {
	var none jsonrpc.ID
	values := h.Values("Content-Type")
	bad := refuse(http.StatusUnsupportedMediaType, jsonrpc.CodeInvalidRequest, none,
		"the Content-Type header must be application/json")
	if len(values) != 1 {
		return bad
	}
	mt, params, err := mime.ParseMediaType(values[0])
	if err != nil || mt != "application/json" {
		return bad
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return refuse(http.StatusUnsupportedMediaType, jsonrpc.CodeInvalidRequest, none,
				"the Content-Type header may carry only charset=utf-8 as a parameter")
		}
	}
	return nil
}

// accepts reports whether Accept admits JSON and SSE responses, reading media ranges as the SDK's
// server does (*/*, application/*, text/* count).
func accepts(values []string) (json, stream bool) {
	for _, v := range values {
		for raw := range strings.SplitSeq(v, ",") {
			base, _, _ := strings.Cut(raw, ";")
			switch strings.ToLower(strings.TrimSpace(base)) {
			case "application/json", "application/*":
				json = true
			case "text/event-stream", "text/*":
				stream = true
			case "*/*":
				json, stream = true, true
			}
		}
	}
	return json, stream
}

// oneHeader returns the value of a header that may appear at most once.
func oneHeader(h http.Header, name string) (string, *Error) {
	vs := h.Values(name)
	if len(vs) > 1 {
		return "", invalid(jsonrpc.ID{}, "the %s header appears more than once; send it once", name)
	}
	if len(vs) == 0 {
		return "", nil
	}
	return vs[0], nil
}

func unsupportedVersion(id jsonrpc.ID, what string) *Error {
	data, _ := json.Marshal(struct {
		Supported []string `json:"supported"`
	}{Versions()})
	e := refuse(http.StatusBadRequest, CodeUnsupportedProtocolVersion, id,
		"%s names a protocol version this broker does not speak; use one of %s", what, versionList())
	e.Data = data
	return e
}

// initializeVersion reads the protocol version an initialize asks for; it must be known.
func initializeVersion(m Message) (string, *Error) {
	id := m.ID()
	_, params, err := objectMembers(m.Req.Params)
	if err != nil {
		return "", refuse(http.StatusBadRequest, jsonrpc.CodeInvalidParams, id, "initialize needs params with protocolVersion, capabilities and clientInfo")
	}
	var v string
	if raw, ok := params["protocolVersion"]; !ok || raw.Kind() != '"' || json.Unmarshal(raw, &v) != nil {
		return "", refuse(http.StatusBadRequest, jsonrpc.CodeInvalidParams, id, "initialize needs params.protocolVersion, a string")
	}
	if _, ok := VersionRules(v); !ok {
		return "", unsupportedVersion(id, "initialize's params.protocolVersion")
	}
	return v, nil
}

// checkMetaVersion: under a version whose calls carry _meta's protocol version, it must be there and
// equal the header; under any version, one that is present must equal a present header.
func checkMetaVersion(p *Post, headerVersion string) *Error {
	rules, _ := VersionRules(headerVersion)
	for _, m := range p.Messages {
		if m.Req == nil || len(m.Req.Params) == 0 {
			if m.Req != nil && m.Req.IsCall() && rules.MetaVersion {
				return refuse(http.StatusBadRequest, jsonrpc.CodeInvalidParams, m.ID(),
					"protocol version %s requires params._meta[%q] on every request", headerVersion, MetaKeyProtocolVersion)
			}
			continue
		}
		meta, e := requestMeta(m)
		if e != nil {
			return e
		}
		raw, ok := meta[MetaKeyProtocolVersion]
		if !ok {
			if m.Req.IsCall() && rules.MetaVersion {
				return refuse(http.StatusBadRequest, jsonrpc.CodeInvalidParams, m.ID(),
					"protocol version %s requires params._meta[%q] on every request", headerVersion, MetaKeyProtocolVersion)
			}
			continue
		}
		var v string
		if raw.Kind() != '"' || json.Unmarshal(raw, &v) != nil {
			return refuse(http.StatusBadRequest, jsonrpc.CodeInvalidParams, m.ID(), "params._meta[%q] must be a string", MetaKeyProtocolVersion)
		}
		if headerVersion == "" {
			return mismatch(m.ID(), "params._meta[%q] needs the Mcp-Protocol-Version header with the same version", MetaKeyProtocolVersion)
		}
		if v != headerVersion {
			return mismatch(m.ID(), "params._meta[%q] and the Mcp-Protocol-Version header name different versions; send the same in both", MetaKeyProtocolVersion)
		}
	}
	return nil
}

// ReadBody reads a client's POST body, at most l.MaxBodyBytes of it: a larger body is an *Error
// (413) without reading the rest.
func ReadBody(r io.Reader, l Limits) ([]byte, error) {
	l = l.WithDefaults()
	b, err := io.ReadAll(io.LimitReader(r, int64(l.MaxBodyBytes)+1))
	if err != nil {
		return nil, fmt.Errorf("mcp wire: reading the request body: %w", err)
	}
	if len(b) > l.MaxBodyBytes {
		return nil, refuse(http.StatusRequestEntityTooLarge, jsonrpc.CodeInvalidRequest, jsonrpc.ID{},
			"the request body is larger than %d bytes; send smaller arguments", l.MaxBodyBytes)
	}
	return b, nil
}
