//! TLS interception of CONNECT tunnels (`tls_interception.enabled`): the client's TLS is
//! terminated with a leaf certificate for the CONNECT host signed by the Pipelock CA, and each
//! request inside the tunnel (HTTP/1.1 or HTTP/2, as ALPN decides) goes through the same
//! scanning as a plain proxied request, to the origin over TLS verified against the system
//! roots (plus `upstream_ca_file`).
//!
//! The ClientHello's server name must match the CONNECT host when `sni_verification` is on,
//! and every request's `Host` (or `:authority`) must name the CONNECT host, so a tunnel opened
//! for one site cannot carry requests for another.
//!
//! An HTTP/1.1 `Upgrade: websocket` request inside the tunnel goes to the WebSocket proxy
//! ([`super::websocket`]) as a `wss://` session to the tunnel's host, with every message
//! scanned; the connection then belongs to that session. Other upgrades, and WebSockets over
//! HTTP/2 (extended CONNECT, which Pipelock does not advertise), are refused with 501.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;

use super::http::{exchange, Target};
use super::websocket;
use crate::proxy::response::{self, Body};
use crate::proxy::ServerState;
use crate::tls::Interceptor;

/// How long a client may take to send its ClientHello (as without interception).
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the decrypted requests of one tunnel to `host:port` until the client leaves, the
/// tunnel has been idle for `idle`, or it has lived `max`. `client` is an upgraded CONNECT
/// or a transparent connection (whose target then carries the original destination).
pub(crate) async fn serve<C>(
    state: Arc<ServerState>,
    interceptor: Arc<Interceptor>,
    client: C,
    target: Target,
    limits: (Duration, Duration),
) -> &'static str
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (max, idle) = limits;
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), client);
    let start = match tokio::time::timeout(HELLO_TIMEOUT, acceptor).await {
        Err(_) => return refuse_tunnel(&state, &target, "no TLS ClientHello within 5 s"),
        Ok(Err(_)) => return refuse_tunnel(&state, &target, "malformed TLS ClientHello"),
        Ok(Ok(start)) => start,
    };
    if state.config.forward_proxy.sni_verification {
        if let Some(name) = start.client_hello().server_name() {
            let expected = target.host.trim_end_matches('.').to_ascii_lowercase();
            if name.trim_end_matches('.').to_ascii_lowercase() != expected {
                return refuse_tunnel(&state, &target, "the ClientHello names another host");
            }
        }
    }
    let config = match interceptor.server_config(&target.host) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(target_host = %target.host, %error, "cannot mint a leaf certificate");
            return refuse_tunnel(&state, &target, "no leaf certificate");
        }
    };
    state.metrics.set_tls_leaves(interceptor.cached_leaves());
    let tls = match tokio::time::timeout(HELLO_TIMEOUT, start.into_stream(config)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            // Typically a client that does not trust the Pipelock CA.
            tracing::warn!(target_host = %target.host, %error, "intercepted TLS handshake failed");
            return "client handshake failed";
        }
        Err(_) => return "client handshake timed out",
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let service_state = Arc::clone(&state);
    let service_target = target.clone();
    // Set when a request was answered 101: the connection then belongs to a WebSocket session.
    let handed_over = Arc::new(AtomicBool::new(false));
    let service_handed_over = Arc::clone(&handed_over);
    let service = service_fn(move |request: Request<Incoming>| {
        let state = Arc::clone(&service_state);
        let target = service_target.clone();
        let handed_over = Arc::clone(&service_handed_over);
        async move {
            let response = handle(state, target, request).await;
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                handed_over.store(true, Ordering::Release);
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let io = TokioIo::new(tls);
    let served = if h2 {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(idle))
            .keep_alive_timeout(Duration::from_secs(20));
        tokio::time::timeout(max, builder.serve_connection(io, service)).await
    } else {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(idle)
            .keep_alive(true);
        let connection = builder.serve_connection(io, service).with_upgrades();
        tokio::time::timeout(max, connection).await
    };
    match served {
        Err(_) => "max tunnel time",
        Ok(Err(error)) if error.is_timeout() => "idle timeout",
        Ok(Err(_)) => "connection error",
        Ok(Ok(())) if handed_over.load(Ordering::Acquire) => "handed over to a WebSocket session",
        Ok(Ok(())) => "closed",
    }
}

/// One decrypted request: its `Host` must name the tunnel's host, then it is scanned and
/// forwarded like any proxied request, or, for a WebSocket upgrade, opens a scanned session.
async fn handle(
    state: Arc<ServerState>,
    target: Target,
    request: Request<Incoming>,
) -> Response<Body> {
    let named = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            request
                .headers()
                .get(hyper::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        });
    let matches = named
        .as_deref()
        .is_some_and(|named| same_authority(named, &target));
    if !matches {
        state
            .metrics
            .record_proxy_request(target.kind(), "block", "host_mismatch");
        tracing::warn!(target_host = %target.host, named = ?named, "intercepted request names another host");
        return response::error(
            StatusCode::FORBIDDEN,
            "host_mismatch",
            "the request's Host does not match the CONNECT target; nothing was forwarded",
        );
    }
    dispatch(state, target, request).await
}

