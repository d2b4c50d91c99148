//! The cost of Pipelock's eBPF hooks on `connect()` (issue #5, "Speed"), run by
//! `cargo xtask bench-intercept` as root.
//!
//! A client process inside a fresh cgroup v2 times N blocking TCP connects each (socket,
//! connect, close with an RST so no TIME_WAIT piles up) to loopback listeners, in three
//! conditions, interleaved over several rounds:
//! - **baseline**: no programs attached, to 127.0.0.2:O;
//! - **redirected**: programs attached, the same connect rewritten to the transparent
//!   listener on 127.0.0.1:T (connect4 records the destination, sock_ops copies it by port and
//!   asks for the close callback, which deletes it);
//! - **allowed**: programs attached, to 127.0.0.3:A, which an allow rule lets through directly
//!   (settings read, LPM lookup).
//!
//! Every listener is a plain accept-and-drop loop in this process, outside the cgroup. Each
//! round's median connect, then the median over rounds, is reported with the difference to
//! the baseline; the spread of the baseline over rounds shows the noise. A second table gives
//! the kernel's own accounting of the programs' run time (`BPF_ENABLE_STATS`), which has no
//! such noise. Both are printed as markdown on stdout. Mounts, cgroup and pins are removed on
//! exit.

use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use pipelock::intercept::{AllowRule, InterceptSettings, Interception, Protocol, DEFAULT_MARK};

/// Set in the client copy of this binary: the cgroup directory to enter.
const CLIENT_ENV: &str = "PIPELOCK_BENCH_CLIENT_CGROUP";
/// Connects per round and rounds; `PIPELOCK_BENCH_CONNECTS` / `PIPELOCK_BENCH_ROUNDS`
/// override them.
const CONNECTS: u32 = 20_000;
const ROUNDS: usize = 7;
const TARGET_NS: f64 = 2_000.0;

fn main() {
    let result = if let Some(cgroup) = std::env::var_os(CLIENT_ENV) {
        client(Path::new(&cgroup))
    } else {
        bench()
    };
    if let Err(error) = result {
        eprintln!("intercept-bench: error: {error:#}");
        std::process::exit(1);
    }
}

/// The client: enters the cgroup, then for each stdin line "ADDR N" runs N connects to ADDR
/// and answers with the elapsed nanoseconds.
fn client(cgroup: &Path) -> Result<()> {
    std::fs::write(cgroup.join("cgroup.procs"), std::process::id().to_string())
        .context("cannot enter the cgroup")?;
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line?;
        let (addr, count) = line.split_once(' ').context("expected ADDR N")?;
        let addr: SocketAddr = addr.parse()?;
        let count: u32 = count.parse()?;
        let mut samples = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for _ in 0..count {
            let started = Instant::now();
            let stream = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
            // Close with an RST: no TIME_WAIT, so ephemeral ports never run out.
            set_linger_zero(&stream)?;
            drop(stream);
            samples.push(started.elapsed().as_nanos());
        }
        // The median is immune to the rare connect whose SYN met a full accept queue and was
        // retransmitted a second later; those are reported separately.
        samples.sort_unstable();
        let median = samples.get(samples.len() / 2).copied().unwrap_or(0);
        let stalls = samples.iter().filter(|&&ns| ns > 100_000_000).count();
        writeln!(stdout, "{median} {stalls}")?;
        stdout.flush()?;
    }
    Ok(())
}

/// SO_LINGER {on, 0}: close() resets the connection instead of entering TIME_WAIT.
fn set_linger_zero(stream: &TcpStream) -> Result<()> {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt(2) on a socket we own, with a linger struct of the exact size.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::linger>()).unwrap_or(8),
        )
    };
    ensure!(rc == 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    Ok(())
}

