#!/usr/bin/env node
// An MCP client on the TypeScript SDK, for svidbroker's Go end-to-end tests: it connects over
// Streamable HTTP, runs the steps it is given, and prints one JSON object per line on stdout.
//
//   node client.mjs [options] <url> [step...]
//
// Steps (each a JSON object; with none, {"list":"tools"}):
//   {"list": "tools" | "resources" | "prompts"}
//   {"call": "<tool>", "arguments": {...}}
//   {"read": "<resource uri>"}
//   {"prompt": "<name>", "arguments": {...}}
//
// Options:
//   --token-env NAME   send Authorization: Bearer with the value of environment variable NAME (the
//                      token never appears on the command line); without it, no Authorization
//   --elicit JSON      answer elicitation/create with this result (default: decline)
//   --sample TEXT      answer sampling/createMessage with this text (default: refuse the request)
//   --timeout MS       bound each step and the connection (default 30000)
//
// Output lines: {"step":"connect","ok":true,"protocolVersion","sessionId","server"}, then per step
// {"step":N,"op":...,"ok":true,"result":{...}} or {"step":N,"op":...,"ok":false,"error":{"code","message"}},
// and {"event":"elicitation/create"|"sampling/createMessage","params":{...}} for each request the
// server sent. HTTPS servers' CAs come from NODE_EXTRA_CA_CERTS.
//
// Exit status: 0 when every step succeeded (and no tool result had isError), 1 when a step failed or
// a tool result had isError, 2 for bad usage, 3 when the connection failed.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CreateMessageRequestSchema, ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const MAX_STEPS = 100;

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function usage(msg) {
  process.stderr.write(`client.mjs: ${msg}\nusage: node client.mjs [--token-env NAME] [--elicit JSON] [--sample TEXT] [--timeout MS] <url> [step...]\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const o = { timeout: 30000, steps: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => (i + 1 < argv.length ? argv[++i] : usage(`${a} needs a value`));
    if (a === "--token-env") o.tokenEnv = val();
    else if (a === "--elicit") o.elicit = parseJSON(val(), "--elicit");
    else if (a === "--sample") o.sample = val();
    else if (a === "--timeout") o.timeout = Number(val());
    else if (a.startsWith("--")) usage(`unknown option ${a}`);
    else if (o.url === undefined) o.url = a;
    else o.steps.push(parseJSON(a, `step ${o.steps.length}`));
  }
  if (o.url === undefined) usage("no URL");
  if (!Number.isInteger(o.timeout) || o.timeout <= 0) usage("--timeout must be a positive integer of milliseconds");
  if (o.steps.length === 0) o.steps.push({ list: "tools" });
  if (o.steps.length > MAX_STEPS) usage(`at most ${MAX_STEPS} steps`);
  return o;
}

function parseJSON(s, what) {
  try {
    const v = JSON.parse(s);
    if (v === null || typeof v !== "object" || Array.isArray(v)) usage(`${what} must be a JSON object`);
    return v;
  } catch (e) {
    usage(`${what} is not JSON: ${e.message}`);
  }
}

function errorOf(e) {
  return { code: e?.code ?? null, message: String(e?.message ?? e) };
}

async function runStep(client, step, timeout) {
  const opts = { timeout };
  if (step.list !== undefined) {
    switch (step.list) {
      case "tools": return ["list_tools", await client.listTools(undefined, opts)];
      case "resources": return ["list_resources", await client.listResources(undefined, opts)];
      case "prompts": return ["list_prompts", await client.listPrompts(undefined, opts)];
      default: throw new Error(`list must be tools, resources or prompts, not ${JSON.stringify(step.list)}`);
    }
  }
  if (typeof step.call === "string") return ["call_tool", await client.callTool({ name: step.call, arguments: step.arguments ?? {} }, undefined, opts)];
  if (typeof step.read === "string") return ["read_resource", await client.readResource({ uri: step.read }, opts)];
  if (typeof step.prompt === "string") return ["get_prompt", await client.getPrompt({ name: step.prompt, arguments: step.arguments ?? {} }, opts)];
  throw new Error("a step is {\"list\"}, {\"call\"}, {\"read\"} or {\"prompt\"}");
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  let url;
  try {
    url = new URL(o.url);
  } catch {
    usage(`${o.url} is not a URL`);
  }
  const headers = {};
  if (o.tokenEnv !== undefined) {
    const tok = process.env[o.tokenEnv];
    if (!tok) usage(`environment variable ${o.tokenEnv} is empty`);
    headers.Authorization = `Bearer ${tok}`;
  }
  const transport = new StreamableHTTPClientTransport(url, { requestInit: { headers } });
  const client = new Client({ name: "svidbroker-mcp-ts-client", version: "1.0.0" }, { capabilities: { elicitation: {}, sampling: {} } });
  client.setRequestHandler(ElicitRequestSchema, async (req) => {
    out({ event: "elicitation/create", params: req.params });
    return o.elicit ?? { action: "decline" };
  });
  client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
    out({ event: "sampling/createMessage", params: req.params });
    if (o.sample === undefined) throw new Error("this client answers no sampling requests (no --sample)");
    return { role: "assistant", model: "svidbroker-test-model", content: { type: "text", text: o.sample }, stopReason: "endTurn" };
  });
  try {
    await client.connect(transport, { timeout: o.timeout });
  } catch (e) {
    out({ step: "connect", ok: false, error: errorOf(e) });
    return 3;
  }
  out({ step: "connect", ok: true, protocolVersion: transport.protocolVersion ?? null, sessionId: transport.sessionId ?? null, server: client.getServerVersion() ?? null });
  let failed = false;
  for (const [i, step] of o.steps.entries()) {
    try {
      const [op, result] = await runStep(client, step, o.timeout);
      out({ step: i, op, ok: true, result });
      if (result?.isError === true) failed = true;
    } catch (e) {
      out({ step: i, ok: false, error: errorOf(e) });
      failed = true;
    }
  }
  try {
    await transport.terminateSession();
  } catch {
    // a server without sessions, or one that already ended it
  }
  await client.close();
  return failed ? 1 : 0;
}

main().then((code) => process.exit(code), (e) => {
  out({ step: "client", ok: false, error: errorOf(e) });
  process.exit(1);
});
