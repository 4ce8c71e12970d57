package proxy

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/session"
)

// TestServerRequestGated: a sampling request of the server's reaches the client only when policy
// permits mcp:sampling; refused, the server gets an error and the client is never asked.
func TestServerRequestGated(t *testing.T) {
	for _, permit := range []bool{true, false} {
		t.Run(map[bool]string{true: "permitted", false: "refused"}[permit], func(t *testing.T) {
			r := newRig(t, "2025-06-18", nil)
			r.policy.deny = func(req Request) error {
				if req.Method == "sampling/createMessage" && !permit {
					return errors.New("mcp:sampling on target \"tools\" is not permitted")
				}
				return nil
			}
			var asked atomic.Int32
			cs := r.connectWith(t, agentID, "2025-06-18", &mcp.ClientOptions{
				CreateMessageHandler: func(context.Context, *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
					asked.Add(1)
					return &mcp.CreateMessageResult{Model: "m", Role: "assistant", Content: &mcp.TextContent{Text: "Dear Bob"}}, nil
				}})
			res, err := cs.CallTool(ctx(t), &mcp.CallToolParams{Name: "draft", Arguments: map[string]any{}})
			if err != nil {
				t.Fatal(err)
			}
			got := resultJSON(t, res)
			if permit {
				if asked.Load() != 1 || res.IsError || !strings.Contains(got, "Dear Bob") {
					t.Fatalf("permitted: asked %d, %s", asked.Load(), got)
				}
				return
			}
			if asked.Load() != 0 || !res.IsError || !strings.Contains(got, "not permitted") {
				t.Fatalf("refused: asked %d, %s", asked.Load(), got)
			}
			if len(r.sink.find(audit.KindDenied, "server sampling/createMessage")) != 1 {
				t.Fatalf("records: %+v", r.sink.all())
			}
		})
	}
}

// TestHoldWithProgress: a call that needs a person's approval is held; a client that gave a
// progressToken gets notifications/progress while it waits, then the result once approved.
func TestHoldWithProgress(t *testing.T) {
	approved := make(chan struct{})
	r := newRig(t, "2025-06-18", func(c *Config) {
		c.ProgressEvery = 20 * time.Millisecond
		c.HTTP.Approve = func(ctx context.Context, a session.Approval) (authz.ApprovalState, error) {
			select {
			case <-approved:
				return authz.ApprovalState{State: "approved"}, nil
			case <-ctx.Done():
				return authz.ApprovalState{}, context.Cause(ctx)
			}
		}
	})
	r.policy.approve = func(req Request) bool { return req.Name == "get_customer" }
	var progress atomic.Int32
	cs := r.connectWith(t, agentID, "2025-06-18", &mcp.ClientOptions{
		ProgressNotificationHandler: func(ctx context.Context, req *mcp.ProgressNotificationClientRequest) {
			if strings.Contains(req.Params.Message, "approval") && progress.Add(1) == 2 {
				close(approved) // a person approves once the agent has heard twice that it waits
			}
		}})
	params := &mcp.CallToolParams{Name: "get_customer", Arguments: map[string]any{"id": 3}}
	params.SetProgressToken("tok-1")
	res, err := cs.CallTool(ctx(t), params)
	if err != nil || res.IsError {
		t.Fatalf("%v %+v", err, res)
	}
	if progress.Load() < 2 || !strings.Contains(resultJSON(t, res), "Ada") {
		t.Fatalf("progress %d, %s", progress.Load(), resultJSON(t, res))
	}
	if !r.shop.saw(`"arguments":{"id":3}`) {
		t.Fatal("the approved call did not reach the upstream")
	}
}
