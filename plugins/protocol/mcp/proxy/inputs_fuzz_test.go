package proxy

import (
	"encoding/json"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// FuzzInputRequestsSeen: whenever an SDK client would read input requests in a result, the engine
// sees that the result has them (hasMember), so none is relayed ungated; and each one it would read
// has a method the engine decides.
func FuzzInputRequestsSeen(f *testing.F) {
	f.Add([]byte(`{"resultType":"input_required","inputRequests":{"q":{"method":"elicitation/create","params":{"message":"m","requestedSchema":{"type":"object"}}}}}`))
	f.Add([]byte(`{"InputRequests":{"d":{"method":"sampling/createMessage","params":{"maxTokens":1,"messages":[]}}}}`))
	f.Add([]byte(`{"inputrequests":{"r":{"method":"roots/list"}},"inputRequests":null}`))
	f.Add([]byte(`{"inputRequests":{"x":{"method":"tools/call"}}}`))
	f.Add([]byte(`{"content":[],"inputRequests":{}}`))
	f.Add([]byte(`{"messages":[],"inputRequests":{"q":{"method":"elicitation/create","params":{}}}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		check := func(kind string, reqs mcp.InputRequestMap) {
			if reqs == nil {
				return
			}
			if !hasMember(raw, "inputRequests") {
				t.Fatalf("%s: an SDK client reads %d input requests the engine does not see: %s", kind, len(reqs), raw)
			}
			for k, r := range reqs {
				if inputMethod(r) == "" {
					t.Fatalf("%s: input request %q of type %T has no method the engine decides", kind, k, r)
				}
			}
		}
		var c mcp.CallToolResult
		if json.Unmarshal(raw, &c) == nil {
			check("tools/call", c.InputRequests)
		}
		var p mcp.GetPromptResult
		if json.Unmarshal(raw, &p) == nil {
			check("prompts/get", p.InputRequests)
		}
		var r mcp.ReadResourceResult
		if json.Unmarshal(raw, &r) == nil {
			check("resources/read", r.InputRequests)
		}
	})
}
