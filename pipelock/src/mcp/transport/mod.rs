//! The MCP Streamable HTTP reverse proxy (`mcp_reverse_proxy`, `--mcp-listen`/`--mcp-upstream`).
//!
//! MCP clients talk to this listener exactly as to the MCP server; every request, whatever its
//! path, goes to the one configured upstream URL. A request walks these phases:
//!
//! 1. **own endpoint**: `GET /health` is answered here, without authentication;
//! 2. **authenticate**: with a token configured, a request without `Authorization: Bearer
//!    <token>` gets 401 and nothing reaches the upstream;
//! 3. **read**: a POST body is read, at most [`MAX_MESSAGE_BYTES`] (else 413);
//! 4. **kill switch**: while active, requests get a JSON-RPC error (503) and notifications
//!    are dropped;
//! 5. **inspect the client's messages** ([`judge_client`]): each message of a POST goes through
//!    the [`McpInspector`]; replaced requests are answered by Pipelock;
//! 6. **forward** the rest to the upstream ([`upstream::Upstream::send`]); failures become
//!    JSON-RPC errors with HTTP 502 naming the cause;
//! 7. **inspect the server's messages**: an `application/json` answer is read and judged
//!    whole; a `text/event-stream` answer (to a POST, or the GET stream) is relayed event by
//!    event ([`sse`]); anything else (202, 405, error pages) is relayed as it is.
//!
//! Status codes and headers of the upstream's answers are relayed.

mod routing_headers;
mod sse;
pub mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderName, HeaderValue, ACCEPT, ALLOW, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH,
    CONTENT_TYPE, WWW_AUTHENTICATE,
};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::mcp::inspect::McpInspector;
use crate::mcp::jsonrpc::{self, code, MAX_MESSAGE_BYTES};
use crate::mcp::judge::{judge_client, judge_server, ServerJudgement, ToClient};
use crate::proxy::forward::headers::copy_end_to_end;
use crate::proxy::forward::pool::Returning;
use crate::proxy::response::{self, Body};
use crate::proxy::ServerState;
use upstream::Upstream;

/// The environment variable that sets the token MCP clients must present (it overrides
/// `mcp_reverse_proxy.auth_token`).
pub const AUTH_TOKEN_ENV: &str = "MCP_API_TOKEN";

/// The header carrying the MCP session id.
const SESSION_HEADER: &str = "mcp-session-id";
/// The header of a resumed event stream (never sent with Pipelock's own POSTs).
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// One configured MCP reverse proxy.
pub struct McpProxy {
    upstream: Upstream,
    token: Option<String>,
    inspector: Arc<dyn McpInspector>,
}

impl McpProxy {
    /// The proxy to `upstream`; clients must present `token` when it is set.
    ///
    /// # Errors
    /// The upstream URL is not an absolute http(s) URL.
    pub fn new(
        upstream: &str,
        token: Option<String>,
        inspector: Arc<dyn McpInspector>,
    ) -> Result<Self, upstream::UpstreamError> {
        Ok(Self {
            upstream: Upstream::parse(upstream)?,
            token: token.filter(|t| !t.is_empty()),
            inspector,
        })
    }

    /// The token from [`AUTH_TOKEN_ENV`] when set and not empty, else `configured`.
    #[must_use]
    pub fn token_from_env_or(configured: &str) -> Option<String> {
        std::env::var(AUTH_TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| Some(configured.to_string()).filter(|t| !t.is_empty()))
    }

    /// The upstream URL, for logs.
    #[must_use]
    pub fn upstream_url(&self) -> &str {
        self.upstream.url()
    }

    /// Whether clients must authenticate.
    #[must_use]
    pub fn requires_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `headers` carry `Authorization: Bearer <token>` (compared in constant time).
    fn authorized(&self, headers: &hyper::HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        crate::auth::bearer(headers)
            .is_some_and(|p| crate::auth::constant_time_eq(token.as_bytes(), p.as_bytes()))
    }
}

/// Serves HTTP/1.1 on one connection of the MCP listener.
pub(crate) async fn serve_connection(
    state: Arc<ServerState>,
    proxy: Arc<McpProxy>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    stopping: tokio::sync::watch::Receiver<bool>,
) {
    let handler = move |request| {
        let state = Arc::clone(&state);
        let proxy = Arc::clone(&proxy);
        async move { Ok::<_, std::convert::Infallible>(handle(state, proxy, peer, request).await) }
    };
    if let Err(error) = crate::proxy::listener::serve_http1(stream, handler, stopping).await {
        tracing::debug!(%peer, %error, "MCP connection ended with an error");
    }
}

