//! The one place that builds Pipelock's own HTTP responses (JSON bodies, error shapes, block
//! answers) and the body type every response uses.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use crate::scan::Finding;

/// The body type of every response: Pipelock's own (buffered) or an upstream's (streamed).
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A body from bytes in memory.
#[must_use]
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A response with a JSON body.
#[must_use]
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    with_body(status, "application/json", value.to_string().into_bytes())
}

/// A JSON error response: `{"error": code, "message": message}`, with the code in an
/// `X-Pipelock-Error` header so clients can tell Pipelock's answers from an origin's.
#[must_use]
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let mut response = json(
        status,
        &serde_json::json!({ "error": code, "message": message }),
    );
    if let Ok(value) = HeaderValue::from_str(code) {
        response.headers_mut().insert("x-pipelock-error", value);
    }
    response
}

/// A response with the given content type and body.
#[must_use]
pub fn with_body(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The answer to traffic Pipelock refuses: `status` (403, or 429 for budgets) with a JSON body
/// naming the scanner, rule and reason of the first blocking finding, and the
/// `X-Pipelock-Blocked` and `X-Pipelock-Rule` headers. Never the matched text itself.
#[must_use]
pub fn blocked(status: StatusCode, finding: &Finding, what: &str) -> Response<Body> {
    let mut response = json(
        status,
        &serde_json::json!({
            "error": "blocked",
            "blocked": true,
            "what": what,
            "scanner": finding.scanner.to_string(),
            "rule": finding.rule_id,
            "reason": finding.rule_name,
            "severity": finding.severity.to_string(),
        }),
    );
    let headers = response.headers_mut();
    headers.insert("x-pipelock-blocked", HeaderValue::from_static("true"));
    if let Ok(rule) = HeaderValue::from_str(&finding.rule_id) {
        headers.insert("x-pipelock-rule", rule);
    }
    response
}
