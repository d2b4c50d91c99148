//! `cargo xtask bench-mcp`: what Pipelock's MCP reverse proxy adds to a `tools/call` round
//! trip (issue #6, target ≤ 200 µs at p50 over direct) and how long scanning a `tools/list` of
//! 100 tools takes (target ≤ 1 ms). Sets up (the MCP test packages: server-everything), builds
//! the `pipelock` binary and the `mcp-bench` helper (in the e2e crate) in release, runs the
//! helper with `PIPELOCK_BIN` naming that `pipelock`, prints its markdown report and writes it
//! to `<target dir>/bench-mcp.md`. Needs no root; all traffic stays on 127.0.0.1.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{prerequisites, tasks};

pub fn run() -> Result<()> {
    prerequisites::install()?;
    tasks::build(true)?;
    tasks::run_checked(tasks::cargo().args([
        "build",
        "--release",
        "--package",
        "pipelock-e2e",
        "--bin",
        "mcp-bench",
    ]))?;
    let target_dir = tasks::target_dir()?;
    let binary = target_dir.join("release").join("mcp-bench");
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
    let path = target_dir.join("bench-mcp.md");
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("xtask: bench-mcp: report written to {}", path.display());
    Ok(())
}
