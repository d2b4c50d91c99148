//! `pipelock bench`: how fast the scanners run on this machine, on one core.
//!
//! Each benchmark runs its operation in batches for about a second, and reports the best batch
//! (the least disturbed by the rest of the machine) as time per operation and throughput.
//! Inputs are generated deterministically: clean English prose, and a mixed corpus of JSON chat
//! bodies, prose and code with no secrets in it. A filter runs only the benchmarks whose name
//! contains it (`pipelock bench tools/list`), so one figure can be measured without the rest.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use super::{EXIT_CONFIG, EXIT_OK};
use crate::config::{self, Dlp};
use crate::scan::injection::InjectionScanner;
use crate::scan::url::UrlScanner;
use crate::scan::TextDlp;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Run only the benchmarks whose name (as printed) contains FILTER, e.g. `tools/list`
    /// or `dlp`; a sub-measurement ("of which: …") runs when its own name or its parent's
    /// matches.
    filter: Option<String>,
    /// Size of the mixed corpus for the throughput benchmark, in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    corpus_mib: u64,
    /// Seconds spent on each benchmark.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
}

// The benchmarks' names, as printed; a sub-measurement is indented under its parent.
const DLP: &str = "dlp, 10 KiB clean prose (all views)";
const DLP_RULES: &str = "  of which: rules on the raw text";
const DLP_VIEWS: &str = "  of which: building decoded views";
const DLP_SEEDS: &str = "  of which: BIP-39 seed phrases";
const INJECTION: &str = "injection, 10 KiB clean prose (all views)";
const URL: &str = "url, typical API URL (all layers, with DLP)";
const MCP_TOOLS_LIST: &str = "mcp, tools/list of 100 tools (poisoning+binding)";
const CORPUS: &str = "dlp + injection, mixed corpus (JSON chat, prose, code)";
const CORPUS_DLP: &str = "  dlp alone";
const CORPUS_INJECTION: &str = "  injection alone";
/// Every benchmark's name, in the order they run.
const NAMES: &[&str] = &[
    DLP,
    DLP_RULES,
    DLP_VIEWS,
    DLP_SEEDS,
    INJECTION,
    URL,
    MCP_TOOLS_LIST,
    CORPUS,
    CORPUS_DLP,
    CORPUS_INJECTION,
];

/// Which benchmarks run: all without a filter, else those whose name (or parent's name)
/// contains it.
struct Selection<'a> {
    filter: Option<&'a str>,
}

impl Selection<'_> {
    fn runs(&self, name: &str) -> bool {
        self.filter.is_none_or(|f| name.trim().contains(f))
    }

    /// A sub-measurement of `parent`.
    fn runs_under(&self, parent: &str, name: &str) -> bool {
        self.runs(parent) || self.runs(name)
    }
}

