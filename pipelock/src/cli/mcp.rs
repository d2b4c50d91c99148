//! `pipelock mcp …`: the MCP commands. `mcp proxy -- CMD ARGS…` wraps a stdio MCP server
//! ([`crate::mcp::stdio`]).

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::{self, Config};
use crate::telemetry::{init_logging_stderr, Metrics};

#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// Wrap a stdio MCP server: relay newline-delimited JSON-RPC between this process's
    /// stdin/stdout and CMD's, every message through the MCP inspection; stderr passes through
    /// and CMD's exit code is returned.
    Proxy(ProxyArgs),
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Config file (default: the embedded balanced config). Logs go to stderr.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// The MCP server to run, after `--`: CMD ARGS…
    #[arg(last = true, required = true, num_args = 1.., value_name = "CMD")]
    command: Vec<OsString>,
}

pub fn mcp(command: McpCommand) -> anyhow::Result<u8> {
    match command {
        McpCommand::Proxy(args) => proxy(&args),
    }
}

fn proxy(args: &ProxyArgs) -> anyhow::Result<u8> {
    let config: Config = match &args.config {
        Some(path) => config::load_file(path)?,
        None => config::default_config(),
    };
    init_logging_stderr(&config.logging).context("cannot set up logging")?;
    let runtime = super::runtime::multi_thread()?;
    runtime.block_on(async {
        let kill_switch = Arc::new(crate::killswitch::KillSwitch::new(&config.kill_switch));
        let scanner = crate::scan::Scanner::new(&config).context("cannot build the scanners")?;
        let metrics = Metrics::new(&config.mode.to_string());
        let inspector = crate::mcp::build_inspector(&config, scanner, metrics.clone())
            .context("cannot set up MCP scanning")?;
        crate::mcp::stdio::run(&args.command, inspector, kill_switch, metrics)
            .await
            .context("pipelock mcp proxy")
    })
}
