//! `pipelock check --mcp FILE|-`: MCP traffic through the same session logic the MCP proxy
//! uses, offline. The input is one JSON-RPC message (or batch), or JSON lines of
//! `{"direction": "request"|"response", "message": …}`: `request` is what the client sends,
//! `response` what the server sends (answers, and its own requests such as sampling). All
//! lines share one session, so baselines, drift and chains carry from line to line.
//!
//! Exit codes as the other `check` modes: 0 when nothing blocks (allow, warn, or a call
//! answered by its redirect handler), 1 when a message is blocked, 2 for usage errors (a line
//! that is not a JSON object with `direction` and `message`, named by its number).

use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};

use super::check::{finding_json, read_input_bytes, CheckArgs, EXIT_USAGE};
use super::{EXIT_FAILURE, EXIT_OK};
use crate::config::{self, Config};
use crate::mcp::redirect;
use crate::mcp::scan::{Inspection, McpScanner, Session};
use crate::policy::Verdict;
use crate::scan::Scanner;

/// Which side sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Request,
    Response,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Response => "response",
        }
    }
}

/// A message to inspect: a JSON value, or raw bytes that may not parse.
enum Payload {
    Value(Value),
    Raw(Vec<u8>),
}

/// One inspected message, for the report.
struct Outcome {
    line: usize,
    direction: Direction,
    method: Option<String>,
    inspection: Inspection,
    /// For a redirected call: the handler's answer (a result or an error).
    answer: Option<Value>,
}

pub fn check_mcp(args: &CheckArgs, path: &Path) -> anyhow::Result<u8> {
    let config = match &args.config {
        Some(path) => config::load_file(path)?,
        None => config::default_config(),
    };
    let input = read_input_bytes(path)?;
    let messages = match read_messages(&input) {
        Ok(messages) => messages,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(EXIT_USAGE);
        }
    };
    let scanner = Scanner::new(&config).context("cannot build the scanners")?;
    let mcp = McpScanner::new(&config, scanner).context("cannot build the MCP scanner")?;
    let mut session = Session::new();
    let mut outcomes = Vec::with_capacity(messages.len());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime for redirect handlers")?;
    for (line, direction, payload) in messages {
        let (inspection, method) = match (&payload, direction) {
            (Payload::Raw(raw), Direction::Request) => (mcp.parse_error(raw), None),
            (Payload::Raw(raw), Direction::Response) => (mcp.server_parse_error(raw), None),
            (Payload::Value(value), Direction::Request) => {
                (mcp.client_message(&mut session, value), method_of(value))
            }
            (Payload::Value(value), Direction::Response) => (
                mcp.server_message(&mut session, None, value),
                method_of(value),
            ),
        };
        let answer = match &inspection {
            Inspection::Redirect(redirected) => Some(super::with_sigpipe_ignored(|| {
                runtime.block_on(redirect::answer(
                    &mcp,
                    redirected,
                    redirect::DEFAULT_TIMEOUT,
                ))
            })),
            _ => None,
        };
        outcomes.push(Outcome {
            line,
            direction,
            method,
            inspection,
            answer,
        });
    }
    let verdict = outcomes
        .iter()
        .map(verdict_of)
        .max()
        .unwrap_or(Verdict::Allow);
    if args.json {
        println!("{}", json_report(&config, verdict, &outcomes));
    } else {
        print_human(verdict, &outcomes);
    }
    Ok(if verdict == Verdict::Block {
        EXIT_FAILURE
    } else {
        EXIT_OK
    })
}

