//! The benchmark's MCP client: Streamable HTTP over one keep-alive HTTP/1.1 connection with
//! std's blocking sockets (no process or runtime per request, so its own cost stays small and
//! constant).
//!
//! Each POST carries one JSON-RPC message; the answer is read whole, whether the server sends
//! `application/json` (with a `Content-Length`, or chunked) or `text/event-stream` (a stream
//! that ends after the response, chunked), and the JSON-RPC messages it carries are returned.
//! A tool call's answer must be exactly the expected result, or the call fails.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::http::{self, IO_TIMEOUT};

/// The protocol version the client asks for.
const PROTOCOL_VERSION: &str = "2025-06-18";

/// An MCP endpoint on loopback: `http://ADDR/mcp`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub path: String,
}

impl Endpoint {
    /// Parses `http://IP:PORT/PATH`; the address must be a loopback one.
    pub fn parse(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("{url:?} is not an http:// URL"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let addr: SocketAddr = authority
            .parse()
            .with_context(|| format!("{authority:?} is not IP:PORT"))?;
        ensure!(
            addr.ip().is_loopback(),
            "{addr} is not a loopback address: the benchmark stays on loopback"
        );
        Ok(Self {
            addr,
            path: format!("/{path}"),
        })
    }
}

/// One answer to a POST.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub session: Option<String>,
    pub messages: Vec<Value>,
}

/// A keep-alive connection to one endpoint.
pub struct Connection {
    endpoint: Endpoint,
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    request: Vec<u8>,
    line: Vec<u8>,
    body: Vec<u8>,
}

impl Connection {
    pub fn open(endpoint: &Endpoint) -> Result<Self> {
        let stream = TcpStream::connect_timeout(&endpoint.addr, IO_TIMEOUT)
            .with_context(|| format!("connect {}", endpoint.addr))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Self {
            endpoint: endpoint.clone(),
            writer: stream.try_clone()?,
            reader: BufReader::with_capacity(64 * 1024, stream),
            request: Vec::with_capacity(4096),
            line: Vec::new(),
            body: Vec::new(),
        })
    }

    /// POSTs one JSON-RPC message (`body`) on the session, and reads the answer whole.
    pub fn post(&mut self, session: Option<&str>, body: &str) -> Result<Answer> {
        self.request.clear();
        write!(
            self.request,
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: mcp-bench\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: {PROTOCOL_VERSION}\r\n",
            self.endpoint.path, self.endpoint.addr
        )?;
        if let Some(session) = session {
            write!(self.request, "Mcp-Session-Id: {session}\r\n")?;
        }
        write!(self.request, "Content-Length: {}\r\n\r\n{body}", body.len())?;
        self.writer.write_all(&self.request)?;

        let head = http::read_head(&mut self.reader, &mut self.line)?
            .context("the server closed the connection")?;
        let status = head.status()?;
        ensure!(
            !head.closes(),
            "the server closes the keep-alive connection ({})",
            head.start
        );
        let media = head.media_type();
        let framing = if status == 202 && head.get("content-length").is_none() {
            // 202 carries no body; a server may still frame it as chunked.
            if head.get("transfer-encoding").is_some() {
                http::Framing::Chunked
            } else {
                http::Framing::Length(0)
            }
        } else {
            http::framing(&head, false)?
        };
        http::read_body(&mut self.reader, framing, &mut self.body)?;
        let messages = if self.body.is_empty() {
            Vec::new()
        } else if media == "text/event-stream" {
            sse_messages(&self.body)?
        } else if media == "application/json" {
            vec![serde_json::from_slice(&self.body).context("the answer is not JSON")?]
        } else {
            bail!(
                "unexpected answer {} of type {media:?}: {}",
                head.start,
                String::from_utf8_lossy(&self.body)
            );
        };
        Ok(Answer {
            status,
            session: head.get("mcp-session-id").map(str::to_string),
            messages,
        })
    }
}

/// The JSON-RPC messages in the `data:` of each event of an SSE body.
fn sse_messages(body: &[u8]) -> Result<Vec<Value>> {
    let text = std::str::from_utf8(body).context("the event stream is not UTF-8")?;
    let mut messages = Vec::new();
    let mut data = String::new();
    // A blank line ends an event; the stream's end ends the last one.
    for line in text.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if !data.is_empty() {
                messages.push(
                    serde_json::from_str(&data)
                        .with_context(|| format!("an event's data is not JSON: {data}"))?,
                );
                data.clear();
            }
            continue;
        }
        if let Some(value) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    Ok(messages)
}

