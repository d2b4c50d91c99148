//! A front door's payload through the [`McpInspector`]: every message of a client or server
//! payload (each element of a batch separately) is handed to the inspector, and what it
//! decides is carried out on the payload — the original bytes when nothing was replaced, the
//! remaining messages otherwise, and the answers Pipelock gives in place of the replaced
//! ones. Shared by the HTTP transport and the stdio wrapper, so both judge a payload the same
//! way.

use std::collections::HashMap;

use serde_json::Value;

use super::inspect::{Decision, Direction, McpInspector};
use super::jsonrpc::{id_key, is_request, Payload};

/// Counts one decision (`direction`, `verdict`); the front doors pass their metrics here.
pub type Record<'a> = &'a dyn Fn(Direction, &'static str);

fn verdict(decision: &Decision) -> &'static str {
    match decision {
        Decision::Forward => "forward",
        Decision::Replace(_) => "replace",
    }
}

/// A client payload after inspection.
#[derive(Debug, Default)]
pub struct ClientJudgement {
    /// What to send upstream (`None`: nothing; every message was replaced or dropped). The
    /// original bytes when no message was replaced.
    pub forward: Option<Vec<u8>>,
    /// Answers the client gets from Pipelock (replaced requests, or a replaced unparsable
    /// payload), in order.
    pub answers: Vec<Value>,
    /// The forwarded requests by [`id_key`], to pair the server's responses with them.
    pub requests: HashMap<String, Value>,
    /// The ids of the forwarded requests, in order (for errors when the upstream fails).
    pub request_ids: Vec<Value>,
    /// Whether the client sent a batch (answers then go back as an array).
    pub batch: bool,
}

/// Passes every message of a client payload `raw` to `inspector`.
#[must_use]
pub fn judge_client(
    inspector: &dyn McpInspector,
    session: &str,
    raw: &[u8],
    record: Record<'_>,
) -> ClientJudgement {
    let payload = match Payload::parse(raw) {
        Ok(payload) => payload,
        Err(error) => {
            let decision =
                inspector.unparsable(session, Direction::Client, raw, &error.to_string());
            record(Direction::Client, verdict(&decision));
            return match decision {
                Decision::Forward => ClientJudgement {
                    forward: Some(raw.to_vec()),
                    ..ClientJudgement::default()
                },
                Decision::Replace(answer) => ClientJudgement {
                    answers: vec![answer],
                    ..ClientJudgement::default()
                },
            };
        }
    };
    let mut judged = ClientJudgement {
        batch: payload.is_batch(),
        ..ClientJudgement::default()
    };
    let mut kept = Vec::new();
    let mut replaced_any = false;
    for msg in payload.messages() {
        let decision = inspector.client_message(session, msg);
        record(Direction::Client, verdict(&decision));
        match decision {
            Decision::Forward => {
                if is_request(msg) {
                    if let Some(key) = id_key(msg) {
                        judged.requests.insert(key, msg.clone());
                    }
                    judged
                        .request_ids
                        .push(msg.get("id").cloned().unwrap_or(Value::Null));
                }
                kept.push(msg);
            }
            Decision::Replace(answer) => {
                replaced_any = true;
                if is_request(msg) {
                    judged.answers.push(answer);
                }
            }
        }
    }
    judged.forward = if !replaced_any {
        Some(raw.to_vec())
    } else if kept.is_empty() {
        None
    } else if judged.batch {
        Some(
            Value::Array(kept.into_iter().cloned().collect())
                .to_string()
                .into_bytes(),
        )
    } else {
        kept.first().map(|msg| msg.to_string().into_bytes())
    };
    judged
}

/// A server payload after inspection.
#[derive(Debug, PartialEq)]
pub enum ServerJudgement {
    /// Relay the original bytes.
    Unchanged,
    /// Relay this instead (a single message, or an array for a batch).
    Replaced(Value),
}

