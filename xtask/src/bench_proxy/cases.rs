//! The cases of a run, each measuring one of the targets on every contender it
//! applies to and judging Pipelock against the target.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};

use super::loads::{self, Wrk};
use super::processes::{free_port, stdout_within, tree_rss_kib};
use super::report::{Met, Row};
use super::servers::{self, Fixtures, LARGE_BYTES};

/// Request rate: moderate concurrency.
const RATE: Wrk = Wrk {
    threads: 2,
    connections: 32,
    seconds: 10,
};
/// Latency: one connection, one request at a time.
const LATENCY: Wrk = Wrk {
    threads: 1,
    connections: 1,
    seconds: 8,
};
const DOWNLOAD_RUNS: usize = 3;
const IDLE_CONNECTIONS: u32 = 1000;
const HTTPS_REQUESTS: u32 = 200;

const RATE_TARGET_ADDED_US: f64 = 150.0;
const DOWNLOAD_TARGET_MB_S: f64 = 200.0;
const IDLE_TARGET_MIB: f64 = 64.0;
const INTERCEPT_TARGET_ADDED_US: f64 = 2000.0;

/// A proxy under test.
pub struct Contender {
    pub name: &'static str,
    pub port: u16,
    pub pid: u32,
}

impl Contender {
    pub fn new(name: &'static str, port: u16, pid: u32) -> Self {
        Self { name, port, pid }
    }
}

/// What the cases share: the running servers and their fixtures.
pub struct Run {
    pub dir: PathBuf,
    pub binary: PathBuf,
    pub origin_port: u16,
    pub origin_tls_port: u16,
    pub fixtures: Fixtures,
    pub pipelock: Contender,
    pub tinyproxy: Contender,
    pub squid: Contender,
}

impl Run {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.origin_port)
    }

    fn proxies(&self) -> [&Contender; 3] {
        [&self.pipelock, &self.tinyproxy, &self.squid]
    }

    /// Each proxy must pass the small page unchanged, or nothing it is timed on means much.
    pub fn check_every_proxy_passes_the_small_page(&self) -> Result<()> {
        for proxy in self.proxies() {
            let body = loads::fetch_through(&self.url("/small"), proxy.port)?;
            if body != self.fixtures.small {
                bail!(
                    "{} did not pass the small page unchanged: {}",
                    proxy.name,
                    String::from_utf8_lossy(&body)
                );
            }
        }
        Ok(())
    }
}

/// One case: its name and target as the table shows them, and how to measure it.
pub struct Case {
    pub name: &'static str,
    pub target: &'static str,
    pub measure: fn(&Run) -> Result<Row>,
}

/// The cases in the order they run: idle connections first, on freshly started proxies.
pub const ALL: [Case; 6] = [
    Case {
        name: "1,000 idle keep-alive connections: resident memory",
        target: "Pipelock ≤ 64 MiB",
        measure: idle_connections,
    },
    Case {
        name: "Small response (1 KiB HTML): req/s, 2 threads × 32 connections, 10 s",
        target: "Pipelock ≥ tinyproxy and squid",
        measure: request_rate,
    },
    Case {
        name: "Small response: p50 latency, 1 connection, 8 s",
        target: "Pipelock ≤ direct + 150 µs",
        measure: latency,
    },
    Case {
        name: "100 MiB text/plain response, scanned: MB/s, median of 3 (best)",
        target: "Pipelock ≥ 200 MB/s",
        measure: download,
    },
    Case {
        name:
            "HTTPS through a CONNECT tunnel, not intercepted: p50 per request on a new connection",
        target: "— (reference for the next row)",
        measure: tunnelled_https,
    },
    Case {
        name: "Intercepted HTTPS, leaf certificate cached: p50 per request on a new connection",
        target: "Pipelock ≤ direct + 2 ms",
        measure: intercepted_https,
    },
];

fn met(yes: bool) -> Met {
    if yes {
        Met::Yes
    } else {
        Met::No
    }
}

#[allow(clippy::cast_precision_loss)]
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn idle_connections(run: &Run) -> Result<Row> {
    let url = run.url("/small");
    let mut cells = Vec::new();
    let mut pipelock = (0, f64::INFINITY);
    for proxy in run.proxies() {
        let before = tree_rss_kib(proxy.pid)?;
        let (open, during) =
            loads::with_idle_connections(proxy.port, &url, IDLE_CONNECTIONS, || {
                tree_rss_kib(proxy.pid)
            })?;
        cells.push(format!(
            "{:.1} MiB ({open} of {IDLE_CONNECTIONS} still open; {:.1} MiB before)",
            mib(during),
            mib(before)
        ));
        if proxy.name == run.pipelock.name {
            pipelock = (open, mib(during));
        }
    }
    let [p, t, s] = <[String; 3]>::try_from(cells).map_err(|_| anyhow::anyhow!("three cells"))?;
    Ok(Row {
        case: ALL[0].name.to_string(),
        pipelock: p,
        tinyproxy: t,
        squid: s,
        direct: "—".to_string(),
        target: ALL[0].target.to_string(),
        met: met(pipelock.0 == IDLE_CONNECTIONS && pipelock.1 <= IDLE_TARGET_MIB),
    })
}

