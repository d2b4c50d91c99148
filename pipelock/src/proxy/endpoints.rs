//! Pipelock's own endpoints on the main listener: `/health`, `/metrics`, `/fetch`, the
//! WebSocket proxy's `/ws?url=…` and the kill-switch API; and the kill switch's refusal of
//! everything else while it is active.
//!
//! Routing happens here so that each request is answered by exactly one named endpoint, and
//! each answer is counted once in `pipelock_http_requests_total`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::response::{self, Body};
use super::ServerState;
use crate::telemetry::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;

/// Which of Pipelock's endpoints a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routes {
    pub health: bool,
    pub metrics: bool,
    /// The forward proxy (CONNECT and absolute URIs) and the WebSocket proxy (`/ws`).
    pub proxy: bool,
    /// The kill-switch API (`/api/v1/killswitch`), when a token is configured.
    pub kill_switch_api: bool,
}

/// Answers one request on a listener that serves `routes`: a proxy request (CONNECT or an
/// absolute URI) goes to the forward proxy on the main listener; anything else to one of
/// Pipelock's own endpoints.
pub async fn route(
    state: Arc<ServerState>,
    routes: Routes,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    let proxy_request = request.method() == Method::CONNECT || request.uri().scheme().is_some();
    let path = request.uri().path();
    if !proxy_request
        && path.starts_with(super::killswitch_api::PREFIX)
        && routes.kill_switch_api
        && state.kill_switch.api_enabled()
    {
        let exempt = state.kill_switch.exemptions().api;
        if exempt || state.kill_switch.active().is_none() {
            let response = super::killswitch_api::handle(&state, request).await;
            state
                .metrics
                .record_http_request("killswitch_api", response.status().as_u16());
            return response;
        }
    }
    if let Some(refusal) = kill_switch_refusal(&state, routes, peer, &request, proxy_request) {
        return refusal;
    }
    if proxy_request && routes.proxy {
        return super::forward::handle(state, request).await;
    }
    if routes.proxy && !proxy_request && request.uri().path() == "/fetch" {
        let response = super::forward::fetch(Arc::clone(&state), request).await;
        state
            .metrics
            .record_http_request("fetch", response.status().as_u16());
        return response;
    }
    if !proxy_request && routes.proxy && request.uri().path() == "/ws" {
        return super::forward::websocket::endpoint(state, request).await;
    }
    let (endpoint, response) = dispatch(&state, routes, &request);
    state
        .metrics
        .record_http_request(endpoint, response.status().as_u16());
    response
}

/// The 503 `kill_switch_active` answer, unless the switch is off, the client is in
/// `allowlist_ips`, or the request is for an exempt endpoint of Pipelock's own.
fn kill_switch_refusal(
    state: &ServerState,
    routes: Routes,
    peer: SocketAddr,
    request: &Request<Incoming>,
    proxy_request: bool,
) -> Option<Response<Body>> {
    let switch = &state.kill_switch;
    let source = switch.active()?;
    if switch.exempt_client(peer.ip()) {
        return None;
    }
    let exempt = switch.exemptions();
    let path = request.uri().path();
    let endpoint = if proxy_request {
        if request.method() == Method::CONNECT {
            "connect"
        } else {
            "http"
        }
    } else {
        match path {
            "/health" if routes.health && exempt.health => return None,
            "/metrics" if routes.metrics && exempt.metrics => return None,
            "/fetch" => "fetch",
            "/ws" => "websocket",
            _ => "endpoint",
        }
    };
    state
        .metrics
        .record_proxy_request(endpoint, "block", "kill_switch");
    tracing::warn!(source = source.name(), %peer, endpoint, "refused: kill switch active");
    Some(response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "kill_switch_active",
        switch.message(),
    ))
}

fn dispatch(
    state: &ServerState,
    routes: Routes,
    request: &Request<Incoming>,
) -> (&'static str, Response<Body>) {
    // A proxy request on a listener that does not proxy (the metrics listener).
    if request.method() == Method::CONNECT || request.uri().scheme().is_some() {
        return (
            "not_a_proxy",
            response::error(
                StatusCode::FORBIDDEN,
                "not_a_proxy",
                "this listener does not proxy; nothing was forwarded",
            ),
        );
    }
    let path = request.uri().path();
    match path {
        "/health" if routes.health => ("health", only_get(request, || health(state))),
        "/metrics" if routes.metrics => ("metrics", only_get(request, || metrics(state))),
        _ => (
            "not_found",
            response::error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no endpoint at {path}"),
            ),
        ),
    }
}

fn only_get(
    request: &Request<Incoming>,
    answer: impl FnOnce() -> Response<Body>,
) -> Response<Body> {
    if request.method() == Method::GET || request.method() == Method::HEAD {
        answer()
    } else {
        let mut response = response::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            &format!("{} is not allowed here; use GET", request.method()),
        );
        response.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET, HEAD"),
        );
        response
    }
}

pub(crate) fn health(state: &ServerState) -> Response<Body> {
    let uptime = Instant::now().duration_since(state.started).as_secs();
    response::json(
        StatusCode::OK,
        &serde_json::json!({
            "status": "healthy",
            "version": env!("CARGO_PKG_VERSION"),
            "mode": state.mode,
            "uptime_seconds": uptime,
        }),
    )
}

fn metrics(state: &ServerState) -> Response<Body> {
    response::with_body(
        StatusCode::OK,
        METRICS_CONTENT_TYPE,
        state.metrics.render().into_bytes(),
    )
}
