package wire

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// InitializeResultVersion reads the protocol version a server's initialize result settles on: the
// session's version from then on. A version the package does not know is an error (wrapping
// ErrServerMessage): the engine cannot apply rules it does not have, so the session does not open.
func InitializeResultVersion(result json.RawMessage) (string, error) {
	var r mcp.InitializeResult
	if err := json.Unmarshal(result, &r); err != nil {
		return "", fmt.Errorf("%w: the initialize result does not decode: %v", ErrServerMessage, err)
	}
	if _, ok := VersionRules(r.ProtocolVersion); !ok {
		return "", fmt.Errorf("%w: the server settled on a protocol version this broker does not speak (it speaks %s)", ErrServerMessage, versionList())
	}
	return r.ProtocolVersion, nil
}

// CheckSessionVersion checks a post sent within a session against the version the session's
// initialize settled on, and sets p.Version to it: initialize is not sent again; the
// Mcp-Protocol-Version header, where the version requires it, is present and names that version (a
// header naming another is refused under any version); and a batch is refused unless that version
// allows batches.
func CheckSessionVersion(p *Post, negotiated string) error {
	rules, ok := VersionRules(negotiated)
	if !ok {
		return fmt.Errorf("mcp wire: the session's version is not known")
	}
	id := p.Messages[0].ID()
	switch {
	case p.Initialize:
		return invalid(id, "the session is already initialized; send initialize without Mcp-Session-Id to open a new one")
	case p.VersionHeader && p.Version != negotiated:
		return mismatch(id, "the Mcp-Protocol-Version header names %s, but the session runs %s; send %s", p.Version, negotiated, negotiated)
	case !p.VersionHeader && rules.VersionHeader:
		return mismatch(id, "the session runs %s, which requires the Mcp-Protocol-Version header on every request; send %s", negotiated, negotiated)
	case p.Batch && !rules.Batches:
		return invalid(id, "protocol version %s does not allow JSON-RPC batches; send one message per POST", negotiated)
	}
	p.Version = negotiated
	return nil
}

// Get is a client's GET: the stream of server-to-client messages of a session, or the resumption of
// an interrupted stream.
type Get struct {
	// Version is the Mcp-Protocol-Version header ("" when absent).
	Version string
	// LastEventID is the event id to resume after ("" for a new stream).
	LastEventID string
}

// MaxEventIDBytes bounds a Last-Event-ID.
const MaxEventIDBytes = 256

// ParseGet checks a client's GET: Accept naming text/event-stream, a known Mcp-Protocol-Version of a
// version with sessions (2026-07-28 has no GET stream), and a Last-Event-ID of printable ASCII within
// MaxEventIDBytes. Errors are *Error (without an id, so WriteError writes a plain HTTP error).
func ParseGet(h http.Header) (*Get, error) {
	var none jsonrpc.ID
	if _, stream := accepts(h.Values("Accept")); !stream {
		return nil, refuse(http.StatusNotAcceptable, jsonrpc.CodeInvalidRequest, none, "a GET must accept text/event-stream")
	}
	g := &Get{}
	v, e := oneHeader(h, HeaderProtocolVersion)
	if e != nil {
		return nil, e
	}
	if v != "" {
		rules, ok := VersionRules(v)
		if !ok {
			return nil, unsupportedVersion(none, "the Mcp-Protocol-Version header")
		}
		if !rules.Sessions {
			return nil, refuse(http.StatusMethodNotAllowed, jsonrpc.CodeInvalidRequest, none, "protocol version %s has no GET stream; send requests with POST", v)
		}
	}
	g.Version = v
	id, e := oneHeader(h, HeaderLastEventID)
	if e != nil {
		return nil, e
	}
	if len(id) > MaxEventIDBytes {
		return nil, invalid(none, "Last-Event-ID is longer than %d bytes", MaxEventIDBytes)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] > 0x7e {
			return nil, invalid(none, "Last-Event-ID must be printable ASCII, as the server sent it")
		}
	}
	g.LastEventID = id
	return g, nil
}
