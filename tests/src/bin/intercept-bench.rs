//! The cost of Pipelock's eBPF hooks on `connect()` and on a small HTTP request (issue #5,
//! "Speed"), run by `cargo xtask bench-intercept` as root.
//!
//! **Connect cost.**
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
//! such noise.
//!
//! **HTTP latency** ([`http_latency`]): a real `pipelock run` attaches to the same cgroup, and
//! the p50 and p90 of small keep-alive GETs through its transparent listener are compared with
//! the same GETs through its forward proxy and, for reference, straight to the origin.
//!
//! All tables are printed as markdown on stdout. Mounts, cgroup, pins and the `pipelock`
//! process are removed on exit, also after an error or SIGINT/SIGTERM.

#[path = "intercept-bench/http_latency.rs"]
mod http_latency;

use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use pipelock::intercept::{AllowRule, InterceptSettings, Interception, Protocol, DEFAULT_MARK};

/// Set in the client copies of this binary: the cgroup directory to enter, or empty for the
/// client that stays outside (the direct HTTP case).
const CLIENT_ENV: &str = "PIPELOCK_BENCH_CLIENT_CGROUP";
/// Connects per round and rounds; `PIPELOCK_BENCH_CONNECTS` / `PIPELOCK_BENCH_ROUNDS`
/// override them.
const CONNECTS: u32 = 20_000;
const ROUNDS: usize = 7;
const TARGET_NS: f64 = 2_000.0;
/// HTTP rounds, timed requests per case and round, and untimed ones before them on the same
/// connection; `PIPELOCK_BENCH_HTTP_ROUNDS` and `PIPELOCK_BENCH_REQUESTS` override the first
/// two. A connection's latency settles in one of a few modes (which cores the client's and
/// Pipelock's threads wake on), so many short rounds average better than a few long ones.
const HTTP_ROUNDS: usize = 21;
const REQUESTS: u32 = 1_500;
const REQUESTS_WARMUP: u32 = 200;
/// The target: the transparent path's p50 at most this times the forward proxy's.
const TARGET_RATIO: f64 = 1.10;

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

/// The client: enters the cgroup (unless it is empty), then for each stdin line
/// - "ADDR N" runs N connects to ADDR and answers with the median nanoseconds and the count
///   of stalled connects;
/// - "GET ADDR TARGET HOST W N" sends W untimed, then N timed GETs of TARGET with `Host: HOST`
///   on one connection to ADDR and answers with the nanoseconds of each timed one.
fn client(cgroup: &Path) -> Result<()> {
    if !cgroup.as_os_str().is_empty() {
        std::fs::write(cgroup.join("cgroup.procs"), std::process::id().to_string())
            .context("cannot enter the cgroup")?;
    }
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line?;
        if let Some(request) = line.strip_prefix("GET ") {
            let fields: Vec<&str> = request.split(' ').collect();
            let [addr, target, host, warmup, count] = fields[..] else {
                bail!("expected GET ADDR TARGET HOST W N, got {line:?}");
            };
            let samples = http_latency::timed_gets(
                addr.parse()?,
                target,
                host,
                warmup.parse()?,
                count.parse()?,
            )
            .with_context(|| format!("GET {target} from {addr}"))?;
            let text: Vec<String> = samples.iter().map(u64::to_string).collect();
            writeln!(stdout, "{}", text.join(" "))?;
            stdout.flush()?;
            continue;
        }
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
    let stop = Arc::new(Stop::default());
    stop_clients_on_signals(Arc::clone(&stop))?;
    let cgroups = Mount::new(c"cgroup2")?;
    let bpffs = Mount::new(c"bpf")?;
    let cgroup = ChildCgroup::new(cgroups.path())?;
    let pin_root = bpffs.path().join("pipelock");
    let rounds: usize = env_number("PIPELOCK_BENCH_ROUNDS", ROUNDS);
    let mut client = Client::start(Some(&cgroup.path), &stop)?;
    connect_cost(&mut client, &cgroup.path, &pin_root, rounds)?;
    let http_rounds: usize = env_number("PIPELOCK_BENCH_HTTP_ROUNDS", HTTP_ROUNDS);
    request_latency(&mut client, &cgroup.path, &pin_root, http_rounds, &stop)
}

