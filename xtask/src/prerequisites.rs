//! Installing the build's prerequisites, only what is missing.
//!
//! - Debian packages: Debian's rustc 1.96 with its `core` sources (the eBPF crate builds `core`
//!   for the BPF target), LLVM 22 for bpf-linker, bpftool for the eBPF tests, and the clients
//!   the end-to-end tests drive (curl, python3 with requests, websockets and venv, ruby, openssl).
//!   The Rust ones are skipped when a rustup nightly with rust-src is present, which
//!   `pipelock/build.rs` then uses.
//! - `bpf-linker` 0.13 from crates.io, built against Debian's LLVM 22.
//! - The real MCP software the MCP end-to-end tests drive (`tests/mcp/package.json`: the
//!   reference server `@modelcontextprotocol/server-everything` and the TypeScript SDK's
//!   client), installed with `npm ci` from the committed lock file into `tests/mcp/node_modules`
//!   (ignored by git); skipped when it is already there and the lock file has not changed.
//! - FastMCP from PyPI for the FastMCP end-to-end tests (`tests/mcp/fastmcp_server.py`), with
//!   every dependency pinned in `tests/mcp/requirements.txt`, installed with pip into the
//!   virtualenv `tests/mcp/.venv` (ignored by git; Debian's `python3-venv` provides `venv`);
//!   skipped when the venv was installed from the requirements file as it is now.
//!
//! Other tasks install their own Debian packages with [`ensure_packages`] (`bench-proxy`:
//! wrk, nginx, squid, tinyproxy), which never leaves a service started by the install.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::tasks::run_checked;

#[path = "../../pipelock/build/rustup_nightly.rs"]
mod rustup_nightly;

/// Packages the eBPF toolchain needs (unless a rustup nightly with rust-src is used).
const RUST_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src"];
/// Packages needed in every case.
const OTHER_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "bpftool",
    "curl",
    "python3",
    "python3-requests",
    "python3-websockets",
    "python3-venv",
    "ruby",
    "ruby-faraday",
    "ruby-httparty",
    "brotli",
    "zstd",
    "openssl",
];

/// The bpf-linker release to install; any 0.13.x already installed is accepted.
const BPF_LINKER_VERSION: &str = "0.13.0";
const BPF_LINKER_SERIES: &str = "0.13.";

pub fn install() -> Result<()> {
    let mut wanted: Vec<&str> = OTHER_PACKAGES.to_vec();
    if !rustup_nightly::has_rust_src() {
        wanted.extend(RUST_PACKAGES);
    }
    ensure_packages(&wanted)?;
    ensure_mcp_packages()?;
    ensure_fastmcp()?;
    if bpf_linker_is_current() {
        eprintln!("xtask: bpf-linker {BPF_LINKER_SERIES}x present");
    } else {
        run_checked(
            Command::new("cargo")
                .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
                .args(["--locked", "--no-default-features", "--features", "llvm-22"])
                // Without it, bpf-linker's build finds Debian's LLVM 14 llvm-config.
                .env("LLVM_PREFIX", "/usr/lib/llvm-22"),
        )?;
    }
    Ok(())
}

/// `npm ci` in `tests/mcp` unless `node_modules` was installed from the lock file as it is now
/// (a copy of the lock file is kept in `node_modules` after each successful install).
fn ensure_mcp_packages() -> Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/mcp");
    let installed = dir.join("node_modules/@modelcontextprotocol/server-everything/package.json");
    let lock = dir.join("package-lock.json");
    let stamp = dir.join("node_modules/.pipelock-lock-copy.json");
    let current =
        std::fs::read(&lock).with_context(|| format!("cannot read {}", lock.display()))?;
    if installed.is_file() && std::fs::read(&stamp).is_ok_and(|s| s == current) {
        eprintln!("xtask: MCP test packages present (tests/mcp/node_modules)");
        return Ok(());
    }
    for tool in ["node", "npm"] {
        if Command::new(tool).arg("--version").output().is_err() {
            bail!("{tool} is needed to install the MCP test packages (tests/mcp); install Node.js 18 or later");
        }
    }
    run_checked(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .stdout(std::io::stderr()),
    )?;
    std::fs::write(&stamp, &current)
        .with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(())
}

