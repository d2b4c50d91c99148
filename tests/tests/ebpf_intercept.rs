//! Transparent interception in a real kernel: Pipelock's programs attached to a fresh cgroup
//! v2 (mounted on a temporary directory), their maps and links pinned on a fresh bpffs, and
//! real clients (python3) run inside the cgroup against loopback addresses only. The test
//! stands in for Pipelock's listeners with plain loopback ones. Needs root; fails (never
//! skips) when it cannot run.
//!
//! Each test has its own cgroup, bpffs, pin root and ports, so they can run in parallel.
//! Cleanup happens in `Drop` even when an assertion fails (locals drop in reverse order):
//! clients have been waited for, the listeners stop, the cgroup is emptied and removed
//! (which releases whatever is still attached to it), and the mounts are detached.

#[path = "ebpf_intercept/support.rs"]
mod support;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipelock::intercept::{
    cgroup_id, AllowRule, DeniedEvent, DeniedEvents, DenyReason, InterceptSettings, Interception,
    Protocol,
};
use pipelock_e2e::{describe, run_pipelock, run_with_timeout, wait_timeout};
use support::{
    bpftool_cgroup_show, connect_from_outside, field, monotonic_ns, python, python_command,
    require_root, ChildCgroup, ForeignProgram, LoopbackListener, Mount, Origin, UdpEcho,
};

/// The mark Pipelock's own sockets carry (config `intercept.mark`'s default).
const MARK: u32 = 0x0050_4c4b;
const WAIT: Duration = Duration::from_secs(5);

fn settings(
    listener: &LoopbackListener,
    dns: &UdpEcho,
    allow: Vec<AllowRule>,
) -> InterceptSettings {
    InterceptSettings {
        transparent_port: listener.port,
        dns_port: dns.port,
        mark: MARK,
        allow,
        debug_log: false,
    }
}

/// Collects the eBPF programs' aya-log records.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