pub fn bench(args: &BenchArgs) -> anyhow::Result<u8> {
    let selection = Selection {
        filter: args.filter.as_deref(),
    };
    if !NAMES.iter().any(|name| selection.runs(name)) {
        eprintln!(
            "error: no benchmark name contains {:?}; the names are:\n{}",
            args.filter.as_deref().unwrap_or_default(),
            NAMES
                .iter()
                .map(|name| format!("  {}", name.trim()))
                .collect::<Vec<_>>()
                .join("\n")
        );
        return Ok(EXIT_CONFIG);
    }
    let config = config::default_config();
    // The environment of whoever runs the benchmark must not change the results.
    let dlp = TextDlp::with_env(
        &Dlp {
            scan_env: false,
            ..config.dlp.clone()
        },
        None,
    )
    .context("cannot build the DLP scanner")?
    .with_seed_phrases(&config.seed_phrase_detection);
    let budget = Duration::from_secs_f64(args.seconds.clamp(0.1, 60.0));

    let prose = prose(10 * 1024);
    if selection.runs(DLP) {
        let per_op = measure(budget, || {
            black_box(dlp.scan(black_box(&prose)));
        });
        report(DLP, per_op, prose.len());
    }
    if selection.runs_under(DLP, DLP_RULES) {
        let rules =
            crate::scan::dlp::DlpScanner::new(&config.dlp).context("cannot build the DLP rules")?;
        let per_op = measure(budget, || {
            black_box(rules.scan(black_box(&prose), "raw"));
        });
        report(DLP_RULES, per_op, prose.len());
    }
    if selection.runs_under(DLP, DLP_VIEWS) {
        let per_op = measure(budget, || {
            black_box(crate::scan::decode::decoded_views(black_box(&prose)));
        });
        report(DLP_VIEWS, per_op, prose.len());
    }
    if selection.runs_under(DLP, DLP_SEEDS) {
        let seeds = crate::scan::seed_phrase::SeedPhrases::new(&config.seed_phrase_detection);
        let per_op = measure(budget, || {
            black_box(seeds.scan(black_box(&prose), "raw"));
        });
        report(DLP_SEEDS, per_op, prose.len());
    }

    let injection = InjectionScanner::new(&config.response_scanning)
        .context("cannot build the injection scanner")?;
    if selection.runs(INJECTION) {
        let per_op = measure(budget, || {
            black_box(injection.scan(black_box(&prose)));
        });
        report(INJECTION, per_op, prose.len());
    }

    if selection.runs(URL) {
        let urls = UrlScanner::new(&config);
        let api_url = "https://api.openai.com/v1/chat/completions?model=gpt-4o&stream=true";
        let per_op = measure(budget, || {
            black_box(urls.scan(black_box(api_url), &dlp));
        });
        report(URL, per_op, api_url.len());
    }

    if selection.runs(MCP_TOOLS_LIST) {
        let mcp_config = config::Config {
            dlp: Dlp {
                scan_env: false,
                ..config.dlp.clone()
            },
            ..config.clone()
        };
        let mcp = crate::mcp::scan::McpScanner::new(
            &mcp_config,
            crate::scan::Scanner::new(&mcp_config).context("cannot build the scanners")?,
        )
        .context("cannot build the MCP scanner")?;
        let tools_list = crate::mcp::scan::sample_tools_list(100);
        let per_op = measure(budget, || {
            black_box(crate::mcp::scan::bench_tools_list(
                &mcp,
                black_box(&tools_list),
            ));
        });
        report(MCP_TOOLS_LIST, per_op, tools_list.to_string().len());
    }

    let corpus_parts = [CORPUS_DLP, CORPUS_INJECTION];
    if selection.runs(CORPUS) || corpus_parts.iter().any(|name| selection.runs(name)) {
        corpus_throughput(args.corpus_mib, &selection, &dlp, &injection);
    }
    Ok(EXIT_OK)
}

/// The throughput benchmarks over the mixed corpus of `corpus_mib` MiB.
fn corpus_throughput(
    corpus_mib: u64,
    selection: &Selection<'_>,
    dlp: &TextDlp,
    injection: &InjectionScanner,
) {
    let bytes = usize::try_from(corpus_mib).unwrap_or(64) * 1024 * 1024;
    let corpus = corpus(bytes);
    let chunks: Vec<&str> = split_chunks(&corpus, 16 * 1024);
    let mut findings = 0usize;
    let line = |name: &str, mbps: f64| {
        println!(
            "{name:<48} {mbps:>12.1} MB/s  ({corpus_mib} MiB, {} chunks of 16 KiB)",
            chunks.len()
        );
    };
    let dlp_only = selection
        .runs_under(CORPUS, CORPUS_DLP)
        .then(|| throughput(&chunks, |chunk| findings += dlp.scan(chunk).len()));
    let injection_only = selection
        .runs_under(CORPUS, CORPUS_INJECTION)
        .then(|| throughput(&chunks, |chunk| findings += injection.scan(chunk).len()));
    if selection.runs(CORPUS) {
        let both = throughput(&chunks, |chunk| {
            findings += dlp.scan(chunk).len() + injection.scan(chunk).len();
        });
        line(CORPUS, both);
    }
    if let Some(mbps) = dlp_only {
        line(CORPUS_DLP, mbps);
    }
    if let Some(mbps) = injection_only {
        line(CORPUS_INJECTION, mbps);
    }
    println!(
        "{:<48} {findings:>12}",
        "findings in the corpus (must be 0)"
    );
}

/// MB/s of running `op` over every chunk once.
fn throughput(chunks: &[&str], mut op: impl FnMut(&str)) -> f64 {
    let started = Instant::now();
    let mut bytes = 0usize;
    for chunk in chunks {
        op(black_box(chunk));
        bytes += chunk.len();
    }
    #[allow(clippy::cast_precision_loss)]
    let mbps = bytes as f64 / started.elapsed().as_secs_f64() / 1e6;
    mbps
}

/// The best time per operation over batches filling `budget`.
fn measure(budget: Duration, mut op: impl FnMut()) -> Duration {
    // Warm up and size a batch to about 10 ms.
    let started = Instant::now();
    let mut calibration = 0u32;
    while started.elapsed() < Duration::from_millis(10) {
        op();
        calibration += 1;
    }
    let batch = calibration.max(1);
    let mut best = Duration::MAX;
    let deadline = Instant::now() + budget;
    while Instant::now() < deadline {
        let t = Instant::now();
        for _ in 0..batch {
            op();
        }
        best = best.min(t.elapsed() / batch);
    }
    best
}

