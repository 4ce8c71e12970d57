#!/usr/bin/env node
// A Claude Agent SDK agent for the shop, whose only MCP server is the local URL of
// `svidbroker connect --protocol http` (plain HTTP on loopback). The agent holds no credential for
// the shop: connect proves the agent's SPIFFE identity to the broker, the broker decides each MCP
// request with Cedar and injects an API token it leased from Vault. The one secret here is
// ANTHROPIC_API_KEY, for the model.
//
//   node agent.mjs --url http://127.0.0.1:7443/mcp "Which orders has customer 2 placed?"
//   node agent.mjs --url http://127.0.0.1:7443/mcp --print-options   # what the agent would run with
//
// Options:
//   --url URL          svidbroker connect's local URL for the mcp target (required; http://127.0.0.1, [::1] or localhost)
//   --answer TEXT      answer the shop's elicitation requests (ask_user) with TEXT; without it they are declined
//   --max-turns N      limit on the agent's turns (default 8)
//   --print-options    print the agent's options as JSON (no secrets) and exit, without the model
import { query } from "@anthropic-ai/claude-agent-sdk";

const SERVER = "shop"; // the MCP server's name: its tools are mcp__shop__<tool>

function usage(msg) {
  process.stderr.write(`agent.mjs: ${msg}\nusage: node agent.mjs --url http://127.0.0.1:PORT/mcp [--answer TEXT] [--max-turns N] [--print-options] PROMPT\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const o = { maxTurns: 8, prompt: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => (i + 1 < argv.length ? argv[++i] : usage(`${a} needs a value`));
    if (a === "--url") o.url = val();
    else if (a === "--answer") o.answer = val();
    else if (a === "--max-turns") o.maxTurns = Number(val());
    else if (a === "--print-options") o.printOptions = true;
    else if (a.startsWith("--")) usage(`unknown option ${a}`);
    else o.prompt.push(a);
  }
  if (!o.url) usage("--url is required");
  let u;
  try {
    u = new URL(o.url);
  } catch {
    usage(`--url ${o.url} is not a URL`);
  }
  // svidbroker connect listens on loopback and speaks plain HTTP there; anything else is not it.
  if (u.protocol !== "http:" || !["127.0.0.1", "[::1]", "localhost"].includes(u.hostname)) {
    usage("--url must be svidbroker connect's loopback URL, http://127.0.0.1:PORT/..., http://[::1]:PORT/... or http://localhost:PORT/...");
  }
  if (u.username || u.password) usage("--url must hold no credentials: the broker injects the shop's token");
  if (!Number.isInteger(o.maxTurns) || o.maxTurns < 1 || o.maxTurns > 50) usage("--max-turns must be from 1 to 50");
  if (!o.printOptions && o.prompt.length === 0) usage("no prompt");
  return o;
}

// options are the agent's: one MCP server, no built-in tools, no settings files (which could add
// MCP servers or keys), and an environment of PATH, HOME and the model's key alone.
function options(o) {
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp" };
  if (process.env.ANTHROPIC_API_KEY) env.ANTHROPIC_API_KEY = process.env.ANTHROPIC_API_KEY;
  return {
    mcpServers: { [SERVER]: { type: "http", url: o.url } },
    strictMcpConfig: true,
    settingSources: [],
    tools: [],
    allowedTools: [`mcp__${SERVER}`], // every tool of this server, and no other
    // What the broker refuses comes back as a tool error the model reads; nothing else is allowed.
    permissionMode: "dontAsk",
    maxTurns: o.maxTurns,
    systemPrompt: "You help the shop's staff with customers, orders and refunds, using the shop's tools only. " +
      "When a tool is refused or held for approval, say so plainly and do not try to get around it.",
    env,
    onElicitation: async (req) => {
      process.stderr.write(`agent: the shop asks: ${req.message}\n`);
      return o.answer === undefined ? { action: "decline" } : { action: "accept", content: { answer: o.answer } };
    },
  };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const opts = options(o);
  if (o.printOptions) {
    const shown = { ...opts, env: Object.keys(opts.env), onElicitation: o.answer === undefined ? "decline" : "accept" };
    process.stdout.write(JSON.stringify(shown, null, 2) + "\n");
    return 0;
  }
  if (!process.env.ANTHROPIC_API_KEY) usage("ANTHROPIC_API_KEY is not set: the agent needs it for the model (and for nothing else)");
  let code = 1;
  for await (const msg of query({ prompt: o.prompt.join(" "), options: opts })) {
    switch (msg.type) {
      case "system":
        if (msg.subtype === "init") {
          const servers = (msg.mcp_servers ?? []).map((s) => `${s.name}: ${s.status}`).join(", ");
          process.stderr.write(`agent: MCP servers: ${servers}\n`);
        }
        break;
      case "assistant":
        for (const block of msg.message?.content ?? []) {
          if (block.type === "text") process.stdout.write(block.text + "\n");
          if (block.type === "tool_use") process.stderr.write(`agent: calls ${block.name} ${JSON.stringify(block.input)}\n`);
        }
        break;
      case "result":
        process.stderr.write(`agent: ${msg.subtype} after ${msg.num_turns} turns\n`);
        code = msg.subtype === "success" ? 0 : 1;
        break;
    }
  }
  return code;
}

main().then((code) => process.exit(code), (e) => {
  process.stderr.write(`agent: ${e?.message ?? e}\n`);
  process.exit(1);
});
