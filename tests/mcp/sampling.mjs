// An MCP client that offers sampling, for the end-to-end tests (tests/tests/mcp_transport.rs):
// it calls server-everything's `trigger-sampling-request` tool with PROMPT, which makes the
// server send a `sampling/createMessage` request back to this client. The client answers it
// with a canned message. It prints one JSON object: whether the sampling request reached the
// client, and the tool result (or the error) the call ended with.
//
//   node sampling.mjs http URL PROMPT
//   node sampling.mjs stdio PROMPT CMD [ARGS...]
//
// Exit code: 0 when the call ended (with a result or an error); 1 otherwise.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { CreateMessageRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const [mode, ...rest] = process.argv.slice(2);
const STEP_TIMEOUT_MS = 15000;

let prompt;
let transport;
if (mode === "http") {
  prompt = rest[1];
  transport = new StreamableHTTPClientTransport(new URL(rest[0]));
} else if (mode === "stdio") {
  prompt = rest[0];
  transport = new StdioClientTransport({ command: rest[1], args: rest.slice(2), stderr: "inherit" });
} else {
  throw new Error(`unknown mode ${mode}; use http or stdio`);
}

const client = new Client({ name: "pipelock-e2e-sampling", version: "1.0.0" }, { capabilities: { sampling: {} } });
const out = { sampled: [] };
client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
  out.sampled.push(request.params.messages.map((m) => m.content.text ?? "").join("\n"));
  return { model: "canned", role: "assistant", content: { type: "text", text: "canned answer" } };
});

const options = { timeout: STEP_TIMEOUT_MS };
await client.connect(transport, options);
try {
  const result = await client.callTool(
    { name: "trigger-sampling-request", arguments: { prompt, maxTokens: 10 } },
    undefined,
    options,
  );
  out.isError = result.isError ?? false;
  out.text = result.content.map((c) => c.text ?? "").join("\n");
} catch (error) {
  out.error = String(error?.message ?? error);
}
await client.close();
console.log(JSON.stringify(out));
process.exit(0);
