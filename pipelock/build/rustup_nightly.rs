//! Whether a rustup `nightly` toolchain with the `rust-src` component is installed: the
//! second way to build `core` for the BPF target. Shared by `pipelock/build.rs` (which picks
//! the toolchain) and `xtask` (which skips Debian's Rust packages when this is true).

use std::process::Command;

/// True when `rustup` lists `rust-src` among the nightly toolchain's installed components.
pub fn has_rust_src() -> bool {
    Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .is_ok_and(|out| {
            out.status.success()
                && String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .any(|l| l.trim().starts_with("rust-src"))
        })
}
