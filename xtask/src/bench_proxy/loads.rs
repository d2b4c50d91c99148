//! The load generators and what they report: wrk for request rate and latency, curl for the
//! large download, and the Python scripts in `xtask/bench/` for idle connections and
//! intercepted HTTPS. Every one is bounded in time and talks only to 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::processes::{output_within, spawn, stdout_within, wait_within};

/// Where the wrk and Python scripts live.
fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("bench")
        .join(name)
}

/// Debian's interpreter, so the scripts run with what `apt` installed.
const PYTHON: &str = "/usr/bin/python3";

/// A wrk run: `threads` threads, `connections` connections, for `seconds`.
pub struct Wrk {
    pub threads: u32,
    pub connections: u32,
    pub seconds: u32,
}

/// What wrk reports.
#[derive(Debug, PartialEq)]
pub struct WrkReport {
    pub requests_per_second: f64,
    pub p50_us: f64,
    /// Responses that were not 2xx/3xx, and socket errors (connect, read, write, timeout).
    pub bad_responses: u64,
    pub socket_errors: u64,
}

impl Wrk {
    /// Loads `origin_url` directly, or through the forward proxy on `proxy_port`.
    pub fn run(&self, origin_url: &str, proxy_port: Option<u16>) -> Result<WrkReport> {
        let mut command = Command::new("wrk");
        command
            .arg(format!("-t{}", self.threads))
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", self.seconds))
            .args(["--timeout", "5s", "--latency"]);
        match proxy_port {
            Some(port) => {
                command
                    .arg("-s")
                    .arg(script("absolute_form.lua"))
                    .env("BENCH_TARGET", origin_url)
                    .arg(format!("http://127.0.0.1:{port}/"));
            }
            None => {
                command.arg(origin_url);
            }
        }
        eprintln!("xtask: running {command:?}");
        let limit = Duration::from_secs(u64::from(self.seconds) + 30);
        let text = stdout_within(&mut command, limit)?;
        parse_wrk(&text).with_context(|| format!("cannot read wrk's report:\n{text}"))
    }
}

fn parse_wrk(text: &str) -> Result<WrkReport> {
    let mut report = WrkReport {
        requests_per_second: f64::NAN,
        p50_us: f64::NAN,
        bad_responses: 0,
        socket_errors: 0,
    };
    for line in text.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("Requests/sec:") {
            report.requests_per_second = value.trim().parse()?;
        } else if let Some(value) = line.strip_prefix("50%") {
            report.p50_us = duration_us(value.trim())?;
        } else if let Some(value) = line.strip_prefix("Non-2xx or 3xx responses:") {
            report.bad_responses = value.trim().parse()?;
        } else if let Some(value) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            report.socket_errors = value
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
        }
    }
    if report.requests_per_second.is_nan() || report.p50_us.is_nan() {
        bail!("no Requests/sec or 50% line");
    }
    Ok(report)
}

/// A wrk duration (`812.00us`, `1.23ms`, `2.01s`) in microseconds.
fn duration_us(text: &str) -> Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        _ => bail!("unknown unit in {text:?}"),
    };
    Ok(number.parse::<f64>()? * scale)
}

/// One download: throughput and when the first byte of the body arrived.
#[derive(Debug, Clone, Copy)]
pub struct Download {
    /// 10^6 bytes per second over curl's total time.
    pub mb_per_s: f64,
    pub first_byte_s: f64,
}

/// Downloads `url` (directly or through the proxy on `proxy_port`) to /dev/null with curl,
/// checking the status and size.
pub fn download(url: &str, proxy_port: Option<u16>, expected_bytes: u64) -> Result<Download> {
    let mut command = Command::new("curl");
    command.args(["-sS", "--max-time", "60", "-o", "/dev/null"]);
    command.args([
        "-w",
        "%{http_code} %{size_download} %{time_total} %{time_starttransfer}",
    ]);
    match proxy_port {
        Some(port) => command.args(["--proxy", &format!("http://127.0.0.1:{port}")]),
        None => command.arg("--noproxy").arg("*"),
    };
    command.arg(url);
    let text = stdout_within(&mut command, Duration::from_secs(70))?;
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [status, size, total, first_byte] = fields[..] else {
        bail!("unexpected curl -w output {text:?}");
    };
    if status != "200" || size.parse::<u64>()? != expected_bytes {
        bail!("curl got status {status} and {size} bytes from {url}, expected 200 and {expected_bytes}");
    }
    #[allow(clippy::cast_precision_loss)]
    Ok(Download {
        mb_per_s: expected_bytes as f64 / total.parse::<f64>()? / 1e6,
        first_byte_s: first_byte.parse()?,
    })
}