impl log::Log for Captured {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

impl Captured {
    fn wait_for(&self, needle: &str) -> bool {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self
                .0
                .lock()
                .is_ok_and(|l| l.iter().any(|line| line.contains(needle)))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

fn next_event(events: &mut DeniedEvents) -> Option<DeniedEvent> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(event) = events.try_next() {
            return Some(event);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn socket(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} is not a socket address: {e}"))
}

/// Original destination of the connection the listener accepted with `needle` first.
fn accepted_with(listener: &LoopbackListener, needle: &str) -> SocketAddr {
    listener
        .wait_for(needle.as_bytes(), WAIT)
        .unwrap_or_else(|| {
            panic!(
                "the listener never got {needle:?}; it accepted {:?}",
                listener.accepted()
            )
        })
        .0
}

#[test]
fn connects_and_dns_are_redirected_and_the_application_sees_what_it_dialled() {
    require_root();
    let cgroups = Mount::cgroup2();
    let child = ChildCgroup::new(cgroups.path(), "redirect");
    let id = cgroup_id(&child.path).expect("cgroup id");
    let bpffs = Mount::bpffs();
    let pin_root = bpffs.path().join("pipelock");

    let listener = LoopbackListener::new();
    let dns = UdpEcho::new();
    let allowed = Origin::new("127.0.0.3");
    let unlisted = Origin::new("127.0.0.4");
    let mut settings = settings(
        &listener,
        &dns,
        vec![AllowRule {
            protocol: Protocol::Tcp,
            addr: IpAddr::from([127, 0, 0, 3]),
            prefix: 32,
            port: allowed.addr.port(),
        }],
    );
    settings.debug_log = true;
    let captured = Captured::default();
    let started = Instant::now();
    let mut interception =
        Interception::load_with_logger(&pin_root, &settings, captured.clone()).expect("load");
    interception.attach(&child.path).expect("attach");
    eprintln!("load + attach took {:?}", started.elapsed());
    let mut events = interception.denied_events().expect("denied events");
    let shown = bpftool_cgroup_show(&child.path);
    for program in pipelock_common::PROGRAMS {
        assert!(shown.contains(program), "{program} not attached:\n{shown}");
    }

    let script = format!(
        r#"
import os, socket
print(f"pid={{os.getpid()}}")
def tcp(family, addr, hello):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(addr)
    peer = s.getpeername()
    local = s.getsockname()
    s.sendall(hello)
    s.close()
    return f"{{peer[0]}}:{{peer[1]}}" if family == socket.AF_INET else f"[{{peer[0]}}]:{{peer[1]}}", local[1]
peer, local = tcp(socket.AF_INET, ("127.0.0.2", 9), b"hello-v4")
print(f"v4_peer={{peer}}"); print(f"v4_local={{local}}")
peer, local = tcp(socket.AF_INET6, ("::1", 9), b"hello-v6")
print(f"v6_peer={{peer}}"); print(f"v6_local={{local}}")
peer, _ = tcp(socket.AF_INET, ("127.0.0.3", {allowed_port}), b"hello-allowed")
print(f"allowed_peer={{peer}}")
m = socket.socket()
m.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, {MARK})
m.settimeout(5)
m.connect(("127.0.0.4", {unlisted_port}))
m.sendall(b"hello-marked")
m.close()
print("marked=connected")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(5)
u.sendto(b"query-v4", ("127.0.0.2", 53))
data, source = u.recvfrom(512)
print(f"dns_reply={{data.decode()}}"); print(f"dns_from={{source[0]}}:{{source[1]}}")
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u6.settimeout(5)
u6.connect(("::1", 53))
peer = u6.getpeername()
print(f"dns6_peer=[{{peer[0]}}]:{{peer[1]}}")
u6.send(b"query-v6")
print(f"dns6_reply={{u6.recv(512).decode()}}")
x = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    x.sendto(b"x", ("127.0.0.2", 9999))
    print("udp_other=sent")
except PermissionError:
    print("udp_other=EPERM")
"#,
        allowed_port = allowed.addr.port(),
        unlisted_port = unlisted.addr.port(),
    );
    let output = python(Some(&child.path), &script);
    eprintln!("client: {}", String::from_utf8_lossy(&output.stdout));
    let pid: u32 = field(&output, "pid").parse().expect("pid");

    // TCP over IPv4: the connect landed on the listener, the map knows where it was going
    // (once), and the client saw the address it dialled.
    assert_eq!(field(&output, "v4_peer"), "127.0.0.2:9");
    let peer = accepted_with(&listener, "hello-v4");
    assert_eq!(
        peer,
        socket(&format!("127.0.0.1:{}", field(&output, "v4_local")))
    );
    assert_eq!(
        interception.original_destination(peer),
        Some(socket("127.0.0.2:9"))
    );
    assert_eq!(
        interception.original_destination(peer),
        None,
        "the record is removed once read"
    );

    // The same over IPv6.
    assert_eq!(field(&output, "v6_peer"), "[::1]:9");
    let peer = accepted_with(&listener, "hello-v6");
    assert_eq!(
        peer,
        socket(&format!("[::1]:{}", field(&output, "v6_local")))
    );
    assert_eq!(
        interception.original_destination(peer),
        Some(socket("[::1]:9"))
    );

    // The allow rule connected directly; the marked socket was left alone.
    assert_eq!(field(&output, "allowed_peer"), allowed.addr.to_string());
    assert_eq!(allowed.connections(), 1);
    assert_eq!(field(&output, "marked"), "connected");
    assert_eq!(unlisted.connections(), 1);
    let on_listener: Vec<String> = listener
        .accepted()
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).to_string())
        .collect();
    assert_eq!(
        on_listener.len(),
        2,
        "only the two redirected connects: {on_listener:?}"
    );

    // DNS: unconnected IPv4 and connected IPv6 both reached the DNS listener, and the replies
    // (and the peer) appear to come from the resolver that was dialled.
    assert_eq!(field(&output, "dns_reply"), "echo:query-v4");
    assert_eq!(field(&output, "dns_from"), "127.0.0.2:53");
    assert_eq!(field(&output, "dns6_peer"), "[::1]:53");
    assert_eq!(field(&output, "dns6_reply"), "echo:query-v6");