/// The first table: what the hooks add to a connect, timed by `client` (in the cgroup) with
/// the programs loaded by this process, and the kernel's accounting of their run time.
fn connect_cost(client: &mut Client, cgroup: &Path, pin_root: &Path, rounds: usize) -> Result<()> {
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
    let mut interception = Interception::load(pin_root, &settings)?;

    let connects: u32 = env_number("PIPELOCK_BENCH_CONNECTS", CONNECTS);
    // Warm up the paths (page cache, socket slabs) before measuring.
    client.run(origin.addr, connects / 4)?;

    let mut baseline = Vec::new();
    let mut redirected = Vec::new();
    let mut direct = Vec::new();
    for round in 0..rounds {
        pipelock::intercept::detach(pin_root, cgroup).ok();
        baseline.push(client.run(origin.addr, connects)?);
        interception.attach(cgroup)?;
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
    pipelock::intercept::detach(pin_root, cgroup).ok();
    let stalls = client.stalls;
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

/// The second table: small keep-alive GETs straight to an origin (a client outside the
/// cgroup), through Pipelock's forward proxy and through its transparent listener (`client`,
/// in the cgroup), with a real `pipelock run` attached to the cgroup.
fn request_latency(
    client: &mut Client,
    cgroup: &Path,
    pin_root: &Path,
    rounds: usize,
    stop: &Arc<Stop>,
) -> Result<()> {
    use http_latency::{Origin, PipelockRun, PATH};
    use pipelock_e2e::bench::RoundSamples as CaseSamples;

    let requests: u32 = env_number("PIPELOCK_BENCH_REQUESTS", REQUESTS);
    let binary = pipelock_e2e::bench::pipelock_binary()?;
    let origin = Origin::start("127.0.0.2:0")?;
    let host = origin.addr.to_string();
    let absolute = format!("http://{host}{PATH}");
    let mut outside = Client::start(None, stop)?;
    let pipelock = PipelockRun::start(&binary, cgroup, pin_root)?;
    ensure!(!stop.requested(), "stopped by a signal");
    let proxy = pipelock.addr()?;
    eprintln!(
        "intercept-bench: pipelock {} listens on {proxy} (transparent {}), attached to {}",
        binary.display(),
        pipelock.transparent,
        cgroup.display()
    );

    // Warm-up: every path once (pools, caches, the page in the scanners' way).
    outside.gets(origin.addr, PATH, &host, REQUESTS_WARMUP, 1)?;
    client.gets(proxy, &absolute, &host, REQUESTS_WARMUP, 1)?;
    client.gets(origin.addr, PATH, &host, REQUESTS_WARMUP, 1)?;

    let mut direct = CaseSamples::default();
    let mut forward = CaseSamples::default();
    let mut transparent = CaseSamples::default();
    for round in 0..rounds {
        // Each round starts with another case, so none always runs first.
        for case in (0..3).map(|i| (i + round) % 3) {
            match case {
                0 => direct.add_round(outside.gets(
                    origin.addr,
                    PATH,
                    &host,
                    REQUESTS_WARMUP,
                    requests,
                )?)?,
                1 => forward.add_round(client.gets(
                    proxy,
                    &absolute,
                    &host,
                    REQUESTS_WARMUP,
                    requests,
                )?)?,
                _ => transparent.add_round(client.gets(
                    origin.addr,
                    PATH,
                    &host,
                    REQUESTS_WARMUP,
                    requests,
                )?)?,
            }
        }
        eprintln!(
            "intercept-bench: HTTP round {}: p50 direct {:.1} µs, forward proxy {:.1} µs, transparent {:.1} µs",
            round + 1,
            direct.round_p50[round] / 1000.0,
            forward.round_p50[round] / 1000.0,
            transparent.round_p50[round] / 1000.0
        );
    }
    // Pipelock's own count proves which path each case took.
    let per_case = u64::from(requests + REQUESTS_WARMUP) * rounds as u64;
    let forwarded = pipelock.requests("http", "allow")?;
    let transparently = pipelock.requests("transparent", "allow")?;
    ensure!(
        forwarded >= per_case && transparently >= per_case,
        "Pipelock counted {forwarded} forward-proxy and {transparently} transparent requests allowed, expected at least {per_case} each"
    );
    drop(pipelock);
    drop(outside);

    let (direct_p50, direct_p90) = direct.p50_p90_us();
    let (forward_p50, forward_p90) = forward.p50_p90_us();
    let (transparent_p50, transparent_p90) = transparent.p50_p90_us();
    let ratio = transparent_p50 / forward_p50;
    let met = if ratio <= TARGET_RATIO {
        "yes"
    } else {
        "**no**"
    };
    let mut round_ratios: Vec<f64> = transparent
        .round_p50
        .iter()
        .zip(&forward.round_p50)
        .map(|(t, f)| t / f)
        .collect();
    let round_ratio = median(&mut round_ratios);
    let page_len = http_latency::page().len();
    println!("\n## HTTP request latency: transparent path against the forward proxy\n");
    println!("| Case | p50 µs | p90 µs | Added over direct (p50) | Ratio transparent / forward (p50) | Target | Met |");
    println!("|---|---|---|---|---|---|---|");
    println!("| direct: origin, from outside the cgroup | {direct_p50:.1} | {direct_p90:.1} | — | — | — | — |");
    println!(
        "| forward proxy: absolute-form to Pipelock's listener | {forward_p50:.1} | {forward_p90:.1} | {:+.1} µs | — | — | — |",
        forward_p50 - direct_p50
    );
    println!(
        "| transparent: origin-form to the origin, redirected by the kernel | {transparent_p50:.1} | {transparent_p90:.1} | {:+.1} µs | {ratio:.3} | transparent ≤ {TARGET_RATIO:.2} × forward | {met} |",
        transparent_p50 - direct_p50
    );
    let spread = |case: &CaseSamples| {
        let (low, high) = case.round_spread_us();
        format!("{low:.1}–{high:.1}")
    };
    println!(
        "\nEach case: {requests} sequential `GET {PATH}` (a {page_len}-byte `text/html` page with Content-Length, \
read whole and checked) on one keep-alive connection per round, after {REQUESTS_WARMUP} untimed ones; \
{rounds} rounds, the cases' order rotating; percentiles over all {} samples of a case. \
Per-round p50: direct {} µs, forward proxy {} µs, transparent {} µs; median of the rounds' p50 ratios \
transparent / forward {round_ratio:.3}; p90 ratio {:.3}. \
Pipelock (`pipelock run`, release build) scans with every scanner that applies on and blocking \
(URL layers, DLP on every header and body, injection scanning of the response), and attached to the \
cgroup itself (`intercept.cgroups`); both proxied cases come from the client in the cgroup, whose \
connect to Pipelock's own listener is redirected too and served by that listener's routes. \
Pipelock counted {forwarded} forward-proxy and {transparently} transparent requests, all allowed.",
        direct.all.len(),
        spread(&direct),
        spread(&forward),
        spread(&transparent),
        transparent_p90 / forward_p90
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

/// The running client processes, and whether a signal asked to stop.
#[derive(Default)]
struct Stop {
    state: Mutex<(bool, Vec<u32>)>,
}

impl Stop {
    /// Records a started client; kills it and fails when a signal already came.
    fn register(&self, pid: u32) -> Result<()> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| anyhow::anyhow!("stop state poisoned"))?;
        if state.0 {
            kill(pid);
            bail!("stopped by a signal");
        }
        state.1.push(pid);
        Ok(())
    }

    /// Forgets a client that is about to be reaped (its pid may be reused afterwards).
    fn unregister(&self, pid: u32) {
        if let Ok(mut state) = self.state.lock() {
            state.1.retain(|&p| p != pid);
        }
    }

    /// Whether a signal came.
    fn requested(&self) -> bool {
        self.state.lock().map_or(true, |state| state.0)
    }

    /// Kills every client, and any started later.
    fn stop_all(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.0 = true;
            for &pid in &state.1 {
                kill(pid);
            }
        }
    }
}

/// SIGKILL to one of our children.
fn kill(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        if pid > 0 {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// SIGINT and SIGTERM (Ctrl-C, `timeout`) must not skip the cleanup (detaching and stopping
/// `pipelock`, unmounting, removing the cgroup and its attachments): they are blocked in every
/// thread and taken by one that kills the clients, so the main thread's next read fails and it
/// unwinds through the `Drop`s.
fn stop_clients_on_signals(stop: Arc<Stop>) -> Result<()> {
    let set = ending_signals();
    // SAFETY: pthread_sigmask on a set we own, before any thread starts, so every later
    // thread inherits the mask.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    ensure!(rc == 0, "pthread_sigmask failed: {rc}");
    std::thread::spawn(move || loop {
        let mut signal = 0;
        // SAFETY: sigwait(3) on the blocked set, into a local.
        if unsafe { libc::sigwait(&set, &mut signal) } == 0 {
            eprintln!("intercept-bench: signal {signal}: stopping and cleaning up");
            stop.stop_all();
        }
    });
    Ok(())
}

/// SIGINT and SIGTERM.
fn ending_signals() -> libc::sigset_t {
    // SAFETY: sigset operations on a zeroed set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// `command` with SIGINT and SIGTERM unblocked in the child: a blocked mask is inherited
/// through exec, and `pipelock` must stop on SIGTERM.
fn unblocked(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: only pthread_sigmask (async-signal-safe) runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let set = ending_signals();
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            Ok(())
        })
    }
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

/// A client copy of this binary, inside the cgroup or (`None`) outside it.
struct Client {
    /// Connects that took over 100 ms (a SYN retransmitted after a full accept queue).
    stalls: u64,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stop: Arc<Stop>,
}

impl Client {
    fn start(cgroup: Option<&Path>, stop: &Arc<Stop>) -> Result<Self> {
        let mut child = unblocked(&mut Command::new(std::env::current_exe()?))
            .env(CLIENT_ENV, cgroup.unwrap_or(Path::new("")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the client")?;
        let stdin = child.stdin.take().context("client stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("client stdout")?);
        let client = Self {
            stalls: 0,
            child,
            stdin,
            stdout,
            stop: Arc::clone(stop),
        };
        stop.register(client.child.id())?;
        Ok(client)
    }

    /// One answer line; fails when the client exited (an error of its own, or a signal).
    fn ask(&mut self, request: &str) -> Result<String> {
        writeln!(self.stdin, "{request}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the client exited");
        }
        Ok(line)
    }

    /// The nanoseconds of each of `count` timed GETs of `target` (`Host: host`) on one
    /// connection to `addr`, after `warmup` untimed ones.
    fn gets(
        &mut self,
        addr: SocketAddr,
        target: &str,
        host: &str,
        warmup: u32,
        count: u32,
    ) -> Result<Vec<u64>> {
        let line = self.ask(&format!("GET {addr} {target} {host} {warmup} {count}"))?;
        let samples = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<Vec<u64>, _>>()
            .context("client answer")?;
        ensure!(
            samples.len() == usize::try_from(count).unwrap_or(0),
            "the client answered {} samples, not {count}",
            samples.len()
        );
        Ok(samples)
    }

    /// The median nanoseconds of `count` connects to `addr` (socket, connect, close).
    fn run(&mut self, addr: SocketAddr, count: u32) -> Result<f64> {
        let line = self.ask(&format!("{addr} {count}"))?;
        let (median, stalls) = line.trim().split_once(' ').context("client answer")?;
        let stalls: u64 = stalls.parse().context("client answer")?;
        self.stalls += stalls;
        median.parse().context("client answer")
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.unregister(self.child.id());
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
