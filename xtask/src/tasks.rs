//! Build, run and test tasks: thin wrappers over cargo that print each command first.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Runs `command`, printing it first; fails unless it exits 0.
pub fn run_checked(command: &mut Command) -> Result<()> {
    eprintln!("xtask: running {command:?}");
    let status = command
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    // xtask/ sits directly under the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

pub fn build(release: bool) -> Result<()> {
    let mut command = cargo();
    command.args(["build", "--package", "pipelock", "--bins"]);
    if release {
        command.arg("--release");
    }
    run_checked(&mut command)
}

pub fn run(args: &[String]) -> Result<()> {
    build(true)?;
    let binary = target_dir().join("release").join("pipelock");
    let mut command = Command::new(&binary);
    command.arg("run").args(args);
    eprintln!("xtask: running {command:?}");
    // Replace this process, so signals (Ctrl-C, SIGTERM) reach pipelock directly.
    let error = std::os::unix::process::CommandExt::exec(&mut command);
    bail!("cannot start {}: {error}", binary.display())
}

pub fn test(args: &[String]) -> Result<()> {
    build(false)?;
    let binary = target_dir().join("debug").join("pipelock");
    let mut command = cargo();
    command
        // The eBPF crate only builds for the BPF target (pipelock/build.rs builds it).
        .args(["test", "--workspace", "--exclude", "pipelock-ebpf"])
        .args(args)
        .env("PIPELOCK_BIN", &binary);
    run_checked(&mut command)
}
