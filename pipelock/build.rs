//! Builds Pipelock's kernel programs (`pipelock-ebpf`) for `bpfel-unknown-none` and leaves the
//! object at `$OUT_DIR/pipelock-ebpf`, where `intercept` embeds it with `include_bytes_aligned!`.
//!
//! What it depends on, and why:
//! - `bpf-linker` on the PATH (or in `~/.cargo/bin`): BPF objects are linked from LLVM bitcode.
//! - A compiler that can build `core` for the BPF target, because no prebuilt `core` exists for
//!   it. Two routes, tried in order:
//!   1. Debian's `rustc-web` (`/usr/bin/rustc`, 1.96; at least the workspace's `rust-version`)
//!      with `rust-web-src` (its `core` sources, of the same version, at
//!      `/usr/lib/rustlib/src/rust`), driven by Debian's `/usr/bin/cargo` with
//!      `RUSTC_BOOTSTRAP=1` and `-Z build-std=core`;
//!   2. a rustup `nightly` toolchain with the `rust-src` component.
//!
//!   Anything else stops the build with the exact install commands.
//! - `PIPELOCK_EBPF_OBJECT=/path/to/object` skips the build and embeds a prebuilt object (for
//!   packagers); the file must be a little-endian BPF ELF object.
//!
//! The nested cargo runs with the outer build's environment scrubbed (clippy's
//! `RUSTC_WORKSPACE_WRAPPER`, `RUSTFLAGS`, the rustup toolchain override, …) and its own target
//! directory (`<target>/bpf`), shared by every profile so `core` is built once.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[path = "build/rustup_nightly.rs"]
mod rustup_nightly;

const EBPF_PACKAGE: &str = "pipelock-ebpf";
const BPF_TARGET: &str = "bpfel-unknown-none";
const OBJECT_ENV: &str = "PIPELOCK_EBPF_OBJECT";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_CORE_SRC: &str = "/usr/lib/rustlib/src/rust/library/core";
const EM_BPF: u16 = 247;

const INSTALL_HELP: &str = "\
install the eBPF toolchain with `cargo xtask setup` (as root), or by hand:
    apt-get install -y llvm-22-dev rustc-web cargo-web rust-web-src bpftool
    LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --version 0.13.0 --locked --no-default-features --features llvm-22
  (instead of Debian's rustc-web, a rustup nightly works too: rustup toolchain install nightly --component rust-src)
  or set PIPELOCK_EBPF_OBJECT to a prebuilt object";

/// Variables the outer cargo sets for this build script that must not leak into the nested
/// BPF build.
const SCRUBBED_ENV: &[&str] = &[
    "RUSTC",
    "RUSTDOC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_RUSTC",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTUP_TOOLCHAIN",
    "CARGO",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_PKG_NAME",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
    "CLIPPY_ARGS",
    "CLIPPY_CONF_DIR",
    "RUSTC_LINKER",
    // The outer jobserver's pipe: the nested cargo runs its own.
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
];

fn main() {
    if let Err(message) = run() {
        eprintln!("error: cannot build the eBPF programs: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir
        .parent()
        .ok_or("the pipelock crate has no parent directory")?
        .to_path_buf();
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);
    let destination = out_dir.join(EBPF_PACKAGE);

    println!("cargo:rerun-if-env-changed={OBJECT_ENV}");
    if let Some(object) = env::var_os(OBJECT_ENV).filter(|v| !v.is_empty()) {
        let object = PathBuf::from(object);
        println!("cargo:rerun-if-changed={}", object.display());
        check_bpf_object(&object)?;
        fs::copy(&object, &destination)
            .map_err(|e| format!("cannot copy {OBJECT_ENV}={}: {e}", object.display()))?;
        return Ok(());
    }

    for watched in [
        "pipelock-ebpf/src",
        "pipelock-ebpf/Cargo.toml",
        "pipelock-common/src",
        "pipelock-common/Cargo.toml",
        "pipelock/build",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    let linker_dir = find_bpf_linker()?;
    let toolchain = Toolchain::detect()?;
    // OUT_DIR is <target>/<profile>/build/pipelock-<hash>/out.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .ok_or("unexpected OUT_DIR layout")?
        .join("bpf");

    let mut command = toolchain.cargo_command();
    command
        .current_dir(&workspace)
        .args([
            "build",
            "--release",
            "--package",
            EBPF_PACKAGE,
            "--bin",
            EBPF_PACKAGE,
        ])
        .args(["--target", BPF_TARGET, "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir)
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            ["-Cdebuginfo=2", "-Clink-arg=--btf"].join("\u{1f}"),
        )
        .env("PATH", path_with(&linker_dir)?)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    toolchain.configure(&mut command);

    // The nested cargo's stdout must not reach ours: cargo reads build-script stdout as
    // directives. Forward it to stderr.
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if let Some(mut stdout) = child.stdout.take() {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        let _ = io::stderr().write_all(&buf);
    }
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for the BPF build: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`{}` failed ({status}) using {}; see the output above",
            "cargo build --package pipelock-ebpf --target bpfel-unknown-none -Z build-std=core",
            toolchain.describe()
        ));
    }

    let built = target_dir
        .join(BPF_TARGET)
        .join("release")
        .join(EBPF_PACKAGE);
    check_bpf_object(&built)?;
    fs::copy(&built, &destination).map_err(|e| {
        format!(
            "cannot copy {} to {}: {e}",
            built.display(),
            destination.display()
        )
    })?;
    Ok(())
}

fn env_var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("cargo did not set {name}"))
}

