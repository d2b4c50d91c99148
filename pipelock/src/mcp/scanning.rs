//! The scanning inspector: the MCP front doors' hook ([`McpInspector`]) carried out by the MCP
//! scanner ([`McpScanner`]), with one scanning [`Session`] per MCP session id.
//!
//! Allowed and warned messages are forwarded (warnings logged); a blocked message is replaced
//! by the JSON-RPC error the scanner built, towards whoever must hear of it (a blocked server
//! request such as `sampling/createMessage` is answered to the server, and the client never
//! sees it); a redirected tool call is answered by its handler's output.
//!
//! Every judged message is counted in `pipelock_mcp_messages_total{direction, verdict,
//! scanner}` and timed in `pipelock_scan_duration_seconds` (`request` for the client's
//! messages, `response` for the server's), and every warn, block and redirect is logged with
//! the session, method, tool, rule, scanner and the finding's redacted detail: the same
//! verdicts, scanner labels and histogram as the forward proxy.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use serde_json::{json, Value};

use super::inspect::{Decision, Direction, McpInspector};
use super::scan::inspection::{Inspection, Peer};
use super::scan::{McpScanner, Session};
use crate::scan::Finding;
use crate::telemetry::metrics::Metrics;

/// How many sessions are tracked at once; beyond it, the oldest-created one is forgotten.
const MAX_SESSIONS: usize = 10_000;

/// Scans every message with `scanner`.
pub struct ScanningInspector {
    scanner: McpScanner,
    metrics: Metrics,
    sessions: Mutex<HashMap<String, Session>>,
}

/// What a log line says about the message judged.
struct Subject<'a> {
    session: &'a str,
    from: Direction,
    /// The method of a request or notification (`tools/call`, …); for a response, the method
    /// of the request it answers when known.
    method: &'a str,
    /// The tool called, or whose result this is.
    tool: &'a str,
}

