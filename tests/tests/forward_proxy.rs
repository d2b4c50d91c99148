//! The forward proxy through the real binary, with real clients (curl, Python `requests`, Ruby
//! Net::HTTP) and a real origin on loopback: what is blocked never reaches the origin, what is
//! clean arrives unchanged, and CONNECT tunnels get their hostname checks and time limits.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use pipelock_e2e::upstream::{pattern_bytes, Upstream, INJECTION};
use pipelock_e2e::{curl, curl_status_body, describe, run_with_timeout, Pipelock};

const AWS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";

/// Starts pipelock with the forward proxy on and loopback reachable (the origin is on
/// loopback, which the SSRF guard otherwise refuses), plus `extra` YAML.
fn start_proxy(extra: &str) -> (Pipelock, tempfile::TempDir, String) {
    start_proxy_with(extra, "block")
}

/// [`start_proxy`] with `request_body_scanning.action` set to `action`.
fn start_proxy_with(extra: &str, action: &str) -> (Pipelock, tempfile::TempDir, String) {
    start_with_config(&format!(
        "version: 1\nforward_proxy:\n  enabled: true\n  idle_timeout_seconds: 2\nssrf:\n  ip_allowlist: [\"127.0.0.0/8\"]\nrequest_body_scanning:\n  action: {action}\n{extra}"
    ))
}

/// Starts pipelock on a free loopback port with `yaml` as its config; returns it, the
/// directory holding the config, and its proxy URL.
fn start_with_config(yaml: &str) -> (Pipelock, tempfile::TempDir, String) {
    let (pipelock, dir) = Pipelock::start_with_yaml(yaml).expect("pipelock starts");
    let proxy_url = format!("http://{}", pipelock.addr);
    (pipelock, dir, proxy_url)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

#[test]
fn clean_traffic_passes_unchanged_and_secrets_are_blocked_before_the_origin() {
    let origin = Upstream::start().expect("origin");
    let (_pipelock, dir, proxy) = start_proxy("");

    // A clean page, and 100 MiB of binary data byte for byte (compared by SHA-256).
    let (status, body) = curl_status_body(&["-x", &proxy], &origin.url("/clean")).expect("curl");
    assert_eq!((status, body.as_str()), (200, "all good here\n"));
    let file = dir.path().join("download.bin");
    let output = curl(&[
        "-x",
        &proxy,
        "-o",
        file.to_str().expect("utf-8"),
        &origin.url("/bytes/104857600"),
    ])
    .expect("curl");
    assert!(output.status.success(), "{}", describe(&output));
    let sha256 = |bytes: &[u8]| -> String {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(bytes))
    };
    let downloaded = sha256(&std::fs::read(&file).expect("downloaded"));
    assert_eq!(
        downloaded,
        sha256(&pattern_bytes(104_857_600)),
        "the 100 MiB download differs"
    );

    // A clean JSON body reaches the origin intact.
    let clean = r#"{"messages":[{"role":"user","content":"summarise my spending"}]}"#;
    let (status, echoed) = curl_status_body(
        &[
            "-x",
            &proxy,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            clean,
        ],
        &origin.url("/echo"),
    )
    .expect("curl");
    assert_eq!((status, echoed.as_str()), (200, clean));
    let before = origin.seen().len();

    // A key in the query, in the Authorization header, in a JSON body (escaped), and in a
    // multipart upload (base64): 403 with the rule named, and nothing reaches the origin.
    let leaks: Vec<Vec<String>> = vec![
        vec![origin.url(&format!("/clean?key={AWS_KEY}"))],
        vec![
            "-H".into(),
            format!("Authorization: Bearer {AWS_KEY}"),
            origin.url("/clean"),
        ],
        vec![
            "-H".into(),
            "Content-Type: application/json".into(),
            "--data-binary".into(),
            r#"{"note":"\u0041KIAIOSFODNN7EXAMPLE"}"#.into(),
            origin.url("/echo"),
        ],
        vec![
            "-F".into(),
            "file=QUtJQUlPU0ZPRE5ON0VYQU1QTEU=;type=text/plain;encoder=base64".into(),
            origin.url("/echo"),
        ],
    ];
    for leak in &leaks {
        let mut args: Vec<&str> = vec!["-x", &proxy, "-i"];
        let (url, extra) = leak.split_last().expect("url");
        args.extend(extra.iter().map(String::as_str));
        let (status, body) = curl_status_body(&args, url).expect("curl");
        assert_eq!(status, 403, "{leak:?}: {body}");
        assert!(
            body.contains("x-pipelock-rule: dlp.aws_access_key_id"),
            "{leak:?}: {body}"
        );
        assert!(
            !body.contains(AWS_KEY),
            "the answer must not echo the secret: {body}"
        );
    }
    assert_eq!(
        origin.seen().len(),
        before,
        "a blocked request reached the origin"
    );

    // With `request_body_scanning.action: warn` the same header goes through, flagged.
    let (_warn, _dir2, warn_proxy) = start_proxy_with("", "warn");
    let header = format!("Authorization: Bearer {AWS_KEY}");
    let (status, body) = curl_status_body(
        &["-x", &warn_proxy, "-i", "-H", &header],
        &origin.url("/clean"),
    )
    .expect("curl");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("x-pipelock-warning: dlp.aws_access_key_id"),
        "{body}"
    );
    assert_eq!(origin.seen().len(), before + 1);
}