/// The directory holding `bpf-linker`: on the PATH, or in cargo's bin directory.
fn find_bpf_linker() -> Result<PathBuf, String> {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(cargo_home) = env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(cargo_home).join("bin"));
    }
    if let Some(home) = env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .find(|dir| dir.join("bpf-linker").is_file())
        .ok_or_else(|| {
            format!("bpf-linker was not found on the PATH or in ~/.cargo/bin;\n{INSTALL_HELP}")
        })
}

fn path_with(dir: &Path) -> Result<OsString, String> {
    let mut dirs = vec![dir.to_path_buf()];
    if let Some(path) = env::var_os("PATH") {
        dirs.extend(env::split_paths(&path));
    }
    env::join_paths(dirs).map_err(|e| format!("cannot build PATH: {e}"))
}

/// A toolchain that can build `core` for the BPF target.
enum Toolchain {
    /// Debian's rustc-web + rust-web-src, unlocked with RUSTC_BOOTSTRAP.
    Debian,
    /// A rustup nightly with rust-src.
    RustupNightly,
}

impl Toolchain {
    fn detect() -> Result<Self, String> {
        let why_not_debian = match debian_toolchain() {
            Ok(()) => return Ok(Self::Debian),
            Err(why) => why,
        };
        if rustup_nightly::has_rust_src() {
            return Ok(Self::RustupNightly);
        }
        Err(format!(
            "no toolchain can build `core` for {BPF_TARGET}: Debian's rustc-web route is unusable ({why_not_debian}) and no rustup nightly with rust-src is installed;\n{INSTALL_HELP}"
        ))
    }

    fn cargo_command(&self) -> Command {
        let mut command = match self {
            Self::Debian => Command::new(DEBIAN_CARGO),
            Self::RustupNightly => {
                let mut c = Command::new("rustup");
                c.args(["run", "nightly", "cargo"]);
                c
            }
        };
        for name in SCRUBBED_ENV {
            command.env_remove(name);
        }
        for (name, _) in env::vars_os() {
            if let Some(name) = name.to_str() {
                if name.starts_with("CARGO_FEATURE_")
                    || name.starts_with("CARGO_CFG_")
                    || name.starts_with("CARGO_PKG_")
                {
                    command.env_remove(name);
                }
            }
        }
        command
    }

    fn configure(&self, command: &mut Command) {
        if let Self::Debian = self {
            command
                .env("RUSTC", DEBIAN_RUSTC)
                .env("RUSTDOC", "/usr/bin/rustdoc")
                .env("RUSTC_BOOTSTRAP", "1");
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Self::Debian => "Debian's rustc-web (/usr/bin/rustc) with RUSTC_BOOTSTRAP=1",
            Self::RustupNightly => "the rustup nightly toolchain",
        }
    }
}

/// Checks the Debian route: `/usr/bin/cargo`, a `/usr/bin/rustc` at least as new as the
/// workspace's `rust-version`, and `core` sources of the same version where `-Z build-std`
/// looks for them (sysroot `/usr`). Returns why not, for the error message.
fn debian_toolchain() -> Result<(), String> {
    for file in [DEBIAN_RUSTC, DEBIAN_CARGO] {
        if !Path::new(file).is_file() {
            return Err(format!("{file} is missing"));
        }
    }
    if !Path::new(DEBIAN_CORE_SRC).is_dir() {
        return Err(format!("{DEBIAN_CORE_SRC} is missing"));
    }
    let output = Command::new(DEBIAN_RUSTC)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {DEBIAN_RUSTC} --version: {e}"))?;
    // "rustc 1.96.0 (ac68faa20 2026-05-25) (built from a source tarball)"
    let reported = String::from_utf8_lossy(&output.stdout).to_string();
    let version = reported
        .split_whitespace()
        .nth(1)
        .and_then(parse_version)
        .ok_or_else(|| format!("{DEBIAN_RUSTC} --version printed {reported:?}"))?;
    let minimum = env::var("CARGO_PKG_RUST_VERSION")
        .ok()
        .as_deref()
        .and_then(parse_version)
        .unwrap_or((0, 0));
    if (version.0, version.1) < minimum {
        return Err(format!(
            "{DEBIAN_RUSTC} is {}.{}, older than the workspace's rust-version {}.{}",
            version.0, version.1, minimum.0, minimum.1
        ));
    }
    // rust-web-src installs /usr/src/rustc-<version>, linked from /usr/lib/rustlib/src/rust.
    let sources = fs::canonicalize(DEBIAN_CORE_SRC).unwrap_or_default();
    let sources_version = sources
        .ancestors()
        .filter_map(|dir| dir.file_name()?.to_str()?.strip_prefix("rustc-"))
        .find_map(parse_version);
    if let Some(sources_version) = sources_version {
        if (sources_version.0, sources_version.1) != (version.0, version.1) {
            return Err(format!(
                "the core sources at {} are for rustc {}.{}, but {DEBIAN_RUSTC} is {}.{}",
                sources.display(),
                sources_version.0,
                sources_version.1,
                version.0,
                version.1
            ));
        }
    }
    Ok(())
}

/// Reads "1.96.0" (or "1.96") into (1, 96).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Fails unless `path` is a little-endian 64-bit ELF object for the BPF machine.
fn check_bpf_object(path: &Path) -> Result<(), String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let is_bpf = bytes.len() > 20
        && bytes.starts_with(b"\x7fELF")
        && bytes[4] == 2 // 64-bit
        && bytes[5] == 1 // little-endian
        && u16::from_le_bytes([bytes[18], bytes[19]]) == EM_BPF;
    if is_bpf {
        Ok(())
    } else {
        Err(format!(
            "{} is not a little-endian BPF ELF object",
            path.display()
        ))
    }
}
