//! The kill-switch API, served when `kill_switch.api_token` (or
//! `PIPELOCK_KILLSWITCH_API_TOKEN`) is set: on the main listener, or alone on
//! `kill_switch.api_listen`.
//!
//! - `POST /api/v1/killswitch` with `{"active": true|false}` sets the API source;
//! - `GET /api/v1/killswitch/status` reports the state and what holds it.
//!
//! Both need `Authorization: Bearer TOKEN` (compared in constant time); anything else is 401.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};

use super::response::{self, Body};
use super::ServerState;

/// The path prefix of the API.
pub const PREFIX: &str = "/api/v1/killswitch";

/// Largest request body accepted (`{"active": false}` is 17 bytes).
const MAX_BODY: usize = 1024;

/// Answers one API request.
pub async fn handle(state: &ServerState, request: Request<Incoming>) -> Response<Body> {
    let switch = &state.kill_switch;
    let presented = crate::auth::bearer(request.headers()).unwrap_or("");
    if !switch.token_matches(presented) {
        let mut refusal = response::error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the kill-switch API needs Authorization: Bearer <kill_switch.api_token>",
        );
        refusal.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"pipelock\""),
        );
        return refusal;
    }
    let path = request.uri().path().to_string();
    match (request.method().clone(), path.as_str()) {
        (Method::GET, "/api/v1/killswitch/status") => status(state),
        (Method::POST, PREFIX) => {
            let body = match read_body(request).await {
                Ok(body) => body,
                Err(message) => {
                    return response::error(StatusCode::BAD_REQUEST, "bad_request", &message)
                }
            };
            let Some(active) = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("active").and_then(serde_json::Value::as_bool))
            else {
                return response::error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "expected a JSON body {\"active\": true|false}",
                );
            };
            switch.set_api(active);
            tracing::warn!(active, "kill switch set through the API");
            status(state)
        }
        _ => response::error(
            StatusCode::NOT_FOUND,
            "not_found",
            "the kill-switch API has POST /api/v1/killswitch and GET /api/v1/killswitch/status",
        ),
    }
}

fn status(state: &ServerState) -> Response<Body> {
    let source = state.kill_switch.active();
    response::json(
        StatusCode::OK,
        &serde_json::json!({
            "active": source.is_some(),
            "source": source.map(crate::killswitch::Source::name),
            "message": state.kill_switch.message(),
        }),
    )
}

async fn read_body(request: Request<Incoming>) -> Result<Vec<u8>, String> {
    let mut body = request.into_body();
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("cannot read the body: {e}"))?;
        if let Ok(data) = frame.into_data() {
            bytes.extend_from_slice(&data);
            if bytes.len() > MAX_BODY {
                return Err(format!("the body is larger than {MAX_BODY} bytes"));
            }
        }
    }
    Ok(bytes)
}
