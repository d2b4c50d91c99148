//! TLS interception through the real binary: `pipelock tls init` makes the CA, an HTTPS origin
//! on loopback presents a certificate from a separate test CA (trusted through
//! `tls_interception.upstream_ca_file`), and curl, Python `requests` and Ruby Faraday go
//! through CONNECT trusting only the Pipelock CA. Inside the tunnel Pipelock sees paths,
//! headers, bodies and responses, so what it blocks never reaches the origin. A Rust
//! WebSocket client (tungstenite) upgrades inside such a tunnel to a `wss://` upstream signed
//! by the same test CA, whose every message Pipelock scans.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pipelock_e2e::upstream::{TestPki, Upstream};
use pipelock_e2e::ws_client::{connect_intercepted, TunnelAnswer, TunnelStream};
use pipelock_e2e::ws_upstream::{header, WsUpstream};
use pipelock_e2e::{
    curl, curl_status_body, describe, run_pipelock, run_with_timeout, write_file, Pipelock,
};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, WebSocket};

const AWS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";

/// A running interception setup: the origin, pipelock, and the files they use.
struct Setup {
    origin: Upstream,
    pipelock: Pipelock,
    proxy: String,
    /// The Pipelock CA certificate clients trust.
    ca: PathBuf,
    /// The test CA that signed the origin's certificate.
    origin_ca: PathBuf,
    /// That test CA, to start more origins (a `wss://` one) trusted the same way.
    pki: TestPki,
    _dir: tempfile::TempDir,
}

/// Makes a Pipelock CA and an HTTPS origin, and starts pipelock with interception on (the
/// origin's CA trusted when `trust_origin`), plus `tls_extra` lines inside
/// `tls_interception` and top-level YAML `extra`.
fn setup(trust_origin: bool, tls_extra: &str, extra: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("ca");
    let output = run_pipelock(
        &["tls", "init", "--dir", text(&ca_dir)],
        None,
        Duration::from_secs(20),
    )
    .expect("tls init");
    assert!(output.status.success(), "{}", describe(&output));
    let pki = TestPki::new().expect("test pki");
    let origin_ca = write_file(dir.path(), "origin-ca.pem", &pki.ca_pem).expect("origin ca");
    let origin = Upstream::start_tls(&pki).expect("origin");
    let trust = if trust_origin {
        format!("  upstream_ca_file: {}\n", text(&origin_ca))
    } else {
        String::new()
    };
    let yaml = format!(
        "version: 1\nforward_proxy:\n  enabled: true\n  idle_timeout_seconds: 2\nssrf:\n  ip_allowlist: [\"127.0.0.0/8\"]\nrequest_body_scanning:\n  action: block\nresponse_scanning:\n  action: block\ntls_interception:\n  enabled: true\n  ca_cert: {ca}/ca.pem\n  ca_key: {ca}/ca-key.pem\n{trust}{tls_extra}{extra}",
        ca = text(&ca_dir),
    );
    let config = write_file(dir.path(), "pipelock.yaml", &yaml).expect("config");
    let pipelock = Pipelock::start(&["--config", text(&config), "--listen", "127.0.0.1:0"])
        .expect("pipelock starts");
    let proxy = format!("http://{}", pipelock.addr);
    Setup {
        origin,
        pipelock,
        proxy,
        ca: ca_dir.join("ca.pem"),
        origin_ca,
        pki,
        _dir: dir,
    }
}

