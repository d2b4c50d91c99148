//! `pipelock healthcheck`: asks a running Pipelock for `/health` and exits 0 only on HTTP 200.
//!
//! It uses a plain blocking socket with a deadline so it works as a Docker HEALTHCHECK in a
//! minimal image, and it says why it failed (refused, timed out, wrong status).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;

use super::EXIT_OK;

/// The most of the response head that is read.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Address of Pipelock's main listener (host:port).
    #[arg(long, default_value = "127.0.0.1:8888")]
    addr: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=300))]
    timeout_seconds: u64,
}

pub fn healthcheck(args: &HealthcheckArgs) -> anyhow::Result<u8> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout_seconds);
    let addr = resolve(&args.addr)?;
    let status = fetch_health_status(&args.addr, addr, deadline)
        .with_context(|| format!("health check of {} failed", args.addr))?;
    if status == 200 {
        println!("healthy: {} answered 200 on /health", args.addr);
        Ok(EXIT_OK)
    } else {
        bail!(
            "unhealthy: {} answered {status} on /health (expected 200)",
            args.addr
        )
    }
}

fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| {
            format!("invalid --addr {addr:?}: expected host:port, e.g. 127.0.0.1:8888")
        })?
        .next()
        .with_context(|| format!("--addr {addr:?} resolves to no address"))
}

fn remaining(deadline: Instant) -> anyhow::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        bail!("timed out");
    }
    Ok(left)
}

fn fetch_health_status(host: &str, addr: SocketAddr, deadline: Instant) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, remaining(deadline)?)
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    let request = format!("GET /health HTTP/1.1\r\nHost: {host}\r\nUser-Agent: pipelock-healthcheck\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .context("cannot send the request")?;

    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") {
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        let n = stream.read(&mut buf).context("no response")?;
        if n == 0 {
            bail!("the connection closed before a response arrived");
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_RESPONSE_HEAD {
            bail!("the response has no status line in its first {MAX_RESPONSE_HEAD} bytes");
        }
    }
    parse_status_line(&head)
}

fn parse_status_line(head: &[u8]) -> anyhow::Result<u16> {
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(head.len());
    let line = String::from_utf8_lossy(&head[..line_end]);
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        bail!("not an HTTP/1 response: {line:?}");
    }
    code.parse::<u16>()
        .ok()
        .filter(|c| (100..=599).contains(c))
        .with_context(|| format!("malformed status line {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::parse_status_line;

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n").ok(), Some(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Unavailable\r\n").ok(),
            Some(503)
        );
        assert!(parse_status_line(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse_status_line(b"HTTP/1.1 abc\r\n").is_err());
        assert!(parse_status_line(b"HTTP/1.1 999 Nope\r\n").is_err());
    }
}
