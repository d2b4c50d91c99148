//! Listening sockets and the connection lifecycle: bind, accept, serve HTTP/1, and shut down
//! gracefully (stop accepting, let in-flight requests finish within a bounded grace period).

use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::endpoints::{self, Routes};
use crate::config::Config;
use crate::proxy::transparent::Transparent;
use crate::scan::Scanner;
use crate::telemetry::Metrics;

/// How long in-flight connections may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's headers.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// State shared by every connection.
pub struct ServerState {
    pub started: Instant,
    pub mode: String,
    pub metrics: Metrics,
    pub config: Arc<Config>,
    pub scanner: Arc<Scanner>,
    /// TLS interception of CONNECT tunnels, when `tls_interception.enabled`.
    pub interceptor: Option<Arc<crate::tls::Interceptor>>,
    /// TLS towards origins (intercepted tunnels, `/fetch` of https URLs, `wss://` WebSocket
    /// targets); `None` when no root certificate could be loaded.
    pub upstream_tls: Option<Arc<rustls::ClientConfig>>,
    /// Open CONNECT tunnels, at most [`MAX_TUNNELS`] (the reference's cap).
    pub tunnel_slots: Arc<tokio::sync::Semaphore>,
    /// Set to `true` when shutting down; tunnels and WebSocket sessions watch it and close.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// WebSocket proxy sessions holding a slot now (`websocket_proxy.max_concurrent_connections`);
    /// a watch channel so that shutdown can wait for it to reach zero.
    pub websocket_sessions: tokio::sync::watch::Sender<usize>,
    /// Idle keep-alive connections to origins.
    pub pool: Arc<crate::proxy::forward::pool::Pool>,
    /// The emergency deny-all switch (`kill_switch`).
    pub kill_switch: Arc<crate::killswitch::KillSwitch>,
    /// `SO_MARK` of every socket Pipelock opens towards upstreams (origins, the DNS
    /// resolver), so the interception programs never redirect them: `intercept.mark` while
    /// `intercept` is active, else `None` (sockets are left as they are).
    pub socket_mark: Option<u32>,
}

/// How many CONNECT tunnels may be open at once (the reference's `maxConcurrentTunnels`).
pub const MAX_TUNNELS: usize = 1024;

