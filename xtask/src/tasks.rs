//! Build, run and test tasks: thin wrappers over cargo that print each command first.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{bail, Context, Result};

/// A command that ran and did not exit 0; `main` exits with the same code.
#[derive(Debug)]
pub struct CommandFailed {
    command: String,
    status: ExitStatus,
}

impl CommandFailed {
    fn new(command: &Command, status: ExitStatus) -> Self {
        Self {
            command: format!("{command:?}"),
            status,
        }
    }

    /// The exit code to leave with: the command's own, or 1 when a signal killed it.
    pub fn exit_code(&self) -> u8 {
        self.status
            .code()
            .and_then(|code| u8::try_from(code).ok())
            .filter(|&code| code != 0)
            .unwrap_or(1)
    }
}

impl fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed with {}", self.command, self.status)
    }
}

impl std::error::Error for CommandFailed {}

/// Runs `command`, printing it first; fails unless it exits 0.
pub fn run_checked(command: &mut Command) -> Result<()> {
    eprintln!("xtask: running {command:?}");
    let status = command
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        return Err(CommandFailed::new(command, status).into());
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    // xtask/ sits directly under the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

/// Cargo's target directory, as cargo itself resolves it (CARGO_TARGET_DIR, `build.target-dir`
/// in a config file, or `<workspace>/target`); always absolute.
pub fn target_dir() -> Result<PathBuf> {
    let mut command = cargo();
    command.args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
        "--offline",
    ]);
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !output.status.success() {
        return Err(CommandFailed::new(&command, output.status).into());
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("cannot parse `cargo metadata`")?;
    let dir = metadata
        .get("target_directory")
        .and_then(serde_json::Value::as_str)
        .context("`cargo metadata` reports no target_directory")?;
    Ok(PathBuf::from(dir))
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
    let binary = target_dir()?.join("release").join("pipelock");
    let mut command = Command::new(&binary);
    command.arg("run").args(args);
    eprintln!("xtask: running {command:?}");
    // Replace this process, so signals (Ctrl-C, SIGTERM) reach pipelock directly.
    let error = std::os::unix::process::CommandExt::exec(&mut command);
    bail!("cannot start {}: {error}", binary.display())
}

pub fn test(args: &[String]) -> Result<()> {
    build(false)?;
    let binary = target_dir()?.join("debug").join("pipelock");
    let mut command = cargo();
    command
        // The eBPF crate only builds for the BPF target (pipelock/build.rs builds it).
        // Every suite runs even when one fails, so the summary counts them all.
        .args([
            "test",
            "--no-fail-fast",
            "--workspace",
            "--exclude",
            "pipelock-ebpf",
        ])
        .args(args)
        .env("PIPELOCK_BIN", &binary)
        .stdout(Stdio::piped());
    eprintln!("xtask: running {command:?}");
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    // Echo cargo's output as it comes, and add up its per-binary "test result:" lines so the
    // run closes on one total.
    let mut totals = (0u64, 0u64);
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.context("cannot read cargo test's output")?;
            println!("{line}");
            if let Some((passed, failed)) = parse_test_result(&line) {
                totals.0 += passed;
                totals.1 += failed;
            }
        }
    }
    let status = child.wait().context("cannot wait for cargo test")?;
    println!("all tests: {} passed, {} failed", totals.0, totals.1);
    if !status.success() {
        return Err(CommandFailed::new(&command, status).into());
    }
    if totals.0 == 0 {
        bail!("cargo test ran no test");
    }
    Ok(())
}

/// Reads `test result: ok. 4 passed; 1 failed; …` into (passed, failed).
fn parse_test_result(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let count = |word: &str| -> Option<u64> {
        let words: Vec<&str> = rest.split_whitespace().collect();
        words
            .windows(2)
            .find(|pair| pair[1].trim_end_matches(';') == word)
            .and_then(|pair| pair[0].parse().ok())
    };
    Some((count("passed")?, count("failed")?))
}

/// Builds `pipelock` and the e2e crate's benchmark binary `bench` in release, runs it with
/// `PIPELOCK_BIN` naming that `pipelock`, prints its markdown report and writes it to
/// `<target dir>/<bench>.md` (`intercept-bench` → `bench-intercept.md`, `mcp-bench` →
/// `bench-mcp.md`). The prerequisites are the caller's to install first.
///
/// # Errors
/// A build failed, the benchmark could not run or failed, or the report cannot be written.
pub fn run_bench_binary(bench: &str, report: &str) -> Result<()> {
    build(true)?;
    run_checked(cargo().args([
        "build",
        "--release",
        "--package",
        "pipelock-e2e",
        "--bin",
        bench,
    ]))?;
    let target_dir = target_dir()?;
    let binary = target_dir.join("release").join(bench);
    let output = Command::new(&binary)
        .env("PIPELOCK_BIN", target_dir.join("release").join("pipelock"))
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    print!("{text}");
    if !output.status.success() {
        bail!("{} failed with {}", binary.display(), output.status);
    }
    let path = target_dir.join(report);
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("xtask: {bench}: report written to {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_test_result;

    #[test]
    fn reads_cargo_summaries() {
        assert_eq!(
            parse_test_result("test result: ok. 23 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.02s"),
            Some((23, 0))
        );
        assert_eq!(
            parse_test_result("test result: FAILED. 5 passed; 3 failed; 0 ignored"),
            Some((5, 3))
        );
        assert_eq!(parse_test_result("running 4 tests"), None);
    }
}
