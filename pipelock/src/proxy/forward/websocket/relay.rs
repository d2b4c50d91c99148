//! The message relay between the client's WebSocket and the upstream's.
//!
//! tungstenite reads each side's frames and reassembles fragmented messages, so what is
//! judged is always a whole message, however it was split into frames:
//!
//! - text, client → upstream: DLP (`scan_outbound`), judged with
//!   `request_body_scanning.action`;
//! - text, upstream → client: prompt injection (`scan_inbound`), judged with
//!   `response_scanning.action` (`strip` and `ask` block here: a message cannot be edited
//!   in flight), unless `response_scanning` is off or the host is in its `exempt_domains`;
//! - `scan_text_frames: false` turns both scans off;
//! - binary messages are never scanned: refused (close 1003) unless `allow_binary_frames`,
//!   then forwarded as they are;
//! - a message (or frame) over `max_message_bytes` cannot be scanned and ends the session
//!   (close 1009), as do malformed frames (1002) and invalid UTF-8 in text (1007);
//! - pings are answered by each side's own WebSocket (they are not relayed), pongs dropped;
//!   a close from one side is passed to the other;
//! - `idle_timeout_seconds` without a message either way, or `max_connection_seconds` in
//!   all, close both sides with 1001, as does Pipelock shutting down.
//!
//! Not scanned: a secret or an injection split across *separate* messages (each message is
//! judged alone), and binary payloads.
//!
//! A blocked message is never forwarded: the client gets close 1008 naming the rule (never
//! the matched text), the upstream close 1008, and both connections end.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::super::judge::Judgement;
use crate::config::{BlockOrWarn, ResponseAction};
use crate::proxy::ServerState;

/// One side of the session.
type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// How long the closing handshakes may take once the session is ending.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// The longest close reason a frame can carry (125 bytes of payload less the code).
const MAX_REASON: usize = 123;

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client to upstream.
    Out,
    /// Upstream to client.
    In,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Self::Out => "out",
            Self::In => "in",
        }
    }
}

/// A session's settings, read once from the config.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub idle: Duration,
    pub max: Duration,
}

impl Limits {
    #[must_use]
    pub fn from_config(state: &ServerState) -> Self {
        let section = &state.config.websocket_proxy;
        Self {
            max_message_bytes: usize::try_from(section.max_message_bytes).unwrap_or(usize::MAX),
            idle: Duration::from_secs(section.idle_timeout_seconds.max(1)),
            max: Duration::from_secs(section.max_connection_seconds.max(1)),
        }
    }

    /// The framing limits of both sides: nothing larger than a message is buffered.
    fn config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .max_message_size(Some(self.max_message_bytes))
            .max_frame_size(Some(self.max_message_bytes))
    }
}

/// How the relay ended, for the log.
#[derive(Debug)]
pub struct Ended {
    pub reason: String,
    pub messages_out: u64,
    pub messages_in: u64,
}

/// What the relay does after one event.
enum Next {
    Relay,
    /// A side closed and its close frame was passed on: finish the handshakes.
    Closing(&'static str),
    /// Pipelock ends the session with these close frames.
    End(Ending),
}

/// The close frames Pipelock sends when it ends a session, and why.
struct Ending {
    client: CloseFrame,
    upstream: CloseFrame,
    reason: String,
}

impl Ending {
    /// The same code both ways.
    fn both(code: CloseCode, reason: &str) -> Self {
        Self {
            client: close_frame(code, reason),
            upstream: close_frame(code, reason),
            reason: reason.to_string(),
        }
    }
}

/// A running session: both sockets and what it has seen.
pub struct Relay {
    state: Arc<ServerState>,
    host: String,
    limits: Limits,
    scan_inbound: bool,
    warned: HashSet<String>,
    messages_out: u64,
    messages_in: u64,
}

impl Relay {
    #[must_use]
    pub fn new(state: Arc<ServerState>, host: String, limits: Limits) -> Self {
        let scanning = &state.config.response_scanning;
        let exempt = scanning
            .exempt_domains
            .iter()
            .any(|p| crate::scan::url::matches_domain(p, &host));
        let scan_inbound = scanning.enabled && !exempt;
        Self {
            state,
            host,
            limits,
            scan_inbound,
            warned: HashSet::new(),
            messages_out: 0,
            messages_in: 0,
        }
    }

