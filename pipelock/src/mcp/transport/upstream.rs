//! The MCP server behind the reverse proxy: its URL, and sending one request to it over the
//! proxy's keep-alive pool.
//!
//! The upstream is named by the operator (`mcp_reverse_proxy.upstream` or `--mcp-upstream`),
//! typically a service on the same private network (`http://web:3000/mcp`). The SSRF guard,
//! which protects against destinations chosen by an agent, therefore does not apply to it: its
//! host is connected to whatever it resolves to. The addresses are reused for
//! [`RESOLVE_TTL`] (a lookup per call would cost each call a resolver round trip, Docker's
//! embedded DNS for a compose service name) and looked up again after that, or at once when no
//! address could be connected to, so a changed DNS record (a restarted container) is followed.
//! Nothing a client sends can change the destination: the request path and `Host` header are
//! always the upstream's own.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::header::{HeaderValue, ACCEPT_ENCODING, CONTENT_LENGTH, HOST};
use hyper::{HeaderMap, Method, Request, Response};

use crate::proxy::forward::headers::copy_end_to_end;
use crate::proxy::forward::http::Target;
use crate::proxy::forward::pool::{Returning, UpstreamBody};
use crate::proxy::forward::{dial, origin};
use crate::proxy::ServerState;

/// How long the upstream may take to send its response headers. Generous: a server answering
/// in JSON mode sends nothing until the tool call is done.
pub const RESPONSE_HEADERS_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the upstream host's addresses are reused before it is looked up again.
pub const RESOLVE_TTL: Duration = Duration::from_secs(5);

/// Why the upstream could not be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("invalid MCP upstream: {0}")]
    Url(String),
    #[error("cannot resolve the MCP upstream {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Send(#[from] origin::SendError),
    #[error("the MCP upstream sent no response headers within {} s", RESPONSE_HEADERS_TIMEOUT.as_secs())]
    Timeout,
    #[error("cannot build the upstream request: {0}")]
    Request(#[from] hyper::http::Error),
}

/// The configured MCP server endpoint.
#[derive(Debug)]
pub struct Upstream {
    target: Target,
    path_and_query: String,
    url: String,
    /// The host's addresses and when they were looked up.
    resolved: Mutex<Option<(Vec<SocketAddr>, Instant)>>,
}

impl Upstream {
    /// Parses and checks `url` (see [`crate::config::mcp_upstream_url`]).
    ///
    /// # Errors
    /// The URL is not an absolute http(s) URL with a host.
    pub fn parse(url: &str) -> Result<Self, UpstreamError> {
        let parsed = crate::config::mcp_upstream_url(url).map_err(UpstreamError::Url)?;
        let host = parsed
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
            .ok_or_else(|| UpstreamError::Url(format!("{url:?} has no host")))?;
        let secure = parsed.scheme() == "https";
        let port = parsed
            .port_or_known_default()
            .unwrap_or(if secure { 443 } else { 80 });
        let mut path_and_query = parsed.path().to_string();
        if let Some(query) = parsed.query() {
            path_and_query.push('?');
            path_and_query.push_str(query);
        }
        Ok(Self {
            target: Target {
                host,
                port,
                secure,
                upstream: None,
            },
            path_and_query,
            url: parsed.to_string(),
            resolved: Mutex::new(None),
        })
    }

