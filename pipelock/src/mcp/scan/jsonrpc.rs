//! The JSON-RPC 2.0 messages MCP is made of: requests, notifications, responses (results and
//! errors) and batches of them. Classifying a `serde_json::Value` never panics; anything that
//! is not a well-formed message is a [`ParseError`] the caller decides about
//! (`mcp_input_scanning.on_parse_error`).

use serde_json::{Map, Value};

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
            Self::NotJson(_) => -32700,
            Self::Invalid(_) => -32600,
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

/// A JSON-RPC error response.
#[must_use]
pub fn error_response(id: &Value, code: i64, message: &str, data: Value) -> Value {
    let mut error = Map::new();
    error.insert("code".into(), Value::from(code));
    error.insert("message".into(), Value::from(message));
    error.insert("data".into(), data);
    serde_json::json!({"jsonrpc": "2.0", "id": id, "error": Value::Object(error)})
}

/// A JSON-RPC success response.
#[must_use]
pub fn result_response(id: &Value, result: Value) -> Value {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result})
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
    }
}
