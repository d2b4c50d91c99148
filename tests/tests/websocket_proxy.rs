//! The WebSocket proxy through the real binary: Python's `websockets` library on `/ws?url=…`,
//! a raw absolute-URI upgrade through the forward proxy, and a real WebSocket server on
//! loopback (plain, or `wss://` with a certificate from a test CA) that records what reached
//! it, so a blocked message can be shown never to have arrived.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use pipelock_e2e::upstream::TestPki;
use pipelock_e2e::ws_client::{upgrade, Answer};
use pipelock_e2e::ws_upstream::{header, WsEvent, WsUpstream, WS_INJECTION};
use pipelock_e2e::{curl_status_body, describe, run_with_timeout, write_file, Pipelock};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const AWS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";

/// A Python `websockets` client. argv: URL, a JSON list of steps, a JSON object of connect
/// options. Steps: `["send", text]`, `["fragments", [text, …]]` (one message in several
/// frames), `["binary", hex]`, `["recv"]`, `["sleep", seconds]`, `["wait_closed", seconds]`. Prints one JSON list
/// of what happened: `{"open": subprotocol}`, `{"recv": text}`, `{"closed": code, "reason":
/// reason}`, `{"status": http_status}`, `{"timeout": step}`.
const PY_CLIENT: &str = r#"
import asyncio, json, sys
import websockets

async def main():
    url, steps, options = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    out = []
    try:
        async with websockets.connect(url, open_timeout=10, close_timeout=5,
                                      ping_interval=None, max_size=None, **options) as ws:
            out.append({"open": ws.subprotocol})
            for step in steps:
                kind = step[0]
                if kind == "send":
                    await ws.send(step[1])
                elif kind == "fragments":
                    await ws.send(step[1])
                elif kind == "binary":
                    await ws.send(bytes.fromhex(step[1]))
                elif kind == "recv":
                    message = await asyncio.wait_for(ws.recv(), 10)
                    out.append({"recv": message if isinstance(message, str) else message.hex()})
                elif kind == "sleep":
                    await asyncio.sleep(step[1])
                elif kind == "wait_closed":
                    await asyncio.wait_for(ws.wait_closed(), step[1])
                    out.append({"closed": ws.close_code, "reason": ws.close_reason})
    except websockets.exceptions.ConnectionClosed as e:
        out.append({"closed": e.rcvd.code if e.rcvd else None,
                    "reason": e.rcvd.reason if e.rcvd else None})
    except websockets.exceptions.InvalidStatusCode as e:
        out.append({"status": e.status_code})
    except asyncio.TimeoutError:
        out.append({"timeout": True})
    print(json.dumps(out))

asyncio.run(main())
"#;

/// Starts pipelock with the forward proxy and the WebSocket proxy on, loopback reachable
/// (the test upstream is on loopback, which the SSRF guard otherwise refuses), blocking
/// actions, and `websocket` as the `websocket_proxy` section's extra lines.
fn start(websocket: &str) -> (Pipelock, tempfile::TempDir) {
    start_with_config(&blocking_config(websocket, ""))
}

/// The config of [`start`], plus top-level YAML `extra`.
fn blocking_config(websocket: &str, extra: &str) -> String {
    format!(
        "version: 1\nforward_proxy:\n  enabled: true\nssrf:\n  ip_allowlist: [\"127.0.0.0/8\"]\nrequest_body_scanning:\n  action: block\nresponse_scanning:\n  action: block\nwebsocket_proxy:\n  enabled: true\n  max_message_bytes: 4096\n{websocket}{extra}"
    )
}

/// [`start`] with origins' certificates verified against `ca_pem` too
/// (`tls_interception.upstream_ca_file`; interception itself stays off). The CA file lives in
/// the second directory.
fn start_trusting(ca_pem: &str) -> (Pipelock, tempfile::TempDir, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = write_file(dir.path(), "origin-ca.pem", ca_pem).expect("CA file");
    let trust = format!(
        "tls_interception:\n  upstream_ca_file: {}\n",
        ca.to_str().expect("utf-8")
    );
    let (pipelock, config_dir) = start_with_config(&blocking_config("", &trust));
    (pipelock, config_dir, dir)
}

fn start_with_config(yaml: &str) -> (Pipelock, tempfile::TempDir) {
    Pipelock::start_with_yaml(yaml).expect("pipelock starts")
}

