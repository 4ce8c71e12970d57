package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/test/stack"
)

// TestClaudeAgentHoldsNoShopSecret runs examples/claude-agent/agent.mjs (installed by `make npm`)
// with --print-options: its only MCP server is the forwarder's loopback URL, it has no built-in tools
// and reads no settings files, and the agent process it would start gets PATH, HOME and the model's
// key alone, whatever else this environment holds. A URL that is not loopback plain HTTP, or one with
// credentials in it, is refused.
func TestClaudeAgentHoldsNoShopSecret(t *testing.T) {
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
		t.Fatal("node is not installed: the agent needs Node.js 20 or later")
	}
	run := func(args ...string) (string, int) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, append([]string{"agent.mjs"}, args...)...)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/tmp", "ANTHROPIC_API_KEY=sk-test-key-value",
			"VAULT_TOKEN=hvs.decoy", "SHOP_API_TOKEN=sbt_decoy", "DATABASE_URL=postgres://u:decoy@h/shop"}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			return out.String(), exit.ExitCode()
		case err != nil:
			t.Fatal(err)
		}
		return out.String(), 0
	}
	const url = "http://127.0.0.1:7443/mcp"
	out, code := run("--url", url, "--print-options")
	if code != 0 {
		t.Fatalf("--print-options: exit %d: %s", code, out)
	}
	var opts struct {
		MCPServers      map[string]struct{ Type, URL string } `json:"mcpServers"`
		StrictMCPConfig bool                                  `json:"strictMcpConfig"`
		SettingSources  []string                              `json:"settingSources"`
		Tools           []string                              `json:"tools"`
		AllowedTools    []string                              `json:"allowedTools"`
		Env             []string                              `json:"env"`
	}
	if err := json.Unmarshal([]byte(out), &opts); err != nil {
		t.Fatalf("--print-options printed %q: %v", out, err)
	}
	if len(opts.MCPServers) != 1 || opts.MCPServers["shop"].Type != "http" || opts.MCPServers["shop"].URL != url {
		t.Errorf("MCP servers %+v, want only shop = {http, %s}", opts.MCPServers, url)
	}
	if !opts.StrictMCPConfig || opts.SettingSources == nil || len(opts.SettingSources) != 0 || opts.Tools == nil || len(opts.Tools) != 0 {
		t.Errorf("strict %v, settings %v, built-in tools %v: want strict, none, none", opts.StrictMCPConfig, opts.SettingSources, opts.Tools)
	}
	if !slices.Equal(opts.AllowedTools, []string{"mcp__shop"}) {
		t.Errorf("allowed tools %v, want the shop server's alone", opts.AllowedTools)
	}
	slices.Sort(opts.Env)
	if !slices.Equal(opts.Env, []string{"ANTHROPIC_API_KEY", "HOME", "PATH"}) {
		t.Errorf("the agent process's environment %v, want ANTHROPIC_API_KEY, HOME and PATH", opts.Env)
	}
	for _, secret := range []string{"sk-test-key-value", "decoy"} {
		if strings.Contains(out, secret) {
			t.Errorf("--print-options shows %q", secret)
		}
	}

	for _, bad := range []string{"https://127.0.0.1:7443/mcp", "http://shop.example:7443/mcp", "http://user:pw@127.0.0.1:7443/mcp", "not a url"} {
		if out, code := run("--url", bad, "--print-options"); code != 2 {
			t.Errorf("--url %s: exit %d (%s), want refused (2)", bad, code, out)
		}
	}
}
