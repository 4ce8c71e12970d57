package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// post sends body to url with the MCP media types and headers h; it returns the status and body.
func post(t *testing.T, c *http.Client, url, body string, h map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// rawSession opens an MCP session at 2025-03-26 with raw requests and returns its id.
func rawSession(t *testing.T, r *rig, c *http.Client) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.endpoint(), strings.NewReader(
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != 200 || sid == "" {
		t.Fatalf("initialize: %d %q", resp.StatusCode, sid)
	}
	h := map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-03-26"}
	if status, body := post(t, c, r.endpoint(), `{"jsonrpc":"2.0","method":"notifications/initialized"}`, h); status != http.StatusAccepted {
		t.Fatalf("initialized: %d %s", status, body)
	}
	return sid
}

// TestJSONRPCRobustness: what a client sends that the JSON-RPC framing or MCP's transport rules
// refuse never reaches the upstream; the well-formed forms go through (controls).
func TestJSONRPCRobustness(t *testing.T) {
	r := newRig(t, "2025-03-26", func(c *Config) { c.HTTP.Limits.MaxBodyBytes = 64 << 10 })
	c := r.httpClient(t, agentID)
	sid := rawSession(t, r, c)
	h := map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-03-26"}
	cases := []struct {
		name     string
		body     string
		h        map[string]string
		status   int
		contains string // in the answer
		reaches  string // "": must not reach the upstream
	}{
		{"batch allowed at 2025-03-26", `[{"jsonrpc":"2.0","id":"a","method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_customer","arguments":{"id":5}}}]`, h, 200, `"Ada"`, `"arguments":{"id":5}`},
		{"another version than the session's", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_customer","arguments":{"id":6}}}`,
			map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-06-18"}, 400, "2025-03-26", ""},
		{"batch refused at 2025-06-18", `[{"jsonrpc":"2.0","id":3,"method":"ping"},{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"get_customer","arguments":{"id":21}}}]`,
			map[string]string{"Mcp-Protocol-Version": "2025-06-18"}, 400, "batch", ""},
		{"initialize again in a session", `{"jsonrpc":"2.0","id":22,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`,
			h, 400, "initialize", ""},
		{"duplicate ids", `[{"jsonrpc":"2.0","id":9,"method":"ping"},{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"get_customer","arguments":{"id":7}}}]`, h, 400, "id", ""},
		{"string id", `{"jsonrpc":"2.0","id":"s-1","method":"tools/call","params":{"name":"get_customer","arguments":{"id":8}}}`, h, 200, `"id":"s-1"`, `"arguments":{"id":8}`},
		{"fractional id", `{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"get_customer","arguments":{"id":9}}}`, h, 400, "id", ""},
		{"null id", `{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"get_customer","arguments":{"id":10}}}`, h, 400, "id", ""},
		{"huge id", `{"jsonrpc":"2.0","id":9007199254740993,"method":"tools/call","params":{"name":"get_customer","arguments":{"id":11}}}`, h, 400, "id", ""},
		{"notification posing as request", `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"get_customer","arguments":{"id":12}}}`, h, 400, "id", ""},
		{"response to a request never sent", `{"jsonrpc":"2.0","id":77,"result":{}}`, h, 400, "never sent", ""},
		{"header disagrees with body", `{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"get_customer","arguments":{"id":14}}}`,
			map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-03-26", "Mcp-Method": "tools/list"}, 400, "Mcp-Method", ""},
		{"name header disagrees with body", `{"jsonrpc":"2.0","id":15,"method":"tools/call","params":{"name":"get_customer","arguments":{"id":16}}}`,
			map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-03-26", "Mcp-Name": "admin_reset"}, 400, "Mcp-Name", ""},
		{"oversized", `{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"get_customer","arguments":{"id":18,"pad":"` + strings.Repeat("x", 70<<10) + `"}}}`, h, 413, "", ""},
		{"duplicate member", `{"jsonrpc":"2.0","id":19,"method":"tools/call","params":{"name":"admin_reset","name":"get_customer","arguments":{"id":20}}}`, h, 400, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(t, c, r.endpoint(), tc.body, tc.h)
			if status != tc.status || !strings.Contains(body, tc.contains) {
				t.Fatalf("got %d %s", status, body)
			}
			if tc.reaches != "" && !r.shop.saw(tc.reaches) {
				t.Fatalf("the permitted message did not reach the upstream")
			}
			if tc.reaches == "" && strings.Contains(tc.body, `"arguments"`) {
				i := strings.Index(tc.body, `"arguments":`)
				args := tc.body[i : i+len(`"arguments":{"id":`)+2]
				if r.shop.saw(args) {
					t.Fatalf("a refused message reached the upstream (%s)", args)
				}
			}
		})
	}
	if len(r.sink.find("denied", "POST /mcp")) < 5 {
		t.Fatalf("refusals not recorded: %+v", r.sink.all())
	}
}