/// A request whose `Host` was checked against `target`: WebSocket upgrades (over HTTP/1.1)
/// open a scanned session, other upgrades and CONNECT are refused with 501, the rest is
/// scanned and forwarded like any proxied request. Shared by intercepted tunnels and the
/// transparent listener.
pub(crate) async fn dispatch(
    state: Arc<ServerState>,
    target: Target,
    request: Request<Incoming>,
) -> Response<Body> {
    let upgrade = request.headers().contains_key(hyper::header::UPGRADE);
    if request.version() == Version::HTTP_2 && (upgrade || request.method() == Method::CONNECT) {
        return not_implemented(
            &state,
            &target,
            "websocket_over_http2_not_supported",
            "CONNECT and upgrades over HTTP/2, WebSockets by extended CONNECT included, are not proxied inside intercepted tunnels; open WebSockets over HTTP/1.1 (ALPN http/1.1); nothing was forwarded",
        );
    }
    if websocket::is_upgrade(&request) {
        return websocket::upgrade_at(state, &target, request).await;
    }
    if upgrade {
        return not_implemented(
            &state,
            &target,
            "upgrade_not_supported",
            "protocol upgrades other than WebSocket are not proxied inside intercepted tunnels; nothing was forwarded",
        );
    }
    exchange(state, target, request).await
}

/// A request inside the tunnel that Pipelock cannot proxy: 501, counted.
fn not_implemented(
    state: &ServerState,
    target: &Target,
    code: &str,
    message: &str,
) -> Response<Body> {
    state
        .metrics
        .record_proxy_request(target.kind(), "block", "request");
    response::error(StatusCode::NOT_IMPLEMENTED, code, message)
}

/// Whether `named` (`host[:port]`, IPv6 bracketed) is the target's host and port.
fn same_authority(named: &str, target: &Target) -> bool {
    let Ok(authority) = named.parse::<hyper::http::uri::Authority>() else {
        return false;
    };
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.');
    host.eq_ignore_ascii_case(target.host.trim_end_matches('.'))
        && authority.port_u16().unwrap_or(443) == target.port
}

/// Closes a tunnel whose TLS start was refused, counted and logged.
fn refuse_tunnel(state: &ServerState, target: &Target, reason: &'static str) -> &'static str {
    state
        .metrics
        .record_proxy_request("connect", "block", "sni");
    tracing::warn!(target_host = %target.host, reason, "intercepted tunnel closed: TLS server name check failed");
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: u16) -> Target {
        Target {
            host: host.to_string(),
            port,
            secure: true,
            upstream: None,
        }
    }

    #[test]
    fn authority_must_name_the_tunnel_host_and_port() {
        assert!(same_authority(
            "api.openai.com",
            &target("api.openai.com", 443)
        ));
        assert!(same_authority(
            "API.openai.com:443",
            &target("api.openai.com", 443)
        ));
        assert!(same_authority("127.0.0.1:8443", &target("127.0.0.1", 8443)));
        assert!(same_authority("[::1]:8443", &target("::1", 8443)));
        assert!(!same_authority(
            "evil.example",
            &target("api.openai.com", 443)
        ));
        assert!(!same_authority(
            "api.openai.com:8443",
            &target("api.openai.com", 443)
        ));
        assert!(!same_authority(
            "not a host",
            &target("api.openai.com", 443)
        ));
    }
}
