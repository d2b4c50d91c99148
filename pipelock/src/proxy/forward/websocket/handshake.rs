//! The two opening handshakes (RFC 6455 §4). Pipelock ends the client's WebSocket and opens
//! its own to the upstream, so each side gets its own key and accept value, and the frames
//! in between are Pipelock's to read:
//!
//! 1. the client's upgrade request is checked (GET, `Upgrade: websocket`,
//!    `Sec-WebSocket-Version: 13`, a key);
//! 2. the upstream request carries the client's end-to-end headers minus the hop-by-hop ones,
//!    `Cookie` only with `forward_cookies`, `Origin` per `origin_policy`, and no
//!    `Sec-WebSocket-Extensions` with `strip_compression`;
//! 3. the upstream's answer must be 101 with the right accept value, no extension (compressed
//!    frames could not be scanned, so a negotiated extension fails closed whatever
//!    `strip_compression` says) and, if any, a subprotocol the client offered;
//! 4. the client hears 101 with its own accept value and that subprotocol.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, COOKIE, HOST, ORIGIN, SEC_WEBSOCKET_ACCEPT,
    SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION,
    UPGRADE,
};
use hyper::upgrade::Upgraded;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::super::headers::copy_end_to_end;
use super::target::Target;
use crate::config::{OriginPolicy, WebsocketProxy};
use crate::proxy::response::{self, Body};

/// What was wrong with a client's upgrade request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientHandshakeError {
    #[error("a WebSocket handshake is a GET request, not {0}")]
    NotGet(Method),
    #[error("the request does not ask for a WebSocket (Upgrade: websocket)")]
    NotUpgrade,
    #[error("the Connection header does not name Upgrade")]
    NoConnectionUpgrade,
    #[error("Sec-WebSocket-Version must be 13")]
    Version,
    #[error("Sec-WebSocket-Key is missing or is not 16 bytes in base64")]
    Key,
}

/// Why the upstream handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamHandshakeError {
    #[error("cannot build the upstream request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("cannot build the upstream request: a header value is unusable ({0})")]
    HeaderValue(#[from] hyper::header::InvalidHeaderValue),
    #[error("the upstream handshake failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("the upstream did not answer the handshake within {0:?}")]
    TimedOut(Duration),
    #[error("the upstream answered {0} instead of 101 Switching Protocols")]
    Status(StatusCode),
    #[error("the upstream's 101 does not upgrade to websocket")]
    NotWebsocket,
    #[error("the upstream's Sec-WebSocket-Accept does not match the key sent")]
    Accept,
    #[error("the upstream negotiated the extension {0:?}; compressed or extended frames cannot be scanned, so the session is refused")]
    Extension(String),
    #[error("the upstream chose the subprotocol {0:?}, which the client did not offer")]
    Subprotocol(String),
}

/// A valid client upgrade request: its key and the subprotocols it offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHandshake {
    key: String,
    protocols: Vec<String>,
}

impl ClientHandshake {
    /// Checks the client's upgrade request.
    ///
    /// # Errors
    /// The request is not a version-13 WebSocket handshake.
    pub fn check(method: &Method, headers: &HeaderMap) -> Result<Self, ClientHandshakeError> {
        if method != Method::GET {
            return Err(ClientHandshakeError::NotGet(method.clone()));
        }
        if !has_token(headers, &UPGRADE, "websocket") {
            return Err(ClientHandshakeError::NotUpgrade);
        }
        if !has_token(headers, &CONNECTION, "upgrade") {
            return Err(ClientHandshakeError::NoConnectionUpgrade);
        }
        // Exactly one version and one key: two values would be read differently by
        // different parsers.
        let version = single(headers, &SEC_WEBSOCKET_VERSION);
        if version.map(HeaderValue::as_bytes) != Some(b"13") {
            return Err(ClientHandshakeError::Version);
        }
        let key = single(headers, &SEC_WEBSOCKET_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|k| is_key(k))
            .ok_or(ClientHandshakeError::Key)?
            .to_string();
        Ok(Self {
            key,
            protocols: tokens(headers, &SEC_WEBSOCKET_PROTOCOL),
        })
    }

