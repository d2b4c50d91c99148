//! Developer tasks: `cargo xtask setup | build | run | test | bench-proxy | bench-intercept |
//! bench-mcp`.
//!
//! `setup` installs what the build needs, idempotently, from Debian's packages and crates.io
//! only; every other task runs it first, so the README's two commands work on a fresh machine.

mod bench_intercept;
mod bench_mcp;
mod bench_proxy;
mod prerequisites;
mod tasks;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Pipelock developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install the prerequisites (Debian packages, bpf-linker) that are missing.
    Setup,
    /// Set up, then build the pipelock binary.
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Set up, build (release) and start `pipelock run` with the given arguments (default: the
    /// embedded balanced config).
    Run {
        /// Arguments for `pipelock run`, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, build, and run every test (`cargo test --workspace`, less the eBPF crate); arguments after `--` go to
    /// cargo test.
    Test {
        /// Arguments for `cargo test`, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, build (release) and benchmark Pipelock's forward proxy against tinyproxy,
    /// squid and a direct connection on loopback; prints a markdown table and writes it to
    /// `<target dir>/bench-proxy.md`.
    BenchProxy,
    /// Set up, build (release) and measure what the eBPF interception hooks add to a
    /// `connect()`, and a small HTTP request through the transparent path against the forward
    /// proxy (as root); prints markdown tables and writes them to
    /// `<target dir>/bench-intercept.md`.
    BenchIntercept,
    /// Set up, build (release) and measure what the MCP reverse proxy adds to a `tools/call`
    /// round trip, against an in-process fixed-cost MCP server and the reference
    /// server-everything, and how long scanning a `tools/list` of 100 tools takes (no root
    /// needed); prints markdown tables and writes them to `<target dir>/bench-mcp.md`.
    BenchMcp,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => prerequisites::install(),
        Task::Build { release } => prerequisites::install().and_then(|()| tasks::build(release)),
        Task::Run { args } => prerequisites::install().and_then(|()| tasks::run(&args)),
        Task::Test { args } => prerequisites::install().and_then(|()| tasks::test(&args)),
        Task::BenchProxy => bench_proxy::run(),
        Task::BenchIntercept => bench_intercept::run(),
        Task::BenchMcp => bench_mcp::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            // A failed command's own exit code (cargo test's 101, pipelock's 2, …) is ours.
            error
                .downcast_ref::<tasks::CommandFailed>()
                .map_or(ExitCode::FAILURE, |failed| {
                    ExitCode::from(failed.exit_code())
                })
        }
    }
}
