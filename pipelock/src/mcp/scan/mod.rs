//! MCP scanning: pure and synchronous. A transport (the Streamable HTTP reverse proxy, the
//! stdio wrapper, `pipelock check --mcp`) hands every JSON-RPC message to [`McpScanner`] with
//! the [`Session`] it belongs to, and gets an [`Inspection`]: allow, warn, block (with the
//! JSON-RPC error to send instead) or redirect (to a `redirect_profiles` handler, run by
//! [`crate::mcp::redirect`]).
//!
//! - client → server ([`McpScanner::client_message`]): `mcp_input_scanning` (DLP, injection
//!   and, for command-like arguments, shell obfuscation over every string of the params, keys
//!   included), then for `tools/call`: `mcp_session_binding`, `mcp_tool_policy`,
//!   `tool_chain_detection`;
//! - server → client ([`McpScanner::server_message`]): `tools/list` answers go through
//!   `mcp_tool_scanning` (poisoning, drift) and pin the inventory; every other answer, server
//!   request (`sampling/createMessage`, …), notification and error is scanned for injection
//!   (`response_scanning`);
//! - unparseable input ([`McpScanner::parse_error`]): `mcp_input_scanning.on_parse_error`.
//!
//! Responses are matched to the request they answer by JSON-RPC id: the session remembers
//! every client request it saw ([`Session::track_request`]), so a transport that passes each
//! client message through `client_message` may pass `answers: None`; one that knows the
//! request itself (an HTTP POST and its reply) may pass it.
//!
//! Every finding is judged through [`crate::policy`] with the config's mode and `enforce`,
//! and the section's action, exactly like the forward proxy's.

pub mod chains;
mod client;
pub mod drift;
pub mod inspection;
pub mod poison;
mod server;
pub mod session;
pub mod strings;
pub mod tool_policy;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

pub use inspection::{Blocked, Inspection, Peer, Redirected, Reply, RpcError};
pub use session::Session;

use crate::config::{BlockOrWarn, Config, Mode, OnParseError, RedirectProfile, ResponseAction};
use crate::mcp::jsonrpc::{self, ParseError};
use crate::policy::{Enforcement, Judgement};
use crate::scan::injection::{InjectionBuildError, InjectionScanner};
use crate::scan::{Finding, Scanner, ScannerKind};
use chains::ChainDetector;
use poison::{PoisonBuildError, PoisonDetector};
use tool_policy::{ToolPolicy, ToolPolicyBuildError};

