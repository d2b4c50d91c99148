//! The kill switch through the real binary: each source (API, sentinel file, SIGUSR1, config)
//! turns every proxied request into a 503 that never reaches the origin, closes open tunnels,
//! leaves `/health` reachable, and releases cleanly.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use pipelock_e2e::upstream::Upstream;
use pipelock_e2e::{curl, curl_status_body, describe, Pipelock};

const TOKEN: &str = "kill-switch-test-token";

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

fn api(proxy: &str, active: Option<bool>, token: &str) -> (u16, String) {
    let auth = format!("Authorization: Bearer {token}");
    match active {
        Some(active) => curl_status_body(
            &[
                "-H",
                &auth,
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &format!("{{\"active\": {active}}}"),
            ],
            &format!("{proxy}/api/v1/killswitch"),
        ),
        None => curl_status_body(&["-H", &auth], &format!("{proxy}/api/v1/killswitch/status")),
    }
    .expect("curl")
}

#[test]
fn every_source_refuses_proxied_traffic_until_released() {
    let origin = Upstream::start().expect("origin");
    let dir = tempfile::tempdir().expect("tempdir");
    let sentinel = dir.path().join("deny-all");
    let (pipelock, _config_dir) = Pipelock::start_with_yaml(&format!(
        "version: 1\nforward_proxy:\n  enabled: true\nssrf:\n  ip_allowlist: [\"127.0.0.0/8\"]\nkill_switch:\n  api_token: {TOKEN}\n  sentinel_file: {}\n  message: \"Stopped by the on-call engineer\"\n",
        sentinel.display()
    ))
    .expect("pipelock starts");
    let proxy = format!("http://{}", pipelock.addr);
    let through = |path: &str| {
        curl_status_body(&["-x", &proxy], &origin.url(path)).expect("curl through the proxy")
    };
    assert_eq!(through("/clean").0, 200);

    // The API needs the token.
    let output = curl(&[
        "-i",
        "--data-binary",
        "{\"active\": true}",
        &format!("{proxy}/api/v1/killswitch"),
    ])
    .expect("curl");
    let head = String::from_utf8_lossy(&output.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 401"), "{}", describe(&output));
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    assert_eq!(api(&proxy, Some(true), "wrong-token").0, 401);
    assert_eq!(
        through("/clean").0,
        200,
        "a refused API call changes nothing"
    );

    // A tunnel open before the switch is thrown.
    let mut tunnel = TcpStream::connect(pipelock.addr).expect("connect");
    write!(
        tunnel,
        "CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n",
        origin.addr
    )
    .expect("send CONNECT");
    let mut answer = [0u8; 256];
    let n = tunnel.read(&mut answer).expect("CONNECT answer");
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );

    // Thrown through the API.
    let (status, body) = api(&proxy, Some(true), TOKEN);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["active"], true);
    assert_eq!(json(&body)["source"], "api");
    let thrown = Instant::now();
    let before = origin.seen().len();
    let (status, body) = through("/clean?during");
    assert_eq!(status, 503, "{body}");
    assert_eq!(json(&body)["error"], "kill_switch_active");
    assert_eq!(json(&body)["message"], "Stopped by the on-call engineer");
    assert_eq!(origin.seen().len(), before, "nothing reached the origin");
    // The open tunnel is closed.
    tunnel
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let closed = matches!(tunnel.read(&mut answer), Ok(0) | Err(_));
    assert!(closed, "the tunnel is still open");
    assert!(
        thrown.elapsed() < Duration::from_secs(1),
        "{:?}",
        thrown.elapsed()
    );
    // New tunnels are refused too; /health still answers; the metric says so.
    let (status, _) =
        curl_status_body(&["-x", &proxy, "--proxytunnel"], &origin.url("/clean")).expect("curl");
    assert_ne!(status, 200);
    let (status, _) = curl_status_body(&[], &format!("{proxy}/health")).expect("health");
    assert_eq!(status, 200, "/health is exempt");
    let (_, metrics) = curl_status_body(&[], &format!("{proxy}/metrics")).expect("metrics");
    assert!(
        metrics.contains("pipelock_kill_switch_active 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"verdict="block",scanner="kill_switch""#),
        "{metrics}"
    );
    let (status, body) = api(&proxy, Some(false), TOKEN);
    assert_eq!((status, json(&body)["active"].clone()), (200, false.into()));
    assert_eq!(through("/clean").0, 200, "released");

    // The sentinel file holds it while it exists.
    std::fs::write(&sentinel, b"").expect("create the sentinel");
    assert_eq!(through("/clean").0, 503);
    assert_eq!(json(&api(&proxy, None, TOKEN).1)["source"], "sentinel");
    std::fs::remove_file(&sentinel).expect("remove the sentinel");
    assert_eq!(through("/clean").0, 200);

    // SIGUSR1 toggles it.
    pipelock.signal(libc::SIGUSR1).expect("SIGUSR1");
    let deadline = Instant::now() + Duration::from_secs(2);
    while through("/clean").0 != 503 {
        assert!(
            Instant::now() < deadline,
            "SIGUSR1 did not throw the switch"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(json(&api(&proxy, None, TOKEN).1)["source"], "signal");
    pipelock.signal(libc::SIGUSR1).expect("SIGUSR1");
    let deadline = Instant::now() + Duration::from_secs(2);
    while through("/clean").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the second SIGUSR1 did not release it"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn enabled_in_the_config_it_holds_from_start_and_allowlisted_clients_pass() {
    let origin = Upstream::start().expect("origin");
    let (pipelock, _dir) = Pipelock::start_with_yaml(
        "version: 1\nforward_proxy:\n  enabled: true\nssrf:\n  ip_allowlist: [\"127.0.0.0/8\"]\nkill_switch:\n  enabled: true\n  health_exempt: false\n",
    )
    .expect("pipelock starts");
    let proxy = format!("http://{}", pipelock.addr);
    let (status, body) = curl_status_body(&["-x", &proxy], &origin.url("/clean")).expect("curl");
    assert_eq!(status, 503, "{body}");
    assert_eq!(json(&body)["message"], "Emergency deny-all active");
    let (status, _) = curl_status_body(&[], &format!("{proxy}/health")).expect("health");
    assert_eq!(status, 503, "health_exempt: false");
    // Without a token there is no API.
    let (status, _) = curl_status_body(
        &["--data-binary", "{\"active\": false}"],
        &format!("{proxy}/api/v1/killswitch"),
    )
    .expect("curl");
    assert_eq!(status, 503);
    assert!(origin.seen().is_empty());

    let (allowed, _dir2) = Pipelock::start_with_yaml(
        "version: 1\nforward_proxy:\n  enabled: true\nssrf:\n  ip_allowlist: [\"127.0.0.0/8\"]\nkill_switch:\n  enabled: true\n  allowlist_ips: [\"127.0.0.1\"]\n",
    )
    .expect("pipelock starts");
    let (status, body) = curl_status_body(
        &["-x", &format!("http://{}", allowed.addr)],
        &origin.url("/clean"),
    )
    .expect("curl");
    assert_eq!(
        (status, body.as_str()),
        (200, "all good here\n"),
        "127.0.0.1 is allowlisted"
    );
}