fn report(name: &str, per_op: Duration, bytes: usize) {
    #[allow(clippy::cast_precision_loss)]
    let mbps = bytes as f64 / per_op.as_secs_f64() / 1e6;
    println!(
        "{name:<48} {:>12.2} µs/op  {mbps:>10.1} MB/s",
        per_op.as_secs_f64() * 1e6
    );
}

const WORDS: &[&str] = &[
    "the",
    "report",
    "shows",
    "that",
    "our",
    "team",
    "shipped",
    "new",
    "features",
    "for",
    "customers",
    "in",
    "several",
    "regions",
    "and",
    "revenue",
    "grew",
    "while",
    "costs",
    "fell",
    "engineers",
    "reviewed",
    "design",
    "documents",
    "before",
    "every",
    "release",
    "of",
    "service",
    "latency",
    "improved",
    "after",
    "caching",
    "was",
    "added",
    "to",
    "database",
    "queries",
    "we",
    "will",
    "continue",
    "measuring",
    "results",
    "next",
    "quarter",
    "with",
    "partners",
    "users",
];

/// Deterministic clean English prose of about `len` bytes.
fn prose(len: usize) -> String {
    let mut out = String::with_capacity(len + 16);
    let mut state = 0x2545_f491_u32;
    let mut sentence = 0;
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let word = WORDS[(state as usize) % WORDS.len()];
        if sentence == 0 {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                out.extend(first.to_uppercase());
                out.push_str(chars.as_str());
            }
        } else {
            out.push_str(word);
        }
        sentence += 1;
        if sentence > 11 {
            out.push_str(". ");
            sentence = 0;
        } else {
            out.push(' ');
        }
    }
    out.truncate(len);
    out
}

/// A deterministic mixed corpus: JSON chat bodies, prose and code, about `len` bytes.
fn corpus(len: usize) -> String {
    let paragraph = prose(2048);
    let code = "fn handle(request: &Request) -> Result<Response, Error> {\n    let user = db.find_user(request.user_id)?;\n    if user.is_active() {\n        return Ok(Response::json(&user.profile()));\n    }\n    Err(Error::NotFound)\n}\n";
    let mut out = String::with_capacity(len + 4096);
    let mut i = 0usize;
    while out.len() < len {
        match i % 3 {
            0 => {
                out.push_str(r#"{"model":"gpt-4o","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":""#);
                out.push_str(&paragraph[..1024]);
                out.push_str(r#""}],"temperature":0.2,"stream":true}"#);
                out.push('\n');
            }
            1 => {
                out.push_str(&paragraph);
                out.push('\n');
            }
            _ => out.push_str(code),
        }
        i += 1;
    }
    out
}

/// Splits `text` into chunks of about `size` bytes on character boundaries.
fn split_chunks(text: &str, size: usize) -> Vec<&str> {
    let mut chunks = Vec::with_capacity(text.len() / size + 1);
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + size).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        chunks.push(&text[start..end]);
        start = end;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_selects_cases_by_name() {
        let all = Selection { filter: None };
        assert!(NAMES.iter().all(|name| all.runs(name)));
        let mcp = Selection {
            filter: Some("tools/list"),
        };
        let chosen: Vec<&str> = NAMES.iter().copied().filter(|n| mcp.runs(n)).collect();
        assert_eq!(chosen, [MCP_TOOLS_LIST]);
        // A parent's name runs its sub-measurements; a sub-measurement's own name runs it alone.
        let dlp = Selection {
            filter: Some("dlp, 10 KiB"),
        };
        assert!(dlp.runs_under(DLP, DLP_SEEDS));
        assert!(!dlp.runs(CORPUS));
        let seeds = Selection {
            filter: Some("BIP-39"),
        };
        assert!(seeds.runs_under(DLP, DLP_SEEDS) && !seeds.runs(DLP));
    }

    #[test]
    fn generated_inputs_are_clean_and_sized() {
        let dlp = TextDlp::with_env(&Dlp::default(), None).expect("dlp");
        let prose = prose(10 * 1024);
        assert_eq!(prose.len(), 10 * 1024);
        assert!(dlp.scan(&prose).is_empty());
        let corpus = corpus(256 * 1024);
        assert!(corpus.len() >= 256 * 1024);
        for chunk in split_chunks(&corpus, 16 * 1024) {
            assert!(
                dlp.scan(chunk).is_empty(),
                "the benchmark corpus must be clean"
            );
        }
    }
}
