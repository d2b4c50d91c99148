//! MCP tool scanning against a real FastMCP server (PyPI, installed by `cargo xtask setup`
//! into `tests/mcp/.venv`; `tests/mcp/fastmcp_server.py`): a poisoned tool list, a rug pull
//! (a tool whose definition changes after the first `tools/list`), an unknown tool call and
//! a clean call, through Pipelock's MCP reverse proxy (raw JSON-RPC POSTs) and its stdio
//! wrapper. Without the venv these tests fail; they never skip.
//!
//! All traffic stays on loopback; every process is bounded by a timeout and killed on drop.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pipelock_e2e::mcp::{
    mcp_dir, messages, pipelock_for, post, session_id, venv_python, FastMcp, INITIALIZE,
};
use pipelock_e2e::{collect_lines, pipelock_bin, wait_timeout, write_file};
use serde_json::Value;

/// The scanning under test; `{action}` is block or warn.
const SCANNING: &str = "mcp_tool_scanning:\n  enabled: true\n  action: {action}\n  detect_drift: true\nmcp_session_binding:\n  enabled: true\n  unknown_tool_action: block\n";

fn scanning(action: &str) -> String {
    SCANNING.replace("{action}", action)
}

/// An initialized MCP session over HTTP at `url`.
struct Session {
    url: String,
    header: String,
}

impl Session {
    fn open(url: &str) -> Result<Self> {
        let (status, head, body) = post(url, INITIALIZE, &[])?;
        if status != 200 {
            bail!("initialize answered {status}: {body}");
        }
        let header = format!("mcp-session-id: {}", session_id(&head)?);
        let session = Self {
            url: url.to_string(),
            header,
        };
        let (status, _, body) =
            session.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)?;
        if status != 202 && status != 200 {
            bail!("notifications/initialized answered {status}: {body}");
        }
        Ok(session)
    }

    fn send(&self, body: &str) -> Result<(u16, String, String)> {
        post(&self.url, body, &[self.header.as_str()])
    }

    /// Sends a request and returns the one answer with its id.
    fn request(&self, id: u64, method: &str, params: Value) -> Result<Value> {
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let (status, _, text) = self.send(&body.to_string())?;
        if status != 200 {
            bail!("{method} answered {status}: {text}");
        }
        messages(&text)?
            .into_iter()
            .find(|m| m["id"] == id)
            .with_context(|| format!("no answer with id {id} to {method}: {text}"))
    }
}

