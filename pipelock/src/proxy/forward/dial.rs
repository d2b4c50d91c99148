//! Name resolution with the SSRF check, connecting to the address that passed it, and TLS
//! to origins.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use std::sync::Arc;

use rustls::pki_types::ServerName;
use std::os::fd::AsFd;

use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use hyper::{Response, StatusCode};

use crate::proxy::response::{self, Body};
use crate::proxy::ServerState;
use crate::scan::Finding;

/// How long a lookup may take (the reference uses 5 s; a failed lookup blocks).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the TLS handshake with an origin may take.
const UPSTREAM_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to the upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The addresses a host resolved to, and the SSRF findings about them.
pub struct Resolved {
    pub addrs: Vec<SocketAddr>,
    pub findings: Vec<Finding>,
}

/// Resolves `host` (a name or an IP literal, without brackets) and checks every address.
///
/// # Errors
/// The lookup failed, timed out or found nothing.
pub async fn resolve(state: &ServerState, host: &str, port: u16) -> io::Result<Resolved> {
    let addrs: Vec<SocketAddr> = if let Ok(ip) = host.parse::<IpAddr>() {
        vec![SocketAddr::new(ip, port)]
    } else {
        tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "DNS lookup timed out"))??
            .collect()
    };
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the name resolves to no address",
        ));
    }
    let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
    let findings = state.scanner.url().check_resolved(host, &ips);
    Ok(Resolved { addrs, findings })
}

/// The addresses to connect to for `host:port`, with their SSRF findings: `host` resolved
/// ([`resolve`]), or, for a transparent connection, its original destination `known` alone.
/// The original destination was chosen by the client, not by resolving `host`, so
/// `trusted_domains` exempts an internal one only when `host` really resolves to it.
///
/// # Errors
/// The lookup failed, timed out or found nothing.
pub async fn vet(
    state: &ServerState,
    host: &str,
    port: u16,
    known: Option<SocketAddr>,
) -> io::Result<Resolved> {
    let Some(addr) = known else {
        return resolve(state, host, port).await;
    };
    let url = state.scanner.url();
    let mut findings = url.check_addresses(host, &[addr.ip()]);
    if !findings.is_empty() && url.is_trusted(host) && resolves_to(host, addr.ip()).await {
        findings.clear();
    }
    Ok(Resolved {
        addrs: vec![addr],
        findings,
    })
}

/// Whether `host` (a name or an IP literal) resolves to `ip` (IPv4-mapped IPv6 addresses
/// compare as IPv4). A failed lookup is `false`.
pub async fn resolves_to(host: &str, ip: IpAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    };
    let wanted = canonical(ip);
    if let Ok(literal) = host.parse::<IpAddr>() {
        return canonical(literal) == wanted;
    }
    match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, 0))).await {
        Ok(Ok(mut addrs)) => addrs.any(|a| canonical(a.ip()) == wanted),
        _ => false,
    }
}

/// [`vet`] for a proxied request of `kind`: a failed lookup is counted in the metrics and
/// becomes the 502 `resolve_failed` answer to the client (nothing was forwarded).
///
/// # Errors
/// The answer to send when the lookup failed.
pub async fn vet_or_refuse(
    state: &ServerState,
    kind: &str,
    host: &str,
    port: u16,
    known: Option<SocketAddr>,
) -> Result<Resolved, Response<Body>> {
    vet(state, host, port, known)
        .await
        .map_err(|error| refuse_unresolved(state, kind, host, &error))
}

/// The answer to a request whose host did not resolve: 502 `resolve_failed`, counted.
pub fn refuse_unresolved(
    state: &ServerState,
    kind: &str,
    host: &str,
    error: &io::Error,
) -> Response<Body> {
    state.metrics.record_proxy_request(kind, "error", "dns");
    response::error(
        StatusCode::BAD_GATEWAY,
        "resolve_failed",
        &format!("cannot resolve {host}: {error}"),
    )
}

/// Connects to the first of `addrs` that answers (each was vetted by [`resolve`]); while
/// interception is on, from a socket carrying `state.socket_mark`.
///
/// # Errors
/// No address accepted the connection in time, or the mark could not be set.
pub async fn connect(state: &ServerState, addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
    for addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, connect_one(*addr, state.socket_mark)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            // An unmarked connection would be redirected back to Pipelock: no fallback.
            Ok(Err(error)) if error.kind() == io::ErrorKind::PermissionDenied => return Err(error),
            Ok(Err(error)) => last = error,
            Err(_) => {
                last = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connecting to {addr} timed out"),
                )
            }
        }
    }
    Err(last)
}

/// One connection attempt, marked when `mark` is set.
async fn connect_one(addr: SocketAddr, mark: Option<u32>) -> io::Result<TcpStream> {
    let Some(mark) = mark else {
        return TcpStream::connect(addr).await;
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    crate::intercept::mark_socket(socket.as_fd(), mark)?;
    socket.connect(addr).await
}

/// TLS to the origin `host` over the vetted `tcp`, verified with the interceptor's roots.
///
/// # Errors
/// No roots are trusted, the name is not a valid server name, or the handshake or the
/// certificate verification failed.
pub(super) async fn connect_tls(
    state: &ServerState,
    host: &str,
    tcp: TcpStream,
) -> io::Result<TlsStream<TcpStream>> {
    let client = state
        .upstream_tls
        .as_ref()
        .ok_or_else(|| io::Error::other("no trusted root certificates for origins"))?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let connector = TlsConnector::from(Arc::clone(client));
    tokio::time::timeout(UPSTREAM_HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}
