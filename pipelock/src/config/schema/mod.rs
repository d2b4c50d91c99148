//! The config schema: one struct per YAML section, field names and defaults as in the reference
//! Pipelock's `docs/configuration.md`. Every struct rejects unknown fields, and every omitted
//! field takes its documented default, so a config written for the reference loads unchanged
//! and a typo is an error rather than a silently disabled control.

mod intercept;
mod mcp;
mod operations;
mod proxy;
mod scanning;

pub use intercept::*;
pub use mcp::*;
pub use operations::*;
pub use proxy::*;
pub use scanning::*;

use std::fmt;

use serde::Deserialize;

/// How Pipelock acts on findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Block everything detected; only allow-listed destinations are reachable.
    Strict,
    /// Block high and critical findings, warn on the rest.
    #[default]
    Balanced,
    /// Log everything, block nothing.
    Audit,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Strict => "strict",
            Self::Balanced => "balanced",
            Self::Audit => "audit",
        })
    }
}

/// An action that either blocks or only warns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockOrWarn {
    Block,
    #[default]
    Warn,
}

/// What to do with a response that carries prompt injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseAction {
    Block,
    Strip,
    #[default]
    Warn,
    Ask,
}

/// What a tool-policy rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    #[default]
    Warn,
    Ask,
    Redirect,
    Block,
}

/// How severe a finding is (ordered: low < medium < high < critical).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    #[default]
    Medium,
    High,
    Critical,
}

macro_rules! display_lowercase {
    ($($ty:ty),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&format!("{self:?}").to_lowercase())
            }
        }
    )*};
}
display_lowercase!(BlockOrWarn, ResponseAction, RuleAction, Severity);

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Config format version; only 1 exists.
    pub version: u32,
    pub mode: Mode,
    /// `false` turns every block into a log line (as the reference's `enforce: false`).
    pub enforce: Option<bool>,
    /// Add a hint header explaining blocks.
    pub explain_blocks: bool,
    /// Destinations reachable in strict mode.
    pub api_allowlist: Vec<String>,
    /// Findings to ignore: by rule, optionally limited to a path or URL glob.
    pub suppress: Vec<Suppression>,
    /// Serve `/metrics` on its own listener instead of the main one (`host:port`).
    pub metrics_listen: String,
    /// Domains whose private DNS answers are not SSRF (`*.x.com` also matches `x.com`).
    pub trusted_domains: Vec<String>,
    pub ssrf: Ssrf,
    /// CIDRs counted as internal by the SSRF guard.
    pub internal: Vec<String>,
    pub fetch_proxy: FetchProxy,
    pub forward_proxy: ForwardProxy,
    pub tls_interception: TlsInterception,
    pub websocket_proxy: WebsocketProxy,
    pub reverse_proxy: ReverseProxy,
    pub request_body_scanning: RequestBodyScanning,
    pub dlp: Dlp,
    pub seed_phrase_detection: SeedPhraseDetection,
    pub canary_tokens: CanaryTokens,
    pub response_scanning: ResponseScanning,
    pub mcp_input_scanning: McpInputScanning,
    pub mcp_tool_scanning: McpToolScanning,
    pub mcp_tool_policy: McpToolPolicy,
    pub mcp_session_binding: McpSessionBinding,
    pub mcp_ws_listener: McpWsListener,
    /// The MCP Streamable HTTP reverse proxy (a Pipelock extension).
    pub mcp_reverse_proxy: McpReverseProxy,
    pub tool_chain_detection: ToolChainDetection,
    pub session_profiling: SessionProfiling,
    pub adaptive_enforcement: AdaptiveEnforcement,
    pub kill_switch: KillSwitch,
    pub logging: Logging,
    pub health_watchdog: HealthWatchdog,
    pub flight_recorder: FlightRecorder,
    /// Transparent interception (a Pipelock extension).
    pub intercept: Intercept,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: 1,
            mode: Mode::Balanced,
            enforce: None,
            explain_blocks: false,
            api_allowlist: [
                "*.anthropic.com",
                "*.openai.com",
                "api.telegram.org",
                "*.discord.com",
                "gateway.discord.gg",
                "*.slack.com",
                "github.com",
                "*.github.com",
                "*.githubusercontent.com",
                "registry.npmjs.org",
            ]
            .map(String::from)
            .to_vec(),
            suppress: Vec::new(),
            metrics_listen: String::new(),
            trusted_domains: Vec::new(),
            ssrf: Ssrf::default(),
            internal: [
                "0.0.0.0/8",
                "127.0.0.0/8",
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "169.254.0.0/16",
                "100.64.0.0/10",
                "224.0.0.0/4",
                "::1/128",
                "fc00::/7",
                "fe80::/10",
                "ff00::/8",
            ]
            .map(String::from)
            .to_vec(),
            fetch_proxy: FetchProxy::default(),
            forward_proxy: ForwardProxy::default(),
            tls_interception: TlsInterception::default(),
            websocket_proxy: WebsocketProxy::default(),
            reverse_proxy: ReverseProxy::default(),
            request_body_scanning: RequestBodyScanning::default(),
            dlp: Dlp::default(),
            seed_phrase_detection: SeedPhraseDetection::default(),
            canary_tokens: CanaryTokens::default(),
            response_scanning: ResponseScanning::default(),
            mcp_input_scanning: McpInputScanning::default(),
            mcp_tool_scanning: McpToolScanning::default(),
            mcp_tool_policy: McpToolPolicy::default(),
            mcp_session_binding: McpSessionBinding::default(),
            mcp_ws_listener: McpWsListener::default(),
            mcp_reverse_proxy: McpReverseProxy::default(),
            tool_chain_detection: ToolChainDetection::default(),
            session_profiling: SessionProfiling::default(),
            adaptive_enforcement: AdaptiveEnforcement::default(),
            kill_switch: KillSwitch::default(),
            logging: Logging::default(),
            health_watchdog: HealthWatchdog::default(),
            flight_recorder: FlightRecorder::default(),
            intercept: Intercept::default(),
        }
    }
}

impl Config {
    /// Whether blocks are enforced (`enforce` omitted means yes).
    #[must_use]
    pub fn enforce_enabled(&self) -> bool {
        self.enforce.unwrap_or(true)
    }
}

/// One suppressed finding.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Suppression {
    pub rule: String,
    pub path: String,
    pub reason: String,
}

/// SSRF guard exceptions.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ssrf {
    /// CIDRs that may be reached even though they are internal.
    pub ip_allowlist: Vec<String>,
}
