//! Absolute-URI HTTP requests (`GET http://host/path`): scanned on the way out (URL, headers,
//! body), forwarded to the vetted address, and text responses scanned for prompt injection on
//! the way back. Other responses stream through untouched.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH,
    CONTENT_TYPE, HOST,
};
use hyper::{Request, Response, StatusCode};

use super::headers::{copy_end_to_end, scan_request_headers};
use super::judge::Judgement;
use super::pool::Returning;
use super::{dial, origin};
use crate::config::{BlockOrWarn, ResponseAction};
use crate::proxy::response::{self, Body};
use crate::proxy::ServerState;
use crate::scan::inflate::StreamDecoder;
use crate::scan::{Finding, ScannerKind};

/// Where a request goes: the origin's host and port, whether Pipelock speaks TLS to it
/// (requests that arrived inside an intercepted tunnel), and, for traffic of the transparent
/// listener, the address the client dialled (then connected to instead of resolving `host`).
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub secure: bool,
    /// The original destination of a transparent connection; `None` for the forward proxy.
    pub upstream: Option<std::net::SocketAddr>,
}

impl Target {
    /// The metrics label of requests to this target.
    pub fn kind(&self) -> &'static str {
        match (self.secure, self.upstream.is_some()) {
            (false, false) => "http",
            (true, false) => "intercepted",
            (false, true) => "transparent",
            (true, true) => "transparent_intercepted",
        }
    }

    fn default_port(&self) -> u16 {
        if self.secure {
            443
        } else {
            80
        }
    }

    /// `host[:port]` as in a `Host` header (IPv6 literals bracketed, default port omitted).
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The full URL of `path_and_query` at this target, as scanned.
    pub fn url(&self, path_and_query: &str) -> String {
        let scheme = if self.secure { "https" } else { "http" };
        format!("{scheme}://{}{path_and_query}", self.authority())
    }
}

/// An absolute-URI request on the forward proxy (`GET http://host/path`).
pub async fn forward(state: Arc<ServerState>, request: Request<Incoming>) -> Response<Body> {
    let uri = request.uri();
    if uri.scheme_str() != Some("http") {
        return bad_request(
            &state,
            "http",
            "only http:// URIs are forwarded this way; HTTPS goes through CONNECT",
        );
    }
    let Some(host) = uri
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
    else {
        return bad_request(&state, "http", "the request URI has no host");
    };
    let target = Target {
        host,
        port: uri.port_u16().unwrap_or(80),
        secure: false,
        upstream: None,
    };
    exchange(state, target, request).await
}

