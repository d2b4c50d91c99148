//! The scanning inspector: the MCP front doors' hook ([`McpInspector`]) carried out by the MCP
//! scanner ([`McpScanner`]), with one scanning [`Session`] per MCP session id.
//!
//! Allowed and warned messages are forwarded (warnings logged); a blocked message is replaced
//! by the JSON-RPC error the scanner built, towards whoever must hear of it; a redirected tool
//! call is answered by its handler's output. A blocked server *request* (such as
//! `sampling/createMessage`) cannot be answered to the server through this hook: the client
//! gets a `notifications/message` saying it was withheld, and the server waits for an answer
//! that does not come.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde_json::{json, Value};

use super::inspect::{Decision, Direction, McpInspector};
use super::scan::inspection::{Inspection, Peer};
use super::scan::{McpScanner, Session};

/// How many sessions are tracked at once; beyond it, the oldest-created one is forgotten.
const MAX_SESSIONS: usize = 10_000;

/// Scans every message with `scanner`.
pub struct ScanningInspector {
    scanner: McpScanner,
    sessions: Mutex<HashMap<String, Session>>,
}

impl ScanningInspector {
    #[must_use]
    pub fn new(scanner: McpScanner) -> Self {
        Self {
            scanner,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `inspect` on the session `id` (created on first use).
    fn with_session(
        &self,
        id: &str,
        inspect: impl FnOnce(&mut Session) -> Inspection,
    ) -> Inspection {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if !sessions.contains_key(id) && sessions.len() >= MAX_SESSIONS {
            if let Some(any) = sessions.keys().next().cloned() {
                sessions.remove(&any);
            }
        }
        inspect(sessions.entry(id.to_string()).or_default())
    }

    /// The decision for an inspection of a message from `from`.
    fn decide(&self, session: &str, from: Direction, inspection: Inspection) -> Decision {
        match inspection {
            Inspection::Allow => Decision::Forward,
            Inspection::Warn(findings) => {
                for finding in &findings {
                    tracing::warn!(session, direction = from.label(), rule = %finding.rule_id, scanner = %finding.scanner, detail = %finding.preview, "MCP message forwarded with a warning");
                }
                Decision::Forward
            }
            Inspection::Block(blocked) => {
                if let Some(first) = blocked.findings.first() {
                    tracing::warn!(session, direction = from.label(), rule = %first.rule_id, scanner = %first.scanner, detail = %first.preview, "MCP message blocked");
                }
                match blocked.reply {
                    Some(reply) if reply.to == Peer::Client || from == Direction::Client => {
                        Decision::Replace(reply.message)
                    }
                    Some(_) => Decision::Replace(json!({
                        "jsonrpc": "2.0",
                        "method": "notifications/message",
                        "params": {
                            "level": "warning",
                            "logger": "pipelock",
                            "data": format!("pipelock withheld a request from the server: {}", blocked.error.message),
                        },
                    })),
                    // A notification: dropped (the replacement of a client notification is
                    // ignored; a server notification is replaced by nothing visible).
                    None => Decision::Replace(Value::Null),
                }
            }
            Inspection::Redirect(redirected) => {
                tracing::warn!(session, profile = %redirected.profile, "MCP tool call redirected");
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

impl McpInspector for ScanningInspector {
    fn client_message(&self, session: &str, msg: &Value) -> Decision {
        let inspection = self.with_session(session, |s| self.scanner.client_message(s, msg));
        self.decide(session, Direction::Client, inspection)
    }

    fn server_message(&self, session: &str, answers: Option<&Value>, msg: &Value) -> Decision {
        let inspection =
            self.with_session(session, |s| self.scanner.server_message(s, answers, msg));
        self.decide(session, Direction::Server, inspection)
    }

    fn unparsable(&self, session: &str, direction: Direction, raw: &[u8], error: &str) -> Decision {
        tracing::debug!(
            session,
            direction = direction.label(),
            error,
            "unparsable MCP payload"
        );
        let inspection = match direction {
            Direction::Client => self.scanner.parse_error(raw),
            Direction::Server => self.scanner.server_parse_error(raw),
        };
        self.decide(session, direction, inspection)
    }

    fn session_closed(&self, session: &str) {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.remove(session);
    }
}
