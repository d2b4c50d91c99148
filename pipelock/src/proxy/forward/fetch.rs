//! `GET /fetch?url=…`, compatible with the reference: Pipelock fetches the URL itself (each
//! hop of up to 5 redirects goes through the full request scan, SSRF check and response
//! scan, like a proxied request), extracts readable text from HTML, scans that text again for
//! prompt injection, and answers JSON:
//! `{url, agent, status_code, content_type, title, content, error, blocked, block_reason, hint}`.
//!
//! The client's own request headers are DLP-scanned but not forwarded; the origin sees
//! `User-Agent: fetch_proxy.user_agent` and a text-preferring `Accept`.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE, LOCATION, USER_AGENT};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use super::headers::scan_request_headers;
use super::http::{exchange, Target};
use super::judge::Judgement;
use crate::config::ResponseAction;
use crate::proxy::response::{self, Body};
use crate::proxy::ServerState;

/// Redirects followed before giving up (the reference's limit).
const MAX_REDIRECTS: usize = 5;
/// The agent name reported when the request names none.
const ANONYMOUS: &str = "anonymous";

/// The JSON answer of `/fetch`.
#[derive(Debug, Default, Serialize)]
struct FetchResponse {
    url: String,
    agent: String,
    status_code: u16,
    content_type: String,
    title: String,
    content: String,
    error: String,
    blocked: bool,
    block_reason: String,
    hint: String,
}

impl FetchResponse {
    fn answer(self, status: StatusCode) -> Response<Body> {
        match serde_json::to_value(&self) {
            Ok(value) => response::json(status, &value),
            Err(e) => response::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &e.to_string(),
            ),
        }
    }

    fn error(url: &str, status: StatusCode, error: String) -> Response<Body> {
        Self {
            url: url.to_string(),
            agent: ANONYMOUS.to_string(),
            error,
            ..Self::default()
        }
        .answer(status)
    }

    /// A refusal; its `url` is cut to the origin, so a secret in the path or query is not
    /// repeated back.
    fn blocked(url: &str, status: StatusCode, reason: String) -> Response<Body> {
        let origin = url::Url::parse(url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        Self {
            url: origin,
            agent: ANONYMOUS.to_string(),
            blocked: true,
            block_reason: reason,
            ..Self::default()
        }
        .answer(status)
    }
}

/// Answers `/fetch`.
pub async fn fetch(state: Arc<ServerState>, request: Request<Incoming>) -> Response<Body> {
    if request.method() != Method::GET {
        return FetchResponse::error(
            "",
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET allowed".into(),
        );
    }
    let query = request.uri().query().unwrap_or("");
    let Some(raw) = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "url")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
    else {
        return FetchResponse::error(
            "",
            StatusCode::BAD_REQUEST,
            "missing 'url' query parameter".into(),
        );
    };
    // Control characters are dropped before parsing so that they cannot hide a secret from
    // the URL scan by making the URL unparseable (as the reference does).
    let raw: String = raw.chars().filter(|c| !c.is_control()).collect();
    let mut current = match url::Url::parse(&raw) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => url,
        _ => {
            return FetchResponse::error(
                &raw,
                StatusCode::BAD_REQUEST,
                "invalid URL: must be http or https".into(),
            )
        }
    };
    // The client's headers: scanned, never forwarded.
    let mut judged = Judgement::default();
    scan_request_headers(&state, request.headers(), &mut judged);
    if let Some(finding) = &judged.block {
        state
            .metrics
            .record_proxy_request("fetch", "block", &finding.scanner.to_string());
        return FetchResponse::blocked(
            current.as_str(),
            StatusCode::FORBIDDEN,
            format!("request header contains secret ({})", finding.rule_id),
        );
    }

    for _hop in 0..=MAX_REDIRECTS {
        let answer = match hop(&state, &current).await {
            Ok(answer) => answer,
            Err(response) => return response,
        };
        if answer.status().is_redirection() {
            let next = answer
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|location| current.join(location).ok());
            match next {
                Some(next) if matches!(next.scheme(), "http" | "https") => {
                    current = next;
                    continue;
                }
                _ => {
                    return FetchResponse::error(
                        current.as_str(),
                        StatusCode::BAD_GATEWAY,
                        "redirect without a usable http(s) Location".into(),
                    )
                }
            }
        }
        return read_page(&state, &current, answer).await;
    }
    FetchResponse::blocked(
        current.as_str(),
        StatusCode::FORBIDDEN,
        format!("more than {MAX_REDIRECTS} redirects"),
    )
}