/// Passes every message of a server payload `raw` to `inspector`; `requests` are the client's
/// requests it may answer.
#[must_use]
pub fn judge_server(
    inspector: &dyn McpInspector,
    session: &str,
    requests: &HashMap<String, Value>,
    raw: &[u8],
    record: Record<'_>,
) -> ServerJudgement {
    let payload = match Payload::parse(raw) {
        Ok(payload) => payload,
        Err(error) => {
            let decision =
                inspector.unparsable(session, Direction::Server, raw, &error.to_string());
            record(Direction::Server, verdict(&decision));
            return match decision {
                Decision::Forward => ServerJudgement::Unchanged,
                Decision::Replace(value) => ServerJudgement::Replaced(value),
            };
        }
    };
    let mut out = Vec::with_capacity(payload.messages().len());
    let mut replaced_any = false;
    for msg in payload.messages() {
        let answers = if msg.get("method").is_none() {
            id_key(msg).and_then(|key| requests.get(&key))
        } else {
            None
        };
        let decision = inspector.server_message(session, answers, msg);
        record(Direction::Server, verdict(&decision));
        match decision {
            Decision::Forward => out.push(msg.clone()),
            Decision::Replace(value) => {
                replaced_any = true;
                out.push(value);
            }
        }
    }
    if !replaced_any {
        return ServerJudgement::Unchanged;
    }
    match payload {
        Payload::Batch(_) => ServerJudgement::Replaced(Value::Array(out)),
        Payload::Single(_) => {
            ServerJudgement::Replaced(out.into_iter().next().unwrap_or(Value::Null))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::jsonrpc::{code, error};
    use crate::mcp::PassThrough;
    use serde_json::json;

    /// Replaces `tools/call` requests with an error and server messages carrying "secret".
    struct Blocker;

    impl McpInspector for Blocker {
        fn client_message(&self, _: &str, msg: &Value) -> Decision {
            if msg["method"] == "tools/call" {
                Decision::Replace(error(msg["id"].clone(), -32001, "blocked", "no"))
            } else {
                Decision::Forward
            }
        }
        fn server_message(&self, _: &str, answers: Option<&Value>, msg: &Value) -> Decision {
            if msg.to_string().contains("secret") {
                let method = answers.map_or(Value::Null, |r| r["method"].clone());
                Decision::Replace(json!({"jsonrpc":"2.0","id":msg["id"],"result":{"was":method}}))
            } else {
                Decision::Forward
            }
        }
        fn unparsable(&self, _: &str, _: Direction, _: &[u8], e: &str) -> Decision {
            Decision::Replace(error(Value::Null, code::PARSE_ERROR, "parse_error", e))
        }
    }

    fn none(_: Direction, _: &'static str) {}

    #[test]
    fn pass_through_forwards_bytes_unchanged() {
        let raw = br#"{"id":1,"jsonrpc":"2.0","method":"tools/list"}"#;
        let judged = judge_client(&PassThrough, "", raw, &none);
        assert_eq!(judged.forward.as_deref(), Some(&raw[..]));
        assert!(judged.answers.is_empty());
        assert!(judged.requests.contains_key("1"));
        let judged = judge_client(&PassThrough, "", b"{not json", &none);
        assert_eq!(judged.forward.as_deref(), Some(&b"{not json"[..]));
    }

    #[test]
    fn a_replaced_request_in_a_batch_is_answered_and_the_rest_forwarded() {
        let raw = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call"},{"jsonrpc":"2.0","id":"b","method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/x"}]"#;
        let judged = judge_client(&Blocker, "s", raw, &none);
        assert!(judged.batch);
        assert_eq!(judged.answers.len(), 1);
        assert_eq!(judged.answers[0]["id"], 1);
        let forwarded: Value =
            serde_json::from_slice(&judged.forward.expect("forwarded")).expect("json");
        assert_eq!(forwarded.as_array().map(Vec::len), Some(2));
        assert_eq!(judged.request_ids, vec![json!("b")]);
    }

    #[test]
    fn unparsable_and_server_replacements() {
        let judged = judge_client(&Blocker, "s", b"nope", &none);
        assert!(judged.forward.is_none());
        assert_eq!(judged.answers[0]["error"]["code"], code::PARSE_ERROR);
        let mut requests = HashMap::new();
        requests.insert("7".to_string(), json!({"id":7,"method":"tools/call"}));
        let raw = br#"{"jsonrpc":"2.0","id":7,"result":{"text":"secret"}}"#;
        assert_eq!(
            judge_server(&Blocker, "s", &requests, raw, &none),
            ServerJudgement::Replaced(
                json!({"jsonrpc":"2.0","id":7,"result":{"was":"tools/call"}})
            )
        );
        let clean = br#"{"jsonrpc":"2.0","id":7,"result":{}}"#;
        assert_eq!(
            judge_server(&Blocker, "s", &requests, clean, &none),
            ServerJudgement::Unchanged
        );
    }
}
