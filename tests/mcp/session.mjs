// A full MCP session driven by the official TypeScript SDK client, for the end-to-end tests
// (tests/tests/mcp_transport.rs). It prints one JSON object with what the session saw, with
// values that differ between runs (session ids, timestamps) left out, so that a session
// through Pipelock can be compared with one made directly to the server.
//
//   node session.mjs http URL [TOKEN]     Streamable HTTP (TOKEN sent as a Bearer token)
//   node session.mjs stdio CMD [ARGS...]  stdio: spawns CMD ARGS and talks over its stdin/stdout
//
// Exit code: 0 when the session completed; 1 with the error on stderr otherwise.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [mode, target, ...rest] = process.argv.slice(2);
// Every step is bounded; the test harness also kills this process after its own timeout.
const STEP_TIMEOUT_MS = 15000;

function transportFor() {
  if (mode === "http") {
    const headers = rest[0] ? { Authorization: `Bearer ${rest[0]}` } : {};
    return new StreamableHTTPClientTransport(new URL(target), { requestInit: { headers } });
  }
  if (mode === "stdio") {
    return new StdioClientTransport({ command: target, args: rest, stderr: "inherit" });
  }
  throw new Error(`unknown mode ${mode}; use http or stdio`);
}

const transport = transportFor();
const client = new Client({ name: "pipelock-e2e", version: "1.0.0" });
const options = { timeout: STEP_TIMEOUT_MS };
const out = {};

await client.connect(transport, options);
const server = client.getServerVersion();
out.server = { name: server?.name, version: server?.version };
out.protocolVersion = transport.protocolVersion ?? null;
out.sessionAssigned = mode === "http" ? typeof transport.sessionId === "string" : null;

const tools = await client.listTools({}, options);
out.tools = tools.tools.map((t) => t.name).sort();

const echo = await client.callTool({ name: "echo", arguments: { message: "hello through pipelock" } }, undefined, options);
out.echo = echo.content;

const sum = await client.callTool({ name: "get-sum", arguments: { a: 19, b: 23 } }, undefined, options);
out.sum = sum.content;

// Progress notifications arrive on the POST's SSE stream before the result.
const progress = [];
const long = await client.callTool(
  { name: "trigger-long-running-operation", arguments: { duration: 1, steps: 4 } },
  undefined,
  { ...options, onprogress: (p) => progress.push(p.progress) },
);
out.progress = progress;
out.long = long.content;

const resources = await client.listResources({}, options);
const first = resources.resources.map((r) => r.uri).sort()[0];
out.resource = first;
const read = await client.readResource({ uri: first }, options);
out.read = read.contents.map((c) => ({ uri: c.uri, mimeType: c.mimeType, length: (c.text ?? c.blob ?? "").length }));

if (mode === "http") {
  await transport.terminateSession();
  out.terminated = transport.sessionId === undefined;
  await client.close();
} else {
  const child = transport._process;
  await client.close();
  out.exitCode = child ? child.exitCode : null;
}

console.log(JSON.stringify(out));
process.exit(0);