    // Other UDP: EPERM, and a denied event saying who, where and why.
    assert_eq!(field(&output, "udp_other"), "EPERM");
    let event = next_event(&mut events).expect("a denied event for the UDP send");
    assert_eq!(event.destination, socket("127.0.0.2:9999"), "{event:?}");
    assert_eq!(event.ip_protocol, 17, "{event:?}");
    assert_eq!(event.protocol(), Some(Protocol::Udp));
    assert_eq!(event.reason, DenyReason::UdpNotAllowed, "{event:?}");
    assert_eq!(event.pid, pid, "{event:?}");
    assert_eq!(event.cgroup_id, id, "{event:?}");
    assert!(events.try_next().is_none(), "one denial, one event");

    // Outside the cgroup nothing is redirected: a connect to a closed port is refused, one to
    // a listening origin reaches it.
    let outside = python(
        None,
        &format!(
            r#"
import socket
try:
    socket.create_connection(("127.0.0.2", 9), timeout=5)
    print("closed_port=connected")
except ConnectionRefusedError:
    print("closed_port=refused")
socket.create_connection(("127.0.0.4", {}), timeout=5).close()
print("origin=connected")
"#,
            unlisted.addr.port()
        ),
    );
    assert_eq!(field(&outside, "closed_port"), "refused");
    assert_eq!(field(&outside, "origin"), "connected");
    drop(connect_from_outside(unlisted.addr).expect("connect from the test process"));
    let deadline = Instant::now() + WAIT;
    while unlisted.connections() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(unlisted.connections(), 3);
    assert_eq!(listener.accepted().len(), 2);

    let stats = interception.stats().expect("stats");
    eprintln!("{stats:?}");
    assert_eq!(stats.redirected_tcp, 2, "{stats:?}");
    assert_eq!(stats.redirected_dns, 2, "{stats:?}");
    assert_eq!(stats.allowed_direct, 1, "{stats:?}");
    assert_eq!(stats.denied_udp, 1, "{stats:?}");
    assert_eq!(stats.denied_kill_switch, 0, "{stats:?}");
    assert!(stats.own_traffic >= 1, "{stats:?}");
    assert_eq!(stats.record_failed, 0, "{stats:?}");

    // The programs' aya-log records reach user space when debug_log is on.
    assert!(
        captured.wait_for("redirect tcp family=2 port=9"),
        "no aya-log record; got {:?}",
        captured.0.lock().map(|l| l.clone()).unwrap_or_default()
    );
}