/// Answers one request on the MCP listener.
pub async fn handle(
    state: Arc<ServerState>,
    proxy: Arc<McpProxy>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    let response = answer(&state, &proxy, peer, request).await;
    state
        .metrics
        .record_http_request("mcp", response.status().as_u16());
    response
}

async fn answer(
    state: &Arc<ServerState>,
    proxy: &Arc<McpProxy>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    // 1. Own endpoint.
    if request.uri().path() == "/health" && request.method() == Method::GET {
        let exempt = state.kill_switch.exemptions().health;
        if exempt || state.kill_switch.active().is_none() {
            return crate::proxy::endpoints::health(state);
        }
    }
    // 2. Authenticate.
    if !proxy.authorized(request.headers()) {
        let wrong = request.headers().contains_key(AUTHORIZATION);
        tracing::warn!(%peer, presented = wrong, "MCP request refused: missing or wrong bearer token");
        let mut response = rpc_answer(
            StatusCode::UNAUTHORIZED,
            &jsonrpc::error(
                Value::Null,
                code::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong bearer token (Authorization: Bearer <MCP_API_TOKEN>)",
            ),
        );
        let challenge = if wrong {
            "Bearer realm=\"pipelock-mcp\", error=\"invalid_token\""
        } else {
            "Bearer realm=\"pipelock-mcp\""
        };
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        return response;
    }
    let session = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let scan_key = scan_key(&session, peer, request.headers());
    match *request.method() {
        Method::POST => post(state, proxy, peer, (session, scan_key), request).await,
        Method::GET | Method::DELETE => {
            if let Some(refusal) = kill_switch_refusal(state, peer, &[]) {
                return refusal;
            }
            let closing = request.method() == Method::DELETE;
            let (parts, _) = request.into_parts();
            let sent = proxy
                .upstream
                .send(state, parts.method.clone(), &parts.headers, None)
                .await;
            match sent {
                Ok(upstream) => {
                    if closing && upstream.status().is_success() {
                        proxy.inspector.session_closed(&scan_key);
                    }
                    relay(
                        state,
                        proxy,
                        Exchange {
                            session,
                            scan_key,
                            client_headers: parts.headers,
                            requests: HashMap::new(),
                            first: Vec::new(),
                        },
                        upstream,
                    )
                    .await
                }
                Err(error) => upstream_failed(state, &error.to_string(), &[]),
            }
        }
        _ => {
            let mut response = rpc_answer(
                StatusCode::METHOD_NOT_ALLOWED,
                &jsonrpc::error(
                    Value::Null,
                    code::INVALID_REQUEST,
                    "method_not_allowed",
                    &format!(
                        "{} is not part of MCP Streamable HTTP; use POST, GET or DELETE",
                        request.method()
                    ),
                ),
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST, GET, DELETE"));
            response
        }
    }
}

async fn post(
    state: &Arc<ServerState>,
    proxy: &Arc<McpProxy>,
    peer: SocketAddr,
    (session, scan_key): (String, String),
    request: Request<Incoming>,
) -> Response<Body> {
    // 3. Read.
    let (parts, body) = request.into_parts();
    let raw = match Limited::new(body, MAX_MESSAGE_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let too_large = error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            let (status, message) = if too_large {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the request body exceeds {MAX_MESSAGE_BYTES} bytes; nothing was forwarded"
                    ),
                )
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {error}"),
                )
            };
            return rpc_answer(
                status,
                &jsonrpc::error(
                    Value::Null,
                    code::INVALID_REQUEST,
                    "request_too_large",
                    &message,
                ),
            );
        }
    };
    // 4. Kill switch.
    let metrics = &state.metrics;
    if state.kill_switch.active().is_some() && !state.kill_switch.exempt_client(peer.ip()) {
        let payload = jsonrpc::Payload::parse(&raw).ok();
        let messages = payload
            .as_ref()
            .map(jsonrpc::Payload::messages)
            .unwrap_or_default();
        let ids: Vec<Value> = messages
            .iter()
            .filter(|m| jsonrpc::is_request(m))
            .filter_map(|m| m.get("id").cloned())
            .collect();
        for _ in 0..messages.len().max(1) {
            metrics.record_mcp_message("client", "refused", "kill_switch");
        }
        return kill_switch_refusal(state, peer, &ids).unwrap_or_else(|| {
            response::error(StatusCode::SERVICE_UNAVAILABLE, "kill_switch_active", "")
        });
    }
    // 5. Routing headers that disagree with the body (MCP 2026-07-28).
    if let Some(refusal) = header_mismatch(state, &parts.headers, &raw) {
        return refusal;
    }
    // 6. Inspect the client's messages.
    let judged = judge_client(proxy.inspector.as_ref(), &scan_key, &raw);
    let Some(forward) = judged.forward else {
        return match pipelock_answers(judged.answers, judged.batch) {
            Some(answer) => rpc_answer(StatusCode::OK, &answer),
            None => accepted(),
        };
    };
    // 7. Forward.
    let upstream = match proxy
        .upstream
        .send(
            state,
            Method::POST,
            &parts.headers,
            Some(Bytes::from(forward)),
        )
        .await
    {
        Ok(upstream) => upstream,
        Err(error) => return upstream_failed(state, &error.to_string(), &judged.request_ids),
    };
    // 8. Inspect the server's messages.
    relay(
        state,
        proxy,
        Exchange {
            session,
            scan_key,
            client_headers: parts.headers,
            requests: judged.requests,
            first: judged.answers,
        },
        upstream,
    )
    .await
}

