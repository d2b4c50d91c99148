//! A WebSocket client that goes through Pipelock's forward proxy the way a proxy-aware client
//! does for `ws://`: it writes the upgrade as an absolute-URI request (`GET http://host/path`)
//! on a raw TCP connection to the proxy, checks the 101 itself, then hands the stream to
//! tungstenite. It also reads refusals (status and JSON body). Every read is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::WebSocket;

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

    // The head byte by byte, so nothing after it (the first frames) is consumed here.
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
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
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
        bail!("wrong Sec-WebSocket-Accept in {text:?}");
    }
    let socket = WebSocket::from_raw_socket(stream, Role::Client, None);
    Ok(Answer::Open(Box::new(socket), headers))
}
