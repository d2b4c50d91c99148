//! The second half of `cargo xtask bench-intercept`: the latency a small HTTP request pays
//! through the transparent path against the explicit forward proxy (issue #5, target: the
//! transparent path within 10% of the forward-proxy path).
//!
//! A real `pipelock run` (outside the cgroup) attaches its programs to the benchmark's cgroup
//! from `intercept.cgroups`; an origin in the benchmark process, on 127.0.0.2 and outside the
//! cgroup, answers every `GET /page` with the same small `text/html` page on keep-alive
//! connections. A client copy of the benchmark times N sequential GETs on one keep-alive
//! connection per case and round:
//! - **direct**: a client outside the cgroup, to the origin;
//! - **forward proxy**: the client in the cgroup, absolute-form requests to Pipelock's main
//!   listener (its connect is redirected too, and the transparent listener hands connections
//!   addressed to Pipelock's own listeners to that listener's routes in-process);
//! - **transparent**: the client in the cgroup, origin-form requests to the origin's address,
//!   which the kernel redirects to Pipelock's transparent listener.
//!
//! Each response is read whole (status line, headers, `Content-Length`, body) and must be the
//! origin's page byte for byte, or the run fails. Every socket has a read and write timeout,
//! and every loop is bounded by a count or a size.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use pipelock_e2e::{free_port, run_with_timeout, Pipelock};

/// Read and write timeout of every socket: a request that takes this long is an error.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response head (status line and headers) a client accepts, and request head the
/// origin accepts.
const MAX_HEAD: usize = 16 * 1024;
/// Most header lines in one head.
const MAX_HEADER_LINES: usize = 100;
/// How long an idle origin connection (a pooled one of Pipelock's) is kept open.
const ORIGIN_IDLE: Duration = Duration::from_secs(120);
/// The path the origin serves.
pub const PATH: &str = "/page";

/// The origin's page: about 1 KiB of clean HTML, the same on every request.
pub fn page() -> Vec<u8> {
    const PARAGRAPH: &str = "<p>The harbour was quiet in the early morning. Fishing boats \
        rocked gently at their moorings while gulls circled above the market, where traders \
        were setting out crates of apples, bread and cheese for the day.</p>\n";
    let mut page =
        String::from("<!doctype html>\n<html><head><title>Benchmark page</title></head><body>\n");
    while page.len() < 900 {
        page.push_str(PARAGRAPH);
    }
    page.push_str("</body></html>\n");
    page.into_bytes()
}

/// The origin: a keep-alive HTTP/1.1 server on one address, a thread per connection,
/// answering `GET /page` with [`page`] and anything else with 404.
pub struct Origin {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Origin {
    pub fn start(addr: &str) -> Result<Self> {
        let listener = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
        let addr = listener.local_addr()?;
        let body = page();
        let mut ok = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        ok.extend_from_slice(&body);
        let ok: Arc<[u8]> = ok.into();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let ok = Arc::clone(&ok);
                        std::thread::spawn(move || {
                            // A connection ends when the peer leaves, times out or misbehaves.
                            let _ = serve_origin_connection(stream, &ok);
                        });
                    }
                }
            })
        };
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers the requests of one connection until the peer closes it or stays idle for
/// [`ORIGIN_IDLE`]. Requests with a body are refused (GET only, nothing to drain).
fn serve_origin_connection(stream: TcpStream, ok: &[u8]) -> Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(ORIGIN_IDLE))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        let Some(head) = read_head(&mut reader, &mut line)? else {
            return Ok(());
        };
        let request_line = head.first().map(String::as_str).unwrap_or_default();
        let mut parts = request_line.split(' ');
        let (method, target) = (parts.next(), parts.next());
        let has_body = head.iter().skip(1).any(|header| {
            header_value(header, "content-length").is_some_and(|v| v != "0")
                || header_value(header, "transfer-encoding").is_some()
        });
        if method == Some("GET") && target == Some(PATH) && !has_body {
            writer.write_all(ok)?;
        } else {
            writer.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        }
    }
}

