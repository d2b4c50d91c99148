//! The JSON-RPC 2.0 model of MCP, shared by the front doors (the Streamable HTTP reverse proxy,
//! the stdio wrapper) and the scanner: payloads (one message or a batch), the four kinds of
//! message, ids, the error codes Pipelock answers with, and the builders of its responses.
//! Classifying bytes or a `serde_json::Value` never panics; anything that is not a well-formed
//! message is a [`ParseError`] the caller decides about (`mcp_input_scanning.on_parse_error`).

use serde_json::{json, Map, Value};

/// Largest JSON-RPC payload accepted in either direction (the reference's `MaxLineSize`).
pub const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;

/// Error codes of Pipelock's own JSON-RPC errors.
pub mod code {
    /// The payload is not JSON (JSON-RPC's parse error).
    pub const PARSE_ERROR: i64 = -32700;
    /// JSON that is not an acceptable request (malformed, or larger than
    /// [`super::MAX_MESSAGE_BYTES`]).
    pub const INVALID_REQUEST: i64 = -32600;
    /// A server message (tool result, tool list, server request) blocked by scanning.
    pub const RESPONSE_BLOCKED: i64 = -32000;
    /// A client message (tool call arguments, policy, binding, chain) blocked by scanning.
    pub const REQUEST_BLOCKED: i64 = -32001;
    /// The upstream MCP server could not be reached or answered badly (as the reference).
    pub const UPSTREAM_ERROR: i64 = -32003;
    /// The kill switch is active.
    pub const KILL_SWITCH: i64 = -32004;
    /// The client did not present the configured Bearer token.
    pub const UNAUTHORIZED: i64 = -32005;
}

/// Why bytes or a value are not a JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not a JSON-RPC message: {0}")]
    Invalid(String),
}

impl ParseError {
    /// The JSON-RPC error code: -32700 for bytes that are not JSON, -32600 for JSON that is
    /// not a valid request.
    #[must_use]
    pub fn code(&self) -> i64 {
        match self {
            Self::NotJson(_) => code::PARSE_ERROR,
            Self::Invalid(_) => code::INVALID_REQUEST,
        }
    }
}

/// One JSON-RPC message, borrowed from the value it was read from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Message<'a> {
    /// A call that expects an answer.
    Request {
        id: &'a Value,
        method: &'a str,
        params: Option<&'a Value>,
    },
    /// A call without an id: nobody answers it.
    Notification {
        method: &'a str,
        params: Option<&'a Value>,
    },
    /// A successful answer.
    Result { id: &'a Value, result: &'a Value },
    /// A failed answer.
    Error { id: &'a Value, error: &'a Value },
}

impl<'a> Message<'a> {
    /// Classifies one message (not a batch).
    ///
    /// # Errors
    /// A value that is not an object, lacks `"jsonrpc": "2.0"`, or has neither a string
    /// `method` nor exactly one of `result` and `error` with an id.
    pub fn classify(value: &'a Value) -> Result<Self, ParseError> {
        let Some(object) = value.as_object() else {
            return Err(ParseError::Invalid(
                "a message must be a JSON object".into(),
            ));
        };
        if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(ParseError::Invalid(r#"missing "jsonrpc": "2.0""#.into()));
        }
        if let Some(method) = object.get("method") {
            let Some(method) = method.as_str() else {
                return Err(ParseError::Invalid("method must be a string".into()));
            };
            let params = object.get("params");
            return Ok(match object.get("id") {
                Some(id) => {
                    valid_id(id)?;
                    Self::Request { id, method, params }
                }
                None => Self::Notification { method, params },
            });
        }
        let id = object
            .get("id")
            .ok_or_else(|| ParseError::Invalid("a response needs an id".into()))?;
        valid_id(id)?;
        match (object.get("result"), object.get("error")) {
            (Some(result), None) => Ok(Self::Result { id, result }),
            (None, Some(error)) => Ok(Self::Error { id, error }),
            (Some(_), Some(_)) => Err(ParseError::Invalid(
                "a response has either result or error, not both".into(),
            )),
            (None, None) => Err(ParseError::Invalid(
                "neither a request (method) nor a response (result or error)".into(),
            )),
        }
    }

    /// The method of a request or notification.
    #[must_use]
    pub fn method(&self) -> Option<&'a str> {
        match self {
            Self::Request { method, .. } | Self::Notification { method, .. } => Some(method),
            Self::Result { .. } | Self::Error { .. } => None,
        }
    }

