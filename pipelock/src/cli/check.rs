//! `pipelock check`: scan text offline, exactly as the proxy would judge it, and exit 0
//! (allow or warn) or 1 (block). Nothing is sent anywhere.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use super::{EXIT_FAILURE, EXIT_OK};
use crate::config::{self, Config};
use crate::policy::{decide, verdict_for, Enforcement, Verdict};
use crate::scan::{Finding, TextDlp};

/// Which scanners run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Dlp,
    Injection,
    Url,
    Shell,
    All,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Text to scan as outbound data (DLP).
    #[arg(long, group = "input")]
    text: Option<String>,
    /// File to scan as outbound data (DLP); `-` reads standard input.
    #[arg(long, group = "input")]
    file: Option<PathBuf>,
    /// [not yet available] URL to scan through the URL layers.
    #[arg(long, group = "input")]
    url: Option<String>,
    /// [not yet available] Request body to scan (`-` for standard input).
    #[arg(long, group = "input")]
    body: Option<PathBuf>,
    /// [not yet available] Response to scan for prompt injection (`-` for standard input).
    #[arg(long, group = "input")]
    response: Option<PathBuf>,
    /// Which scanners run.
    #[arg(long, value_enum, default_value = "all")]
    kind: Kind,
    /// Print one JSON object with the verdict and every finding.
    #[arg(long)]
    json: bool,
    /// Config file (default: the embedded balanced config).
    #[arg(short, long)]
    config: Option<PathBuf>,
}

/// Exit code of `check` for usage errors and scanners this build does not have.
const EXIT_USAGE: u8 = 2;

pub fn check(args: &CheckArgs) -> anyhow::Result<u8> {
    if args.url.is_some() || args.body.is_some() || args.response.is_some() {
        eprintln!("error: not yet available: --url, --body and --response scanning arrive with the URL, body and injection scanners");
        return Ok(EXIT_USAGE);
    }
    if matches!(args.kind, Kind::Injection | Kind::Url | Kind::Shell) {
        eprintln!(
            "error: not yet available: the {:?} scanner is not in this build",
            args.kind
        );
        return Ok(EXIT_USAGE);
    }
    let text = match (&args.text, &args.file) {
        (Some(text), _) => text.clone(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read standard input as UTF-8 text")?;
            text
        }
        (None, Some(path)) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        (None, None) => bail!("nothing to scan: give --text, --file or --url"),
    };
    let config = match &args.config {
        Some(path) => config::load_file(path)?,
        None => config::default_config(),
    };
    if args.kind == Kind::All {
        eprintln!("note: only the DLP scanner is in this build; injection, URL and shell scanning are not yet available");
    }

    let scanner = TextDlp::new(&config.dlp).context("cannot build the DLP scanner")?;
    let findings = scanner.scan(&text);
    let enforcement = enforcement(&config);
    let verdict = decide(&findings, enforcement);
    if args.json {
        println!("{}", json_report(&config, verdict, &findings, enforcement));
    } else {
        print_human(verdict, &findings, enforcement);
    }
    Ok(if verdict == Verdict::Block {
        EXIT_FAILURE
    } else {
        EXIT_OK
    })
}

/// Outbound DLP findings follow the mode; there is no per-section action for them.
fn enforcement(config: &Config) -> Enforcement {
    Enforcement {
        mode: config.mode,
        enforce: config.enforce_enabled(),
        section_blocks: true,
    }
}

fn json_report(
    config: &Config,
    verdict: Verdict,
    findings: &[Finding],
    enforcement: Enforcement,
) -> serde_json::Value {
    serde_json::json!({
        "verdict": verdict.to_string(),
        "mode": config.mode.to_string(),
        "findings": findings.iter().map(|f| serde_json::json!({
            "rule_id": f.rule_id,
            "rule_name": f.rule_name,
            "scanner": f.scanner.to_string(),
            "severity": f.severity.to_string(),
            "verdict": verdict_for(f, enforcement).to_string(),
            "view": f.view,
            "span": [f.span.start, f.span.end],
            "preview": f.preview,
        })).collect::<Vec<_>>(),
    })
}

fn print_human(verdict: Verdict, findings: &[Finding], enforcement: Enforcement) {
    let plural = if findings.len() == 1 { "" } else { "s" };
    println!(
        "{}: {} finding{plural}",
        verdict.to_string().to_uppercase(),
        findings.len()
    );
    for f in findings {
        println!(
            "  {:<5} {:<8} {} ({}) in {} at {}..{}: {}",
            verdict_for(f, enforcement).to_string(),
            f.severity.to_string(),
            f.rule_id,
            f.rule_name,
            f.view,
            f.span.start,
            f.span.end,
            f.preview
        );
    }
}
