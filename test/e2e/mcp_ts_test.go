package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/svidbroker/svidbroker/test/stack"
	"github.com/svidbroker/svidbroker/test/vault"
)

// mcpEndpoint is where the TypeScript client connects and how it proves itself: directly to the MCP
// shop with an API token, or (later) through `svidbroker connect`'s local URL with nothing.
type mcpEndpoint struct {
	URL    string
	CAFile string // the server's CA for an https URL ("" for none)
	Token  string // sent as Authorization: Bearer ("" for none)
}

// tsLine is one line of the TypeScript client's output (test/mcp-ts/client.mjs).
type tsLine struct {
	Step            any             `json:"step"`
	Event           string          `json:"event"`
	Op              string          `json:"op"`
	OK              bool            `json:"ok"`
	ProtocolVersion string          `json:"protocolVersion"`
	SessionID       string          `json:"sessionId"`
	Result          json.RawMessage `json:"result"`
	Params          json.RawMessage `json:"params"`
	Error           *struct {
		Code    any    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	raw string
}

func (l tsLine) String() string { return l.raw }

// runTSClient runs the TypeScript SDK's client (installed by `make npm`) against e with opts and
// steps (JSON objects), and returns its output lines and exit status.
func runTSClient(t *testing.T, e mcpEndpoint, opts []string, steps ...string) ([]tsLine, int) {
	t.Helper()
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "test", "mcp-ts")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "sdk", "package.json")); err != nil {
		t.Fatalf("the TypeScript MCP SDK is not installed in %s: run `make npm` first", dir)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: the TypeScript client needs Node.js 20 or later")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	args := append([]string{filepath.Join(dir, "client.mjs"), "--timeout", "20000"}, opts...)
	env := []string{"PATH=" + os.Getenv("PATH")}
	if e.Token != "" {
		args = append(args, "--token-env", "MCP_TOKEN")
		env = append(env, "MCP_TOKEN="+e.Token) // in the environment: never on a command line others can read
	}
	if e.CAFile != "" {
		env = append(env, "NODE_EXTRA_CA_CERTS="+e.CAFile)
	}
	cmd := exec.CommandContext(ctx, node, append(append(args, e.URL), steps...)...)
	cmd.Env, cmd.Dir = env, dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("node client.mjs: %v\n%s", err, stderr.String())
	}
	var lines []tsLine
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var l tsLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("client.mjs printed a line that is not JSON: %q\nstderr: %s", sc.Text(), stderr.String())
		}
		l.raw = sc.Text()
		lines = append(lines, l)
	}
	if len(lines) == 0 {
		t.Fatalf("client.mjs printed nothing (exit %d)\nstderr: %s", code, stderr.String())
	}
	return lines, code
}

// stepResult returns the output line of step i.
func stepResult(t *testing.T, lines []tsLine, i int) tsLine {
	t.Helper()
	for _, l := range lines {
		if n, ok := l.Step.(float64); ok && int(n) == i {
			return l
		}
	}
	t.Fatalf("no output for step %d in %v", i, lines)
	return tsLine{}
}

// toolText is the text content of a tools/call result, and whether it is an error.
func toolText(t *testing.T, l tsLine) (string, bool) {
	t.Helper()
	var r struct {
		Content []struct{ Type, Text string }
		IsError bool
	}
	if !l.OK || json.Unmarshal(l.Result, &r) != nil {
		t.Fatalf("step %v: not a tool result: %v", l.Step, l)
	}
	var b strings.Builder
	for _, c := range r.Content {
		b.WriteString(c.Text)
	}
	return b.String(), r.IsError
}