/// The small page loaded with `wrk` through each proxy and directly.
fn wrk_all(run: &Run, wrk: &Wrk) -> Result<[loads::WrkReport; 4]> {
    let url = run.url("/small");
    let mut reports = Vec::new();
    for port in run
        .proxies()
        .map(|p| Some(p.port))
        .into_iter()
        .chain([None])
    {
        let report = wrk.run(&url, port)?;
        if report.bad_responses > 0 {
            bail!(
                "{} of the responses through port {port:?} were not 2xx/3xx",
                report.bad_responses
            );
        }
        reports.push(report);
    }
    <[loads::WrkReport; 4]>::try_from(reports).map_err(|_| anyhow::anyhow!("four reports"))
}

fn with_errors(value: String, report: &loads::WrkReport) -> String {
    if report.socket_errors == 0 {
        value
    } else {
        format!("{value} ({} socket errors)", report.socket_errors)
    }
}

fn request_rate(run: &Run) -> Result<Row> {
    let [p, t, s, d] = wrk_all(run, &RATE)?;
    let cell = |r: &loads::WrkReport| with_errors(format!("{:.0}", r.requests_per_second), r);
    Ok(Row {
        case: ALL[1].name.to_string(),
        pipelock: cell(&p),
        tinyproxy: cell(&t),
        squid: cell(&s),
        direct: cell(&d),
        target: ALL[1].target.to_string(),
        met: met(p.requests_per_second >= t.requests_per_second.max(s.requests_per_second)),
    })
}

fn latency(run: &Run) -> Result<Row> {
    let [p, t, s, d] = wrk_all(run, &LATENCY)?;
    let cell = |r: &loads::WrkReport| {
        with_errors(
            format!("{:.0} µs (+{:.0})", r.p50_us, r.p50_us - d.p50_us),
            r,
        )
    };
    Ok(Row {
        case: ALL[2].name.to_string(),
        pipelock: cell(&p),
        tinyproxy: cell(&t),
        squid: cell(&s),
        direct: with_errors(format!("{:.0} µs", d.p50_us), &d),
        target: ALL[2].target.to_string(),
        met: met(p.p50_us - d.p50_us <= RATE_TARGET_ADDED_US),
    })
}

fn download(run: &Run) -> Result<Row> {
    let url = run.url("/large");
    let mut cells = Vec::new();
    let mut pipelock_median = 0.0;
    for port in run
        .proxies()
        .map(|p| Some(p.port))
        .into_iter()
        .chain([None])
    {
        let mut runs = Vec::new();
        for _ in 0..DOWNLOAD_RUNS {
            runs.push(loads::download(&url, port, LARGE_BYTES)?);
        }
        runs.sort_by(|a, b| a.mb_per_s.total_cmp(&b.mb_per_s));
        let (median, best) = (runs[runs.len() / 2], runs[runs.len() - 1]);
        if port == Some(run.pipelock.port) {
            pipelock_median = median.mb_per_s;
        }
        cells.push(format!(
            "{:.0} MB/s ({:.0}); first byte at {:.0} ms",
            median.mb_per_s,
            best.mb_per_s,
            median.first_byte_s * 1e3
        ));
    }
    let [p, t, s, d] = <[String; 4]>::try_from(cells).map_err(|_| anyhow::anyhow!("four cells"))?;
    Ok(Row {
        case: ALL[3].name.to_string(),
        pipelock: p,
        tinyproxy: t,
        squid: s,
        direct: d,
        target: ALL[3].target.to_string(),
        met: met(pipelock_median >= DOWNLOAD_TARGET_MB_S),
    })
}

/// HTTPS through each proxy's opaque CONNECT tunnel (no interception anywhere): what a
/// tunnel costs, the baseline of the interception case, and a check of its machinery.
fn tunnelled_https(run: &Run) -> Result<Row> {
    let case = &ALL[4];
    let mut cells = Vec::new();
    let mut direct = Vec::new();
    for proxy in run.proxies() {
        let (direct_p50, proxied) = loads::https_p50_us(
            run.origin_tls_port,
            &run.fixtures.origin_ca,
            proxy.port,
            &run.fixtures.origin_ca,
            HTTPS_REQUESTS,
        )?;
        cells.push(format!("{proxied:.0} µs (+{:.0})", proxied - direct_p50));
        direct.push(format!("{direct_p50:.0}"));
    }
    let [p, t, s] = <[String; 3]>::try_from(cells).map_err(|_| anyhow::anyhow!("three cells"))?;
    Ok(Row {
        case: case.name.to_string(),
        pipelock: p,
        tinyproxy: t,
        squid: s,
        direct: format!("{} µs", direct.join(" / ")),
        target: case.target.to_string(),
        met: Met::NoTarget,
    })
}

