//! MCP: the Model Context Protocol front door. `scan` is the pure, synchronous inspection of
//! JSON-RPC messages in both directions (per-session state included); `redirect` runs the
//! handler programs that answer redirected tool calls (the only I/O here).

pub mod redirect;
pub mod scan;
