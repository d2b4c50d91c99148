//! The servers of a run, each on its own loopback port with its own config in the run's
//! directory: nginx as the origin (plain HTTP and, for the interception case, HTTPS with a
//! certificate from a test CA), and the proxies compared — Pipelock with every scanner on,
//! tinyproxy, and squid with caching off.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use super::processes::{stdout_within, Daemon};

/// How long a server may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(15);
/// Size of the large response.
pub const LARGE_BYTES: u64 = 100 * 1024 * 1024;

/// The files nginx serves and the origin's TLS material.
pub struct Fixtures {
    pub www: PathBuf,
    pub small: Vec<u8>,
    pub origin_ca: PathBuf,
    origin_cert: PathBuf,
    origin_key: PathBuf,
}

/// Writes the served files (`/small.html`, about 1 KiB; `/large.txt`, 100 MiB of clean
/// prose) and makes a test CA and a certificate for `IP:127.0.0.1` with openssl.
pub fn fixtures(dir: &Path) -> Result<Fixtures> {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).context("cannot create the web root")?;
    let small = small_page();
    std::fs::write(www.join("small.html"), &small).context("cannot write small.html")?;
    write_prose(&www.join("large.txt"), LARGE_BYTES)?;

    let tls = dir.join("origin-tls");
    std::fs::create_dir_all(&tls).context("cannot create the TLS directory")?;
    let openssl = |args: &[&str]| {
        stdout_within(
            Command::new("openssl").args(args).current_dir(&tls),
            Duration::from_secs(30),
        )
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
            &["-subj", "/CN=pipelock bench origin CA"],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]
        .concat(),
    )?;
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "origin.key",
                "-out",
                "origin.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    )?;
    std::fs::write(
        tls.join("origin.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "origin.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "origin.ext",
        "-out",
        "origin.pem",
    ])?;
    Ok(Fixtures {
        www,
        small,
        origin_ca: tls.join("ca.pem"),
        origin_cert: tls.join("origin.pem"),
        origin_key: tls.join("origin.key"),
    })
}

/// A small, clean HTML page of about 1 KiB.
fn small_page() -> Vec<u8> {
    let mut page = String::from(
        "<!doctype html>\n<html><head><title>Quarterly garden report</title></head><body>\n",
    );
    let mut n = 0;
    while page.len() < 980 {
        n += 1;
        page.push_str(&format!(
            "<p>Row {n}: the tomatoes ripened early and the beans need more water.</p>\n"
        ));
    }
    page.push_str("</body></html>\n");
    page.into_bytes()
}

/// Writes `size` bytes of clean English-like text (sentences drawn from fixed word lists by
/// a fixed pseudo-random sequence, so every run serves the same file).
fn write_prose(path: &Path, size: u64) -> Result<()> {
    const SUBJECTS: &[&str] = &[
        "The gardener",
        "A neighbour",
        "Our team",
        "The baker",
        "The old train",
        "A student",
        "The river",
        "My cousin",
        "The library",
        "A small boat",
    ];
    const VERBS: &[&str] = &[
        "walked past",
        "painted",
        "described",
        "carried",
        "found",
        "measured",
        "visited",
        "repaired",
        "photographed",
        "counted",
    ];
    const OBJECTS: &[&str] = &[
        "the green fence",
        "a basket of apples",
        "the morning market",
        "seven wooden chairs",
        "the quiet harbour",
        "a map of the valley",
        "the spring festival",
        "two blue bicycles",
        "the stone bridge",
        "a box of letters",
    ];
    const TAILS: &[&str] = &[
        "before lunch",
        "in the rain",
        "after the concert",
        "near the station",
        "on a Tuesday",
        "with great care",
        "for the third time",
        "at sunset",
    ];
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(state >> 33).unwrap_or(0) % n
    };
    let mut written = 0u64;
    let mut line = String::new();
    while written < size {
        line.clear();
        for _ in 0..3 {
            line.push_str(&format!(
                "{} {} {} {}. ",
                SUBJECTS[next(SUBJECTS.len())],
                VERBS[next(VERBS.len())],
                OBJECTS[next(OBJECTS.len())],
                TAILS[next(TAILS.len())]
            ));
        }
        line.push('\n');
        let room = usize::try_from(size - written).unwrap_or(usize::MAX);
        let bytes = &line.as_bytes()[..line.len().min(room)];
        out.write_all(bytes)?;
        written += bytes.len() as u64;
    }
    out.flush()
        .with_context(|| format!("cannot write {}", path.display()))
}

