//! Installing the build's prerequisites, only what is missing.
//!
//! - Debian packages: Debian's rustc 1.96 with its `core` sources (the eBPF crate builds `core`
//!   for the BPF target), LLVM 22 for bpf-linker, bpftool for the eBPF tests, and the clients
//!   the end-to-end tests drive (curl, python3 with requests and websockets, ruby, openssl).
//!   The Rust ones are skipped when a rustup nightly with rust-src is present, which
//!   `pipelock/build.rs` then uses.
//! - `bpf-linker` 0.13 from crates.io, built against Debian's LLVM 22.

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
    "ruby",
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
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|package| !package_installed(package))
        .collect();
    if !missing.is_empty() {
        ensure_root(&format!(
            "install the Debian packages {}",
            missing.join(" ")
        ))?;
        run_checked(
            Command::new("apt-get")
                .args(["update", "-qq"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        run_checked(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }

    if missing.is_empty() {
        eprintln!("xtask: Debian packages present: {}", wanted.join(" "));
    }
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
