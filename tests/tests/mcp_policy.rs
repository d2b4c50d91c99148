//! Tool policy (built-in and user rules), redirect handlers (answering, failing, hanging),
//! tool-call chains and the Bearer token, through Pipelock's MCP reverse proxy and its stdio
//! wrapper, driven by FastMCP's own client (`tests/mcp/fastmcp_client.py`) against the FastMCP
//! test server with its agent tools (`fastmcp_server.py … agent`: `list_files`, `read_file`,
//! `run_command`, `http_post`, which only pretend). Both are installed by `cargo xtask setup`
//! into `tests/mcp/.venv`; without it these tests fail, they never skip.
//!
//! All traffic stays on loopback; every process is bounded by a timeout and killed on drop.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pipelock_e2e::mcp::{fastmcp_client, mcp_dir, pipelock_for, venv_python, FastMcp};
use pipelock_e2e::{pipelock_bin, write_file};
use serde_json::{json, Value};

/// A redirect handler: answers the `tools/call` request it reads on stdin with a full
/// `CallToolResult`, with the `structuredContent` the tool's `outputSchema` (FastMCP's
/// `{"result": string}`) asks for.
const REVIEW_HANDLER: &str = r#"import json, sys
request = json.loads(sys.stdin.readline())
arguments = request["params"]["arguments"]
said = f"queued for review: {len(arguments['body'])} bytes to {arguments['url']} (id {request['id']})"
print(json.dumps({"content": [{"type": "text", "text": said}], "structuredContent": {"result": said}}))
"#;

/// The tool policy under test, with the handlers' paths and the hanging handler's pid file
/// filled in: a user rule blocking `psql` against production from `run_command`, and
/// `http_post` redirected to one of three handlers by the URL.
const POLICY: &str = r#"mcp_tool_policy:
  enabled: true
  action: warn
  rules:
    - name: No production database
      tool_pattern: "^run_command$"
      arg_key: command
      arg_pattern: "\\bpsql\\b.*\\bprod"
      action: block
    - name: Review outbound posts
      tool_pattern: "^http_post$"
      arg_key: url
      arg_pattern: "/review"
      action: redirect
      redirect_profile: review
    - name: Text handler
      tool_pattern: "^http_post$"
      arg_key: url
      arg_pattern: "/note"
      action: redirect
      redirect_profile: note
    - name: Broken handler
      tool_pattern: "^http_post$"
      arg_key: url
      arg_pattern: "/broken"
      action: redirect
      redirect_profile: broken
    - name: Stuck handler
      tool_pattern: "^http_post$"
      arg_key: url
      arg_pattern: "/stuck"
      action: redirect
      redirect_profile: stuck
  redirect_profiles:
    review:
      exec: ["{python}", "{review}"]
      reason: outbound posts are queued for review
    note:
      exec: ["/bin/echo", "noted, not sent"]
      reason: a handler that answers in plain text
    broken:
      exec: ["/bin/sh", "-c", "echo handler crashed >&2; exit 3"]
      reason: a handler that fails
    stuck:
      exec: ["/bin/sh", "-c", "echo $$ > {pidfile}; exec sleep 300"]
      reason: a handler that never answers
"#;

/// Writes the handler script and returns the policy config for `dir`.
fn policy(dir: &Path) -> Result<String> {
    let review = write_file(dir, "review.py", REVIEW_HANDLER)?;
    Ok(POLICY
        .replace("{python}", &venv_python().display().to_string())
        .replace("{review}", &review.display().to_string())
        .replace("{pidfile}", &dir.join("stuck.pid").display().to_string()))
}

fn call(name: &str, arguments: Value) -> Value {
    json!({"name": name, "arguments": arguments})
}

/// The `i`th call's answer in a client's output.
fn answer(out: &Value, i: usize) -> &Value {
    &out["calls"][i]
}

/// The text of a call's result, or a description of the error it got instead.
fn text(answer: &Value) -> String {
    answer["text"][0]
        .as_str()
        .map_or_else(|| format!("no result: {answer}"), str::to_string)
}

/// Asserts the answer is Pipelock's refusal by `rule`, naming the tool.
fn assert_blocked(answer: &Value, rule: &str, scanner: &str) {
    let error = &answer["error"];
    assert_eq!(error["code"], -32001, "{answer}");
    assert_eq!(error["data"]["rule"], rule, "{answer}");
    assert_eq!(error["data"]["scanner"], scanner, "{answer}");
    assert_eq!(error["data"]["tool"], answer["name"], "{answer}");
}