/// Fetches `url` through the proxy on `proxy_port` once and returns the body.
pub fn fetch_through(url: &str, proxy_port: u16) -> Result<Vec<u8>> {
    let mut command = Command::new("curl");
    command
        .args(["-sS", "--fail", "--max-time", "10", "--proxy"])
        .arg(format!("http://127.0.0.1:{proxy_port}"))
        .arg(url);
    let output = output_within(&mut command, Duration::from_secs(15))?;
    if !output.status.success() {
        bail!(
            "curl through 127.0.0.1:{proxy_port} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output.stdout)
}

/// Opens `count` keep-alive connections to the proxy on `proxy_port`, one request each, and
/// while they sit idle calls `measure`; returns how many the proxy kept open and what
/// `measure` returned.
pub fn with_idle_connections<T>(
    proxy_port: u16,
    origin_url: &str,
    count: u32,
    measure: impl FnOnce() -> Result<T>,
) -> Result<(u32, T)> {
    let mut command = Command::new(PYTHON);
    command
        .arg(script("idle_connections.py"))
        .arg(proxy_port.to_string())
        .arg(origin_url)
        .arg(count.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    eprintln!("xtask: running {command:?}");
    let mut child = spawn(&mut command)?;
    let line = child.stdout.take().map(|stdout| {
        let mut line = String::new();
        // The script's own deadline (30 s) bounds this read.
        let _ = BufReader::new(stdout).read_line(&mut line);
        line
    });
    let open = line
        .as_deref()
        .and_then(|line| line.trim().strip_prefix("open "))
        .and_then(|n| n.parse::<u32>().ok());
    let measured = open.map(|_| measure());
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"done\n");
    }
    let status = wait_within(&mut child, Duration::from_secs(30))?;
    match (open, measured) {
        (Some(open), Some(measured)) if status.success() => Ok((open, measured?)),
        _ => bail!("idle_connections.py failed ({status}); output {line:?}"),
    }
}

/// The p50 (µs) of sequential HTTPS requests, each on a new connection: direct, and through
/// the proxy on `proxy_port` (which must intercept with `proxy_ca`). Err carries the script's
/// reason (for instance "not intercepted: …").
pub fn https_p50_us(
    origin_port: u16,
    origin_ca: &Path,
    proxy_port: u16,
    proxy_ca: &Path,
    count: u32,
) -> Result<(f64, f64)> {
    let mut command = Command::new(PYTHON);
    command
        .arg(script("https_latency.py"))
        .arg(origin_port.to_string())
        .arg("/small")
        .arg(origin_ca)
        .arg(proxy_port.to_string())
        .arg(proxy_ca)
        .arg(count.to_string());
    let output = output_within(&mut command, Duration::from_secs(90))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "{}",
            stderr
                .trim()
                .lines()
                .last()
                .unwrap_or("https_latency.py failed")
        );
    }
    let value = |key: &str| -> Result<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(key))
            .context(format!("https_latency.py printed no {key}: {text}"))?
            .trim()
            .parse()
            .context("not a number")
    };
    Ok((value("direct_p50_us")?, value("proxied_p50_us")?))
}

#[cfg(test)]
mod tests {
    use super::{duration_us, parse_wrk, WrkReport};

    #[test]
    fn reads_a_wrk_report() {
        let text = "Running 10s test @ http://127.0.0.1:8080/\n  2 threads and 32 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   812.00us  100.00us   5.00ms   90.00%\n  Latency Distribution\n     50%  780.00us\n     75%    1.01ms\n     90%    1.20ms\n     99%    2.00ms\n  400000 requests in 10.00s, 400.00MB read\n  Socket errors: connect 0, read 3, write 0, timeout 2\n  Non-2xx or 3xx responses: 7\nRequests/sec:  40000.12\nTransfer/sec:     40.00MB\n";
        assert_eq!(
            parse_wrk(text).unwrap(),
            WrkReport {
                requests_per_second: 40000.12,
                p50_us: 780.0,
                bad_responses: 7,
                socket_errors: 5,
            }
        );
        assert!(parse_wrk("nothing").is_err());
    }

    #[test]
    fn reads_wrk_durations() {
        assert_eq!(duration_us("1.50ms").unwrap(), 1500.0);
        assert_eq!(duration_us("2.00s").unwrap(), 2e6);
        assert!(duration_us("3.0").is_err());
    }
}
