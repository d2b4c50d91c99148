//! Redirected tool calls: instead of reaching the server, a call that a `redirect` rule
//! matched is answered by the profile's program. The program (`exec`, an argv; no shell) gets
//! the JSON-RPC `tools/call` request on stdin and has `timeout` (30 s by default, as the
//! reference) to print its answer and exit 0. Its output is scanned for injection and returned
//! to the client as the call's result: `{"content": [{"type": "text", "text": …}]}`, or the
//! handler's own `CallToolResult` when it prints a JSON object with a `content` array (the way
//! to answer a tool that declares an `outputSchema` with `structuredContent`; a text answer to
//! such a tool is delivered as a tool error, since clients reject a success without it). The
//! result follows the protocol revision the request declares (`resultType` from 2026-07-28 on).
//! A program that cannot start, exits non-zero, times out, prints too much or prints an
//! injection blocks the call with a JSON-RPC error saying why.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::jsonrpc::code::REQUEST_BLOCKED;
use super::jsonrpc::synthetic_result;
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
            return refusal(&redirected.request, &finding, "request");
        }
    };
    let judgement = scanner.judge_redirect_output(&output);
    if let Some(finding) = &judgement.block {
        return refusal(&redirected.request, finding, "redirect output");
    }
    let (result, downgraded) = call_result(
        &output,
        &redirected.profile,
        redirected.output_schema.as_ref(),
    );
    if downgraded {
        tracing::warn!(
            profile = %redirected.profile,
            "redirect handler answered a tool with an outputSchema without structuredContent: \
             delivered as a tool error (isError), as MCP clients reject such a success"
        );
    }
    synthetic_result(&redirected.request, result)
}

/// The JSON-RPC error refusing the redirected `request`, naming its tool as every block does.
fn refusal(request: &Value, finding: &Finding, what: &str) -> Value {
    let mut error = block_error(REQUEST_BLOCKED, finding, what);
    if let (Some(tool), Some(data)) = (
        request.pointer("/params/name").and_then(Value::as_str),
        error.data.as_object_mut(),
    ) {
        data.insert("tool".into(), tool.into());
    }
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    error_reply(&id, &error)
}

/// The `tools/call` result made of a handler's `output`: the handler's own `CallToolResult`
/// when it printed a JSON object with a `content` array, else its text as one text block.
/// A success without `structuredContent` for a tool that declares an `outputSchema` is not
/// valid MCP (clients reject it), so it becomes a tool error (`isError: true`) carrying the
/// same content; the second value says whether that happened.
fn call_result(output: &str, profile: &str, output_schema: Option<&Value>) -> (Value, bool) {
    let mut result = match serde_json::from_str::<Value>(output.trim()) {
        Ok(Value::Object(fields)) if fields.get("content").is_some_and(Value::is_array) => {
            Value::Object(fields)
        }
        _ => json!({"content": [{"type": "text", "text": output}], "isError": false}),
    };
    let is_error = result.get("isError").and_then(Value::as_bool) == Some(true);
    let downgraded =
        output_schema.is_some() && !is_error && result.get("structuredContent").is_none();
    if downgraded {
        result["isError"] = json!(true);
    }
    if !result.get("_meta").is_some_and(Value::is_object) {
        result["_meta"] = json!({});
    }
    result["_meta"]["pipelock"] = json!({"redirected": true, "profile": profile});
    (result, downgraded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_output_becomes_a_call_result_that_clients_accept() {
        let schema = json!({"type": "object", "properties": {"result": {"type": "string"}}});
        // Plain text, no output schema: a text success.
        let (text, downgraded) = call_result("queued\n", "review", None);
        assert!(!downgraded);
        assert_eq!(text["content"][0]["text"], "queued\n");
        assert_eq!(text["isError"], false);
        assert_eq!(text["_meta"]["pipelock"]["profile"], "review");
        // Plain text for a tool with an output schema: a tool error, same content.
        let (text, downgraded) = call_result("queued", "review", Some(&schema));
        assert!(downgraded);
        assert_eq!(text["isError"], true);
        assert_eq!(text["content"][0]["text"], "queued");
        // The handler's own result with structured content is kept, _meta merged.
        let own = r#"{"content":[{"type":"text","text":"ok"}],"structuredContent":{"result":"ok"},"_meta":{"x":1}}"#;
        let (own, downgraded) = call_result(own, "review", Some(&schema));
        assert!(!downgraded);
        assert_eq!(own["structuredContent"]["result"], "ok");
        assert_eq!(own["_meta"]["x"], 1);
        assert_eq!(own["_meta"]["pipelock"]["redirected"], true);
        // JSON that is not a result is text.
        let (list, _) = call_result("[1, 2]", "review", None);
        assert_eq!(list["content"][0]["text"], "[1, 2]");
    }

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
