//! The transparent listener (`intercept.transparent_port` on 127.0.0.1 and [::1]): the kernel
//! programs redirect every TCP connect of the attached cgroups here, so clients that ignore
//! `HTTPS_PROXY` are scanned all the same.
//!
//! Each accepted connection walks these phases:
//! 1. **Original destination**: asked of the [`OriginalDestinations`] provider by the
//!    client's address (the eBPF side's map); none, or no provider at all, closes it.
//! 2. **Route** from the client's first bytes, read within `intercept.peek_timeout_ms`
//!    ([`route::classify`]).
//! 3. By route:
//!    - TLS with a server name ([`tls`]): the CONNECT gates on that name with the SSRF check
//!      on the original address, then TLS interception or an opaque relay to the original
//!      address, with the tunnel limits;
//!    - HTTP/1.x ([`http`]): every request's `Host` must name the original destination, then
//!      the forward proxy's pipeline, to the original address and port;
//!    - anything else (TLS without a name, other protocols, silence): relayed unscanned only
//!      when an `intercept.allow` rule names the destination ([`allow`]), else closed and
//!      logged.
//!
//! Every connection is counted in `pipelock_transparent_connections_total` by route.

pub mod allow;
mod http;
mod prefixed;
pub mod route;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

pub use allow::{AllowEntry, AllowError, AllowList};
pub use route::Route;

use crate::config::InterceptProtocol;
use crate::proxy::forward::{dial, tunnel};
use crate::proxy::listener::Serves;
use crate::proxy::ServerState;

/// Where redirected connections were going: the kernel side records each connect's original
/// destination and answers by the accepted connection's peer address (the client's address
/// and port). An answer is given once; the record is removed.
pub trait OriginalDestinations: Send + Sync {
    fn original_destination(&self, peer: SocketAddr) -> Option<SocketAddr>;
}

/// What every transparent connection needs besides the shared server state.
pub struct Transparent {
    origins: Option<Arc<dyn OriginalDestinations>>,
    allow: AllowList,
    peek_timeout: Duration,
    /// Pipelock's own HTTP listeners (bound address, what they serve).
    own: Vec<(SocketAddr, Serves)>,
}

impl Transparent {
    /// `origins` is the eBPF side's lookup; `None` when no programs are attached, and then
    /// every connection is refused.
    #[must_use]
    pub fn new(
        origins: Option<Arc<dyn OriginalDestinations>>,
        allow: AllowList,
        peek_timeout: Duration,
    ) -> Self {
        Self {
            origins,
            allow,
            peek_timeout,
            own: Vec::new(),
        }
    }

    /// Pipelock's own listeners. A redirected connection whose original destination is one
    /// of them (an application in the attached cgroup using `HTTPS_PROXY=…:8888`, calling
    /// `/health`, or an agent calling the MCP reverse proxy) is served as that listener
    /// would, not as traffic to an origin.
    #[must_use]
    pub fn with_own_listeners(mut self, own: Vec<(SocketAddr, Serves)>) -> Self {
        self.own = own;
        self
    }

    /// What the own listener `original` names serves, if it names one: the same address, or
    /// the same port on a local address when the listener is bound to all addresses.
    fn own_listener(&self, original: SocketAddr) -> Option<Serves> {
        self.own.iter().find_map(|(addr, serves)| {
            let same_port = addr.port() == original.port();
            let same_ip = addr.ip() == original.ip()
                || (addr.ip().is_unspecified() && is_local(original.ip()));
            (same_port && same_ip).then(|| serves.clone())
        })
    }
}