// mcpShopDirect is the MCP shop on its own PostgreSQL with the test Vault's API-token engine, and
// tokens of both roles.
func mcpShopDirect(t *testing.T) (m *stack.MCPShop, read, write mcpEndpoint) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s, err := stack.StartPostgres(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	if m, err = s.StartMCPShop(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := vault.Start(vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	cfg := vaultapi.DefaultConfig()
	cfg.Address, cfg.MaxRetries = v.Addr, 0
	if err := cfg.ConfigureTLS(&vaultapi.TLSConfig{CACertBytes: v.CACertPEM}); err != nil {
		t.Fatal(err)
	}
	root, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	root.SetToken(v.RootToken)
	if err := s.ConfigureAPIVault(ctx, root, m, "5m", "1h"); err != nil {
		t.Fatal(err)
	}
	token := func(role string) string {
		sec, err := root.Logical().ReadWithContext(ctx, stack.APIVaultMount+"/creds/"+role)
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := sec.Data["token"].(string)
		if tok == "" {
			t.Fatalf("creds/%s: no token", role)
		}
		return tok
	}
	read = mcpEndpoint{URL: m.URL(), CAFile: m.CAFile, Token: token("api-read")}
	write = read
	write.Token = token("api-write")
	return m, read, write
}

// TestTSClientAgainstMCPShop: the TypeScript SDK's client, as an agent would run it, lists and calls
// the MCP shop's tools, reads its resource and prompt, and answers its elicitation and sampling
// requests, with a token the test Vault issued. The broker's mcp target will be tested by the same
// steps through `svidbroker connect`'s local URL (mcpEndpoint without a token).
func TestTSClientAgainstMCPShop(t *testing.T) {
	_, read, write := mcpShopDirect(t)

	t.Run("lists and calls", func(t *testing.T) {
		lines, code := runTSClient(t, read, []string{"--elicit", `{"action":"accept","content":{"answer":"blue"}}`, "--sample", "Dear Bob, sorry."},
			`{"list":"tools"}`,
			`{"call":"get_customer","arguments":{"id":1}}`,
			`{"call":"query","arguments":{"table":"orders","limit":2}}`,
			`{"call":"ask_user","arguments":{"question":"Which colour?"}}`,
			`{"call":"draft_reply","arguments":{"customer_id":2,"message":"Where is my parcel?"}}`,
			`{"read":"shop://policies/refunds"}`,
			`{"prompt":"refund_request","arguments":{"order_id":"10"}}`)
		if code != 0 {
			t.Fatalf("exit %d: %v", code, lines)
		}
		if c := lines[0]; c.Step != "connect" || !c.OK || c.ProtocolVersion != "2025-11-25" || c.SessionID == "" {
			t.Errorf("connect: %v; want 2025-11-25 with a session", c)
		}
		var tools struct{ Tools []struct{ Name string } }
		if err := json.Unmarshal(stepResult(t, lines, 0).Result, &tools); err != nil || len(tools.Tools) != 8 {
			t.Errorf("tools/list: %d tools (%v)", len(tools.Tools), err)
		}
		txt, isErr := toolText(t, stepResult(t, lines, 1))
		var c struct {
			ID               int
			Name, Email, SSN string
		}
		if err := json.Unmarshal([]byte(txt), &c); err != nil || isErr || c.ID != 1 || c.SSN == "" {
			t.Errorf("get_customer: %s", txt)
		}
		var q struct {
			Table string
			Rows  []map[string]any
		}
		if txt, _ := toolText(t, stepResult(t, lines, 2)); json.Unmarshal([]byte(txt), &q) != nil || q.Table != "orders" || len(q.Rows) != 2 {
			t.Errorf("query: %s", txt)
		}
		if txt, _ := toolText(t, stepResult(t, lines, 3)); txt != `{"action":"accept","answer":"blue"}` {
			t.Errorf("ask_user: %s", txt)
		}
		if txt, _ := toolText(t, stepResult(t, lines, 4)); txt != `{"draft":"Dear Bob, sorry.","model":"svidbroker-test-model"}` {
			t.Errorf("draft_reply: %s", txt)
		}
		events := map[string]int{}
		for _, l := range lines {
			events[l.Event]++
		}
		if events["elicitation/create"] != 1 || events["sampling/createMessage"] != 1 {
			t.Errorf("server requests seen by the client: %v; want one elicitation and one sampling", events)
		}
		if r := stepResult(t, lines, 5); !r.OK || !strings.Contains(string(r.Result), "supervisor") {
			t.Errorf("resources/read: %v", r)
		}
		if r := stepResult(t, lines, 6); !r.OK || !strings.Contains(string(r.Result), "order 10") {
			t.Errorf("prompts/get: %v", r)
		}
	})

	t.Run("tool errors and refused requests set the exit status", func(t *testing.T) {
		lines, code := runTSClient(t, read, nil,
			`{"call":"refund","arguments":{"order_id":10,"amount":5,"reason":"late"}}`,
			`{"call":"ask_user","arguments":{"question":"q"}}`)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		if txt, isErr := toolText(t, stepResult(t, lines, 0)); !isErr || !strings.Contains(txt, "role api-read may not call refund") {
			t.Errorf("refund with a read token: %s", txt)
		}
		if txt, _ := toolText(t, stepResult(t, lines, 1)); txt != `{"action":"decline"}` {
			t.Errorf("ask_user declined by default: %s", txt)
		}
		lines, code = runTSClient(t, write, nil, `{"call":"refund","arguments":{"order_id":10,"amount":5,"reason":"late"}}`)
		if txt, isErr := toolText(t, stepResult(t, lines, 0)); code != 0 || isErr || !strings.Contains(txt, `"order_id":10`) {
			t.Errorf("refund with a write token: exit %d, %s", code, txt)
		}
		bad := read
		bad.Token = "sbt_" + strings.Repeat("0", 64)
		if lines, code := runTSClient(t, bad, nil); code != 3 || lines[0].OK {
			t.Errorf("an unknown token: exit %d, %v; want the connection refused (3)", code, lines)
		}
	})
}
