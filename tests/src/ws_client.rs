//! WebSocket clients that go through Pipelock's forward proxy the way proxy-aware clients do:
//!
//! - for `ws://` ([`upgrade`]): the upgrade as an absolute-URI request (`GET http://host/path`)
//!   on a raw TCP connection to the proxy, the 101 checked here, then the stream handed to
//!   tungstenite; refusals are read too (status and JSON body);
//! - for `wss://` ([`connect_intercepted`]): `CONNECT host:port`, TLS inside the tunnel
//!   trusting only the given CA (Pipelock's, when it intercepts), then tungstenite's own
//!   client handshake for the `wss://` URL.
//!
//! Every read is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Error as WsError, HandshakeError, WebSocket};

/// The key every request of this client sends (any 16 bytes in base64 will do).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// How long any read may block.
pub const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// What the proxy answered.
pub enum Answer {
    /// 101: the session is open; the response headers (names lowercased).
    Open(Box<WebSocket<TcpStream>>, Vec<(String, String)>),
    /// Anything else: the status and the body.
    Refused(u16, String),
}

/// Sends an upgrade for `request_target` to `proxy` with `extra` header lines (each
/// `Name: value`). `request_target` is what goes on the request line: an absolute URI for
/// the forward proxy, or a path such as `/ws?url=…`.
pub fn upgrade(proxy: SocketAddr, request_target: &str, extra: &[&str]) -> Result<Answer> {
    let mut stream = TcpStream::connect(proxy).context("connect to pipelock")?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let host = request_target
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .map_or_else(|| proxy.to_string(), str::to_string);
    let mut head = format!(
        "GET {request_target} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n"
    );
    for line in extra {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let (status, headers) = read_head(&mut stream)?;
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    if status != 101 {
        let length: usize = value("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length.min(1024 * 1024)];
        stream.read_exact(&mut body).context("read the body")?;
        return Ok(Answer::Refused(
            status,
            String::from_utf8_lossy(&body).into_owned(),
        ));
    }
    let expected = derive_accept_key(KEY.as_bytes());
    if value("sec-websocket-accept").as_deref() != Some(expected.as_str()) {
        bail!("wrong Sec-WebSocket-Accept in {headers:?}");
    }
    let socket = WebSocket::from_raw_socket(stream, Role::Client, None);
    Ok(Answer::Open(Box::new(socket), headers))
}

/// Reads a response head byte by byte, so nothing after it (the first frames, or a TLS
/// handshake) is consumed; returns the status and the headers (names lowercased).
fn read_head(stream: &mut TcpStream) -> Result<(u16, Vec<(String, String)>)> {
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        if bytes.len() > MAX_HEAD {
            bail!("response head over {MAX_HEAD} bytes");
        }
        let n = stream.read(&mut byte).context("read the response head")?;
        if n == 0 {
            bail!(
                "the proxy closed after {:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        bytes.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let mut lines = text.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line in {text:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers))
}

/// TLS to the origin inside a CONNECT tunnel.
pub type TunnelStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// What a WebSocket handshake through a tunnel came to.
pub enum TunnelAnswer {
    /// 101: the session is open.
    Open(Box<WebSocket<TunnelStream>>),
    /// Anything else: the status and the response headers (names lowercased). The body is
    /// not read: tungstenite keeps only what arrived with the head.
    Refused(u16, Vec<(String, String)>),
}

/// Opens `CONNECT host:port` at `proxy` for the `wss://host:port/…` URL `url`, then TLS with
/// the server name `host`, trusting only the certificates in `ca_pem` and offering only
/// HTTP/1.1; then tungstenite's client handshake for `url`, with `extra` headers
/// (`(name, value)`; a `host` replaces the one tungstenite derives from the URL).
pub fn connect_intercepted(
    proxy: SocketAddr,
    url: &str,
    ca_pem: &[u8],
    extra: &[(&str, &str)],
) -> Result<TunnelAnswer> {
    let mut request = url.into_client_request().context("a wss:// URL")?;
    for (name, value) in extra {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())?,
            value.parse()?,
        );
    }
    let host = request.uri().host().context("the URL has no host")?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = request.uri().port_u16().unwrap_or(443);
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };

    let mut tcp = TcpStream::connect(proxy).context("connect to pipelock")?;
    tcp.set_read_timeout(Some(READ_TIMEOUT))?;
    tcp.set_write_timeout(Some(READ_TIMEOUT))?;
    write!(
        tcp,
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
    )?;
    let (status, _) = read_head(&mut tcp)?;
    if status != 200 {
        bail!("CONNECT {authority} answered {status}");
    }

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.context("a PEM certificate")?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(host).context("a TLS server name")?;
    let connection = rustls::ClientConnection::new(Arc::new(config), name)?;
    let tls = rustls::StreamOwned::new(connection, tcp);

    match tokio_tungstenite::tungstenite::client(request, tls) {
        Ok((socket, _)) => Ok(TunnelAnswer::Open(Box::new(socket))),
        Err(HandshakeError::Failure(WsError::Http(response))) => {
            let headers = response
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            Ok(TunnelAnswer::Refused(response.status().as_u16(), headers))
        }
        Err(HandshakeError::Failure(error)) => Err(error).context("the WebSocket handshake"),
        Err(HandshakeError::Interrupted(_)) => bail!("the handshake was interrupted"),
    }
}