impl ServerState {
    /// The state shared by every connection, with no tunnel open.
    #[must_use]
    pub fn new(
        metrics: Metrics,
        config: Arc<Config>,
        scanner: Arc<Scanner>,
        interceptor: Option<Arc<crate::tls::Interceptor>>,
        upstream_tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Self {
        let kill_switch = Arc::new(crate::killswitch::KillSwitch::new(&config.kill_switch));
        Self {
            started: Instant::now(),
            mode: config.mode.to_string(),
            metrics,
            scanner,
            interceptor,
            upstream_tls,
            tunnel_slots: Arc::new(tokio::sync::Semaphore::new(MAX_TUNNELS)),
            websocket_sessions: tokio::sync::watch::channel(0).0,
            pool: Arc::default(),
            kill_switch,
            stopping: tokio::sync::watch::channel(false).0,
            socket_mark: config.intercept.active().then_some(config.intercept.mark),
            config,
        }
    }
}

/// Why a listener could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("invalid listen address {addr:?}: {reason}")]
    Address { addr: String, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// What a listener serves.
#[derive(Clone)]
pub enum Serves {
    /// HTTP/1: Pipelock's endpoints and, per `Routes`, the forward proxy.
    Http(Routes),
    /// Connections redirected by the kernel programs ([`crate::proxy::transparent`]).
    Transparent(Arc<Transparent>),
    /// The MCP reverse proxy ([`crate::mcp::transport`]).
    Mcp(Arc<crate::mcp::transport::McpProxy>),
}

/// A bound listening socket and what it serves.
pub struct Listener {
    name: &'static str,
    tcp: TcpListener,
    serves: Serves,
}

impl Listener {
    /// Binds `addr` (`host:port`; the host may be a name such as `localhost`).
    ///
    /// # Errors
    /// Fails when the address does not parse or resolve, or the socket cannot be bound.
    pub async fn bind(name: &'static str, addr: &str, routes: Routes) -> Result<Self, ListenError> {
        let resolved = resolve(addr)?;
        let tcp = bind_tcp(resolved).await?;
        Ok(Self {
            name,
            tcp,
            serves: Serves::Http(routes),
        })
    }

    /// Binds a transparent listener at `addr` (`127.0.0.1:port` or `[::1]:port`).
    ///
    /// # Errors
    /// The socket cannot be bound.
    pub async fn bind_transparent(
        name: &'static str,
        addr: SocketAddr,
        transparent: Arc<Transparent>,
    ) -> Result<Self, ListenError> {
        Ok(Self {
            name,
            tcp: bind_tcp(addr).await?,
            serves: Serves::Transparent(transparent),
        })
    }

    /// Binds the MCP reverse proxy's listener at `addr` (`host:port`).
    ///
    /// # Errors
    /// Fails when the address does not parse or resolve, or the socket cannot be bound.
    pub async fn bind_mcp(
        name: &'static str,
        addr: &str,
        proxy: Arc<crate::mcp::transport::McpProxy>,
    ) -> Result<Self, ListenError> {
        let resolved = resolve(addr)?;
        Ok(Self {
            name,
            tcp: bind_tcp(resolved).await?,
            serves: Serves::Mcp(proxy),
        })
    }

    /// The address actually bound (useful when the configured port was 0).
    ///
    /// # Errors
    /// Fails only if the OS cannot report the socket's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// What this listener serves when it is the destination an application dialled: the
    /// HTTP and MCP listeners (`None` for a transparent one, which is never dialled).
    #[must_use]
    pub fn own_service(&self) -> Option<Serves> {
        match &self.serves {
            Serves::Http(_) | Serves::Mcp(_) => Some(self.serves.clone()),
            Serves::Transparent(_) => None,
        }
    }

    /// What this listener is (`main`, `metrics`), for logs.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }
}

async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Bind { addr, source })
}

fn resolve(addr: &str) -> Result<SocketAddr, ListenError> {
    let invalid = |reason: String| ListenError::Address {
        addr: addr.to_string(),
        reason,
    };
    let mut candidates = addr
        .to_socket_addrs()
        .map_err(|e| invalid(format!("{e} (expected host:port, e.g. 127.0.0.1:8888)")))?;
    candidates
        .next()
        .ok_or_else(|| invalid("it resolves to no address".to_string()))
}

/// Serves one accepted connection as `serves` says.
pub fn serve_connection(
    state: Arc<ServerState>,
    serves: Serves,
    stream: TcpStream,
    peer: SocketAddr,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    match serves {
        Serves::Http(routes) => Box::pin(serve_http(state, routes, stream, peer, stopping)),
        Serves::Transparent(transparent) => Box::pin(crate::proxy::transparent::serve_connection(
            state,
            transparent,
            stream,
            peer,
            stopping,
        )),
        Serves::Mcp(proxy) => Box::pin(crate::mcp::transport::serve_connection(
            state, proxy, stream, peer, stopping,
        )),
    }
}

