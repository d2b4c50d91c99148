//! Helpers for end-to-end tests: find the real `pipelock` binary, start it, wait until it
//! listens, talk to it with real clients, and stop it.
//!
//! Every wait is bounded. Every helper fails with a message that says what was expected and
//! what happened, including the process's own output.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub mod bench;
pub mod dns_upstream;
pub mod mcp;
pub mod upstream;
pub mod ws_client;
pub mod ws_upstream;

/// How long a started pipelock may take to report that it listens.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The `pipelock` binary under test: `$PIPELOCK_BIN` (set by `cargo xtask test`), else the
/// binary next to this test's build directory. Fails loudly when neither exists.
pub fn pipelock_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("PIPELOCK_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "PIPELOCK_BIN={} does not exist",
            path.display()
        );
        return path;
    }
    // target/<profile>/deps/<test-binary> → target/<profile>/pipelock
    let exe = std::env::current_exe().unwrap_or_default();
    let candidate = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("pipelock"))
        .unwrap_or_default();
    assert!(
        candidate.is_file(),
        "the pipelock binary was not found at {}: build it first (`cargo build -p pipelock`), or run the tests with `cargo xtask test`, or set PIPELOCK_BIN",
        candidate.display()
    );
    candidate
}

/// A `Command` for the pipelock binary with a clean log filter.
pub fn pipelock_command() -> Command {
    let mut command = Command::new(pipelock_bin());
    command.env_remove("PIPELOCK_LOG");
    command
}

/// Runs pipelock to completion with `args`, feeding `stdin`, bounded by `timeout`.
pub fn run_pipelock(args: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Result<Output> {
    let mut command = pipelock_command();
    command.args(args);
    run_with_timeout(command, stdin, timeout)
}

/// Runs any command to completion, feeding `stdin`, killing it after `timeout`.
pub fn run_with_timeout(
    mut command: Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output> {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().context("no stdin pipe")?;
        pipe.write_all(input).context("cannot write stdin")?;
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_timeout(&mut child, timeout)?;
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        bail!("{command:?} did not finish within {timeout:?}");
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut out);
        }
        out
    })
}

/// Waits for `child` to exit, for at most `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("cannot wait for the child")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A running `pipelock run`, killed on drop.
pub struct Pipelock {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The main listener's bound address.
    pub addr: SocketAddr,
}

impl Pipelock {
    /// Starts `pipelock run ARGS` and waits until it logs that its main listener listens.
    /// The config's logging must go to stdout (the default).
    pub fn start(args: &[&str]) -> Result<Self> {
        let mut command = pipelock_command();
        command.arg("run").args(args);
        Self::spawn(command)
    }

    /// Starts `pipelock run` on a free loopback port with `yaml` as its config file, written
    /// into a fresh temporary directory that is returned with it (the config lives as long as
    /// the directory).
    pub fn start_with_yaml(yaml: &str) -> Result<(Self, tempfile::TempDir)> {
        let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
        let path = write_file(dir.path(), "pipelock.yaml", yaml)?;
        let path = path.to_str().context("the temporary path is not UTF-8")?;
        let pipelock = Self::start(&["--config", path, "--listen", "127.0.0.1:0"])?;
        Ok((pipelock, dir))
    }

    /// Starts the given command (a `pipelock run …`) and waits for the main listener.
    pub fn spawn(mut command: Command) -> Result<Self> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {command:?}"))?;
        let lines = collect_lines(child.stdout.take());
        let stderr = collect_lines(child.stderr.take());
        let mut pipelock = Self {
            child,
            lines,
            stderr,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        pipelock.addr = pipelock.wait_for_listener("main", START_TIMEOUT)?;
        Ok(pipelock)
    }

