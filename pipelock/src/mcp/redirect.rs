//! Redirected tool calls: instead of reaching the server, a call that a `redirect` rule
//! matched is answered by the profile's program. The program (`exec`, an argv; no shell) gets
//! the JSON-RPC `tools/call` request on stdin and has `timeout` (30 s by default, as the
//! reference) to print its answer and exit 0. Its output is scanned for injection and returned
//! to the client as the call's result (`{"content": [{"type": "text", "text": …}]}`). A program
//! that cannot start, exits non-zero, times out, prints too much or prints an injection blocks
//! the call with a JSON-RPC error saying why.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::jsonrpc::code::REQUEST_BLOCKED;
use super::jsonrpc::result_response;
use super::scan::inspection::{block_error, error_reply};
use super::scan::{McpScanner, Redirected};
use crate::config::RedirectProfile;
use crate::scan::{Finding, ScannerKind};

/// How long a handler may run unless the caller says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of handler output accepted (as the MCP listener's message cap).
pub const MAX_OUTPUT_BYTES: usize = 10 * 1024 * 1024;
/// Most bytes of handler stderr kept for the error message.
const MAX_STDERR_BYTES: usize = 4096;

/// Why a redirect handler did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum RedirectError {
    #[error("redirect profile {0:?} is not defined")]
    UnknownProfile(String),
    #[error("redirect profile has an empty exec")]
    EmptyExec,
    #[error("cannot start redirect handler {program:?}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("redirect handler I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("redirect handler timed out after {0:?}")]
    Timeout(Duration),
    #[error("redirect handler exited with {status}: {stderr}")]
    Failed { status: String, stderr: String },
    #[error("redirect handler printed more than {MAX_OUTPUT_BYTES} bytes")]
    TooLarge,
}

/// Runs `profile` with `request` on stdin and returns what it printed.
///
/// # Errors
/// See [`RedirectError`]: spawn failure, timeout, non-zero exit, oversized output.
pub async fn run_profile(
    profile: &RedirectProfile,
    request: &Value,
    timeout: Duration,
) -> Result<String, RedirectError> {
    let (program, args) = profile.exec.split_first().ok_or(RedirectError::EmptyExec)?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| RedirectError::Spawn {
            program: program.clone(),
            source,
        })?;
    let mut input = request.to_string().into_bytes();
    input.push(b'\n');
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let work = async {
        let write = async {
            if let Some(mut stdin) = stdin.take() {
                // A handler that does not read its input is not an error.
                let _ = stdin.write_all(&input).await;
                let _ = stdin.shutdown().await;
            }
        };
        let read_out = async {
            let mut out = Vec::new();
            if let Some(stdout) = stdout.take() {
                stdout
                    .take(MAX_OUTPUT_BYTES as u64 + 1)
                    .read_to_end(&mut out)
                    .await?;
            }
            Ok::<_, std::io::Error>(out)
        };
        let read_err = async {
            let mut err = Vec::new();
            if let Some(stderr) = stderr.take() {
                let _ = stderr
                    .take(MAX_STDERR_BYTES as u64)
                    .read_to_end(&mut err)
                    .await;
            }
            err
        };
        let ((), out, err) = tokio::join!(write, read_out, read_err);
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, out?, err))
    };
    let (status, out, err) = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| RedirectError::Timeout(timeout))??;
    if out.len() > MAX_OUTPUT_BYTES {
        return Err(RedirectError::TooLarge);
    }
    if !status.success() {
        return Err(RedirectError::Failed {
            status: status.to_string(),
            stderr: String::from_utf8_lossy(&err).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Answers a redirected call: the JSON-RPC response to send to the client (a synthetic
/// `tools/call` result, or an error when the handler failed or printed an injection).
pub async fn answer(scanner: &McpScanner, redirected: &Redirected, timeout: Duration) -> Value {
    let id = redirected.request.get("id").cloned().unwrap_or(Value::Null);
    let outcome = match scanner.redirect_profile(&redirected.profile) {
        Some(profile) => run_profile(profile, &redirected.request, timeout).await,
        None => Err(RedirectError::UnknownProfile(redirected.profile.clone())),
    };
    let output = match outcome {
        Ok(output) => output,
        Err(error) => {
            tracing::warn!(profile = %redirected.profile, %error, "redirect failed");
            let finding = Finding::unscannable(
                "tool_policy.redirect_failed",
                format!("Redirect handler failed: {error}"),
                ScannerKind::ToolPolicy,
            );
            return error_reply(&id, &block_error(REQUEST_BLOCKED, &finding, "request"));
        }
    };
    let judgement = scanner.judge_redirect_output(&output);
    if let Some(finding) = &judgement.block {
        return error_reply(
            &id,
            &block_error(REQUEST_BLOCKED, finding, "redirect output"),
        );
    }
    result_response(
        &id,
        json!({
            "content": [{"type": "text", "text": output}],
            "isError": false,
            "_meta": {"pipelock": {"redirected": true, "profile": redirected.profile}},
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(script: &str) -> RedirectProfile {
        RedirectProfile {
            exec: vec!["/bin/sh".into(), "-c".into(), script.into()],
            ..RedirectProfile::default()
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn handler_gets_the_call_on_stdin() {
        let request = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call"});
        let out = rt()
            .block_on(run_profile(&profile("cat"), &request, DEFAULT_TIMEOUT))
            .expect("runs");
        assert_eq!(out.trim(), request.to_string());
    }

    #[test]
    fn failures_are_errors() {
        let request = json!({});
        let rt = rt();
        let failed = rt.block_on(run_profile(
            &profile("echo nope >&2; exit 3"),
            &request,
            DEFAULT_TIMEOUT,
        ));
        assert!(
            matches!(&failed, Err(RedirectError::Failed { stderr, .. }) if stderr == "nope"),
            "{failed:?}"
        );
        let slow = rt.block_on(run_profile(
            &profile("sleep 5"),
            &request,
            Duration::from_millis(200),
        ));
        assert!(matches!(slow, Err(RedirectError::Timeout(_))), "{slow:?}");
        let missing = RedirectProfile {
            exec: vec!["/nonexistent/handler".into()],
            ..RedirectProfile::default()
        };
        let spawn = rt.block_on(run_profile(&missing, &request, DEFAULT_TIMEOUT));
        assert!(
            matches!(spawn, Err(RedirectError::Spawn { .. })),
            "{spawn:?}"
        );
    }
}
