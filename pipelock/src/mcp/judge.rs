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
pub fn judge_client(inspector: &dyn McpInspector, session: &str, raw: &[u8]) -> ClientJudgement {
    let payload = match Payload::parse(raw) {
        Ok(payload) => payload,
        Err(error) => {
            return match inspector.unparsable(session, Direction::Client, raw, &error.to_string()) {
                Decision::Forward => ClientJudgement {
                    forward: Some(raw.to_vec()),
                    ..ClientJudgement::default()
                },
                Decision::Replace(answer) => ClientJudgement {
                    answers: vec![answer],
                    ..ClientJudgement::default()
                },
                Decision::AnswerServer(_) => ClientJudgement::default(),
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
        match inspector.client_message(session, msg) {
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
            Decision::AnswerServer(_) => replaced_any = true,
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

/// What the client gets of a server payload.
#[derive(Debug, PartialEq)]
pub enum ToClient {
    /// The original bytes.
    Unchanged,
    /// This instead (a single message, or an array for a batch).
    Replaced(Value),
    /// Nothing: every message was withheld.
    Nothing,
}

/// A server payload after inspection.
#[derive(Debug, PartialEq)]
pub struct ServerJudgement {
    pub to_client: ToClient,
    /// Answers to send to the server in the client's name ([`Decision::AnswerServer`]).
    pub to_server: Vec<Value>,
}

impl ServerJudgement {
    /// The payload relayed as it came.
    #[must_use]
    pub fn unchanged() -> Self {
        Self {
            to_client: ToClient::Unchanged,
            to_server: Vec::new(),
        }
    }
}

/// Passes every message of a server payload `raw` to `inspector`; `requests` are the client's
/// requests it may answer.
#[must_use]
pub fn judge_server(
    inspector: &dyn McpInspector,
    session: &str,
    requests: &HashMap<String, Value>,
    raw: &[u8],
) -> ServerJudgement {
    let payload = match Payload::parse(raw) {
        Ok(payload) => payload,
        Err(error) => {
            let to_client =
                match inspector.unparsable(session, Direction::Server, raw, &error.to_string()) {
                    Decision::Forward => ToClient::Unchanged,
                    Decision::Replace(value) => ToClient::Replaced(value),
                    Decision::AnswerServer(_) => ToClient::Nothing,
                };
            return ServerJudgement {
                to_client,
                to_server: Vec::new(),
            };
        }
    };
    let mut out = Vec::with_capacity(payload.messages().len());
    let mut to_server = Vec::new();
    let mut changed = false;
    for msg in payload.messages() {
        let answers = if msg.get("method").is_none() {
            id_key(msg).and_then(|key| requests.get(&key))
        } else {
            None
        };
        match inspector.server_message(session, answers, msg) {
            Decision::Forward => out.push(msg.clone()),
            Decision::Replace(value) => {
                changed = true;
                out.push(value);
            }
            Decision::AnswerServer(answer) => {
                changed = true;
                to_server.push(answer);
            }
        }
    }
    let to_client = if !changed {
        ToClient::Unchanged
    } else if out.is_empty() {
        ToClient::Nothing
    } else if payload.is_batch() {
        ToClient::Replaced(Value::Array(out))
    } else {
        out.pop().map_or(ToClient::Nothing, ToClient::Replaced)
    };
    ServerJudgement {
        to_client,
        to_server,
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
            if msg["method"] == "sampling/createMessage" {
                return Decision::AnswerServer(error(msg["id"].clone(), -32000, "blocked", "no"));
            }
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

    #[test]
    fn pass_through_forwards_bytes_unchanged() {
        let raw = br#"{"id":1,"jsonrpc":"2.0","method":"tools/list"}"#;
        let judged = judge_client(&PassThrough, "", raw);
        assert_eq!(judged.forward.as_deref(), Some(&raw[..]));
        assert!(judged.answers.is_empty());
        assert!(judged.requests.contains_key("1"));
        let judged = judge_client(&PassThrough, "", b"{not json");
        assert_eq!(judged.forward.as_deref(), Some(&b"{not json"[..]));
    }

    #[test]
    fn a_replaced_request_in_a_batch_is_answered_and_the_rest_forwarded() {
        let raw = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call"},{"jsonrpc":"2.0","id":"b","method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/x"}]"#;
        let judged = judge_client(&Blocker, "s", raw);
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
        let judged = judge_client(&Blocker, "s", b"nope");
        assert!(judged.forward.is_none());
        assert_eq!(judged.answers[0]["error"]["code"], code::PARSE_ERROR);
        let mut requests = HashMap::new();
        requests.insert("7".to_string(), json!({"id":7,"method":"tools/call"}));
        let raw = br#"{"jsonrpc":"2.0","id":7,"result":{"text":"secret"}}"#;
        assert_eq!(
            judge_server(&Blocker, "s", &requests, raw),
            ServerJudgement {
                to_client: ToClient::Replaced(
                    json!({"jsonrpc":"2.0","id":7,"result":{"was":"tools/call"}})
                ),
                to_server: vec![],
            }
        );
        let clean = br#"{"jsonrpc":"2.0","id":7,"result":{}}"#;
        assert_eq!(
            judge_server(&Blocker, "s", &requests, clean),
            ServerJudgement::unchanged()
        );
    }

    #[test]
    fn a_withheld_server_request_is_answered_to_the_server_and_hidden_from_the_client() {
        let none = HashMap::new();
        let request = br#"{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage"}"#;
        let judged = judge_server(&Blocker, "s", &none, request);
        assert_eq!(judged.to_client, ToClient::Nothing);
        assert_eq!(judged.to_server.len(), 1);
        assert_eq!(judged.to_server[0]["id"], "s1");
        let batch = br#"[{"jsonrpc":"2.0","id":"s2","method":"sampling/createMessage"},{"jsonrpc":"2.0","method":"notifications/progress"}]"#;
        let judged = judge_server(&Blocker, "s", &none, batch);
        assert_eq!(
            judged.to_client,
            ToClient::Replaced(json!([{"jsonrpc":"2.0","method":"notifications/progress"}]))
        );
        assert_eq!(judged.to_server[0]["id"], "s2");
    }
}
