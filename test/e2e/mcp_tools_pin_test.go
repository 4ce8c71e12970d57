package e2e

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/test/stack"
)

// summarizePolicy lets support call summarize, which no pack permits: the tool the MCP shop's
// description rotation changes, so that a refusal after the change is the pin's, not the policies'.
const summarizePolicy = `
@id("e2e-tools-support-summarize")
permit (principal in Group::"support", action == Action::"mcp:call", resource == Tool::"tools/summarize");
`

// toolsSession opens a go-sdk client session as persona, with its X.509-SVID, to target "tools" of b,
// and returns it with its HTTP client.
func toolsSession(t *testing.T, ts *toolsStack, b *stack.Broker, persona string) (*mcp.ClientSession, *http.Client) {
	t.Helper()
	_, port, _ := net.SplitHostPort(toolsListen(t, b))
	hc := ts.httpClient(t, persona)
	c := mcp.NewClient(&mcp.Implementation{Name: "e2e-agent", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "https://localhost:" + port + "/mcp", HTTPClient: hc, MaxRetries: -1},
		&mcp.ClientSessionOptions{ProtocolVersion: "2025-06-18"})
	if err != nil {
		t.Fatalf("connect to target tools as %s: %v", persona, err)
	}
	t.Cleanup(func() {
		cs.Close()
		hc.CloseIdleConnections()
	})
	return cs, hc
}

// TestToolsDefinitionChangedUntilAccepted: on target "tools" (the packs, plus a permit of summarize
// for support, and pin = "file"), go-sdk's client as support calls summarize (control); once the MCP
// shop changes summarize's description mid-session, the next call is refused, naming the tool and
// the command, and recorded as denied; get_customer still runs. `svidbroker mcp pin tools` through
// the broker's configuration then shows the change (exit 1, the pin file untouched); `--accept`
// writes it (exit 0); the running broker still refuses (it reads pins when it starts), and after a
// restart the call runs again.
func TestToolsDefinitionChangedUntilAccepted(t *testing.T) {
	ts := toolsShared(t)
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	policies := t.TempDir()
	if err := os.CopyFS(policies, os.DirFS(filepath.Join(root, "policies", "packs"))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(policies, "e2e-summarize.cedar"), []byte(summarizePolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := startToolsBroker(ts.mcpStack, "svidbroker-tools-pins", policies)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := os.ReadFile(b.LogPath())
			if len(out) > 12000 {
				out = out[len(out)-12000:]
			}
			t.Logf("%s (end):\n%s", b.LogPath(), out)
		}
		if err := b.Stop(); err != nil {
			t.Error(err)
		}
	})
	cs, hc := toolsSession(t, ts, b, stack.PersonaSupport)
	args := map[string]any{"text": "The customer asked about order 10."}
	if res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "summarize", Arguments: args}); err != nil || res.IsError {
		t.Fatalf("summarize before the change: %v %+v", err, res)
	}

	poisoned, err := ts.shop.RotateDescription(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := ts.shop.RotateDescription(context.Background(), ""); err != nil { // back to the pinned one
			t.Error(err)
		}
	})
	refused := func(when string) {
		t.Helper()
		_, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "summarize", Arguments: args})
		var we *jsonrpc.Error
		if !errors.As(err, &we) || !strings.Contains(we.Message, `"summarize"`) || !strings.Contains(we.Message, "svidbroker mcp pin tools --accept") {
			t.Fatalf("summarize %s: %v; want refused, naming the tool and the command", when, err)
		}
		if strings.Contains(we.Message, poisoned) {
			t.Fatalf("the refusal quotes the new description: %s", we.Message)
		}
	}
	// The agent lists the tools again (as it does when the server says tools/list_changed): the
	// broker checks each relayed entry against its pin, drops the changed one, and from then on
	// refuses calls to it. (Unlisted, a change is caught once the broker's view of the tools is older
	// than the target's tools_max_age: docs/mcp-targets.md.)
	listed, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range listed.Tools {
		if tool.Name == "summarize" || strings.Contains(tool.Description, poisoned) {
			t.Fatalf("the changed tool reached the agent's list: %q: %q", tool.Name, tool.Description)
		}
	}
	refused("after the change")
	if res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "get_customer", Arguments: map[string]any{"id": 2}}); err != nil || res.IsError {
		t.Fatalf("get_customer after summarize changed: %v %+v", err, res)
	}
	support := mustPersonaID(t, ts.s, stack.PersonaSupport)
	waitToolRecord(t, b, "the refused summarize", func(r audit.Record) bool {
		return r.Kind == audit.KindDenied && r.SPIFFEID == support && r.Detail["refused"] == "tool definition changed" &&
			r.Statement != nil && strings.HasPrefix(r.Statement.Text, "tools/call summarize ")
	})

	pins := toolsPinsPath(b)
	before, err := os.ReadFile(pins)
	if err != nil {
		t.Fatal(err)
	}
	out, code := mcpPinCLI(t, ts.s, b)
	if code != 1 || !strings.Contains(out, "summarize") || strings.Contains(out, "get_customer") {
		t.Fatalf("mcp pin tools: exit %d; want 1, showing summarize's change alone:\n%s", code, out)
	}
	if after, err := os.ReadFile(pins); err != nil || !bytes.Equal(after, before) {
		t.Fatalf("mcp pin without --accept changed the pin file (%v)", err)
	}
	if out, code := mcpPinCLI(t, ts.s, b, "--accept"); code != 0 {
		t.Fatalf("mcp pin tools --accept: exit %d\n%s", code, out)
	}
	if after, err := os.ReadFile(pins); err != nil || bytes.Equal(after, before) {
		t.Fatalf("mcp pin --accept left the pin file as it was (%v)", err)
	}
	if out, code := mcpPinCLI(t, ts.s, b); code != 0 {
		t.Fatalf("mcp pin tools after --accept: exit %d, want 0 (no change left)\n%s", code, out)
	}
	refused("after --accept, before the broker reads the pins again")

	// The restart: the client goes first, as the broker's shutdown waits for open connections.
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := ts.s.RestartBroker(ctx, b, brokerBin); err != nil {
		t.Fatal(err)
	}
	if err := waitListen(toolsListen(t, b)); err != nil {
		t.Fatal(err)
	}
	again, _ := toolsSession(t, ts, b, stack.PersonaSupport)
	if res, err := again.CallTool(t.Context(), &mcp.CallToolParams{Name: "summarize", Arguments: args}); err != nil || res.IsError {
		t.Fatalf("summarize after --accept and a restart: %v %+v", err, res)
	}
}
