//! MCP front doors: the Streamable HTTP reverse proxy ([`transport`], `--mcp-listen`, default
//! `127.0.0.1:8889`) and the stdio wrapper ([`stdio`], `pipelock mcp proxy -- CMD`).
//!
//! Both relay JSON-RPC faithfully and pass every message, in both directions, through one hook,
//! [`McpInspector`]. The transport knows nothing about scanning: it asks the inspector for a
//! [`Decision`] and either forwards the message untouched or sends the replacement instead.
//! [`build_inspector`] is the single place that chooses the inspector for a config.

pub mod inspect;
pub mod jsonrpc;
pub mod stdio;
pub mod transport;

use std::sync::Arc;

pub use inspect::{Decision, Direction, McpInspector, PassThrough};

use crate::config::Config;

/// The inspector every MCP front door uses for `config`.
///
/// Today this is [`PassThrough`] (the relay is complete, nothing is scanned yet); the MCP
/// scanning sections (`mcp_input_scanning`, `mcp_tool_scanning`, …) plug in here.
#[must_use]
pub fn build_inspector(config: &Config) -> Arc<dyn McpInspector> {
    let _ = config;
    Arc::new(PassThrough)
}
