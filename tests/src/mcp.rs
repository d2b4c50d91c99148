//! Helpers shared by the MCP end-to-end tests: Pipelock's MCP reverse proxy, raw JSON-RPC
//! POSTs with curl, reading the answers (JSON or an SSE stream), the FastMCP test server
//! (`tests/mcp/fastmcp_server.py`) and FastMCP's own client (`tests/mcp/fastmcp_client.py`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{curl, describe, free_port, run_with_timeout, Pipelock, ServerProcess};

/// `tests/mcp`: the MCP test programs and, once `cargo xtask setup` ran, their packages.
#[must_use]
pub fn mcp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mcp")
}

/// The venv's python with FastMCP; fails loudly when `cargo xtask setup` has not run.
///
/// # Panics
/// When the venv is missing: the FastMCP tests must fail, not skip, without it.
#[must_use]
pub fn venv_python() -> PathBuf {
    let python = mcp_dir().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `cargo xtask setup` (it installs FastMCP into tests/mcp/.venv)",
        python.display()
    );
    python
}

/// `fastmcp_server.py http PORT FLAGS…` (flags `poisoned`, `agent`), killed on drop; its
/// stderr (one `CALL name` line per tool call that reaches it, one `LIST n` per listing) is
/// collected.
pub struct FastMcp {
    server: ServerProcess,
    port: u16,
}

impl FastMcp {
    /// Starts the server on a free loopback port and waits until it listens.
    ///
    /// # Errors
    /// The server did not start within 30 s.
    pub fn start(flags: &[&str]) -> Result<Self> {
        let port = free_port()?;
        let mut command = Command::new(venv_python());
        command
            .current_dir(mcp_dir())
            .args(["fastmcp_server.py", "http", &port.to_string()])
            .args(flags);
        let server = ServerProcess::spawn(
            command,
            "the FastMCP server",
            "Uvicorn running on",
            Duration::from_secs(30),
        )?;
        Ok(Self { server, port })
    }

    #[must_use]
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// The server's log lines starting with `prefix` (`CALL`, `LIST`).
    #[must_use]
    pub fn logged(&self, prefix: &str) -> Vec<String> {
        self.server
            .stderr()
            .into_iter()
            .filter(|l| l.starts_with(prefix))
            .collect()
    }
}

/// How long one FastMCP client session may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs FastMCP's client (`fastmcp_client.py ARGS`) with `calls` (a JSON array of
/// `{"name", "arguments"}`) in one session; returns what it printed: `{"tools", "calls"}`,
/// or `{"connect_error"}` when the session could not be opened.
///
/// # Errors
/// The client crashed, timed out or printed something that is not JSON.
pub fn fastmcp_client(args: &[&str], calls: &Value) -> Result<Value> {
    let mut command = Command::new(venv_python());
    command
        .current_dir(mcp_dir())
        .arg("fastmcp_client.py")
        .args(args);
    let input = calls.to_string();
    let output = run_with_timeout(command, Some(input.as_bytes()), CLIENT_TIMEOUT)?;
    let text = String::from_utf8_lossy(&output.stdout);
    let last = text.lines().last().unwrap_or_default();
    let answer: Value = serde_json::from_str(last)
        .with_context(|| format!("unexpected FastMCP client output\n{}", describe(&output)))?;
    match output.status.code() {
        Some(0) => Ok(answer),
        Some(2) if answer.get("connect_error").is_some() => Ok(answer),
        _ => bail!("the FastMCP client failed\n{}", describe(&output)),
    }
}

/// A JSON-RPC `initialize` request (id 1) as a generic client sends it.
pub const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}"#;

/// `pipelock run` with the MCP reverse proxy to `upstream` and `extra_yaml` appended to its
/// config; returns it, its config directory and the MCP URL.
pub fn pipelock_for(
    upstream: &str,
    extra_yaml: &str,
) -> Result<(Pipelock, tempfile::TempDir, String)> {
    let yaml = format!(
        "mcp_reverse_proxy:\n  enabled: true\n  listen: \"127.0.0.1:0\"\n  upstream: \"{upstream}\"\n{extra_yaml}"
    );
    let (mut pipelock, dir) = Pipelock::start_with_yaml(&yaml)?;
    let addr = pipelock.wait_for_listener("mcp", Duration::from_secs(10))?;
    Ok((pipelock, dir, format!("http://{addr}/mcp")))
}

/// `curl -i` POST of `body` to `url` with extra headers; returns (status, headers, body).
pub fn post(url: &str, body: &str, headers: &[&str]) -> Result<(u16, String, String)> {
    let mut args = vec![
        "-i",
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-H",
        "accept: application/json, text/event-stream",
        "--data-binary",
        body,
    ];
    for header in headers {
        args.extend(["-H", header]);
    }
    args.push(url);
    let output = curl(&args)?;
    split_response(&String::from_utf8_lossy(&output.stdout))
}

/// An HTTP/1.1 response as (status, lowercased head, body), interim 1xx answers skipped.
pub fn split_response(mut text: &str) -> Result<(u16, String, String)> {
    while text.starts_with("HTTP/1.1 1") {
        text = text.split_once("\r\n\r\n").map_or("", |(_, rest)| rest);
    }
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("no HTTP response in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok((status, head.to_ascii_lowercase(), body.to_string()))
}

/// The `Mcp-Session-Id` header of a response head.
pub fn session_id(head: &str) -> Result<String> {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("mcp-session-id")
                .then(|| value.trim().to_string())
        })
        .with_context(|| format!("no Mcp-Session-Id in {head:?}"))
}

/// The JSON-RPC messages of an answer body: one JSON value, or the `data:` of each SSE event.
pub fn messages(body: &str) -> Result<Vec<Value>> {
    let trimmed = body.trim();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return Ok(vec![
            serde_json::from_str(trimmed).with_context(|| format!("not JSON: {body}"))?
        ]);
    }
    let mut out = Vec::new();
    for event in trimmed.split("\n\n") {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.trim_end_matches('\r').strip_prefix("data:"))
            .map(str::trim_start)
            .collect();
        if !data.is_empty() && data.iter().any(|d| !d.is_empty()) {
            out.push(
                serde_json::from_str(&data.join("\n"))
                    .with_context(|| format!("an SSE event is not JSON: {event}"))?,
            );
        }
    }
    Ok(out)
}
