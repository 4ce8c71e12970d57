package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/svidbroker/svidbroker/broker/audit"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// resultJSON is a call's result as the agent received it, whole.
func resultJSON(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCallDecidedPerArgument: in one session, a call is allowed with one argument value and refused
// with another; the refusal names the policy, and both are recorded with their arguments.
func TestCallDecidedPerArgument(t *testing.T) {
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			r := newRig(t, v, nil)
			r.policy.deny = func(req Request) error {
				if req.Method == "tools/call" && fmt.Sprint(req.Args["id"]) == "2" {
					return errors.New(`mcp:call on tool "tools/get_customer" is forbidden for customer 2`)
				}
				return nil
			}
			cs := r.connect(t, agentID, v)
			if got := cs.InitializeResult().ProtocolVersion; got != v {
				t.Fatalf("negotiated %s, not %s", got, v)
			}
			res, err := cs.CallTool(ctx(t), &mcp.CallToolParams{Name: "get_customer", Arguments: map[string]any{"id": 1}})
			if err != nil || res.IsError {
				t.Fatalf("id 1: %v %+v", err, res)
			}
			if !strings.Contains(resultJSON(t, res), "Ada") {
				t.Fatalf("id 1: %s", resultJSON(t, res))
			}
			_, err = cs.CallTool(ctx(t), &mcp.CallToolParams{Name: "get_customer", Arguments: map[string]any{"id": 2}})
			var we *jsonrpc.Error
			if !errors.As(err, &we) || we.Code != codeDenied || !strings.Contains(we.Message, "forbid-test") || !strings.Contains(we.Message, "customer 2") {
				t.Fatalf("id 2: %v", err)
			}
			if !r.shop.saw(`"arguments":{"id":1}`) {
				t.Fatal("the allowed call did not reach the upstream")
			}
			if r.shop.saw(`"arguments":{"id":2}`) {
				t.Fatal("the refused call reached the upstream")
			}
			// Policy saw the argument typed as sent, and the version.
			var saw bool
			for _, q := range r.policy.requests() {
				if q.Method == "tools/call" && q.Name == "get_customer" {
					saw = true
					if _, ok := q.Args["id"].(json.Number); !ok || q.Version != v {
						t.Fatalf("policy got %#v at %q", q.Args["id"], q.Version)
					}
				}
			}
			if !saw {
				t.Fatal("policy never decided the call")
			}
			if got := r.sink.find(audit.KindStatement, `tools/call get_customer {"id":1}`); len(got) != 1 || got[0].Decision == nil || !got[0].Decision.Allow {
				t.Fatalf("allowed call's record: %+v", got)
			}
			if got := r.sink.find(audit.KindDenied, `tools/call get_customer {"id":2}`); len(got) != 1 {
				t.Fatalf("refused call's record: %+v", r.sink.all())
			}
			r.noCanary(t)
		})
	}
}
