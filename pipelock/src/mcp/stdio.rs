//! `pipelock mcp proxy -- CMD ARGS…`: wraps a stdio MCP server. The client (an agent) runs
//! Pipelock instead of the server; Pipelock starts the server as its child and relays
//! newline-delimited JSON-RPC between its own stdin/stdout and the child's, every message
//! through the [`McpInspector`]. The child's stderr is Pipelock's stderr (Pipelock's own logs go
//! there too: stdout carries the protocol). Pipelock exits with the child's exit code (128 + N
//! when a signal N ended it), and the child is killed when Pipelock exits first.
//!
//! A client request the inspector replaces is answered on stdout and never reaches the child;
//! while the kill switch is active, client requests get a JSON-RPC error and notifications and
//! server messages are dropped. A server request the inspector withholds (such as a
//! `sampling/createMessage` it blocked) is answered on the child's stdin in the client's name.
//! Both directions write to the child through one queue, so lines never interleave. Lines longer than [`MAX_MESSAGE_BYTES`] are dropped with a log
//! line (and, from the client, an error answer).

use std::collections::HashMap;
use std::ffi::OsString;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::inspect::McpInspector;
use super::jsonrpc::{self, code, MAX_MESSAGE_BYTES};
use super::judge::{judge_client, judge_server, ToClient};
use crate::killswitch::KillSwitch;
use crate::telemetry::Metrics;

/// The session name the inspector sees for the wrapped server.
pub const SESSION: &str = "stdio";
/// Client requests remembered to pair responses with them; the oldest are forgotten beyond.
const MAX_TRACKED_REQUESTS: usize = 4096;
/// How long the child's last output may take to arrive once it has exited.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the wrapper could not run.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("no command to wrap: use pipelock mcp proxy -- CMD ARGS…")]
    NoCommand,
    #[error("cannot start {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("waiting for the MCP server failed: {0}")]
    Wait(std::io::Error),
}

/// What the two relay directions share.
struct Relay {
    inspector: Arc<dyn McpInspector>,
    kill_switch: Arc<KillSwitch>,
    metrics: Metrics,
    requests: Mutex<HashMap<String, Value>>,
    /// Lines for our stdout (the client).
    out: mpsc::Sender<Vec<u8>>,
    /// Lines for the child's stdin (the server); `None` closes it.
    to_child: mpsc::Sender<Option<Vec<u8>>>,
}

/// The child's stdin is gone (it exited or closed it).
#[derive(Debug)]
struct ChildGone;

impl Relay {
    /// Handles one line from the client: forwards it to the child or answers it.
    async fn client_line(&self, line: &[u8]) -> Result<(), ChildGone> {
        if self.kill_switch.active().is_some() {
            self.metrics
                .record_mcp_message("client", "refused", "kill_switch");
            let request = jsonrpc::Payload::parse(line).ok();
            for msg in request
                .as_ref()
                .map(jsonrpc::Payload::messages)
                .unwrap_or_default()
            {
                if jsonrpc::is_request(msg) {
                    let id = msg.get("id").cloned().unwrap_or(Value::Null);
                    let error = jsonrpc::error(
                        id,
                        code::KILL_SWITCH,
                        "kill_switch_active",
                        self.kill_switch.message(),
                    );
                    self.answer(&error).await;
                }
            }
            return Ok(());
        }
        let judged = judge_client(self.inspector.as_ref(), SESSION, line);
        {
            let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
            if requests.len() + judged.requests.len() > MAX_TRACKED_REQUESTS {
                requests.clear();
            }
            requests.extend(judged.requests);
        }
        if !judged.answers.is_empty() {
            let answer = if judged.batch {
                Value::Array(judged.answers)
            } else {
                judged.answers.into_iter().next().unwrap_or(Value::Null)
            };
            self.answer(&answer).await;
        }
        if let Some(forward) = judged.forward {
            self.to_child
                .send(Some(forward))
                .await
                .map_err(|_| ChildGone)?;
        }
        Ok(())
    }

