package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/svidbroker/svidbroker/plugins/protocol/mcp/wire"
)

// Versions whose rules differ.
const (
	version20260728 = "2026-07-28"
	version20250326 = "2025-03-26"
)

// message is one JSON-RPC message: a request or notification (req), or a response (resp).
type message struct {
	raw  json.RawMessage
	req  *jsonrpc.Request
	resp *jsonrpc.Response
}

// fromWire is a checked client message.
func fromWire(m wire.Message) message { return message{raw: m.Raw, req: m.Req, resp: m.Resp} }

// quoteMethod quotes a method name the agent sent, bounded.
func quoteMethod(m string) string {
	if len(m) > 64 {
		m = m[:64] + "..."
	}
	return fmt.Sprintf("%q", strings.ToValidUTF8(m, "?"))
}

// errorResponse encodes a JSON-RPC error response.
func errorResponse(id jsonrpc.ID, code int64, msg string) []byte {
	b, _ := jsonrpc.EncodeMessage(&jsonrpc.Response{ID: id, Error: &jsonrpc.Error{Code: code, Message: msg}})
	return b
}

// writeHTTPError answers a request refused before any message: a JSON error body.
func writeHTTPError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"error": msg})
	_, _ = w.Write(append(b, '\n'))
}