#[test]
fn the_kill_switch_refuses_connects_within_a_second_and_clears() {
    require_root();
    let cgroups = Mount::cgroup2();
    let child = ChildCgroup::new(cgroups.path(), "killswitch");
    let bpffs = Mount::bpffs();
    let pin_root = bpffs.path().join("pipelock");
    let listener = LoopbackListener::new();
    let dns = UdpEcho::new();
    let marked_target = Origin::new("127.0.0.4");
    let mut interception =
        Interception::load(&pin_root, &settings(&listener, &dns, Vec::new())).expect("load");
    interception.attach(&child.path).expect("attach");
    let mut events = interception.denied_events().expect("events");

    // The client connects every millisecond and writes down when connects start failing with
    // EPERM and when they succeed again.
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("report");
    let script = format!(
        r#"
import socket, time
report = open("{report}", "w", buffering=1)
deadline = time.monotonic() + 20
state = "ok"
ok_seen = False
while time.monotonic() < deadline:
    s = socket.socket()
    try:
        s.connect(("127.0.0.2", 9))
        ok = True
    except PermissionError:
        ok = False
    finally:
        s.close()
    now = time.monotonic_ns()
    if ok and not ok_seen:
        ok_seen = True
        report.write("ready=1\n")
    if state == "ok" and ok_seen and not ok:
        state = "denied"
        report.write(f"eperm_at={{now}}\n")
    elif state == "denied" and ok:
        report.write(f"ok_again_at={{now}}\n")
        break
    time.sleep(0.001)
"#,
        report = report.display()
    );
    let mut client = python_command(Some(&child.path), &script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the client");
    let read_field = |key: &str| -> Option<u64> {
        let text = std::fs::read_to_string(&report).ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
    };
    let wait_field = |key: &str| -> Option<u64> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(value) = read_field(key) {
                return Some(value);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    };
    let ready = wait_field("ready");
    if ready.is_none() {
        let _ = client.kill();
    }
    assert!(
        ready.is_some(),
        "the client never connected before the kill switch"
    );

    let switched_on = monotonic_ns();
    interception.set_kill_switch(true).expect("kill switch on");
    let eperm_at = wait_field("eperm_at");
    // While it is on: UDP (DNS too) is refused as well, but a socket with Pipelock's mark
    // still connects (Pipelock's own upstream connections keep working).
    let during = python(
        Some(&child.path),
        &format!(
            r#"
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"q", ("127.0.0.2", 53))
    print("dns=sent")
except PermissionError:
    print("dns=EPERM")
m = socket.socket()
m.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, {MARK})
m.settimeout(5)
m.connect(("127.0.0.4", {}))
m.close()
print("marked=connected")
"#,
            marked_target.addr.port()
        ),
    );
    assert_eq!(field(&during, "dns"), "EPERM");
    assert_eq!(field(&during, "marked"), "connected");
    std::thread::sleep(Duration::from_millis(200));
    let switched_off = monotonic_ns();
    interception
        .set_kill_switch(false)
        .expect("kill switch off");
    let ok_again_at = wait_field("ok_again_at");
    let status = wait_timeout(&mut client, Duration::from_secs(20)).expect("wait");
    if status.is_none() {
        let _ = client.kill();
        let _ = client.wait();
    }

    let eperm_at = eperm_at.expect("connects never failed after the kill switch went on");
    let delay = Duration::from_nanos(eperm_at.saturating_sub(switched_on));
    eprintln!("kill switch: first EPERM {delay:?} after set_kill_switch(true)");
    assert!(eperm_at > switched_on);
    assert!(delay < Duration::from_millis(200), "took {delay:?}");
    let ok_again_at = ok_again_at.expect("connects never succeeded after the kill switch went off");
    assert!(ok_again_at > switched_off);
    eprintln!(
        "kill switch: connects succeed again {:?} after set_kill_switch(false)",
        Duration::from_nanos(ok_again_at - switched_off)
    );
    assert!(status.is_some_and(|s| s.success()), "the client failed");

    let event = next_event(&mut events).expect("a denied event");
    assert_eq!(event.reason, DenyReason::KillSwitch, "{event:?}");
    assert_eq!(event.destination, socket("127.0.0.2:9"), "{event:?}");
    assert_eq!(event.protocol(), Some(Protocol::Tcp), "{event:?}");
    let stats = interception.stats().expect("stats");
    assert!(stats.denied_kill_switch >= 2, "{stats:?}");
    assert!(stats.own_traffic >= 1, "{stats:?}");
    assert_eq!(marked_target.connections(), 1);
    assert!(!interception.kill_switch().expect("read"));
}