/// The messages of the input with their line numbers, or a usage error naming the line.
fn read_messages(input: &[u8]) -> Result<Vec<(usize, Direction, Payload)>, String> {
    let text = String::from_utf8_lossy(input);
    let first = text.lines().find(|l| !l.trim().is_empty());
    let Some(first) = first else {
        return Err("--mcp: nothing to scan (the input is empty)".into());
    };
    let is_envelope = serde_json::from_str::<Value>(first)
        .ok()
        .is_some_and(|v| v.get("direction").is_some());
    if !is_envelope {
        // One message: a request if it has a method, else a response.
        return Ok(vec![match serde_json::from_slice::<Value>(input) {
            Ok(value) => {
                let direction = if first_element(&value).get("method").is_some()
                    && first_element(&value).get("result").is_none()
                {
                    Direction::Request
                } else {
                    Direction::Response
                };
                (1, direction, Payload::Value(value))
            }
            Err(_) => (1, Direction::Request, Payload::Raw(input.to_vec())),
        }]);
    }
    let mut messages = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let envelope: Value =
            serde_json::from_str(line).map_err(|e| format!("line {number}: not JSON: {e}"))?;
        let direction = match envelope.get("direction").and_then(Value::as_str) {
            Some("request") => Direction::Request,
            Some("response") => Direction::Response,
            _ => {
                return Err(format!(
                    r#"line {number}: "direction" must be "request" or "response""#
                ))
            }
        };
        let payload = match envelope.get("message") {
            Some(Value::String(raw)) => Payload::Raw(raw.as_bytes().to_vec()),
            Some(value) => Payload::Value(value.clone()),
            None => return Err(format!(r#"line {number}: no "message""#)),
        };
        messages.push((number, direction, payload));
    }
    Ok(messages)
}

fn first_element(value: &Value) -> &Value {
    match value {
        Value::Array(items) => items.first().unwrap_or(&Value::Null),
        other => other,
    }
}

fn method_of(value: &Value) -> Option<String> {
    let first = first_element(value);
    let method = first.get("method").and_then(Value::as_str)?;
    match first
        .get("params")
        .and_then(|p| p.get("name"))
        .and_then(Value::as_str)
    {
        Some(tool) if method == "tools/call" => Some(format!("{method} {tool}")),
        _ => Some(method.to_string()),
    }
}

/// A redirected call whose handler failed is blocked.
fn verdict_of(outcome: &Outcome) -> Verdict {
    match &outcome.answer {
        Some(answer) if answer.get("error").is_some() => Verdict::Block,
        _ => outcome.inspection.verdict(),
    }
}

/// Each finding with its own verdict: the leading ones of a block block, the rest warn.
fn judged(inspection: &Inspection) -> Vec<(&crate::scan::Finding, Verdict)> {
    let blocking = match inspection {
        Inspection::Block(blocked) => blocked.blocking,
        _ => 0,
    };
    inspection
        .findings()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            (
                f,
                if i < blocking {
                    Verdict::Block
                } else {
                    Verdict::Warn
                },
            )
        })
        .collect()
}

fn json_report(config: &Config, verdict: Verdict, outcomes: &[Outcome]) -> Value {
    let mut findings = Vec::new();
    let mut messages = Vec::new();
    for outcome in outcomes {
        for (finding, finding_verdict) in judged(&outcome.inspection) {
            let mut entry = finding_json(finding, finding_verdict);
            entry["line"] = json!(outcome.line);
            entry["direction"] = json!(outcome.direction.name());
            findings.push(entry);
        }
        let mut message = json!({
            "line": outcome.line,
            "direction": outcome.direction.name(),
            "method": outcome.method,
            "verdict": outcome.inspection.name(),
        });
        match &outcome.inspection {
            Inspection::Block(blocked) => {
                message["reply"] = blocked
                    .reply
                    .as_ref()
                    .map_or(Value::Null, |r| r.message.clone());
            }
            Inspection::Redirect(redirected) => {
                message["redirect"] = json!({
                    "profile": redirected.profile,
                    "answer": outcome.answer,
                });
                if verdict_of(outcome) == Verdict::Block {
                    message["verdict"] = json!("block");
                }
            }
            Inspection::Strip { message: sent, .. } => message["stripped"] = sent.clone(),
            Inspection::Allow | Inspection::Warn(_) => {}
        }
        messages.push(message);
    }
    json!({
        "verdict": verdict.to_string(),
        "mode": config.mode.to_string(),
        "findings": findings,
        "messages": messages,
    })
}

fn print_human(verdict: Verdict, outcomes: &[Outcome]) {
    let total: usize = outcomes.iter().map(|o| o.inspection.findings().len()).sum();
    let plural = if total == 1 { "" } else { "s" };
    println!(
        "{}: {total} finding{plural} in {} MCP message{}",
        verdict.to_string().to_uppercase(),
        outcomes.len(),
        if outcomes.len() == 1 { "" } else { "s" }
    );
    for outcome in outcomes {
        let method = outcome.method.as_deref().unwrap_or("-");
        let mut name = outcome.inspection.name().to_string();
        if verdict_of(outcome) == Verdict::Block {
            name = "block".into();
        }
        println!(
            "  line {} {} {method}: {name}",
            outcome.line,
            outcome.direction.name()
        );
        for (f, v) in judged(&outcome.inspection) {
            println!(
                "    {:<5} {:<8} {} ({}): {}",
                v.to_string(),
                f.severity.to_string(),
                f.rule_id,
                f.rule_name,
                f.preview
            );
        }
        if let (Inspection::Redirect(r), Some(answer)) = (&outcome.inspection, &outcome.answer) {
            match answer.get("error") {
                Some(error) => println!(
                    "    redirect to {:?} failed: {}",
                    r.profile,
                    error["data"]["reason"].as_str().unwrap_or("error")
                ),
                None => println!(
                    "    redirected to {:?}: {}",
                    r.profile,
                    answer["result"]["content"][0]["text"]
                        .as_str()
                        .unwrap_or("")
                        .trim()
                ),
            }
        }
    }
}