/// Scans `request` on its way to `target`, forwards it to the vetted address, and scans the
/// response on its way back.
pub async fn exchange<B>(
    state: Arc<ServerState>,
    target: Target,
    request: Request<B>,
) -> Response<Body>
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    let kind = target.kind();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", hyper::http::uri::PathAndQuery::as_str)
        .to_string();
    let url = target.url(&path_and_query);
    let (host, port) = (target.host.as_str(), target.port);
    let mut judged = Judgement::default();
    let scan_started = Instant::now();

    // 1. The URL, every layer, before any lookup.
    judged.add(&state, state.scanner.scan_url(&url), true);
    if judged.block.is_some() {
        return judged.refuse(&state, kind, StatusCode::FORBIDDEN, "request");
    }
    // 2. The per-site rate limit and data budget.
    if let Err(finding) = state.scanner.budgets().admit(host, Instant::now()) {
        judged.add(&state, vec![finding], true);
        if judged.block.is_some() {
            return judged.refuse(&state, kind, StatusCode::TOO_MANY_REQUESTS, "request");
        }
    }
    // 3. Headers and body.
    let section = &state.config.request_body_scanning;
    let section_blocks = section.action == BlockOrWarn::Block;
    scan_request_headers(&state, &parts.headers, &mut judged);
    // Time spent reading the body from the client is not scan time.
    let mut scan_time = scan_started.elapsed();
    let limit = usize::try_from(section.max_body_bytes).unwrap_or(usize::MAX);
    let (prefix, rest) = match read_up_to(body, limit).await {
        Ok(read) => read,
        Err(error) => {
            return response::error(
                StatusCode::BAD_REQUEST,
                "body_read_failed",
                &format!("cannot read the request body: {error}"),
            )
        }
    };
    let body_started = Instant::now();
    if section.enabled {
        if rest.is_some() {
            judged.add(
                &state,
                vec![unscannable(
                    "body.too_large",
                    format!("Request body larger than max_body_bytes ({limit})"),
                )],
                true,
            );
        } else if !prefix.is_empty() {
            // A compressed body is scanned decoded (and forwarded as it came).
            let coding = encoded(&parts.headers);
            let decoded = match &coding {
                Some(coding) => crate::scan::inflate::decode(&prefix, coding, limit)
                    .map(std::borrow::Cow::Owned)
                    .map_err(|e| ("body.encoded", format!("Request body: {e}"))),
                None => Ok(std::borrow::Cow::Borrowed(&prefix[..])),
            };
            let content_type = parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            let segments = decoded.and_then(|body| {
                crate::scan::body::extract(&body, content_type)
                    .map_err(|e| ("body.unparseable", e.to_string()))
            });
            match segments {
                Ok(segments) => {
                    for segment in segments {
                        judged.add(
                            &state,
                            state.scanner.scan_outbound(&segment.text),
                            section_blocks,
                        );
                    }
                }
                Err((rule, reason)) => {
                    judged.add(&state, vec![unscannable(rule, reason)], true);
                }
            }
        }
    }
    scan_time += body_started.elapsed();
    state
        .metrics
        .observe_scan("request", scan_time.as_secs_f64());
    if judged.block.is_some() {
        return judged.refuse(&state, kind, StatusCode::FORBIDDEN, "request");
    }
    // 4. Resolve (or take the original destination), check the addresses, connect to one
    //    that passed.
    let resolved = match dial::vet_or_refuse(&state, kind, host, port, target.upstream).await {
        Ok(resolved) => resolved,
        Err(answer) => return answer,
    };
    judged.add(&state, resolved.findings, true);
    if judged.block.is_some() {
        return judged.refuse(&state, kind, StatusCode::FORBIDDEN, "request");
    }
    // 5. Forward.
    let out_bytes = prefix.len() as u64;
    let built = Request::builder()
        .method(parts.method.clone())
        .uri(path_and_query.as_str())
        .body(
            PrefixedBody {
                prefix: (!prefix.is_empty()).then_some(prefix),
                rest,
            }
            .boxed_unsync(),
        );
    let mut upstream_request = match built {
        Ok(r) => r,
        Err(e) => {
            return upstream_error(
                &state,
                kind,
                &format!("cannot build the upstream request: {e}"),
            )
        }
    };
    copy_end_to_end(&parts.headers, upstream_request.headers_mut());
    if state.config.response_scanning.enabled {
        if let Some(accept) = upstream_request.headers().get(ACCEPT_ENCODING) {
            let event_stream = upstream_request
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().contains("text/event-stream"));
            let narrowed = narrow_accept_encoding(accept.to_str().unwrap_or(""), event_stream);
            if let Ok(value) = HeaderValue::from_str(&narrowed) {
                upstream_request
                    .headers_mut()
                    .insert(ACCEPT_ENCODING, value);
            }
        }
    }
    if !upstream_request.headers().contains_key(HOST) {
        if let Ok(value) = HeaderValue::from_str(&target.authority()) {
            upstream_request.headers_mut().insert(HOST, value);
        }
    }
    let timeout = Duration::from_secs(state.config.fetch_proxy.timeout_seconds.max(1));
    let answer = tokio::time::timeout(
        timeout,
        origin::send(&state, &target, &resolved.addrs, upstream_request),
    )
    .await;
    let upstream_response = match answer {
        Ok(Ok(r)) => r,
        Ok(Err(error)) => return upstream_error(&state, kind, &error.to_string()),
        Err(_) => return upstream_error(&state, kind, "upstream timed out"),
    };
    state.metrics.record_proxy_bytes("out", out_bytes);

    // 6. The response.
    respond(&state, &target, judged, upstream_response).await
}

