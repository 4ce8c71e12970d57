package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/plugins/protocol/mcp/pin"
)

// fakeClock is the engine's clock in tests of tools' ages.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// pinnedRig is a rig at the default ToolsMaxAge whose tools are pinned at first sight, on clock.
func pinnedRig(t *testing.T, version string, clock *fakeClock) *rig {
	store, err := pin.NewStore("tools", pin.ModeFirstSight, nil, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return newRig(t, version, func(c *Config) { c.Pins, c.now = store, clock.now })
}

// callCustomer calls get_customer: nil when it went through, else the refusal.
func callCustomer(t *testing.T, cs *mcp.ClientSession) *jsonrpc.Error {
	t.Helper()
	res, err := cs.CallTool(ctx(t), &mcp.CallToolParams{Name: "get_customer", Arguments: map[string]any{"id": 1}})
	if we, ok := errors.AsType[*jsonrpc.Error](err); ok {
		return we
	}
	if err != nil || res.IsError {
		t.Fatalf("get_customer: %v %+v", err, res)
	}
	return nil
}

// refusedAsChanged fails unless we is the refusal of a changed get_customer, quoting none of its
// new description, and a denied record says so.
func refusedAsChanged(t *testing.T, r *rig, we *jsonrpc.Error) {
	t.Helper()
	if we == nil || !strings.Contains(we.Message, `"get_customer"`) || !strings.Contains(we.Message, "svidbroker mcp pin tools --accept") {
		t.Fatalf("the changed tool was called: %v", we)
	}
	if strings.Contains(we.Message, "attacker") {
		t.Fatal("the refusal quotes the new description")
	}
	var denied bool
	for _, rec := range r.sink.find(audit.KindDenied, "tools/call get_customer") {
		denied = denied || rec.Detail["refused"] == "tool definition changed"
	}
	if !denied {
		t.Fatalf("no denied record: %+v", r.sink.all())
	}
}

// TestChangedToolDroppedFromRelayedList: a tools/list the engine relays is checked against the pins.
// A changed definition is dropped from the answer (its description never reaches the agent),
// recorded, and its next call refused though the engine's view is younger than ToolsMaxAge. Control:
// before the change the list holds the tool and its call goes through.
func TestChangedToolDroppedFromRelayedList(t *testing.T) {
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
			r := pinnedRig(t, v, clock)
			cs := r.connect(t, agentID, v)
			names := func() (string, []string) {
				res, err := cs.ListTools(ctx(t), nil)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := json.Marshal(res)
				var out []string
				for _, tl := range res.Tools {
					out = append(out, tl.Name)
				}
				return string(b), out
			}
			if _, got := names(); !contains(got, "get_customer") {
				t.Fatalf("control: the unchanged tool is not listed: %v", got)
			}
			if we := callCustomer(t, cs); we != nil {
				t.Fatalf("control: the unchanged tool is refused: %v", we)
			}
			r.shop.poison.Store(true)
			raw, got := names()
			if contains(got, "get_customer") || strings.Contains(raw, "attacker") {
				t.Fatalf("the changed tool was relayed: %s", raw)
			}
			if !contains(got, "note") {
				t.Fatalf("the unchanged tools were dropped too: %v", got)
			}
			var recorded bool
			for _, rec := range r.sink.find(audit.KindDenied, "tools/list") {
				recorded = recorded || (rec.Detail["tool"] == "get_customer" && rec.Detail["refused"] == "tool definition changed")
			}
			if !recorded {
				t.Fatalf("the dropped entry is not recorded: %+v", r.sink.all())
			}
			refusedAsChanged(t, r, callCustomer(t, cs))
		})
	}
}

// TestListChangedMakesToolsStale: the upstream's notifications/tools/list_changed makes the engine's
// view stale, so the next call lists the tools and a changed definition is refused. Control: the same
// change unannounced, within ToolsMaxAge, is not seen (the window the max age bounds), so it is the
// notification that caught it.
func TestListChangedMakesToolsStale(t *testing.T) {
	const v = "2025-06-18" // list_changed comes on the session's GET stream, relayed by the engine
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	r := pinnedRig(t, v, clock)
	changed := make(chan struct{}, 8)
	cs := r.connectWith(t, agentID, v, &mcp.ClientOptions{ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
		changed <- struct{}{}
	}})
	if we := callCustomer(t, cs); we != nil {
		t.Fatalf("before the change: %v", we)
	}
	r.shop.poison.Store(true)
	if we := callCustomer(t, cs); we != nil {
		t.Fatalf("control: an unannounced change within the max age was acted on: %v", we)
	}
	// Another tool added: the server announces that its tools changed.
	r.shop.srv.AddTool(&mcp.Tool{Name: "extra", Description: "Extra.", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{}, nil
		})
	select {
	case <-changed:
	case <-ctx(t).Done():
		t.Fatal("no notifications/tools/list_changed reached the client")
	}
	refusedAsChanged(t, r, callCustomer(t, cs))
}

// TestToolsMaxAgeBoundsWindow: an unannounced change is seen once the engine's view is ToolsMaxAge
// old. Control: just before, the view still stands.
func TestToolsMaxAgeBoundsWindow(t *testing.T) {
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
			r := pinnedRig(t, v, clock)
			cs := r.connect(t, agentID, v)
			if we := callCustomer(t, cs); we != nil {
				t.Fatalf("before the change: %v", we)
			}
			r.shop.poison.Store(true)
			clock.advance(DefaultToolsMaxAge - time.Millisecond)
			if we := callCustomer(t, cs); we != nil {
				t.Fatalf("control: within the max age: %v", we)
			}
			clock.advance(time.Millisecond)
			refusedAsChanged(t, r, callCustomer(t, cs))
		})
	}
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}