fn tool_names(answer: &Value) -> Vec<&str> {
    answer["result"]["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default()
}

fn rule(answer: &Value) -> &str {
    answer["error"]["data"]["rule"].as_str().unwrap_or_default()
}

#[test]
fn a_poisoned_tool_list_is_blocked_with_block_and_passes_unchanged_with_warn() -> Result<()> {
    // Block: a JSON-RPC error naming the poisoning rule, and no tool list.
    let server = FastMcp::start(&["poisoned"])?;
    let (pipelock, _dir, mcp) = pipelock_for(&server.url(), &scanning("block"))?;
    let session = Session::open(&mcp)?;
    let answer = session.request(2, "tools/list", serde_json::json!({}))?;
    let text = answer.to_string();
    assert!(
        answer.get("result").is_none(),
        "a tool list came through: {text}"
    );
    assert_eq!(
        answer["error"]["data"]["scanner"], "tool_poisoning",
        "{text}"
    );
    assert_eq!(
        rule(&answer),
        "injection.credential_path_directive",
        "{text}"
    );
    assert!(
        !text.contains("id_rsa"),
        "the refusal repeats the poisoned text: {text}"
    );
    assert_eq!(server.logged("LIST").len(), 1, "the server was asked once");
    let logs = pipelock.stdout_lines().join("\n");
    assert!(
        logs.contains("MCP message blocked") && logs.contains(rule(&answer)),
        "{logs}"
    );
    // The client was offered no tool: calling the poisoned one is refused before the server.
    let call = session.request(
        3,
        "tools/call",
        serde_json::json!({"name": "notes", "arguments": {"note": "t"}}),
    )?;
    assert_eq!(rule(&call), "session_binding.unknown_tool", "{call}");
    assert!(
        server.logged("CALL").is_empty(),
        "the poisoned tool was called"
    );
    drop((session, pipelock, server));

    // Warn: the list passes unchanged (the same as a direct first listing of another
    // instance of the server), and the finding is logged.
    let direct_server = FastMcp::start(&["poisoned"])?;
    let direct =
        Session::open(&direct_server.url())?.request(2, "tools/list", serde_json::json!({}))?;
    let server = FastMcp::start(&["poisoned"])?;
    let (pipelock, _dir, mcp) = pipelock_for(&server.url(), &scanning("warn"))?;
    let through = Session::open(&mcp)?.request(2, "tools/list", serde_json::json!({}))?;
    assert_eq!(
        tool_names(&through),
        ["add", "weather", "notes"],
        "{through}"
    );
    assert_eq!(
        through, direct,
        "the warned list differs from the direct one"
    );
    let logs = pipelock.stdout_lines().join("\n");
    assert!(
        logs.contains("MCP message forwarded with a warning")
            && logs.contains("injection.credential_path_directive"),
        "{logs}"
    );
    Ok(())
}

#[test]
fn a_rug_pull_on_the_second_listing_is_blocked_with_the_diff() -> Result<()> {
    let server = FastMcp::start(&[])?;
    let (pipelock, _dir, mcp) = pipelock_for(&server.url(), &scanning("block"))?;
    let session = Session::open(&mcp)?;
    let first = session.request(2, "tools/list", serde_json::json!({}))?;
    assert_eq!(tool_names(&first), ["add", "weather"], "{first}");

    let second = session.request(3, "tools/list", serde_json::json!({}))?;
    let text = second.to_string();
    assert!(
        second.get("result").is_none(),
        "the changed list came through: {text}"
    );
    assert_eq!(rule(&second), "tool_drift.definition_changed", "{text}");
    assert_eq!(server.logged("LIST").len(), 2);
    // Asking again does not launder the change: the blocked definition was not adopted.
    let third = session.request(4, "tools/list", serde_json::json!({}))?;
    assert_eq!(rule(&third), "tool_drift.definition_changed", "{third}");
    // The diff summary (what changed in `weather`) is in the log line of the block.
    let logs = pipelock.stdout_lines();
    let blocked: Vec<Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "MCP message blocked")
        .collect();
    assert_eq!(blocked.len(), 2, "{logs:#?}");
    assert_eq!(blocked[0]["rule"], "tool_drift.definition_changed");
    assert_eq!(
        blocked[0]["detail"],
        "tool \"weather\": description changed (36 → 123 chars); inputSchema: parameter \"units\" added",
        "{logs:#?}"
    );
    Ok(())
}

#[test]
fn an_unknown_tool_call_is_blocked_before_the_server_and_a_clean_call_passes() -> Result<()> {
    let server = FastMcp::start(&[])?;
    let (_pipelock, _dir, mcp) = pipelock_for(&server.url(), &scanning("block"))?;
    let session = Session::open(&mcp)?;
    let listed = session.request(2, "tools/list", serde_json::json!({}))?;
    assert_eq!(tool_names(&listed), ["add", "weather"], "{listed}");

    let unknown = session.request(
        3,
        "tools/call",
        serde_json::json!({"name": "notes", "arguments": {"title": "x"}}),
    )?;
    assert_eq!(rule(&unknown), "session_binding.unknown_tool", "{unknown}");

    let added = session.request(
        4,
        "tools/call",
        serde_json::json!({"name": "add", "arguments": {"a": 19, "b": 23}}),
    )?;
    assert_eq!(
        added["result"]["structuredContent"]["result"], 42,
        "{added}"
    );
    assert_eq!(added["result"]["content"][0]["text"], "42", "{added}");
    thread::sleep(Duration::from_millis(300));
    // Only the clean call reached the server.
    assert_eq!(server.logged("CALL"), ["CALL add"]);
    Ok(())
}

/// Reads stdout lines of the wrapper until one is the answer with `id`, within `timeout`.
fn read_answer(rx: &mpsc::Receiver<String>, id: u64, timeout: Duration) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(_) => bail!("no answer with id {id} within {timeout:?}; saw {seen:?}"),
        };
        let message: Value = serde_json::from_str(&line)
            .with_context(|| format!("the wrapper wrote a line that is not JSON: {line}"))?;
        if message["id"] == id {
            return Ok(message);
        }
        seen.push(line);
    }
}