    /// The subprotocols the client offers (`Sec-WebSocket-Protocol`).
    #[must_use]
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }

    /// The `101 Switching Protocols` that completes the client's handshake.
    #[must_use]
    pub fn switching(&self, protocol: Option<&HeaderValue>) -> Response<Body> {
        let mut answer = Response::new(response::full(Vec::new()));
        *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = answer.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(self.key.as_bytes())) {
            headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
        }
        if let Some(protocol) = protocol {
            headers.insert(SEC_WEBSOCKET_PROTOCOL, protocol.clone());
        }
        answer
    }
}

/// The upgrade request sent upstream for `target`, with the client's end-to-end headers
/// filtered by `settings` and Pipelock's own `key`.
///
/// # Errors
/// The request cannot be built (an unusable header value).
pub fn upstream_request(
    client_headers: &HeaderMap,
    target: &Target,
    settings: &WebsocketProxy,
    key: &str,
) -> Result<Request<Empty<Bytes>>, UpstreamHandshakeError> {
    let mut headers = HeaderMap::new();
    copy_end_to_end(client_headers, &mut headers);
    for name in [
        HOST,
        SEC_WEBSOCKET_KEY,
        SEC_WEBSOCKET_ACCEPT,
        SEC_WEBSOCKET_VERSION,
        hyper::header::CONTENT_LENGTH,
    ] {
        headers.remove(name);
    }
    if settings.strip_compression {
        headers.remove(SEC_WEBSOCKET_EXTENSIONS);
    }
    if !settings.forward_cookies {
        headers.remove(COOKIE);
    }
    match settings.origin_policy {
        OriginPolicy::Forward => {}
        OriginPolicy::Strip => {
            headers.remove(ORIGIN);
        }
        OriginPolicy::Rewrite => {
            headers.insert(ORIGIN, HeaderValue::from_str(&target.origin())?);
        }
    }
    headers.insert(HOST, HeaderValue::from_str(&target.authority)?);
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    headers.insert(SEC_WEBSOCKET_KEY, HeaderValue::from_str(key)?);
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(target.path_and_query.as_str())
        .body(Empty::new())?;
    *request.headers_mut() = headers;
    Ok(request)
}

/// Checks the upstream's answer to a request sent with `key`, where the client offered
/// `offered` subprotocols; returns the subprotocol the upstream chose.
///
/// # Errors
/// Anything but a proper 101 for this key without extensions.
pub fn check_upstream_answer(
    status: StatusCode,
    headers: &HeaderMap,
    key: &str,
    offered: &[String],
) -> Result<Option<HeaderValue>, UpstreamHandshakeError> {
    if status != StatusCode::SWITCHING_PROTOCOLS {
        return Err(UpstreamHandshakeError::Status(status));
    }
    if !has_token(headers, &UPGRADE, "websocket") || !has_token(headers, &CONNECTION, "upgrade") {
        return Err(UpstreamHandshakeError::NotWebsocket);
    }
    let expected = derive_accept_key(key.as_bytes());
    if headers.get(SEC_WEBSOCKET_ACCEPT).map(HeaderValue::as_bytes) != Some(expected.as_bytes()) {
        return Err(UpstreamHandshakeError::Accept);
    }
    let extensions = tokens(headers, &SEC_WEBSOCKET_EXTENSIONS);
    if !extensions.is_empty() {
        return Err(UpstreamHandshakeError::Extension(extensions.join(", ")));
    }
    match headers.get(SEC_WEBSOCKET_PROTOCOL) {
        None => Ok(None),
        Some(chosen) => {
            let name = chosen.to_str().unwrap_or("").trim();
            if offered.iter().any(|p| p == name) {
                Ok(Some(chosen.clone()))
            } else {
                Err(UpstreamHandshakeError::Subprotocol(name.to_string()))
            }
        }
    }
}

