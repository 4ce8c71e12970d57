package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/plugins/protocol/mcp/pin"
)

// TestHiddenTool: a tool policy hides is in no list, and a call to it is refused without its
// description or schema, before it reaches the upstream; a visible tool is listed (control).
func TestHiddenTool(t *testing.T) {
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			r := newRig(t, v, nil)
			cs := r.connect(t, agentID, v)
			res, err := cs.ListTools(ctx(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			names := map[string]bool{}
			for _, tool := range res.Tools {
				names[tool.Name] = true
			}
			if names["admin_reset"] || !names["get_customer"] {
				t.Fatalf("listed %v", names)
			}
			b, _ := json.Marshal(res)
			if strings.Contains(string(b), "SECRET-DESCRIPTION") {
				t.Fatal("the hidden tool's description was listed")
			}
			_, err = cs.CallTool(ctx(t), &mcp.CallToolParams{Name: "admin_reset", Arguments: map[string]any{}})
			var we *jsonrpc.Error
			if !errors.As(err, &we) || we.Code != codeDenied || !strings.Contains(we.Message, "default-deny") {
				t.Fatalf("hidden call: %v", err)
			}
			if strings.Contains(we.Message, "SECRET") || strings.Contains(string(we.Data), "SECRET") {
				t.Fatal("the refusal quotes the hidden tool's description")
			}
			if r.shop.saw(`"name":"admin_reset"`) {
				t.Fatal("the hidden tool's call reached the upstream")
			}
			if got := r.sink.find(audit.KindDenied, "tools/call admin_reset"); len(got) != 1 {
				t.Fatalf("records: %+v", got)
			}
		})
	}
}

// TestMasking: fields policy masks are masked in structuredContent and in the text's JSON of a
// text="json" tool; a plain text of such a tool is withheld; an upstream error that quotes a
// protected value is replaced. The field policy leaves in clear stays in clear (control).
func TestMasking(t *testing.T) {
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			r := newRig(t, v, func(c *Config) { c.HTTP.FullData = true })
			fields := []CatalogField{{Path: "$.ssn", Tags: []string{"pii"}}, {Path: "$.email", Tags: []string{"pii"}}}
			r.policy.catalog = map[string]CatalogTool{
				"get_customer": {Name: "get_customer", Text: "json", Fields: fields},
				"note":         {Name: "note", Text: "json", Fields: fields},
				"locked":       {Name: "locked", Fields: fields},
			}
			r.policy.masks = map[string]string{"$.ssn": "redact"}
			r.policy.record = "full"
			cs := r.connect(t, agentID, v)
			res, err := cs.CallTool(ctx(t), &mcp.CallToolParams{Name: "get_customer", Arguments: map[string]any{"id": 1}})
			if err != nil {
				t.Fatal(err)
			}
			got := resultJSON(t, res)
			if strings.Contains(got, ssn) {
				t.Fatalf("the ssn reached the agent: %s", got)
			}
			if !strings.Contains(got, "ada@example.org") {
				t.Fatalf("the email, in clear by policy, is missing: %s", got)
			}
			sc, _ := json.Marshal(res.StructuredContent)
			if !strings.Contains(string(sc), `"ssn":`) || strings.Contains(string(sc), ssn) {
				t.Fatalf("structuredContent: %s", sc)
			}
			text := res.Content[0].(*mcp.TextContent).Text
			var fromText map[string]any
			if err := json.Unmarshal([]byte(text), &fromText); err != nil || fromText["ssn"] == ssn || fromText["email"] != "ada@example.org" {
				t.Fatalf("text JSON: %q", text)
			}

			res, err = cs.CallTool(ctx(t), &mcp.CallToolParams{Name: "note", Arguments: map[string]any{}})
			if err != nil {
				t.Fatal(err)
			}
			if got := resultJSON(t, res); strings.Contains(got, ssn) || !strings.Contains(got, "withheld") {
				t.Fatalf("a plain text of a text=json tool: %s", got)
			}

			_, err = cs.CallTool(ctx(t), &mcp.CallToolParams{Name: "locked", Arguments: map[string]any{}})
			if err == nil || strings.Contains(err.Error(), ssn) || !strings.Contains(err.Error(), "withheld") {
				t.Fatalf("upstream error: %v", err)
			}

			for _, rec := range r.sink.all() {
				b, _ := json.Marshal(rec)
				if strings.Contains(string(b), ssn) {
					t.Fatalf("a record holds the ssn: %s", b)
				}
			}
			var full bool
			for _, rec := range r.sink.all() {
				if rec.Kind == audit.KindResult && rec.Detail["masked"] == "$.ssn=redact" && strings.Contains(rec.Detail["body"], "ada@example.org") {
					full = true
				}
			}
			if !full {
				t.Fatalf("no full masked result recorded: %+v", r.sink.all())
			}
			r.noCanary(t)
		})
	}
}