fn bench() -> Result<()> {
    // SAFETY: geteuid(2) has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "run as root: it mounts a cgroup v2 and a bpffs and loads eBPF programs"
    );
    let client_pid = Arc::new(AtomicU32::new(0));
    stop_client_on_signals(Arc::clone(&client_pid))?;
    let cgroups = Mount::new(c"cgroup2")?;
    let bpffs = Mount::new(c"bpf")?;
    let cgroup = ChildCgroup::new(cgroups.path())?;
    let pin_root = bpffs.path().join("pipelock");

    let origin = Listener::bind("127.0.0.2:0")?;
    let allowed = Listener::bind("127.0.0.3:0")?;
    let transparent = Listener::bind("127.0.0.1:0")?;
    let settings = InterceptSettings {
        transparent_port: transparent.addr.port(),
        // Nothing in the benchmark sends UDP.
        dns_port: 1053,
        mark: DEFAULT_MARK,
        allow: vec![AllowRule {
            protocol: Protocol::Tcp,
            addr: IpAddr::from([127, 0, 0, 3]),
            prefix: 32,
            port: allowed.addr.port(),
        }],
        debug_log: false,
    };
    let mut interception = Interception::load(&pin_root, &settings)?;

    let connects: u32 = env_number("PIPELOCK_BENCH_CONNECTS", CONNECTS);
    let rounds: usize = env_number("PIPELOCK_BENCH_ROUNDS", ROUNDS);
    let mut client = Client::start(&cgroup.path)?;
    if client_pid.swap(client.child.id(), Ordering::Relaxed) == STOP_REQUESTED {
        bail!("stopped by a signal");
    }
    // Warm up the paths (page cache, socket slabs) before measuring.
    client.run(origin.addr, connects / 4)?;

    let mut baseline = Vec::new();
    let mut redirected = Vec::new();
    let mut direct = Vec::new();
    for round in 0..rounds {
        pipelock::intercept::detach(&pin_root, &cgroup.path).ok();
        baseline.push(client.run(origin.addr, connects)?);
        interception.attach(&cgroup.path)?;
        redirected.push(client.run(origin.addr, connects)?);
        direct.push(client.run(allowed.addr, connects)?);
        eprintln!(
            "intercept-bench: round {}: baseline {:.0} ns, redirected {:.0} ns, allowed {:.0} ns",
            round + 1,
            baseline[round],
            redirected[round],
            direct[round]
        );
    }
    // One more redirected and allowed run with the kernel's run-time statistics on (only now:
    // they add two clock reads to every program run, which the timed rounds must not pay).
    let run_times = {
        let _stats_enabled = aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .context("cannot enable BPF run-time statistics")?;
        client.run(origin.addr, connects)?;
        client.run(allowed.addr, connects)?;
        program_run_times()
    };
    let stats = interception.stats()?;
    ensure!(
        transparent.accepted() >= u64::from(connects) * (rounds as u64 + 1) * 9 / 10,
        "the transparent listener accepted only {} connects",
        transparent.accepted()
    );
    ensure!(
        stats.redirected_tcp >= u64::from(connects) * (rounds as u64 + 1),
        "only {} connects were redirected",
        stats.redirected_tcp
    );
    ensure!(
        stats.allowed_direct >= u64::from(connects) * (rounds as u64 + 1),
        "only {} connects went through the allow rule",
        stats.allowed_direct
    );
    pipelock::intercept::detach(&pin_root, &cgroup.path).ok();
    let stalls = client.stalls;

    drop(client);
    drop(interception);

    let spread = baseline.iter().copied().fold(f64::INFINITY, f64::min)
        ..=baseline.iter().copied().fold(0.0, f64::max);
    let base = median(&mut baseline);
    let redirect = median(&mut redirected);
    let allow = median(&mut direct);
    println!("## Interception hook cost (`cargo xtask bench-intercept`)\n");
    println!("| Case | ns per connect (median connect of each round, median of {rounds} rounds × {connects} connects) | Added by the hooks | Target | Met |");
    println!("|---|---|---|---|---|");
    println!(
        "| baseline: no programs, 127.0.0.2 (rounds {:.0}–{:.0}) | {base:.0} | — | — | — |",
        spread.start(),
        spread.end()
    );
    for (case, value) in [
        (
            "redirected to the transparent listener (connect4 + sock_ops)",
            redirect,
        ),
        (
            "allowed by a rule, direct (connect4 LPM lookup + sock_ops)",
            allow,
        ),
    ] {
        let added = value - base;
        let met = if added <= TARGET_NS { "yes" } else { "**no**" };
        println!("| {case} | {value:.0} | {added:+.0} ns | ≤ 2000 ns | {met} |");
    }
    println!(
        "\nEach connect: socket(), connect() to a loopback listener in another process (outside the cgroup), close() with SO_LINGER 0. \
The redirected case also counts the sock_ops close callback. Rounds alternate the cases (detach / attach between them). \
Counters after the run: {} redirected, {} allowed. \
Connects over 100 ms (SYN retransmitted after a full accept queue, left out by the median): {stalls}.",
        stats.redirected_tcp, stats.allowed_direct
    );
    println!("\n| Program (kernel accounting, one more redirected and allowed run of {connects} each) | Runs | ns per run |");
    println!("|---|---|---|");
    for (name, runs, nanos) in run_times {
        let per_run = if runs == 0 {
            0.0
        } else {
            nanos as f64 / runs as f64
        };
        println!("| {name} | {runs} | {per_run:.0} |");
    }
    println!(
        "\nA redirected connect runs pipelock_conn4 once and pipelock_sk_ops a few times (connect, established, state changes up to close)."
    );
    Ok(())
}

