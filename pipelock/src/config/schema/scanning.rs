//! Sections of the content scanners: DLP, seed phrases, canary tokens and response
//! (prompt-injection) scanning.

use serde::Deserialize;

use super::{ResponseAction, Severity};

/// Data-loss prevention on outbound URLs, headers and bodies.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dlp {
    /// Treat high-entropy values of Pipelock's own environment as secrets.
    pub scan_env: bool,
    /// File of extra secrets, one per line (must not be world-readable).
    pub secrets_file: String,
    pub min_env_secret_length: u64,
    /// Merge the built-in patterns with `patterns` (same name: yours wins).
    pub include_defaults: bool,
    pub patterns: Vec<DlpPattern>,
}

impl Default for Dlp {
    fn default() -> Self {
        Self {
            scan_env: true,
            secrets_file: String::new(),
            min_env_secret_length: 16,
            include_defaults: true,
            patterns: Vec::new(),
        }
    }
}

/// Extra check a DLP match must pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Validator {
    Luhn,
    Mod97,
    Aba,
    Wif,
}

/// Per-pattern override: a custom pattern may only warn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatternAction {
    Warn,
}

/// A DLP pattern.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DlpPattern {
    pub name: String,
    pub regex: String,
    pub severity: Severity,
    pub validator: Option<Validator>,
    pub exempt_domains: Vec<String>,
    pub action: Option<PatternAction>,
}

/// BIP-39 seed phrase detection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeedPhraseDetection {
    pub enabled: bool,
    pub min_words: u64,
    pub verify_checksum: bool,
}

impl Default for SeedPhraseDetection {
    fn default() -> Self {
        Self {
            enabled: true,
            min_words: 12,
            verify_checksum: true,
        }
    }
}

/// Planted fake secrets whose appearance anywhere is a leak.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CanaryTokens {
    pub enabled: bool,
    pub tokens: Vec<CanaryToken>,
}

/// One canary token: a literal value, or the value of an environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CanaryToken {
    pub name: String,
    pub value: String,
    pub env_var: String,
}

/// Prompt-injection scanning of responses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResponseScanning {
    pub enabled: bool,
    pub action: ResponseAction,
    pub ask_timeout_seconds: u64,
    pub include_defaults: bool,
    pub patterns: Vec<ResponsePattern>,
    pub exempt_domains: Vec<String>,
    pub sse_streaming: SseStreaming,
}

impl Default for ResponseScanning {
    fn default() -> Self {
        Self {
            enabled: true,
            action: ResponseAction::Warn,
            ask_timeout_seconds: 30,
            include_defaults: true,
            patterns: Vec::new(),
            exempt_domains: Vec::new(),
            sse_streaming: SseStreaming::default(),
        }
    }
}

/// An injection pattern.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResponsePattern {
    pub name: String,
    pub regex: String,
    pub severity: Severity,
}

/// Scanning of server-sent events as they stream.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SseStreaming {
    pub enabled: bool,
    pub action: ResponseAction,
    /// Events larger than this cannot be scanned and are blocked.
    pub max_event_bytes: u64,
}

impl Default for SseStreaming {
    fn default() -> Self {
        Self {
            enabled: true,
            action: ResponseAction::Block,
            max_event_bytes: 65_536,
        }
    }
}
