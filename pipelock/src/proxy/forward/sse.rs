//! `text/event-stream` responses scanned event by event, so token-by-token chat keeps
//! streaming: each complete event is scanned and, when clean, passed on at once. Injection
//! split across events (one token per event) is caught by also scanning a rolling window of
//! the events' text content. A detection ends the stream with a final `event: error`; an
//! event larger than `sse_streaming.max_event_bytes` cannot be scanned and ends it too.
//! A compressed stream (gzip, deflate, br) is decoded as it arrives and passed on decoded;
//! corrupt compressed data ends the stream like a detection.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::pool::Returning;

use super::judge::Judgement;
use crate::config::ResponseAction;
use crate::proxy::ServerState;
use crate::scan::inflate::StreamDecoder;
use crate::scan::Finding;

/// Text content kept from recent events, for injection split across them.
const WINDOW_BYTES: usize = 4096;
/// JSON keys whose string values are a model's output in the common streaming APIs.
const CONTENT_KEYS: &[&str] = &[
    "content",
    "text",
    "delta",
    "partial_json",
    "arguments",
    "thinking",
];

/// A streamed response body that scans each event before passing it on.
pub struct SseScan {
    inner: Returning,
    state: Arc<ServerState>,
    host: String,
    pending: Vec<u8>,
    window: String,
    ready: VecDeque<Bytes>,
    done: bool,
    seen: u64,
    warned: Vec<String>,
    decoder: Option<StreamDecoder>,
}

impl SseScan {
    /// Scans `inner`, decoding it first with `decoder` when the stream is compressed.
    pub fn new(
        inner: Returning,
        state: Arc<ServerState>,
        host: String,
        decoder: Option<StreamDecoder>,
    ) -> Self {
        Self {
            decoder,
            inner,
            state,
            host,
            pending: Vec::new(),
            window: String::new(),
            ready: VecDeque::new(),
            done: false,
            seen: 0,
            warned: Vec::new(),
        }
    }

    /// Moves every complete event from `pending` to `ready`, or ends the stream on a block.
    fn drain_events(&mut self, at_end: bool) {
        while !self.done {
            let Some((end, boundary)) = event_end(&self.pending) else {
                break;
            };
            let event: Vec<u8> = self.pending.drain(..end + boundary).collect();
            self.judge_event(event);
        }
        let limit = usize::try_from(
            self.state
                .config
                .response_scanning
                .sse_streaming
                .max_event_bytes,
        )
        .unwrap_or(usize::MAX);
        if !self.done && self.pending.len() > limit {
            let finding = too_large(limit);
            self.end_with(&finding);
            return;
        }
        if at_end && !self.done && !self.pending.is_empty() {
            let event = std::mem::take(&mut self.pending);
            self.judge_event(event);
        }
    }

    /// Takes bytes from the origin: decoded when compressed, then split into events.
    fn take_in(&mut self, data: &[u8]) {
        let Some(mut decoder) = self.decoder.take() else {
            self.pending.extend_from_slice(data);
            self.drain_events(false);
            return;
        };
        let pushed = decoder.push(data, &mut |decoded| {
            self.pending.extend_from_slice(&decoded);
            self.drain_events(false);
            !self.done
        });
        match pushed {
            Ok(()) => self.decoder = Some(decoder),
            Err(error) if !self.done => self.end_with(&undecodable(&error)),
            Err(_) => {}
        }
    }

    fn judge_event(&mut self, event: Vec<u8>) {
        let text = String::from_utf8_lossy(&event).into_owned();
        self.append_content(&text);
        let scanning = &self.state.config.response_scanning;
        let blocks = scanning.sse_streaming.action != ResponseAction::Warn;
        let mut judged = Judgement::default();
        judged.add(&self.state, self.state.scanner.scan_inbound(&text), blocks);
        if judged.block.is_none() {
            judged.add(
                &self.state,
                self.state.scanner.scan_inbound(&self.window),
                blocks,
            );
        }
        if let Some(finding) = judged.block {
            self.end_with(&finding);
            return;
        }
        for warning in judged.warnings {
            if !self.warned.contains(&warning.rule_id) {
                tracing::warn!(rule = %warning.rule_id, host = %self.host, "event stream forwarded with a warning");
                self.warned.push(warning.rule_id);
            }
        }
        self.ready.push_back(Bytes::from(event));
    }

