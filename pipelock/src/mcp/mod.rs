//! MCP front doors and MCP scanning.
//!
//! - The front doors: the Streamable HTTP reverse proxy ([`transport`], `--mcp-listen`,
//!   default `127.0.0.1:8889`) and the stdio wrapper ([`stdio`], `pipelock mcp proxy -- CMD`).
//!   Both relay JSON-RPC faithfully and pass every message, in both directions, through one
//!   hook, [`McpInspector`]: it answers a [`Decision`], forward the message untouched or send
//!   the replacement instead. [`build_inspector`] is the single place that chooses the
//!   inspector for a config.
//! - [`jsonrpc`]: the one JSON-RPC model (payloads, messages, error codes, responses) both
//!   the front doors and the scanner use; [`judge`] carries a payload through the inspector.
//! - [`scan`]: the pure, synchronous inspection of JSON-RPC messages in both directions
//!   (per-session state included); [`redirect`] runs the handler programs that answer
//!   redirected tool calls (the only I/O of scanning).

pub mod inspect;
pub mod jsonrpc;
pub mod judge;
pub mod redirect;
pub mod scan;
pub mod scanning;
pub mod stdio;
pub mod transport;

use std::sync::Arc;

pub use inspect::{Decision, Direction, McpInspector, PassThrough};

use crate::config::Config;
use crate::scan::Scanner;
use crate::telemetry::metrics::Metrics;

/// The inspector every MCP front door uses for `config`: the MCP scanner, acting per the
/// `mcp_*` and `tool_chain_detection` sections and the mode, counting its verdicts in
/// `metrics`.
///
/// # Errors
/// The MCP scanner cannot be built from `config` (an invalid pattern or profile).
pub fn build_inspector(
    config: &Config,
    scanner: Arc<Scanner>,
    metrics: Metrics,
) -> Result<Arc<dyn McpInspector>, scan::McpScanBuildError> {
    let scanner = scan::McpScanner::new(config, scanner)?;
    if !scanner.auto_enabled().is_empty() {
        tracing::info!(
            sections = %scanner.auto_enabled().join(", "),
            "MCP scanning turned on what the config leaves off"
        );
    }
    Ok(Arc::new(scanning::ScanningInspector::new(scanner, metrics)))
}