/// Whether `ip` is an address of this host (loopback, or one a socket can be bound to).
fn is_local(ip: std::net::IpAddr) -> bool {
    ip.is_loopback() || std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// Serves one accepted connection from `peer` through the phases above.
pub async fn serve_connection(
    state: Arc<ServerState>,
    transparent: Arc<Transparent>,
    mut stream: TcpStream,
    peer: SocketAddr,
    stopping: tokio::sync::watch::Receiver<bool>,
) {
    let Some(origins) = &transparent.origins else {
        refuse(
            &state,
            peer,
            None,
            "no eBPF interception attached: the original destination is unknown",
        );
        return;
    };
    let Some(original) = origins.original_destination(peer) else {
        refuse(
            &state,
            peer,
            None,
            "no original destination recorded for this connection",
        );
        return;
    };
    if let Some(serves) = transparent.own_listener(original) {
        state.metrics.record_transparent_connection("own_listener");
        crate::proxy::listener::serve_connection(state, serves, stream, peer, stopping).await;
        return;
    }
    // The kernel refuses new connects while the kill switch is thrown; one accepted just
    // before is refused here.
    if let Some(source) = state.kill_switch.active() {
        state
            .metrics
            .record_proxy_request("transparent", "block", "kill_switch");
        tracing::warn!(%peer, %original, source = source.name(), "transparent connection refused: kill switch active");
        return;
    }
    let (first, route) = read_route(&mut stream, transparent.peek_timeout).await;
    match route {
        Route::Http => {
            state.metrics.record_transparent_connection("http");
            let stream = prefixed::Prefixed::new(first, stream);
            http::serve(state, original, stream, stopping).await;
        }
        Route::Tls { sni: Some(name) } => {
            tls::serve(state, original, name, first, stream).await;
        }
        Route::Tls { sni: None } => {
            relay_if_allowed(
                &state,
                &transparent,
                peer,
                original,
                first,
                stream,
                "TLS without a server name",
            )
            .await;
        }
        Route::Other(reason) => {
            relay_if_allowed(&state, &transparent, peer, original, first, stream, reason).await;
        }
    }
}

/// Reads the client's first bytes until [`route::classify`] decides, the client stops, or
/// `timeout` passes (a silent client: a server-speaks-first protocol, or an idle socket).
async fn read_route(stream: &mut TcpStream, timeout: Duration) -> (Vec<u8>, Route) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let route::Peeked::Decided(route) = route::classify(&bytes) {
            return (bytes, route);
        }
        let want = buf
            .len()
            .min(route::MAX_PEEK.saturating_sub(bytes.len()).max(1));
        match tokio::time::timeout_at(deadline, stream.read(&mut buf[..want])).await {
            Err(_) => {
                return (
                    bytes,
                    Route::Other("no bytes to route within peek_timeout_ms"),
                )
            }
            Ok(Ok(0)) => {
                return (
                    bytes,
                    Route::Other("the client closed before a route was known"),
                )
            }
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => return (bytes, Route::Other("reading from the client failed")),
        }
    }
}

/// A connection the scanners cannot read: relayed unscanned to its original destination when
/// an `intercept.allow` rule names it, else closed.
async fn relay_if_allowed(
    state: &Arc<ServerState>,
    transparent: &Transparent,
    peer: SocketAddr,
    original: SocketAddr,
    first: Vec<u8>,
    stream: TcpStream,
    reason: &'static str,
) {
    if !transparent.allow.allows(InterceptProtocol::Tcp, original) {
        refuse(state, peer, Some(original), reason);
        return;
    }
    let Ok(slot) = Arc::clone(&state.tunnel_slots).try_acquire_owned() else {
        refuse(state, peer, Some(original), "every tunnel slot is taken");
        return;
    };
    let upstream = match dial::connect(state, &[original]).await {
        Ok(upstream) => upstream,
        Err(error) => {
            state.metrics.record_transparent_connection("refused");
            tracing::warn!(%original, %peer, %error, "transparent connection closed: cannot connect to the allowed destination");
            return;
        }
    };
    state.metrics.record_transparent_connection("allowed");
    tracing::info!(%original, %peer, reason, "transparent connection relayed unscanned (intercept.allow)");
    let host = original.ip().to_string();
    hold_tunnel(state, &host, slot, async {
        let limits = tunnel::Limits::from_config(state);
        tunnel::relay_logged(state, stream, upstream, first, &host, limits).await;
    })
    .await;
}

/// Runs a relay holding a tunnel slot, counted as an open tunnel, until it ends or Pipelock
/// shuts down (a relay has no request boundary to finish at; shutdown waits for the slots).
async fn hold_tunnel(
    state: &ServerState,
    host: &str,
    slot: tokio::sync::OwnedSemaphorePermit,
    relay: impl std::future::Future<Output = ()>,
) {
    let _slot = slot;
    let _open = tunnel::OpenTunnel::count(&state.metrics);
    let mut stopping = state.stopping.subscribe();
    tokio::select! {
        () = relay => {}
        _ = stopping.wait_for(|stop| *stop) => {
            tracing::info!(target_host = %host, "transparent tunnel closed: shutting down");
        }
    }
}

/// Closes a connection, counted and logged with its original destination when known.
fn refuse(state: &ServerState, peer: SocketAddr, original: Option<SocketAddr>, reason: &str) {
    state.metrics.record_transparent_connection("refused");
    match original {
        Some(original) => {
            tracing::warn!(%original, %peer, reason, "transparent connection closed");
        }
        None => tracing::warn!(%peer, reason, "transparent connection closed"),
    }
}

#[cfg(test)]
mod tests;