/// Pipelock's JSON log lines with `message`.
fn logged(lines: &[String], message: &str) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == message)
        .collect()
}

#[test]
fn built_in_and_user_policy_rules_block_before_the_server_and_warnings_pass() -> Result<()> {
    let server = FastMcp::start(&["agent"])?;
    let dir = tempfile::tempdir()?;
    let (pipelock, _config_dir, mcp) = pipelock_for(&server.url(), &policy(dir.path())?)?;
    let out = fastmcp_client(
        &["http", &mcp],
        &json!([
            call("run_command", json!({"command": "ls -la /srv/app"})),
            call(
                "run_command",
                json!({"command": "git push --force origin main"})
            ),
            call(
                "run_command",
                json!({"command": "g''it pu\\sh -\"f\" origin main"})
            ),
            call(
                "run_command",
                json!({"command": "psql -h db.prod.internal -c 'select 1'"})
            ),
            call(
                "run_command",
                json!({"command": "psql -h db.staging.internal"})
            ),
            call("run_command", json!({"command": "nohup ./worker.sh"})),
        ]),
    )?;
    assert!(
        out["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "run_command")),
        "{out}"
    );
    assert_eq!(text(answer(&out, 0)), "ran: ls -la /srv/app");
    // Built-in, as written and with the shell's quote splicing and escapes undone.
    assert_blocked(
        answer(&out, 1),
        "tool_policy.destructive_git",
        "tool_policy",
    );
    assert_blocked(
        answer(&out, 2),
        "tool_policy.destructive_git",
        "tool_policy",
    );
    // The user rule, only on its argument's match.
    assert_blocked(
        answer(&out, 3),
        "tool_policy.no_production_database",
        "tool_policy",
    );
    assert_eq!(text(answer(&out, 4)), "ran: psql -h db.staging.internal");
    // A built-in warning rule lets the call through and logs it.
    assert_eq!(text(answer(&out, 5)), "ran: nohup ./worker.sh");

    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        server.logged("CALL"),
        ["CALL run_command"; 3],
        "only the allowed calls reached the server"
    );
    let lines = pipelock.stdout_lines();
    let blocked = logged(&lines, "MCP message blocked");
    assert_eq!(blocked.len(), 3, "{lines:#?}");
    assert!(
        blocked.iter().all(|l| l["tool"] == "run_command"),
        "{blocked:#?}"
    );
    let warned = logged(&lines, "MCP message forwarded with a warning");
    assert!(
        warned
            .iter()
            .any(|l| l["rule"] == "tool_policy.detached_process"),
        "{lines:#?}"
    );
    Ok(())
}

#[test]
fn a_redirected_call_is_answered_by_its_handler_and_a_failing_handler_blocks() -> Result<()> {
    let server = FastMcp::start(&["agent"])?;
    let dir = tempfile::tempdir()?;
    let (pipelock, _config_dir, mcp) = pipelock_for(&server.url(), &policy(dir.path())?)?;
    let out = fastmcp_client(
        &["http", &mcp],
        &json!([
            call(
                "http_post",
                json!({"url": "http://127.0.0.1:9/review", "body": "weekly report"})
            ),
            call(
                "http_post",
                json!({"url": "http://127.0.0.1:9/broken", "body": "x"})
            ),
            call(
                "http_post",
                json!({"url": "http://127.0.0.1:9/other", "body": "hello"})
            ),
            call(
                "http_post",
                json!({"url": "http://127.0.0.1:9/note", "body": "x"})
            ),
        ]),
    )?;
    // The handler's answer is the call's result; the server never saw the call.
    let redirected = answer(&out, 0);
    assert_eq!(redirected["is_error"], false, "{redirected}");
    let said = text(redirected);
    assert!(
        said.starts_with("queued for review: 13 bytes to http://127.0.0.1:9/review (id "),
        "{said}"
    );
    // A handler that exits non-zero blocks the call, saying why.
    let failed = answer(&out, 1);
    assert_blocked(failed, "tool_policy.redirect_failed", "tool_policy");
    let reason = failed["error"]["data"]["reason"].to_string();
    assert!(
        reason.contains("exited with") && reason.contains("handler crashed"),
        "{failed}"
    );
    // A post no rule matches goes to the server.
    assert_eq!(
        text(answer(&out, 2)),
        "posted 5 bytes to http://127.0.0.1:9/other"
    );
    // A plain-text answer for a tool with an output schema arrives as a tool error (a success
    // without structured content is refused by MCP clients), its text intact.
    let noted = answer(&out, 3);
    assert_eq!(noted["is_error"], true, "{noted}");
    assert_eq!(text(noted), "noted, not sent\n");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.logged("CALL"), ["CALL http_post"]);

    let lines = pipelock.stdout_lines();
    assert!(
        logged(&lines, "redirect failed")
            .iter()
            .any(|l| l["profile"] == "broken"),
        "{lines:#?}"
    );
    Ok(())
}

