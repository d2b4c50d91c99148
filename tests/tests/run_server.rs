//! `pipelock run`: the real binary on loopback, driven with curl and Python.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use pipelock_e2e::{curl_status_body, describe, free_port, run_with_timeout, write_file, Pipelock};

#[test]
fn default_config_serves_health_and_metrics() {
    let pipelock = Pipelock::start(&["--listen", "127.0.0.1:0"]).expect("start");
    let base = pipelock.base_url();

    let (code, body) = curl_status_body(&[], &format!("{base}/health")).expect("curl /health");
    assert_eq!(code, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("health is JSON");
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(health["mode"], "balanced", "{health}");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"), "{health}");

    // A second client: Python's urllib reads the metrics.
    let script = format!(
        "import urllib.request\nr = urllib.request.urlopen('{base}/metrics', timeout=10)\nprint(r.status)\nprint(r.headers['Content-Type'])\nprint(r.read().decode())"
    );
    let mut python = Command::new("python3");
    python.args(["-c", &script]);
    let output = run_with_timeout(python, None, Duration::from_secs(20)).expect("python");
    assert!(output.status.success(), "{}", describe(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("200"), "{text}");
    assert!(
        lines
            .next()
            .is_some_and(|ct| ct.starts_with("application/openmetrics-text")),
        "{text}"
    );
    assert!(
        text.contains(r#"pipelock_http_requests_total{endpoint="health",status="200"} 1"#),
        "the /health request was not counted:\n{text}"
    );
    assert!(text.contains("pipelock_build_info{"), "{text}");
    assert!(text.contains("pipelock_start_time_seconds "), "{text}");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");

    // The default enables the forward proxy, which this build serves: no "not yet available"
    // warning names it.
    let logs = pipelock.stdout_lines().join("\n");
    assert!(
        !logs
            .lines()
            .any(|l| l.contains("not yet available") && l.contains("forward_proxy")),
        "{logs}"
    );
}

#[test]
fn unknown_paths_wrong_methods_and_proxy_requests_get_json_errors() {
    let pipelock = Pipelock::start(&["--listen", "127.0.0.1:0"]).expect("start");
    let base = pipelock.base_url();

    let (code, body) = curl_status_body(&[], &format!("{base}/nope")).expect("curl");
    assert_eq!(code, 404, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(error["error"], "not_found");

    let (code, body) =
        curl_status_body(&["-X", "POST", "-d", "x"], &format!("{base}/health")).expect("curl POST");
    assert_eq!(code, 405, "{body}");

    // A proxy request to a loopback address is an SSRF attempt under the default config: it is
    // refused with a JSON answer and never forwarded. The target records whether anything
    // reached it.
    let target = std::net::TcpListener::bind("127.0.0.1:0").expect("target");
    target.set_nonblocking(true).expect("nonblocking");
    let target_url = format!("http://{}/", target.local_addr().expect("addr"));
    let (code, body) = curl_status_body(&["--proxy", &base], &target_url).expect("curl proxy");
    assert_eq!(code, 403, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(error["error"], "blocked", "{error}");
    assert_eq!(error["rule"], "url.ssrf", "{error}");
    assert!(
        target.accept().is_err(),
        "the proxy request reached the target"
    );
}

#[test]
fn sigterm_closes_idle_connections_and_exits_zero() {
    let mut pipelock = Pipelock::start(&["--listen", "127.0.0.1:0"]).expect("start");

    // A keep-alive client that stays connected after its request.
    let mut client = TcpStream::connect(pipelock.addr).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    client
        .write_all(b"GET /health HTTP/1.1\r\nHost: pipelock\r\n\r\n")
        .expect("request");
    let mut buf = [0u8; 4096];
    let n = client.read(&mut buf).expect("response");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );

    let asked = Instant::now();
    pipelock.signal(libc::SIGTERM).expect("SIGTERM");
    let status = pipelock.wait_exit(Duration::from_secs(15)).expect("exit");
    assert!(status.success(), "exit status {status}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "an idle keep-alive connection held shutdown for {:?}",
        asked.elapsed()
    );
    let logs = pipelock.stdout_lines().join("\n");
    assert!(logs.contains("SIGTERM"), "{logs}");
    assert!(logs.contains("shutdown complete"), "{logs}");
    // The idle connection was closed by the server.
    let n = client.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the connection was not closed");
}

#[test]
fn sigint_exits_zero() {
    let mut pipelock = Pipelock::start(&["--listen", "127.0.0.1:0"]).expect("start");
    pipelock.signal(libc::SIGINT).expect("SIGINT");
    let status = pipelock.wait_exit(Duration::from_secs(15)).expect("exit");
    assert!(status.success(), "exit status {status}");
    assert!(pipelock.stdout_lines().join("\n").contains("SIGINT"));
}

#[test]
fn listen_address_from_the_config_file_and_separate_metrics_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port().expect("port");
    let config = write_file(
        dir.path(),
        "pipelock.yaml",
        &format!(
            "version: 1\nmode: strict\napi_allowlist: [\"api.example.com\"]\nfetch_proxy:\n  listen: \"127.0.0.1:{port}\"\nmetrics_listen: \"127.0.0.1:0\"\nlogging:\n  format: json\n  output: stdout\n"
        ),
    )
    .expect("config");
    let mut pipelock =
        Pipelock::start(&["--config", config.to_str().expect("utf-8")]).expect("start");
    assert_eq!(pipelock.addr.port(), port);
    let metrics_addr = pipelock
        .wait_for_listener("metrics", Duration::from_secs(5))
        .expect("metrics listener");

    let (code, body) =
        curl_status_body(&[], &format!("{}/health", pipelock.base_url())).expect("health");
    assert_eq!(code, 200);
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(health["mode"], "strict");

    let (code, _) = curl_status_body(&[], &format!("{}/metrics", pipelock.base_url()))
        .expect("metrics on main");
    assert_eq!(code, 404, "/metrics must move to metrics_listen");
    let (code, body) =
        curl_status_body(&[], &format!("http://{metrics_addr}/metrics")).expect("metrics");
    assert_eq!(code, 200);
    assert!(body.contains(r#"mode="strict""#), "{body}");
}

#[test]
fn logs_go_to_a_file_in_text_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port().expect("port");
    let log_path = dir.path().join("pipelock.log");
    let config = write_file(
        dir.path(),
        "pipelock.yaml",
        &format!(
            "version: 1\nfetch_proxy:\n  listen: \"127.0.0.1:{port}\"\nlogging:\n  format: text\n  output: both\n  file: \"{}\"\n",
            log_path.display()
        ),
    )
    .expect("config");
    // With output both, stdout still carries the listening line the helper waits for.
    let mut pipelock =
        Pipelock::start(&["--config", config.to_str().expect("utf-8")]).expect("start");
    pipelock.signal(libc::SIGTERM).expect("SIGTERM");
    assert!(pipelock
        .wait_exit(Duration::from_secs(15))
        .expect("exit")
        .success());

    let text = std::fs::read_to_string(&log_path).expect("log file");
    assert!(text.contains("pipelock starting"), "{text}");
    assert!(text.contains(&format!("addr=127.0.0.1:{port}")), "{text}");
    assert!(text.contains("shutdown complete"), "{text}");
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_err()),
        "text format wrote JSON:\n{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&log_path)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "log file mode {mode:o}");
}

#[test]
fn logging_to_a_file_without_a_path_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_file(
        dir.path(),
        "pipelock.yaml",
        "version: 1\nfetch_proxy:\n  listen: \"127.0.0.1:0\"\nlogging:\n  output: file\n",
    )
    .expect("config");
    let output = pipelock_e2e::run_pipelock(
        &["run", "--config", config.to_str().expect("utf-8")],
        None,
        Duration::from_secs(20),
    )
    .expect("run");
    assert!(!output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("logging.file"), "{}", describe(&output));
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let output =
        pipelock_e2e::run_pipelock(&["run", "--listen", &addr], None, Duration::from_secs(20))
            .expect("run");
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{}",
        describe(&output)
    );
}

#[test]
fn a_bad_worker_thread_count_is_a_clear_error_not_a_panic() {
    for bad in ["", "0", "two"] {
        let mut command = pipelock_e2e::pipelock_command();
        command
            .env("TOKIO_WORKER_THREADS", bad)
            .args(["run", "--listen", "127.0.0.1:0"]);
        let output = run_with_timeout(command, None, Duration::from_secs(20)).expect("run");
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("TOKIO_WORKER_THREADS must be a whole number")
                && !stderr.contains("panicked"),
            "{}",
            describe(&output)
        );
    }
    // A valid count serves.
    let mut command = pipelock_e2e::pipelock_command();
    command
        .env("TOKIO_WORKER_THREADS", "1")
        .args(["run", "--listen", "127.0.0.1:0"]);
    let pipelock = Pipelock::spawn(command).expect("spawn");
    let (status, body) =
        curl_status_body(&[], &format!("{}/health", pipelock.base_url())).expect("curl /health");
    assert_eq!(status, 200, "{body}");
}