// TestToolDefinitionChanged: with tools listed before every call (ToolsEveryCall), a tool whose
// definition changes mid-session is refused at the next call, with an error naming the tool and what
// an operator does, and recorded as denied; the call before the change went through (control). The
// default's ways of seeing a change are in freshness_test.go.
func TestToolDefinitionChanged(t *testing.T) {
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			store, err := pin.NewStore("tools", pin.ModeFirstSight, nil, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			r := newRig(t, v, func(c *Config) { c.Pins, c.ToolsMaxAge = store, ToolsEveryCall })
			cs := r.connect(t, agentID, v)
			if _, err := cs.CallTool(ctx(t), &mcp.CallToolParams{Name: "get_customer", Arguments: map[string]any{"id": 1}}); err != nil {
				t.Fatalf("before the change: %v", err)
			}
			mcp.AddTool(r.shop.srv, &mcp.Tool{Name: "get_customer", Description: poisoned},
				func(ctx2 context.Context, req *mcp.CallToolRequest, in customerIn) (*mcp.CallToolResult, customer, error) {
					return nil, customer{ID: in.ID}, nil
				})
			_, err = cs.CallTool(ctx(t), &mcp.CallToolParams{Name: "get_customer", Arguments: map[string]any{"id": 1}})
			var we *jsonrpc.Error
			if !errors.As(err, &we) || !strings.Contains(we.Message, `"get_customer"`) || !strings.Contains(we.Message, "svidbroker mcp pin tools --accept") {
				t.Fatalf("after the change: %v", err)
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
		})
	}
}

// TestSessionBoundToPrincipal: an MCP session's id presented by another principal is refused; its
// owner keeps using it (control).
func TestSessionBoundToPrincipal(t *testing.T) {
	r := newRig(t, "2025-06-18", nil)
	var mu sync.Mutex
	var sid string
	c := r.httpClient(t, agentID)
	tr := c.Transport
	c.Transport = roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := tr.RoundTrip(req)
		if err == nil && resp.Header.Get("Mcp-Session-Id") != "" {
			mu.Lock()
			sid = resp.Header.Get("Mcp-Session-Id")
			mu.Unlock()
		}
		return resp, err
	})
	cl := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil)
	cs, err := cl.Connect(ctx(t), &mcp.StreamableClientTransport{Endpoint: r.endpoint(), HTTPClient: c, MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-06-18"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	mu.Lock()
	id := sid
	mu.Unlock()
	if id == "" {
		t.Fatal("no session id")
	}
	body := `{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{}}`
	status, got := post(t, r.httpClient(t, otherID), r.endpoint(), body, map[string]string{"Mcp-Session-Id": id, "Mcp-Protocol-Version": "2025-06-18"})
	if status != http.StatusForbidden || !strings.Contains(got, "another principal") {
		t.Fatalf("other principal: %d %s", status, got)
	}
	if _, err := cs.ListTools(ctx(t), nil); err != nil {
		t.Fatalf("the owner: %v", err)
	}
	if got := r.sink.find(audit.KindDenied, "POST /mcp"); len(got) != 1 || got[0].SPIFFEID != otherID {
		t.Fatalf("records: %+v", got)
	}
}