fn text(path: &Path) -> &str {
    path.to_str().expect("utf-8")
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

/// Whether the origin received a request whose target, headers or body contain `needle`.
fn origin_saw(origin: &Upstream, needle: &str) -> bool {
    origin.seen().iter().any(|seen| {
        seen.target.contains(needle)
            || seen.headers.iter().any(|(_, value)| value.contains(needle))
            || String::from_utf8_lossy(&seen.body).contains(needle)
    })
}

#[test]
fn curl_through_an_intercepted_tunnel_is_scanned_both_ways() {
    let s = setup(true, "", "");
    let trust = ["-x", s.proxy.as_str(), "--cacert", text(&s.ca)];

    // Clean traffic passes, over HTTP/1.1 and HTTP/2 on the client side.
    let (status, body) = curl_status_body(&trust, &s.origin.url("/clean")).expect("curl");
    assert_eq!((status, body.as_str()), (200, "all good here\n"));
    let output = curl(&[
        "-x",
        &s.proxy,
        "--cacert",
        text(&s.ca),
        "--http2",
        "--write-out",
        "\n%{http_version}",
        &s.origin.url("/clean?via=h2"),
    ])
    .expect("curl h2");
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "all good here\n\n2",
        "HTTP/2 through the tunnel"
    );
    assert!(origin_saw(&s.origin, "via=h2"));

    // A key in the path, a header and a JSON body: 403 from Pipelock, nothing at the origin.
    let (status, body) =
        curl_status_body(&trust, &s.origin.url(&format!("/echo?key={AWS_KEY}"))).expect("curl");
    assert_eq!(status, 403, "{body}");
    assert_eq!(json(&body)["blocked"], true, "{body}");
    let auth = format!("X-Api-Key: {AWS_KEY}");
    let (status, body) = curl_status_body(
        &[&trust[..], &["-H", auth.as_str()]].concat(),
        &s.origin.url("/echo"),
    )
    .expect("curl");
    assert_eq!(status, 403, "{body}");
    let payload = format!(r#"{{"messages":[{{"role":"user","content":"my key is {AWS_KEY}"}}]}}"#);
    let (status, body) = curl_status_body(
        &[
            &trust[..],
            &[
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                payload.as_str(),
            ],
        ]
        .concat(),
        &s.origin.url("/echo"),
    )
    .expect("curl");
    assert_eq!(status, 403, "{body}");
    assert!(
        !body.contains(AWS_KEY),
        "the refusal repeats the secret: {body}"
    );
    assert!(
        !origin_saw(&s.origin, AWS_KEY),
        "a blocked secret reached the origin"
    );

    // A clean JSON body reaches the origin intact.
    let clean = r#"{"q":"summarise my spending"}"#;
    let (status, echoed) = curl_status_body(
        &[
            &trust[..],
            &[
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                clean,
            ],
        ]
        .concat(),
        &s.origin.url("/echo"),
    )
    .expect("curl");
    assert_eq!((status, echoed.as_str()), (200, clean));
    // Three tunnels so far, one after the other, and one TLS connection to the origin: it is
    // kept alive and reused.
    assert_eq!(s.origin.connections(), 1, "the origin connection is reused");

    // Responses: a prompt injection, plain and gzip-compressed, is refused.
    for page in ["/inject", "/inject.gz"] {
        let (status, body) = curl_status_body(
            &[&trust[..], &["--compressed"]].concat(),
            &s.origin.url(page),
        )
        .expect("curl");
        assert_eq!(status, 403, "{page}: {body}");
        assert_eq!(json(&body)["scanner"], "injection", "{page}: {body}");
    }

    // A request inside the tunnel for another host is refused.
    let (status, body) = curl_status_body(
        &[&trust[..], &["-H", "Host: other.example"]].concat(),
        &s.origin.url("/clean?other"),
    )
    .expect("curl");
    assert_eq!(status, 403, "{body}");
    assert_eq!(json(&body)["error"], "host_mismatch", "{body}");
    assert!(!origin_saw(&s.origin, "?other"));

    // Without the Pipelock CA the client refuses the leaf (curl exit 60): the tunnel really
    // is intercepted.
    let output = curl(&["-x", &s.proxy, &s.origin.url("/clean")]).expect("curl");
    assert_eq!(output.status.code(), Some(60), "{}", describe(&output));

    // The leaf cache and intercepted requests show in the metrics.
    let (_, metrics) = curl_status_body(&[], &format!("{}/metrics", s.proxy)).expect("metrics");
    assert!(
        metrics.contains("pipelock_tls_leaf_cache_size 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"kind="intercepted",verdict="block",scanner="dlp""#),
        "{metrics}"
    );
    for direction in ["request", "response"] {
        let count = format!("pipelock_scan_duration_seconds_count{{direction=\"{direction}\"}} ");
        assert!(metrics.contains(&count), "{count}: {metrics}");
    }
    // The connection asking for the metrics is itself open.
    let open: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pipelock_open_connections "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(open >= 1, "{metrics}");
    drop(s.pipelock);
}

#[test]
fn origin_certificates_are_verified_and_passthrough_hosts_are_not_intercepted() {
    // Without upstream_ca_file the origin's test CA is not trusted: 502, nothing sent.
    let s = setup(false, "", "");
    let (status, body) = curl_status_body(
        &["-x", &s.proxy, "--cacert", text(&s.ca)],
        &s.origin.url("/clean?untrusted"),
    )
    .expect("curl");
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("certificate"), "{body}");
    assert!(!origin_saw(&s.origin, "untrusted"));

    // A passthrough host is relayed untouched: the client sees the origin's own certificate
    // and Pipelock sees nothing inside, so even a key in the path gets through.
    let s = setup(true, "  passthrough_domains: [\"127.0.0.1\"]\n", "");
    let (status, body) = curl_status_body(
        &["-x", &s.proxy, "--cacert", text(&s.origin_ca)],
        &s.origin.url(&format!("/clean?key={AWS_KEY}")),
    )
    .expect("curl");
    assert_eq!((status, body.as_str()), (200, "all good here\n"));
    assert!(origin_saw(&s.origin, AWS_KEY));
}

#[test]
fn missing_or_unsafe_ca_files_stop_pipelock_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_file(
        dir.path(),
        "pipelock.yaml",
        &format!(
            "version: 1\ntls_interception:\n  enabled: true\n  ca_cert: {0}/nope.pem\n  ca_key: {0}/nope-key.pem\n",
            text(dir.path())
        ),
    )
    .expect("config");
    let output = run_pipelock(
        &["run", "--config", text(&config), "--listen", "127.0.0.1:0"],
        None,
        Duration::from_secs(20),
    )
    .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("tls_interception") && stderr.contains("nope.pem"),
        "{stderr}"
    );

    // A world-readable CA key is refused.
    let ca = dir.path().join("ca");
    let output = run_pipelock(
        &["tls", "init", "--dir", text(&ca)],
        None,
        Duration::from_secs(20),
    )
    .expect("init");
    assert!(output.status.success(), "{}", describe(&output));
    let key = ca.join("ca-key.pem");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let config = write_file(
        dir.path(),
        "world.yaml",
        &format!(
            "version: 1\ntls_interception:\n  enabled: true\n  ca_cert: {0}/ca.pem\n  ca_key: {0}/ca-key.pem\n",
            text(&ca)
        ),
    )
    .expect("config");
    let output = run_pipelock(
        &["run", "--config", text(&config), "--listen", "127.0.0.1:0"],
        None,
        Duration::from_secs(20),
    )
    .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("readable by every user"), "{stderr}");
}

