//! `pipelock check`: scan text offline, exactly as the proxy would judge it, and exit 0
//! (allow or warn) or 1 (block). Nothing is sent anywhere.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use super::{EXIT_FAILURE, EXIT_OK};
use crate::config::{self, Config, ResponseAction};
use crate::policy::{verdict_for, Enforcement, Verdict};
use crate::scan::{Finding, Scanner, ScannerKind};

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
    /// Text to scan (DLP, prompt injection and shell, as `--kind` says).
    #[arg(long, group = "input")]
    text: Option<String>,
    /// File to scan like `--text`; `-` reads standard input.
    #[arg(long, group = "input")]
    file: Option<PathBuf>,
    /// URL to scan through the URL layers (no DNS lookup unless `--resolve`).
    #[arg(long, group = "input")]
    url: Option<String>,
    /// With `--url`: resolve the host and check its addresses for SSRF (honours
    /// `trusted_domains`).
    #[arg(long, requires = "url")]
    resolve: bool,
    /// Outbound request body to scan for secrets (`-` for standard input); judged with
    /// `request_body_scanning.action`, and blocked when larger than `max_body_bytes`.
    #[arg(long, group = "input")]
    body: Option<PathBuf>,
    /// With `--body`: its content type, which decides how it is read: JSON keys, strings and
    /// numbers; form keys and values; multipart parts (base64 and quoted-printable undone);
    /// anything else as text. A body that does not parse as its type is blocked.
    #[arg(long, requires = "body")]
    content_type: Option<String>,
    /// Outbound request header `Name: value` to scan (repeatable; with or without `--body`).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Response to scan for prompt injection (`-` for standard input); judged with
    /// `response_scanning.action`.
    #[arg(long, group = "input")]
    response: Option<PathBuf>,
    /// MCP traffic to scan (`-` for standard input): one JSON-RPC message (or batch), or
    /// JSON lines of `{"direction": "request"|"response", "message": {…}}` scanned through one
    /// session (binding, drift, chains). A `message` given as a string is read as raw bytes
    /// (for `on_parse_error`). Redirected calls run their profile's handler.
    #[arg(long, group = "input", value_name = "FILE")]
    pub(super) mcp: Option<PathBuf>,
    /// Which scanners run.
    #[arg(long, value_enum, default_value = "all")]
    kind: Kind,
    /// Print one JSON object with the verdict and every finding.
    #[arg(long)]
    pub(super) json: bool,
    /// Config file (default: the embedded balanced config).
    #[arg(short, long)]
    pub(super) config: Option<PathBuf>,
}

/// Exit code of `check` for usage errors and scanners this build does not have.
pub(super) const EXIT_USAGE: u8 = 2;