impl<'a> Subject<'a> {
    fn of(session: &'a str, from: Direction, msg: &'a Value, answers: Option<&'a Value>) -> Self {
        let request = if msg.get("method").is_some() {
            Some(msg)
        } else {
            answers
        };
        let method = request
            .and_then(|r| r.get("method"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let tool = request
            .filter(|_| method == "tools/call")
            .and_then(|r| r.pointer("/params/name"))
            .and_then(Value::as_str)
            .unwrap_or("");
        Self {
            session,
            from,
            method,
            tool,
        }
    }
}

impl ScanningInspector {
    #[must_use]
    pub fn new(scanner: McpScanner, metrics: Metrics) -> Self {
        Self {
            scanner,
            metrics,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `inspect` on the session `id` (created on first use), timed.
    fn with_session(
        &self,
        id: &str,
        from: Direction,
        inspect: impl FnOnce(&mut Session) -> Inspection,
    ) -> Inspection {
        let started = Instant::now();
        let inspection = {
            let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
            if !sessions.contains_key(id) && sessions.len() >= MAX_SESSIONS {
                if let Some(any) = sessions.keys().next().cloned() {
                    sessions.remove(&any);
                }
            }
            inspect(sessions.entry(id.to_string()).or_default())
        };
        self.metrics
            .observe_scan(scan_direction(from), started.elapsed().as_secs_f64());
        inspection
    }

    /// Counts and logs `inspection`.
    fn report(&self, subject: &Subject<'_>, inspection: &Inspection) {
        let scanner = match inspection {
            Inspection::Allow => "none".to_string(),
            Inspection::Warn(findings) => scanner_of(findings.first()),
            Inspection::Block(blocked) => scanner_of(blocked.findings.first()),
            Inspection::Redirect(_) => "tool_policy".to_string(),
            Inspection::Strip { findings, .. } => scanner_of(findings.first()),
        };
        self.metrics
            .record_mcp_message(subject.from.label(), inspection.name(), &scanner);
        let Subject {
            session,
            from,
            method,
            tool,
        } = subject;
        let direction = from.label();
        match inspection {
            Inspection::Allow => {}
            Inspection::Warn(findings) => {
                for finding in findings {
                    tracing::warn!(session, direction, method, tool, rule = %finding.rule_id, scanner = %finding.scanner, severity = %finding.severity, detail = %finding.preview, "MCP message forwarded with a warning");
                }
            }
            Inspection::Block(blocked) => {
                for (i, finding) in blocked.findings.iter().enumerate() {
                    if i < blocked.blocking {
                        tracing::warn!(session, direction, method, tool, rule = %finding.rule_id, scanner = %finding.scanner, severity = %finding.severity, detail = %finding.preview, "MCP message blocked");
                    } else {
                        tracing::warn!(session, direction, method, tool, rule = %finding.rule_id, scanner = %finding.scanner, severity = %finding.severity, detail = %finding.preview, "MCP message blocked; it also warned");
                    }
                }
            }
            Inspection::Strip { findings, .. } => {
                for finding in findings {
                    tracing::warn!(session, direction, method, tool, rule = %finding.rule_id, scanner = %finding.scanner, severity = %finding.severity, detail = %finding.preview, "injection stripped from an MCP message");
                }
            }
            Inspection::Redirect(redirected) => {
                tracing::warn!(session, direction, method, tool, profile = %redirected.profile, "MCP tool call redirected");
                for finding in &redirected.findings {
                    tracing::warn!(session, direction, method, tool, rule = %finding.rule_id, scanner = %finding.scanner, severity = %finding.severity, detail = %finding.preview, "MCP tool call redirected with a warning");
                }
            }
        }
    }

    /// The decision for an inspection of a message from `subject.from`.
    fn decide(&self, subject: &Subject<'_>, inspection: Inspection) -> Decision {
        self.report(subject, &inspection);
        match inspection {
            Inspection::Allow | Inspection::Warn(_) => Decision::Forward,
            Inspection::Strip { message, .. } => Decision::Replace(message),
            Inspection::Block(blocked) => match blocked.reply {
                Some(reply) if reply.to == Peer::Client || subject.from == Direction::Client => {
                    Decision::Replace(reply.message)
                }
                // A server request refused: the server gets the error, the client nothing.
                Some(reply) => Decision::AnswerServer(reply.message),
                // A notification: dropped (the replacement of a client notification is
                // ignored; a server notification is replaced by nothing visible).
                None => Decision::Replace(Value::Null),
            },
            Inspection::Redirect(redirected) => {
                // The hook is synchronous; the handler runs on this worker while the runtime's
                // other workers go on (both MCP front doors run a multi-thread runtime).
                let answer = tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(super::redirect::answer(
                        &self.scanner,
                        &redirected,
                        super::redirect::DEFAULT_TIMEOUT,
                    ))
                });
                Decision::Replace(answer)
            }
        }
    }
}

/// The `scanner` label of a finding (`none` without one).
fn scanner_of(finding: Option<&Finding>) -> String {
    finding.map_or_else(|| "none".to_string(), |f| f.scanner.to_string())
}

/// The `direction` of `pipelock_scan_duration_seconds`, as the forward proxy labels it.
fn scan_direction(from: Direction) -> &'static str {
    match from {
        Direction::Client => "request",
        Direction::Server => "response",
    }
}

impl McpInspector for ScanningInspector {
    fn client_message(&self, session: &str, msg: &Value) -> Decision {
        let inspection = self.with_session(session, Direction::Client, |s| {
            self.scanner.client_message(s, msg)
        });
        self.decide(
            &Subject::of(session, Direction::Client, msg, None),
            inspection,
        )
    }

    fn server_message(&self, session: &str, answers: Option<&Value>, msg: &Value) -> Decision {
        let inspection = self.with_session(session, Direction::Server, |s| {
            self.scanner.server_message(s, answers, msg)
        });
        self.decide(
            &Subject::of(session, Direction::Server, msg, answers),
            inspection,
        )
    }

    fn unparsable(&self, session: &str, direction: Direction, raw: &[u8], error: &str) -> Decision {
        tracing::debug!(
            session,
            direction = direction.label(),
            error,
            "unparsable MCP payload"
        );
        let started = Instant::now();
        let inspection = match direction {
            Direction::Client => self.scanner.parse_error(raw),
            Direction::Server => self.scanner.server_parse_error(raw),
        };
        self.metrics
            .observe_scan(scan_direction(direction), started.elapsed().as_secs_f64());
        let nothing = json!({});
        self.decide(&Subject::of(session, direction, &nothing, None), inspection)
    }

    fn session_closed(&self, session: &str) {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.remove(session);
    }
}
