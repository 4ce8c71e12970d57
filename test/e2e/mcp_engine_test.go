package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/test/stack"
)

// mcpTargetName is the broker's mcp target in front of the MCP shop: not the packs' "tools" (its
// catalog's credential roles and pin file belong to the demo), but one these tests' own policies
// decide, with a fixed Vault role and first-sight pins.
const mcpTargetName = "tools-e2e"

// mcpPolicies let support connect to the tools target (whose sessions lease an api-read token) and
// call get_customer and summarize; nothing else of the target is permitted, so its other tools are hidden.
const mcpPolicies = `
@id("e2e-mcp-support-connect")
permit (principal in Group::"support", action == Action::"connect", resource == Target::"tools-e2e");

@id("e2e-mcp-support-get-customer")
permit (principal in Group::"support", action == Action::"mcp:call", resource == Tool::"tools-e2e/get_customer");

@id("e2e-mcp-support-email")
permit (principal in Group::"support", action == Action::"mcp:read-unmasked", resource == ToolField::"tools-e2e/get_customer $.email");

@id("e2e-mcp-support-summarize")
permit (principal in Group::"support", action == Action::"mcp:call", resource == Tool::"tools-e2e/summarize");
`

// mcpEnv is a broker with the mcp target "tools-e2e" in front of the MCP shop, on the HTTP tests' stack
// and Vault (whose API tokens the MCP shop takes too): started once, for the TestMCP tests.
var mcpEnv struct {
	once   sync.Once
	broker *stack.Broker
	shop   *stack.MCPShop
	listen string
	err    error
}

type mcpStack struct {
	*httpStack
	mb     *stack.Broker
	shop   *stack.MCPShop
	listen string
}

func mcpShared(t *testing.T) *mcpStack {
	t.Helper()
	h := httpShared(t)
	mcpEnv.once.Do(func() { mcpEnv.err = startMCPEnv(h) })
	if mcpEnv.err != nil {
		t.Fatal(mcpEnv.err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []string{mcpEnv.broker.LogPath(), mcpEnv.shop.LogPath()} {
				b, _ := os.ReadFile(p)
				if len(b) > 12000 {
					b = b[len(b)-12000:]
				}
				t.Logf("%s (end):\n%s", p, b)
			}
		}
	})
	return &mcpStack{httpStack: h, mb: mcpEnv.broker, shop: mcpEnv.shop, listen: mcpEnv.listen}
}

func startMCPEnv(h *httpStack) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := h.s
	shop, err := s.StartMCPShop(ctx)
	if err != nil {
		return err
	}
	mcpEnv.shop = shop
	root, err := stack.RepoRoot()
	if err != nil {
		return err
	}
	policies, err := os.MkdirTemp("", "mcp-policies-")
	if err != nil {
		return err
	}
	baseline, err := os.ReadFile(filepath.Join(root, "policies", "packs", "baseline", "baseline.cedar"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(policies, "baseline.cedar"), baseline, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(policies, "e2e-mcp.cedar"), []byte(mcpPolicies), 0o644); err != nil {
		return err
	}
	broker, err := s.Persona(stack.PersonaBroker)
	if err != nil {
		return err
	}
	state := filepath.Join(s.Dir, "mcp-pins")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	if err := stack.ChownTree(state, int(broker.UID), int(broker.UID)); err != nil {
		return err
	}
	block, err := s.VaultBlock("vault-journal-svidbroker-mcp", httpEnv.vaultAddr, httpEnv.vaultCA)
	if err != nil {
		return err
	}
	port, err := freeTCPPort()
	if err != nil {
		return err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	target := fmt.Sprintf(`
target %q {
  protocol = "mcp"
  listen   = %q
  backend {
    address            = %q
    ca_file            = %q
    server_name        = "localhost"
    auth               = "vault"
    vault_password_key = "token"
    vault_mount        = "api"
    vault_role         = "api-read"
  }
  mcp {
    pin       = "first-sight"
    state_dir = %q
  }
}

# get_customer's results carry the customer's email and SSN: support reads the email, not the SSN.
catalog %q {
  kind = "mcp"
  tool "get_customer" {
    text = "json"
    field "$.email" { tags = ["pii"] }
    field "$.ssn"   { tags = ["pii", "sensitive"] }
  }
}
`, mcpTargetName, listen, shop.Addr, shop.CAFile, state, mcpTargetName)
	b, err := s.StartBroker(ctx, stack.BrokerOptions{Name: "svidbroker-mcp", Binary: brokerBin, VaultRoles: true, PolicyDir: policies,
		Extra: block + target + stack.JWTBlock()})
	if err != nil {
		return err
	}
	mcpEnv.broker = b
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
			mcpEnv.listen = listen
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the tools target does not listen on %s: %w", listen, err)
		}
	}
}