#[test]
fn python_requests_and_ruby_faraday_through_interception() {
    let s = setup(true, "", "");
    let script = format!(
        r#"
import requests
proxies = {{"https": "{proxy}"}}
clean = requests.get("{clean}", proxies=proxies, verify="{ca}", timeout=10)
leak = requests.post("{echo}", json={{"k": "{key}"}}, proxies=proxies, verify="{ca}", timeout=10)
print(clean.status_code, repr(clean.text), leak.status_code, leak.headers.get("X-Pipelock-Rule"))
"#,
        proxy = s.proxy,
        clean = s.origin.url("/clean"),
        echo = s.origin.url("/echo"),
        ca = text(&s.ca),
        key = AWS_KEY,
    );
    let mut command = Command::new("python3");
    command.args(["-c", &script]);
    let output = run_with_timeout(command, None, Duration::from_secs(30)).expect("python");
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "200 'all good here\\n' 403 dlp.aws_access_key_id"
    );

    // Faraday (what ruby-openai uses) with the proxy from HTTPS_PROXY, as in Sure's
    // containers: a clean call, a key in a JSON body, and a streamed chat whose 50th event
    // carries an injection. Ruby ignores HTTPS_PROXY for loopback destinations
    // (URI#find_proxy), so the script passes it to Faraday itself.
    let ruby = format!(
        r#"
require "faraday"
require "json"
conn = Faraday.new(url: "{base}", proxy: ENV.fetch("HTTPS_PROXY"), ssl: {{ ca_file: "{ca}" }})
clean = conn.get("/clean")
leak = conn.post("/echo", {{ messages: [{{ role: "user", content: "key {key}" }}] }}.to_json, "Content-Type" => "application/json")
events = []
conn.get("/sse?events=60&inject=50") do |req|
  req.options.on_data = proc {{ |chunk, _| events << chunk }}
end
stream = events.join
data = stream.scan(/^data: (.*)$/).flatten
puts [clean.status, clean.body.inspect, leak.status, leak.headers["x-pipelock-rule"], data.count {{ |d| d.include?("word") }}, stream.include?("event: error")].join(" ")
"#,
        base = s.origin.url(""),
        ca = text(&s.ca),
        key = AWS_KEY,
    );
    let mut command = Command::new("ruby");
    command
        .args(["-e", &ruby])
        .env("HTTPS_PROXY", &s.proxy)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    let output = run_with_timeout(command, None, Duration::from_secs(40)).expect("ruby");
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "200 \"all good here\\n\" 403 dlp.aws_access_key_id 49 true"
    );
    assert!(!origin_saw(&s.origin, AWS_KEY));
}

/// The header `name` (lowercase) of a refused handshake.
fn answer_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The next data message or close of a tunnelled session.
fn next_message(socket: &mut WebSocket<TunnelStream>) -> Result<Message, WsError> {
    loop {
        match socket.read()? {
            Message::Ping(_) | Message::Pong(_) => {}
            other => return Ok(other),
        }
    }
}

