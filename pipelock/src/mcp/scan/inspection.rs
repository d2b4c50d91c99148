//! What the MCP scanner says about one message, and the one place that formats an MCP block:
//! a JSON-RPC error whose `data` names the scanner, rule and reason (the same fields as the
//! HTTP block body), the tool and where in the message it matched, never the matched text.

use serde_json::{json, Value};

use crate::mcp::jsonrpc::error_response;
use crate::policy::{Judgement, Verdict};
use crate::scan::Finding;

/// A side of the MCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Client,
    Server,
}

/// A message to send in place of the blocked one, and to whom.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub to: Peer,
    pub message: Value,
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    /// `{"blocked": true, "what", "scanner", "rule", "reason", "severity", "detail"}`, plus
    /// `"tool"` when the message is a tool call or its result. `detail` is the finding's
    /// redacted preview (where it matched, at most a few leading characters of the match).
    pub data: Value,
}

/// A blocked message.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocked {
    /// Every finding; the first one decided the block.
    pub findings: Vec<Finding>,
    /// How many of `findings` (from the first) block on their own; the rest only warn.
    pub blocking: usize,
    pub error: RpcError,
    /// What to send instead: for a blocked request, the error back to its sender (none for a
    /// notification, which is dropped); for a blocked response, the error to the client in
    /// its place. A batch gets a batch of errors.
    pub reply: Option<Reply>,
}

/// A tool call to be answered by a redirect profile instead of the server.
#[derive(Debug, Clone, PartialEq)]
pub struct Redirected {
    /// The key of `mcp_tool_policy.redirect_profiles`.
    pub profile: String,
    /// The `tools/call` request as the client sent it (the handler's stdin).
    pub request: Value,
    /// The tool's `outputSchema` from the session's listing, when it declares one: the
    /// answer must then carry `structuredContent` to count as a success.
    pub output_schema: Option<Value>,
    pub findings: Vec<Finding>,
}

/// The scanner's answer for one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Inspection {
    /// Forward it.
    Allow,
    /// Forward it, and log these findings.
    Warn(Vec<Finding>),
    /// Do not forward it.
    Block(Blocked),
    /// Do not forward it; answer the client with the redirect profile's output
    /// ([`crate::mcp::redirect`]).
    Redirect(Redirected),
    /// Forward this instead: the server's message with injection cut out of its text
    /// (`response_scanning.action: strip`); the findings only warn.
    Strip {
        message: Value,
        findings: Vec<Finding>,
    },
}

impl Inspection {
    /// Allow, warn or block, from a judgement; `reply` builds the block's reply from its
    /// error.
    pub(crate) fn from_judgement(
        judgement: Judgement,
        code: i64,
        what: &str,
        reply: impl FnOnce(&RpcError) -> Option<Reply>,
    ) -> Self {
        match judgement.block {
            Some(first) => {
                let error = block_error(code, &first, what);
                let blocking = 1 + judgement.more_blocks.len();
                let mut findings = vec![first];
                findings.extend(judgement.more_blocks);
                findings.extend(judgement.warnings);
                let reply = reply(&error);
                Self::Block(Blocked {
                    findings,
                    blocking,
                    error,
                    reply,
                })
            }
            None if judgement.warnings.is_empty() => Self::Allow,
            None => Self::Warn(judgement.warnings),
        }
    }

    /// Adds this inspection's findings to `judgement` (for a batch, judged as a whole). A
    /// redirect cannot answer one element of a batch, so there it blocks.
    pub(crate) fn merge_into(self, judgement: &mut Judgement) {
        let push_block = |finding: Finding, judgement: &mut Judgement| {
            if judgement.block.is_none() {
                judgement.block = Some(finding);
            } else {
                judgement.more_blocks.push(finding);
            }
        };
        match self {
            Self::Allow => {}
            Self::Warn(findings) | Self::Strip { findings, .. } => {
                judgement.warnings.extend(findings);
            }
            Self::Block(blocked) => {
                for (i, finding) in blocked.findings.into_iter().enumerate() {
                    if i < blocked.blocking {
                        push_block(finding, judgement);
                    } else {
                        judgement.warnings.push(finding);
                    }
                }
            }
            Self::Redirect(redirected) => {
                push_block(
                    Finding::unscannable(
                        "tool_policy.redirect_in_batch",
                        format!(
                            "Redirected call (profile {:?}) inside a batch",
                            redirected.profile
                        ),
                        crate::scan::ScannerKind::ToolPolicy,
                    ),
                    judgement,
                );
                judgement.warnings.extend(redirected.findings);
            }
        }
    }

    /// The verdict in the policy's terms (a redirect is a warned, answered call).
    #[must_use]
    pub fn verdict(&self) -> Verdict {
        match self {
            Self::Allow => Verdict::Allow,
            Self::Warn(_) | Self::Redirect(_) | Self::Strip { .. } => Verdict::Warn,
            Self::Block(_) => Verdict::Block,
        }
    }

    /// Names `tool` in a block's error `data` (and in the reply carrying it), so a client
    /// sees which tool call or tool result was refused.
    #[must_use]
    pub(crate) fn naming_tool(mut self, tool: Option<&str>) -> Self {
        let (Self::Block(blocked), Some(tool)) = (&mut self, tool) else {
            return self;
        };
        if let Some(data) = blocked.error.data.as_object_mut() {
            data.insert("tool".into(), tool.into());
        }
        if let Some(data) = blocked
            .reply
            .as_mut()
            .and_then(|reply| reply.message.pointer_mut("/error/data"))
            .and_then(Value::as_object_mut)
        {
            data.insert("tool".into(), tool.into());
        }
        self
    }

    /// Every finding.
    #[must_use]
    pub fn findings(&self) -> &[Finding] {
        match self {
            Self::Allow => &[],
            Self::Warn(findings) | Self::Strip { findings, .. } => findings,
            Self::Block(blocked) => &blocked.findings,
            Self::Redirect(redirected) => &redirected.findings,
        }
    }

    /// A short name: allow, warn, block, redirect or strip.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Warn(_) => "warn",
            Self::Block(_) => "block",
            Self::Redirect(_) => "redirect",
            Self::Strip { .. } => "strip",
        }
    }
}

/// The JSON-RPC error for a block decided by `finding`.
#[must_use]
pub fn block_error(code: i64, finding: &Finding, what: &str) -> RpcError {
    RpcError {
        code,
        message: format!("pipelock: {what} blocked: {}", finding.rule_name),
        data: json!({
            "blocked": true,
            "what": what,
            "scanner": finding.scanner.to_string(),
            "rule": finding.rule_id,
            "reason": finding.rule_name,
            "severity": finding.severity.to_string(),
            "detail": finding.preview,
        }),
    }
}

/// The error as a JSON-RPC response to `id`.
#[must_use]
pub fn error_reply(id: &Value, error: &RpcError) -> Value {
    error_response(id, error.code, &error.message, error.data.clone())
}