async fn respond(
    state: &Arc<ServerState>,
    target: &Target,
    mut judged: Judgement,
    upstream: Response<Returning>,
) -> Response<Body> {
    let (mut parts, body) = upstream.into_parts();
    let (host, kind) = (target.host.as_str(), target.kind());
    // The client speaks HTTP/1.1 with Pipelock, whatever the origin spoke.
    parts.version = hyper::Version::HTTP_11;
    let scanning = &state.config.response_scanning;
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let exempt = scanning
        .exempt_domains
        .iter()
        .any(|p| crate::scan::url::matches_domain(p, host));
    let mut headers = HeaderMap::new();
    copy_end_to_end(&parts.headers, &mut headers);

    if !(scanning.enabled && !exempt && is_text(&content_type)) {
        // Streamed through untouched; bytes are counted as they pass.
        let counted = Counted {
            inner: body,
            state: Arc::clone(state),
            host: host.to_string(),
            seen: 0,
        };
        return answer(state, kind, &judged, parts, headers, counted.boxed());
    }

    if scanning.sse_streaming.enabled && essence(&content_type) == "text/event-stream" {
        let decoder = match encoded(&parts.headers).map(|c| StreamDecoder::new(&c)) {
            None => None,
            Some(Ok(decoder)) => Some(decoder),
            Some(Err(error)) => {
                judged.add(
                    state,
                    vec![unscannable(
                        "response.encoded",
                        format!("Event stream: {error}"),
                    )],
                    true,
                );
                return judged.refuse(state, kind, StatusCode::FORBIDDEN, "response");
            }
        };
        headers.remove(CONTENT_LENGTH);
        headers.remove(CONTENT_ENCODING);
        let events = super::sse::SseScan::new(body, Arc::clone(state), host.to_string(), decoder);
        return answer(state, kind, &judged, parts, headers, events.boxed());
    }
    let section_blocks = scanning.action != ResponseAction::Warn;
    // Intercepted responses are capped by tls_interception.max_response_bytes, the others
    // by fetch_proxy.max_response_mb.
    let (limit, limit_key) = if target.secure {
        (
            state.config.tls_interception.max_response_bytes,
            "tls_interception.max_response_bytes",
        )
    } else {
        (
            state
                .config
                .fetch_proxy
                .max_response_mb
                .saturating_mul(1024 * 1024),
            "fetch_proxy.max_response_mb",
        )
    };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let (mut bytes, rest) = match read_up_to(body, limit).await {
        Ok(read) => read,
        Err(error) => {
            return upstream_error(
                state,
                kind,
                &format!("cannot read the upstream response: {error}"),
            )
        }
    };
    record_inbound(state, host, bytes.len() as u64);
    let decoded = encoded(&parts.headers)
        .filter(|_| rest.is_none())
        .map(|coding| crate::scan::inflate::decode(&bytes, &coding, limit));
    if rest.is_some() {
        judged.add(
            state,
            vec![unscannable(
                "response.too_large",
                format!("Response larger than {limit_key} ({limit} bytes)"),
            )],
            true,
        );
    } else if let Some(Err(error)) = decoded {
        judged.add(
            state,
            vec![unscannable(
                "response.encoded",
                format!("Response: {error}"),
            )],
            true,
        );
    } else {
        // Scanned decoded, and passed on decoded.
        if let Some(Ok(plain)) = decoded {
            bytes = Bytes::from(plain);
            headers.remove(CONTENT_ENCODING);
        }
        let text = String::from_utf8_lossy(&bytes);
        let scan_started = Instant::now();
        let findings = state.scanner.scan_inbound(&text);
        state
            .metrics
            .observe_scan("response", scan_started.elapsed().as_secs_f64());
        if scanning.action == ResponseAction::Strip && !findings.is_empty() {
            // Cut the matches out; what cannot be cut (seen only in a normalized or decoded
            // view) still blocks.
            if let Some(stripped) = state.scanner.strip_inbound(&text) {
                let mut after = Judgement::default();
                after.add(state, state.scanner.scan_inbound(&stripped), section_blocks);
                if after.block.is_none() && judged.block.is_none() {
                    let rules: Vec<String> = findings.iter().map(|f| f.rule_id.clone()).collect();
                    tracing::warn!(rules = %rules.join(", "), host, "injection stripped from a response");
                    headers.remove(CONTENT_LENGTH);
                    if let Ok(value) = HeaderValue::from_str(&rules.join(", ")) {
                        headers.insert(HeaderName::from_static("x-pipelock-stripped"), value);
                    }
                    let body = response::full(stripped.into_bytes());
                    let outcome = ("strip", "injection".to_string());
                    return answer_as(state, kind, &judged, parts, headers, body, outcome);
                }
            }
        }
        judged.add(state, findings, section_blocks);
    }
    if judged.block.is_some() {
        return judged.refuse(state, kind, StatusCode::FORBIDDEN, "response");
    }
    if rest.is_some() {
        // Audit mode: what was not scanned still reaches the client, after what was.
        let body = PrefixedBody {
            prefix: Some(bytes),
            rest,
        };
        let body = body.map_err(std::io::Error::other).boxed();
        return answer(state, kind, &judged, parts, headers, body);
    }
    headers.remove(CONTENT_LENGTH);
    answer(state, kind, &judged, parts, headers, response::full(bytes))
}

/// The origin's response passed on: its status, `headers`, the warning header, and the
/// request counted under its verdict.
fn answer(
    state: &ServerState,
    kind: &str,
    judged: &Judgement,
    parts: hyper::http::response::Parts,
    headers: HeaderMap,
    body: Body,
) -> Response<Body> {
    let outcome = judged.outcome();
    answer_as(
        state,
        kind,
        judged,
        parts,
        headers,
        body,
        (outcome.0, outcome.1),
    )
}

fn answer_as(
    state: &ServerState,
    kind: &str,
    judged: &Judgement,
    mut parts: hyper::http::response::Parts,
    headers: HeaderMap,
    body: Body,
    (verdict, scanner): (&str, String),
) -> Response<Body> {
    parts.headers = headers;
    add_warning(judged, &mut parts.headers);
    state.metrics.record_proxy_request(kind, verdict, &scanner);
    Response::from_parts(parts, body)
}