#[test]
fn injected_responses_are_blocked_or_flagged_by_mode() {
    let origin = Upstream::start().expect("origin");
    let (_pipelock, _dir, proxy) =
        start_proxy("response_scanning:\n  enabled: true\n  action: block\n");
    let (status, body) = curl_status_body(&["-x", &proxy], &origin.url("/inject")).expect("curl");
    assert_eq!(status, 403, "{body}");
    let answer = json(&body);
    assert_eq!(answer["scanner"], "injection");
    assert_eq!(answer["what"], "response");
    assert!(!body.contains("Ignore all previous"), "{body}");

    // A gzip-, brotli- or zstd-compressed injection is decoded and caught; a clean compressed
    // page reaches the client decoded; the origin is only offered codings Pipelock can decode.
    let accept = [
        "-x",
        proxy.as_str(),
        "-H",
        "Accept-Encoding: compress, br, gzip",
    ];
    for coding in ["gz", "br", "zst"] {
        let (status, body) =
            curl_status_body(&accept, &origin.url(&format!("/inject.{coding}"))).expect("curl");
        assert_eq!(status, 403, "{coding}: {body}");
        assert_eq!(json(&body)["scanner"], "injection", "{coding}");
        let (status, body) =
            curl_status_body(&accept, &origin.url(&format!("/clean.{coding}"))).expect("curl");
        assert_eq!(
            (status, body.as_str()),
            (200, "all good here\n"),
            "{coding}"
        );
    }
    let offered: Vec<String> = origin
        .seen()
        .iter()
        .flat_map(|r| r.headers.clone())
        .filter(|(name, _)| name.eq_ignore_ascii_case("accept-encoding"))
        .map(|(_, value)| value)
        .collect();
    assert_eq!(offered.len(), 6);
    assert!(offered.iter().all(|o| o == "gzip, br"), "{offered:?}");

    // `strip` cuts the injection out and forwards the rest, saying so.
    let (_strip, _dir3, strip_proxy) =
        start_proxy("response_scanning:\n  enabled: true\n  action: strip\n");
    let (status, body) =
        curl_status_body(&["-x", &strip_proxy, "-i"], &origin.url("/inject")).expect("curl");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("x-pipelock-stripped: injection."), "{body}");
    assert!(body.contains("Welcome!\n[REDACTED: "), "{body}");
    assert!(
        !body.to_lowercase().contains("ignore all previous"),
        "{body}"
    );

    // Audit mode forwards it, flagged.
    let (_audit, _dir2, audit_proxy) =
        start_proxy("mode: audit\nresponse_scanning:\n  enabled: true\n  action: block\n");
    let (status, body) =
        curl_status_body(&["-x", &audit_proxy, "-i"], &origin.url("/inject")).expect("curl");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("x-pipelock-warning: injection."), "{body}");
    assert!(body.ends_with(INJECTION), "{body}");
}