/// The one response to request `id` among `messages` (notifications may come with it).
fn response_to(messages: &[Value], id: u64) -> Result<&Value> {
    let mut responses = messages
        .iter()
        .filter(|m| m.get("method").is_none() && m.get("id").and_then(Value::as_u64) == Some(id));
    let response = responses
        .next()
        .with_context(|| format!("no response to request {id} in {messages:?}"))?;
    ensure!(responses.next().is_none(), "two responses to request {id}");
    if let Some(error) = response.get("error") {
        bail!("request {id} answered with an error: {error}");
    }
    response
        .get("result")
        .with_context(|| format!("request {id} answered without a result: {response}"))
}

/// A tool call to repeat, and the text its answer must hold.
#[derive(Debug, Clone)]
pub struct ToolCall {
    pub tool: String,
    pub arguments: Value,
    pub expected_text: String,
}

/// An open MCP session: its id and the next request id.
#[derive(Debug)]
pub struct Session {
    id: String,
    next_id: u64,
}

impl Session {
    /// Opens a session on `connection`: `initialize`, `notifications/initialized`, and
    /// `tools/list`, which must list `call`'s tool.
    pub fn open(connection: &mut Connection, call: &ToolCall) -> Result<Self> {
        let initialize = json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "mcp-bench", "version": "1.0.0"}
            }
        });
        let answer = connection.post(None, &initialize.to_string())?;
        ensure!(answer.status == 200, "initialize: HTTP {}", answer.status);
        let result = response_to(&answer.messages, 1).context("initialize")?;
        ensure!(
            result.get("serverInfo").is_some(),
            "initialize: no serverInfo in {result}"
        );
        let id = answer
            .session
            .context("initialize: the server assigned no Mcp-Session-Id")?;
        let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let answer = connection.post(Some(&id), initialized)?;
        ensure!(
            answer.status == 202,
            "notifications/initialized: expected HTTP 202, got {}",
            answer.status
        );
        let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}"#;
        let answer = connection.post(Some(&id), list)?;
        ensure!(answer.status == 200, "tools/list: HTTP {}", answer.status);
        let result = response_to(&answer.messages, 2).context("tools/list")?;
        let listed = result
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|tools| {
                tools
                    .iter()
                    .any(|t| t.get("name").and_then(Value::as_str) == Some(&call.tool))
            });
        ensure!(listed, "tools/list does not list {:?}: {result}", call.tool);
        Ok(Self { id, next_id: 3 })
    }

    /// Calls the tool once on `connection` and checks the answer: HTTP 200, one response
    /// with this request's id, a result (not an error, not `isError`) whose content is one
    /// text equal to the expected one.
    pub fn call(&mut self, connection: &mut Connection, call: &ToolCall) -> Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": call.tool, "arguments": call.arguments}
        });
        let answer = connection.post(Some(&self.id), &request.to_string())?;
        ensure!(
            answer.status == 200,
            "tools/call {id}: HTTP {}: {:?}",
            answer.status,
            answer.messages
        );
        let result = response_to(&answer.messages, id)?;
        ensure!(
            result.get("isError") != Some(&Value::Bool(true)),
            "tools/call {id}: the tool failed: {result}"
        );
        let text = result
            .pointer("/content/0/text")
            .and_then(Value::as_str)
            .with_context(|| format!("tools/call {id}: no text content in {result}"))?;
        ensure!(
            text == call.expected_text
                && result
                    .get("content")
                    .and_then(Value::as_array)
                    .is_some_and(|c| c.len() == 1),
            "tools/call {id}: unexpected content {result}"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sse_events() {
        let body = b"event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}\n\n";
        let messages = sse_messages(body).unwrap();
        assert_eq!(messages.len(), 1);
        assert!(response_to(&messages, 3).is_ok());
        assert!(response_to(&messages, 4).is_err());
        let crlf = b"data: {\"jsonrpc\":\"2.0\",\r\ndata: \"method\":\"x\"}\r\n\r\n";
        assert_eq!(sse_messages(crlf).unwrap().len(), 1);
    }
}
