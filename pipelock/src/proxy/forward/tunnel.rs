//! CONNECT tunnels: the authority is checked like a URL (`https://host:port/`), against the
//! rate limit, and by resolving it with the SSRF check; the upstream connection is opened
//! before the client hears 200, so a refused or unreachable destination is an HTTP error,
//! not a tunnel that dies. The relay enforces `max_tunnel_seconds` and
//! `idle_timeout_seconds`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::dial;
use super::gates::Refusal;
use crate::proxy::response::{self, Body};
use crate::proxy::ServerState;

pub async fn open(state: Arc<ServerState>, request: Request<Incoming>) -> Response<Body> {
    let Ok(slot) = Arc::clone(&state.tunnel_slots).try_acquire_owned() else {
        state
            .metrics
            .record_proxy_request("connect", "block", "tunnel_limit");
        return response::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "tunnel_limit",
            &format!(
                "{} tunnels are open, the most Pipelock allows; try again later",
                crate::proxy::listener::MAX_TUNNELS
            ),
        );
    };
    let Some(authority) = request.uri().authority().cloned() else {
        state
            .metrics
            .record_proxy_request("connect", "block", "request");
        return response::error(
            StatusCode::BAD_REQUEST,
            "bad_connect",
            "CONNECT needs a host:port target",
        );
    };
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = authority.port_u16().unwrap_or(443);

    let (judged, addrs) = match super::gates::admit(&state, &host, port, None).await {
        Ok(admitted) => (admitted.judged, admitted.addrs),
        Err(Refusal::Blocked { judged, status }) => {
            return judged.refuse(&state, "connect", status, "tunnel")
        }
        Err(Refusal::Unresolved(error)) => {
            return dial::refuse_unresolved(&state, "connect", &host, &error)
        }
    };
    // An intercepted tunnel's requests each go to the origin after their own scan; the
    // others are relayed to the address vetted here, connected before the client hears 200.
    let interceptor = state
        .interceptor
        .as_ref()
        .filter(|i| !i.passes_through(&host))
        .map(Arc::clone);
    let upstream = if interceptor.is_some() {
        None
    } else {
        match dial::connect(&state, &addrs).await {
            Ok(stream) => Some(stream),
            Err(error) => {
                state
                    .metrics
                    .record_proxy_request("connect", "error", "upstream");
                return response::error(
                    StatusCode::BAD_GATEWAY,
                    "connect_failed",
                    &format!("cannot connect to {authority}: {error}"),
                );
            }
        }
    };

    let (verdict, scanner) = judged.outcome();
    state
        .metrics
        .record_proxy_request("connect", verdict, &scanner);
    for warning in &judged.warnings {
        tracing::warn!(target_host = %host, rule = %warning.rule_id, "tunnel allowed with a warning");
    }
    let limits = Limits::from_config(&state);
    let relay_state = Arc::clone(&state);
    let mut stopping = state.stopping.subscribe();
    let mut kill_switch = state.kill_switch.subscribe();
    tokio::spawn(async move {
        let _slot = slot;
        let tunnel = async {
            match hyper::upgrade::on(request).await {
                Ok(upgraded) => {
                    let _open = OpenTunnel::count(&relay_state.metrics);
                    let started = Instant::now();
                    match (interceptor, upstream) {
                        (Some(interceptor), _) => {
                            let target = super::http::Target {
                                host: host.clone(),
                                port,
                                secure: true,
                                upstream: None,
                            };
                            let limits = (limits.max, limits.idle);
                            let state = Arc::clone(&relay_state);
                            let reason = super::intercept::serve(
                                state,
                                interceptor,
                                TokioIo::new(upgraded),
                                target,
                                limits,
                            )
                            .await;
                            tracing::info!(
                                target_host = %host,
                                seconds = started.elapsed().as_secs_f64(),
                                reason,
                                "intercepted tunnel closed"
                            );
                        }
                        (None, Some(upstream)) => {
                            relay_opaque(&relay_state, upgraded, upstream, &host, limits).await;
                        }
                        (None, None) => {}
                    }
                }
                Err(error) => tracing::debug!(%error, "CONNECT upgrade failed"),
            }
        };
        // Shutting down closes open tunnels at once: a tunnel has no request boundary to
        // finish at.
        tokio::select! {
            () = tunnel => {}
            _ = stopping.wait_for(|stop| *stop) => {
                tracing::info!(target_host = %host, "tunnel closed: shutting down");
            }
            Ok(_) = kill_switch.wait_for(|on| *on) => {
                tracing::warn!(target_host = %host, "tunnel closed: kill switch active");
            }
        }
    });
    let mut ok = Response::new(response::full(Vec::new()));
    if let Some(warning) = judged.warning_header() {
        if let Ok(value) = hyper::header::HeaderValue::from_str(&warning) {
            ok.headers_mut().insert("x-pipelock-warning", value);
        }
    }
    ok
}

/// One open tunnel in the `open_tunnels` gauge, for as long as it lives.
pub(crate) struct OpenTunnel(crate::telemetry::Metrics);

impl OpenTunnel {
    pub(crate) fn count(metrics: &crate::telemetry::Metrics) -> Self {
        metrics.tunnels(1);
        Self(metrics.clone())
    }
}

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        self.0.tunnels(-1);
    }
}

