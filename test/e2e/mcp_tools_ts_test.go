package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/approval"
	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/test/stack"
)

// connectTools starts `svidbroker connect --protocol http` as persona, to target "tools" of broker b,
// and returns its local MCP URL: plain HTTP on loopback, no credential.
func connectTools(t *testing.T, ts *toolsStack, persona string) string {
	t.Helper()
	p := startConnectArgs(t, ts.s, persona, "--protocol", "http",
		"--listen", "127.0.0.1:0", "--broker", toolsListen(t, ts.tb), "--broker-id", brokerIDName)
	return "http://" + p.addr + "/mcp"
}

// toolRecords are broker b's records of target "tools".
func toolRecords(t testing.TB, b *stack.Broker) []audit.Record {
	t.Helper()
	var out []audit.Record
	if err := audit.Read(b.AuditDir, b.Chain, func(e audit.Entry) error {
		if e.Record.Target == stack.ToolsTargetName {
			out = append(out, e.Record)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func waitToolRecord(t *testing.T, b *stack.Broker, what string, match func(audit.Record) bool) audit.Record {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		for _, r := range toolRecords(t, b) {
			if match(r) {
				return r
			}
		}
	}
	t.Fatalf("no audit record of %s", what)
	return audit.Record{}
}

// listedTools are the names of a tools/list step's result, sorted.
func listedTools(t *testing.T, l tsLine) []string {
	t.Helper()
	var r struct{ Tools []struct{ Name string } }
	if !l.OK || json.Unmarshal(l.Result, &r) != nil {
		t.Fatalf("step %v: not a tools/list result: %v", l.Step, l)
	}
	var names []string
	for _, tool := range r.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names
}

// customerResult is get_customer's result: its text content (JSON) and structuredContent, decoded.
func customerResult(t *testing.T, l tsLine) (text, structured map[string]any) {
	t.Helper()
	var r struct {
		Content []struct {
			Type, Text string
		}
		StructuredContent map[string]any
		IsError           bool
	}
	if !l.OK || json.Unmarshal(l.Result, &r) != nil || r.IsError || len(r.Content) != 1 || r.StructuredContent == nil {
		t.Fatalf("step %v: not a get_customer result with text and structuredContent: %v", l.Step, l)
	}
	if err := json.Unmarshal([]byte(r.Content[0].Text), &text); err != nil {
		t.Fatalf("step %v: get_customer's text is not JSON: %q", l.Step, r.Content[0].Text)
	}
	return text, r.StructuredContent
}

// checkToolMasked: get_customer's ssn (and email) are masked in both the text JSON and structuredContent:
// present, not the stored value, and the stored SSN nowhere in the result.
func checkToolMasked(t *testing.T, l tsLine, c customerRow) {
	t.Helper()
	text, structured := customerResult(t, l)
	for where, m := range map[string]map[string]any{"text": text, "structuredContent": structured} {
		ssn, _ := m["ssn"].(string)
		email, _ := m["email"].(string)
		if ssn == "" || ssn == c.SSN || email == "" || email == c.Email || m["name"] != c.Name {
			t.Errorf("get_customer's %s: ssn %q, email %q, name %v; want both masked and the name %q", where, ssn, email, m["name"], c.Name)
		}
	}
	if strings.Contains(string(l.Result), c.SSN) {
		t.Errorf("the stored SSN reached the client: %s", l.Result)
	}
}

// approver answers held calls of target "tools" on broker b's admin API (the dev approver) while a
// client runs: for each decision in order, it waits for a pending request whose statement contains
// the match, and approves or denies it. Errors come back on the channel, which closes when done.
func approver(ctx context.Context, b *stack.Broker, decisions ...[2]string) <-chan error {
	errs := make(chan error, len(decisions)+1)
	go func() {
		defer close(errs)
		for _, d := range decisions {
			match, verb := d[0], d[1]
			id, err := pendingID(ctx, b, match)
			if err != nil {
				errs <- err
				return
			}
			req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+b.AdminAddr+"/approvals/"+id+"/"+verb, nil)
			req.Header.Set("X-Approver", "lead@example.com")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs <- fmt.Errorf("%s %s: %s", verb, id, resp.Status)
				return
			}
		}
	}()
	return errs
}

// pendingID polls the admin API for a pending request of target "tools" whose statement contains match.
func pendingID(ctx context.Context, b *stack.Broker, match string) (string, error) {
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+b.AdminAddr+"/approvals", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			var reqs []approval.Request
			err = json.NewDecoder(resp.Body).Decode(&reqs)
			resp.Body.Close()
			for _, r := range reqs {
				if r.Target == stack.ToolsTargetName && strings.Contains(r.Statement, match) {
					return r.ID, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no pending approval for %q: %w", match, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// collect waits for the approver to finish and fails the test with its errors.
func collect(t *testing.T, errs <-chan error) {
	t.Helper()
	for err := range errs {
		t.Error(err)
	}
}

// TestToolsTSClientAsAnalyst: the TypeScript SDK's client through `svidbroker connect` as the
// analyst, on target "tools" with the real packs, in one session: the list hides summarize, refund
// and draft_reply; get_customer's SSN and email come back hashed in the text JSON and in
// structuredContent; query of table orders runs and of table customers is refused (recorded as
// denied), as is refund.
func TestToolsTSClientAsAnalyst(t *testing.T) {
	ts := toolsShared(t)
	url := connectTools(t, ts, stack.PersonaAnalyst)
	c := ts.customer(t, 1)
	lines, code := runTSClient(t, mcpEndpoint{URL: url}, nil,
		`{"list":"tools"}`,
		`{"call":"get_customer","arguments":{"id":1}}`,
		`{"call":"query","arguments":{"table":"orders","limit":2}}`,
		`{"call":"query","arguments":{"table":"customers","limit":2}}`,
		`{"call":"refund","arguments":{"order_id":10,"amount":5,"reason":"e2e"}}`)
	if code != 1 {
		t.Errorf("exit %d, want 1 (refused steps): %v", code, lines)
	}
	if c := lines[0]; c.Step != "connect" || !c.OK || c.SessionID == "" {
		t.Fatalf("connect: %v; want a session", c)
	}
	names := listedTools(t, stepResult(t, lines, 0))
	for _, hidden := range []string{"summarize", "refund", "draft_reply"} {
		if slices.Contains(names, hidden) {
			t.Errorf("the analyst's list shows %s: %v", hidden, names)
		}
	}
	for _, shown := range []string{"get_customer", "list_orders", "query"} {
		if !slices.Contains(names, shown) {
			t.Errorf("the analyst's list lacks %s: %v", shown, names)
		}
	}
	checkToolMasked(t, stepResult(t, lines, 1), c)
	var q struct {
		Table string
		Rows  []map[string]any
	}
	if txt, isErr := toolText(t, stepResult(t, lines, 2)); isErr || json.Unmarshal([]byte(txt), &q) != nil || q.Table != "orders" || len(q.Rows) != 2 {
		t.Errorf("query of orders: %s", txt)
	}
	for step, tool := range map[int]string{3: "query", 4: "refund"} {
		if r := stepResult(t, lines, step); r.OK || r.Error == nil || !strings.Contains(r.Error.Message, tool) {
			t.Errorf("the analyst's %s (step %d) was not refused: %v", tool, step, r)
		}
	}
	analyst := mustPersonaID(t, ts.s, stack.PersonaAnalyst)
	// Both queries are recorded; they went in one MCP session (one initialize, the session ID above),
	// over whichever of the client's HTTP connections, each of which the broker records as a session.
	waitToolRecord(t, ts.tb, "the analyst's query of customers", func(r audit.Record) bool {
		return r.Kind == audit.KindDenied && r.SPIFFEID == analyst && r.Statement != nil && strings.HasPrefix(r.Statement.Text, "tools/call query ") &&
			strings.Contains(r.Statement.Text, `"customers"`)
	})
	waitToolRecord(t, ts.tb, "the analyst's query of orders", func(r audit.Record) bool {
		return r.Kind == audit.KindStatement && r.SPIFFEID == analyst && r.Statement != nil && strings.HasPrefix(r.Statement.Text, "tools/call query ") &&
			strings.Contains(r.Statement.Text, `"orders"`) && r.Decision != nil && r.Decision.Allow
	})
}

// TestToolsTSClientAsSupport: the TypeScript SDK's client through `svidbroker connect` as support,
// on target "tools" with the real packs: a refund under 100 runs at once; one of 100 is held until
// the dev approver's admin API approves it, then runs; send_email is held too, and denied here, so
// it fails naming the decision. Each refund that ran is in api.refunds.
func TestToolsTSClientAsSupport(t *testing.T) {
	ts := toolsShared(t)
	url := connectTools(t, ts, stack.PersonaSupport)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	before := ts.refunds(t)
	errs := approver(ctx, ts.tb, [2]string{`"amount":150`, "approve"}, [2]string{"send_email", "deny"})
	lines, code := runTSClient(t, mcpEndpoint{URL: url}, nil,
		`{"call":"refund","arguments":{"order_id":10,"amount":50,"reason":"e2e small"}}`,
		`{"call":"refund","arguments":{"order_id":10,"amount":150,"reason":"e2e large"}}`,
		`{"call":"send_email","arguments":{"to":"bob@example.com","subject":"Your refund","body":"Done."}}`)
	collect(t, errs)
	if code != 1 {
		t.Errorf("exit %d, want 1 (the denied email): %v", code, lines)
	}
	for step, amount := range map[int]string{0: `"amount":50`, 1: `"amount":150`} {
		if txt, isErr := toolText(t, stepResult(t, lines, step)); isErr || !strings.Contains(txt, `"order_id":10`) || !strings.Contains(txt, amount) {
			t.Errorf("refund step %d: %s", step, txt)
		}
	}
	if r := stepResult(t, lines, 2); r.OK || r.Error == nil || !strings.Contains(r.Error.Message, "denied") {
		t.Errorf("the denied send_email: %v", r)
	}
	if got := ts.refunds(t) - before; got != 2 {
		t.Errorf("%d refunds recorded in api.refunds, want 2", got)
	}
	support := mustPersonaID(t, ts.s, stack.PersonaSupport)
	waitToolRecord(t, ts.tb, "support's approved refund", func(r audit.Record) bool {
		return r.SPIFFEID == support && r.Statement != nil && strings.Contains(r.Statement.Text, `"amount":150`) &&
			r.Decision != nil && r.Decision.Allow && slices.Contains(r.Decision.Policies, "support-tools-large-refunds-approved")
	})
}

// refunds counts the rows of api.refunds.
func (ts *toolsStack) refunds(t *testing.T) int {
	t.Helper()
	db, err := ts.s.Postgres.Connect(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	var n int
	if err := db.QueryRow(t.Context(), "SELECT count(*) FROM api.refunds").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// agentOptions are examples/claude-agent's options for url, as it gives them to the Claude Agent SDK
// (`agent.mjs --print-options`, run without ANTHROPIC_API_KEY).
type agentOptions struct {
	MCPServers map[string]struct {
		Type, URL string
	} `json:"mcpServers"`
	StrictMCPConfig bool     `json:"strictMcpConfig"`
	SettingSources  []string `json:"settingSources"`
	Tools           []string `json:"tools"`
	AllowedTools    []string `json:"allowedTools"`
	Env             []string `json:"env"`
	OnElicitation   string   `json:"onElicitation"`
}

func claudeAgentOptions(t *testing.T, url string) agentOptions {
	t.Helper()
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "examples", "claude-agent")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@anthropic-ai", "claude-agent-sdk", "package.json")); err != nil {
		t.Fatalf("the Claude Agent SDK is not installed in %s: run `make npm` first", dir)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: the Claude agent example needs Node.js 20 or later")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "agent.mjs", "--url", url, "--print-options")
	cmd.Dir, cmd.Env = dir, []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()} // no ANTHROPIC_API_KEY
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("agent.mjs --print-options: %v\n%s", err, out)
	}
	var o agentOptions
	if err := json.Unmarshal(out, &o); err != nil {
		t.Fatalf("agent.mjs --print-options printed %q: %v", out, err)
	}
	return o
}

// TestClaudeAgentMCPConfiguration (issue 16, deliverable 8, without ANTHROPIC_API_KEY): the MCP
// configuration examples/claude-agent gives the Claude Agent SDK — one http server, svidbroker
// connect's loopback URL, no secret — driven through the TypeScript SDK's client as support, on
// target "tools" with the real packs: the list is filtered, get_customer's SSN is masked, query is
// refused, and send_email is held until the dev approver's admin API approves it, then runs.
func TestClaudeAgentMCPConfiguration(t *testing.T) {
	ts := toolsShared(t)
	url := connectTools(t, ts, stack.PersonaSupport)
	o := claudeAgentOptions(t, url)
	if len(o.MCPServers) != 1 || !o.StrictMCPConfig || len(o.SettingSources) != 0 || len(o.Tools) != 0 ||
		!slices.Equal(o.AllowedTools, []string{"mcp__shop"}) || slices.Contains(o.Env, "ANTHROPIC_API_KEY") {
		t.Fatalf("the agent's options: %+v; want one MCP server, strict, no settings, no built-in tools, and no key", o)
	}
	server, ok := o.MCPServers["shop"]
	if !ok || server.Type != "http" || server.URL != url {
		t.Fatalf("the agent's MCP server: %+v; want shop, type http, at %s", o.MCPServers, url)
	}
	c := ts.customer(t, 2)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	errs := approver(ctx, ts.tb, [2]string{"send_email", "approve"})
	lines, code := runTSClient(t, mcpEndpoint{URL: server.URL}, nil,
		`{"list":"tools"}`,
		`{"call":"get_customer","arguments":{"id":2}}`,
		`{"call":"query","arguments":{"table":"orders","limit":1}}`,
		`{"call":"send_email","arguments":{"to":"carol@example.com","subject":"Your order","body":"It shipped."}}`)
	collect(t, errs)
	if code != 1 {
		t.Errorf("exit %d, want 1 (the refused query): %v", code, lines)
	}
	names := listedTools(t, stepResult(t, lines, 0))
	for _, want := range [][2]any{{"summarize", false}, {"query", false}, {"ask_user", false}, {"get_customer", true}, {"refund", true}, {"send_email", true}} {
		if slices.Contains(names, want[0].(string)) != want[1].(bool) {
			t.Errorf("support's list %v: %s listed = %v", names, want[0], !want[1].(bool))
		}
	}
	checkToolMasked(t, stepResult(t, lines, 1), c)
	if r := stepResult(t, lines, 2); r.OK || r.Error == nil || !strings.Contains(r.Error.Message, "query") {
		t.Errorf("support's query was not refused: %v", r)
	}
	if txt, isErr := toolText(t, stepResult(t, lines, 3)); isErr || !strings.Contains(txt, `"id"`) {
		t.Errorf("the approved send_email: %s", txt)
	}
	support := mustPersonaID(t, ts.s, stack.PersonaSupport)
	waitToolRecord(t, ts.tb, "support's approved send_email", func(r audit.Record) bool {
		return r.SPIFFEID == support && r.Statement != nil && strings.HasPrefix(r.Statement.Text, "tools/call send_email ") &&
			r.Decision != nil && r.Decision.Allow && slices.Contains(r.Decision.Policies, "support-tools-send-email-approved")
	})
}
