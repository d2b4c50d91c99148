//! The MCP server behind the reverse proxy: its URL, and sending one request to it over the
//! proxy's keep-alive pool.
//!
//! The upstream is named by the operator (`mcp_reverse_proxy.upstream` or `--mcp-upstream`),
//! typically a service on the same private network (`http://web:3000/mcp`). The SSRF guard,
//! which protects against destinations chosen by an agent, therefore does not apply to it: its
//! host is resolved on every request (so a changed DNS record is followed) and connected to
//! whatever it resolves to. Nothing a client sends can change the destination: the request
//! path and `Host` header are always the upstream's own.

use std::time::Duration;

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
#[derive(Debug, Clone)]
pub struct Upstream {
    target: Target,
    path_and_query: String,
    url: String,
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
        })
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
        let resolved = dial::resolve(state, &self.target.host, self.target.port)
            .await
            .map_err(|source| UpstreamError::Resolve {
                host: self.target.host.clone(),
                source,
            })?;
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
        let sent = origin::send(state, &self.target, &resolved.addrs, request);
        match tokio::time::timeout(RESPONSE_HEADERS_TIMEOUT, sent).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(UpstreamError::Timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
