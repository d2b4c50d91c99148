//! Relaying an MCP server's `text/event-stream` event by event: each complete event is cut from
//! the stream as it arrives, its `data` (one JSON-RPC message or batch) goes through the
//! inspector, and the event is passed on at once: unchanged, byte for byte, or with its data
//! replaced (its `id:`, `event:` and `retry:` lines kept, so resumption still works), or
//! without its data when the inspector withheld a server request (answered to the server,
//! [`super::answer_server`]). Events without data (comments, keep-alives) pass untouched.
//! Nothing is buffered beyond the event in progress, which may not exceed
//! [`MAX_MESSAGE_BYTES`].
//!
//! The relay is the response body itself: the client connection reads the upstream as it
//! writes, with no task or queue in between, so an answer that arrives whole (headers, one
//! event, end) goes out in one write. It ends when the client goes away (the body is dropped),
//! the upstream ends or fails, the kill switch turns on (checked per event) or Pipelock shuts
//! down.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame};

use super::{answer_server, Exchange, McpProxy};
use crate::mcp::jsonrpc::MAX_MESSAGE_BYTES;
use crate::mcp::judge::{judge_server, ToClient};
use crate::proxy::forward::pool::Returning;
use crate::proxy::ServerState;

/// What the relay needs besides the stream.
pub struct SseRelay {
    pub state: Arc<ServerState>,
    pub proxy: Arc<McpProxy>,
    /// The request this stream answers: its requests (none for the GET stream) and
    /// Pipelock's own answers to send first, each as one event (replaced requests of a batch
    /// whose other messages were forwarded).
    pub exchange: Exchange,
}

/// The relayed stream, as the response body.
pub struct SseBody {
    relay: SseRelay,
    upstream: Returning,
    /// Bytes of the event in progress.
    pending: Vec<u8>,
    /// How many of `exchange.first` were sent.
    first_sent: usize,
    /// Resolves when Pipelock shuts down.
    stopping: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
    /// The upstream's body is over; what is buffered is the rest of the stream.
    upstream_ended: bool,
    done: bool,
}

impl SseRelay {
    /// The body that relays `upstream`.
    pub fn start(self, upstream: Returning) -> SseBody {
        let mut stopping = self.state.stopping.subscribe();
        SseBody {
            relay: self,
            upstream,
            pending: Vec::new(),
            first_sent: 0,
            stopping: Box::pin(async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            }),
            upstream_ended: false,
            done: false,
        }
    }

    /// The event as it goes to the client.
    fn judge(&self, event: Vec<u8>) -> Bytes {
        let parsed = Event::parse(&event);
        let Some(data) = parsed.data else {
            return Bytes::from(event);
        };
        let exchange = &self.exchange;
        let judged = judge_server(
            self.proxy.inspector.as_ref(),
            &exchange.scan_key,
            &exchange.requests,
            data.as_bytes(),
        );
        answer_server(
            &self.state,
            &self.proxy,
            &exchange.client_headers,
            &exchange.session,
            judged.to_server,
        );
        let data = match judged.to_client {
            ToClient::Unchanged => return Bytes::from(event),
            ToClient::Replaced(value) => Some(value.to_string()),
            ToClient::Nothing => None,
        };
        let mut out = String::new();
        for line in parsed.other_lines {
            out.push_str(&line);
            out.push('\n');
        }
        if let Some(data) = data {
            out.push_str("data: ");
            out.push_str(&data);
            out.push('\n');
        }
        if out.is_empty() {
            // Nothing left of the event.
            return Bytes::new();
        }
        out.push('\n');
        Bytes::from(out)
    }
}

impl SseBody {
    /// The next bytes for the client from what is buffered: Pipelock's own answers first,
    /// then the next complete event that leaves something to send (the rest of the stream
    /// when it is over). `None` when more of the stream is needed, or at its end.
    fn next_out(&mut self, at_end: bool) -> Option<Bytes> {
        if let Some(answer) = self.relay.exchange.first.get(self.first_sent) {
            self.first_sent += 1;
            return Some(Bytes::from(format!("data: {answer}\n\n")));
        }
        loop {
            let event: Vec<u8> = match event_end(&self.pending, at_end) {
                Some(end) => self.pending.drain(..end).collect(),
                None if at_end && !self.pending.is_empty() => std::mem::take(&mut self.pending),
                None => return None,
            };
            let state = &self.relay.state;
            if state.kill_switch.active().is_some() {
                state
                    .metrics
                    .record_mcp_message("server", "refused", "kill_switch");
                tracing::warn!("MCP event stream closed: kill switch active");
                self.done = true;
                return None;
            }
            let out = self.relay.judge(event);
            if !out.is_empty() {
                return Some(out);
            }
        }
    }
}