/// Performs the upstream handshake over `stream` (connected to a vetted address, plain for
/// `ws://` or TLS for `wss://`) within `timeout`; returns the upgraded connection and the
/// chosen subprotocol.
///
/// # Errors
/// The exchange failed or the answer is not an acceptable 101.
pub async fn open_upstream<S>(
    stream: S,
    request: Request<Empty<Bytes>>,
    key: &str,
    offered: &[String],
    timeout: Duration,
) -> Result<(Upgraded, Option<HeaderValue>), UpstreamHandshakeError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let exchange = async {
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream WebSocket handshake connection ended with an error");
            }
        });
        let mut answer = sender.send_request(request).await?;
        let protocol = check_upstream_answer(answer.status(), answer.headers(), key, offered)?;
        let upgraded = hyper::upgrade::on(&mut answer).await?;
        Ok((upgraded, protocol))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| UpstreamHandshakeError::TimedOut(timeout))?
}

/// The value of `name` when the header appears exactly once.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

/// Whether the comma-separated header `name` contains `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    tokens(headers, name)
        .iter()
        .any(|t| t.eq_ignore_ascii_case(token))
}

/// The comma-separated values of every `name` header, trimmed, without empty ones.
fn tokens(headers: &HeaderMap, name: &HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// A `Sec-WebSocket-Key`: 16 bytes in base64, so 22 base64 characters and `==`.
fn is_key(key: &str) -> bool {
    key.len() == 24
        && key.ends_with("==")
        && key.as_bytes()[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of RFC 6455 §1.3.
    const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn client_headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        headers
    }

    fn upgrade_request() -> HeaderMap {
        client_headers(&[
            ("host", "pipelock:8888"),
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", RFC_KEY),
            ("sec-websocket-protocol", "chat, superchat"),
            ("sec-websocket-extensions", "permessage-deflate"),
            ("origin", "http://agent.local"),
            ("cookie", "session=1"),
            ("proxy-authorization", "Basic eDp5"),
            ("x-custom", "kept"),
        ])
    }

    #[test]
    fn the_client_gets_the_rfc_accept_value() {
        let handshake =
            ClientHandshake::check(&Method::GET, &upgrade_request()).expect("a valid handshake");
        assert_eq!(handshake.protocols, vec!["chat", "superchat"]);
        let chosen = HeaderValue::from_static("chat");
        let answer = handshake.switching(Some(&chosen));
        assert_eq!(answer.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(answer.headers()[SEC_WEBSOCKET_ACCEPT], RFC_ACCEPT);
        assert_eq!(answer.headers()[SEC_WEBSOCKET_PROTOCOL], "chat");
        assert_eq!(answer.headers()[UPGRADE], "websocket");
    }

    #[test]
    fn malformed_client_handshakes_are_named() {
        let check = |method: Method, drop: &str, set: Option<(&str, &str)>| {
            let mut headers = upgrade_request();
            headers.remove(drop);
            if let Some((name, value)) = set {
                headers.insert(
                    HeaderName::from_bytes(name.as_bytes()).expect("name"),
                    HeaderValue::from_str(value).expect("value"),
                );
            }
            ClientHandshake::check(&method, &headers).err()
        };
        assert_eq!(
            check(Method::POST, "x-none", None),
            Some(ClientHandshakeError::NotGet(Method::POST))
        );
        assert_eq!(
            check(Method::GET, "upgrade", None),
            Some(ClientHandshakeError::NotUpgrade)
        );
        assert_eq!(
            check(Method::GET, "connection", None),
            Some(ClientHandshakeError::NoConnectionUpgrade)
        );
        assert_eq!(
            check(Method::GET, "x-none", Some(("sec-websocket-version", "8"))),
            Some(ClientHandshakeError::Version)
        );
        let mut twice = upgrade_request();
        twice.append(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        assert_eq!(
            ClientHandshake::check(&Method::GET, &twice).err(),
            Some(ClientHandshakeError::Version)
        );
        assert_eq!(
            check(Method::GET, "sec-websocket-key", None),
            Some(ClientHandshakeError::Key)
        );
        assert_eq!(
            check(
                Method::GET,
                "x-none",
                Some(("sec-websocket-key", "short=="))
            ),
            Some(ClientHandshakeError::Key)
        );
    }

    #[test]
    fn upstream_request_filters_headers_by_settings() {
        let target = Target::parse("ws://127.0.0.1:9001/chat?x=1").expect("target");
        let defaults = WebsocketProxy::default();
        let request = upstream_request(
            &upgrade_request(),
            &target,
            &defaults,
            "bXkgb3duIGtleSAxMjM0NQ==",
        )
        .expect("builds");
        let headers = request.headers();
        assert_eq!(request.uri(), "/chat?x=1");
        assert_eq!(headers[HOST], "127.0.0.1:9001");
        assert_eq!(headers[ORIGIN], "http://127.0.0.1:9001");
        assert_eq!(headers[SEC_WEBSOCKET_KEY], "bXkgb3duIGtleSAxMjM0NQ==");
        assert_eq!(headers[SEC_WEBSOCKET_VERSION], "13");
        assert_eq!(headers[SEC_WEBSOCKET_PROTOCOL], "chat, superchat");
        assert_eq!(headers["x-custom"], "kept");
        for gone in [
            "cookie",
            "sec-websocket-extensions",
            "proxy-authorization",
            "keep-alive",
        ] {
            assert!(!headers.contains_key(gone), "{gone} was forwarded");
        }

        let open = WebsocketProxy {
            forward_cookies: true,
            strip_compression: false,
            origin_policy: OriginPolicy::Forward,
            ..WebsocketProxy::default()
        };
        let request =
            upstream_request(&upgrade_request(), &target, &open, RFC_KEY).expect("builds");
        assert_eq!(request.headers()[COOKIE], "session=1");
        assert_eq!(request.headers()[ORIGIN], "http://agent.local");
        assert_eq!(
            request.headers()[SEC_WEBSOCKET_EXTENSIONS],
            "permessage-deflate"
        );

        let strip = WebsocketProxy {
            origin_policy: OriginPolicy::Strip,
            ..WebsocketProxy::default()
        };
        let request =
            upstream_request(&upgrade_request(), &target, &strip, RFC_KEY).expect("builds");
        assert!(!request.headers().contains_key(ORIGIN));
    }

    #[test]
    fn upstream_answers_are_checked() {
        let good = client_headers(&[
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-accept", RFC_ACCEPT),
        ]);
        let offered = vec!["chat".to_string()];
        let ok = check_upstream_answer(StatusCode::SWITCHING_PROTOCOLS, &good, RFC_KEY, &offered);
        assert!(matches!(ok, Ok(None)), "{ok:?}");
        assert!(matches!(
            check_upstream_answer(StatusCode::OK, &good, RFC_KEY, &offered),
            Err(UpstreamHandshakeError::Status(StatusCode::OK))
        ));
        assert!(matches!(
            check_upstream_answer(
                StatusCode::SWITCHING_PROTOCOLS,
                &good,
                "bXkgb3duIGtleSAxMjM0NQ==",
                &offered
            ),
            Err(UpstreamHandshakeError::Accept)
        ));
        let mut deflate = good.clone();
        deflate.insert(
            SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static("permessage-deflate"),
        );
        assert!(matches!(
            check_upstream_answer(StatusCode::SWITCHING_PROTOCOLS, &deflate, RFC_KEY, &offered),
            Err(UpstreamHandshakeError::Extension(_))
        ));
        let mut chat = good.clone();
        chat.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("chat"));
        let chosen =
            check_upstream_answer(StatusCode::SWITCHING_PROTOCOLS, &chat, RFC_KEY, &offered);
        assert!(
            matches!(chosen, Ok(Some(ref p)) if p == "chat"),
            "{chosen:?}"
        );
        let mut other = good;
        other.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("mqtt"));
        assert!(matches!(
            check_upstream_answer(StatusCode::SWITCHING_PROTOCOLS, &other, RFC_KEY, &offered),
            Err(UpstreamHandshakeError::Subprotocol(_))
        ));
    }
}
