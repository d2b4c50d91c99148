//! The embedded eBPF programs in a real kernel: attached to a fresh cgroup v2, they count the
//! connects of a process inside it, and not of processes outside, and their aya-log records
//! reach user space. Needs root; fails (never skips) when it cannot run.

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
    fn new(parent: &Path) -> Self {
        let path = parent.join(format!("pipelock-test-{}", std::process::id()));
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

#[test]
fn connect_programs_count_connects_of_the_attached_cgroup_only() {
    // SAFETY: geteuid(2) has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test loads eBPF programs and mounts a cgroup v2: run it as root (cargo xtask test does, in CI)"
    );

    let mount = Cgroup2Mount::new();
    let child = ChildCgroup::new(mount.path());
    let id = cgroup_id(&child.path).expect("cgroup id");

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

    // A connect from this process, which is outside the cgroup, is not counted.
    drop(TcpStream::connect(("127.0.0.1", v4_port)).expect("connect from outside"));

    // A real process inside the cgroup connects twice over IPv4 and once over IPv6.
    let script = format!(
        "import socket\nfor _ in range(2):\n    socket.create_connection(('127.0.0.1', {v4_port}), timeout=5).close()\nsocket.create_connection(('::1', {v6_port}), timeout=5).close()\n"
    );
    let mut inside = Command::new("sh");
    inside.arg("-c").arg(format!(
        "echo $$ > '{}/cgroup.procs' && exec python3 -c \"$0\"",
        child.path.display()
    ));
    inside.arg(&script);
    let output = run_with_timeout(inside, None, Duration::from_secs(20)).expect("client");
    assert!(
        output.status.success(),
        "client in the cgroup: {}",
        describe(&output)
    );

    let counts = counter.connects(id).expect("read");
    assert_eq!(counts.ipv4, 2, "{counts:?}");
    assert_eq!(counts.ipv6, 1, "{counts:?}");

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