#[test]
fn connect_tunnels_get_hostname_checks_ssrf_and_timeouts() {
    let origin = Upstream::start().expect("origin");
    let (_pipelock, _dir, proxy) = start_proxy("");

    // curl -p tunnels plain HTTP through CONNECT to the (allow-listed) loopback origin.
    let (status, body) =
        curl_status_body(&["-p", "-x", &proxy], &origin.url("/clean")).expect("curl");
    assert_eq!((status, body.as_str()), (200, "all good here\n"));

    // A blocklisted host and a cloud metadata address are refused before any tunnel opens.
    for target in [
        "https://x.pastebin.com/",
        "http://169.254.169.254/latest/meta-data",
    ] {
        let output = curl(&["-p", "-x", &proxy, "-v", target]).expect("curl");
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(log.contains("< HTTP/1.1 403"), "{target}: {log}");
        assert!(log.contains("x-pipelock-blocked: true"), "{target}: {log}");
    }

    // Without the loopback allowance, the same origin is an SSRF target.
    let (_strict, _dir2, guarded) =
        start_with_config("version: 1\nforward_proxy:\n  enabled: true\n");
    let (status, body) =
        curl_status_body(&["-p", "-x", &guarded], &origin.url("/clean")).expect("curl");
    assert_ne!(status, 200, "{body}");
    let (status, body) = curl_status_body(&["-x", &guarded], &origin.url("/clean")).expect("curl");
    assert_eq!(status, 403, "{body}");
    assert_eq!(json(&body)["rule"], "url.ssrf");

    // An idle tunnel is closed after idle_timeout_seconds (2 s here).
    let mut client = open_tunnel(_pipelock.addr, origin.addr);
    let opened = Instant::now();
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    let idle = opened.elapsed();
    assert!(
        idle >= Duration::from_millis(1500) && idle < Duration::from_secs(8),
        "the idle tunnel closed after {idle:?}"
    );
}