/// nginx serving the fixtures on `http_port`, and over TLS on `https_port`.
pub fn nginx(dir: &Path, fixtures: &Fixtures, http_port: u16, https_port: u16) -> Result<Daemon> {
    let run = dir.join("nginx");
    std::fs::create_dir_all(&run).context("cannot create nginx's directory")?;
    let config = format!(
        r"daemon off;
master_process on;
worker_processes 1;
user root;
pid {run}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    types {{ text/html html; text/plain txt; }}
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{http_port};
        root {www};
        location = /small {{ try_files /small.html =404; }}
        location = /large {{ try_files /large.txt =404; }}
    }}
    server {{
        listen 127.0.0.1:{https_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {www};
        location = /small {{ try_files /small.html =404; }}
    }}
}}
",
        run = run.display(),
        www = fixtures.www.display(),
        cert = fixtures.origin_cert.display(),
        key = fixtures.origin_key.display(),
    );
    let path = run.join("nginx.conf");
    std::fs::write(&path, config).context("cannot write nginx.conf")?;
    let mut daemon = Daemon::start(
        "nginx",
        Command::new("nginx")
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(&run),
        &run.join("nginx.log"),
    )?;
    daemon.wait_listening(http_port, START_LIMIT)?;
    daemon.wait_listening(https_port, START_LIMIT)?;
    Ok(daemon)
}

/// tinyproxy on `port`, loopback clients only, no logging beyond errors.
pub fn tinyproxy(dir: &Path, port: u16) -> Result<Daemon> {
    let config = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 2000\nAllow 127.0.0.1\nLogLevel Error\nDisableViaHeader Yes\n"
    );
    let path = dir.join("tinyproxy.conf");
    std::fs::write(&path, config).context("cannot write tinyproxy.conf")?;
    let mut daemon = Daemon::start(
        "tinyproxy",
        Command::new("tinyproxy").arg("-d").arg("-c").arg(&path),
        &dir.join("tinyproxy.log"),
    )?;
    daemon.wait_listening(port, START_LIMIT)?;
    Ok(daemon)
}

/// squid on `port` in the foreground (`-N`), loopback clients only, nothing cached, no
/// access log, and no wait on shutdown.
pub fn squid(dir: &Path, port: u16) -> Result<Daemon> {
    let run = dir.join("squid");
    std::fs::create_dir_all(&run).context("cannot create squid's directory")?;
    let config = format!(
        r"http_port 127.0.0.1:{port}
acl bench_clients src 127.0.0.1/32
http_access allow bench_clients
http_access deny all
cache deny all
cache_mem 0 MB
access_log none
cache_log {run}/cache.log
pid_filename none
coredump_dir {run}
pinger_enable off
shutdown_lifetime 0 seconds
visible_hostname pipelock-bench
max_filedescriptors 8192
via off
forwarded_for delete
",
        run = run.display(),
    );
    let path = run.join("squid.conf");
    std::fs::write(&path, config).context("cannot write squid.conf")?;
    let mut daemon = Daemon::start(
        "squid",
        Command::new("squid").arg("-N").arg("-f").arg(&path),
        &run.join("squid.log"),
    )?;
    daemon.wait_listening(port, START_LIMIT)?;
    Ok(daemon)
}

/// The Pipelock config of the plain-HTTP cases: the forward proxy with every scanner that
/// applies to it on and blocking — the URL layers, DLP on every request header and body,
/// prompt-injection scanning of text responses — and loopback allowed as a destination
/// (the origin is on it). The per-site rate limit stays on but high enough for a load test;
/// `max_response_mb` is raised so the 100 MiB text response is scanned, not refused.
pub fn pipelock_config() -> String {
    "version: 1
mode: balanced
fetch_proxy:
  max_response_mb: 200
  monitoring:
    max_requests_per_minute: 1000000000
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
"
    .to_string()
}

/// Pipelock with `config` (YAML) on `port`; fails, quoting its log, if it exits first.
pub fn pipelock(binary: &Path, dir: &Path, name: &str, config: &str, port: u16) -> Result<Daemon> {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, config).with_context(|| format!("cannot write {}", path.display()))?;
    let mut daemon = Daemon::start(
        name,
        Command::new(binary)
            .arg("run")
            .arg("--config")
            .arg(&path)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}")),
        &dir.join(format!("{name}.log")),
    )?;
    daemon.wait_listening(port, START_LIMIT)?;
    Ok(daemon)
}