#[test]
fn pinned_links_fail_closed_are_re_adopted_and_the_cli_shows_and_detaches_them() {
    require_root();
    let cgroups = Mount::cgroup2();
    let child = ChildCgroup::new(cgroups.path(), "pins");
    let id = cgroup_id(&child.path).expect("cgroup id");
    let bpffs = Mount::bpffs();
    let pin_root = bpffs.path().join("pipelock");
    let pin_arg = pin_root.to_str().expect("utf-8 path");
    let cgroup_arg = child.path.to_str().expect("utf-8 path");
    // The address the client dials: a direct connect would reach this origin.
    let origin = Origin::new("127.0.0.2");
    let connect = format!(
        r#"
import socket
try:
    s = socket.create_connection(("127.0.0.2", {}), timeout=5)
    s.sendall(b"hello-pins")
    s.close()
    print("result=connected")
except ConnectionRefusedError:
    print("result=refused")
"#,
        origin.addr.port()
    );

    let listener = LoopbackListener::new();
    let dns = UdpEcho::new();
    let settings = settings(&listener, &dns, Vec::new());
    let mut interception = Interception::load(&pin_root, &settings).expect("load");
    interception.attach(&child.path).expect("attach");
    assert_eq!(
        field(&python(Some(&child.path), &connect), "result"),
        "connected"
    );
    let peer = accepted_with(&listener, "hello-pins");
    assert_eq!(interception.original_destination(peer), Some(origin.addr));
    assert_eq!(origin.connections(), 0);

    // Pipelock goes away (its programs object, and its listener): the pinned links stay, so
    // connects from the cgroup still go to the closed port and fail instead of escaping.
    drop(interception);
    drop(listener);
    assert!(bpftool_cgroup_show(&child.path).contains("pipelock_conn4"));
    assert_eq!(
        field(&python(Some(&child.path), &connect), "result"),
        "refused"
    );
    assert_eq!(
        origin.connections(),
        0,
        "a connect escaped while Pipelock was down"
    );

    // `pipelock status` shows the attachment, the maps and the counters.
    let output = run_pipelock(&["status", "--pin-path", pin_arg, "--json"], None, WAIT)
        .expect("pipelock status");
    assert!(output.status.success(), "{}", describe(&output));
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).expect("status JSON");
    let attachment = &status["attachments"][0];
    assert_eq!(attachment["cgroup_id"], id, "{status:#}");
    let shown_path = attachment["cgroup"].as_str().expect("cgroup path");
    assert!(
        shown_path.ends_with(
            child
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("?")
        ),
        "{status:#}"
    );
    let programs = attachment["programs"].as_array().expect("programs");
    assert_eq!(programs.len(), 9, "{status:#}");
    assert!(
        programs
            .iter()
            .all(|p| p["attached"] == true && p["pinned"] == true),
        "{status:#}"
    );
    assert_eq!(status["stats"]["redirected_tcp"], 2, "{status:#}");
    assert_eq!(
        status["settings"]["transparent_port"], settings.transparent_port,
        "{status:#}"
    );
    let maps = status["maps"].as_array().expect("maps");
    assert_eq!(maps.len(), 6, "{status:#}");
    assert!(maps.iter().all(|m| m["pinned"] == true), "{status:#}");
    let text = run_pipelock(&["status", "--pin-path", pin_arg], None, WAIT).expect("status");
    assert!(text.status.success(), "{}", describe(&text));
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    eprintln!("{text}");
    assert!(
        text.contains(&format!("(id {id}): 9/9 programs attached")),
        "{text}"
    );
    assert!(text.contains("redirected_tcp      2"), "{text}");

    // A restarted Pipelock with the same pin root re-adopts the maps and links.
    let listener = LoopbackListener::on_port(settings.transparent_port);
    let mut interception = Interception::load(&pin_root, &settings).expect("load again");
    interception.attach(&child.path).expect("re-adopt");
    let shown = bpftool_cgroup_show(&child.path);
    assert_eq!(
        shown.matches("pipelock_conn4").count(),
        1,
        "re-adopted, not attached twice:\n{shown}"
    );
    assert_eq!(
        field(&python(Some(&child.path), &connect), "result"),
        "connected"
    );
    let peer = accepted_with(&listener, "hello-pins");
    assert_eq!(interception.original_destination(peer), Some(origin.addr));
    assert_eq!(
        interception.stats().expect("stats").redirected_tcp,
        3,
        "the counters survived"
    );

    // `pipelock detach` (another process) removes the attachment: connects go direct again.
    let output = run_pipelock(
        &["detach", "--cgroup", cgroup_arg, "--pin-path", pin_arg],
        None,
        WAIT,
    )
    .expect("pipelock detach");
    assert!(output.status.success(), "{}", describe(&output));
    let shown = bpftool_cgroup_show(&child.path);
    assert!(
        !shown.contains("pipelock"),
        "still attached after detach:\n{shown}"
    );
    assert!(!pin_root.exists(), "the pins were not removed");
    assert_eq!(
        field(&python(Some(&child.path), &connect), "result"),
        "connected"
    );
    assert_eq!(origin.connections(), 1, "the connect did not go direct");

    let again = run_pipelock(
        &["detach", "--cgroup", cgroup_arg, "--pin-path", pin_arg],
        None,
        WAIT,
    )
    .expect("pipelock detach");
    assert_eq!(again.status.code(), Some(1), "{}", describe(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("nothing is attached"),
        "{}",
        describe(&again)
    );
    drop(interception);
}

