package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/svidbroker/svidbroker/test/stack"
)

// mcpGuide is the guide's part on the mcp target "tools": the TypeScript SDK's client and the Claude
// agent through each persona's forwarder, and what each persona may do.
func (d *demo) mcpGuide() string {
	dir := d.rel(d.dir)
	return fmt.Sprintf(`
MCP (target "tools": the shop's MCP server, examples/mcpshop, behind the broker at %[1]s; the broker
decides every request with Cedar on the tool and its arguments, filters tools/list, masks results,
holds calls that need a person, and injects a token Vault leased for the role Cedar picks; the tool
definitions are pinned). Each persona runs a second svidbroker connect for it, as its uid; its MCP
URL is in %[2]s/PERSONA.mcp (plain HTTP on loopback; no token, no certificate).
  The TypeScript SDK's client (install once: make npm, or cd test/mcp-ts && npm ci):
    node test/mcp-ts/client.mjs $(cat %[2]s/analyst.mcp)            # the tools the analyst may call
    node test/mcp-ts/client.mjs $(cat %[2]s/analyst.mcp) '{"call":"get_customer","arguments":{"id":1}}'
                                                                  # email and ssn come back as keyed hashes
    node test/mcp-ts/client.mjs $(cat %[2]s/analyst.mcp) '{"call":"query","arguments":{"table":"customers"}}'
                                                                  # refused: the analyst queries orders only
  The Claude agent (examples/claude-agent: make npm, or npm ci there); its MCP configuration names the
  persona's forwarder and holds no secret; the model's ANTHROPIC_API_KEY is the only one it needs:
    node examples/claude-agent/agent.mjs --url $(cat %[2]s/support.mcp) --print-options   # no key needed
    ANTHROPIC_API_KEY=... node examples/claude-agent/agent.mjs --url $(cat %[2]s/support.mcp) \
        "Refund 40 of order 10: it arrived late."
    MCP configuration, per persona: {"mcpServers": {"shop": {"type": "http", "url": "$(cat %[2]s/PERSONA.mcp)"}}}
  What each persona may do there (the packs; svidbroker policy can says it for any caller):
    analyst   get_customer (email and ssn as keyed hashes), list_orders, query on table orders only,
              ask_user (elicitation); send_email held for a person's approval
    support   get_customer (email and ssn partially masked), list_orders, draft_reply (sampling),
              refund below 100 at once and 100 or more held for a support lead; send_email held for
              the security group
    migrator  none of the tools: its list is empty and its calls are refused
    intruder  nothing: no policy lets it connect
    everyone  summarize is hidden (absent from tools/list, refused by name)
`, d.toolsListen, dir)
}

// mcpTour lists the analyst's tools and calls get_customer through the analyst's forwarder, with
// the MCP Go SDK's client (the guide shows the TypeScript SDK's).
func (d *demo) mcpTour() error {
	b, err := os.ReadFile(d.path(stack.PersonaAnalyst + ".mcp"))
	if err != nil {
		return err
	}
	url := strings.TrimSpace(string(b))
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	c := mcp.NewClient(&mcp.Implementation{Name: "svidbroker-demo", Version: "1"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{}, MaxRetries: -1}, nil)
	if err != nil {
		return fmt.Errorf("MCP as the analyst: %w", err)
	}
	defer cs.Close()
	fmt.Printf("\nAs the analyst over MCP (the tools it may call, then get_customer, masked):\n  $ node test/mcp-ts/client.mjs $(cat .demo/analyst.mcp) '{\"list\":\"tools\"}' '{\"call\":\"get_customer\",\"arguments\":{\"id\":1}}'\n")
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		return fmt.Errorf("tools/list as the analyst: %w", err)
	}
	var names []string
	for _, t := range tools.Tools {
		names = append(names, t.Name)
	}
	fmt.Printf("  tools: %s\n", strings.Join(names, ", "))
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "get_customer", Arguments: map[string]any{"id": 1}})
	if err != nil {
		return fmt.Errorf("get_customer as the analyst: %w", err)
	}
	out, err := json.Marshal(res.StructuredContent)
	if err != nil {
		return err
	}
	fmt.Printf("  get_customer: %s\n", out)
	return nil
}