    /// Adds the event's text content to the rolling window: from JSON data, the string values
    /// of the usual content keys; otherwise the data lines as they are.
    fn append_content(&mut self, event: &str) {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .collect();
        let data = data.join("\n");
        match serde_json::from_str::<serde_json::Value>(&data) {
            Ok(value) => collect_content(&value, &mut self.window),
            Err(_) => self.window.push_str(&data),
        }
        if self.window.len() > WINDOW_BYTES {
            let mut cut = self.window.len() - WINDOW_BYTES;
            while !self.window.is_char_boundary(cut) {
                cut += 1;
            }
            self.window.drain(..cut);
        }
    }

    fn end_with(&mut self, finding: &Finding) {
        tracing::warn!(rule = %finding.rule_id, host = %self.host, "event stream blocked");
        self.state
            .metrics
            .record_proxy_request("sse", "block", &finding.scanner.to_string());
        let payload = serde_json::json!({
            "error": "blocked",
            "scanner": finding.scanner.to_string(),
            "rule": finding.rule_id,
            "reason": finding.rule_name,
        });
        self.ready
            .push_back(Bytes::from(format!("event: error\ndata: {payload}\n\n")));
        self.pending.clear();
        self.done = true;
    }

    fn finish(&mut self) {
        super::http::record_inbound(&self.state, &self.host, std::mem::take(&mut self.seen));
    }
}

fn collect_content(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match v {
                    serde_json::Value::String(s) if CONTENT_KEYS.contains(&key.as_str()) => {
                        out.push_str(s);
                    }
                    _ => collect_content(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                collect_content(item, out);
            }
        }
        _ => {}
    }
}

fn undecodable(error: &crate::scan::inflate::InflateError) -> Finding {
    Finding::unscannable(
        "response.encoded",
        format!("Event stream: {error}"),
        crate::scan::ScannerKind::Injection,
    )
}

fn too_large(limit: usize) -> Finding {
    Finding::unscannable(
        "response.event_too_large",
        format!("Server-sent event larger than sse_streaming.max_event_bytes ({limit})"),
        crate::scan::ScannerKind::Injection,
    )
}

/// Where the first event in `buffer` ends: (offset of its blank line, the boundary's length).
fn event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = memchr::memmem::find(buffer, b"\n\n").map(|i| (i, 2));
    let crlf = memchr::memmem::find(buffer, b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

impl HttpBody for SseScan {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(event))));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.seen += data.len() as u64;
                        self.take_in(&data);
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    self.done = true;
                    self.finish();
                    return Poll::Ready(Some(Err(std::io::Error::other(error))));
                }
                Poll::Ready(None) => {
                    if let Some(decoder) = self.decoder.take() {
                        match decoder.finish() {
                            Ok(tail) => self.pending.extend_from_slice(&tail),
                            Err(error) => self.end_with(&undecodable(&error)),
                        }
                    }
                    self.drain_events(true);
                    self.done = true;
                    self.finish();
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_end_at_the_first_blank_line() {
        assert_eq!(event_end(b"data: a\n\ndata: b\n\n"), Some((7, 2)));
        assert_eq!(event_end(b"data: a\r\n\r\n"), Some((7, 4)));
        assert_eq!(event_end(b"data: a\n"), None);
    }

    #[test]
    fn content_of_streaming_apis() {
        let mut out = String::new();
        let openai: serde_json::Value = serde_json::from_str(
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"delta":{"content":"ignore"}}]}"#,
        )
        .expect("json");
        collect_content(&openai, &mut out);
        let anthropic: serde_json::Value = serde_json::from_str(
            r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":" all"}}"#,
        )
        .expect("json");
        collect_content(&anthropic, &mut out);
        assert_eq!(out, "ignore all");
    }
}