// endpoint is the tools target's MCP URL, by the name the broker's SVID carries.
func (m *mcpStack) endpoint() string {
	_, port, _ := net.SplitHostPort(m.listen)
	return "https://localhost:" + port + "/mcp"
}

// connect opens a go-sdk client session through the broker with hc, at version.
func (m *mcpStack) connect(t *testing.T, hc *http.Client, version string) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "e2e-agent", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: m.endpoint(), HTTPClient: hc, MaxRetries: -1},
		&mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect at %s: %v", version, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// mcpRecords are the records of the mcp target.
func (m *mcpStack) mcpRecords(t testing.TB) []audit.Record {
	t.Helper()
	var out []audit.Record
	if err := audit.Read(m.mb.AuditDir, m.mb.Chain, func(e audit.Entry) error {
		if e.Record.Target == mcpTargetName {
			out = append(out, e.Record)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func (m *mcpStack) waitMCPRecord(t *testing.T, what string, match func(audit.Record) bool) audit.Record {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		for _, r := range m.mcpRecords(t) {
			if match(r) {
				return r
			}
		}
	}
	t.Fatalf("no audit record of %s", what)
	return audit.Record{}
}

// checkSupportSession: support sees and calls get_customer with the token the broker leased (the
// email in clear, the SSN masked), sees no other tool but summarize, and a call to one is refused by default; both are recorded under support's ID.
func (m *mcpStack) checkSupportSession(t *testing.T, cs *mcp.ClientSession) {
	t.Helper()
	tools, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"get_customer", "summarize"}) {
		t.Fatalf("support sees tools %v, want get_customer and summarize", names)
	}
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "get_customer", Arguments: map[string]any{"id": 1}})
	if err != nil || res.IsError {
		t.Fatalf("get_customer: %v %+v", err, res)
	}
	c := m.customer(t, 1)
	text := res.Content[0].(*mcp.TextContent).Text
	if !strings.Contains(text, c.Name) || !strings.Contains(text, c.Email) {
		t.Fatalf("get_customer 1: %q does not name %q and %q", text, c.Name, c.Email)
	}
	if whole := fmt.Sprint(res.Content, res.StructuredContent); strings.Contains(whole, c.SSN) {
		t.Fatalf("get_customer 1: the SSN reached support: %s", whole)
	}
	_, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "refund", Arguments: map[string]any{"order_id": 10, "amount": 1, "reason": "e2e"}})
	var we *jsonrpc.Error
	if !errors.As(err, &we) || !strings.Contains(we.Message, "refund") {
		t.Fatalf("refund: %v", err)
	}
	support := mustPersonaID(t, m.s, stack.PersonaSupport)
	rec := m.waitMCPRecord(t, "support's get_customer", func(r audit.Record) bool {
		return r.Kind == audit.KindStatement && r.SPIFFEID == support && r.Statement != nil && r.Statement.Text == `tools/call get_customer {"id":1}`
	})
	if rec.Decision == nil || !rec.Decision.Allow {
		t.Fatalf("record %+v", rec)
	}
	m.waitMCPRecord(t, "get_customer's masked result", func(r audit.Record) bool {
		return r.Kind == audit.KindResult && r.SPIFFEID == support && r.Result != nil && r.Result.Tag == "tools/call get_customer ok" &&
			strings.Contains(r.Detail["masked"], "$.ssn=") && !strings.Contains(r.Detail["masked"], "$.email")
	})
	m.waitMCPRecord(t, "support's refused refund", func(r audit.Record) bool {
		return r.Kind == audit.KindDenied && r.SPIFFEID == support && r.Statement != nil && strings.HasPrefix(r.Statement.Text, "tools/call refund ")
	})
}

