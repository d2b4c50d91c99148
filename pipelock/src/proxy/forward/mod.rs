//! The forward proxy on the main listener (`forward_proxy`): absolute-URI HTTP requests are
//! scanned both ways and forwarded; CONNECT tunnels get hostname-level checks, then either
//! TLS interception (`tls_interception.enabled`, hosts outside `passthrough_domains`: every
//! request inside is scanned like a plain one) or an opaque relay (Pipelock then sees no path,
//! body or response inside the tunnel);
//! absolute-URI WebSocket upgrades, and HTTP/1.1 WebSocket upgrades inside intercepted
//! tunnels, go to the WebSocket proxy ([`websocket`]), which also serves `/ws?url=…`.
//!
//! Every request passes the same gates in order: URL layers, the per-site rate limit and data
//! budget, headers and body (DLP), then name resolution with the SSRF check on the resolved
//! addresses. The address that passed is the one connected to, so a second lookup cannot
//! swap it (no DNS-rebinding window).

pub(crate) mod dial;
mod fetch;
pub(crate) mod gates;
pub(crate) mod headers;
pub(crate) mod http;
pub(crate) mod intercept;
pub(crate) mod judge;
pub(crate) mod origin;
pub(crate) mod pool;
pub(crate) mod sni;
mod sse;
pub(crate) mod tunnel;
pub mod websocket;

use std::sync::Arc;

pub use fetch::fetch;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::response::{self, Body};
use super::ServerState;

/// Answers a proxy request (CONNECT or absolute URI).
pub async fn handle(state: Arc<ServerState>, request: Request<Incoming>) -> Response<Body> {
    let kind = if request.method() == Method::CONNECT {
        "connect"
    } else if websocket::is_upgrade(&request) {
        "websocket"
    } else {
        "http"
    };
    if !state.config.forward_proxy.enabled {
        state.metrics.record_proxy_request(kind, "block", "config");
        return response::error(
            StatusCode::FORBIDDEN,
            "forward_proxy_disabled",
            "forward proxying is off (forward_proxy.enabled: false); nothing was forwarded",
        );
    }
    if request.method() == Method::CONNECT {
        tunnel::open(state, request).await
    } else if websocket::is_upgrade(&request) {
        websocket::forward_upgrade(state, request).await
    } else {
        http::forward(state, request).await
    }
}
