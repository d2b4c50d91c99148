//! A transparent connection that opened with an HTTP/1.x request line: served as HTTP/1.1
//! (origin-form requests are the norm here, absolute-form ones work too). Each request's
//! `Host` must name the original destination (that IP literal, or a name resolving to it),
//! or it is refused with 403 `host_mismatch`; then it takes the forward proxy's pipeline to
//! the original address and port, WebSocket upgrades included.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::proxy::forward::http::Target;
use crate::proxy::forward::{dial, intercept};
use crate::proxy::listener::serve_http1;
use crate::proxy::response::{self, Body};
use crate::proxy::ServerState;

/// The `kind` label of transparent HTTP requests in `pipelock_proxy_requests_total`.
const KIND: &str = "transparent";

/// Serves the requests of one connection to `original` until the client leaves, or finishes
/// the current one and closes when Pipelock shuts down.
pub async fn serve<S>(
    state: Arc<ServerState>,
    original: SocketAddr,
    io: S,
    stopping: tokio::sync::watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handler = move |request: Request<Incoming>| {
        let state = Arc::clone(&state);
        async move { Ok::<_, std::convert::Infallible>(handle(state, original, request).await) }
    };
    if let Err(error) = serve_http1(io, handler, stopping).await {
        tracing::debug!(%original, %error, "transparent HTTP connection ended with an error");
    }
}

/// One request: its `Host` checked against `original`, then dispatched like a request inside
/// an intercepted tunnel (plain HTTP here).
async fn handle(
    state: Arc<ServerState>,
    original: SocketAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    if request.method() == Method::CONNECT {
        state.metrics.record_proxy_request(KIND, "block", "request");
        return response::error(
            StatusCode::NOT_IMPLEMENTED,
            "connect_not_supported",
            "CONNECT through the transparent listener is not proxied (the client dialled another proxy); nothing was forwarded",
        );
    }
    let named = named_host(&request);
    let Some(host) = named.as_deref() else {
        state.metrics.record_proxy_request(KIND, "block", "request");
        return response::error(
            StatusCode::BAD_REQUEST,
            "missing_host",
            "the request names no host (no Host header); nothing was forwarded",
        );
    };
    if !dial::resolves_to(host, original.ip()).await {
        state
            .metrics
            .record_proxy_request(KIND, "block", "host_mismatch");
        tracing::warn!(%original, named = %host, "transparent request names a host that is not its destination");
        return response::error(
            StatusCode::FORBIDDEN,
            "host_mismatch",
            "the request's Host does not name the address the connection was made to; nothing was forwarded",
        );
    }
    let target = Target {
        host: host.to_string(),
        port: original.port(),
        secure: false,
        upstream: Some(original),
    };
    intercept::dispatch(state, target, request).await
}

/// The host a request names, without port or IPv6 brackets: the absolute-form URI's, else the
/// `Host` header's. `None` when there is none or it does not parse.
fn named_host(request: &Request<Incoming>) -> Option<String> {
    let authority = match request.uri().authority() {
        Some(authority) => authority.clone(),
        None => request
            .headers()
            .get(hyper::header::HOST)?
            .to_str()
            .ok()?
            .parse::<hyper::http::uri::Authority>()
            .ok()?,
    };
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.');
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}