/// A second Pipelock with TLS interception on (its CA from `pipelock tls init`, the origin's
/// test CA as `upstream_ca_file`). While the binary refuses that config, or does not
/// intercept, the case is "not available" rather than a failure.
fn intercepted_https(run: &Run) -> Result<Row> {
    let case = &ALL[5];
    let ca_dir = run.dir.join("pipelock-ca");
    stdout_within(
        Command::new(&run.binary)
            .args(["tls", "init", "--dir"])
            .arg(&ca_dir),
        Duration::from_secs(30),
    )?;
    let config = format!(
        "{}tls_interception:\n  enabled: true\n  ca_cert: {}\n  ca_key: {}\n  upstream_ca_file: {}\n",
        servers::pipelock_config(),
        ca_dir.join("ca.pem").display(),
        ca_dir.join("ca-key.pem").display(),
        run.fixtures.origin_ca.display(),
    );
    let port = free_port()?;
    let _interceptor = match servers::pipelock(&run.binary, &run.dir, "pipelock-tls", &config, port)
    {
        Ok(daemon) => daemon,
        Err(error) => {
            let why = format!(
                "pipelock does not start with `tls_interception.enabled: true` ({error:#})"
            );
            return Ok(Row::not_available(case.name, case.target, &why));
        }
    };
    let measured = loads::https_p50_us(
        run.origin_tls_port,
        &run.fixtures.origin_ca,
        port,
        &ca_dir.join("ca.pem"),
        HTTPS_REQUESTS,
    );
    let (direct, proxied) = match measured {
        Ok(p50s) => p50s,
        Err(error) if error.to_string().starts_with("not intercepted") => {
            return Ok(Row::not_available(
                case.name,
                case.target,
                &error.to_string(),
            ));
        }
        Err(error) => return Err(error),
    };
    Ok(Row {
        case: case.name.to_string(),
        pipelock: format!("{proxied:.0} µs (+{:.0})", proxied - direct),
        tinyproxy: "— (not intercepting)".to_string(),
        squid: "— (not intercepting)".to_string(),
        direct: format!("{direct:.0} µs"),
        target: case.target.to_string(),
        met: met(proxied - direct <= INTERCEPT_TARGET_ADDED_US),
    })
}

/// What the reader of the table needs to know about how it was measured.
pub fn notes() -> Vec<String> {
    vec![
        "Everything runs on this machine: the load generator (wrk, curl, Python), the proxy and the nginx origin share its cores, so the figures compare the contenders within one run; they are not a capacity rating.".to_string(),
        "Pipelock runs with every scanner that applies to plain HTTP on and blocking (config below): URL layers, DLP on every request header (`header_mode: all`) and body, prompt-injection scanning of text responses, and the per-site rate limit (set high). tinyproxy and squid scan nothing; squid caches nothing.".to_string(),
        format!("Request rate and latency: wrk with absolute-form requests (`xtask/bench/absolute_form.lua`) through each proxy, plain requests for direct; latency is wrk's p50 with one connection, the added figure is over direct. Latency run: {} s per contender.", LATENCY.seconds),
        "Socket errors next to tinyproxy: tinyproxy 1.11 closes the client connection after each response without sending `Connection: close`, so wrk's next request on that connection fails and wrk reconnects; req/s counts completed responses only.".to_string(),
        "100 MiB: a clean English text file served as `text/plain`; with `fetch_proxy.max_response_mb: 200` Pipelock buffers the whole body and scans it for prompt injection before sending it (a text body over that limit would be refused). The time to the first byte shows it: the client gets nothing until the scan is done. curl to /dev/null, MB = 10^6 bytes over curl's total time; median of 3 runs, best in brackets.".to_string(),
        format!("Idle connections: `xtask/bench/idle_connections.py` opens {IDLE_CONNECTIONS} connections, sends one proxied request on each and reads the response, then holds them idle for 1 s; the figure is VmRSS of the proxy's process and its children while they are open, with how many the proxy had not closed."),
        "HTTPS through a tunnel: the same script and origin, each proxy relaying the CONNECT opaquely (the client checks the origin's own certificate); direct is listed per run (Pipelock / tinyproxy / squid).".to_string(),
        format!("Intercepted HTTPS: `xtask/bench/https_latency.py`, {HTTPS_REQUESTS} sequential requests each on a new connection (TCP, CONNECT, TLS with the leaf Pipelock issues, GET), interleaved with as many direct TLS requests to the origin; the first proxied request (which issues the leaf) is not counted."),
    ]
}