    /// Handles one line from the child: relays it (or its replacement) to the client.
    async fn server_line(&self, line: &[u8]) {
        if self.kill_switch.active().is_some() {
            self.metrics
                .record_mcp_message("server", "refused", "kill_switch");
            return;
        }
        let judged = {
            let requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
            judge_server(self.inspector.as_ref(), SESSION, &requests, line)
        };
        // A response settles its request.
        if let Some(key) = serde_json::from_slice::<Value>(line)
            .ok()
            .filter(|v| v.get("method").is_none())
            .and_then(|v| jsonrpc::id_key(&v))
        {
            self.requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        }
        for answer in judged.to_server {
            if self
                .to_child
                .send(Some(answer.to_string().into_bytes()))
                .await
                .is_err()
            {
                tracing::debug!(
                    "the MCP server's stdin closed; a withheld request stays unanswered"
                );
            }
        }
        let out = match judged.to_client {
            ToClient::Unchanged => line.to_vec(),
            ToClient::Replaced(value) => value.to_string().into_bytes(),
            ToClient::Nothing => return,
        };
        let _ = self.out.send(out).await;
    }

    async fn answer(&self, value: &Value) {
        let _ = self.out.send(value.to_string().into_bytes()).await;
    }
}

/// Runs `command` as a stdio MCP server behind the inspector; returns the exit code to exit
/// with (the child's).
///
/// # Errors
/// There is no command, it cannot be started, or waiting for it failed.
pub async fn run(
    command: &[OsString],
    inspector: Arc<dyn McpInspector>,
    kill_switch: Arc<KillSwitch>,
    metrics: Metrics,
) -> Result<u8, StdioError> {
    let (program, args) = command.split_first().ok_or(StdioError::NoCommand)?;
    let mut command = Command::new(program);
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
    // which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            // The child gets SIGTERM if Pipelock dies without cleaning up (even SIGKILL).
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child: Child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| StdioError::Spawn {
            command: program.to_string_lossy().into_owned(),
            source,
        })?;
    let (Some(mut child_in), Some(child_out)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(StdioError::Spawn {
            command: program.to_string_lossy().into_owned(),
            source: std::io::Error::other("no pipes to the child"),
        });
    };
    tracing::info!(command = %program.to_string_lossy(), pid = child.id(), "MCP stdio server started");

    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    let (child_tx, mut child_rx) = mpsc::channel::<Option<Vec<u8>>>(64);
    let relay = Arc::new(Relay {
        inspector,
        kill_switch,
        metrics,
        requests: Mutex::new(HashMap::new()),
        out: out_tx,
        to_child: child_tx,
    });

    // The child's stdin: one writer. It is closed (dropped) at the end of our stdin.
    tokio::spawn(async move {
        while let Some(Some(mut line)) = child_rx.recv().await {
            line.push(b'\n');
            if let Err(error) = async {
                child_in.write_all(&line).await?;
                child_in.flush().await
            }
            .await
            {
                tracing::debug!(%error, "the MCP server's stdin closed");
                return;
            }
        }
    });

    // Our stdout: one writer, so lines from both directions never interleave.
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(mut line) = out_rx.recv().await {
            line.push(b'\n');
            if stdout.write_all(&line).await.is_err() || stdout.flush().await.is_err() {
                return;
            }
        }
    });

    // Client → server. At the end of our stdin, the child's stdin is closed (dropped).
    let to_child = {
        let relay = Arc::clone(&relay);
        tokio::spawn(async move {
            let mut stdin = BufReader::new(tokio::io::stdin());
            loop {
                match read_line(&mut stdin).await {
                    Ok(Line::Message(line)) => {
                        if relay.client_line(&line).await.is_err() {
                            tracing::debug!("the MCP server's stdin closed");
                            return;
                        }
                    }
                    Ok(Line::TooLong) => {
                        tracing::warn!(
                            limit = MAX_MESSAGE_BYTES,
                            "client message too long; dropped"
                        );
                        relay
                            .answer(&jsonrpc::error(
                                Value::Null,
                                code::INVALID_REQUEST,
                                "message_too_large",
                                &format!("a message exceeds {MAX_MESSAGE_BYTES} bytes; it was not forwarded"),
                            ))
                            .await;
                    }
                    Ok(Line::End) | Err(_) => {
                        let _ = relay.to_child.send(None).await;
                        return;
                    }
                }
            }
        })
    };

    // Server → client.
    let from_child = {
        let relay = Arc::clone(&relay);
        tokio::spawn(async move {
            let mut out = BufReader::new(child_out);
            loop {
                match read_line(&mut out).await {
                    Ok(Line::Message(line)) => relay.server_line(&line).await,
                    Ok(Line::TooLong) => {
                        tracing::warn!(
                            limit = MAX_MESSAGE_BYTES,
                            "server message too long; dropped"
                        );
                    }
                    Ok(Line::End) | Err(_) => return,
                }
            }
        })
    };

    let status = tokio::select! {
        status = child.wait() => status.map_err(StdioError::Wait)?,
        signal = termination() => {
            tracing::info!(signal, "stopping the MCP stdio server");
            let _ = child.start_kill();
            child.wait().await.map_err(StdioError::Wait)?
        }
    };
    to_child.abort();
    // Whatever the child wrote before exiting still goes out.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, from_child).await;
    relay.inspector.session_closed(SESSION);
    drop(relay);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, writer).await;
    let code = exit_code(status);
    tracing::info!(code, "MCP stdio server exited");
    Ok(code)
}

