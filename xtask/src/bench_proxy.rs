//! `cargo xtask bench-proxy`: Pipelock side by side with Debian's tinyproxy and squid (no
//! scanning, no caching) and a direct connection, in one run on this machine, against an
//! nginx origin on loopback. It measures the issue's four targets — request rate and added
//! latency on small responses, throughput of a 100 MiB scanned response, memory with 1,000
//! idle keep-alive connections, and the latency TLS interception adds — and prints a
//! markdown table (also written to `<target dir>/bench-proxy.md`).
//!
//! Every server runs in the foreground with its own config on a free 127.0.0.1 port in a
//! temporary directory and is stopped when the run ends, failed or not. A missed target is a
//! result, not an error; the exit status is non-zero only when a step could not run.

mod cases;
mod loads;
mod processes;
mod report;
mod servers;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{prerequisites, tasks};
use cases::{Contender, Run};

/// The Debian packages a run uses.
const PACKAGES: &[&str] = &[
    "wrk",
    "tinyproxy",
    "squid",
    "nginx",
    "openssl",
    "python3",
    "curl",
];

pub fn run() -> Result<()> {
    prerequisites::install()?;
    prerequisites::ensure_packages(PACKAGES)?;
    tasks::build(true)?;
    let target_dir = tasks::target_dir()?;
    let binary = target_dir.join("release").join("pipelock");
    let started = Instant::now();
    processes::raise_open_files_limit()?;
    processes::stop_on_signals()?;

    let dir = tempfile::Builder::new()
        .prefix("pipelock-bench-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    processes::remove_on_signal(dir.path());
    // squid drops to its own user; it must be able to enter the directory.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    eprintln!(
        "xtask: bench-proxy: writing the fixtures (100 MiB) into {}",
        dir.path().display()
    );
    let fixtures = servers::fixtures(dir.path())?;

    let origin_port = processes::free_port()?;
    let origin_tls_port = processes::free_port()?;
    let _nginx = servers::nginx(dir.path(), &fixtures, origin_port, origin_tls_port)?;
    let pipelock_port = processes::free_port()?;
    let pipelock = servers::pipelock(
        &binary,
        dir.path(),
        "pipelock",
        &servers::pipelock_config(),
        pipelock_port,
    )?;
    let tinyproxy_port = processes::free_port()?;
    let tinyproxy = servers::tinyproxy(dir.path(), tinyproxy_port)?;
    let squid_port = processes::free_port()?;
    let squid = servers::squid(dir.path(), squid_port)?;

    let run = Run {
        dir: dir.path().to_path_buf(),
        binary: binary.clone(),
        origin_port,
        origin_tls_port,
        fixtures,
        pipelock: Contender::new("Pipelock", pipelock_port, pipelock.pid()),
        tinyproxy: Contender::new("tinyproxy", tinyproxy_port, tinyproxy.pid()),
        squid: Contender::new("squid", squid_port, squid.pid()),
    };
    run.check_every_proxy_passes_the_small_page()?;

    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for case in cases::ALL {
        eprintln!("xtask: bench-proxy: {}", case.name);
        match (case.measure)(&run) {
            Ok(row) => rows.push(row),
            Err(error) => {
                eprintln!("xtask: bench-proxy: {} failed: {error:#}", case.name);
                failures.push(format!("{}: {error:#}", case.name));
                let why = format!("failed: {error:#}");
                rows.push(report::Row::not_available(case.name, case.target, &why));
            }
        }
    }
    drop((pipelock, tinyproxy, squid));

    let mut notes = cases::notes();
    notes.push(format!(
        "Whole run (servers, fixtures, every case) took {:.0} s.",
        started.elapsed().as_secs_f64()
    ));
    let mut text = report::render(&rows, &versions(&binary), &notes);
    text.push_str(&format!(
        "\nPipelock's config (the interception case adds `tls_interception`):\n\n```yaml\n{}```\n",
        servers::pipelock_config()
    ));
    println!("{text}");
    let path = target_dir.join("bench-proxy.md");
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("xtask: bench-proxy: report written to {}", path.display());
    if !failures.is_empty() {
        bail!(
            "{} case(s) could not run: {}",
            failures.len(),
            failures.join("; ")
        );
    }
    Ok(())
}

/// The versions of everything measured, the kernel and the CPU.
fn versions(binary: &std::path::Path) -> Vec<(String, String)> {
    let first_line = |command: &mut Command| -> String {
        processes::stdout_within(command, Duration::from_secs(10))
            .ok()
            .and_then(|text| text.lines().next().map(str::to_string))
            .unwrap_or_else(|| "unknown".to_string())
    };
    let mut versions = vec![(
        "pipelock".to_string(),
        first_line(Command::new(binary).arg("version")),
    )];
    for package in PACKAGES {
        versions.push((
            format!("{package} (Debian)"),
            first_line(Command::new("dpkg-query").args(["-W", "-f=${Version}", package])),
        ));
    }
    versions.push((
        "kernel".to_string(),
        first_line(Command::new("uname").arg("-sr")),
    ));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|line| {
                line.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, model)| model.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown".to_string());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    versions.push(("CPU".to_string(), format!("{cpu}, {cores} cores available")));
    versions
}
