package wire

import (
	"encoding/json"
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Result types the engine rewrites. Decoding goes through the SDK's own types (and their
// UnmarshalJSON), so that the engine sees what an SDK client would; members the SDK does not know are
// dropped when the result is encoded again, which only ever removes data.
type listResult interface {
	mcp.ListToolsResult | mcp.ListResourcesResult | mcp.ListPromptsResult | mcp.ListResourceTemplatesResult
}

// DecodeList decodes a list result (tools/list, resources/list, resources/templates/list,
// prompts/list).
func DecodeList[T listResult](result json.RawMessage) (*T, error) {
	v := new(T)
	if err := json.Unmarshal(result, v); err != nil {
		return nil, fmt.Errorf("%w: the list result does not decode: %v", ErrServerMessage, err)
	}
	return v, nil
}

// ToolResult is a tools/call result: the SDK's CallToolResult, with structuredContent kept as
// written (numbers and all) for masking by JSON path.
type ToolResult struct {
	*mcp.CallToolResult
	// Structured is structuredContent as sent (nil when absent); EncodeToolResult writes it.
	Structured json.RawMessage
}

// DecodeToolResult decodes a tools/call result.
func DecodeToolResult(result json.RawMessage) (*ToolResult, error) {
	var r mcp.CallToolResult
	if err := json.Unmarshal(result, &r); err != nil {
		return nil, fmt.Errorf("%w: the tools/call result does not decode: %v", ErrServerMessage, err)
	}
	var raw struct {
		Structured json.RawMessage `json:"structuredContent"`
	}
	_, members, err := objectMembers(result)
	if err != nil {
		return nil, fmt.Errorf("%w: the tools/call result %v", ErrServerMessage, err)
	}
	if v, ok := members["structuredContent"]; ok && string(v) != "null" {
		raw.Structured = json.RawMessage(v)
	}
	r.StructuredContent = nil
	return &ToolResult{CallToolResult: &r, Structured: raw.Structured}, nil
}

// EncodeToolResult encodes r, its Structured member as it stands.
func EncodeToolResult(r *ToolResult) (json.RawMessage, error) {
	c := *r.CallToolResult
	c.StructuredContent = nil
	if r.Structured != nil {
		c.StructuredContent = r.Structured
	}
	return json.Marshal(&c)
}

// EncodeResponse encodes a response to id with result (a value the SDK's types marshal, or a
// json.RawMessage): what fn of ServerMessages returns in place of a message it rewrote.
func EncodeResponse(id jsonrpc.ID, result any) ([]byte, error) {
	raw, ok := result.(json.RawMessage)
	if !ok {
		b, err := json.Marshal(result)
		if err != nil {
			return nil, fmt.Errorf("mcp wire: encoding a result: %w", err)
		}
		raw = b
	}
	return jsonrpc.EncodeMessage(&jsonrpc.Response{ID: id, Result: raw})
}

// EncodeErrorResponse encodes a JSON-RPC error response to id: what the engine sends a server in
// answer to a server-initiated request it refused, or a client in place of a withheld result.
func EncodeErrorResponse(id jsonrpc.ID, code int64, message string) ([]byte, error) {
	return jsonrpc.EncodeMessage(&jsonrpc.Response{ID: id, Error: &jsonrpc.Error{Code: code, Message: message}})
}