#[test]
fn the_stdio_wrapper_blocks_the_poisoned_tool_list() -> Result<()> {
    let python = venv_python();
    let dir = tempfile::tempdir()?;
    let config = write_file(dir.path(), "pipelock.yaml", &scanning("block"))?;
    let mut child = Command::new(pipelock_bin())
        .args(["mcp", "proxy", "--config"])
        .arg(&config)
        .arg("--")
        .arg(&python)
        .arg(mcp_dir().join("fastmcp_server.py"))
        .args(["stdio", "poisoned"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start pipelock mcp proxy")?;
    let stderr = collect_lines(child.stderr.take());
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stdin = child.stdin.take().context("no stdin")?;
    let result = (|| -> Result<Value> {
        writeln!(stdin, "{INITIALIZE}")?;
        read_answer(&rx, 1, Duration::from_secs(30))?;
        writeln!(
            stdin,
            r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
        )?;
        writeln!(stdin, r#"{{"jsonrpc":"2.0","id":2,"method":"tools/list"}}"#)?;
        read_answer(&rx, 2, Duration::from_secs(30))
    })();
    drop(stdin);
    let exited = wait_timeout(&mut child, Duration::from_secs(15))?;
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let log = stderr.lock().map(|l| l.join("\n")).unwrap_or_default();
    let answer = result.with_context(|| format!("stderr:\n{log}"))?;
    let text = answer.to_string();
    assert!(
        answer.get("result").is_none(),
        "a tool list came through: {text}"
    );
    assert_eq!(
        answer["error"]["data"]["scanner"], "tool_poisoning",
        "{text}\n{log}"
    );
    assert_eq!(
        rule(&answer),
        "injection.credential_path_directive",
        "{text}\n{log}"
    );
    assert!(
        !text.contains("id_rsa"),
        "the refusal repeats the poisoned text: {text}"
    );
    assert!(
        exited.is_some_and(|s| s.success()),
        "the wrapper did not exit cleanly when stdin closed: {exited:?}\n{log}"
    );
    Ok(())
}

/// A `tools/call` as a client of MCP 2026-07-28 sends it: no session, the revision in
/// `params._meta`, routing headers mirroring the body.
fn modern_call(id: u64, name: &str, arguments: &Value) -> String {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
    "name": name, "arguments": arguments,
    "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "curl", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    }}})
    .to_string()
}

#[test]
fn routing_headers_that_disagree_with_the_body_are_refused_before_the_server() -> Result<()> {
    let server = FastMcp::start(&["agent"])?;
    let (pipelock, _dir, mcp) = pipelock_for(&server.url(), "")?;
    let modern = ["mcp-protocol-version: 2026-07-28", "mcp-method: tools/call"];
    let args = serde_json::json!({"a": 19, "b": 23});

    // Headers that agree with the body: the call goes through.
    let (status, _, body) = post(
        &mcp,
        &modern_call(1, "add", &args),
        &[modern[0], modern[1], "mcp-name: add"],
    )?;
    assert_eq!(status, 200, "{body}");
    let answer = &messages(&body)?[0];
    assert_eq!(
        answer["result"]["structuredContent"]["result"], 42,
        "{body}"
    );

    // A router reading the headers would see `add`; the body calls `run_command`.
    let (status, _, body) = post(
        &mcp,
        &modern_call(2, "run_command", &serde_json::json!({"command": "id"})),
        &[modern[0], modern[1], "mcp-name: add"],
    )?;
    assert_eq!(status, 400, "{body}");
    let refusal: Value = serde_json::from_str(&body)?;
    assert_eq!(refusal["id"], 2, "{body}");
    assert_eq!(refusal["error"]["code"], -32020, "{body}");
    assert_eq!(
        refusal["error"]["data"]["error"], "header_mismatch",
        "{body}"
    );
    // The method header disagreeing, and the revision header disagreeing, likewise.
    let (status, _, body) = post(
        &mcp,
        &modern_call(3, "add", &args),
        &[modern[0], "mcp-method: tools/list", "mcp-name: add"],
    )?;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = post(
        &mcp,
        &modern_call(4, "add", &args),
        &[
            "mcp-protocol-version: 2025-06-18",
            modern[1],
            "mcp-name: add",
        ],
    )?;
    assert_eq!(status, 400, "{body}");

    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        server.logged("CALL"),
        ["CALL add"],
        "only the agreeing call ran"
    );
    let logs = pipelock.stdout_lines().join("\n");
    assert!(
        logs.contains("routing headers disagree with the body"),
        "{logs}"
    );
    Ok(())
}
