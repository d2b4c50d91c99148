//! What a scanner reports: which rule matched, where, how severe, and a redacted preview that
//! never carries the secret itself.

use std::fmt;
use std::ops::Range;

use crate::config::Severity;

/// Which scanner produced a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScannerKind {
    /// Credentials and identifiers in outbound data.
    Dlp,
    /// A secret from the process environment.
    EnvSecret,
    /// Prompt injection in inbound text.
    Injection,
    /// URL structure (scheme, traversal, entropy, SSRF, …).
    Url,
    /// Obfuscated or dangerous shell in tool arguments.
    Shell,
    /// Hidden instructions in an MCP tool definition.
    ToolPoisoning,
    /// An MCP tool definition that changed within a session (rug pull).
    ToolDrift,
    /// An MCP tool call outside the session's pinned inventory.
    SessionBinding,
    /// A suspicious sequence of MCP tool calls.
    ToolChain,
    /// An MCP tool-policy rule.
    ToolPolicy,
    /// A message that is not valid JSON-RPC.
    Protocol,
}

impl Finding {
    /// A finding for input that cannot be scanned (too large, compressed, unparseable): the
    /// front doors block it like a critical secret, since what is inside is unknown.
    #[must_use]
    pub fn unscannable(rule_id: &str, reason: String, scanner: ScannerKind) -> Self {
        Self {
            rule_id: rule_id.to_string(),
            rule_name: reason,
            scanner,
            severity: Severity::Critical,
            span: 0..0,
            view: "raw",
            preview: String::new(),
        }
    }
}

impl fmt::Display for ScannerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dlp => "dlp",
            Self::EnvSecret => "env_secret",
            Self::Injection => "injection",
            Self::Url => "url",
            Self::Shell => "shell",
            Self::ToolPoisoning => "tool_poisoning",
            Self::ToolDrift => "tool_drift",
            Self::SessionBinding => "session_binding",
            Self::ToolChain => "tool_chain",
            Self::ToolPolicy => "tool_policy",
            Self::Protocol => "protocol",
        })
    }
}

/// One detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Stable rule id, such as `dlp.aws_access_key_id`.
    pub rule_id: String,
    /// Human name of the rule.
    pub rule_name: String,
    pub scanner: ScannerKind,
    pub severity: Severity,
    /// Byte range of the match in the scanned view (see `view`).
    pub span: Range<usize>,
    /// Which view of the input matched: `raw`, or a decoding/normalization such as `base64`.
    pub view: &'static str,
    /// A redacted preview of the match: its first few characters, then its length.
    pub preview: String,
}

/// How many leading characters of a match a preview keeps.
const PREVIEW_PREFIX_CHARS: usize = 4;

/// A preview of `matched` that identifies it without revealing it: `sk-a…[redacted 51 chars]`.
#[must_use]
pub fn redact(matched: &str) -> String {
    let total = matched.chars().count();
    // Short matches reveal nothing; long ones keep a prefix so an operator can tell keys apart.
    let keep = if total >= 16 { PREVIEW_PREFIX_CHARS } else { 0 };
    let prefix: String = matched.chars().take(keep).collect();
    format!("{prefix}…[redacted {total} chars]")
}

/// A rule-id-safe form of a pattern name: `Internal Token` → `internal_token`.
#[must_use]
pub fn rule_slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn previews_never_contain_the_secret() {
        let secret = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789";
        let preview = redact(secret);
        assert_eq!(preview, format!("sk-a…[redacted {} chars]", secret.len()));
        assert!(!preview.contains("api03"));
        assert_eq!(redact("123-45-6789"), "…[redacted 11 chars]");
    }
}