/// 400 with a JSON-RPC `-32020` when the request's `Mcp-Method`, `Mcp-Name` or
/// `MCP-Protocol-Version` header says something else than its body; nothing is forwarded.
fn header_mismatch(
    state: &ServerState,
    headers: &hyper::HeaderMap,
    raw: &[u8],
) -> Option<Response<Body>> {
    if !routing_headers::any_present(headers) {
        return None;
    }
    let body: Value = serde_json::from_slice(raw).ok()?;
    let why = routing_headers::mismatch(headers, &body)?;
    tracing::warn!(%why, "MCP request refused: routing headers disagree with the body");
    state
        .metrics
        .record_mcp_message("client", "refused", "header_mismatch");
    let id = body.get("id").cloned().unwrap_or(Value::Null);
    Some(rpc_answer(
        StatusCode::BAD_REQUEST,
        &jsonrpc::error(
            id,
            routing_headers::HEADER_MISMATCH,
            "header_mismatch",
            &why,
        ),
    ))
}

/// Pipelock's own answers as one body: a single value, or an array for a batch.
fn pipelock_answers(mut answers: Vec<Value>, batch: bool) -> Option<Value> {
    if answers.is_empty() {
        None
    } else if batch || answers.len() > 1 {
        Some(Value::Array(answers))
    } else {
        answers.pop()
    }
}

/// The key of a request's scanning session (its chain window, pinned tools and drift
/// baseline): the `Mcp-Session-Id`, or, for a request without one (sessionless MCP 2026-07-28
/// traffic, or an `initialize` before the server assigns a session), the client's address and
/// a fingerprint of its `Authorization` header, so that sessionless clients are judged apart.
fn scan_key(session: &str, peer: SocketAddr, headers: &HeaderMap) -> String {
    if !session.is_empty() {
        return session.to_string();
    }
    let authorization = headers
        .get(AUTHORIZATION)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    let digest = Sha256::digest(authorization);
    let fingerprint: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("sessionless {} {fingerprint}", peer.ip())
}

/// One client request's context, for relaying the upstream's answer to it.
pub(crate) struct Exchange {
    /// The MCP session id (empty before the server has assigned one, and for sessionless
    /// traffic); it goes on the requests Pipelock sends the server in the client's name.
    pub session: String,
    /// The scanning session's key (see [`scan_key`]).
    pub scan_key: String,
    /// The client's request headers (to answer the server in the client's name).
    pub client_headers: HeaderMap,
    /// The client's forwarded requests by [`jsonrpc::id_key`], which the answer may answer.
    pub requests: HashMap<String, Value>,
    /// Pipelock's own answers to replaced requests of the same batch, sent first.
    pub first: Vec<Value>,
}