/// Why the MCP scanner could not be built from a config.
#[derive(Debug, thiserror::Error)]
pub enum McpScanBuildError {
    #[error(transparent)]
    Injection(#[from] InjectionBuildError),
    #[error(transparent)]
    Poison(#[from] PoisonBuildError),
    #[error(transparent)]
    Policy(#[from] ToolPolicyBuildError),
    #[error("tool chains: {0}")]
    Chains(#[from] regex::Error),
}

/// The MCP scanner for one config: shared by every session (behind an `Arc` if need be).
#[derive(Debug)]
pub struct McpScanner {
    scanner: Arc<Scanner>,
    mode: Mode,
    enforce: bool,
    input_blocks: bool,
    on_parse_error: OnParseError,
    tools_block: bool,
    detect_drift: bool,
    binding_enabled: bool,
    unknown_tool_blocks: bool,
    no_baseline_blocks: bool,
    response_blocks: bool,
    /// `response_scanning.action: strip`: injection is cut out of server messages where it
    /// can be, instead of blocking them.
    response_strip: bool,
    chains: Option<ChainDetector>,
    policy: ToolPolicy,
    redirect_profiles: BTreeMap<String, RedirectProfile>,
    /// Injection patterns for tool arguments and definitions, whether or not
    /// `response_scanning` is on (which governs responses only).
    injection: InjectionScanner,
    poison: PoisonDetector,
    /// The sections the config left off that MCP scanning turned on (see [`McpScanner::new`]).
    auto_enabled: Vec<&'static str>,
}

impl McpScanner {
    /// Builds the MCP scanning of `config` on top of its `scanner`.
    ///
    /// Like the reference's MCP modes, sections the config leaves off are turned on, so an MCP
    /// front door never runs unscanned: `mcp_input_scanning` with action block,
    /// `mcp_tool_scanning` with action warn and drift detection, and `mcp_tool_policy` with the
    /// built-in rules, all warning. [`McpScanner::auto_enabled`] names them, for the logs.
    ///
    /// # Errors
    /// A pattern that does not compile (config validation normally rejects it first).
    pub fn new(config: &Config, scanner: Arc<Scanner>) -> Result<Self, McpScanBuildError> {
        let injection = InjectionScanner::new(&config.response_scanning)?;
        let poison = PoisonDetector::new(InjectionScanner::new(&config.response_scanning)?)?;
        let chains = if config.tool_chain_detection.enabled {
            Some(ChainDetector::new(&config.tool_chain_detection)?)
        } else {
            None
        };
        let mut auto_enabled = Vec::new();
        let policy = if config.mcp_tool_policy.enabled {
            ToolPolicy::new(&config.mcp_tool_policy)?
        } else {
            auto_enabled.push("mcp_tool_policy (built-in rules, warn)");
            ToolPolicy::builtin_warnings()?
        };
        let input = &config.mcp_input_scanning;
        if !input.enabled {
            auto_enabled.push("mcp_input_scanning (block)");
        }
        let tools = &config.mcp_tool_scanning;
        if !tools.enabled {
            auto_enabled.push("mcp_tool_scanning (warn, detect_drift)");
        }
        Ok(Self {
            scanner,
            mode: config.mode,
            enforce: config.enforce_enabled(),
            input_blocks: !input.enabled || input.action == BlockOrWarn::Block,
            on_parse_error: input.on_parse_error,
            tools_block: tools.enabled && tools.action == BlockOrWarn::Block,
            detect_drift: !tools.enabled || tools.detect_drift,
            binding_enabled: config.mcp_session_binding.enabled,
            unknown_tool_blocks: config.mcp_session_binding.unknown_tool_action
                == BlockOrWarn::Block,
            no_baseline_blocks: config.mcp_session_binding.no_baseline_action == BlockOrWarn::Block,
            response_strip: config.response_scanning.enabled
                && config.response_scanning.action == ResponseAction::Strip,
            response_blocks: config.response_scanning.enabled
                && config.response_scanning.action != ResponseAction::Warn,
            chains,
            policy,
            redirect_profiles: config.mcp_tool_policy.redirect_profiles.clone(),
            injection,
            poison,
            auto_enabled,
        })
    }

    /// The sections the config left off that this scanner turned on (empty when the config
    /// enables them all).
    #[must_use]
    pub fn auto_enabled(&self) -> &[&'static str] {
        &self.auto_enabled
    }

    /// The enforcement for a section whose action blocks (`true`) or only warns.
    fn enforcement(&self, section_blocks: bool) -> Enforcement {
        Enforcement {
            mode: self.mode,
            enforce: self.enforce,
            section_blocks,
        }
    }

    /// Whether blocking actions are carried out at all (not audit, `enforce` on): a redirect
    /// is one, so audit mode only warns about it.
    fn enforcing(&self) -> bool {
        self.mode != Mode::Audit && self.enforce
    }

    /// The redirect profile called `name`.
    #[must_use]
    pub fn redirect_profile(&self, name: &str) -> Option<&RedirectProfile> {
        self.redirect_profiles.get(name)
    }

    /// The scanner this MCP scanner reads text with (the redirect runner scans the handler's
    /// output with it).
    #[must_use]
    pub fn scanner(&self) -> &Arc<Scanner> {
        &self.scanner
    }

    /// Injection findings in a redirect handler's output. Pipelock itself would be putting
    /// that text in front of the model, so the findings are judged as blocking whatever
    /// `response_scanning.action` says (audit mode and `enforce: false` still only warn).
    #[must_use]
    pub fn judge_redirect_output(&self, output: &str) -> Judgement {
        let mut judgement = Judgement::default();
        judgement.add_judged(self.injection.scan(output), self.enforcement(true));
        judgement
    }

    /// Bytes from the client that are not a JSON-RPC message: `on_parse_error` decides
    /// (block answers the client with a -32700 error; warn forwards them).
    #[must_use]
    pub fn parse_error(&self, raw: &[u8]) -> Inspection {
        let Err(error) = jsonrpc::validate(raw) else {
            return Inspection::Allow;
        };
        self.unparseable(Peer::Client, &error)
    }

    /// A message that does not parse, from `from`. Client messages follow `on_parse_error`;
    /// server messages are always blocked (what the client would receive is unknown), except
    /// in audit mode or with `enforce: false`.
    fn unparseable(&self, from: Peer, error: &ParseError) -> Inspection {
        let finding = Finding::unscannable(
            "protocol.parse_error",
            format!("Malformed JSON-RPC: {error}"),
            ScannerKind::Protocol,
        );
        let blocks = from == Peer::Server || self.on_parse_error == OnParseError::Block;
        let mut judgement = Judgement::default();
        judgement.add_judged(vec![finding], self.enforcement(blocks));
        // Either way the client is told: it sent the message, or it was waiting for one.
        Inspection::from_judgement(judgement, error.code(), "message", |e| {
            Some(Reply {
                to: Peer::Client,
                message: inspection::error_reply(&Value::Null, e),
            })
        })
    }
}

/// A realistic `tools/list` answer of `count` tools (clean), for benchmarks and tests.
#[must_use]
pub fn sample_tools_list(count: usize) -> Value {
    let tools: Vec<Value> = (0..count)
        .map(|i| {
            json!({
                "name": format!("tool_{i}_search_records"),
                "title": format!("Search records ({i})"),
                "description": format!(
                    "Searches the records of collection {i} and returns matching entries \
                     sorted by relevance. Use filters to narrow the results; large result \
                     sets are paginated with a cursor."),
                "inputSchema": {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string", "description": "Full-text query, for example 'invoices from March'."},
                        "limit": {"type": "integer", "description": "Maximum number of results.", "default": 20, "minimum": 1, "maximum": 100},
                        "sort": {"type": "string", "enum": ["relevance", "date", "amount"], "default": "relevance", "description": "Sort order of the results."},
                        "cursor": {"type": "string", "description": "Cursor from a previous page."},
                        "filters": {"type": "object", "description": "Optional filters.", "properties": {
                            "from": {"type": "string", "format": "date", "description": "Earliest date, inclusive.", "examples": ["2024-01-01"]},
                            "to": {"type": "string", "format": "date", "description": "Latest date, inclusive."}
                        }}
                    },
                    "required": ["query"]
                },
                "outputSchema": {"type": "object", "properties": {
                    "items": {"type": "array", "description": "Matching records."},
                    "next_cursor": {"type": "string", "description": "Cursor of the next page, if any."}
                }},
                "annotations": {"readOnlyHint": true, "openWorldHint": false, "title": "Search"}
            })
        })
        .collect();
    json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}})
}

/// Scans `count` sample tools as the first `tools/list` of a fresh session (the benchmark of
/// the "scanning a tools/list of 100 tools ≤ 1 ms").
#[must_use]
pub fn bench_tools_list(scanner: &McpScanner, tools_list: &Value) -> Inspection {
    let mut session = Session::new();
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    scanner.server_message(&mut session, Some(&request), tools_list)
}

#[cfg(test)]
mod tests;