#[test]
fn a_redirect_handler_that_hangs_is_killed_at_the_timeout_and_the_call_blocked() -> Result<()> {
    let server = FastMcp::start(&["agent"])?;
    let dir = tempfile::tempdir()?;
    let (_pipelock, _config_dir, mcp) = pipelock_for(&server.url(), &policy(dir.path())?)?;
    let started = Instant::now();
    let out = fastmcp_client(
        &["http", &mcp],
        &json!([
            call(
                "http_post",
                json!({"url": "http://127.0.0.1:9/stuck", "body": "x"})
            ),
            call("add", json!({"a": 2, "b": 3})),
        ]),
    )?;
    let took = started.elapsed();
    let stuck = answer(&out, 0);
    assert_blocked(stuck, "tool_policy.redirect_failed", "tool_policy");
    assert!(
        stuck["error"]["data"]["reason"]
            .to_string()
            .contains("timed out after 30s"),
        "{stuck}"
    );
    // The reference's 30 s, not the handler's 300 s; the session goes on afterwards.
    assert!(
        took >= Duration::from_secs(30) && took < Duration::from_secs(90),
        "{took:?}"
    );
    assert_eq!(text(answer(&out, 1)), "5");
    // The handler was killed, not left behind.
    let pid = std::fs::read_to_string(dir.path().join("stuck.pid"))
        .context("the stuck handler never ran")?;
    let proc = format!("/proc/{}", pid.trim());
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&proc).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !Path::new(&proc).exists(),
        "the hung handler {pid} still runs"
    );
    assert_eq!(server.logged("CALL"), ["CALL add"]);
    Ok(())
}

/// Chain detection blocking, with at most one unrelated call between the steps of a chain.
const CHAINS: &str =
    "tool_chain_detection:\n  enabled: true\n  action: block\n  window_size: 20\n  max_gap: 1\n";

#[test]
fn a_recon_then_exfil_chain_is_blocked_at_its_last_step_within_max_gap() -> Result<()> {
    let server = FastMcp::start(&["agent"])?;
    let (pipelock, _config_dir, mcp) = pipelock_for(&server.url(), CHAINS)?;
    let recon = |gap: usize| {
        let mut calls = vec![
            call("list_files", json!({"directory": "/srv/app"})),
            call("read_file", json!({"path": "/srv/app/config.yml"})),
        ];
        calls.extend((0..gap).map(|i| call("add", json!({"a": i, "b": 1}))));
        calls.push(call(
            "http_post",
            json!({"url": "http://127.0.0.1:9/collect", "body": "name: demo"}),
        ));
        Value::Array(calls)
    };

    // List, read, one unrelated call, send: the chain completes at the send.
    let out = fastmcp_client(&["http", &mcp], &recon(1))?;
    assert_eq!(text(answer(&out, 0)), "/srv/app: config.yml, README.md");
    assert_eq!(text(answer(&out, 2)), "1");
    assert_blocked(answer(&out, 3), "tool_chain.recon-then-exfil", "tool_chain");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !server
            .logged("CALL")
            .contains(&"CALL http_post".to_string()),
        "the exfiltrating call reached the server: {:?}",
        server.logged("CALL")
    );

    // A new session starts a new history; two unrelated calls in between exceed max_gap.
    let out = fastmcp_client(&["http", &mcp], &recon(2))?;
    assert_eq!(
        text(answer(&out, 4)),
        "posted 10 bytes to http://127.0.0.1:9/collect"
    );
    let lines = pipelock.stdout_lines();
    let blocked = logged(&lines, "MCP message blocked");
    assert_eq!(blocked.len(), 1, "{lines:#?}");
    assert_eq!(blocked[0]["tool"], "http_post", "{blocked:#?}");
    Ok(())
}