/// Reads one message head (start line and header lines, without line ends) of at most
/// [`MAX_HEAD`] bytes and [`MAX_HEADER_LINES`] headers; `None` when the peer closed cleanly
/// before its first byte.
fn read_head(reader: &mut impl BufRead, line: &mut Vec<u8>) -> Result<Option<Vec<String>>> {
    let mut head = Vec::new();
    let mut budget = MAX_HEAD;
    loop {
        line.clear();
        let limit = u64::try_from(budget).unwrap_or(0);
        let read = reader.by_ref().take(limit).read_until(b'\n', line)?;
        if read == 0 && head.is_empty() {
            return Ok(None);
        }
        ensure!(
            line.ends_with(b"\n"),
            "message head cut short or over {MAX_HEAD} bytes"
        );
        budget -= read;
        let text = std::str::from_utf8(line)
            .context("message head is not UTF-8")?
            .trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            ensure!(!head.is_empty(), "empty start line");
            return Ok(Some(head));
        }
        ensure!(
            head.len() <= MAX_HEADER_LINES,
            "over {MAX_HEADER_LINES} header lines"
        );
        head.push(text.to_string());
    }
}

/// The value of `header` ("Name: value") when its name is `name` (lowercase).
fn header_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    let (key, value) = header.split_once(':')?;
    key.trim()
        .eq_ignore_ascii_case(name)
        .then_some(value.trim())
}

/// One client's keep-alive connection, sending GETs and checking every answer.
pub struct HttpClient {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    request: Vec<u8>,
    expected: Vec<u8>,
    line: Vec<u8>,
    body: Vec<u8>,
}

impl HttpClient {
    /// Connects to `addr`; each request is `GET target` with `Host: host`.
    pub fn connect(addr: SocketAddr, target: &str, host: &str) -> Result<Self> {
        ensure!(
            addr.ip().is_loopback(),
            "{addr} is not a loopback address: the benchmark stays on loopback"
        );
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let writer = stream.try_clone()?;
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: intercept-bench\r\nAccept: text/html\r\n\r\n"
        )
        .into_bytes();
        Ok(Self {
            writer,
            reader: BufReader::with_capacity(16 * 1024, stream),
            request,
            expected: page(),
            line: Vec::new(),
            body: Vec::new(),
        })
    }

    /// Sends one request and reads its response whole: it must be a 200 with the origin's
    /// page as its `Content-Length` body, and leave the connection open.
    pub fn get(&mut self) -> Result<()> {
        self.writer.write_all(&self.request)?;
        let head = read_head(&mut self.reader, &mut self.line)?
            .context("the server closed the connection")?;
        let status = head.first().map(String::as_str).unwrap_or_default();
        let code = status.split(' ').nth(1);
        ensure!(
            status.starts_with("HTTP/1.1 ") && code == Some("200"),
            "expected HTTP/1.1 200, got {status:?}"
        );
        let mut length = None;
        for header in head.iter().skip(1) {
            if let Some(value) = header_value(header, "content-length") {
                length = Some(
                    value
                        .parse::<usize>()
                        .with_context(|| format!("bad Content-Length {value:?}"))?,
                );
            }
            ensure!(
                header_value(header, "transfer-encoding").is_none(),
                "expected a Content-Length body, got {header:?}"
            );
            ensure!(
                !header_value(header, "connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close")),
                "the server closes the keep-alive connection"
            );
        }
        let length = length.context("the response has no Content-Length")?;
        ensure!(
            length == self.expected.len(),
            "expected a body of {} bytes, Content-Length says {length}",
            self.expected.len()
        );
        self.body.resize(length, 0);
        self.reader
            .read_exact(&mut self.body)
            .context("the body was cut short")?;
        ensure!(
            self.body == self.expected,
            "the body differs from the origin's page"
        );
        Ok(())
    }
}