pub fn check(args: &CheckArgs) -> anyhow::Result<u8> {
    if let Some(path) = &args.mcp {
        if !args.headers.is_empty() || args.kind != Kind::All {
            eprintln!("error: --mcp runs every MCP scanner; it takes no --header or --kind");
            return Ok(EXIT_USAGE);
        }
        return super::check_mcp::check_mcp(args, path);
    }
    let other_input =
        args.text.is_some() || args.file.is_some() || args.url.is_some() || args.response.is_some();
    if !args.headers.is_empty() && other_input {
        eprintln!("error: --header goes with --body (or alone), not with --text, --file, --url or --response");
        return Ok(EXIT_USAGE);
    }
    if args.body.is_some() || !args.headers.is_empty() {
        return check_request(args);
    }
    if let Some(url) = &args.url {
        return check_url(args, url);
    }
    if args.kind == Kind::Url {
        eprintln!("error: --kind url needs --url");
        return Ok(EXIT_USAGE);
    }
    let (text, response_side) = match (&args.text, &args.file, &args.response) {
        (Some(text), _, _) => (text.clone(), false),
        (None, Some(path), _) => (read_input(path)?, false),
        (None, None, Some(path)) => (read_input(path)?, true),
        (None, None, None) => bail!("nothing to scan: give --text, --file or --response"),
    };
    if response_side && args.kind == Kind::Dlp {
        eprintln!("error: --response is scanned for prompt injection; use --kind injection or all");
        return Ok(EXIT_USAGE);
    }
    let config = match &args.config {
        Some(path) => config::load_file(path)?,
        None => config::default_config(),
    };

    let scanner = Scanner::new(&config).context("cannot build the scanners")?;
    let blocking = enforcement(&config, true);
    let mut judged: Vec<(Finding, Enforcement)> = Vec::new();
    if !response_side && matches!(args.kind, Kind::Dlp | Kind::All) {
        judged.extend(
            scanner
                .scan_outbound(&text)
                .into_iter()
                .map(|f| (f, blocking)),
        );
    }
    if matches!(args.kind, Kind::Injection | Kind::All) {
        let response = enforcement(
            &config,
            config.response_scanning.action != ResponseAction::Warn,
        );
        judged.extend(
            scanner
                .scan_inbound(&text)
                .into_iter()
                .map(|f| (f, response)),
        );
    }
    if !response_side && matches!(args.kind, Kind::Shell | Kind::All) {
        judged.extend(scanner.scan_shell(&text).into_iter().map(|f| (f, blocking)));
    }
    report(&config, &judged, args.json)
}

/// `check --url`: the URL layers (with DLP on every component), and optionally the resolved
/// addresses.
fn check_url(args: &CheckArgs, raw: &str) -> anyhow::Result<u8> {
    if matches!(args.kind, Kind::Injection | Kind::Shell) {
        eprintln!(
            "error: --url is scanned with the URL and DLP scanners; use --kind url, dlp or all"
        );
        return Ok(EXIT_USAGE);
    }
    let config = match &args.config {
        Some(path) => config::load_file(path)?,
        None => config::default_config(),
    };
    let scanner = Scanner::new(&config).context("cannot build the scanners")?;
    let mut findings = scanner.scan_url(raw);
    if args.kind == Kind::Dlp {
        findings.retain(|f| f.scanner != crate::scan::ScannerKind::Url);
    }
    if args.resolve {
        if let Some(host) = url::Url::parse(raw)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
        {
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let addresses: Vec<std::net::IpAddr> =
                std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), 0))
                    .with_context(|| format!("cannot resolve {host}"))?
                    .map(|a| a.ip())
                    .collect();
            findings.extend(scanner.url().check_resolved(&host, &addresses));
        }
    }
    let enforcement = enforcement(&config, true);
    let judged: Vec<(Finding, Enforcement)> =
        findings.into_iter().map(|f| (f, enforcement)).collect();
    report(&config, &judged, args.json)
}