    /// Waits until a `listening` log line for `listener` appears and returns its address.
    pub fn wait_for_listener(&mut self, listener: &str, timeout: Duration) -> Result<SocketAddr> {
        let deadline = Instant::now() + timeout;
        loop {
            for line in self.stdout_lines() {
                if let Some(addr) = listening_addr(&line, listener) {
                    return Ok(addr);
                }
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "pipelock exited with {status} before listening\nstdout:\n{}\nstderr:\n{}",
                    self.stdout_lines().join("\n"),
                    self.stderr_lines().join("\n")
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "pipelock did not report listener {listener:?} within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout_lines().join("\n"),
                    self.stderr_lines().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the process printed on stdout so far, a line each.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Everything the process printed on stderr so far, a line each.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) -> Result<()> {
        let pid = i32::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: kill(2) with a pid we own and a valid signal number has no memory effects.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc != 0 {
            bail!(
                "kill({pid}, {signal}) failed: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Waits for the process to exit, for at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        match wait_timeout(&mut self.child, timeout)? {
            Some(status) => {
                // Give the reader threads a moment to collect the last lines.
                thread::sleep(Duration::from_millis(50));
                Ok(status)
            }
            None => bail!(
                "pipelock did not exit within {timeout:?}\nstdout:\n{}",
                self.stdout_lines().join("\n")
            ),
        }
    }

    /// `http://ADDR` of the main listener.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Pipelock {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A server process for a test (an MCP server, say): its stdout and stderr lines are
/// collected, and it is killed when dropped.
pub struct ServerProcess {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Spawns `command` (`what` names it in errors) and waits at most `timeout` for a line
    /// containing `ready` on its stdout or stderr.
    ///
    /// # Errors
    /// It did not start, exited first (with its output in the error), or was not ready in time.
    pub fn spawn(mut command: Command, what: &str, ready: &str, timeout: Duration) -> Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        let mut server = Self {
            stdout: collect_lines(child.stdout.take()),
            stderr: collect_lines(child.stderr.take()),
            child,
        };
        let deadline = Instant::now() + timeout;
        while !server
            .stdout()
            .iter()
            .chain(server.stderr().iter())
            .any(|l| l.contains(ready))
        {
            if let Some(status) = server.child.try_wait()? {
                bail!("{what} exited with {status}: {:?}", server.stderr());
            }
            if Instant::now() > deadline {
                bail!("{what} was not ready within {timeout:?}");
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// Its stdout lines so far.
    #[must_use]
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Its stderr lines so far.
    #[must_use]
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Collects the lines of `pipe` in the background.
pub fn collect_lines<R: Read + Send + 'static>(pipe: Option<R>) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    if let Some(pipe) = pipe {
        let sink = Arc::clone(&lines);
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Ok(mut lines) = sink.lock() {
                    lines.push(line);
                }
            }
        });
    }
    lines
}

/// Extracts the address from a `listening` log line of `listener`, in json or text format.
pub fn listening_addr(line: &str, listener: &str) -> Option<SocketAddr> {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(line) {
        if value.get("message")?.as_str()? == "listening"
            && value.get("listener")?.as_str()? == listener
        {
            return value.get("addr")?.as_str()?.parse().ok();
        }
        return None;
    }
    if line.contains(" listening ") && line.contains(&format!("listener=\"{listener}\"")) {
        let addr = line.split("addr=").nth(1)?.split_whitespace().next()?;
        return addr.parse().ok();
    }
    None
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a probe socket")?;
    Ok(listener.local_addr()?.port())
}

/// Runs `curl ARGS` (bounded to 10 s by curl itself) and returns its output.
pub fn curl(args: &[&str]) -> Result<Output> {
    let mut command = Command::new("curl");
    command
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(args);
    run_with_timeout(command, None, Duration::from_secs(15))
}

/// `curl` that returns (status code, body) of a URL.
pub fn curl_status_body(extra: &[&str], url: &str) -> Result<(u16, String)> {
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["--write-out", "\n%{http_code}", url]);
    let output = curl(&args)?;
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let (body, code) = text
        .rsplit_once('\n')
        .with_context(|| format!("unexpected curl output {text:?}"))?;
    let code = code.trim().parse().with_context(|| {
        format!(
            "bad status {code:?}; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    Ok((code, body.to_string()))
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write_file(dir: &std::path::Path, name: &str, contents: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Stdout and stderr of an output as text, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