#[test]
fn websocket_upgrades_inside_an_intercepted_tunnel_are_scanned_per_message() {
    let s = setup(
        true,
        "",
        "websocket_proxy:\n  enabled: true\n  max_message_bytes: 4096\n",
    );
    let upstream = WsUpstream::start_tls(&s.pki).expect("wss upstream");
    let ca = std::fs::read(&s.ca).expect("the Pipelock CA");
    let url = upstream.url("/chat?room=1");

    // Clean messages round-trip; the client trusts only the Pipelock CA, so the tunnel is
    // really intercepted.
    let answer = connect_intercepted(s.pipelock.addr, &url, &ca, &[]).expect("handshake");
    let TunnelAnswer::Open(mut socket) = answer else {
        panic!("the upgrade inside the tunnel was refused");
    };
    for text in ["hello through the tunnel", "a second clean message"] {
        socket.send(Message::text(text)).expect("send");
        assert_eq!(
            next_message(&mut socket).expect("echo"),
            Message::text(text)
        );
    }
    // A secret closes the session with 1008 naming the rule, and never reaches the upstream.
    socket
        .send(Message::text(format!("my key is {AWS_KEY}")))
        .expect("send");
    match next_message(&mut socket) {
        Ok(Message::Close(Some(frame))) => {
            assert_eq!(frame.code, CloseCode::Policy, "{frame:?}");
            assert!(frame.reason.contains("dlp.aws_access_key_id"), "{frame:?}");
            assert!(!frame.reason.contains(AWS_KEY), "{frame:?}");
        }
        other => panic!("expected close 1008, got {other:?}"),
    }
    assert_eq!(
        upstream.texts(),
        vec!["hello through the tunnel", "a second clean message"],
        "the secret reached the upstream"
    );
    let (target, headers) = upstream.handshakes().pop().expect("a handshake");
    assert_eq!(target, "/chat?room=1");
    assert_eq!(
        header(&headers, "origin"),
        Some(format!("https://{}", upstream.addr).as_str()),
        "origin_policy: rewrite names the tunnel's https origin"
    );

    // The handshake's own gates: a key in the URL, a Host naming another site.
    let leaky = upstream.url(&format!("/chat?key={AWS_KEY}"));
    match connect_intercepted(s.pipelock.addr, &leaky, &ca, &[]).expect("handshake") {
        TunnelAnswer::Refused(status, headers) => {
            assert_eq!(status, 403, "{headers:?}");
            assert_eq!(
                answer_header(&headers, "x-pipelock-rule"),
                Some("dlp.aws_access_key_id"),
                "{headers:?}"
            );
        }
        TunnelAnswer::Open(_) => panic!("a key in the URL opened a session"),
    }
    let other_host = [("host", "other.example")];
    match connect_intercepted(s.pipelock.addr, &url, &ca, &other_host).expect("handshake") {
        TunnelAnswer::Refused(status, headers) => {
            assert_eq!(status, 403, "{headers:?}");
            assert_eq!(
                answer_header(&headers, "x-pipelock-error"),
                Some("host_mismatch"),
                "{headers:?}"
            );
        }
        TunnelAnswer::Open(_) => panic!("a Host naming another site opened a session"),
    }
    assert_eq!(
        upstream.handshakes().len(),
        1,
        "a refused handshake reached the upstream: {:?}",
        upstream.handshakes()
    );
    let (_, metrics) = curl_status_body(&[], &format!("{}/metrics", s.proxy)).expect("metrics");
    assert!(
        metrics.contains(r#"pipelock_websocket_messages_total{direction="out",verdict="block"} 1"#),
        "{metrics}"
    );
}

#[test]
fn websocket_upgrades_inside_a_tunnel_are_refused_while_websocket_proxy_is_off() {
    let s = setup(true, "", "");
    let upstream = WsUpstream::start_tls(&s.pki).expect("wss upstream");
    let ca = std::fs::read(&s.ca).expect("the Pipelock CA");
    match connect_intercepted(s.pipelock.addr, &upstream.url("/"), &ca, &[]).expect("handshake") {
        TunnelAnswer::Refused(status, headers) => {
            assert_eq!(status, 403, "{headers:?}");
            assert_eq!(
                answer_header(&headers, "x-pipelock-error"),
                Some("websocket_disabled"),
                "{headers:?}"
            );
        }
        TunnelAnswer::Open(_) => panic!("a session opened with websocket_proxy off"),
    }
    assert!(
        upstream.events().is_empty(),
        "the upstream saw {:?}",
        upstream.events()
    );
}
