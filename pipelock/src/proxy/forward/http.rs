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
use hyper_util::rt::TokioIo;

use super::dial;
use super::headers::{copy_end_to_end, scan_request_headers};
use super::judge::Judgement;
use crate::config::{BlockOrWarn, ResponseAction};
use crate::proxy::response::{self, Body};
use crate::proxy::ServerState;
use crate::scan::{Finding, ScannerKind};

pub async fn forward(state: Arc<ServerState>, request: Request<Incoming>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let uri = parts.uri.clone();
    if uri.scheme_str() != Some("http") {
        return bad_request(
            &state,
            "only http:// URIs are forwarded this way; HTTPS goes through CONNECT",
        );
    }
    let Some(host) = uri
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
    else {
        return bad_request(&state, "the request URI has no host");
    };
    let port = uri.port_u16().unwrap_or(80);
    let mut judged = Judgement::default();

    // 1. The URL, every layer, before any lookup.
    judged.add(&state, state.scanner.scan_url(&uri.to_string()), true);
    if judged.block.is_some() {
        return judged.refuse(&state, "http", StatusCode::FORBIDDEN, "request");
    }
    // 2. The per-site rate limit and data budget.
    if let Err(finding) = state.scanner.budgets().admit(&host, Instant::now()) {
        judged.add(&state, vec![finding], true);
        if judged.block.is_some() {
            return judged.refuse(&state, "http", StatusCode::TOO_MANY_REQUESTS, "request");
        }
    }
    // 3. Headers and body.
    let section = &state.config.request_body_scanning;
    let section_blocks = section.action == BlockOrWarn::Block;
    scan_request_headers(&state, &parts.headers, &mut judged);
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
    if judged.block.is_some() {
        return judged.refuse(&state, "http", StatusCode::FORBIDDEN, "request");
    }
    // 4. Resolve, check the addresses, connect to one that passed.
    let resolved = match dial::resolve(&state, &host, port).await {
        Ok(resolved) => resolved,
        Err(error) => {
            state.metrics.record_proxy_request("http", "error", "dns");
            return response::error(
                StatusCode::BAD_GATEWAY,
                "resolve_failed",
                &format!("cannot resolve {host}: {error}"),
            );
        }
    };
    judged.add(&state, resolved.findings, true);
    if judged.block.is_some() {
        return judged.refuse(&state, "http", StatusCode::FORBIDDEN, "request");
    }
    let upstream = match dial::connect(&resolved.addrs).await {
        Ok(stream) => stream,
        Err(error) => {
            return upstream_error(&state, &format!("cannot connect to {host}:{port}: {error}"))
        }
    };

    // 5. Forward.
    let out_bytes = prefix.len() as u64;
    let built = Request::builder()
        .method(parts.method.clone())
        .uri(
            uri.path_and_query()
                .map_or("/", hyper::http::uri::PathAndQuery::as_str),
        )
        .body(PrefixedBody {
            prefix: (!prefix.is_empty()).then_some(prefix),
            rest,
        });
    let mut upstream_request = match built {
        Ok(r) => r,
        Err(e) => {
            return upstream_error(&state, &format!("cannot build the upstream request: {e}"))
        }
    };
    copy_end_to_end(&parts.headers, upstream_request.headers_mut());
    if state.config.response_scanning.enabled {
        if let Some(accept) = upstream_request.headers().get(ACCEPT_ENCODING) {
            let narrowed = narrow_accept_encoding(accept.to_str().unwrap_or(""));
            upstream_request
                .headers_mut()
                .insert(ACCEPT_ENCODING, HeaderValue::from_static(narrowed));
        }
    }
    if !upstream_request.headers().contains_key(HOST) {
        if let Some(value) = uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            upstream_request.headers_mut().insert(HOST, value);
        }
    }
    let timeout = Duration::from_secs(state.config.fetch_proxy.timeout_seconds.max(1));
    let answer = tokio::time::timeout(timeout, send(upstream, upstream_request)).await;
    let upstream_response = match answer {
        Ok(Ok(r)) => r,
        Ok(Err(error)) => {
            return upstream_error(&state, &format!("upstream request failed: {error}"))
        }
        Err(_) => return upstream_error(&state, "upstream timed out"),
    };
    state.metrics.record_proxy_bytes("out", out_bytes);

    // 6. The response.
    respond(&state, &host, judged, upstream_response).await
}

async fn send(
    stream: tokio::net::TcpStream,
    request: Request<PrefixedBody>,
) -> Result<Response<Incoming>, hyper::Error> {
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "upstream connection ended with an error");
        }
    });
    sender.send_request(request).await
}