/// One request to `url` through the proxy's scanning path. Pipelock's own refusals and errors
/// come back as the finished `/fetch` answer.
async fn hop(state: &Arc<ServerState>, url: &url::Url) -> Result<Response<Body>, Response<Body>> {
    let host = url
        .host_str()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let secure = url.scheme() == "https";
    let target = Target {
        host,
        port: url
            .port_or_known_default()
            .unwrap_or(if secure { 443 } else { 80 }),
        secure,
        upstream: None,
    };
    let path = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    };
    let built = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(
            ACCEPT,
            "text/html,application/xhtml+xml,application/xml;q=0.9,text/plain,*/*;q=0.8",
        )
        .body(Empty::<Bytes>::new());
    let mut request = built.map_err(|e| {
        FetchResponse::error(
            url.as_str(),
            StatusCode::BAD_REQUEST,
            format!("invalid URL: {e}"),
        )
    })?;
    if let Ok(agent) = HeaderValue::from_str(&state.config.fetch_proxy.user_agent) {
        request.headers_mut().insert(USER_AGENT, agent);
    }
    let answer = exchange(Arc::clone(state), target, request).await;
    if answer.headers().contains_key("x-pipelock-blocked") {
        let status = answer.status();
        let detail = body_json(answer).await;
        let reason = format!(
            "{}: {}",
            detail["rule"].as_str().unwrap_or("blocked"),
            detail["reason"].as_str().unwrap_or("")
        );
        return Err(FetchResponse::blocked(url.as_str(), status, reason));
    }
    if answer.headers().contains_key("x-pipelock-error") {
        let status = answer.status();
        let detail = body_json(answer).await;
        let message = detail["message"]
            .as_str()
            .unwrap_or("fetch failed")
            .to_string();
        return Err(FetchResponse::error(
            url.as_str(),
            status,
            format!("fetch failed: {message}"),
        ));
    }
    Ok(answer)
}

/// The page as `/fetch` returns it: readable text, scanned once more.
async fn read_page(state: &ServerState, url: &url::Url, answer: Response<Body>) -> Response<Body> {
    let status_code = answer.status().as_u16();
    let content_type = answer
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let limit = usize::try_from(
        state
            .config
            .fetch_proxy
            .max_response_mb
            .saturating_mul(1024 * 1024),
    )
    .unwrap_or(usize::MAX);
    let body = match http_body_util::Limited::new(answer.into_body(), limit)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return FetchResponse::blocked(
                url.as_str(),
                StatusCode::BAD_GATEWAY,
                format!("response not readable within fetch_proxy.max_response_mb: {e}"),
            )
        }
    };
    let text = String::from_utf8_lossy(&body);
    let lower = content_type.to_ascii_lowercase();
    let (title, content) = if lower.contains("text/html") || lower.contains("application/xhtml") {
        let extracted = crate::scan::html::extract(&text);
        (extracted.title, extracted.text)
    } else {
        (String::new(), text.into_owned())
    };
    // Markup removed can join text a tag had split; the extracted text is scanned again.
    let scanning = &state.config.response_scanning;
    if scanning.enabled {
        let mut judged = Judgement::default();
        let blocks = scanning.action != ResponseAction::Warn;
        judged.add(state, state.scanner.scan_inbound(&title), blocks);
        judged.add(state, state.scanner.scan_inbound(&content), blocks);
        if let Some(finding) = judged.block {
            state
                .metrics
                .record_proxy_request("fetch", "block", &finding.scanner.to_string());
            return FetchResponse::blocked(
                url.as_str(),
                StatusCode::FORBIDDEN,
                format!("response contains prompt injection: {}", finding.rule_id),
            );
        }
    }
    state.metrics.record_proxy_request("fetch", "allow", "none");
    FetchResponse {
        url: url.to_string(),
        agent: ANONYMOUS.to_string(),
        status_code,
        content_type,
        title,
        content,
        ..FetchResponse::default()
    }
    .answer(StatusCode::OK)
}

async fn body_json(answer: Response<Body>) -> serde_json::Value {
    let bytes = answer
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_default()
}