/// Opens a CONNECT tunnel to `target` through `proxy` and returns the client socket once
/// Pipelock has answered 200.
fn open_tunnel(proxy: std::net::SocketAddr, target: std::net::SocketAddr) -> TcpStream {
    let mut client = TcpStream::connect(proxy).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        client,
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"
    )
    .expect("write");
    let mut head = [0u8; 512];
    let n = client.read(&mut head).expect("CONNECT answer");
    let answer = String::from_utf8_lossy(&head[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    client
}

#[test]
fn tunnels_end_at_max_tunnel_seconds_and_on_shutdown() {
    let origin = Upstream::start().expect("origin");
    let (mut pipelock, _dir, _proxy) = start_with_config(
        "version: 1\nforward_proxy:\n  enabled: true\n  max_tunnel_seconds: 2\n  idle_timeout_seconds: 30\n  sni_verification: false\nssrf:\n  ip_allowlist: [\"127.0.0.0/8\"]\n",
    );
    // A busy tunnel (a request every 200 ms) still ends after max_tunnel_seconds.
    let mut client = open_tunnel(pipelock.addr, origin.addr);
    let opened = Instant::now();
    let mut answered = 0;
    for _ in 0..50 {
        let sent = write!(client, "GET /clean HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = [0u8; 256];
        match (sent, client.read(&mut buf)) {
            (Ok(()), Ok(n)) if n > 0 => answered += 1,
            _ => break,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let lived = opened.elapsed();
    assert!(
        answered >= 5,
        "only {answered} requests got through the tunnel"
    );
    assert!(
        lived >= Duration::from_millis(1800) && lived < Duration::from_secs(6),
        "the busy tunnel lived {lived:?}"
    );

    // Shutting down closes an open tunnel at once, and pipelock exits.
    let mut client = open_tunnel(pipelock.addr, origin.addr);
    pipelock.signal(libc::SIGTERM).expect("SIGTERM");
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    let status = pipelock.wait_exit(Duration::from_secs(8)).expect("exits");
    assert!(status.success(), "{status:?}");
    assert!(
        pipelock
            .stdout_lines()
            .iter()
            .any(|l| l.contains("tunnel closed: shutting down")),
        "{:?}",
        pipelock.stdout_lines()
    );
}

#[test]
fn at_most_1024_tunnels_are_open_at_once() {
    let origin = Upstream::start().expect("origin");
    let (pipelock, _dir, _proxy) = start_with_config(
        "version: 1\nforward_proxy:\n  enabled: true\n  sni_verification: false\nssrf:\n  ip_allowlist: [\"127.0.0.0/8\"]\nfetch_proxy:\n  monitoring:\n    max_requests_per_minute: 100000\n",
    );
    let open: Vec<TcpStream> = (0..1024)
        .map(|_| open_tunnel(pipelock.addr, origin.addr))
        .collect();
    let mut client = TcpStream::connect(pipelock.addr).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        client,
        "CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n",
        origin.addr
    )
    .expect("write");
    let mut head = [0u8; 1024];
    let n = client.read(&mut head).expect("answer");
    let answer = String::from_utf8_lossy(&head[..n]);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("tunnel_limit"), "{answer}");
    // Closing one frees its slot.
    drop(open);
    std::thread::sleep(Duration::from_millis(500));
    let _again = open_tunnel(pipelock.addr, origin.addr);
}

#[test]
fn rate_limit_and_disabled_proxy() {
    let origin = Upstream::start().expect("origin");
    let (_pipelock, _dir, proxy) =
        start_proxy("fetch_proxy:\n  monitoring:\n    max_requests_per_minute: 3\n");
    for _ in 0..3 {
        let (status, _) = curl_status_body(&["-x", &proxy], &origin.url("/clean")).expect("curl");
        assert_eq!(status, 200);
    }
    let (status, body) = curl_status_body(&["-x", &proxy], &origin.url("/clean")).expect("curl");
    assert_eq!(status, 429, "{body}");
    assert_eq!(json(&body)["rule"], "url.rate_limit");

    let (_off, _dir2, off) = start_with_config("version: 1\nforward_proxy:\n  enabled: false\n");
    let (status, body) = curl_status_body(&["-x", &off], &origin.url("/clean")).expect("curl");
    assert_eq!(status, 403, "{body}");
    assert_eq!(json(&body)["error"], "forward_proxy_disabled");
}

#[test]
fn origin_connections_are_kept_alive_without_widening_the_ssrf_check() {
    let origin = Upstream::start().expect("origin");
    let (_pipelock, _dir, proxy) = start_proxy("");

    // Ten clients one after the other: one connection to the origin serves them all.
    for _ in 0..10 {
        let (status, body) =
            curl_status_body(&["-x", &proxy], &origin.url("/clean")).expect("curl");
        assert_eq!((status, body.as_str()), (200, "all good here\n"));
    }
    assert_eq!(origin.connections(), 1, "the origin connection is reused");

    // An origin that closes after answering: the next request gets a new connection.
    let (status, body) = curl_status_body(&["-x", &proxy], &origin.url("/close")).expect("curl");
    assert_eq!((status, body.as_str()), (200, "closing\n"));
    let (status, body) = curl_status_body(&["-x", &proxy], &origin.url("/clean")).expect("curl");
    assert_eq!((status, body.as_str()), (200, "all good here\n"));
    assert_eq!(origin.connections(), 2);

    // A client that leaves in the middle of a large response: that origin connection is not
    // reused (the rest of the response would be read as the next answer).
    let mut client = TcpStream::connect(_pipelock.addr).expect("connect");
    write!(
        client,
        "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
        origin.url("/bytes/104857600"),
        origin.addr
    )
    .expect("send");
    let mut first = vec![0u8; 256 * 1024];
    client.read_exact(&mut first).expect("the download starts");
    drop(client);
    let (status, body) = curl_status_body(&["-x", &proxy], &origin.url("/clean")).expect("curl");
    assert_eq!((status, body.as_str()), (200, "all good here\n"));
    assert_eq!(origin.connections(), 3);

    // A pooled connection to 127.0.0.1 that a trusted name reached does not let an
    // untrusted name (here the bare address) reach it.
    let (_strict, _dir2, strict) = start_with_config(
        "version: 1\nforward_proxy:\n  enabled: true\ntrusted_domains: [\"localhost\"]\n",
    );
    let by_name = format!("http://localhost:{}/clean", origin.addr.port());
    let (status, _) = curl_status_body(&["-x", &strict], &by_name).expect("curl");
    assert_eq!(status, 200);
    let before = origin.seen().len();
    let (status, body) = curl_status_body(&["-x", &strict], &origin.url("/clean")).expect("curl");
    assert_eq!(status, 403, "{body}");
    assert_eq!(json(&body)["rule"], "url.ssrf", "{body}");
    assert_eq!(
        origin.seen().len(),
        before,
        "the refused request never reached the origin"
    );
}

/// A Python interpreter that has `requests` (pyenv's or Debian's with python3-requests).
fn python_with_requests() -> String {
    for python in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(python)
            .args(["-c", "import requests"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return python.to_string();
        }
    }
    panic!(
        "no python3 with the requests module: run `cargo xtask setup` (installs python3-requests)"
    );
}

#[test]
fn python_requests_and_ruby_net_http_go_through_the_proxy() {
    let origin = Upstream::start().expect("origin");
    let (_pipelock, _dir, proxy) = start_proxy("");
    let script = format!(
        r#"
import requests, sys
proxies = {{"http": "{proxy}"}}
clean = requests.get("{clean}", proxies=proxies, timeout=10)
leak = requests.post("{echo}", json={{"k": "{key}"}}, proxies=proxies, timeout=10)
print(clean.status_code, repr(clean.text), leak.status_code, leak.headers.get("X-Pipelock-Rule"))
"#,
        clean = origin.url("/clean"),
        echo = origin.url("/echo"),
        key = AWS_KEY,
    );
    let mut command = Command::new(python_with_requests());
    command.args(["-c", &script]);
    let output = run_with_timeout(command, None, Duration::from_secs(30)).expect("python");
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "200 'all good here\\n' 403 dlp.aws_access_key_id"
    );

    let ruby = format!(
        r#"
require "net/http"
require "uri"
proxy = URI("{proxy}")
uri = URI("{echo}")
Net::HTTP.start(uri.host, uri.port, proxy.host, proxy.port) do |http|
  clean = http.get("/clean")
  leak = http.post("/echo", "token={key}", "Content-Type" => "application/x-www-form-urlencoded")
  puts [clean.code, clean.body.inspect, leak.code, leak["X-Pipelock-Rule"]].join(" ")
end
"#,
        echo = origin.url("/echo"),
        key = AWS_KEY,
    );
    let mut command = Command::new("ruby");
    command.args(["-e", &ruby]);
    let output = run_with_timeout(command, None, Duration::from_secs(30)).expect("ruby");
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "200 \"all good here\\n\" 403 dlp.aws_access_key_id"
    );
}

