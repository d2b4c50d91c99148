//! `cargo xtask bench-intercept`: the cost of Pipelock's eBPF hooks on `connect()` (issue #5,
//! target ≤ 2 µs added per connect) and the latency of a small HTTP request through the
//! transparent path against the forward proxy (target: within 10%). Builds the `pipelock`
//! binary and the `intercept-bench` helper (in the e2e crate, which links the pipelock
//! library: xtask itself must build before the eBPF toolchain is installed), both in release,
//! runs the helper as root with `PIPELOCK_BIN` naming that `pipelock`, prints its markdown
//! tables and writes them to `<target dir>/bench-intercept.md`.

use anyhow::{bail, Result};

use crate::{prerequisites, tasks};

pub fn run() -> Result<()> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("bench-intercept loads eBPF programs and mounts a cgroup v2 and a bpffs: run it as root");
    }
    prerequisites::install()?;
    // The HTTP half runs a real `pipelock run`, built with the same profile as the helper.
    tasks::run_bench_binary("intercept-bench", "bench-intercept.md")
}
