//! Sections of the MCP proxy: input and tool scanning, tool policy with redirect profiles,
//! session binding, the WebSocket listener, and tool-call chain detection.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{BlockOrWarn, RuleAction, Severity};

/// DLP and injection scanning of MCP requests (tool-call arguments).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpInputScanning {
    pub enabled: bool,
    pub action: BlockOrWarn,
    /// What to do with a message that is not valid JSON-RPC.
    pub on_parse_error: OnParseError,
}

/// What to do with an MCP message that does not parse. Only blocking is safe; `warn` (or
/// `forward`) lets it through with a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnParseError {
    #[default]
    Block,
    #[serde(alias = "warn")]
    Forward,
}

/// Poisoning and drift scanning of `tools/list`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpToolScanning {
    pub enabled: bool,
    pub action: BlockOrWarn,
    pub detect_drift: bool,
}

/// Rules on tool calls, with redirect profiles.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpToolPolicy {
    pub enabled: bool,
    pub action: RuleAction,
    pub rules: Vec<ToolRule>,
    pub redirect_profiles: BTreeMap<String, RedirectProfile>,
    pub quarantine_dir: String,
}

impl Default for McpToolPolicy {
    fn default() -> Self {
        Self {
            enabled: false,
            action: RuleAction::Warn,
            rules: Vec::new(),
            redirect_profiles: BTreeMap::new(),
            quarantine_dir: "tmp/pipelock-quarantine".to_string(),
        }
    }
}

/// A tool-policy rule: a tool-name regex, optionally an argument regex (on one key).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolRule {
    pub name: String,
    pub tool_pattern: String,
    pub arg_pattern: String,
    pub arg_key: String,
    /// Empty means the section's `action`.
    pub action: Option<RuleAction>,
    /// Required when `action` is `redirect`: a key of `redirect_profiles`.
    pub redirect_profile: String,
}

/// A program that answers redirected tool calls.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedirectProfile {
    pub exec: Vec<String>,
    pub reason: String,
    pub preserve_argv: bool,
    pub match_abs_path: bool,
}

/// Binding of a session to the tools it was shown.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpSessionBinding {
    pub enabled: bool,
    pub unknown_tool_action: BlockOrWarn,
    pub no_baseline_action: BlockOrWarn,
}

/// The MCP WebSocket listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpWsListener {
    pub allowed_origins: Vec<String>,
    pub max_connections: u64,
}

impl Default for McpWsListener {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_connections: 100,
        }
    }
}

/// Detection of tool-call sequences such as recon then exfiltration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolChainDetection {
    pub enabled: bool,
    pub action: BlockOrWarn,
    pub window_size: u64,
    pub window_seconds: u64,
    pub max_gap: u64,
    /// Tool name → category (read, write, exec, network, env, list, persist).
    pub tool_categories: BTreeMap<String, String>,
    /// Built-in pattern name → action.
    pub pattern_overrides: BTreeMap<String, BlockOrWarn>,
    pub custom_patterns: Vec<ChainPattern>,
}

impl Default for ToolChainDetection {
    fn default() -> Self {
        Self {
            enabled: false,
            action: BlockOrWarn::Warn,
            window_size: 20,
            window_seconds: 60,
            max_gap: 3,
            tool_categories: BTreeMap::new(),
            pattern_overrides: BTreeMap::new(),
            custom_patterns: Vec::new(),
        }
    }
}

/// A custom chain: an ordered sequence of tool categories.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChainPattern {
    pub name: String,
    pub sequence: Vec<String>,
    pub severity: Severity,
    pub action: Option<BlockOrWarn>,
}

/// The MCP Streamable HTTP reverse proxy (a Pipelock extension): MCP clients connect to
/// `listen` instead of the MCP server, and every JSON-RPC message is relayed to and from
/// `upstream` through the MCP inspection hook.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpReverseProxy {
    pub enabled: bool,
    /// `host:port` of the MCP listener.
    pub listen: String,
    /// The MCP server's endpoint, an `http://` or `https://` URL such as
    /// `http://web:3000/mcp`. The operator names it, so the SSRF guard does not apply to it.
    pub upstream: String,
    /// The Bearer token clients must present; `MCP_API_TOKEN` in the environment overrides
    /// it. Empty (and no environment variable) means no authentication.
    pub auth_token: String,
}

impl Default for McpReverseProxy {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:8889".to_string(),
            upstream: String::new(),
            auth_token: String::new(),
        }
    }
}