/// `check --body` / `--header`: outbound request DLP, as the proxy applies it to bodies and
/// headers (`request_body_scanning`).
fn check_request(args: &CheckArgs) -> anyhow::Result<u8> {
    let config = match &args.config {
        Some(path) => config::load_file(path)?,
        None => config::default_config(),
    };
    let section = &config.request_body_scanning;
    let scanner = Scanner::new(&config).context("cannot build the scanners")?;
    let enforcement = enforcement(&config, section.action == config::BlockOrWarn::Block);
    let mut judged: Vec<(Finding, Enforcement)> = Vec::new();
    // What cannot be scanned is blocked (audit mode and `enforce: false` only warn).
    let fail_closed = self::enforcement(&config, true);
    let unscannable =
        |rule_id: &str, reason: String| Finding::unscannable(rule_id, reason, ScannerKind::Dlp);
    // The body's Content-Encoding, when a --header gives one: the body is scanned decoded.
    let mut coding: Option<String> = None;
    for header in &args.headers {
        let Some((name, value)) = header.split_once(':') else {
            eprintln!("error: --header {header:?} is not `Name: value`");
            return Ok(EXIT_USAGE);
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-encoding") {
            coding = Some(value.trim().to_string());
        }
        if section.scans_header(name) {
            judged.extend(
                scanner
                    .scan_outbound(value.trim())
                    .into_iter()
                    .map(|f| (f, enforcement)),
            );
        }
    }
    if let Some(path) = &args.body {
        let body = read_input_bytes(path)?;
        let limit = usize::try_from(section.max_body_bytes).unwrap_or(usize::MAX);
        if body.len() > limit {
            let reason = format!(
                "Body of {} bytes exceeds max_body_bytes ({limit})",
                body.len()
            );
            judged.push((unscannable("body.too_large", reason), fail_closed));
        } else if section.enabled {
            let decoded = match &coding {
                Some(coding) => crate::scan::inflate::decode(&body, coding, limit)
                    .map_err(|e| ("body.encoded", format!("Body: {e}"))),
                None => Ok(body),
            };
            let segments = decoded.and_then(|body| {
                crate::scan::body::extract(&body, args.content_type.as_deref())
                    .map_err(|e| ("body.unparseable", e.to_string()))
            });
            match segments {
                Ok(segments) => {
                    for segment in segments {
                        judged.extend(
                            scanner
                                .scan_outbound(&segment.text)
                                .into_iter()
                                .map(|f| (f, enforcement)),
                        );
                    }
                }
                Err((rule, reason)) => judged.push((unscannable(rule, reason), fail_closed)),
            }
        }
    }
    report(&config, &judged, args.json)
}

/// Prints the verdict and findings and returns the exit code.
fn report(config: &Config, judged: &[(Finding, Enforcement)], json: bool) -> anyhow::Result<u8> {
    let verdict = judged
        .iter()
        .map(|(f, e)| verdict_for(f, *e))
        .max()
        .unwrap_or(Verdict::Allow);
    if json {
        println!("{}", json_report(config, verdict, judged));
    } else {
        print_human(verdict, judged);
    }
    Ok(if verdict == Verdict::Block {
        EXIT_FAILURE
    } else {
        EXIT_OK
    })
}

pub(super) fn read_input_bytes(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
        return Ok(bytes);
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn read_input(path: &std::path::Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input as UTF-8 text")?;
        return Ok(text);
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The mode and `enforce` of `config`; `section_blocks` is false when the section's action
/// only warns. (Outbound DLP has no per-section action: it follows the mode.)
fn enforcement(config: &Config, section_blocks: bool) -> Enforcement {
    Enforcement {
        mode: config.mode,
        enforce: config.enforce_enabled(),
        section_blocks,
    }
}

pub(super) fn finding_json(f: &Finding, verdict: Verdict) -> serde_json::Value {
    serde_json::json!({
        "rule_id": f.rule_id,
        "rule_name": f.rule_name,
        "scanner": f.scanner.to_string(),
        "severity": f.severity.to_string(),
        "verdict": verdict.to_string(),
        "view": f.view,
        "span": [f.span.start, f.span.end],
        "preview": f.preview,
    })
}

fn json_report(
    config: &Config,
    verdict: Verdict,
    judged: &[(Finding, Enforcement)],
) -> serde_json::Value {
    serde_json::json!({
        "verdict": verdict.to_string(),
        "mode": config.mode.to_string(),
        "findings": judged.iter().map(|(f, e)| finding_json(f, verdict_for(f, *e))).collect::<Vec<_>>(),
    })
}

fn print_human(verdict: Verdict, judged: &[(Finding, Enforcement)]) {
    let plural = if judged.len() == 1 { "" } else { "s" };
    println!(
        "{}: {} finding{plural}",
        verdict.to_string().to_uppercase(),
        judged.len()
    );
    for (f, e) in judged {
        println!(
            "  {:<5} {:<8} {} ({}) in {} at {}..{}: {}",
            verdict_for(f, *e).to_string(),
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
