//! The processes a benchmark run starts: servers that stay in the foreground for the whole
//! run and are stopped when their [`Daemon`] is dropped (so also when a step fails), and
//! one-shot commands that are killed when they overrun their time limit.
//!
//! A run interrupted by a signal (SIGINT, SIGTERM, SIGHUP) has no chance to drop anything,
//! so after [`stop_on_signals`] one thread waits for those signals instead: it stops the
//! registered servers, removes the registered directories and exits.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long a stopped server gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Servers running now and directories to remove, for the signal thread.
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static TO_REMOVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// Set once a signal arrived: nothing new is started.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// The signals that end a run.
fn ending_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// From now on SIGINT, SIGTERM and SIGHUP stop the registered servers, remove the registered
/// directories and end the process (exit 128 + signal). Call it before any other thread
/// exists: the signals are blocked in this thread and so in every thread started later, and
/// one thread waits for them. Children get them unblocked again (see [`unblocked`]).
pub fn stop_on_signals() -> Result<()> {
    let set = ending_signals();
    // SAFETY: blocks signals in the calling thread with a valid set.
    let blocked = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if blocked != 0 {
        bail!(
            "pthread_sigmask: {}",
            std::io::Error::from_raw_os_error(blocked)
        );
    }
    std::thread::spawn(move || {
        let mut signal: libc::c_int = 0;
        // SAFETY: sigwait on a valid set with a valid out pointer.
        if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
            return;
        }
        STOPPING.store(true, Ordering::SeqCst);
        eprintln!("xtask: signal {signal}: stopping the servers");
        let running = || RUNNING.lock().map(|p| p.clone()).unwrap_or_default();
        signal_all(&running(), libc::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline && !running().into_iter().all(exited) {
            std::thread::sleep(Duration::from_millis(50));
        }
        signal_all(&running(), libc::SIGKILL);
        for dir in TO_REMOVE.lock().map(|d| d.clone()).unwrap_or_default() {
            let _ = std::fs::remove_dir_all(dir);
        }
        std::process::exit(128 + signal);
    });
    Ok(())
}

/// True when `pid` is gone or a zombie (exited, not yet reaped).
fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after_comm = &stat[stat.rfind(')')? + 1..];
            after_comm
                .split_whitespace()
                .next()
                .map(|state| state == "Z")
        })
        .unwrap_or(true)
}

/// Registers `dir` to be removed if a signal ends the run (a `TempDir` is removed by its
/// drop otherwise).
pub fn remove_on_signal(dir: &Path) {
    if let Ok(mut dirs) = TO_REMOVE.lock() {
        dirs.push(dir.to_path_buf());
    }
}

fn signal_all(pids: &[u32], signal: libc::c_int) {
    for &pid in pids {
        if let Ok(pid) = libc::pid_t::try_from(pid) {
            // SAFETY: kill(2) with a pid this process started.
            unsafe { libc::kill(pid, signal) };
        }
    }
}

/// `command`, with the signals [`stop_on_signals`] blocks unblocked in the child (a blocked
/// mask is inherited through exec: nginx could not be stopped with SIGTERM).
fn unblocked(command: &mut Command) -> &mut Command {
    // SAFETY: only pthread_sigmask (async-signal-safe) runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let set = ending_signals();
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            Ok(())
        })
    }
}

/// Starts `command` with the run's signals unblocked, registered to be stopped if a signal
/// ends the run (see [`stop_on_signals`]); [`wait_within`] or dropping its [`Daemon`]
/// deregisters it.
pub fn spawn(command: &mut Command) -> Result<Child> {
    if STOPPING.load(Ordering::SeqCst) {
        bail!("interrupted: not starting {command:?}");
    }
    let child = unblocked(command)
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    if let Ok(mut running) = RUNNING.lock() {
        running.push(child.id());
    }
    Ok(child)
}

/// Takes `pid` off the list of processes the signal thread stops.
fn deregister(pid: u32) {
    if let Ok(mut running) = RUNNING.lock() {
        running.retain(|&running| running != pid);
    }
}

/// A server running in the foreground, its output going to a log file.
pub struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `command`, its stdout and stderr appended to `log`.
    pub fn start(name: &str, command: &mut Command, log: &Path) -> Result<Self> {
        let file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let err = file
            .try_clone()
            .context("cannot duplicate a log file handle")?;
        command.stdin(Stdio::null()).stdout(file).stderr(err);
        eprintln!("xtask: starting {name}: {command:?}");
        let child = spawn(command).with_context(|| format!("cannot start {name}"))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until something accepts connections on `127.0.0.1:port`; fails, quoting the
    /// log, when the server exits first or `limit` passes.
    pub fn wait_listening(&mut self, port: u16, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().context("cannot poll a server")? {
                deregister(self.child.id());
                bail!(
                    "{} exited with {status} before listening; its log ends:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} does not listen on 127.0.0.1:{port} after {limit:?}; its log ends:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        deregister(self.child.id());
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SIGTERM first: nginx's master then stops its workers, squid shuts down.
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("xtask: {} ignored SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` to completion within `limit`, capturing its output; kills it and fails
/// when it overruns. The exit status is the caller's to judge.
pub fn output_within(command: &mut Command, limit: Duration) -> Result<Output> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(command)?;
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let status = wait_within(&mut child, limit)
        .with_context(|| format!("{command:?} did not finish within {limit:?}"))?;
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// [`output_within`], failing unless the command exits 0; returns its stdout as text.
pub fn stdout_within(command: &mut Command, limit: Duration) -> Result<String> {
    let output = output_within(command, limit)?;
    if !output.status.success() {
        bail!(
            "{command:?} failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Waits for `child` to exit; kills it after `limit`.
pub fn wait_within(child: &mut Child, limit: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        // Deregistered just after reaping: the window in which the signal thread could see a
        // reused number is a few instructions long.
        if let Some(status) = child.try_wait().context("cannot poll a command")? {
            deregister(child.id());
            return Ok(status);
        }
        if Instant::now() > deadline {
            deregister(child.id());
            let _ = child.kill();
            let _ = child.wait();
            bail!("killed after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Raises this process's soft limit on open files to its hard limit, so the servers it
/// starts (which inherit it) can hold the idle-connection case's thousand sockets.
pub fn raise_open_files_limit() -> Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            bail!(
                "getrlimit(RLIMIT_NOFILE): {}",
                std::io::Error::last_os_error()
            );
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            bail!(
                "setrlimit(RLIMIT_NOFILE): {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(limit.rlim_cur)
}

/// Resident memory (VmRSS) of `pid` and all its descendants, in KiB.
pub fn tree_rss_kib(pid: u32) -> Result<u64> {
    let mut total = rss_kib(pid)?;
    for child in children(pid) {
        total += tree_rss_kib(child).unwrap_or(0);
    }
    Ok(total)
}

fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .with_context(|| format!("{path} has no VmRSS line"))
}

/// The pids whose parent is `pid` (from `/proc/*/stat`).
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&candidate| {
            std::fs::read_to_string(format!("/proc/{candidate}/stat"))
                .ok()
                .and_then(|stat| parent_of(&stat))
                == Some(pid)
        })
        .collect()
}

/// The parent pid in a `/proc/PID/stat` line (the field after the `(comm)` and the state).
fn parent_of(stat: &str) -> Option<u32> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parent_of;

    #[test]
    fn reads_the_parent_pid_even_with_spaces_in_the_name() {
        assert_eq!(
            parent_of("4242 (nginx: worker) S 4240 4240 1 0"),
            Some(4240)
        );
        assert_eq!(parent_of("garbage"), None);
    }
}
