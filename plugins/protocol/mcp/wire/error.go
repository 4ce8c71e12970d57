package wire

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// Error is a refused message: the JSON-RPC error to answer with and the HTTP status of the answer.
// Message is written for the agent that sent the request: it names the header, member or method at
// fault and what to send instead, and never quotes an argument's value.
type Error struct {
	HTTPStatus int
	Code       int64
	Message    string
	// ID is the refused request's id, when it could be read (the zero ID otherwise).
	ID jsonrpc.ID
	// Data is the error's optional data member (for an unsupported version, the versions supported).
	Data json.RawMessage
}

// MCP's own JSON-RPC error codes (the SDK's values), beside jsonrpc's standard ones.
const (
	// CodeHeaderMismatch: an Mcp-* header is missing or disagrees with the body.
	CodeHeaderMismatch = -32020
	// CodeUnsupportedProtocolVersion: the requested protocol version is not spoken here.
	CodeUnsupportedProtocolVersion = -32022
)

func (e *Error) Error() string {
	return fmt.Sprintf("mcp wire: %s (JSON-RPC %d, HTTP %d)", e.Message, e.Code, e.HTTPStatus)
}

// WriteError writes e: a JSON-RPC error response (application/json) with e's HTTP status when e has
// an id, else a plain-text HTTP error, since a JSON-RPC response must carry the id of the request it
// answers.
func WriteError(w http.ResponseWriter, e *Error) {
	status := e.HTTPStatus
	if status == 0 {
		status = http.StatusBadRequest
	}
	if !e.ID.IsValid() {
		http.Error(w, e.Message, status)
		return
	}
	data, err := jsonrpc.EncodeMessage(&jsonrpc.Response{ID: e.ID, Error: &jsonrpc.Error{Code: e.Code, Message: e.Message, Data: e.Data}})
	if err != nil {
		http.Error(w, e.Message, status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

func refuse(status int, code int64, id jsonrpc.ID, format string, args ...any) *Error {
	return &Error{HTTPStatus: status, Code: code, Message: fmt.Sprintf(format, args...), ID: id}
}

func invalid(id jsonrpc.ID, format string, args ...any) *Error {
	return refuse(http.StatusBadRequest, jsonrpc.CodeInvalidRequest, id, format, args...)
}

func mismatch(id jsonrpc.ID, format string, args ...any) *Error {
	return refuse(http.StatusBadRequest, CodeHeaderMismatch, id, format, args...)
}
