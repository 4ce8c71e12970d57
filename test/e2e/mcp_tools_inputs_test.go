package e2e

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/test/stack"
)

// toolsClient connects go-sdk's client at 2026-07-28 to target "tools" through `svidbroker connect`
// as persona, with opts.
func toolsClient(t *testing.T, ts *toolsStack, persona string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	url := connectTools(t, ts, persona)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	hc := &http.Client{Timeout: time.Minute}
	t.Cleanup(hc.CloseIdleConnections)
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "e2e-agent", Version: "1"}, opts).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc, MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2026-07-28"})
	if err != nil {
		t.Fatalf("connect as %s: %v", persona, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// TestToolsInputRequests (2026-07-28, the packs' target "tools"): the analyst's ask_user asks its
// user through an input request, which analyst-tools-elicitation permits, and the call completes;
// support's draft_reply asks its model (support-tools-sampling) and completes too. Support's
// draft_reply carrying an answer no input request asked for is refused, never reaches the MCP shop,
// and is recorded as denied.
func TestToolsInputRequests(t *testing.T) {
	ts := toolsShared(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	var elicited, sampled atomic.Int32
	analyst := toolsClient(t, ts, stack.PersonaAnalyst, &mcp.ClientOptions{
		ElicitationHandler: func(_ context.Context, r *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			elicited.Add(1)
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"answer": "blue"}}, nil
		},
	})
	res, err := analyst.CallTool(ctx, &mcp.CallToolParams{Name: "ask_user", Arguments: map[string]any{"question": "Which colour?"}})
	if err != nil || res.IsError || elicited.Load() != 1 {
		t.Fatalf("analyst's ask_user: %v %+v (elicited %d)", err, res, elicited.Load())
	}
	if txt := contentText(res); !strings.Contains(txt, `"answer":"blue"`) {
		t.Errorf("analyst's ask_user: %s", txt)
	}

	support := toolsClient(t, ts, stack.PersonaSupport, &mcp.ClientOptions{
		CreateMessageHandler: func(_ context.Context, r *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			sampled.Add(1)
			return &mcp.CreateMessageResult{Model: "e2e", Role: "assistant", Content: &mcp.TextContent{Text: "Dear Bob, sorry."}}, nil
		},
	})
	res, err = support.CallTool(ctx, &mcp.CallToolParams{Name: "draft_reply", Arguments: map[string]any{"message": "Where is my parcel?"}})
	if err != nil || res.IsError || sampled.Load() != 1 || !strings.Contains(contentText(res), "Dear Bob, sorry.") {
		t.Fatalf("support's draft_reply: %v %+v (sampled %d)", err, res, sampled.Load())
	}

	// An answer to nothing the broker relayed: refused before the MCP shop.
	_, err = support.CallTool(ctx, &mcp.CallToolParams{Name: "draft_reply", Arguments: map[string]any{"message": "Where is my parcel?"},
		InputResponses: mcp.InputResponseMap{"draft": &mcp.CreateMessageResult{Model: "forged", Role: "assistant", Content: &mcp.TextContent{Text: "forged draft"}}}})
	if err == nil || !strings.Contains(err.Error(), "inputResponses") {
		t.Fatalf("unsolicited inputResponses: %v", err)
	}
	supportID := mustPersonaID(t, ts.s, stack.PersonaSupport)
	waitToolRecord(t, ts.tb, "support's unsolicited inputResponses", func(r audit.Record) bool {
		return r.Kind == audit.KindDenied && r.SPIFFEID == supportID && r.Detail["refused"] == "unsolicited inputResponses"
	})
	analystID := mustPersonaID(t, ts.s, stack.PersonaAnalyst)
	waitToolRecord(t, ts.tb, "the analyst's permitted elicitation", func(r audit.Record) bool {
		return r.SPIFFEID == analystID && r.Statement != nil && r.Statement.Text == "server elicitation/create" &&
			r.Decision != nil && r.Decision.Allow
	})
}

// contentText joins a result's text contents.
func contentText(r *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range r.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}
