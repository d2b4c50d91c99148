//! What Pipelock's MCP reverse proxy adds to a tool call (issue #6, "Speed": a `tools/call`
//! round trip through Pipelock ≤ 200 µs over direct at p50; scanning a `tools/list` of 100
//! tools ≤ 1 ms), run by `cargo xtask bench-mcp`.
//!
//! 1. A fixed-cost MCP upstream in this process ([`upstream`]) and a real `pipelock run`
//!    relaying to it with every MCP scanner on and blocking ([`servers::pipelock_config`]);
//!    sequential `tools/call` round trips on keep-alive connections, direct and through
//!    Pipelock, interleaved in rounds ([`latency`]), every answer checked ([`client`]).
//! 2. The same against the reference server `@modelcontextprotocol/server-everything` (node,
//!    Streamable HTTP, answers as `text/event-stream`) and its `echo` tool.
//! 3. `pipelock bench` for the listing scan ([`scanner_bench`]).
//!
//! The report (markdown tables, the figures' spread, the exact config) goes to stdout,
//! progress to stderr. The exit status is non-zero only when a step could not run; a missed
//! target is a result. All traffic stays on 127.0.0.1; every child process is killed when the
//! run ends, also after an error or a signal.

#[path = "mcp-bench/client.rs"]
mod client;
#[path = "mcp-bench/http.rs"]
mod http;
#[path = "mcp-bench/latency.rs"]
mod latency;
#[path = "mcp-bench/scanner_bench.rs"]
mod scanner_bench;
#[path = "mcp-bench/servers.rs"]
mod servers;
#[path = "mcp-bench/upstream.rs"]
mod upstream;

use std::sync::atomic::Ordering;

use anyhow::{ensure, Result};
use serde_json::json;

use client::ToolCall;
use latency::{Comparison, Plan};
use servers::{Everything, PipelockMcp};
use upstream::FixedUpstream;

/// The issue's targets.
const TARGET_ADDED_US: f64 = 200.0;
const TARGET_TOOLS_LIST_US: f64 = 1000.0;

/// Rounds and calls against the fixed-cost upstream; `PIPELOCK_BENCH_ROUNDS` and
/// `PIPELOCK_BENCH_CALLS` override the rounds and the timed calls per round and path.
const FIXED: Plan = Plan {
    settle: 1000,
    rounds: 10,
    warmup: 100,
    calls: 500,
};
/// Against server-everything, slower: fewer calls (`PIPELOCK_BENCH_REFERENCE_CALLS`), after
/// more calls to let node's JIT settle.
const REFERENCE: Plan = Plan {
    settle: 2000,
    rounds: 10,
    warmup: 50,
    calls: 200,
};
/// The message `echo` is called with: a sentence of clean prose.
const ECHO_MESSAGE: &str = "Please summarise the quarterly report for the leadership meeting on \
    Thursday: revenue grew in every region, support response times improved after the new \
    rota, and the hiring plan for the second half is on track.";