/// The code to exit with for the child's `status`: its code, or 128 + the signal that ended it.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return u8::try_from(code).unwrap_or(1);
    }
    status
        .signal()
        .and_then(|signal| u8::try_from(128 + signal).ok())
        .unwrap_or(1)
}

/// Completes on SIGTERM, SIGINT or SIGHUP, naming it. If a handler cannot be installed, it
/// never completes (the default disposition then ends the process, and the child with it).
async fn termination() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = hup.recv() => "SIGHUP",
    }
}

enum Line {
    Message(Vec<u8>),
    TooLong,
    End,
}

/// Reads one newline-terminated line of at most [`MAX_MESSAGE_BYTES`] (without the line end;
/// blank lines are skipped). A longer line is consumed to its end and reported as such.
async fn read_line<R: AsyncBufRead + AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<Line> {
    loop {
        let mut line = Vec::new();
        let limit = u64::try_from(MAX_MESSAGE_BYTES + 1).unwrap_or(u64::MAX);
        let read = (&mut *reader)
            .take(limit)
            .read_until(b'\n', &mut line)
            .await?;
        if read == 0 {
            return Ok(Line::End);
        }
        if line.last() != Some(&b'\n') && line.len() > MAX_MESSAGE_BYTES {
            // Skip the rest of the long line.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let n = (&mut *reader)
                    .take(64 * 1024)
                    .read_until(b'\n', &mut rest)
                    .await?;
                if n == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
            return Ok(Line::TooLong);
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if !line.iter().all(u8::is_ascii_whitespace) {
            return Ok(Line::Message(line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_split_bounded_and_blank_ones_skipped() {
        let input: &[u8] = b"{\"a\":1}\r\n\n  \n{\"b\":2}";
        let mut reader = BufReader::new(input);
        assert!(matches!(read_line(&mut reader).await, Ok(Line::Message(l)) if l == b"{\"a\":1}"));
        assert!(matches!(read_line(&mut reader).await, Ok(Line::Message(l)) if l == b"{\"b\":2}"));
        assert!(matches!(read_line(&mut reader).await, Ok(Line::End)));
        let mut long = vec![b'x'; MAX_MESSAGE_BYTES + 10];
        long.extend_from_slice(b"\n{}\n");
        let mut reader = BufReader::new(&long[..]);
        assert!(matches!(read_line(&mut reader).await, Ok(Line::TooLong)));
        assert!(matches!(read_line(&mut reader).await, Ok(Line::Message(l)) if l == b"{}"));
    }
}