async fn respond(
    state: &Arc<ServerState>,
    host: &str,
    mut judged: Judgement,
    upstream: Response<Incoming>,
) -> Response<Body> {
    let (mut parts, body) = upstream.into_parts();
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
        return answer(state, &judged, parts, headers, counted.boxed());
    }

    if scanning.sse_streaming.enabled && essence(&content_type) == "text/event-stream" {
        if let Some(coding) = encoded(&parts.headers) {
            judged.add(
                state,
                vec![unscannable(
                    "response.encoded",
                    format!("Event stream with Content-Encoding {coding} cannot be scanned"),
                )],
                true,
            );
            return judged.refuse(state, "http", StatusCode::FORBIDDEN, "response");
        }
        headers.remove(CONTENT_LENGTH);
        let events = super::sse::SseScan::new(body, Arc::clone(state), host.to_string());
        return answer(state, &judged, parts, headers, events.boxed());
    }
    let section_blocks = scanning.action != ResponseAction::Warn;
    let limit = usize::try_from(
        state
            .config
            .fetch_proxy
            .max_response_mb
            .saturating_mul(1024 * 1024),
    )
    .unwrap_or(usize::MAX);
    let (mut bytes, rest) = match read_up_to(body, limit).await {
        Ok(read) => read,
        Err(error) => {
            return upstream_error(
                state,
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
                format!("Response larger than fetch_proxy.max_response_mb ({limit} bytes)"),
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
        let findings = state.scanner.scan_inbound(&text);
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
                    return answer_as(state, &judged, parts, headers, body, outcome);
                }
            }
        }
        judged.add(state, findings, section_blocks);
    }
    if judged.block.is_some() {
        return judged.refuse(state, "http", StatusCode::FORBIDDEN, "response");
    }
    if rest.is_some() {
        // Audit mode: what was not scanned still reaches the client, after what was.
        let body = PrefixedBody {
            prefix: Some(bytes),
            rest,
        };
        let body = body.map_err(std::io::Error::other).boxed();
        return answer(state, &judged, parts, headers, body);
    }
    headers.remove(CONTENT_LENGTH);
    answer(state, &judged, parts, headers, response::full(bytes))
}

/// The origin's response passed on: its status, `headers`, the warning header, and the
/// request counted under its verdict.
fn answer(
    state: &ServerState,
    judged: &Judgement,
    parts: hyper::http::response::Parts,
    headers: HeaderMap,
    body: Body,
) -> Response<Body> {
    let outcome = judged.outcome();
    answer_as(state, judged, parts, headers, body, (outcome.0, outcome.1))
}

fn answer_as(
    state: &ServerState,
    judged: &Judgement,
    mut parts: hyper::http::response::Parts,
    headers: HeaderMap,
    body: Body,
    (verdict, scanner): (&str, String),
) -> Response<Body> {
    parts.headers = headers;
    add_warning(judged, &mut parts.headers);
    state
        .metrics
        .record_proxy_request("http", verdict, &scanner);
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
/// response in another coding could not be scanned, so the origin is not offered it.
fn narrow_accept_encoding(accept: &str) -> &'static str {
    let offered = |name: &str| {
        accept.split(',').any(|c| {
            let mut parts = c.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
            coding.eq_ignore_ascii_case(name) && !refused
        })
    };
    match (offered("gzip") || offered("x-gzip"), offered("deflate")) {
        (true, true) => crate::scan::inflate::ACCEPTED,
        (true, false) => "gzip",
        (false, true) => "deflate",
        (false, false) => "identity",
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

fn bad_request(state: &ServerState, message: &str) -> Response<Body> {
    state
        .metrics
        .record_proxy_request("http", "block", "request");
    response::error(StatusCode::BAD_REQUEST, "bad_proxy_request", message)
}

fn upstream_error(state: &ServerState, message: &str) -> Response<Body> {
    state
        .metrics
        .record_proxy_request("http", "error", "upstream");
    response::error(StatusCode::BAD_GATEWAY, "upstream_failed", message)
}

/// Reads at most `limit` bytes of `body`: all of it, or the first `limit` and the unread rest.
async fn read_up_to(
    mut body: Incoming,
    limit: usize,
) -> Result<(Bytes, Option<Incoming>), hyper::Error> {
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            buffer.extend_from_slice(&data);
            if buffer.len() > limit {
                return Ok((Bytes::from(buffer), Some(body)));
            }
        }
    }
    Ok((Bytes::from(buffer), None))
}

/// Bytes already read, then the rest of the stream.
struct PrefixedBody {
    prefix: Option<Bytes>,
    rest: Option<Incoming>,
}

impl HttpBody for PrefixedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
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
    inner: Incoming,
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