// TestMCPToolCallOverMTLS: go-sdk's client, as support with its X.509-SVID, through the broker's mcp
// target to the MCP shop, at a version with sessions and at the stateless one.
func TestMCPToolCallOverMTLS(t *testing.T) {
	m := mcpShared(t)
	for _, v := range []string{"2025-06-18", "2026-07-28"} {
		t.Run(v, func(t *testing.T) {
			m.checkSupportSession(t, m.connect(t, m.httpClient(t, stack.PersonaSupport), v))
		})
	}
}

// bearerTransport adds a JWT-SVID bearer to each request.
type bearerTransport struct {
	rt  http.RoundTripper
	tok string
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.tok)
	return b.rt.RoundTrip(r)
}

// CloseIdleConnections closes the connections kept for reuse, at the test's end: the broker's
// shutdown waits for open connections.
func (b bearerTransport) CloseIdleConnections() {
	if c, ok := b.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// TestMCPToolCallOverJWTSVID: the same with support's JWT-SVID as the bearer, and no client
// certificate.
func TestMCPToolCallOverJWTSVID(t *testing.T) {
	m := mcpShared(t)
	hc := m.noCertClient(t)
	hc.Transport = bearerTransport{rt: hc.Transport, tok: m.jwtSVID(t, stack.PersonaSupport, stack.JWTAudience)}
	m.checkSupportSession(t, m.connect(t, hc, "2025-06-18"))
}

// TestMCPToolDefinitionChangedRefused: once the MCP shop changes summarize's description mid-session,
// the next list drops it and the next call to it is refused with an error naming the tool and what an operator does, and
// recorded as denied; the call before the change went through (control), as does get_customer's
// after it.
func TestMCPToolDefinitionChangedRefused(t *testing.T) {
	m := mcpShared(t)
	cs := m.connect(t, m.httpClient(t, stack.PersonaSupport), "2025-06-18")
	args := map[string]any{"text": "The customer asked about order 10."}
	if res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "summarize", Arguments: args}); err != nil || res.IsError {
		t.Fatalf("before the change: %v %+v", err, res)
	}
	if _, err := m.shop.RotateDescription(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := m.shop.RotateDescription(context.Background(), ""); err != nil { // back to the pinned one
			t.Error(err)
		}
		// A relayed list shows the broker the pinned definition again, for the tests that follow.
		if _, err := cs.ListTools(context.Background(), nil); err != nil {
			t.Error(err)
		}
	})
	// The list the agent gets drops the changed tool (its new description never reaches it), and
	// shows the broker the change: the next call is refused whatever tools_max_age says.
	lr, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tl := range lr.Tools {
		if tl.Name == "summarize" {
			t.Fatalf("the changed tool was listed: %q", tl.Description)
		}
	}
	_, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "summarize", Arguments: args})
	var we *jsonrpc.Error
	if !errors.As(err, &we) || !strings.Contains(we.Message, `"summarize"`) || !strings.Contains(we.Message, "svidbroker mcp pin tools-e2e --accept") {
		t.Fatalf("after the change: %v", err)
	}
	if res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "get_customer", Arguments: map[string]any{"id": 2}}); err != nil || res.IsError {
		t.Fatalf("get_customer after summarize changed: %v %+v", err, res)
	}
	support := mustPersonaID(t, m.s, stack.PersonaSupport)
	m.waitMCPRecord(t, "the refused summarize", func(r audit.Record) bool {
		return r.Kind == audit.KindDenied && r.SPIFFEID == support && r.Detail["refused"] == "tool definition changed" &&
			r.Statement != nil && strings.HasPrefix(r.Statement.Text, "tools/call summarize ")
	})
}

// TestMCPThroughConnect: `svidbroker connect --protocol http` forwards an MCP client unchanged: go-sdk's
// client on connect's plain http://127.0.0.1 URL, as support (its X.509-SVID held by the forwarder),
// gets the same session as over mTLS.
func TestMCPThroughConnect(t *testing.T) {
	m := mcpShared(t)
	p := startConnectArgs(t, m.s, stack.PersonaSupport, "--protocol", "http",
		"--listen", "127.0.0.1:0", "--broker", m.listen, "--broker-id", brokerIDName)
	c := mcp.NewClient(&mcp.Implementation{Name: "e2e-agent", Version: "1"}, nil)
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "http://" + p.addr + "/mcp", HTTPClient: hc, MaxRetries: -1},
		&mcp.ClientSessionOptions{ProtocolVersion: "2025-06-18"})
	if err != nil {
		t.Fatalf("connect through svidbroker connect: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	m.checkSupportSession(t, cs)
}
