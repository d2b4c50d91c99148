//! Timing `tools/call` round trips, direct and through Pipelock, interleaved in rounds.
//!
//! One MCP session is opened per path (direct to the upstream, and through Pipelock to the
//! same upstream), and each path makes some untimed calls to settle. Each round, each path
//! gets a fresh keep-alive connection, some untimed calls, then the timed ones, each from the
//! request's first byte written to the answer's last byte read (and checked). The paths
//! alternate which goes first. A connection's latency settles in one of a few levels (which
//! cores the threads wake on), so many short rounds average better than one long one; the
//! spread of the rounds is reported with the result.

use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::client::{Connection, Endpoint, Session, ToolCall};

/// How many rounds, and calls per round and path.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Untimed calls on each path before the first round (JIT, caches, pools).
    pub settle: u32,
    pub rounds: usize,
    pub warmup: u32,
    pub calls: u32,
}

/// The samples of one path over all rounds, and each round's p50.
#[derive(Debug, Default)]
pub struct PathSamples {
    all: Vec<u64>,
    round_p50: Vec<f64>,
}

impl PathSamples {
    fn add_round(&mut self, mut samples: Vec<u64>) -> Result<()> {
        if samples.is_empty() {
            bail!("a round returned no samples");
        }
        samples.sort_unstable();
        self.round_p50.push(percentile(&samples, 50));
        self.all.extend(samples);
        Ok(())
    }

    /// Percentile `p` (0–100) over every sample, in µs.
    pub fn percentile_us(&mut self, p: usize) -> f64 {
        self.all.sort_unstable();
        percentile(&self.all, p) / 1000.0
    }

    pub fn count(&self) -> usize {
        self.all.len()
    }
}

/// Both paths of one case.
#[derive(Debug, Default)]
pub struct Comparison {
    pub direct: PathSamples,
    pub proxied: PathSamples,
}

impl Comparison {
    /// Each round's p50 through Pipelock minus the same round's p50 direct, in µs, sorted.
    pub fn round_added_us(&self) -> Vec<f64> {
        let mut added: Vec<f64> = self
            .proxied
            .round_p50
            .iter()
            .zip(&self.direct.round_p50)
            .map(|(p, d)| (p - d) / 1000.0)
            .collect();
        added.sort_by(f64::total_cmp);
        added
    }

    /// (lowest, highest) round p50 of a path, in µs.
    pub fn round_range_us(samples: &PathSamples) -> (f64, f64) {
        let low = samples
            .round_p50
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let high = samples.round_p50.iter().copied().fold(0.0, f64::max);
        (low / 1000.0, high / 1000.0)
    }
}

/// One path: its endpoint and its open session.
struct Path {
    name: &'static str,
    endpoint: Endpoint,
    session: Session,
}

impl Path {
    fn open(name: &'static str, url: &str, call: &ToolCall) -> Result<Self> {
        let endpoint = Endpoint::parse(url)?;
        let mut connection = Connection::open(&endpoint)?;
        let session = Session::open(&mut connection, call)
            .with_context(|| format!("opening an MCP session {name} ({url})"))?;
        Ok(Self {
            name,
            endpoint,
            session,
        })
    }

    /// `count` untimed calls on a new connection.
    fn settle(&mut self, call: &ToolCall, count: u32) -> Result<()> {
        let mut connection = Connection::open(&self.endpoint)?;
        for _ in 0..count {
            self.session
                .call(&mut connection, call)
                .with_context(|| format!("settling call {}", self.name))?;
        }
        Ok(())
    }

    /// One round: a new connection, `warmup` untimed calls, then `calls` timed ones.
    fn round(&mut self, call: &ToolCall, plan: Plan) -> Result<Vec<u64>> {
        let mut connection = Connection::open(&self.endpoint)?;
        for _ in 0..plan.warmup {
            self.session
                .call(&mut connection, call)
                .with_context(|| format!("warm-up call {}", self.name))?;
        }
        let mut samples = Vec::with_capacity(usize::try_from(plan.calls).unwrap_or(0));
        for _ in 0..plan.calls {
            let started = Instant::now();
            self.session
                .call(&mut connection, call)
                .with_context(|| format!("timed call {}", self.name))?;
            samples.push(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
        Ok(samples)
    }
}

/// Times `call` direct to `direct_url` and through Pipelock at `proxied_url` (which relays to
/// the same server), `plan.rounds` rounds; `label` names the case in progress lines.
pub fn compare(
    label: &str,
    direct_url: &str,
    proxied_url: &str,
    call: &ToolCall,
    plan: Plan,
) -> Result<Comparison> {
    let mut direct = Path::open("direct", direct_url, call)?;
    let mut proxied = Path::open("through Pipelock", proxied_url, call)?;
    direct.settle(call, plan.settle)?;
    proxied.settle(call, plan.settle)?;
    let mut comparison = Comparison::default();
    for round in 0..plan.rounds {
        // Each round starts with the other path, so neither always runs first.
        if round % 2 == 0 {
            comparison.direct.add_round(direct.round(call, plan)?)?;
            comparison.proxied.add_round(proxied.round(call, plan)?)?;
        } else {
            comparison.proxied.add_round(proxied.round(call, plan)?)?;
            comparison.direct.add_round(direct.round(call, plan)?)?;
        }
        eprintln!(
            "mcp-bench: {label}: round {}: p50 direct {:.1} µs, through Pipelock {:.1} µs",
            round + 1,
            comparison.direct.round_p50[round] / 1000.0,
            comparison.proxied.round_p50[round] / 1000.0
        );
    }
    Ok(comparison)
}

/// Percentile `p` (0–100) of sorted samples.
pub fn percentile(sorted: &[u64], p: usize) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = (sorted.len() * p / 100).min(sorted.len() - 1);
    #[allow(clippy::cast_precision_loss)]
    let value = sorted[index] as f64;
    value
}

/// The median of `values` (sorted in place).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