/// Relays the upstream's answer, inspecting the messages it carries.
async fn relay(
    state: &Arc<ServerState>,
    proxy: &Arc<McpProxy>,
    exchange: Exchange,
    upstream: Response<Returning>,
) -> Response<Body> {
    let Exchange {
        session,
        scan_key,
        client_headers,
        requests,
        first,
    } = exchange;
    let (parts, body) = upstream.into_parts();
    // A session assigned by this answer (to `initialize`) is the session of its messages.
    let (session, scan_key) = match parts
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        Some(assigned) if !assigned.is_empty() => (assigned.to_string(), assigned.to_string()),
        _ => (session, scan_key),
    };
    let media = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let compressed = parts
        .headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("identity"));
    let inspected = media == "text/event-stream" || media == "application/json";
    if inspected && compressed {
        return upstream_failed(
            state,
            "the MCP upstream sent a compressed answer although none was accepted; it cannot be inspected",
            &requests_ids(&requests),
        );
    }
    let mut response = Response::new(response::full(Bytes::new()));
    *response.status_mut() = parts.status;
    copy_end_to_end(&parts.headers, response.headers_mut());
    response.headers_mut().remove(CONTENT_LENGTH);
    if media == "text/event-stream" {
        let relay = sse::SseRelay {
            state: Arc::clone(state),
            proxy: Arc::clone(proxy),
            exchange: Exchange {
                session,
                scan_key,
                client_headers,
                requests,
                first,
            },
        };
        *response.body_mut() = relay.start(body).boxed();
        return response;
    }
    if media == "application/json" {
        let raw = match read_answer(body).await {
            Ok(raw) => raw,
            Err(reason) => return upstream_failed(state, &reason, &requests_ids(&requests)),
        };
        let judged = if raw.is_empty() {
            ServerJudgement::unchanged()
        } else {
            judge_server(proxy.inspector.as_ref(), &scan_key, &requests, &raw)
        };
        answer_server(state, proxy, &client_headers, &session, judged.to_server);
        let body = match (judged.to_client, first.is_empty()) {
            (ToClient::Unchanged, true) => raw.to_vec(),
            (ToClient::Nothing, true) => return accepted(),
            (to_client, _) => {
                let server = match to_client {
                    ToClient::Unchanged => serde_json::from_slice(&raw).unwrap_or(Value::Null),
                    ToClient::Replaced(value) => value,
                    ToClient::Nothing => Value::Null,
                };
                merge(first, server).to_string().into_bytes()
            }
        };
        *response.body_mut() = response::full(body);
        return response;
    }
    if !first.is_empty() && parts.status == StatusCode::ACCEPTED {
        // The forwarded part of the batch was notifications only; the client still needs
        // Pipelock's answers to its replaced requests.
        return rpc_answer(StatusCode::OK, &Value::Array(first));
    }
    // Anything else (202, 405, an error page) passes as it came.
    *response.body_mut() = body.map_err(std::io::Error::other).boxed();
    response
}

/// Sends `answers` (responses to server requests the inspector withheld from the client) to
/// the upstream in the client's name: each as a POST on the client's session, with its
/// headers (token, protocol version). Sent in the background; the upstream's reply (normally
/// 202) is only logged.
pub(crate) fn answer_server(
    state: &Arc<ServerState>,
    proxy: &Arc<McpProxy>,
    client_headers: &HeaderMap,
    session: &str,
    answers: Vec<Value>,
) {
    if answers.is_empty() {
        return;
    }
    let mut headers = client_headers.clone();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    headers.remove(LAST_EVENT_ID);
    if let Ok(value) = HeaderValue::from_str(session) {
        if !session.is_empty() {
            headers.insert(SESSION_HEADER, value);
        }
    }
    for answer in answers {
        let state = Arc::clone(state);
        let proxy = Arc::clone(proxy);
        let headers = headers.clone();
        tokio::spawn(async move {
            let body = Bytes::from(answer.to_string());
            match proxy
                .upstream
                .send(&state, Method::POST, &headers, Some(body))
                .await
            {
                Ok(reply) => {
                    tracing::info!(status = reply.status().as_u16(), id = %answer["id"], "MCP server request answered by Pipelock")
                }
                Err(error) => {
                    tracing::warn!(%error, id = %answer["id"], "cannot answer the MCP server's withheld request")
                }
            }
        });
    }
}

/// Pipelock's answers followed by the server's messages, as one batch answer.
fn merge(mut first: Vec<Value>, server: Value) -> Value {
    if first.is_empty() {
        return server;
    }
    match server {
        Value::Array(items) => first.extend(items),
        Value::Null => {}
        other => first.push(other),
    }
    Value::Array(first)
}

fn requests_ids(requests: &HashMap<String, Value>) -> Vec<Value> {
    requests
        .values()
        .filter_map(|r| r.get("id").cloned())
        .collect()
}

/// Reads a JSON answer of at most [`MAX_MESSAGE_BYTES`], within the response timeout.
async fn read_answer(body: Returning) -> Result<Bytes, String> {
    let read = Limited::new(body, MAX_MESSAGE_BYTES).collect();
    match tokio::time::timeout(upstream::RESPONSE_HEADERS_TIMEOUT, read).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error))
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(format!(
                "the MCP upstream's answer exceeds {MAX_MESSAGE_BYTES} bytes"
            ))
        }
        Ok(Err(error)) => Err(format!("reading the MCP upstream's answer failed: {error}")),
        Err(_) => Err("the MCP upstream's answer did not arrive in time".to_string()),
    }
}

