//! `cargo xtask bench-intercept`: the cost of Pipelock's eBPF hooks on `connect()` (issue #5,
//! target ≤ 2 µs added per connect) and the latency of a small HTTP request through the
//! transparent path against the forward proxy (target: within 10%). Builds the `pipelock`
//! binary and the `intercept-bench` helper (in the e2e crate, which links the pipelock
//! library: xtask itself must build before the eBPF toolchain is installed), both in release,
//! runs the helper as root with `PIPELOCK_BIN` naming that `pipelock`, prints its markdown
//! tables and writes them to `<target dir>/bench-intercept.md`.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{prerequisites, tasks};

pub fn run() -> Result<()> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("bench-intercept loads eBPF programs and mounts a cgroup v2 and a bpffs: run it as root");
    }
    prerequisites::install()?;
    // The HTTP half runs a real `pipelock run`, built with the same profile as the helper.
    tasks::build(true)?;
    tasks::run_checked(tasks::cargo().args([
        "build",
        "--release",
        "--package",
        "pipelock-e2e",
        "--bin",
        "intercept-bench",
    ]))?;
    let target_dir = tasks::target_dir()?;
    let binary = target_dir.join("release").join("intercept-bench");
    let output = Command::new(&binary)
        .env("PIPELOCK_BIN", target_dir.join("release").join("pipelock"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    print!("{text}");
    if !output.status.success() {
        bail!("{} failed with {}", binary.display(), output.status);
    }
    let path = target_dir.join("bench-intercept.md");
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "xtask: bench-intercept: report written to {}",
        path.display()
    );
    Ok(())
}
