package proxy

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestParamHeaderMismatch: at 2026-07-28 an argument a tool's schema binds to an Mcp-Param header
// must travel in both; a call whose header says another value than its body is refused before it
// reaches the upstream, while the client's own call (header and body agreeing) goes through.
func TestParamHeaderMismatch(t *testing.T) {
	r := newRig(t, "2026-07-28", nil)
	var tamper atomic.Bool
	hc := r.httpClient(t, agentID)
	next := hc.Transport
	hc.Transport = roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if tamper.Load() && req.Header.Get("Mcp-Param-Region") != "" {
			req = req.Clone(req.Context())
			req.Header.Set("Mcp-Param-Region", "north")
		}
		return next.RoundTrip(req)
	})
	c := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil)
	cs, err := c.Connect(ctx(t), &mcp.StreamableClientTransport{Endpoint: r.endpoint(), HTTPClient: hc, MaxRetries: -1},
		&mcp.ClientSessionOptions{ProtocolVersion: "2026-07-28"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if _, err := cs.ListTools(ctx(t), nil); err != nil { // the client learns the header binding
		t.Fatal(err)
	}
	if res, err := cs.CallTool(ctx(t), &mcp.CallToolParams{Name: "in_region", Arguments: map[string]any{"region": "south"}}); err != nil || res.IsError {
		t.Fatalf("agreeing header: %v %+v", err, res)
	}
	if !r.shop.saw(`"region":"south"`) {
		t.Fatal("the agreeing call did not reach the upstream")
	}
	tamper.Store(true)
	_, err = cs.CallTool(ctx(t), &mcp.CallToolParams{Name: "in_region", Arguments: map[string]any{"region": "west"}})
	var we *jsonrpc.Error
	if !errors.As(err, &we) || we.Code != mcp.CodeHeaderMismatch || !strings.Contains(we.Message, "Region") {
		t.Fatalf("disagreeing header: %v", err)
	}
	if r.shop.saw(`"region":"west"`) {
		t.Fatal("the call with a disagreeing header reached the upstream")
	}
}
