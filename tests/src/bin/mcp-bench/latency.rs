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

use anyhow::{Context, Result};

use crate::client::{Connection, Endpoint, Session, ToolCall};
use pipelock_e2e::bench::RoundSamples;

/// How many rounds, and calls per round and path.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Untimed calls on each path before the first round (JIT, caches, pools).
    pub settle: u32,
    pub rounds: usize,
    pub warmup: u32,
    pub calls: u32,
}

/// Both paths of one case.
#[derive(Debug, Default)]
pub struct Comparison {
    pub direct: RoundSamples,
    pub proxied: RoundSamples,
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

/// The median of `values` (sorted in place).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
