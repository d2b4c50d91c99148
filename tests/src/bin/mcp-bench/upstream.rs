//! The fixed-cost MCP upstream: a tiny Streamable HTTP server in the benchmark's process, so
//! that the time a tool call takes there is small and the same on every call, and what
//! Pipelock adds stands out.
//!
//! HTTP/1.1 with keep-alive, a thread per connection, on 127.0.0.1. `POST /mcp` takes one
//! JSON-RPC message: `initialize` opens a session (its id in `Mcp-Session-Id`, required on
//! every later message), notifications get 202, `tools/list` lists [`TOOLS`], `tools/call`
//! of a listed tool answers [`forecast_text`] as one text content. Every answer is
//! `application/json` with a `Content-Length`. `GET` gets 405 (no server stream is offered),
//! `DELETE` ends the session. The server counts the connections it accepted and the tool
//! calls it answered, which shows whether Pipelock reuses its upstream connections.

use std::collections::HashSet;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::http::{self, IO_TIMEOUT};

/// How long an idle connection (a pooled one of Pipelock's) is kept open.
const IDLE: Duration = Duration::from_secs(120);
/// Most connections served at once; more are closed at once.
const MAX_CONNECTIONS: u64 = 64;
/// The protocol version answered when the client asks for none.
const PROTOCOL_VERSION: &str = "2025-06-18";

/// The tool the benchmark calls, and its arguments.
pub const TOOL: &str = "get_forecast";

/// The tools of `tools/list`: a few, as a small real server has.
const TOOLS: &str = r#"[
 {"name":"get_forecast","title":"Weather forecast","description":"Returns the weather forecast for a city for the next few days: conditions, temperatures and wind.","inputSchema":{"type":"object","properties":{"city":{"type":"string","description":"City name, for example Lisbon."},"days":{"type":"integer","minimum":1,"maximum":7,"default":3,"description":"Number of days."}},"required":["city"]},"annotations":{"readOnlyHint":true,"openWorldHint":true}},
 {"name":"search_documents","title":"Search documents","description":"Searches the team's documents and returns the best matching titles with a short excerpt each.","inputSchema":{"type":"object","properties":{"query":{"type":"string","description":"Full-text query."},"limit":{"type":"integer","minimum":1,"maximum":50,"default":10}},"required":["query"]},"annotations":{"readOnlyHint":true}},
 {"name":"create_calendar_event","title":"Create a calendar event","description":"Creates an event in the user's calendar with a title, start and end time, and optional attendees.","inputSchema":{"type":"object","properties":{"title":{"type":"string"},"start":{"type":"string","format":"date-time"},"end":{"type":"string","format":"date-time"},"attendees":{"type":"array","items":{"type":"string","format":"email"}}},"required":["title","start","end"]},"annotations":{"readOnlyHint":false,"idempotentHint":false}},
 {"name":"convert_currency","title":"Convert currency","description":"Converts an amount between two currencies at today's reference rate.","inputSchema":{"type":"object","properties":{"amount":{"type":"number"},"from":{"type":"string","description":"ISO 4217 code."},"to":{"type":"string","description":"ISO 4217 code."}},"required":["amount","from","to"]},"annotations":{"readOnlyHint":true}}
]"#;

/// The text of every `tools/call` answer: a few hundred bytes of clean prose.
pub fn forecast_text() -> &'static str {
    "Forecast for Lisbon, next three days. Monday: sunny spells after a misty start, \
     light north-westerly winds, high of 24 degrees and a low of 16. Tuesday: mostly sunny \
     and a little warmer, with a high of 26 degrees; the breeze picks up along the coast in \
     the afternoon. Wednesday: cloud arriving from the Atlantic by midday, a chance of light \
     showers in the evening, high of 22 degrees. Sunrise is at 07:12 and sunset at 20:31; \
     the UV index stays moderate to high around noon."
}

/// What the server counted.
#[derive(Debug, Default)]
pub struct Counts {
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// `tools/call` requests answered with a result.
    pub tool_calls: AtomicU64,
}

/// The running server; stopped on drop.
pub struct FixedUpstream {
    pub addr: SocketAddr,
    pub counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FixedUpstream {
    pub fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(State::new()?);
        let open = Arc::new(AtomicU64::new(0));
        let thread = {
            let counts = Arc::clone(&counts);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    counts.connections.fetch_add(1, Ordering::Relaxed);
                    if open.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
                        open.fetch_sub(1, Ordering::Relaxed);
                        continue;
                    }
                    let (state, counts, open) =
                        (Arc::clone(&state), Arc::clone(&counts), Arc::clone(&open));
                    std::thread::spawn(move || {
                        // A connection ends when the peer leaves, times out or misbehaves.
                        if let Err(error) = serve(stream, &state, &counts) {
                            eprintln!("mcp-bench: upstream connection: {error:#}");
                        }
                        open.fetch_sub(1, Ordering::Relaxed);
                    });
                }
            })
        };
        Ok(Self {
            addr,
            counts,
            stop,
            thread: Some(thread),
        })
    }

    /// The MCP endpoint's URL.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }
}

impl Drop for FixedUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The sessions, and the answers that never change.
struct State {
    sessions: Mutex<HashSet<String>>,
    next_session: AtomicU64,
    tools: Value,
    /// The `result` of every tool call, serialized once.
    call_result: String,
}