/// `warmup` untimed requests then `count` timed ones on one new connection: the nanoseconds
/// of each timed request (write to last body byte).
pub fn timed_gets(
    addr: SocketAddr,
    target: &str,
    host: &str,
    warmup: u32,
    count: u32,
) -> Result<Vec<u64>> {
    let mut client = HttpClient::connect(addr, target, host)?;
    for _ in 0..warmup {
        client.get().context("warm-up request")?;
    }
    let mut samples = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for _ in 0..count {
        let started = Instant::now();
        client.get()?;
        samples.push(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    Ok(samples)
}

/// A `pipelock run` that attached its programs to the benchmark's cgroup: detached with
/// `pipelock detach` and stopped on drop, failed run or not.
pub struct PipelockRun {
    process: Option<Pipelock>,
    binary: PathBuf,
    cgroup: PathBuf,
    pin_root: PathBuf,
    pub transparent: SocketAddr,
    _dir: tempfile::TempDir,
}

impl PipelockRun {
    /// The config of the benchmark: forward proxy on, every scanner that applies on
    /// and blocking, interception of `cgroup`.
    pub fn config(cgroup: &Path, pin_root: &Path) -> Result<String> {
        let transparent_port = free_port()?;
        let dns_port = free_port()?;
        // Nothing in the benchmark resolves names: the resolver only needs to be an address.
        let dns_upstream = free_port()?;
        Ok(format!(
            "version: 1
forward_proxy:
  enabled: true
ssrf:
  ip_allowlist: [\"127.0.0.0/8\"]
request_body_scanning:
  enabled: true
  action: block
  scan_headers: true
  header_mode: all
response_scanning:
  enabled: true
  action: block
fetch_proxy:
  monitoring:
    max_requests_per_minute: 1000000000
intercept:
  cgroups: [\"{}\"]
  transparent_port: {transparent_port}
  dns_port: {dns_port}
  dns_upstream: \"127.0.0.1:{dns_upstream}\"
  pin_path: \"{}\"
",
            cgroup.display(),
            pin_root.display()
        ))
    }

    /// Starts `binary run --config … --listen 127.0.0.1:0` and waits until its main and
    /// transparent listeners listen (the programs are attached before either does).
    pub fn start(binary: &Path, cgroup: &Path, pin_root: &Path) -> Result<Self> {
        let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
        let config = dir.path().join("pipelock.yaml");
        std::fs::write(&config, Self::config(cgroup, pin_root)?)
            .with_context(|| format!("cannot write {}", config.display()))?;
        let mut command = Command::new(binary);
        crate::unblocked(&mut command)
            .env_remove("PIPELOCK_LOG")
            .arg("run")
            .arg("--config")
            .arg(&config)
            .args(["--listen", "127.0.0.1:0"]);
        let mut run = Self {
            process: None,
            binary: binary.to_path_buf(),
            cgroup: cgroup.to_path_buf(),
            pin_root: pin_root.to_path_buf(),
            transparent: SocketAddr::from(([0, 0, 0, 0], 0)),
            _dir: dir,
        };
        // From here on, a failure still detaches (the process may have attached and died).
        let process = run.process.insert(
            Pipelock::spawn(command)
                .with_context(|| format!("cannot start {} run", binary.display()))?,
        );
        run.transparent = process.wait_for_listener("transparent", Duration::from_secs(10))?;
        Ok(run)
    }

    /// The main listener's address.
    pub fn addr(&self) -> Result<SocketAddr> {
        Ok(self
            .process
            .as_ref()
            .context("pipelock is not running")?
            .addr)
    }

    /// The value of the `pipelock_proxy_requests_total` series with `kind` and `verdict`
    /// labels, summed over the others, from the main listener's `/metrics`.
    pub fn requests(&self, kind: &str, verdict: &str) -> Result<u64> {
        let addr = self.addr()?;
        let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut text = String::new();
        stream
            .take(4 * 1024 * 1024)
            .read_to_string(&mut text)
            .context("cannot read /metrics")?;
        let kind = format!("kind=\"{kind}\"");
        let verdict = format!("verdict=\"{verdict}\"");
        let mut total = 0.0;
        for line in text.lines() {
            if line.starts_with("pipelock_proxy_requests_total{")
                && line.contains(&kind)
                && line.contains(&verdict)
            {
                let value = line.rsplit(' ').next().unwrap_or_default();
                total += value
                    .parse::<f64>()
                    .with_context(|| format!("bad metrics line {line:?}"))?;
            }
        }
        Ok(total as u64)
    }
}

impl Drop for PipelockRun {
    fn drop(&mut self) {
        let mut detach = Command::new(&self.binary);
        detach
            .env_remove("PIPELOCK_LOG")
            .arg("detach")
            .arg("--cgroup")
            .arg(&self.cgroup)
            .arg("--pin-path")
            .arg(&self.pin_root);
        match run_with_timeout(detach, None, Duration::from_secs(10)) {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "intercept-bench: pipelock detach failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(error) => eprintln!("intercept-bench: pipelock detach: {error:#}"),
        }
        if let Some(mut process) = self.process.take() {
            if process.signal(libc::SIGTERM).is_ok() && process.wait_exit(IO_TIMEOUT).is_err() {
                let lines = process.stdout_lines();
                let last = lines
                    .get(lines.len().saturating_sub(5)..)
                    .unwrap_or_default();
                eprintln!(
                    "intercept-bench: pipelock did not stop on SIGTERM; killing it. Its last lines:\n{}",
                    last.join("\n")
                );
            }
            // Dropping kills it if it still runs.
        }
    }
}