/// 502 with a JSON-RPC error naming `cause`, one per forwarded request (`ids`), or a single
/// one with a null id.
fn upstream_failed(state: &ServerState, cause: &str, ids: &[Value]) -> Response<Body> {
    tracing::warn!(%cause, "MCP upstream failed");
    state
        .metrics
        .record_proxy_request("mcp", "error", "upstream");
    let message = format!("upstream MCP server failed: {cause}");
    rpc_answer(
        StatusCode::BAD_GATEWAY,
        &errors_for(ids, code::UPSTREAM_ERROR, "upstream_error", &message),
    )
}

/// One error per id (an array when more than one), or a single one with a null id.
fn errors_for(ids: &[Value], code: i64, error: &str, message: &str) -> Value {
    match ids {
        [] => jsonrpc::error(Value::Null, code, error, message),
        [id] => jsonrpc::error(id.clone(), code, error, message),
        ids => Value::Array(
            ids.iter()
                .map(|id| jsonrpc::error(id.clone(), code, error, message))
                .collect(),
        ),
    }
}

/// The kill switch's answer (503 with JSON-RPC errors for `ids`), unless it is off or the
/// client is exempt.
fn kill_switch_refusal(
    state: &ServerState,
    peer: SocketAddr,
    ids: &[Value],
) -> Option<Response<Body>> {
    let switch = &state.kill_switch;
    let source = switch.active()?;
    if switch.exempt_client(peer.ip()) {
        return None;
    }
    state
        .metrics
        .record_proxy_request("mcp", "block", "kill_switch");
    tracing::warn!(source = source.name(), %peer, "MCP request refused: kill switch active");
    Some(rpc_answer(
        StatusCode::SERVICE_UNAVAILABLE,
        &errors_for(
            ids,
            code::KILL_SWITCH,
            "kill_switch_active",
            switch.message(),
        ),
    ))
}

fn rpc_answer(status: StatusCode, value: &Value) -> Response<Body> {
    response::json(status, value)
}

fn accepted() -> Response<Body> {
    let mut response = Response::new(response::full(Bytes::new()));
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_is_required_when_a_token_is_set() {
        let proxy = McpProxy::new(
            "http://127.0.0.1:1/mcp",
            Some("tok".into()),
            Arc::new(crate::mcp::PassThrough),
        )
        .expect("proxy");
        let mut headers = hyper::HeaderMap::new();
        assert!(!proxy.authorized(&headers));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer tok"));
        assert!(proxy.authorized(&headers));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer  tok "));
        assert!(proxy.authorized(&headers));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic tok"));
        assert!(!proxy.authorized(&headers));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer tok2"));
        assert!(!proxy.authorized(&headers));
        let open = McpProxy::new(
            "http://127.0.0.1:1/mcp",
            None,
            Arc::new(crate::mcp::PassThrough),
        )
        .expect("proxy");
        assert!(open.authorized(&hyper::HeaderMap::new()));
    }

    #[test]
    fn sessionless_clients_are_scanned_apart_by_address_and_token() {
        let a: SocketAddr = "10.0.0.1:5000".parse().expect("address");
        let b: SocketAddr = "10.0.0.2:5000".parse().expect("address");
        let token = |t: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, HeaderValue::from_str(t).expect("header"));
            headers
        };
        let none = HeaderMap::new();
        assert_eq!(scan_key("abc", a, &none), "abc");
        assert_eq!(scan_key("abc", b, &token("Bearer x")), "abc");
        let key = scan_key("", a, &token("Bearer x"));
        assert!(key.starts_with("sessionless 10.0.0.1 "), "{key}");
        assert!(!key.contains("Bearer"), "{key}");
        // Another port of the same client is the same client.
        let a2: SocketAddr = "10.0.0.1:6000".parse().expect("address");
        assert_eq!(key, scan_key("", a2, &token("Bearer x")));
        assert_ne!(key, scan_key("", b, &token("Bearer x")));
        assert_ne!(key, scan_key("", a, &token("Bearer y")));
        assert_ne!(key, scan_key("", a, &none));
    }

    #[test]
    fn pipelock_answers_keep_the_batch_shape() {
        assert_eq!(pipelock_answers(vec![], true), None);
        assert_eq!(
            pipelock_answers(vec![Value::from(1)], false),
            Some(Value::from(1))
        );
        assert_eq!(
            pipelock_answers(vec![Value::from(1)], true),
            Some(Value::Array(vec![Value::from(1)]))
        );
        assert_eq!(
            merge(vec![Value::from(1)], Value::Array(vec![Value::from(2)])),
            Value::Array(vec![Value::from(1), Value::from(2)])
        );
    }
}