/// A virtualenv `tests/mcp/.venv` with the pinned `tests/mcp/requirements.txt` (FastMCP),
/// unless it was installed from the requirements file as it is now (a copy is kept in the
/// venv after each successful install). A venv left by a failed install is recreated.
fn ensure_fastmcp() -> Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/mcp");
    let venv = dir.join(".venv");
    let python = venv.join("bin/python");
    let requirements = dir.join("requirements.txt");
    let stamp = venv.join(".pipelock-requirements-copy.txt");
    let current = std::fs::read(&requirements)
        .with_context(|| format!("cannot read {}", requirements.display()))?;
    if python.is_file() && std::fs::read(&stamp).is_ok_and(|s| s == current) {
        eprintln!("xtask: FastMCP present (tests/mcp/.venv)");
        return Ok(());
    }
    if venv.exists() {
        std::fs::remove_dir_all(&venv)
            .with_context(|| format!("cannot remove {}", venv.display()))?;
    }
    run_checked(
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .stdout(std::io::stderr()),
    )?;
    run_checked(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-input", "--requirement"])
            .arg(&requirements)
            .stdout(std::io::stderr()),
    )?;
    std::fs::write(&stamp, &current)
        .with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(())
}

/// Installs those of the Debian `packages` that are missing (after checking that the
/// configured sources offer them), without letting their maintainer scripts start services:
/// a server package (nginx, squid, …) must not be left listening on its default port.
pub fn ensure_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| !package_installed(package))
        .collect();
    if missing.is_empty() {
        eprintln!("xtask: Debian packages present: {}", packages.join(" "));
        return Ok(());
    }
    ensure_root(&format!(
        "install the Debian packages {}",
        missing.join(" ")
    ))?;
    run_checked(
        Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    for package in &missing {
        if !package_available(package) {
            bail!("the Debian package {package} is not available from the configured apt sources (`apt-cache policy {package}` shows no candidate)");
        }
    }
    let guard = NoServiceStarts::install()?;
    let installed = run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            // Progress goes to stderr: stdout is for what a task reports (bench-proxy's table).
            .stdout(std::io::stderr()),
    );
    drop(guard);
    installed?;
    stop_services(&missing);
    Ok(())
}

/// True when `apt-cache policy` names an installable version of `package`.
fn package_available(package: &str) -> bool {
    Command::new("apt-cache")
        .args(["policy", package])
        .output()
        .is_ok_and(|out| {
            String::from_utf8_lossy(&out.stdout).lines().any(|line| {
                line.trim()
                    .strip_prefix("Candidate:")
                    .is_some_and(|candidate| candidate.trim() != "(none)")
            })
        })
}

/// `/usr/sbin/policy-rc.d` answering 101 ("action forbidden") while packages install, so
/// `invoke-rc.d` starts no service; removed on drop. An existing policy is left as it is.
struct NoServiceStarts {
    created: Option<&'static str>,
}

impl NoServiceStarts {
    const PATH: &'static str = "/usr/sbin/policy-rc.d";

    fn install() -> Result<Self> {
        if std::path::Path::new(Self::PATH).exists() {
            return Ok(Self { created: None });
        }
        std::fs::write(
            Self::PATH,
            "#!/bin/sh\n# written by cargo xtask while installing packages\nexit 101\n",
        )
        .with_context(|| format!("cannot write {}", Self::PATH))?;
        std::fs::set_permissions(
            Self::PATH,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .with_context(|| format!("cannot make {} executable", Self::PATH))?;
        Ok(Self {
            created: Some(Self::PATH),
        })
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if let Some(path) = self.created {
            if let Err(error) = std::fs::remove_file(path) {
                eprintln!("xtask: warning: cannot remove {path}: {error}");
            }
        }
    }
}

/// Under systemd, units are started by `deb-systemd-invoke` too; stop and disable those of
/// the packages just installed (no-op for packages without a unit, and without systemd).
fn stop_services(packages: &[&str]) {
    if !std::path::Path::new("/run/systemd/system").exists() {
        return;
    }
    for package in packages {
        let unit = format!("{package}.service");
        let known = Command::new("systemctl")
            .args(["cat", &unit])
            .output()
            .is_ok_and(|out| out.status.success());
        if known {
            if let Err(error) =
                run_checked(Command::new("systemctl").args(["disable", "--now", &unit]))
            {
                eprintln!("xtask: warning: cannot stop {unit}: {error:#}");
            }
        }
    }
}

fn package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|out| {
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("install ok installed")
        })
}

/// True when `bpf-linker --version` prints "bpf-linker 0.13.x".
fn bpf_linker_is_current() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|out| {
            out.status.success()
                && String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .nth(1)
                    .is_some_and(|version| version.starts_with(BPF_LINKER_SERIES))
        })
}

fn ensure_root(what: &str) -> Result<()> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .context("cannot run `id -u`")?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        bail!("need root to {what}: run `cargo xtask setup` as root (or install them by hand)");
    }
    Ok(())
}
