//! `cargo xtask bench-mcp`: what Pipelock's MCP reverse proxy adds to a `tools/call` round
//! trip (issue #6, target ≤ 200 µs at p50 over direct) and how long scanning a `tools/list` of
//! 100 tools takes (target ≤ 1 ms). Sets up (the MCP test packages: server-everything), builds
//! the `pipelock` binary and the `mcp-bench` helper (in the e2e crate) in release, runs the
//! helper with `PIPELOCK_BIN` naming that `pipelock`, prints its markdown report and writes it
//! to `<target dir>/bench-mcp.md`. Needs no root; all traffic stays on 127.0.0.1.

use anyhow::Result;

use crate::{prerequisites, tasks};

pub fn run() -> Result<()> {
    prerequisites::install()?;
    tasks::run_bench_binary("mcp-bench", "bench-mcp.md")
}