fn main() {
    if let Err(error) = run() {
        eprintln!("mcp-bench: error: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let binary = pipelock_e2e::bench::pipelock_binary()?;
    let load_before = load_average();
    let fixed_plan = Plan {
        rounds: env_number("PIPELOCK_BENCH_ROUNDS", FIXED.rounds, 1..=100),
        calls: env_number("PIPELOCK_BENCH_CALLS", FIXED.calls, 1..=100_000),
        ..FIXED
    };
    let reference_plan = Plan {
        rounds: fixed_plan.rounds,
        calls: env_number(
            "PIPELOCK_BENCH_REFERENCE_CALLS",
            REFERENCE.calls,
            1..=100_000,
        ),
        ..REFERENCE
    };

    // 1. The fixed-cost upstream.
    let upstream = FixedUpstream::start()?;
    let config = servers::pipelock_config(&upstream.url());
    let pipelock = PipelockMcp::start(&binary, &config)?;
    eprintln!(
        "mcp-bench: fixed-cost upstream on {}, pipelock {} relaying from {}",
        upstream.addr,
        binary.display(),
        pipelock.mcp
    );
    let forecast = ToolCall {
        tool: upstream::TOOL.to_string(),
        arguments: json!({"city": "Lisbon", "days": 3}),
        expected_text: upstream::forecast_text().to_string(),
    };
    let mut fixed = latency::compare(
        "fixed-cost upstream",
        &upstream.url(),
        &pipelock.url(),
        &forecast,
        fixed_plan,
    )?;
    let per_path = u64::from(fixed_plan.settle)
        + u64::from(fixed_plan.warmup + fixed_plan.calls) * fixed_plan.rounds as u64;
    let answered = upstream.counts.tool_calls.load(Ordering::Relaxed);
    ensure!(
        answered == 2 * per_path,
        "the upstream answered {answered} tool calls, expected {}",
        2 * per_path
    );
    // The direct path opened a connection for its session, one to settle and one per round.
    let direct_connections = fixed_plan.rounds as u64 + 2;
    let connections = upstream.counts.connections.load(Ordering::Relaxed);
    let pipelock_connections = connections.saturating_sub(direct_connections);
    let fixed_observed = pipelock.observed()?;
    drop(pipelock);
    drop(upstream);

    // 2. server-everything.
    let everything = Everything::start()?;
    let pipelock = PipelockMcp::start(&binary, &servers::pipelock_config(&everything.url()))?;
    eprintln!(
        "mcp-bench: server-everything {} on {}, pipelock relaying from {}",
        everything.version,
        everything.url(),
        pipelock.mcp
    );
    let echo = ToolCall {
        tool: "echo".to_string(),
        arguments: json!({ "message": ECHO_MESSAGE }),
        expected_text: format!("Echo: {ECHO_MESSAGE}"),
    };
    let mut reference = latency::compare(
        "server-everything",
        &everything.url(),
        &pipelock.url(),
        &echo,
        reference_plan,
    )?;
    let reference_observed = pipelock.observed()?;
    drop(pipelock);
    let everything_version = everything.version.clone();
    drop(everything);

    // 3. The listing scan, and a yardstick of this machine's speed.
    eprintln!("mcp-bench: running `pipelock bench` for the tools/list scan");
    let scans = scanner_bench::per_op_us(&binary, scanner_bench::TOOLS_LIST)?;
    let scan_us = scans.first().copied().unwrap_or(f64::NAN);
    let yardsticks = scanner_bench::per_op_us(&binary, scanner_bench::INJECTION)?;

    // The report.
    println!("## MCP reverse proxy (`cargo xtask bench-mcp`)\n");
    println!("| Case | Direct p50 µs | Direct p90 µs | Through Pipelock p50 µs | Through Pipelock p90 µs | Added at p50 | Target (issue #6) | Met |");
    println!("|---|---|---|---|---|---|---|---|");
    row(
        "`tools/call`, fixed-cost upstream (in-process, `application/json`)",
        &mut fixed,
    );
    row(
        &format!(
            "`tools/call` of `echo`, server-everything {everything_version} (node {}, `text/event-stream`)",
            servers::node_version()
        ),
        &mut reference,
    );
    println!("\n| Case | Measured | Target (issue #6) | Met |");
    println!("|---|---|---|---|");
    println!(
        "| Scanning a `tools/list` of 100 tools (`pipelock bench tools/list`, one core, best batch; best of {} processes: {}) | {scan_us:.0} µs | ≤ {TARGET_TOOLS_LIST_US:.0} µs | {} |",
        scanner_bench::RUNS,
        figures(&scans),
        met(scan_us <= TARGET_TOOLS_LIST_US)
    );
    println!(
        "\nThis machine, for comparison with other runs: `pipelock bench` measures `{}` at \
{} µs/op; the load average (1 min) was {load_before} at the start and {} at the end \
(every process here shares the same cores).",
        scanner_bench::INJECTION,
        figures(&yardsticks),
        load_average()
    );

    println!(
        "\nEach `tools/call` case: one MCP session per path (`initialize`, `notifications/initialized`, `tools/list`) \
and untimed calls to settle (fixed-cost upstream {fixed_settle}, server-everything {reference_settle}), \
then {rounds} rounds; in each, each path gets a new keep-alive connection and untimed warm-up calls, then \
the timed calls alternate between the paths call by call, each pair in the other order than the last \
(each from the request's first byte written to the answer's last byte read; \
every answer parsed and checked against the expected result). \
Percentiles over all timed calls of a path. Fixed-cost upstream: {fixed_warmup} untimed and {fixed_calls} timed \
calls per round and path ({fixed_total} timed per path); `{tool}` answers {text_len} bytes of text. \
server-everything: {reference_warmup} untimed and {reference_calls} timed calls per round and path \
({reference_total} timed per path), `echo` of a {echo_len}-byte sentence; every answer is an SSE stream \
(chunked) of one event.",
        rounds = fixed_plan.rounds,
        fixed_settle = fixed_plan.settle,
        reference_settle = reference_plan.settle,
        fixed_warmup = fixed_plan.warmup,
        fixed_calls = fixed_plan.calls,
        fixed_total = fixed.direct.all.len(),
        tool = upstream::TOOL,
        text_len = upstream::forecast_text().len(),
        reference_warmup = reference_plan.warmup,
        reference_calls = reference_plan.calls,
        reference_total = reference.direct.all.len(),
        echo_len = ECHO_MESSAGE.len(),
    );
    println!(
        "\nSpread over rounds (each round's p50 through Pipelock minus the same round's p50 direct): \
fixed-cost upstream {}; server-everything {}. Round p50s: fixed-cost direct {}, through Pipelock {}; \
server-everything direct {}, through Pipelock {}.",
        spread(&fixed),
        spread(&reference),
        range(&fixed.direct),
        range(&fixed.proxied),
        range(&reference.direct),
        range(&reference.proxied),
    );
    println!(
        "\nUpstream connections: the fixed-cost upstream accepted {connections} connections, \
{direct_connections} of them from the direct path; Pipelock relayed {per_path} tool calls (and its \
session's opening) over {pipelock_connections} upstream connection(s)."
    );
    for (case, observed) in [
        ("fixed-cost upstream", &fixed_observed),
        ("server-everything", &reference_observed),
    ] {
        println!(
            "\nPipelock, {case}: verdicts (`pipelock_mcp_messages_total`) {}; mean scan time per message \
(`pipelock_scan_duration_seconds`) {}; {} log lines, {} at WARN or above.",
            verdicts(&observed.verdicts),
            scan_means(&observed.scan_mean_us),
            observed.log_lines,
            observed.warnings.len(),
        );
        for warning in observed.warnings.iter().take(3) {
            println!("\n    {warning}");
        }
    }
    println!(
        "\nPipelock (`pipelock run`, release build) ran with this config (the upstream URL differs per case):\n\n```yaml\n{}```",
        servers::pipelock_config("http://127.0.0.1:PORT/mcp")
    );
    Ok(())
}

/// One table row of a `tools/call` comparison.
fn row(case: &str, comparison: &mut Comparison) {
    let direct_p50 = comparison.direct.percentile_us(50);
    let direct_p90 = comparison.direct.percentile_us(90);
    let proxied_p50 = comparison.proxied.percentile_us(50);
    let proxied_p90 = comparison.proxied.percentile_us(90);
    let added = proxied_p50 - direct_p50;
    println!(
        "| {case} | {direct_p50:.1} | {direct_p90:.1} | {proxied_p50:.1} | {proxied_p90:.1} | {added:+.1} µs | ≤ {TARGET_ADDED_US:.0} µs | {} |",
        met(added <= TARGET_ADDED_US)
    );
}

fn met(yes: bool) -> &'static str {
    if yes {
        "yes"
    } else {
        "**no**"
    }
}

/// "a, b, c" µs figures, sorted.
fn figures(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "+a to +b µs (median +m)" of the rounds' added p50.
fn spread(comparison: &Comparison) -> String {
    let mut added = comparison.round_added_us();
    let low = added.first().copied().unwrap_or(f64::NAN);
    let high = added.last().copied().unwrap_or(f64::NAN);
    let middle = latency::median(&mut added);
    format!("{low:+.1} to {high:+.1} µs (median {middle:+.1})")
}

/// "a–b µs" of a path's round p50s.
fn range(samples: &pipelock_e2e::bench::RoundSamples) -> String {
    let (low, high) = samples.round_spread_us();
    format!("{low:.1}–{high:.1} µs")
}

/// "client messages (request) 12.3 µs, server messages (response) 4.5 µs".
fn scan_means(means: &[(String, f64)]) -> String {
    if means.is_empty() {
        return "not reported".to_string();
    }
    means
        .iter()
        .map(|(direction, mean)| {
            let whose = match direction.as_str() {
                "request" => "client messages",
                "response" => "server messages",
                other => other,
            };
            format!("{whose} {mean:.1} µs")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn verdicts(counts: &[(String, u64)]) -> String {
    if counts.is_empty() {
        return "none".to_string();
    }
    counts
        .iter()
        .map(|(verdict, count)| format!("{count} {verdict}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The 1-minute load average from `/proc/loadavg`, or "unknown".
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}

/// `name` from the environment when it parses and lies in `range`, else `default`.
fn env_number<T>(name: &str, default: T, range: std::ops::RangeInclusive<T>) -> T
where
    T: std::str::FromStr + PartialOrd,
{
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| range.contains(v))
        .unwrap_or(default)
}