/// (name, runs, total ns) of the Pipelock programs that ran, from the kernel's statistics.
fn program_run_times() -> Vec<(String, u64, u128)> {
    let mut times: Vec<(String, u64, u128)> = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|info| {
            let name = info.name_as_str()?.to_string();
            (name.starts_with("pipelock_") && info.run_count() > 0)
                .then(|| (name, info.run_count(), info.run_time().as_nanos()))
        })
        .collect();
    times.sort();
    times
}

/// `client_pid` value: a signal came before the client started.
const STOP_REQUESTED: u32 = u32::MAX;

/// SIGINT and SIGTERM (Ctrl-C, `timeout`) must not skip the cleanup (unmounting, removing
/// the cgroup and its attachments): they are blocked in every thread and taken by one that
/// kills the client, so the main thread's next read fails and it unwinds through the `Drop`s.
fn stop_client_on_signals(client_pid: Arc<AtomicU32>) -> Result<()> {
    // SAFETY: sigset operations on a set we own; pthread_sigmask before any thread starts,
    // so every later thread inherits the mask.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        ensure!(rc == 0, "pthread_sigmask failed: {rc}");
        set
    };
    std::thread::spawn(move || loop {
        let mut signal = 0;
        // SAFETY: sigwait(3) on the blocked set, into a local.
        if unsafe { libc::sigwait(&set, &mut signal) } == 0 {
            eprintln!("intercept-bench: signal {signal}: stopping and cleaning up");
            let pid = client_pid.swap(STOP_REQUESTED, Ordering::Relaxed);
            if let Ok(pid) = i32::try_from(pid) {
                if pid > 0 {
                    // SAFETY: kill(2) on our own child.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    });
    Ok(())
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The client copy of this binary, inside the cgroup.
struct Client {
    /// Connects that took over 100 ms (a SYN retransmitted after a full accept queue).
    stalls: u64,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Client {
    fn start(cgroup: &Path) -> Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(CLIENT_ENV, cgroup)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the client")?;
        let stdin = child.stdin.take().context("client stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("client stdout")?);
        Ok(Self {
            stalls: 0,
            child,
            stdin,
            stdout,
        })
    }

    /// The median nanoseconds of `count` connects to `addr` (socket, connect, close).
    fn run(&mut self, addr: SocketAddr, count: u32) -> Result<f64> {
        writeln!(self.stdin, "{addr} {count}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the client exited");
        }
        let (median, stalls) = line.trim().split_once(' ').context("client answer")?;
        let stalls: u64 = stalls.parse().context("client answer")?;
        self.stalls += stalls;
        median.parse().context("client answer")
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An accept-and-drop loop on one address, outside the cgroup.
struct Listener {
    addr: SocketAddr,
    accepted: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    fn bind(addr: &str) -> Result<Self> {
        let listener = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
        let addr = listener.local_addr()?;
        // std listens with a backlog of 128; a deeper queue makes a full one (and the 1 s SYN
        // retransmit that follows) rarer when the client outruns the accept loop. Calling
        // listen(2) again on a listening socket only changes the backlog.
        // SAFETY: listen(2) on a socket we own.
        unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 4096) };
        let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let accepted = Arc::clone(&accepted);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if stream.is_ok() {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        Ok(Self {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        })
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A filesystem mounted on a temporary directory, detached on drop.
struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    fn new(fstype: &std::ffi::CStr) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let target = CString::new(dir.path().as_os_str().as_bytes())?;
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
        if rc != 0 {
            bail!(
                "cannot mount {fstype:?} on {}: {}",
                dir.path().display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.dir.path().as_os_str().as_bytes()) {
            // SAFETY: umount2(2) on the directory this guard mounted.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// The benchmark's cgroup, emptied and removed on drop.
struct ChildCgroup {
    path: PathBuf,
}

impl ChildCgroup {
    fn new(parent: &Path) -> Result<Self> {
        let path = parent.join(format!("pipelock-bench-{}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { path })
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