    /// The host's addresses: the last lookup's while younger than [`RESOLVE_TTL`], else a
    /// new lookup's.
    async fn addresses(&self, state: &ServerState) -> Result<Vec<SocketAddr>, UpstreamError> {
        let cached = self
            .resolved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|(_, at)| at.elapsed() < RESOLVE_TTL)
            .map(|(addrs, _)| addrs.clone());
        if let Some(addrs) = cached {
            return Ok(addrs);
        }
        let resolved = dial::resolve(state, &self.target.host, self.target.port)
            .await
            .map_err(|source| UpstreamError::Resolve {
                host: self.target.host.clone(),
                source,
            })?;
        *self.resolved.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((resolved.addrs.clone(), Instant::now()));
        Ok(resolved.addrs)
    }

    /// Forgets the looked-up addresses (none of them could be connected to).
    fn forget_addresses(&self) {
        *self.resolved.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The URL, for logs.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends `method` with the client's end-to-end `headers` and `body` to the upstream and
    /// returns its response (headers only; the body streams).
    ///
    /// The client's headers travel unchanged (`Authorization`, `Mcp-Session-Id`,
    /// `MCP-Protocol-Version`, `Last-Event-ID`, `Accept`, …) except the hop-by-hop ones,
    /// `Host` (the upstream's), `Content-Length` (recomputed) and `Accept-Encoding` (removed,
    /// so that answers arrive uncompressed and can be inspected).
    ///
    /// # Errors
    /// The upstream could not be resolved, reached, or did not answer in time.
    pub async fn send(
        &self,
        state: &ServerState,
        method: Method,
        headers: &HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Response<Returning>, UpstreamError> {
        let addrs = self.addresses(state).await?;
        let mut builder = Request::builder()
            .method(method)
            .uri(self.path_and_query.as_str());
        if let Some(out) = builder.headers_mut() {
            copy_end_to_end(headers, out);
            out.remove(HOST);
            out.remove(CONTENT_LENGTH);
            out.remove(ACCEPT_ENCODING);
            if let Ok(host) = HeaderValue::from_str(&self.target.authority()) {
                out.insert(HOST, host);
            }
        }
        let body: UpstreamBody = match body {
            Some(bytes) => Full::new(bytes)
                .map_err(|never| match never {})
                .boxed_unsync(),
            None => Empty::new().map_err(|never| match never {}).boxed_unsync(),
        };
        let request = builder.body(body)?;
        // The SSRF findings are not consulted: the operator named this upstream.
        let sent = origin::send(state, &self.target, &addrs, request);
        match tokio::time::timeout(RESPONSE_HEADERS_TIMEOUT, sent).await {
            Ok(Err(error @ origin::SendError::Connect { .. })) => {
                self.forget_addresses();
                Err(error.into())
            }
            Ok(result) => Ok(result?),
            Err(_) => Err(UpstreamError::Timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;
    use crate::scan::Scanner;
    use crate::telemetry::metrics::Metrics;

    fn state() -> ServerState {
        let config = Config::default();
        let scanner = Scanner::new(&config).expect("scanner");
        ServerState::new(
            Metrics::new("balanced"),
            Arc::new(config),
            scanner,
            None,
            None,
        )
    }

    /// A loopback port nothing listens on.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }

    #[tokio::test]
    async fn addresses_are_reused_for_the_ttl_and_forgotten_when_none_connects() {
        let state = state();
        let port = closed_port();
        let upstream = Upstream::parse(&format!("http://localhost:{port}/mcp")).expect("parses");
        let looked_up = upstream
            .addresses(&state)
            .await
            .expect("localhost resolves");
        assert!(looked_up
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == port));

        // Within the TTL the stored addresses are used, whatever they are.
        let stored: SocketAddr = format!("127.0.0.2:{port}").parse().expect("addr");
        *upstream.resolved.lock().expect("lock") = Some((vec![stored], Instant::now()));
        assert_eq!(
            upstream.addresses(&state).await.expect("cached"),
            vec![stored]
        );

        // Past the TTL the host is looked up again.
        let old = Instant::now().checked_sub(RESOLVE_TTL + Duration::from_secs(1));
        *upstream.resolved.lock().expect("lock") = old.map(|at| (vec![stored], at));
        assert_eq!(upstream.addresses(&state).await.expect("again"), looked_up);

        // Nothing listens: the connection fails and the addresses are forgotten.
        let sent = upstream
            .send(&state, Method::POST, &HeaderMap::new(), None)
            .await;
        let error = sent.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.starts_with("cannot connect to localhost:"), "{error}");
        assert!(upstream.resolved.lock().expect("lock").is_none());
    }

    #[test]
    fn parses_the_upstream() {
        let upstream = Upstream::parse("http://web:3000/mcp?x=1").expect("parses");
        assert_eq!(upstream.target.authority(), "web:3000");
        assert_eq!(upstream.path_and_query, "/mcp?x=1");
        let upstream = Upstream::parse("https://[::1]/").expect("parses");
        assert_eq!(upstream.target.port, 443);
        assert_eq!(upstream.target.host, "::1");
        assert!(Upstream::parse("ftp://x/").is_err());
        assert!(Upstream::parse("http://user:pw@x/").is_err());
    }
}