impl State {
    fn new() -> Result<Self> {
        let tools: Value = serde_json::from_str(TOOLS).context("the tool list")?;
        let call_result = json!({
            "content": [{"type": "text", "text": forecast_text()}],
            "isError": false
        })
        .to_string();
        Ok(Self {
            sessions: Mutex::new(HashSet::new()),
            next_session: AtomicU64::new(1),
            tools,
            call_result,
        })
    }

    fn has_session(&self, id: &str) -> bool {
        self.sessions.lock().is_ok_and(|s| s.contains(id))
    }
}

/// What to send back for one request.
struct Answer {
    status: &'static str,
    session: Option<String>,
    extra_headers: &'static str,
    body: String,
}

impl Answer {
    fn json(body: String) -> Self {
        Self {
            status: "200 OK",
            session: None,
            extra_headers: "",
            body,
        }
    }

    fn empty(status: &'static str) -> Self {
        Self {
            status,
            session: None,
            extra_headers: "",
            body: String::new(),
        }
    }

    fn write_to(&self, writer: &mut impl Write) -> Result<()> {
        let mut head = format!("HTTP/1.1 {}\r\n", self.status);
        if !self.body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if let Some(session) = &self.session {
            head.push_str("Mcp-Session-Id: ");
            head.push_str(session);
            head.push_str("\r\n");
        }
        head.push_str(self.extra_headers);
        head.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        let mut out = head.into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        writer.write_all(&out)?;
        Ok(())
    }
}

/// Serves the requests of one connection until the peer closes it or stays idle for [`IDLE`].
fn serve(stream: TcpStream, state: &State, counts: &Counts) -> Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IDLE))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut body = Vec::new();
    loop {
        let Some(head) = http::read_head(&mut reader, &mut line)? else {
            return Ok(());
        };
        http::read_body(&mut reader, http::framing(&head, true)?, &mut body)?;
        let method = head.start.split(' ').next().unwrap_or_default();
        let answer = match method {
            "POST" => post(state, counts, &head, &body),
            "DELETE" => {
                let ended = head
                    .get("mcp-session-id")
                    .is_some_and(|id| state.sessions.lock().is_ok_and(|mut s| s.remove(id)));
                Answer::empty(if ended { "200 OK" } else { "404 Not Found" })
            }
            // No server-initiated stream is offered, as the transport allows.
            _ => Answer {
                extra_headers: "Allow: POST, DELETE\r\n",
                ..Answer::empty("405 Method Not Allowed")
            },
        };
        answer.write_to(&mut writer)?;
        if head.closes() {
            return Ok(());
        }
    }
}

/// Answers one POSTed JSON-RPC message.
fn post(state: &State, counts: &Counts, head: &http::Head, body: &[u8]) -> Answer {
    let Ok(message) = serde_json::from_slice::<Value>(body) else {
        return Answer {
            status: "400 Bad Request",
            ..rpc_error(&Value::Null, -32700, "parse error")
        };
    };
    let method = message.get("method").and_then(Value::as_str);
    let id = message.get("id");
    if method == Some("initialize") {
        let Some(id) = id else {
            return Answer::empty("400 Bad Request");
        };
        let version = message
            .pointer("/params/protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(PROTOCOL_VERSION);
        let number = state.next_session.fetch_add(1, Ordering::Relaxed);
        let session = format!(
            "{:016x}{:016x}",
            number,
            number.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        );
        if let Ok(mut sessions) = state.sessions.lock() {
            sessions.insert(session.clone());
        }
        let result = json!({
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": false}},
            "serverInfo": {"name": "mcp-bench-upstream", "version": "1.0.0"}
        });
        return Answer {
            session: Some(session),
            ..Answer::json(json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string())
        };
    }
    match head.get("mcp-session-id") {
        None => {
            return Answer {
                status: "400 Bad Request",
                ..rpc_error(id.unwrap_or(&Value::Null), -32000, "no Mcp-Session-Id")
            }
        }
        Some(session) if !state.has_session(session) => {
            return Answer {
                status: "404 Not Found",
                ..rpc_error(id.unwrap_or(&Value::Null), -32001, "unknown session")
            }
        }
        Some(_) => {}
    }
    let Some(id) = id else {
        // A notification (or a response to a server request, of which there are none).
        return Answer::empty("202 Accepted");
    };
    match method {
        Some("tools/list") => Answer::json(
            json!({"jsonrpc": "2.0", "id": id, "result": {"tools": state.tools}}).to_string(),
        ),
        Some("tools/call") => {
            let name = message.pointer("/params/name").and_then(Value::as_str);
            let known = state
                .tools
                .as_array()
                .is_some_and(|tools| tools.iter().any(|t| t["name"].as_str() == name));
            if !known {
                return rpc_error(id, -32602, "unknown tool");
            }
            counts.tool_calls.fetch_add(1, Ordering::Relaxed);
            Answer::json(format!(
                r#"{{"jsonrpc":"2.0","id":{id},"result":{}}}"#,
                state.call_result
            ))
        }
        Some("ping") => Answer::json(json!({"jsonrpc": "2.0", "id": id, "result": {}}).to_string()),
        _ => rpc_error(id, -32601, "method not found"),
    }
}

fn rpc_error(id: &Value, code: i64, message: &str) -> Answer {
    Answer::json(
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
            .to_string(),
    )
}
