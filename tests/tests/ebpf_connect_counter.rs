//! The embedded eBPF programs in a real kernel: attached to a fresh cgroup v2, they count the
//! connects of a process inside it, and not of processes outside, and their aya-log records
//! reach user space. Without capabilities, attaching fails with a message that says what to
//! grant. Needs root; fails (never skips) when it cannot run.
//!
//! Cleanup runs even when an assertion fails, in this order (locals drop in reverse): the
//! programs detach, the client processes have been waited for (or killed) by
//! `run_with_timeout`, the child cgroup is emptied and removed, the cgroup v2 mount is
//! detached, and the temporary directory is removed.

use std::ffi::CString;
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipelock::intercept::{cgroup_id, ConnectCounter};
use pipelock_e2e::{describe, run_with_timeout};

/// A cgroup v2 hierarchy mounted on a temporary directory, unmounted on drop.
struct Cgroup2Mount {
    dir: tempfile::TempDir,
}

impl Cgroup2Mount {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = CString::new(dir.path().as_os_str().as_bytes()).expect("path");
        // SAFETY: mount(2) with valid C strings and no data.
        let rc = unsafe {
            libc::mount(
                c"none".as_ptr(),
                target.as_ptr(),
                c"cgroup2".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        assert_eq!(
            rc,
            0,
            "cannot mount a cgroup v2 hierarchy on {}: {} (this test needs root and a kernel with cgroup v2)",
            dir.path().display(),
            std::io::Error::last_os_error()
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cgroup2Mount {
    fn drop(&mut self) {
        let target = CString::new(self.dir.path().as_os_str().as_bytes()).unwrap_or_default();
        // SAFETY: umount2(2) on the directory this guard mounted.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// A child cgroup, emptied and removed on drop.
struct ChildCgroup {
    path: PathBuf,
}

impl ChildCgroup {
    /// Every mount of cgroup2 shows the same hierarchy, so the name must be unique across the
    /// tests of this process and across concurrent runs.
    fn new(parent: &Path, purpose: &str) -> Self {
        let path = parent.join(format!("pipelock-test-{}-{purpose}", std::process::id()));
        std::fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("cannot create cgroup {}: {e}", path.display()));
        Self { path }
    }
}

impl Drop for ChildCgroup {
    fn drop(&mut self) {
        // Kill anything left inside (cgroup.kill exists since Linux 5.14), then remove it.
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(&self.path).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Collects the eBPF programs' log records.
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
    fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
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

    fn lines(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

fn bpftool_cgroup_show(cgroup: &Path) -> String {
    let mut command = Command::new("bpftool");
    command.arg("cgroup").arg("show").arg(cgroup);
    let output = run_with_timeout(command, None, Duration::from_secs(10)).expect("bpftool");
    assert!(output.status.success(), "bpftool: {}", describe(&output));
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn require_root() {
    // SAFETY: geteuid(2) has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test loads eBPF programs and mounts a cgroup v2: run it as root (cargo xtask test does, in CI)"
    );
}

/// The cgroup v2 directory of this process, under `mount` (the same hierarchy).
fn own_cgroup(mount: &Path) -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    let relative = text
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("no cgroup v2 entry in /proc/self/cgroup:\n{text}"));
    mount.join(relative.trim_start_matches('/'))
}

/// A python3 client that connects `v4` times to 127.0.0.1:`v4_port` and `v6` times to
/// [::1]:`v6_port`, first moving itself into `cgroup` when given.
fn client(cgroup: Option<&Path>, v4_port: u16, v4: usize, v6_port: u16, v6: usize) -> Command {
    let script = format!(
        "import socket\n\
         for _ in range({v4}):\n    socket.create_connection(('127.0.0.1', {v4_port}), timeout=5).close()\n\
         for _ in range({v6}):\n    socket.create_connection(('::1', {v6_port}), timeout=5).close()\n"
    );
    let enter = cgroup.map_or_else(String::new, |cg| {
        format!("echo $$ > '{}/cgroup.procs' && ", cg.display())
    });
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("{enter}exec python3 -c \"$0\""))
        .arg(script);
    command
}

#[test]
fn connect_programs_count_connects_of_the_attached_cgroup_only() {
    require_root();

    let mount = Cgroup2Mount::new();
    let child = ChildCgroup::new(mount.path(), "count");
    let id = cgroup_id(&child.path).expect("cgroup id");
    let outside_id = cgroup_id(&own_cgroup(mount.path())).expect("own cgroup id");
    assert_ne!(id, outside_id);

    let v4 = TcpListener::bind("127.0.0.1:0").expect("listen v4");
    let v6 = TcpListener::bind("[::1]:0").expect("listen v6 (needs IPv6 loopback)");
    let v4_port = v4.local_addr().expect("addr").port();
    let v6_port = v6.local_addr().expect("addr").port();

    let captured = Captured::default();
    let counter =
        ConnectCounter::attach_with_logger(&child.path, captured.clone()).expect("attach");
    eprintln!("load + attach took {:?}", counter.attach_time());
    let attached = bpftool_cgroup_show(&child.path);
    assert!(attached.contains("pipelock_connect4"), "{attached}");
    assert!(attached.contains("pipelock_connect6"), "{attached}");
    assert_eq!(counter.connects(id).expect("read").total(), 0);

    // Connects from outside the cgroup, by this process and by another one, are not counted.
    drop(TcpStream::connect(("127.0.0.1", v4_port)).expect("connect from outside"));
    let output = run_with_timeout(
        client(None, v4_port, 1, v6_port, 1),
        None,
        Duration::from_secs(20),
    )
    .expect("client outside");
    assert!(
        output.status.success(),
        "client outside the cgroup: {}",
        describe(&output)
    );
    assert_eq!(counter.connects(id).expect("read").total(), 0);
    assert_eq!(counter.connects(outside_id).expect("read").total(), 0);

    // A real process inside the cgroup connects twice over IPv4 and once over IPv6.
    let output = run_with_timeout(
        client(Some(&child.path), v4_port, 2, v6_port, 1),
        None,
        Duration::from_secs(20),
    )
    .expect("client inside");
    assert!(
        output.status.success(),
        "client in the cgroup: {}",
        describe(&output)
    );

    let counts = counter.connects(id).expect("read");
    assert_eq!(counts.ipv4, 2, "{counts:?}");
    assert_eq!(counts.ipv6, 1, "{counts:?}");
    assert_eq!(counts.total(), 3, "{counts:?}");
    assert_eq!(counter.connects(outside_id).expect("read").total(), 0);

    let v4_line = format!("connect4 cgroup={id} dst=127.0.0.1:{v4_port}");
    let v6_line = format!("connect6 cgroup={id} dst=[::1]:{v6_port}");
    assert!(
        captured.wait_for(&v4_line, Duration::from_secs(5)),
        "no aya-log line {v4_line:?}; got {:?}",
        captured.lines()
    );
    assert!(
        captured.wait_for(&v6_line, Duration::from_secs(5)),
        "no aya-log line {v6_line:?}; got {:?}",
        captured.lines()
    );
    assert_eq!(
        captured
            .lines()
            .iter()
            .filter(|l| l.starts_with("connect"))
            .count(),
        3,
        "one log line per connect inside the cgroup: {:?}",
        captured.lines()
    );

    counter.detach();
    let after = bpftool_cgroup_show(&child.path);
    assert!(
        !after.contains("pipelock_connect"),
        "programs still attached after detach:\n{after}"
    );
}

#[test]
fn attaching_to_a_directory_that_is_not_a_cgroup_fails_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = ConnectCounter::attach(dir.path())
        .err()
        .expect("attach to a plain directory must fail");
    let message = error.to_string();
    assert!(
        message.contains("is not a cgroup v2 directory"),
        "{message}"
    );
}

/// Set (to a cgroup directory) in the copy of this test binary that runs without capabilities.
const WITHOUT_CAPS_ENV: &str = "PIPELOCK_TEST_ATTACH_WITHOUT_CAPS";
const WITHOUT_CAPS_TEST: &str = "attaching_without_capabilities_says_what_to_grant";

#[test]
fn attaching_without_capabilities_says_what_to_grant() {
    if let Some(dir) = std::env::var_os(WITHOUT_CAPS_ENV) {
        // This is the copy started below, as root but with every capability dropped.
        match ConnectCounter::attach(Path::new(&dir)) {
            Ok(_) => println!("RESULT: attached"),
            Err(error) => println!("RESULT: {error}"),
        }
        return;
    }
    require_root();
    let mount = Cgroup2Mount::new();
    let child = ChildCgroup::new(mount.path(), "nocaps");

    let mut command = Command::new("setpriv");
    command
        .args(["--inh-caps=-all", "--bounding-set=-all", "--"])
        .arg(std::env::current_exe().expect("test binary"))
        .args([WITHOUT_CAPS_TEST, "--exact", "--nocapture"])
        .env(WITHOUT_CAPS_ENV, &child.path);
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
    let attached = bpftool_cgroup_show(&child.path);
    assert!(!attached.contains("pipelock_connect"), "{attached}");
}