/// A Python interpreter with `websockets` (pyenv's or Debian's python3-websockets).
fn python_with_websockets() -> String {
    for python in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(python)
            .args(["-c", "import websockets"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return python.to_string();
        }
    }
    panic!("no python3 with the websockets module: run `cargo xtask setup` (installs python3-websockets)");
}

/// `ws://PIPELOCK/ws?url=TARGET`, the target percent-encoded.
fn endpoint_url(pipelock: &Pipelock, target: &str) -> String {
    let encoded: String = target
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("ws://{}/ws?url={encoded}", pipelock.addr)
}

/// Runs the Python client against `url` with `steps`; returns what it reported.
fn python(
    url: &str,
    steps: &serde_json::Value,
    options: &serde_json::Value,
) -> Vec<serde_json::Value> {
    let mut command = Command::new(python_with_websockets());
    command
        .args(["-c", PY_CLIENT, url])
        .arg(steps.to_string())
        .arg(options.to_string());
    let output = run_with_timeout(command, None, Duration::from_secs(40)).expect("python runs");
    assert!(output.status.success(), "{}", describe(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("the client printed no JSON ({e}): {}", describe(&output)))
}

/// The close (code, reason) a Python run ended with.
fn closed(report: &[serde_json::Value]) -> (i64, String) {
    let last = report.last().expect("a report");
    let code = last
        .get("closed")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or_else(|| panic!("the session did not end with a close frame: {report:?}"));
    let reason = last
        .get("reason")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .to_string();
    (code, reason)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

/// Reads the next data message or close from a forward-proxy session.
fn read_message(
    socket: &mut tokio_tungstenite::tungstenite::WebSocket<std::net::TcpStream>,
) -> Result<Message, WsError> {
    loop {
        match socket.read()? {
            Message::Ping(_) | Message::Pong(_) => {}
            other => return Ok(other),
        }
    }
}

fn open_through_proxy(
    proxy: SocketAddr,
    upstream: &WsUpstream,
    path: &str,
) -> tokio_tungstenite::tungstenite::WebSocket<std::net::TcpStream> {
    let target = format!("http://{}{path}", upstream.addr);
    match upgrade(proxy, &target, &[]).expect("the upgrade request") {
        Answer::Open(socket, _) => *socket,
        Answer::Refused(status, body) => panic!("refused with {status}: {body}"),
    }
}

#[test]
fn clean_messages_round_trip_through_the_ws_endpoint() {
    let upstream = WsUpstream::start().expect("upstream");
    let (pipelock, _dir) = start("");
    let steps = serde_json::json!([
        ["send", "hello"],
        ["recv"],
        ["fragments", ["summarise ", "my spending ", "this month"]],
        ["recv"],
    ]);
    let options = serde_json::json!({
        "subprotocols": ["chat"],
        "extra_headers": {"Cookie": "session=s3cr3t-cookie", "X-Trace": "abc"},
        "origin": "http://agent.local",
    });
    let report = python(
        &endpoint_url(&pipelock, &upstream.url("/chat?room=1")),
        &steps,
        &options,
    );
    assert_eq!(
        report,
        vec![
            serde_json::json!({"open": "chat"}),
            serde_json::json!({"recv": "hello"}),
            serde_json::json!({"recv": "summarise my spending this month"}),
        ],
        "the session as the client saw it"
    );
    assert_eq!(
        upstream.texts(),
        vec!["hello", "summarise my spending this month"],
        "the fragmented message arrives whole"
    );
    let handshakes = upstream.handshakes();
    assert_eq!(handshakes.len(), 1);
    let (target, headers) = &handshakes[0];
    assert_eq!(target, "/chat?room=1");
    assert_eq!(header(headers, "x-trace"), Some("abc"));
    assert_eq!(
        header(headers, "origin"),
        Some(format!("http://{}", upstream.addr).as_str()),
        "origin_policy: rewrite"
    );
    assert_eq!(header(headers, "cookie"), None, "forward_cookies: false");
    assert_eq!(
        header(headers, "sec-websocket-extensions"),
        None,
        "strip_compression"
    );
    assert_eq!(
        header(headers, "host"),
        Some(upstream.addr.to_string().as_str())
    );

    // Counted in the metrics.
    let (status, metrics) =
        curl_status_body(&[], &format!("{}/metrics", pipelock.base_url())).expect("curl");
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"pipelock_websocket_messages_total{direction="out",verdict="allow"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"pipelock_websocket_messages_total{direction="in",verdict="allow"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("pipelock_websocket_connections "),
        "{metrics}"
    );
}

#[test]
fn clean_messages_round_trip_through_the_forward_proxy() {
    let upstream = WsUpstream::start().expect("upstream");
    let (pipelock, _dir) = start("  forward_cookies: true\n  origin_policy: strip\n");
    let target = format!("http://{}/feed", upstream.addr);
    let answer = upgrade(
        pipelock.addr,
        &target,
        &[
            "Cookie: session=1",
            "Origin: http://agent.local",
            "Sec-WebSocket-Protocol: v2, v1",
        ],
    )
    .expect("upgrade");
    let Answer::Open(mut socket, headers) = answer else {
        panic!("the upgrade was refused");
    };
    assert!(
        headers.contains(&("sec-websocket-protocol".to_string(), "v2".to_string())),
        "{headers:?}"
    );
    socket.send(Message::text("ping one")).expect("send");
    assert_eq!(
        read_message(&mut socket).expect("echo"),
        Message::text("ping one")
    );
    socket.send(Message::text("ping two")).expect("send");
    assert_eq!(
        read_message(&mut socket).expect("echo"),
        Message::text("ping two")
    );
    socket.close(None).expect("close");
    // The close handshake completes: the proxy answers our close.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match socket.read() {
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => assert!(Instant::now() < deadline, "no close answer"),
        }
    }
    let (_, headers) = upstream.handshakes().pop().expect("a handshake");
    assert_eq!(
        header(&headers, "cookie"),
        Some("session=1"),
        "forward_cookies: true"
    );
    assert_eq!(header(&headers, "origin"), None, "origin_policy: strip");
    assert_eq!(upstream.texts(), vec!["ping one", "ping two"]);
    // The upstream saw the client's close passed on.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !upstream
        .events()
        .iter()
        .any(|e| matches!(e, WsEvent::Close(_)))
    {
        assert!(
            Instant::now() < deadline,
            "the close never reached the upstream: {:?}",
            upstream.events()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_secret_split_across_fragments_is_blocked_before_the_upstream() {
    let upstream = WsUpstream::start().expect("upstream");
    let (pipelock, _dir) = start("");
    let steps = serde_json::json!([
        ["send", "first, a clean message"],
        ["recv"],
        ["fragments", ["my key is AKIAIOSF", "ODNN7EXAMPLE ok?"]],
        ["recv"],
    ]);
    let report = python(
        &endpoint_url(&pipelock, &upstream.url("/")),
        &steps,
        &serde_json::json!({}),
    );
    assert_eq!(
        report[1],
        serde_json::json!({"recv": "first, a clean message"}),
        "{report:?}"
    );
    let (code, reason) = closed(&report);
    assert_eq!(code, 1008, "{report:?}");
    assert!(reason.contains("dlp.aws_access_key_id"), "{reason}");
    assert!(
        !reason.contains(AWS_KEY),
        "the close reason must not echo the secret"
    );
    assert_eq!(
        upstream.texts(),
        vec!["first, a clean message"],
        "the secret reached the upstream"
    );

    // The same through the forward proxy, in one frame.
    let mut socket = open_through_proxy(pipelock.addr, &upstream, "/");
    socket
        .send(Message::text(format!("key={AWS_KEY}")))
        .expect("send");
    match read_message(&mut socket) {
        Ok(Message::Close(Some(frame))) => {
            assert_eq!(frame.code, CloseCode::Policy);
            assert!(frame.reason.contains("dlp.aws_access_key_id"), "{frame:?}");
        }
        other => panic!("expected close 1008, got {other:?}"),
    }
    assert!(
        !upstream.texts().iter().any(|t| t.contains("AKIA")),
        "the secret reached the upstream: {:?}",
        upstream.texts()
    );
    assert!(
        pipelock.stdout_lines().iter().any(|l| l.contains("WebSocket message blocked") && l.contains("dlp.aws_access_key_id")),
        "no block event logged"
    );
}

#[test]
fn an_injection_from_the_upstream_closes_the_client_with_1008() {
    let upstream = WsUpstream::start().expect("upstream");
    let (pipelock, _dir) = start("");
    let report = python(
        &endpoint_url(&pipelock, &upstream.url("/inject")),
        &serde_json::json!([["recv"]]),
        &serde_json::json!({}),
    );
    let (code, reason) = closed(&report);
    assert_eq!(code, 1008, "{report:?}");
    assert!(reason.starts_with("blocked by pipelock: "), "{reason}");
    assert!(
        !report
            .iter()
            .any(|r| r.to_string().contains("Ignore all previous")),
        "the injection reached the client: {report:?}"
    );

    // In warn mode it is delivered (and flagged in the log).
    let (warn, _dir2) = start_with_config(
        "version: 1\nssrf:\n  ip_allowlist: [\"127.0.0.0/8\"]\nresponse_scanning:\n  action: warn\nwebsocket_proxy:\n  enabled: true\n",
    );
    let report = python(
        &endpoint_url(&warn, &upstream.url("/inject")),
        &serde_json::json!([["recv"]]),
        &serde_json::json!({}),
    );
    assert_eq!(
        report.get(1),
        Some(&serde_json::json!({"recv": WS_INJECTION})),
        "{report:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !warn
        .stdout_lines()
        .iter()
        .any(|l| l.contains("forwarded with a warning"))
    {
        assert!(Instant::now() < deadline, "no warning logged");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn binary_and_oversized_messages_close_the_session() {
    let upstream = WsUpstream::start().expect("upstream");
    let (pipelock, _dir) = start("");
    let url = endpoint_url(&pipelock, &upstream.url("/"));

    // Binary is refused by default: 1003.
    let report = python(
        &url,
        &serde_json::json!([["binary", "00ff10"], ["recv"]]),
        &serde_json::json!({}),
    );
    assert_eq!(closed(&report).0, 1003, "{report:?}");

    // A text message over max_message_bytes (4096), in one frame or in fragments: 1009.
    let big = "a".repeat(5000);
    let report = python(
        &url,
        &serde_json::json!([["send", big], ["recv"]]),
        &serde_json::json!({}),
    );
    assert_eq!(closed(&report).0, 1009, "{report:?}");
    let pieces: Vec<String> = (0..5).map(|_| "b".repeat(1000)).collect();
    let report = python(
        &url,
        &serde_json::json!([["fragments", pieces], ["recv"]]),
        &serde_json::json!({}),
    );
    assert_eq!(closed(&report).0, 1009, "{report:?}");
    assert!(
        !upstream
            .events()
            .iter()
            .any(|e| matches!(e, WsEvent::Binary(_) | WsEvent::Text(_))),
        "a refused message reached the upstream: {:?}",
        upstream.events()
    );

    // With allow_binary_frames, binary passes unscanned.
    let (open, _dir2) = start("  allow_binary_frames: true\n");
    let report = python(
        &endpoint_url(&open, &upstream.url("/")),
        &serde_json::json!([["binary", "00ff10"], ["recv"]]),
        &serde_json::json!({}),
    );
    assert_eq!(
        report.get(1),
        Some(&serde_json::json!({"recv": "00ff10"})),
        "{report:?}"
    );
}

#[test]
fn disabled_section_and_refused_targets_answer_before_the_upstream() {
    let upstream = WsUpstream::start().expect("upstream");
    // The section is off by default: 403 on both doors.
    let (off, _dir) = start_with_config(
        "version: 1\nforward_proxy:\n  enabled: true\nssrf:\n  ip_allowlist: [\"127.0.0.0/8\"]\n",
    );
    let ws_path = format!("/ws?url=ws://{}/", upstream.addr);
    for target in [ws_path.clone(), format!("http://{}/", upstream.addr)] {
        match upgrade(off.addr, &target, &[]).expect("request") {
            Answer::Refused(status, body) => {
                assert_eq!(status, 403, "{target}: {body}");
                assert_eq!(json(&body)["error"], "websocket_disabled", "{body}");
            }
            Answer::Open(..) => panic!("{target}: opened with the section off"),
        }
    }

    let (pipelock, _dir2) = start("");
    let refused = |target: &str, extra: &[&str]| match upgrade(pipelock.addr, target, extra)
        .expect("request")
    {
        Answer::Refused(status, body) => (status, json(&body)),
        Answer::Open(..) => panic!("{target}: opened"),
    };
    // A secret in the target URL, or in a sensitive header: 403, never dialled.
    let (status, body) = refused(
        &format!("/ws?url=ws://{}/?key={AWS_KEY}", upstream.addr),
        &[],
    );
    assert_eq!(
        (status, body["rule"].as_str()),
        (403, Some("dlp.aws_access_key_id")),
        "{body}"
    );
    let (status, body) = refused(
        &format!("http://{}/", upstream.addr),
        &[&format!("Authorization: Bearer {AWS_KEY}")],
    );
    assert_eq!(
        (status, body["rule"].as_str()),
        (403, Some("dlp.aws_access_key_id")),
        "{body}"
    );
    // Not a WebSocket handshake (a second, different version): 400.
    let (status, body) = refused(&ws_path, &["Sec-WebSocket-Version: 8"]);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("bad_websocket_handshake")),
        "{body}"
    );
    // An upstream that negotiates compression: the frames could not be scanned, 502.
    let (status, body) = refused(&format!("/ws?url=ws://{}/deflate", upstream.addr), &[]);
    assert_eq!(
        (status, body["error"].as_str()),
        (502, Some("websocket_extension_negotiated")),
        "{body}"
    );
    assert_eq!(
        upstream.handshakes().len(),
        1,
        "only /deflate reached the upstream: {:?}",
        upstream.handshakes()
    );

    // Without the loopback allowance the SSRF guard refuses the address.
    let (guarded, _dir3) = start_with_config("version: 1\nwebsocket_proxy:\n  enabled: true\n");
    match upgrade(guarded.addr, &ws_path, &[]).expect("request") {
        Answer::Refused(status, body) => assert_eq!(status, 403, "{body}"),
        Answer::Open(..) => panic!("loopback reached despite the SSRF guard"),
    }
    assert_eq!(upstream.handshakes().len(), 1);
}

#[test]
fn wss_targets_are_reached_over_verified_tls_and_scanned() {
    let pki = TestPki::new().expect("test pki");
    let upstream = WsUpstream::start_tls(&pki).expect("wss upstream");
    let (pipelock, _config, _ca) = start_trusting(&pki.ca_pem);
    let url = endpoint_url(&pipelock, &upstream.url("/chat?room=1"));
    assert!(url.contains("url=wss%3A%2F%2F127.0.0.1"), "{url}");

    // A clean session: whole and fragmented messages echoed over TLS.
    let report = python(
        &url,
        &serde_json::json!([
            ["send", "hello over tls"],
            ["recv"],
            ["fragments", ["summarise ", "my spending"]],
            ["recv"],
        ]),
        &serde_json::json!({"subprotocols": ["chat"]}),
    );
    assert_eq!(
        report,
        vec![
            serde_json::json!({"open": "chat"}),
            serde_json::json!({"recv": "hello over tls"}),
            serde_json::json!({"recv": "summarise my spending"}),
        ],
        "the session as the client saw it"
    );
    let (target, headers) = upstream.handshakes().pop().expect("a handshake");
    assert_eq!(target, "/chat?room=1");
    assert_eq!(
        header(&headers, "origin"),
        Some(format!("https://{}", upstream.addr).as_str()),
        "origin_policy: rewrite names the https origin"
    );

    // A secret in a message closes the session with 1008 and never reaches the upstream.
    let report = python(
        &url,
        &serde_json::json!([
            ["send", "clean first"],
            ["recv"],
            ["send", format!("my key is {AWS_KEY}")],
            ["recv"],
        ]),
        &serde_json::json!({}),
    );
    assert_eq!(
        report[1],
        serde_json::json!({"recv": "clean first"}),
        "{report:?}"
    );
    let (code, reason) = closed(&report);
    assert_eq!(code, 1008, "{report:?}");
    assert!(reason.contains("dlp.aws_access_key_id"), "{reason}");
    assert_eq!(
        upstream.texts(),
        vec!["hello over tls", "summarise my spending", "clean first"],
        "the secret reached the upstream"
    );
}

#[test]
fn a_wss_origin_with_an_untrusted_certificate_is_refused_with_502() {
    // Pipelock trusts one test CA; the origin's certificate comes from another.
    let trusted = TestPki::new().expect("test pki");
    let other = TestPki::new().expect("other pki");
    let upstream = WsUpstream::start_tls(&other).expect("wss upstream");
    let (pipelock, _config, _ca) = start_trusting(&trusted.ca_pem);
    let target = format!("/ws?url={}", upstream.url("/"));
    match upgrade(pipelock.addr, &target, &[]).expect("request") {
        Answer::Refused(status, body) => {
            assert_eq!(status, 502, "{body}");
            let body = json(&body);
            assert_eq!(body["error"], "upstream_tls_failed", "{body}");
            let message = body["message"].as_str().unwrap_or_default();
            assert!(message.contains("certificate"), "{body}");
        }
        Answer::Open(..) => {
            panic!("opened a session to an origin whose certificate is not trusted")
        }
    }
    assert!(
        upstream.events().is_empty(),
        "the upstream saw a handshake: {:?}",
        upstream.events()
    );
}

#[test]
fn idle_and_overlong_sessions_are_closed_with_1001() {
    let upstream = WsUpstream::start().expect("upstream");
    let (pipelock, _dir) = start("  idle_timeout_seconds: 1\n");
    let started = Instant::now();
    let report = python(
        &endpoint_url(&pipelock, &upstream.url("/")),
        &serde_json::json!([["send", "hi"], ["recv"], ["wait_closed", 10]]),
        &serde_json::json!({}),
    );
    let (code, reason) = closed(&report);
    assert_eq!(code, 1001, "{report:?}");
    assert!(reason.contains("idle"), "{reason}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );

    // A busy session still ends at max_connection_seconds.
    let (limited, _dir2) = start(
        "  max_connection_seconds: 1
  idle_timeout_seconds: 30
",
    );
    let started = Instant::now();
    let report = python(
        &endpoint_url(&limited, &upstream.url("/")),
        &serde_json::json!([
            ["send", "a"],
            ["recv"],
            ["sleep", 0.4],
            ["send", "b"],
            ["recv"],
            ["sleep", 0.4],
            ["send", "c"],
            ["recv"],
            ["wait_closed", 10],
        ]),
        &serde_json::json!({}),
    );
    let (code, reason) = closed(&report);
    assert_eq!(code, 1001, "{report:?}");
    assert!(reason.contains("max_connection_seconds"), "{reason}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn sessions_over_the_cap_get_503_and_slots_come_back() {
    let upstream = WsUpstream::start().expect("upstream");
    let (pipelock, _dir) = start("  max_concurrent_connections: 1\n");
    let mut first = open_through_proxy(pipelock.addr, &upstream, "/");
    let path = format!("/ws?url=ws://{}/", upstream.addr);
    match upgrade(pipelock.addr, &path, &[]).expect("request") {
        Answer::Refused(status, body) => {
            assert_eq!(status, 503, "{body}");
            assert_eq!(json(&body)["error"], "websocket_limit", "{body}");
        }
        Answer::Open(..) => panic!("a second session opened over the cap of 1"),
    }
    first.close(None).expect("close");
    let _ = read_message(&mut first);
    // Once the first session has ended its slot is free again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match upgrade(pipelock.addr, &path, &[]).expect("request") {
            Answer::Open(..) => break,
            Answer::Refused(503, _) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Answer::Refused(status, body) => panic!("{status}: {body}"),
        }
    }
}

#[test]
fn shutdown_closes_open_sessions_with_1001_and_waits_for_them() {
    let upstream = WsUpstream::start().expect("upstream");
    let (mut pipelock, _dir) = start("");
    let mut socket = open_through_proxy(pipelock.addr, &upstream, "/");
    socket.send(Message::text("before shutdown")).expect("send");
    assert_eq!(
        read_message(&mut socket).expect("echo"),
        Message::text("before shutdown")
    );

    let asked = Instant::now();
    pipelock.signal(libc::SIGTERM).expect("SIGTERM");
    match read_message(&mut socket) {
        Ok(Message::Close(Some(frame))) => {
            assert_eq!(frame.code, CloseCode::Away, "{frame:?}");
            assert!(frame.reason.contains("shutting down"), "{frame:?}");
        }
        other => panic!("expected close 1001, got {other:?}"),
    }
    // Reading on sends tungstenite's answer to the close; then the client hangs up, as a
    // client does once the closing handshake is done.
    while socket.read().is_ok() {}
    drop(socket);

    let status = pipelock.wait_exit(Duration::from_secs(15)).expect("exit");
    assert!(status.success(), "exit status {status}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}: the session did not close promptly",
        asked.elapsed()
    );
    // The upstream was told 1001 too.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !upstream.events().contains(&WsEvent::Close(Some(1001))) {
        assert!(
            Instant::now() < deadline,
            "the upstream got no close 1001: {:?}",
            upstream.events()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The process waited for the session: it ended before the shutdown completed, and the
    // grace period was not needed.
    let logs = pipelock.stdout_lines();
    let closed = logs
        .iter()
        .position(|l| l.contains("WebSocket session closed") && l.contains("shutting down"));
    let complete = logs.iter().position(|l| l.contains("shutdown complete"));
    assert!(
        matches!((closed, complete), (Some(c), Some(d)) if c < d),
        "{}",
        logs.join("\n")
    );
}