/// The SNI check, then an opaque relay between the client and the vetted upstream.
async fn relay_opaque(
    state: &ServerState,
    upgraded: hyper::upgrade::Upgraded,
    upstream: TcpStream,
    host: &str,
    limits: Limits,
) {
    let mut client = TokioIo::new(upgraded);
    let mut first = Vec::new();
    if state.config.forward_proxy.sni_verification {
        match client_hello(&mut client, host).await {
            Ok(bytes) => first = bytes,
            Err(reason) => {
                state
                    .metrics
                    .record_proxy_request("connect", "block", "sni");
                tracing::warn!(target_host = %host, %reason, "tunnel closed: TLS server name check failed");
                return;
            }
        }
    }
    relay_logged(state, client, upstream, first, host, limits).await;
}

/// Relays a vetted tunnel (see [`relay`]), then counts its bytes (metrics and the data
/// budget of `host`) and logs how it ended.
pub(crate) async fn relay_logged<C>(
    state: &ServerState,
    client: C,
    upstream: TcpStream,
    first: Vec<u8>,
    host: &str,
    limits: Limits,
) where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let (out, inn, reason) = relay(client, upstream, first, limits).await;
    state.metrics.record_proxy_bytes("out", out);
    super::http::record_inbound(state, host, inn);
    tracing::info!(
        target_host = %host,
        bytes_out = out,
        bytes_in = inn,
        seconds = started.elapsed().as_secs_f64(),
        reason,
        "tunnel closed"
    );
}

/// How long a tunnel may live, and stay idle.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max: Duration,
    pub idle: Duration,
}

impl Limits {
    /// `forward_proxy.max_tunnel_seconds` and `idle_timeout_seconds`.
    pub(crate) fn from_config(state: &ServerState) -> Self {
        Self {
            max: Duration::from_secs(state.config.forward_proxy.max_tunnel_seconds.max(1)),
            idle: Duration::from_secs(state.config.forward_proxy.idle_timeout_seconds.max(1)),
        }
    }
}

/// How long a client may take to send its TLS ClientHello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a tunnel's start is read looking for the ClientHello.
const HELLO_MAX: usize = 16 * 1024;

/// Reads the start of the tunnel until the TLS server name is known, and checks it against
/// the CONNECT host (`sni_verification`). Returns the bytes read, to be relayed first; a
/// different name, a malformed handshake or a silent client is an error (the reference's
/// "mismatch", "malformed" and "timeout"). Plain protocols and hellos without a name pass.
async fn client_hello<C>(client: &mut C, host: &str) -> Result<Vec<u8>, String>
where
    C: AsyncRead + Unpin,
{
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    loop {
        match super::sni::parse(&bytes) {
            super::sni::Sni::Incomplete if bytes.len() < HELLO_MAX => {}
            super::sni::Sni::Incomplete | super::sni::Sni::Malformed => {
                return Err("malformed TLS ClientHello".to_string());
            }
            super::sni::Sni::NotTls | super::sni::Sni::NoExtension => return Ok(bytes),
            super::sni::Sni::Name(name) => {
                let expected = host.trim_end_matches('.').to_ascii_lowercase();
                return if name.trim_end_matches('.') == expected {
                    Ok(bytes)
                } else {
                    Err(format!(
                        "the ClientHello names {name:?}, the CONNECT {expected:?}"
                    ))
                };
            }
        }
        match tokio::time::timeout_at(deadline, client.read(&mut buf)).await {
            Err(_) => return Err("no TLS ClientHello within 5 s".to_string()),
            Ok(Ok(0)) if bytes.is_empty() => return Ok(bytes),
            Ok(Ok(0)) => return Err("the client closed mid-handshake".to_string()),
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Ok(Err(error)) => return Err(format!("read failed: {error}")),
        }
    }
}

/// Copies both ways until both sides are done, the tunnel has been idle for `idle`, or it
/// has lived `max`, after sending `first` (what the client sent before the relay started)
/// upstream. Returns bytes client→upstream, upstream→client and why it ended.
async fn relay<C>(
    client: C,
    upstream: TcpStream,
    first: Vec<u8>,
    limits: Limits,
) -> (u64, u64, &'static str)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    if upstream_write.write_all(&first).await.is_err() {
        return (0, 0, "upstream write failed");
    }
    let deadline = tokio::time::Instant::now() + limits.max;
    let mut to_upstream = vec![0u8; 16 * 1024];
    let mut to_client = vec![0u8; 16 * 1024];
    let (mut out, mut inn) = (first.len() as u64, 0u64);
    let (mut client_open, mut upstream_open) = (true, true);
    let reason = loop {
        if !client_open && !upstream_open {
            break "closed";
        }
        tokio::select! {
            read = client_read.read(&mut to_upstream), if client_open => match read {
                Ok(0) | Err(_) => {
                    client_open = false;
                    let _ = upstream_write.shutdown().await;
                }
                Ok(n) => {
                    if upstream_write.write_all(&to_upstream[..n]).await.is_err() {
                        break "upstream write failed";
                    }
                    out += n as u64;
                }
            },
            read = upstream_read.read(&mut to_client), if upstream_open => match read {
                Ok(0) | Err(_) => {
                    upstream_open = false;
                    let _ = client_write.shutdown().await;
                }
                Ok(n) => {
                    if client_write.write_all(&to_client[..n]).await.is_err() {
                        break "client write failed";
                    }
                    inn += n as u64;
                }
            },
            () = tokio::time::sleep(limits.idle) => break "idle timeout",
            () = tokio::time::sleep_until(deadline) => break "max tunnel time",
        }
    };
    (out, inn, reason)
}