    /// Relays between the upgraded client and upstream connections until one side closes,
    /// a message is refused, or a time limit passes; then closes both.
    pub async fn run(mut self, client: Upgraded, upstream: Upgraded) -> Ended {
        let config = self.limits.config();
        let mut client =
            WebSocketStream::from_raw_socket(TokioIo::new(client), Role::Server, Some(config))
                .await;
        let mut upstream =
            WebSocketStream::from_raw_socket(TokioIo::new(upstream), Role::Client, Some(config))
                .await;
        let started = tokio::time::Instant::now();
        let deadline = started + self.limits.max;
        let mut last_message = started;
        let mut stopping = self.state.stopping.subscribe();
        let shutdown = async move {
            // The sender lives in the state this relay holds, so the wait ends only when
            // Pipelock shuts down (or had already begun to).
            if stopping.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(shutdown);
        let mut kill_switch = self.state.kill_switch.subscribe();
        let killed = async move {
            if kill_switch.wait_for(|on| *on).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(killed);
        let next = loop {
            let idle_at = last_message + self.limits.idle;
            let next = tokio::select! {
                item = client.next() => {
                    last_message = tokio::time::Instant::now();
                    self.on_item(Direction::Out, item, &mut upstream).await
                }
                item = upstream.next() => {
                    last_message = tokio::time::Instant::now();
                    self.on_item(Direction::In, item, &mut client).await
                }
                () = tokio::time::sleep_until(idle_at) => Next::End(Ending::both(
                    CloseCode::Away,
                    "idle timeout (websocket_proxy.idle_timeout_seconds)",
                )),
                () = tokio::time::sleep_until(deadline) => Next::End(Ending::both(
                    CloseCode::Away,
                    "connection time limit (websocket_proxy.max_connection_seconds)",
                )),
                () = &mut shutdown => Next::End(Ending::both(
                    CloseCode::Away,
                    "pipelock is shutting down",
                )),
                () = &mut killed => Next::End(Ending::both(
                    CloseCode::Policy,
                    "kill switch active",
                )),
            };
            if !matches!(next, Next::Relay) {
                break next;
            }
        };
        let (reason, frames) = match next {
            Next::Relay => (String::new(), None),
            Next::Closing(reason) => (reason.to_string(), None),
            Next::End(ending) => (ending.reason, Some((ending.client, ending.upstream))),
        };
        let (to_client, to_upstream) = frames.unzip();
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            tokio::join!(
                finish(&mut client, to_client),
                finish(&mut upstream, to_upstream)
            )
        })
        .await;
        Ended {
            reason,
            messages_out: self.messages_out,
            messages_in: self.messages_in,
        }
    }

    /// Handles what one side's socket produced; `to` is the other side.
    async fn on_item(
        &mut self,
        direction: Direction,
        item: Option<Result<Message, WsError>>,
        to: &mut Socket,
    ) -> Next {
        let message = match item {
            Some(Ok(message)) => message,
            Some(Err(error)) => return self.on_error(direction, &error),
            None => return gone(direction),
        };
        let forward = match message {
            Message::Text(text) => {
                if let Some(ending) = self.judge_text(direction, &text) {
                    return Next::End(ending);
                }
                self.count(direction, text.len());
                Message::Text(text)
            }
            Message::Binary(bytes) => {
                if !self.state.config.websocket_proxy.allow_binary_frames {
                    self.state
                        .metrics
                        .record_websocket_message(direction.label(), "refused");
                    tracing::warn!(target_host = %self.host, direction = direction.label(), "binary WebSocket message refused (websocket_proxy.allow_binary_frames: false)");
                    return Next::End(Ending::both(
                        CloseCode::Unsupported,
                        "binary messages are not allowed",
                    ));
                }
                // Forwarded unscanned (allow_binary_frames: true).
                self.state
                    .metrics
                    .record_websocket_message(direction.label(), "unscanned");
                self.count(direction, bytes.len());
                Message::Binary(bytes)
            }
            // Each side's WebSocket answers its own pings.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Next::Relay,
            Message::Close(frame) => {
                let _ = tokio::time::timeout(CLOSE_GRACE, to.close(frame)).await;
                return Next::Closing(match direction {
                    Direction::Out => "closed by the client",
                    Direction::In => "closed by the upstream",
                });
            }
        };
        // A side that stops reading would hold the relay here, past every timer: a send
        // may take at most the idle timeout.
        match tokio::time::timeout(self.limits.idle, to.send(forward)).await {
            Ok(Ok(())) => Next::Relay,
            Ok(Err(_)) => gone(opposite(direction)),
            Err(_) => Next::End(Ending::both(
                CloseCode::Away,
                "a peer stopped reading (websocket_proxy.idle_timeout_seconds)",
            )),
        }
    }

