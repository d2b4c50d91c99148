//! Fixtures of the eBPF interception tests: a cgroup v2 and a bpffs mounted on temporary
//! directories, a child cgroup, loopback listeners, clients run inside the cgroup, a foreign
//! program for the "hook already taken" case. Every fixture cleans up in `Drop`, so mounts,
//! cgroups and pins go away even when an assertion fails; every wait is bounded.

use std::ffi::CString;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pipelock_e2e::{describe, run_with_timeout};

pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

pub fn require_root() {
    // SAFETY: geteuid(2) has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test loads eBPF programs and mounts a cgroup v2 and a bpffs: run it as root (cargo xtask test does, in CI)"
    );
}

/// A filesystem mounted on a temporary directory, detached on drop.
pub struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    fn new(fstype: &std::ffi::CStr, what: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = CString::new(dir.path().as_os_str().as_bytes()).expect("path");
        // SAFETY: mount(2) with valid C strings and no data.
        let rc = unsafe {
            libc::mount(
                fstype.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        assert_eq!(
            rc,
            0,
            "cannot mount {what} on {}: {} (this test needs root)",
            dir.path().display(),
            std::io::Error::last_os_error()
        );
        Self { dir }
    }

    /// A cgroup v2 hierarchy (the same one the host has mounted elsewhere).
    pub fn cgroup2() -> Self {
        Self::new(c"cgroup2", "a cgroup v2 hierarchy")
    }

    /// A fresh bpffs instance: pins under it are this test's alone.
    pub fn bpffs() -> Self {
        Self::new(c"bpf", "a bpffs")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let target = CString::new(self.dir.path().as_os_str().as_bytes()).unwrap_or_default();
        // SAFETY: umount2(2) on the directory this guard mounted.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// A child cgroup, emptied and removed on drop (which also releases programs attached to it).
pub struct ChildCgroup {
    pub path: PathBuf,
}

impl ChildCgroup {
    /// Every mount of cgroup2 shows the same hierarchy, so the name is unique across the
    /// tests of this process and across concurrent runs.
    pub fn new(parent: &Path, purpose: &str) -> Self {
        let path = parent.join(format!("pipelock-test-{}-{purpose}", std::process::id()));
        std::fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("cannot create cgroup {}: {e}", path.display()));
        Self { path }
    }
}

impl Drop for ChildCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(&self.path).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Connections a listener accepted: the peer and the first bytes it sent.
type Accepted = Mutex<Vec<(SocketAddr, Vec<u8>)>>;

/// A TCP listener on 127.0.0.1 and [::1] at the same port, standing in for Pipelock's
/// transparent listener: it accepts, reads what the client sends first (bounded) and records
/// (peer, first bytes). Stops (and closes its port) on drop.
pub struct LoopbackListener {
    pub port: u16,
    accepted: Arc<Accepted>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl LoopbackListener {
    /// Binds a free port on both loopback addresses (retrying when the IPv6 side is taken).
    pub fn new() -> Self {
        for _ in 0..50 {
            let v4 = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
            let port = v4.local_addr().expect("addr").port();
            if let Ok(v6) = TcpListener::bind(("::1", port)) {
                return Self::serve(port, vec![v4, v6]);
            }
        }
        panic!("no port free on both 127.0.0.1 and [::1]");
    }

    /// Binds `port` on both loopback addresses (a restarted listener).
    pub fn on_port(port: u16) -> Self {
        let v4 = TcpListener::bind(("127.0.0.1", port)).expect("rebind 127.0.0.1");
        let v6 = TcpListener::bind(("::1", port)).expect("rebind [::1]");
        Self::serve(port, vec![v4, v6])
    }

    fn serve(port: u16, listeners: Vec<TcpListener>) -> Self {
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = listeners
            .into_iter()
            .map(|listener| {
                listener.set_nonblocking(true).expect("nonblocking");
                let accepted = Arc::clone(&accepted);
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || accept_loop(&listener, &accepted, &stop))
            })
            .collect();
        Self {
            port,
            accepted,
            stop,
            threads,
        }
    }

    /// The connections accepted so far.
    pub fn accepted(&self) -> Vec<(SocketAddr, Vec<u8>)> {
        self.accepted.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// Waits until a connection whose first bytes contain `needle` was accepted.
    pub fn wait_for(&self, needle: &[u8], timeout: Duration) -> Option<(SocketAddr, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(found) = self
                .accepted()
                .into_iter()
                .find(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
            {
                return Some(found);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

fn accept_loop(listener: &TcpListener, accepted: &Accepted, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 256];
                let n = stream.read(&mut buf).unwrap_or(0);
                if let Ok(mut list) = accepted.lock() {
                    list.push((peer, buf[..n].to_vec()));
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

impl Drop for LoopbackListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A UDP echo on 127.0.0.1 and [::1] at one port, standing in for Pipelock's DNS listener:
/// replies `echo:` + the datagram.
pub struct UdpEcho {
    pub port: u16,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl UdpEcho {
    pub fn new() -> Self {
        for _ in 0..50 {
            let v4 = UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1");
            let port = v4.local_addr().expect("addr").port();
            if let Ok(v6) = UdpSocket::bind(("::1", port)) {
                let stop = Arc::new(AtomicBool::new(false));
                let threads = [v4, v6]
                    .into_iter()
                    .map(|socket| {
                        let stop = Arc::clone(&stop);
                        std::thread::spawn(move || {
                            let _ = socket.set_read_timeout(Some(Duration::from_millis(50)));
                            let mut buf = [0u8; 512];
                            while !stop.load(Ordering::Relaxed) {
                                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                                    let mut reply = b"echo:".to_vec();
                                    reply.extend_from_slice(&buf[..n]);
                                    let _ = socket.send_to(&reply, from);
                                }
                            }
                        })
                    })
                    .collect();
                return Self {
                    port,
                    stop,
                    threads,
                };
            }
        }
        panic!("no UDP port free on both 127.0.0.1 and [::1]");
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A TCP origin on a loopback address (127.0.0.2 and up): counts connections. Stops on drop.
pub struct Origin {
    pub addr: SocketAddr,
    inner: LoopbackListenerLike,
}

struct LoopbackListenerLike {
    accepted: Arc<Accepted>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Origin {
    pub fn new(ip: &str) -> Self {
        let listener = TcpListener::bind((ip, 0)).expect("bind origin");
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let accepted = Arc::clone(&accepted);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || accept_loop(&listener, &accepted, &stop))
        };
        Self {
            addr,
            inner: LoopbackListenerLike {
                accepted,
                stop,
                thread: Some(thread),
            },
        }
    }

    pub fn connections(&self) -> usize {
        self.inner.accepted.lock().map(|a| a.len()).unwrap_or(0)
    }
}

impl Drop for LoopbackListenerLike {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs a python3 script, inside `cgroup` when given; fails the test when it does not exit 0.
pub fn python(cgroup: Option<&Path>, script: &str) -> Output {
    let output = run_with_timeout(python_command(cgroup, script), None, CLIENT_TIMEOUT)
        .expect("python client");
    assert!(
        output.status.success(),
        "python client (cgroup {:?}) failed: {}",
        cgroup,
        describe(&output)
    );
    output
}

/// The command for [`python`]: `sh` moves itself into the cgroup, then execs python3, so the
/// client's every socket is created inside the cgroup.
pub fn python_command(cgroup: Option<&Path>, script: &str) -> Command {
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

/// `key=value` lines of a client's stdout.
pub fn field(output: &Output, key: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .unwrap_or_else(|| {
            panic!(
                "no {key}= line in the client's output: {}",
                describe(output)
            )
        })
}

/// A TCP connect from this (test) process, outside the cgroup.
pub fn connect_from_outside(addr: SocketAddr) -> std::io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr, Duration::from_secs(5))
}

/// `bpftool cgroup show CG`.
pub fn bpftool_cgroup_show(cgroup: &Path) -> String {
    let mut command = Command::new("bpftool");
    command.arg("cgroup").arg("show").arg(cgroup);
    let output = run_with_timeout(command, None, Duration::from_secs(10)).expect("bpftool");
    assert!(output.status.success(), "bpftool: {}", describe(&output));
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// CLOCK_MONOTONIC in ns, the clock python's `time.monotonic_ns()` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes into a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// A `cgroup/connect4` program that is not Pipelock's ("foreign_conn4": `return 1`), loaded
/// and attached with raw bpf(2) calls (BPF_PROG_ATTACH, multi), the way another tool would.
/// It stays attached until the cgroup is removed; the fd is closed on drop.
pub struct ForeignProgram {
    _fd: OwnedFd,
}

impl ForeignProgram {
    pub fn attach(cgroup: &Path) -> Self {
        const BPF_PROG_LOAD: libc::c_long = 5;
        const BPF_PROG_ATTACH: libc::c_long = 8;
        const BPF_PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
        const BPF_CGROUP_INET4_CONNECT: u32 = 10;
        const BPF_F_ALLOW_MULTI: u32 = 2;

        #[repr(C)]
        #[derive(Default)]
        struct LoadAttr {
            prog_type: u32,
            insn_cnt: u32,
            insns: u64,
            license: u64,
            log_level: u32,
            log_size: u32,
            log_buf: u64,
            kern_version: u32,
            prog_flags: u32,
            prog_name: [u8; 16],
            prog_ifindex: u32,
            expected_attach_type: u32,
        }
        #[repr(C)]
        #[derive(Default)]
        struct AttachAttr {
            target_fd: u32,
            attach_bpf_fd: u32,
            attach_type: u32,
            attach_flags: u32,
            replace_bpf_fd: u32,
        }

        // r0 = 1; exit
        let insns: [u64; 2] = [
            u64::from_le_bytes([0xb7, 0, 0, 0, 1, 0, 0, 0]),
            u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
        ];
        let license = c"GPL";
        let mut name = [0u8; 16];
        name[..13].copy_from_slice(b"foreign_conn4");
        let attr = LoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
            insn_cnt: 2,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name,
            expected_attach_type: BPF_CGROUP_INET4_CONNECT,
            ..LoadAttr::default()
        };
        // SAFETY: bpf(2) BPF_PROG_LOAD with an attribute we own, pointing at live buffers.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                std::ptr::addr_of!(attr),
                std::mem::size_of::<LoadAttr>(),
            )
        };
        assert!(
            fd >= 0,
            "cannot load the foreign program: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: the kernel returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).expect("fd")) };
        let dir = std::fs::File::open(cgroup).expect("open cgroup");
        let attach = AttachAttr {
            target_fd: u32::try_from(dir.as_raw_fd()).expect("fd"),
            attach_bpf_fd: u32::try_from(fd.as_raw_fd()).expect("fd"),
            attach_type: BPF_CGROUP_INET4_CONNECT,
            attach_flags: BPF_F_ALLOW_MULTI,
            replace_bpf_fd: 0,
        };
        // SAFETY: bpf(2) BPF_PROG_ATTACH with an attribute we own.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_ATTACH,
                std::ptr::addr_of!(attach),
                std::mem::size_of::<AttachAttr>(),
            )
        };
        assert_eq!(
            rc,
            0,
            "cannot attach the foreign program: {}",
            std::io::Error::last_os_error()
        );
        Self { _fd: fd }
    }
}