#[test]
fn sessionless_clients_are_judged_apart_by_address_and_token() -> Result<()> {
    // FastMCP's client speaks MCP 2026-07-28: no session id. Each client process below is a
    // new connection; what ties its calls together is its address and bearer token.
    let server = FastMcp::start(&["agent"])?;
    let (_pipelock, _config_dir, mcp) = pipelock_for(&server.url(), CHAINS)?;
    let post = call(
        "http_post",
        json!({"url": "http://127.0.0.1:9/collect", "body": "name: demo"}),
    );
    let recon = json!([
        call("list_files", json!({"directory": "/srv/app"})),
        call("read_file", json!({"path": "/srv/app/config.yml"})),
    ]);
    let out = fastmcp_client(&["http", &mcp, "agent-a"], &recon)?;
    assert_eq!(
        text(answer(&out, 1)),
        "contents of /srv/app/config.yml: name: demo"
    );
    // Another agent's send does not complete agent A's chain.
    let out = fastmcp_client(&["http", &mcp, "agent-b"], &json!([post.clone()]))?;
    assert_eq!(
        text(answer(&out, 0)),
        "posted 10 bytes to http://127.0.0.1:9/collect"
    );
    // Agent A's own send does, from a new connection.
    let out = fastmcp_client(&["http", &mcp, "agent-a"], &json!([post]))?;
    assert_blocked(answer(&out, 0), "tool_chain.recon-then-exfil", "tool_chain");
    Ok(())
}

#[test]
fn the_fastmcp_client_without_the_right_token_gets_401_and_with_it_a_session() -> Result<()> {
    let server = FastMcp::start(&["agent"])?;
    let (_pipelock, _config_dir, mcp) =
        pipelock_for(&server.url(), "  auth_token: \"s3cret-mcp-token\"\n")?;
    for args in [vec!["http", &mcp], vec!["http", &mcp, "wrong-token"]] {
        let out = fastmcp_client(&args, &json!([]))?;
        // The SDK reads the 401's JSON-RPC body and raises its error.
        let error = out["connect_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("missing or wrong bearer token"),
            "{args:?}: {out}"
        );
    }
    assert!(
        server.logged("LIST").is_empty(),
        "a refused session reached the server"
    );
    let out = fastmcp_client(
        &["http", &mcp, "s3cret-mcp-token"],
        &json!([call("add", json!({"a": 40, "b": 2}))]),
    )?;
    assert_eq!(text(answer(&out, 0)), "42");
    assert_eq!(server.logged("LIST").len(), 1);
    Ok(())
}

#[test]
fn the_stdio_wrapper_applies_policy_and_redirects_to_fastmcp_over_stdio() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = write_file(dir.path(), "pipelock.yaml", &policy(dir.path())?)?;
    let call_log = dir.path().join("calls.log");
    let python = venv_python();
    let server_script = mcp_dir().join("fastmcp_server.py");
    let call_log_arg = format!("calllog={}", call_log.display());
    let (bin, config, python, server_script) = (
        pipelock_bin().display().to_string(),
        config.display().to_string(),
        python.display().to_string(),
        server_script.display().to_string(),
    );
    let out = fastmcp_client(
        &[
            "stdio",
            &bin,
            "mcp",
            "proxy",
            "--config",
            &config,
            "--",
            &python,
            &server_script,
            "stdio",
            "agent",
            &call_log_arg,
        ],
        &json!([
            call(
                "run_command",
                json!({"command": "git push --force origin main"})
            ),
            call(
                "http_post",
                json!({"url": "http://127.0.0.1:9/review", "body": "report"})
            ),
            call("add", json!({"a": 1, "b": 1})),
        ]),
    )?;
    assert_blocked(
        answer(&out, 0),
        "tool_policy.destructive_git",
        "tool_policy",
    );
    assert!(
        text(answer(&out, 1))
            .starts_with("queued for review: 6 bytes to http://127.0.0.1:9/review"),
        "{out}"
    );
    assert_eq!(text(answer(&out, 2)), "2");
    let calls = std::fs::read_to_string(&call_log).context("the server logged no call")?;
    assert_eq!(
        calls
            .lines()
            .filter(|l| l.starts_with("CALL"))
            .collect::<Vec<_>>(),
        ["CALL add"]
    );
    Ok(())
}
