//! The WebSocket proxy (`websocket_proxy`, off by default). Three front doors lead here:
//!
//! - `GET /ws?url=ws://host:port/path` (or `wss://`), the reference's endpoint;
//! - a forward-proxy request `GET http://host/path` with `Upgrade: websocket`;
//! - an HTTP/1.1 `Upgrade: websocket` request inside an intercepted CONNECT tunnel (its
//!   `Host` already checked against the CONNECT host), a `wss://` session to that host;
//! - the same on the transparent listener (plain HTTP or intercepted TLS), a session to the
//!   connection's original destination.
//!
//! All walk the same phases, in order: the section must be on; the client's handshake must
//! be a WebSocket one; the target URL goes through every URL layer, the per-site rate limit
//! and data budget, and the request headers through DLP, as an HTTP request would; the
//! session takes one of `max_concurrent_connections` slots; the host is resolved, the
//! addresses SSRF-checked, and the address that passed is the one connected to (over TLS
//! for `wss://`, verified for the target's host); Pipelock performs the upstream handshake
//! itself ([`handshake`]), answers the client 101, and relays messages ([`session`]), scanning
//! each one ([`relay`], which documents what is and is not scanned).
//!
//! A refusal before the upgrade is an HTTP answer with a JSON body: 403 (disabled, blocked),
//! 429 (rate limit), 400 (not a WebSocket handshake, bad target), 503 (`websocket_limit`),
//! 502 (upstream failures, `upstream_tls_failed` when a `wss://` origin's certificate does
//! not verify).

mod handshake;
mod relay;
mod session;
mod target;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{HeaderValue, UPGRADE};
use hyper::{Request, Response, StatusCode};

use self::handshake::{ClientHandshake, UpstreamHandshakeError};
use self::relay::Limits;
use self::session::{Session, Slot};
use self::target::{Target, TargetError};
use super::dial;
use super::headers::scan_request_headers;
use super::judge::Judgement;
use crate::proxy::response::{self, Body};
use crate::proxy::ServerState;

/// The `kind` label of WebSocket sessions in `pipelock_proxy_requests_total`.
const KIND: &str = "websocket";

/// Whether a forward-proxy request asks to upgrade to a WebSocket.
#[must_use]
pub fn is_upgrade(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get_all(UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
}

/// `GET /ws?url=ws://host:port/path`.
pub async fn endpoint(state: Arc<ServerState>, request: Request<Incoming>) -> Response<Body> {
    let raw = target::from_query(request.uri().query());
    open(state, request, raw, None).await
}

/// An absolute-URI upgrade request at the forward proxy (`GET http://host/path`).
pub async fn forward_upgrade(
    state: Arc<ServerState>,
    request: Request<Incoming>,
) -> Response<Body> {
    let raw = Ok(request.uri().to_string());
    open(state, request, raw, None).await
}

/// An upgrade request whose `Host` was already checked against `at`: inside an intercepted
/// tunnel (`wss://` at the tunnel's host and port, reached over TLS like any `wss://`
/// target), or on the transparent listener (`ws://`, or `wss://` when intercepted, to the
/// connection's original destination), with the request's path.
pub(crate) async fn upgrade_at(
    state: Arc<ServerState>,
    at: &super::http::Target,
    request: Request<Incoming>,
) -> Response<Body> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", hyper::http::uri::PathAndQuery::as_str);
    let scheme = if at.secure { "wss" } else { "ws" };
    let raw = Ok(format!("{scheme}://{}{path}", at.authority()));
    open(state, request, raw, at.upstream).await
}

