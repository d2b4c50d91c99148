//! The processes the benchmark starts: `pipelock run` with the MCP reverse proxy, and the
//! reference server `@modelcontextprotocol/server-everything` in Streamable HTTP mode.
//!
//! Each is killed when its guard is dropped (the run ended, failed or not), and asks the
//! kernel to kill it when the benchmark dies first (`PR_SET_PDEATHSIG`), so a benchmark
//! stopped by a signal leaves nothing running. Both listen on 127.0.0.1 ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use pipelock_e2e::{free_port, Pipelock, ServerProcess};

use crate::http::{self, IO_TIMEOUT};

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The config Pipelock runs with: the MCP reverse proxy to `upstream`, and every MCP scanner
/// a deployment runs, all blocking (DLP with its defaults).
pub fn pipelock_config(upstream: &str) -> String {
    format!(
        r#"version: 1
mode: balanced
mcp_reverse_proxy:
  enabled: true
  listen: "127.0.0.1:0"
  upstream: "{upstream}"
# dlp: the defaults (built-in patterns, Pipelock's own environment, seed phrases)
response_scanning:
  enabled: true
  action: block
mcp_input_scanning:
  enabled: true
  action: block
  on_parse_error: block
mcp_tool_scanning:
  enabled: true
  action: block
  detect_drift: true
mcp_tool_policy:
  enabled: true
  action: block
  rules:
    - name: "no-recursive-delete"
      tool_pattern: "(?i)^(bash|shell|exec|run_command)$"
      arg_pattern: "rm\\s+-[a-z]*r[a-z]*f"
      action: block
    - name: "no-mail-to-webmail"
      tool_pattern: "(?i)^send_(email|mail)$"
      arg_key: "to"
      arg_pattern: "(?i)@(gmail|outlook|proton)\\."
      action: block
mcp_session_binding:
  enabled: true
  unknown_tool_action: block
  no_baseline_action: block
tool_chain_detection:
  enabled: true
  action: block
"#
    )
}

/// Asks the kernel to SIGKILL the child when this process (the thread that spawned it: the
/// main thread, which lives until the end) dies.
fn dies_with_us(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: only prctl and getppid (async-signal-safe) run between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(std::io::Error::other("the benchmark exited"));
            }
            Ok(())
        })
    }
}

/// A `pipelock run` with the MCP reverse proxy; killed on drop.
pub struct PipelockMcp {
    process: Pipelock,
    /// The MCP listener.
    pub mcp: SocketAddr,
    _dir: tempfile::TempDir,
}

impl PipelockMcp {
    /// Starts `binary run --config … --listen 127.0.0.1:0` with `config` and waits for its
    /// MCP listener.
    pub fn start(binary: &Path, config: &str) -> Result<Self> {
        let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
        let path = dir.path().join("pipelock.yaml");
        std::fs::write(&path, config)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let mut command = Command::new(binary);
        dies_with_us(&mut command)
            .env_remove("PIPELOCK_LOG")
            .env_remove("MCP_API_TOKEN")
            .arg("run")
            .arg("--config")
            .arg(&path)
            .args(["--listen", "127.0.0.1:0"]);
        let mut process = Pipelock::spawn(command)
            .with_context(|| format!("cannot start {} run", binary.display()))?;
        let mcp = process.wait_for_listener("mcp", START_TIMEOUT)?;
        Ok(Self {
            process,
            mcp,
            _dir: dir,
        })
    }

    /// The MCP endpoint's URL.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.mcp)
    }

    /// What Pipelock counted and logged so far.
    pub fn observed(&self) -> Result<Observed> {
        let text = get_metrics(self.process.addr)?;
        let mut observed = Observed::default();
        let (mut sums, mut counts) = (Vec::new(), Vec::new());
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Some((name, labels)) = series.split_once('{') else {
                continue;
            };
            let label = |key: &str| {
                labels
                    .split(&format!("{key}=\""))
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or_default()
                    .to_string()
            };
            let parse = || {
                value
                    .parse::<f64>()
                    .with_context(|| format!("bad metrics line {line:?}"))
            };
            match name {
                "pipelock_mcp_messages_total" => {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let count = parse()? as u64;
                    let verdict = label("verdict");
                    match observed.verdicts.iter_mut().find(|(v, _)| *v == verdict) {
                        Some((_, total)) => *total += count,
                        None => observed.verdicts.push((verdict, count)),
                    }
                }
                "pipelock_scan_duration_seconds_sum" => sums.push((label("direction"), parse()?)),
                "pipelock_scan_duration_seconds_count" => {
                    counts.push((label("direction"), parse()?));
                }
                _ => {}
            }
        }
        observed.verdicts.sort();
        for (direction, sum) in sums {
            if let Some((_, count)) = counts.iter().find(|(d, _)| *d == direction) {
                if *count > 0.0 {
                    observed.scan_mean_us.push((direction, sum / count * 1e6));
                }
            }
        }
        observed.scan_mean_us.sort_by(|a, b| a.0.cmp(&b.0));
        let lines = self.process.stdout_lines();
        observed.log_lines = lines.len();
        observed.warnings = lines
            .into_iter()
            .filter(|line| {
                line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\"")
            })
            .collect();
        Ok(observed)
    }
}

/// What a Pipelock counted (its `/metrics`) and logged.
#[derive(Debug, Default)]
pub struct Observed {
    /// `pipelock_mcp_messages_total` summed by verdict.
    pub verdicts: Vec<(String, u64)>,
    /// The mean of `pipelock_scan_duration_seconds` by direction (`request` for the client's
    /// messages, `response` for the server's), in µs.
    pub scan_mean_us: Vec<(String, f64)>,
    /// How many lines it logged.
    pub log_lines: usize,
    /// Its log lines at WARN or above (JSON logs on stdout).
    pub warnings: Vec<String>,
}

/// The text of `GET /metrics` on `addr`, on a connection of its own.
fn get_metrics(addr: SocketAddr) -> Result<String> {
    use std::io::{BufReader, Write};
    let stream = std::net::TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    write!(
        writer,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let head = http::read_head(&mut reader, &mut line)?.context("no answer from /metrics")?;
    ensure!(head.status()? == 200, "/metrics answered {}", head.start);
    let mut body = Vec::new();
    http::read_body(&mut reader, http::framing(&head, false)?, &mut body)?;
    String::from_utf8(body).context("/metrics is not UTF-8")
}

/// server-everything in Streamable HTTP mode (`node dist/index.js streamableHttp`) on a free
/// port; killed on drop.
pub struct Everything {
    _server: ServerProcess,
    port: u16,
    pub version: String,
}

impl Everything {
    pub fn start() -> Result<Self> {
        let package = mcp_packages().join("node_modules/@modelcontextprotocol/server-everything");
        let entry = package.join("dist/index.js");
        ensure!(
            entry.is_file(),
            "{} is missing: run `cargo xtask setup` (it installs the MCP test packages with npm ci)",
            entry.display()
        );
        let version = std::fs::read_to_string(package.join("package.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|json| json["version"].as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown".to_string());
        let port = free_port()?;
        let mut command = Command::new("node");
        dies_with_us(&mut command)
            .arg(&entry)
            .arg("streamableHttp")
            .env("PORT", port.to_string());
        let server = ServerProcess::spawn(
            command,
            "server-everything (node)",
            "listening on port",
            START_TIMEOUT,
        )?;
        Ok(Self {
            _server: server,
            port,
            version,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

/// `tests/mcp`, where `cargo xtask setup` installs the MCP packages.
fn mcp_packages() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mcp")
}

/// `node --version`, for the report.
pub fn node_version() -> String {
    Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}