/// Serves every listener until `shutdown` completes, then drains in-flight connections for at
/// most [`SHUTDOWN_GRACE`].
pub async fn serve(
    listeners: Vec<Listener>,
    state: Arc<ServerState>,
    shutdown: impl Future<Output = ()>,
) {
    let (accepted_tx, mut accepted_rx) = mpsc::channel::<(TcpStream, SocketAddr, Serves)>(64);
    let mut acceptors = Vec::with_capacity(listeners.len());
    for listener in listeners {
        acceptors.push(tokio::spawn(accept_loop(listener, accepted_tx.clone())));
    }
    drop(accepted_tx);
    let sweeper = tokio::spawn(sweep_pool(Arc::clone(&state)));

    // Each connection task holds a clone of `done`; when every clone is gone, all connections
    // have finished. `stop` tells them to finish their current request and close.
    let (done, mut all_done) = mpsc::channel::<()>(1);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = accepted_rx.recv() => {
                let Some((stream, peer, serves)) = accepted else { break };
                let metrics = state.metrics.clone();
                let connection = serve_connection(Arc::clone(&state), serves, stream, peer, stopping.clone());
                let done = done.clone();
                let open = Arc::clone(&open);
                open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                metrics.connections(1);
                tokio::spawn(super::rewake::Rewoken::new(async move {
                    let _done = done;
                    connection.await;
                    open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    metrics.connections(-1);
                }));
            }
        }
    }

    for acceptor in &acceptors {
        acceptor.abort();
    }
    sweeper.abort();
    let in_flight = open.load(std::sync::atomic::Ordering::Relaxed);
    tracing::info!(in_flight, "shutting down: no longer accepting connections");
    let _ = stop.send(true);
    state.stopping.send_replace(true);
    drop(done);
    // Tunnels close at once on `stopping`; each gives its slot back when it has.
    let tunnels_closed = async {
        let all = u32::try_from(MAX_TUNNELS).unwrap_or(u32::MAX);
        let _ = state.tunnel_slots.acquire_many(all).await;
    };
    // WebSocket sessions close both sides with 1001 on `stopping`; each gives its slot back
    // once its closing handshakes are done.
    let websockets_closed = async {
        let mut open = state.websocket_sessions.subscribe();
        let _ = open.wait_for(|open| *open == 0).await;
    };
    let drained = async {
        all_done.recv().await;
        tunnels_closed.await;
        websockets_closed.await;
    };
    tokio::select! {
        () = drained => tracing::info!("shutdown complete"),
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!(grace_seconds = SHUTDOWN_GRACE.as_secs(), "shutdown grace period over; closing remaining connections");
        }
    }
}

/// Serves HTTP/1 on one connection of a listener that serves `routes`; on `stopping`, the
/// request in flight finishes and the connection closes.
pub(crate) async fn serve_http(
    state: Arc<ServerState>,
    routes: Routes,
    stream: TcpStream,
    peer: SocketAddr,
    stopping: tokio::sync::watch::Receiver<bool>,
) {
    let handler = move |request| {
        let state = Arc::clone(&state);
        async move {
            Ok::<_, std::convert::Infallible>(endpoints::route(state, routes, peer, request).await)
        }
    };
    if let Err(error) = serve_http1(stream, handler, stopping).await {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// Serves HTTP/1.1 (upgrades included) on `io`, each request answered by `handler`, until the client leaves, or,
/// once `stopping` changes, finishes the request in progress and closes.
///
/// # Errors
/// The connection failed (the client's I/O, or a malformed request hyper could not answer).
pub(crate) async fn serve_http1<S, F, Fut>(
    io: S,
    handler: F,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: Fn(hyper::Request<Incoming>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<hyper::Response<super::response::Body>, std::convert::Infallible>>
        + Send
        + 'static,
{
    let connection = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), service_fn(handler))
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        _ = stopping.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

/// Closes pooled origin connections that have sat idle too long.
async fn sweep_pool(state: Arc<ServerState>) {
    let mut every = tokio::time::interval(crate::proxy::forward::pool::IDLE_TIMEOUT / 3);
    loop {
        every.tick().await;
        state.pool.sweep();
    }
}

async fn accept_loop(listener: Listener, accepted: mpsc::Sender<(TcpStream, SocketAddr, Serves)>) {
    loop {
        match listener.tcp.accept().await {
            Ok((stream, peer)) => {
                // Answers go out in several small writes (an event stream's events, a relayed
                // body's chunks). With Nagle's algorithm on, each write after the first waits
                // for the client's ACK of the previous one, which a client waiting for the rest
                // delays by 40 ms (measured on the MCP listener: +42 ms per relayed SSE answer).
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(listener = listener.name, %peer, %error, "cannot set TCP_NODELAY");
                }
                if accepted
                    .send((stream, peer, listener.serves.clone()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(error) => {
                // Accept errors (EMFILE, ECONNABORTED) are transient; back off briefly so a
                // descriptor shortage does not spin the CPU.
                tracing::warn!(listener = listener.name, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
