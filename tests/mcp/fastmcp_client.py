"""FastMCP's own client (PyPI) for Pipelock's end-to-end tests (tests/tests/mcp_policy.rs).

    python fastmcp_client.py http URL [TOKEN] < calls.json    # Streamable HTTP, TOKEN as Bearer
    python fastmcp_client.py stdio CMD [ARGS...] < calls.json # spawns CMD ARGS, talks over stdio

Reads a JSON array of tool calls, `[{"name": ..., "arguments": {...}}, ...]`, on stdin; opens
one session (initialize, tools/list), makes the calls in order in that session and prints one
JSON object on stdout:

    {"tools": [names], "calls": [ANSWER, ...]}

where each ANSWER is `{"name": N, "text": [...], "is_error": bool}` for a result, or
`{"name": N, "error": {"code": C, "message": M, "data": D}}` for a JSON-RPC error. A session
that cannot be opened (for example a 401) prints `{"connect_error": "..."}` and exits 2; any
other failure exits 1 with a traceback. Every step is bounded by a timeout.
"""

import asyncio
import json
import sys
from datetime import timedelta

from fastmcp import Client
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport
from mcp.shared.exceptions import MCPError

STEP_TIMEOUT = timedelta(seconds=60)


def transport_for(args):
    if len(args) >= 2 and args[0] == "http":
        headers = {"Authorization": f"Bearer {args[2]}"} if len(args) > 2 else None
        return StreamableHttpTransport(args[1], headers=headers)
    if len(args) >= 2 and args[0] == "stdio":
        return StdioTransport(command=args[1], args=args[2:])
    sys.exit("usage: fastmcp_client.py http URL [TOKEN] | stdio CMD [ARGS...]  < calls.json")


def describe(error):
    """The error, its causes and the errors it groups, as one line (the JSON-RPC error of a
    refused connect sits deep in anyio's exception groups)."""
    parts = []
    seen = set()
    pending = [error]
    while pending:
        error = pending.pop(0)
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        parts.append(f"{type(error).__name__}: {error}")
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        pending.append(error.__cause__ or error.__context__)
    return " <- ".join(parts)


async def session(transport, calls):
    out = {"calls": []}
    client = Client(transport, timeout=STEP_TIMEOUT, init_timeout=STEP_TIMEOUT)
    try:
        await client.__aenter__()
    except BaseException as error:  # noqa: BLE001 - reported to the test as data
        print(json.dumps({"connect_error": describe(error)}))
        sys.exit(2)
    try:
        tools = await client.list_tools()
        out["tools"] = [t.name for t in tools]
        for call in calls:
            name = call["name"]
            try:
                result = await client.call_tool_mcp(
                    name, call.get("arguments", {}), timeout=STEP_TIMEOUT
                )
            except MCPError as error:
                out["calls"].append(
                    {
                        "name": name,
                        "error": {
                            "code": error.code,
                            "message": error.message,
                            "data": error.data,
                        },
                    }
                )
                continue
            out["calls"].append(
                {
                    "name": name,
                    "text": [c.text for c in result.content if c.type == "text"],
                    "is_error": bool(result.is_error),
                }
            )
    finally:
        await client.__aexit__(None, None, None)
    return out


def main():
    transport = transport_for(sys.argv[1:])
    calls = json.load(sys.stdin)
    out = asyncio.run(session(transport, calls))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
