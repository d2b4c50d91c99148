//! `pipelock mcp proxy -- CMD ARGS…`: wraps a stdio MCP server (placeholder).