/// Counts bytes received from `host` in the metrics and its data budget.
pub(super) fn record_inbound(state: &ServerState, host: &str, bytes: u64) {
    state.metrics.record_proxy_bytes("in", bytes);
    state
        .scanner
        .budgets()
        .record_bytes(host, bytes, Instant::now());
}

fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// Text a model may read: the response bodies scanned for prompt injection (event streams
/// event by event, the others whole).
fn is_text(content_type: &str) -> bool {
    let essence = essence(content_type);
    essence.starts_with("text/")
        || essence.ends_with("/json")
        || essence.ends_with("+json")
        || essence.ends_with("/xml")
        || essence.ends_with("+xml")
        || essence == "application/javascript"
        || essence == "application/x-ndjson"
        || essence.is_empty()
}

/// The codings of a client's `Accept-Encoding` that Pipelock can decode for scanning: a
/// response in another coding could not be scanned, so the origin is not offered it. A client
/// that asks for an event stream is offered only what can be decoded as a stream.
fn narrow_accept_encoding(accept: &str, event_stream: bool) -> String {
    let offered = |name: &str| {
        accept.split(',').any(|c| {
            let mut parts = c.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
            let named = coding.eq_ignore_ascii_case(name)
                || (name == "gzip" && coding.eq_ignore_ascii_case("x-gzip"));
            named && !refused
        })
    };
    let decodable = if event_stream {
        crate::scan::inflate::STREAM_DECODED
    } else {
        crate::scan::inflate::DECODED
    };
    let codings: Vec<&str> = decodable.iter().copied().filter(|c| offered(c)).collect();
    if codings.is_empty() {
        "identity".to_string()
    } else {
        codings.join(", ")
    }
}

fn encoded(headers: &HeaderMap) -> Option<String> {
    let coding = headers
        .get(CONTENT_ENCODING)?
        .to_str()
        .unwrap_or("?")
        .trim();
    (!coding.is_empty() && !coding.eq_ignore_ascii_case("identity")).then(|| coding.to_string())
}

fn add_warning(judged: &Judgement, headers: &mut HeaderMap) {
    if let Some(warning) = judged.warning_header() {
        if let Ok(value) = HeaderValue::from_str(&warning) {
            headers.insert(HeaderName::from_static("x-pipelock-warning"), value);
        }
        for finding in &judged.warnings {
            tracing::warn!(rule = %finding.rule_id, scanner = %finding.scanner, "forwarded with a warning");
        }
    }
}

fn unscannable(rule_id: &str, reason: String) -> Finding {
    Finding::unscannable(rule_id, reason, ScannerKind::Dlp)
}

fn bad_request(state: &ServerState, kind: &str, message: &str) -> Response<Body> {
    state.metrics.record_proxy_request(kind, "block", "request");
    response::error(StatusCode::BAD_REQUEST, "bad_proxy_request", message)
}

fn upstream_error(state: &ServerState, kind: &str, message: &str) -> Response<Body> {
    state
        .metrics
        .record_proxy_request(kind, "error", "upstream");
    response::error(StatusCode::BAD_GATEWAY, "upstream_failed", message)
}

/// The error type of bodies Pipelock relays.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Reads at most `limit` bytes of `body`: all of it, or the first `limit` and the unread rest.
async fn read_up_to<B>(mut body: B, limit: usize) -> Result<(Bytes, Option<B>), BoxError>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(Into::into)?.into_data() {
            buffer.extend_from_slice(&data);
            if buffer.len() > limit {
                return Ok((Bytes::from(buffer), Some(body)));
            }
        }
    }
    Ok((Bytes::from(buffer), None))
}

/// Bytes already read, then the rest of the stream.
struct PrefixedBody<B> {
    prefix: Option<Bytes>,
    rest: Option<B>,
}

impl<B> HttpBody for PrefixedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx).map_err(Into::into),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        match &self.rest {
            None => SizeHint::with_exact(prefix),
            Some(rest) => {
                let mut hint = rest.size_hint();
                hint.set_lower(hint.lower() + prefix);
                if let Some(upper) = hint.upper() {
                    hint.set_upper(upper + prefix);
                }
                hint
            }
        }
    }
}

/// An upstream body streamed to the client, counted for metrics and the data budget.
struct Counted {
    inner: Returning,
    state: Arc<ServerState>,
    host: String,
    seen: u64,
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.seen += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(std::io::Error::other(error)))),
            Poll::Ready(None) => {
                let seen = std::mem::take(&mut self.seen);
                record_inbound(&self.state, &self.host, seen);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