/// The one path of every session, whatever the front door: the gates, the upstream
/// handshake, the client's 101, and the relay. `known` is the original destination of a
/// transparent connection, connected to instead of resolving the target's host.
async fn open(
    state: Arc<ServerState>,
    mut request: Request<Incoming>,
    raw_target: Result<String, TargetError>,
    known: Option<std::net::SocketAddr>,
) -> Response<Body> {
    // 1. The section, the client's handshake, the target.
    if !state.config.websocket_proxy.enabled {
        state.metrics.record_proxy_request(KIND, "block", "config");
        return response::error(
            StatusCode::FORBIDDEN,
            "websocket_disabled",
            "the WebSocket proxy is off (websocket_proxy.enabled: false); nothing was forwarded",
        );
    }
    let client = match ClientHandshake::check(request.method(), request.headers()) {
        Ok(client) => client,
        Err(error) => return bad_request(&state, "bad_websocket_handshake", &error.to_string()),
    };
    let target = match raw_target.and_then(|raw| Target::parse(&raw)) {
        Ok(target) => target,
        Err(error) => return bad_request(&state, "bad_websocket_target", &error.to_string()),
    };
    let on_client_upgrade = hyper::upgrade::on(&mut request);
    let mut judged = Judgement::default();

    // 2. The URL, every layer, before any lookup.
    judged.add(&state, state.scanner.scan_url(&target.scan_form()), true);
    if judged.block.is_some() {
        return judged.refuse(&state, KIND, StatusCode::FORBIDDEN, "websocket");
    }
    // 3. The per-site rate limit and data budget.
    if let Err(finding) = state.scanner.budgets().admit(&target.host, Instant::now()) {
        judged.add(&state, vec![finding], true);
        if judged.block.is_some() {
            return judged.refuse(&state, KIND, StatusCode::TOO_MANY_REQUESTS, "websocket");
        }
    }
    // 4. The handshake's headers (DLP).
    scan_request_headers(&state, request.headers(), &mut judged);
    if judged.block.is_some() {
        return judged.refuse(&state, KIND, StatusCode::FORBIDDEN, "websocket");
    }
    // 5. A session slot.
    let Some(slot) = Slot::take(&state) else {
        state.metrics.record_proxy_request(KIND, "block", "limit");
        return response::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "websocket_limit",
            &format!(
                "{} WebSocket sessions are open (websocket_proxy.max_concurrent_connections); try again later",
                state.config.websocket_proxy.max_concurrent_connections
            ),
        );
    };
    // 6. Resolve (or take the original destination), check the addresses, connect to one
    //    that passed.
    let resolved = match dial::vet_or_refuse(&state, KIND, &target.host, target.port, known).await {
        Ok(resolved) => resolved,
        Err(refusal) => return refusal,
    };
    judged.add(&state, resolved.findings, true);
    if judged.block.is_some() {
        return judged.refuse(&state, KIND, StatusCode::FORBIDDEN, "websocket");
    }
    let tcp = match dial::connect(&state, &resolved.addrs).await {
        Ok(stream) => stream,
        Err(error) => {
            return upstream_error(
                &state,
                "upstream_failed",
                &format!("cannot connect to {}: {error}", target.authority),
            )
        }
    };
    // 7. The upstream handshake, with Pipelock's own key; for `wss://` over TLS verified for
    //    the target's host (its name as SNI, the certificate against the system roots plus
    //    `tls_interception.upstream_ca_file`). A TLS failure refuses the session: there is
    //    no fallback to plain text.
    let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
    let upstream_request = match handshake::upstream_request(
        request.headers(),
        &target,
        &state.config.websocket_proxy,
        &key,
    ) {
        Ok(built) => built,
        Err(error) => return upstream_error(&state, "upstream_failed", &error.to_string()),
    };
    let timeout = Duration::from_secs(state.config.fetch_proxy.timeout_seconds.max(1));
    let offered = client.protocols();
    let opened = if target.tls {
        let tls = match dial::connect_tls(&state, &target.host, tcp).await {
            Ok(tls) => tls,
            Err(error) => {
                return upstream_error(
                    &state,
                    "upstream_tls_failed",
                    &format!(
                        "TLS with {} failed: {error}; nothing was forwarded",
                        target.authority
                    ),
                )
            }
        };
        handshake::open_upstream(tls, upstream_request, &key, offered, timeout).await
    } else {
        handshake::open_upstream(tcp, upstream_request, &key, offered, timeout).await
    };
    let (upstream, protocol) = match opened {
        Ok(opened) => opened,
        Err(error @ UpstreamHandshakeError::Extension(_)) => {
            return upstream_error(&state, "websocket_extension_negotiated", &error.to_string())
        }
        Err(error) => {
            return upstream_error(&state, "websocket_upstream_failed", &error.to_string())
        }
    };

    // 8. The client's 101, then the relay.
    let (verdict, scanner) = judged.outcome();
    state.metrics.record_proxy_request(KIND, verdict, &scanner);
    for warning in &judged.warnings {
        tracing::warn!(target_host = %target.host, rule = %warning.rule_id, "WebSocket session opened with a warning");
    }
    let mut answer = client.switching(protocol.as_ref());
    if let Some(warning) = judged.warning_header() {
        if let Ok(value) = HeaderValue::from_str(&warning) {
            answer.headers_mut().insert("x-pipelock-warning", value);
        }
    }
    let session = Session {
        slot,
        target,
        upstream,
        limits: Limits::from_config(&state),
    };
    tokio::spawn(session.run(state, on_client_upgrade));
    answer
}

fn bad_request(state: &ServerState, code: &str, message: &str) -> Response<Body> {
    state.metrics.record_proxy_request(KIND, "block", "request");
    response::error(StatusCode::BAD_REQUEST, code, message)
}

fn upstream_error(state: &ServerState, code: &str, message: &str) -> Response<Body> {
    state
        .metrics
        .record_proxy_request(KIND, "error", "upstream");
    response::error(StatusCode::BAD_GATEWAY, code, message)
}