    /// Scans a text message; `Some` when it is refused.
    fn judge_text(&mut self, direction: Direction, text: &str) -> Option<Ending> {
        let state = Arc::clone(&self.state);
        let mut judged = Judgement::default();
        let scanned = state.config.websocket_proxy.scan_text_frames
            && (direction == Direction::Out || self.scan_inbound);
        let verdict = if scanned {
            match direction {
                Direction::Out => {
                    let blocks = state.config.request_body_scanning.action == BlockOrWarn::Block;
                    judged.add(&state, state.scanner.scan_outbound(text), blocks);
                }
                Direction::In => {
                    let blocks = state.config.response_scanning.action != ResponseAction::Warn;
                    judged.add(&state, state.scanner.scan_inbound(text), blocks);
                }
            }
            judged.outcome().0
        } else {
            "unscanned"
        };
        state
            .metrics
            .record_websocket_message(direction.label(), verdict);
        if let Some(finding) = judged.block {
            tracing::warn!(
                target_host = %self.host,
                direction = direction.label(),
                rule = %finding.rule_id,
                scanner = %finding.scanner,
                "WebSocket message blocked; session closed"
            );
            let reason = format!("blocked by pipelock: {}", finding.rule_id);
            return Some(Ending {
                client: close_frame(CloseCode::Policy, &reason),
                upstream: close_frame(CloseCode::Policy, "closed by proxy policy"),
                reason,
            });
        }
        for warning in judged.warnings {
            if self.warned.insert(warning.rule_id.clone()) {
                tracing::warn!(
                    target_host = %self.host,
                    direction = direction.label(),
                    rule = %warning.rule_id,
                    "WebSocket message forwarded with a warning"
                );
            }
        }
        None
    }

    /// A socket error: the message cannot be read, so the session ends.
    fn on_error(&self, direction: Direction, error: &WsError) -> Next {
        let (code, reason) = match error {
            WsError::Capacity(_) => {
                self.state
                    .metrics
                    .record_websocket_message(direction.label(), "refused");
                tracing::warn!(target_host = %self.host, direction = direction.label(), limit = self.limits.max_message_bytes, "WebSocket message over websocket_proxy.max_message_bytes; session closed");
                (
                    CloseCode::Size,
                    "message too big (websocket_proxy.max_message_bytes)",
                )
            }
            WsError::Utf8(_) => (CloseCode::Invalid, "text message is not UTF-8"),
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) | WsError::Io(_) => {
                return gone(direction)
            }
            WsError::Protocol(_) => (CloseCode::Protocol, "WebSocket protocol error"),
            _ => return gone(direction),
        };
        tracing::debug!(target_host = %self.host, direction = direction.label(), %error, "WebSocket session ends");
        Next::End(Ending::both(code, reason))
    }

    /// Counts a forwarded message: bytes out, or bytes in against the host's data budget.
    fn count(&mut self, direction: Direction, bytes: usize) {
        let bytes = bytes as u64;
        match direction {
            Direction::Out => {
                self.messages_out += 1;
                self.state.metrics.record_proxy_bytes("out", bytes);
            }
            Direction::In => {
                self.messages_in += 1;
                super::super::http::record_inbound(&self.state, &self.host, bytes);
            }
        }
    }
}

fn opposite(direction: Direction) -> Direction {
    match direction {
        Direction::Out => Direction::In,
        Direction::In => Direction::Out,
    }
}

/// The side the message came from dropped its connection without a close handshake.
fn gone(direction: Direction) -> Next {
    Next::End(match direction {
        Direction::Out => Ending::both(CloseCode::Away, "the client went away"),
        Direction::In => Ending::both(CloseCode::Away, "the upstream went away"),
    })
}

fn close_frame(code: CloseCode, reason: &str) -> CloseFrame {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    CloseFrame {
        code,
        reason: reason[..end].to_string().into(),
    }
}

/// Completes one side's closing handshake: sends `close` (when Pipelock ends the session),
/// reads (and drops) what the side still sends until its close arrives, then ends the TCP
/// stream and reads to its end, so unread bytes in the socket do not turn the close into a
/// reset that would lose the close frame.
async fn finish(socket: &mut Socket, close: Option<CloseFrame>) {
    if let Some(frame) = close {
        let _ = socket.send(Message::Close(Some(frame))).await;
    }
    while let Some(Ok(_)) = socket.next().await {}
    let io = socket.get_mut();
    let _ = io.shutdown().await;
    let mut sink = [0u8; 4096];
    while let Ok(n) = io.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_control_frame() {
        let long = "é".repeat(100);
        let frame = close_frame(CloseCode::Policy, &long);
        assert!(frame.reason.len() <= MAX_REASON);
        assert!(long.starts_with(frame.reason.as_str()));
        let short = close_frame(CloseCode::Size, "too big");
        assert_eq!(
            (short.code, short.reason.as_str()),
            (CloseCode::Size, "too big")
        );
    }
}