    /// The id of a request or response.
    #[must_use]
    pub fn id(&self) -> Option<&'a Value> {
        match self {
            Self::Request { id, .. } | Self::Result { id, .. } | Self::Error { id, .. } => Some(id),
            Self::Notification { .. } => None,
        }
    }
}

fn valid_id(id: &Value) -> Result<(), ParseError> {
    match id {
        Value::String(_) | Value::Number(_) | Value::Null => Ok(()),
        _ => Err(ParseError::Invalid(
            "id must be a string, a number or null".into(),
        )),
    }
}

/// The messages of a value: one, or the elements of a batch.
///
/// # Errors
/// An empty batch (JSON-RPC forbids it).
pub fn elements(value: &Value) -> Result<Vec<&Value>, ParseError> {
    match value {
        Value::Array(items) if items.is_empty() => {
            Err(ParseError::Invalid("an empty batch".into()))
        }
        Value::Array(items) => Ok(items.iter().collect()),
        other => Ok(vec![other]),
    }
}

/// Parses raw bytes into a JSON value.
///
/// # Errors
/// Bytes that are not one JSON value.
pub fn parse_bytes(raw: &[u8]) -> Result<Value, ParseError> {
    serde_json::from_slice(raw).map_err(|e| ParseError::NotJson(e.to_string()))
}

/// One JSON-RPC payload as it travels: a message or a batch of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Single(Value),
    Batch(Vec<Value>),
}

impl Payload {
    /// Parses a payload: a JSON object, or a non-empty JSON array of objects. The messages
    /// themselves are not classified (see [`Message::classify`]).
    ///
    /// # Errors
    /// Bytes that are not JSON, or JSON that is neither an object nor a non-empty array of
    /// objects.
    pub fn parse(raw: &[u8]) -> Result<Self, ParseError> {
        match parse_bytes(raw)? {
            value @ Value::Object(_) => Ok(Payload::Single(value)),
            Value::Array(items) if items.is_empty() => {
                Err(ParseError::Invalid("an empty batch".into()))
            }
            Value::Array(items) if items.iter().all(Value::is_object) => Ok(Payload::Batch(items)),
            Value::Array(_) => Err(ParseError::Invalid(
                "a batch element is not a JSON object".into(),
            )),
            _ => Err(ParseError::Invalid("not a JSON object or array".into())),
        }
    }

    /// The messages, in order.
    #[must_use]
    pub fn messages(&self) -> &[Value] {
        match self {
            Payload::Single(value) => std::slice::from_ref(value),
            Payload::Batch(items) => items,
        }
    }

    /// Whether it arrived as a batch.
    #[must_use]
    pub fn is_batch(&self) -> bool {
        matches!(self, Payload::Batch(_))
    }
}

/// Checks that `raw` is a JSON-RPC payload whose every message is well formed.
///
/// # Errors
/// The first reason it is not.
pub fn validate(raw: &[u8]) -> Result<(), ParseError> {
    Payload::parse(raw)?
        .messages()
        .iter()
        .try_for_each(|v| Message::classify(v).map(|_| ()))
}

/// The `id` of a request or response as a map key (`None` for notifications and `null` ids).
#[must_use]
pub fn id_key(msg: &Value) -> Option<String> {
    msg.get("id")
        .filter(|id| !id.is_null())
        .map(Value::to_string)
}

/// Whether `msg` is a request (a method and an id), as opposed to a notification or response.
#[must_use]
pub fn is_request(msg: &Value) -> bool {
    msg.get("method").is_some_and(Value::is_string) && id_key(msg).is_some()
}

/// A JSON-RPC error response from Pipelock's front doors (not from scanning): `data` carries
/// `"pipelock": true`, a machine-readable `error` and nothing else, so a client can tell it
/// from the server's errors.
#[must_use]
pub fn error(id: Value, code: i64, error: &str, message: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": code,
            "message": message,
            "data": { "pipelock": true, "error": error },
        },
    })
}

/// A JSON-RPC error response.
#[must_use]
pub fn error_response(id: &Value, code: i64, message: &str, data: Value) -> Value {
    let mut error = Map::new();
    error.insert("code".into(), Value::from(code));
    error.insert("message".into(), Value::from(message));
    error.insert("data".into(), data);
    json!({"jsonrpc": "2.0", "id": id, "error": Value::Object(error)})
}