/// Reads an event stream through the proxy with a raw socket: (every event's data line, when
/// the first event arrived, when the stream ended).
fn read_events(proxy: std::net::SocketAddr, url: &str) -> (Vec<String>, Duration, Duration) {
    let mut client = TcpStream::connect(proxy).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let started = Instant::now();
    write!(
        client,
        "GET {url} HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = Vec::new();
    let mut first = None;
    let mut buf = [0u8; 4096];
    loop {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if first.is_none() && String::from_utf8_lossy(&raw).contains("word1\"") {
                    first = Some(started.elapsed());
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let events = text
        .lines()
        .filter(|l| l.starts_with("data:") || l.starts_with("event:"))
        .map(str::to_string)
        .collect();
    (events, first.unwrap_or(Duration::MAX), started.elapsed())
}

#[test]
fn event_streams_are_scanned_event_by_event_without_buffering() {
    let origin = Upstream::start().expect("origin");
    let (pipelock, _dir, _proxy) =
        start_proxy("response_scanning:\n  enabled: true\n  action: block\n");

    // A clean stream of 60 events arrives whole, and the first events arrive before the origin
    // has finished (it pauses 800 ms after the 10th): streaming is not buffered.
    let (events, first, total) = read_events(pipelock.addr, &origin.url("/sse?events=60"));
    assert_eq!(events.len(), 61, "{events:?}");
    assert!(events.last().is_some_and(|e| e == "data: [DONE]"));
    assert!(
        first < Duration::from_millis(600) && total >= Duration::from_millis(800),
        "first event after {first:?}, stream ended after {total:?}"
    );

    // The 50th event carries an injection: events 1..=49 arrive, then a final error event.
    let (events, _, _) = read_events(pipelock.addr, &origin.url("/sse?events=60&inject=50"));
    assert_eq!(events.len(), 51, "{events:?}");
    assert!(events[48].contains("word49"), "{events:?}");
    assert_eq!(events[49], "event: error");
    assert!(events[50].contains("injection."), "{events:?}");
    assert!(
        !events.iter().any(|e| e.contains("Ignore all")),
        "{events:?}"
    );

    // The same injection spread over three events, one piece each, is caught too.
    let (events, _, _) = read_events(pipelock.addr, &origin.url("/sse?events=60&split=50"));
    assert!(events.iter().any(|e| e == "event: error"), "{events:?}");
    assert!(!events.iter().any(|e| e.contains("word55")), "{events:?}");

    // A gzip-compressed stream is decoded as it arrives: still event by event, passed on
    // decoded, and the injection in event 50 still ends it.
    let (events, first, _) = read_events(pipelock.addr, &origin.url("/sse?events=60&gzip=1"));
    assert_eq!(events.len(), 61, "{events:?}");
    assert!(
        first < Duration::from_millis(600),
        "first event after {first:?}"
    );
    let (events, _, _) = read_events(
        pipelock.addr,
        &origin.url("/sse?events=60&inject=50&gzip=1"),
    );
    assert_eq!(events.len(), 51, "{events:?}");
    assert_eq!(events[49], "event: error");
}

/// What one connection to a raw TCP origin received, read until the client closes or 3 s
/// pass; the origin then closes its side.
fn raw_origin() -> (std::net::SocketAddr, std::sync::mpsc::Receiver<Vec<u8>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(4) {
            let mut stream = stream;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                if got.len() > 16 {
                    break;
                }
            }
            let _ = tx.send(got);
        }
    });
    (addr, rx)
}

