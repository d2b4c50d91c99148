//! The command-line edge: argument parsing, exit codes, and error reporting with context.
//!
//! Each subcommand lives in its own module. Commands that later releases implement are already
//! declared (so `--help` documents the whole interface) and fail with a clear "not yet
//! available" error instead of pretending to work.

mod bench;
mod check;
mod check_mcp;
mod generate;
mod healthcheck;
mod intercept;
mod mcp;
mod run;
mod runtime;
mod tls;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{ConfigError, Preset};

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code for a failure other than a configuration error.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for an invalid configuration (and for command-line usage errors, as clap does).
pub const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "pipelock",
    version,
    about = "Security proxy for AI agents: DLP, prompt-injection and MCP scanning, transparent eBPF interception",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start Pipelock: the main listener (default 127.0.0.1:8888) serving /health and /metrics.
    Run(run::RunArgs),
    /// Check a config file: print what is enabled, or the first error with file:line:col.
    Validate(validate::ValidateArgs),
    /// Generate files (a documented config for a preset).
    #[command(subcommand)]
    Generate(GenerateCommand),
    /// Exit 0 when a running Pipelock answers 200 on /health (usable as a Docker HEALTHCHECK).
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Scan text, a URL, a request, a response or MCP traffic offline as the proxy would judge it; exit 0 allow/warn, 1 block, 2 usage.
    Check(check::CheckArgs),
    /// Serve like `run`, with the eBPF programs attached to the application's cgroup: all its TCP goes through Pipelock, DNS is scanned, other UDP is denied (needs root).
    Attach(run::AttachArgs),
    /// Detach the eBPF programs from a cgroup (unpins its links; the maps too when no cgroup is left).
    Detach(intercept::DetachArgs),
    /// Show the eBPF attachments (cgroup path and id, programs), map sizes, settings and counters.
    Status(intercept::StatusArgs),
    /// [not yet available: arrives with the scanner engine] Run attack scenarios against the config.
    Simulate(SimulateArgs),
    /// TLS interception certificate authority.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// MCP tools: wrap a stdio MCP server (`mcp proxy -- CMD ARGS…`).
    #[command(subcommand)]
    Mcp(mcp::McpCommand),
    /// Measure scanner speed on this machine (one core).
    Bench(bench::BenchArgs),
    /// Print the version.
    Version,
}

#[derive(Debug, Subcommand)]
enum GenerateCommand {
    /// Print a commented config file for a preset (it loads back unchanged).
    Config(generate::GenerateConfigArgs),
}

#[derive(Debug, Subcommand)]
enum TlsCommand {
    /// Generate the interception CA: an ECDSA P-256 certificate (ca.pem) and key (ca-key.pem, mode 0600).
    Init(tls::TlsInitArgs),
}

#[derive(Debug, Args)]
struct CgroupArgs {
    /// Path of the cgroup v2 directory of the application.
    #[arg(long)]
    cgroup: PathBuf,
}

#[derive(Debug, Args)]
struct SimulateArgs {
    /// Config file (default: the embedded balanced config).
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Print results as JSON.
    #[arg(long)]
    json: bool,
}

/// Parses the command line, runs the command, and maps the outcome to an exit code.
#[must_use]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            // Config errors already carry file:line:col and the field; print them as they are.
            if let Some(config_error) = error.downcast_ref::<ConfigError>() {
                eprintln!("error: {config_error}");
                return ExitCode::from(EXIT_CONFIG);
            }
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<u8> {
    // `mcp proxy` must outlive a client that closes its stdout long enough to stop its child.
    if !matches!(
        command,
        Command::Run(_) | Command::Attach(_) | Command::Mcp(_)
    ) {
        restore_default_sigpipe();
    }
    match command {
        Command::Run(args) => run::run(args),
        Command::Validate(args) => validate::validate(&args),
        Command::Generate(GenerateCommand::Config(args)) => generate::generate_config(&args),
        Command::Healthcheck(args) => healthcheck::healthcheck(&args),
        Command::Version => {
            println!("pipelock {}", env!("CARGO_PKG_VERSION"));
            Ok(EXIT_OK)
        }
        Command::Check(args) => check::check(&args),
        Command::Bench(args) => bench::bench(&args),
        Command::Mcp(command) => mcp::mcp(command),
        Command::Simulate(_) => not_yet_available(
            "attack simulation (pipelock simulate) is not yet available in this build",
        ),
        Command::Attach(args) => run::attach(args),
        Command::Detach(args) => intercept::detach(&args),
        Command::Status(args) => intercept::status(&args),
        Command::Tls(TlsCommand::Init(args)) => tls::init(&args),
    }
}

/// Lets one-shot commands end quietly when their output pipe closes (`pipelock check | head`),
/// as command-line tools do, instead of panicking on a failed print. The server keeps Rust's
/// default (SIGPIPE ignored), so a client that disconnects cannot kill it.
fn restore_default_sigpipe() {
    // SAFETY: resetting a signal disposition to its default has no memory effects.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Runs `f` with SIGPIPE ignored, then restores the one-shot default: for a command that
/// writes to a child's stdin (a redirect handler that exits without reading must be an I/O
/// error, not the end of Pipelock).
pub(crate) fn with_sigpipe_ignored<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: changing a signal disposition has no memory effects.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let out = f();
    restore_default_sigpipe();
    out
}

fn not_yet_available(what: &str) -> anyhow::Result<u8> {
    anyhow::bail!("not yet available: {what}")
}

/// Where a config comes from, for messages.
pub(crate) fn preset_name(preset: Preset) -> &'static str {
    match preset {
        Preset::Strict => "strict",
        Preset::Balanced => "balanced",
        Preset::Audit => "audit",
    }
}