/// A JSON-RPC success response.
#[must_use]
pub fn result_response(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// The `params._meta` key in which every request of MCP 2026-07-28 and later declares its
/// protocol revision (earlier revisions negotiate it once, in `initialize`).
pub const PROTOCOL_VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";
/// The first revision whose results must carry `resultType` (SEP-2322's `"complete"` /
/// `"input_required"`); clients of that revision reject a result without it.
const FIRST_RESULT_TYPE_REVISION: &str = "2026-07-28";

/// The protocol revision `request` declares in `params._meta`, if any.
#[must_use]
pub fn declared_protocol_version(request: &Value) -> Option<&str> {
    request
        .get("params")?
        .get("_meta")?
        .get(PROTOCOL_VERSION_META)?
        .as_str()
}

/// A success response that Pipelock makes up itself (a redirected call's answer), shaped for
/// the revision `request` declares: from 2026-07-28 on, a final result says
/// `"resultType": "complete"`; for earlier revisions the result is left as it is. Revisions
/// are `YYYY-MM-DD` dates, so they order as strings.
#[must_use]
pub fn synthetic_result(request: &Value, mut result: Value) -> Value {
    let modern = declared_protocol_version(request)
        .is_some_and(|version| version >= FIRST_RESULT_TYPE_REVISION);
    if let (true, Some(fields)) = (modern, result.as_object_mut()) {
        fields
            .entry("resultType")
            .or_insert_with(|| json!("complete"));
    }
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    result_response(&id, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_results_follow_the_revision_the_request_declares() {
        let call = |version: Option<&str>| {
            let mut params = json!({"name": "t", "arguments": {}});
            if let Some(version) = version {
                params["_meta"] = json!({ PROTOCOL_VERSION_META: version });
            }
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params})
        };
        let result = json!({"content": [], "isError": false});
        let legacy = synthetic_result(&call(None), result.clone());
        assert_eq!(legacy, json!({"jsonrpc": "2.0", "id": 7, "result": result}));
        let older = synthetic_result(&call(Some("2025-11-25")), result.clone());
        assert!(older["result"].get("resultType").is_none(), "{older}");
        for version in ["2026-07-28", "2027-01-01"] {
            let modern = synthetic_result(&call(Some(version)), result.clone());
            assert_eq!(modern["result"]["resultType"], "complete", "{modern}");
            assert_eq!(modern["id"], 7);
        }
    }

    #[test]
    fn every_kind_of_message() {
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
        assert!(matches!(
            Message::classify(&request),
            Ok(Message::Request {
                method: "tools/list",
                ..
            })
        ));
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert!(matches!(
            Message::classify(&note),
            Ok(Message::Notification { .. })
        ));
        let result = json!({"jsonrpc": "2.0", "id": "a", "result": {}});
        assert!(matches!(
            Message::classify(&result),
            Ok(Message::Result { .. })
        ));
        let error = json!({"jsonrpc": "2.0", "id": null, "error": {"code": 1}});
        assert!(matches!(
            Message::classify(&error),
            Ok(Message::Error { .. })
        ));
        assert_eq!(elements(&json!([request, note])).map(|v| v.len()), Ok(2));
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        for bad in [
            json!(1),
            json!("x"),
            json!({}),
            json!({"jsonrpc": "1.0", "method": "x"}),
            json!({"jsonrpc": "2.0", "method": 5}),
            json!({"jsonrpc": "2.0", "id": {}, "method": "x"}),
            json!({"jsonrpc": "2.0", "id": 1}),
            json!({"jsonrpc": "2.0", "id": 1, "result": 1, "error": {}}),
        ] {
            assert!(Message::classify(&bad).is_err(), "{bad}");
        }
        assert!(elements(&json!([])).is_err());
        assert_eq!(parse_bytes(b"{").map_err(|e| e.code()), Err(-32700));
        assert!(parse_bytes(&[0xff, 0x00]).is_err());
        assert_eq!(
            Payload::parse(b"[]"),
            Err(ParseError::Invalid("an empty batch".into()))
        );
        assert!(Payload::parse(b"[1]").is_err());
        assert!(Payload::parse(b"2").is_err());
        assert_eq!(Payload::parse(b"[{}]").map(|p| p.is_batch()), Ok(true));
    }
}