impl SseBody {
    /// With nothing left buffered, takes what the upstream already has, so that the end of
    /// the stream is known with its last event ([`HttpBody::is_end_stream`]) and goes out in
    /// the same write instead of a later one the client must wait for.
    fn peek_end(&mut self, cx: &mut Context<'_>) {
        if self.upstream_ended || self.done || !self.pending.is_empty() {
            return;
        }
        let _ = self.poll_upstream(cx);
    }

    /// Reads what the upstream has into `pending`, or notes its end or failure.
    fn poll_upstream(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match Pin::new(&mut self.upstream).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    self.pending.extend_from_slice(&data);
                }
            }
            Poll::Ready(Some(Err(error))) => {
                tracing::debug!(%error, "MCP upstream event stream failed");
                self.done = true;
            }
            Poll::Ready(None) => self.upstream_ended = true,
        }
        Poll::Ready(())
    }
}

impl HttpBody for SseBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if this.stopping.as_mut().poll(cx).is_ready() {
                this.done = true;
                continue;
            }
            if let Some(out) = this.next_out(this.upstream_ended) {
                this.peek_end(cx);
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
            if this.done || this.upstream_ended {
                this.done = true;
                continue;
            }
            // Only an incomplete event is buffered now.
            if this.pending.len() > MAX_MESSAGE_BYTES {
                tracing::warn!(
                    limit = MAX_MESSAGE_BYTES,
                    "MCP event stream closed: an event exceeds the size limit"
                );
                this.done = true;
                continue;
            }
            if this.poll_upstream(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
            || (self.upstream_ended
                && self.pending.is_empty()
                && self.first_sent >= self.relay.exchange.first.len())
    }
}

/// The end (exclusive) of the first complete event in `buffer`: after the blank line that ends
/// it. Lines end with CRLF, LF or CR. A CR at the very end of the buffer may be the first half
/// of a CRLF, so it ends nothing yet unless the stream is over (`at_end`).
fn event_end(buffer: &[u8], at_end: bool) -> Option<usize> {
    let mut i = 0;
    let mut line_start = 0;
    while i < buffer.len() {
        let terminator = match buffer[i] {
            b'\n' => 1,
            b'\r' if i + 1 < buffer.len() => {
                if buffer[i + 1] == b'\n' {
                    2
                } else {
                    1
                }
            }
            b'\r' if at_end => 1,
            b'\r' => return None,
            _ => {
                i += 1;
                continue;
            }
        };
        if i == line_start && i > 0 {
            return Some(i + terminator);
        }
        if i == line_start && i == 0 {
            // A blank line at the very start: an empty event, passed on as it is.
            return Some(terminator);
        }
        i += terminator;
        line_start = i;
    }
    None
}

/// One event's fields: the joined `data` and every other line as it was.
struct Event {
    data: Option<String>,
    other_lines: Vec<String>,
}

impl Event {
    fn parse(event: &[u8]) -> Self {
        let text = String::from_utf8_lossy(event);
        let mut data: Option<String> = None;
        let mut other_lines = Vec::new();
        for line in text.split(['\n', '\r']).filter(|l| !l.is_empty()) {
            if let Some(value) = line.strip_prefix("data") {
                if value.is_empty() || value.starts_with(':') {
                    let value = value.strip_prefix(':').unwrap_or(value);
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match &mut data {
                        Some(joined) => {
                            joined.push('\n');
                            joined.push_str(value);
                        }
                        None => data = Some(value.to_string()),
                    }
                    continue;
                }
            }
            other_lines.push(line.to_string());
        }
        Self {
            data: data.filter(|d| !d.trim().is_empty()),
            other_lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_end_at_a_blank_line_of_any_style() {
        assert_eq!(event_end(b"data: x\n\nrest", false), Some(9));
        assert_eq!(event_end(b"data: x\r\n\r\nrest", false), Some(11));
        assert_eq!(event_end(b"data: x\r\rrest", false), Some(9));
        assert_eq!(event_end(b"data: x\n", false), None);
        assert_eq!(event_end(b"data: x\r\n\r", false), None);
        assert_eq!(event_end(b"data: x\r\n\r", true), Some(10));
        assert_eq!(event_end(b"\nx", false), Some(1));
    }

    #[test]
    fn fields_are_parsed_and_other_lines_kept() {
        let event = Event::parse(b"id: 7\nevent: message\ndata: {\"a\":\ndata:1}\n: comment\n\n");
        assert_eq!(event.data.as_deref(), Some("{\"a\":\n1}"));
        assert_eq!(
            event.other_lines,
            vec!["id: 7", "event: message", ": comment"]
        );
        assert!(Event::parse(b": keep-alive\n\n").data.is_none());
        assert!(Event::parse(b"id: 1\ndata:\n\n").data.is_none());
    }
}