/// `openssl s_client` through the proxy (HTTP CONNECT) to `localhost:port`, asking for
/// `server_name` in its ClientHello.
fn s_client(proxy: std::net::SocketAddr, port: u16, server_name: &str) {
    let mut command = Command::new("openssl");
    command.args([
        "s_client",
        "-proxy",
        &proxy.to_string(),
        "-connect",
        &format!("localhost:{port}"),
        "-servername",
        server_name,
    ]);
    // It fails either way (the origin speaks no TLS); only what reached the origin matters.
    let _ = run_with_timeout(command, Some(b""), Duration::from_secs(20)).expect("s_client");
}

#[test]
fn tls_server_names_must_match_the_connect_host() {
    let (pipelock, _dir, _proxy) = start_proxy("trusted_domains: [\"localhost\"]\n");
    let (origin, received) = raw_origin();

    // The ClientHello names the CONNECT host: it is relayed to the origin.
    s_client(pipelock.addr, origin.port(), "localhost");
    let got = received
        .recv_timeout(Duration::from_secs(10))
        .expect("a connection");
    assert_eq!(
        got.first(),
        Some(&0x16),
        "the ClientHello did not arrive: {got:?}"
    );

    // Domain fronting: CONNECT localhost, ClientHello for another name. The tunnel is closed
    // and the origin receives nothing.
    s_client(pipelock.addr, origin.port(), "api.evil.example");
    let got = received
        .recv_timeout(Duration::from_secs(10))
        .expect("a connection");
    assert!(got.is_empty(), "bytes reached the origin: {got:?}");
    let logs = pipelock.stdout_lines().join("\n");
    assert!(logs.contains("TLS server name check failed"), "{logs}");
    assert!(logs.contains("api.evil.example"), "{logs}");
}