#[test]
fn attaching_where_it_cannot_work_fails_with_the_documented_errors() {
    require_root();
    let bpffs = Mount::bpffs();
    let pin_root = bpffs.path().join("pipelock");
    let listener = LoopbackListener::new();
    let dns = UdpEcho::new();
    let settings = settings(&listener, &dns, Vec::new());

    // A pin root that is not on bpffs.
    let plain = tempfile::tempdir().expect("tempdir");
    let error = Interception::load(&plain.path().join("pins"), &settings)
        .err()
        .expect("a pin root on tmpfs must be refused");
    assert!(
        error.to_string().contains("is not on a BPF filesystem"),
        "{error}"
    );

    let mut interception = Interception::load(&pin_root, &settings).expect("load");

    // A directory that is not a cgroup.
    let error = interception
        .attach(plain.path())
        .expect_err("a plain directory must be refused");
    assert!(
        error.to_string().contains("is not a cgroup v2 directory"),
        "{error}"
    );

    // A cgroup whose connect4 hook holds another tool's program.
    let cgroups = Mount::cgroup2();
    let child = ChildCgroup::new(cgroups.path(), "foreign");
    let _foreign = ForeignProgram::attach(&child.path);
    let error = interception
        .attach(&child.path)
        .expect_err("a cgroup with a foreign connect4 program must be refused");
    let message = error.to_string();
    assert!(
        message.contains("not Pipelock's on its connect4 hook")
            && message.contains("foreign_conn4"),
        "{message}"
    );
    let shown = bpftool_cgroup_show(&child.path);
    assert!(!shown.contains("pipelock"), "{shown}");
    assert!(interception.attached().is_empty());
}

/// Set (to "<cgroup dir>\n<pin root>") in the copy of this test binary that runs without
/// capabilities.
const WITHOUT_CAPS_ENV: &str = "PIPELOCK_TEST_INTERCEPT_WITHOUT_CAPS";
const WITHOUT_CAPS_TEST: &str = "loading_without_capabilities_says_what_to_grant";

#[test]
fn loading_without_capabilities_says_what_to_grant() {
    if let Some(value) = std::env::var_os(WITHOUT_CAPS_ENV) {
        // The copy started below: root, but with every capability dropped.
        let value = value.to_string_lossy().to_string();
        let (cgroup, pin_root) = value.split_once('\n').unwrap_or_default();
        let settings = InterceptSettings {
            transparent_port: 1,
            dns_port: 2,
            mark: MARK,
            allow: Vec::new(),
            debug_log: false,
        };
        match Interception::load(Path::new(pin_root), &settings)
            .and_then(|mut i| i.attach(Path::new(cgroup)))
        {
            Ok(()) => println!("RESULT: attached"),
            Err(error) => println!("RESULT: {error}"),
        }
        return;
    }
    require_root();
    let cgroups = Mount::cgroup2();
    let child = ChildCgroup::new(cgroups.path(), "nocaps");
    let bpffs = Mount::bpffs();
    let pin_root = bpffs.path().join("pipelock");

    let mut command = Command::new("setpriv");
    command
        .args(["--inh-caps=-all", "--bounding-set=-all", "--"])
        .arg(std::env::current_exe().expect("test binary"))
        .args([WITHOUT_CAPS_TEST, "--exact", "--nocapture"])
        .env(
            WITHOUT_CAPS_ENV,
            format!("{}\n{}", child.path.display(), pin_root.display()),
        );
    let output = run_with_timeout(command, None, Duration::from_secs(30)).expect("setpriv");
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = stdout
        .lines()
        .find_map(|line| line.strip_prefix("RESULT: "))
        .unwrap_or_else(|| {
            panic!(
                "the copy without capabilities printed no result: {}",
                describe(&output)
            )
        });
    assert!(
        result.starts_with("the kernel refused to") && result.contains("CAP_BPF"),
        "{result}"
    );
    let shown = bpftool_cgroup_show(&child.path);
    assert!(!shown.contains("pipelock"), "{shown}");
}
