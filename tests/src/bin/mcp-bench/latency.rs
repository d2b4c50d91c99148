//! Timing `tools/call` round trips, direct and through Pipelock, call by call in turn.
//!
//! One MCP session is opened per path (direct to the upstream, and through Pipelock to the
//! same upstream), and each path makes some untimed calls to settle. Each round, each path
//! gets a fresh keep-alive connection and some untimed calls; then the timed calls alternate
//! between the paths, each pair in the other order than the last, each timed from the
//! request's first byte written to the answer's last byte read (and checked). Taking the
//! paths in turn call by call means both meet the same state of the upstream and of the
//! machine: node's latency drifts with its JIT and garbage collector by more than Pipelock
//! adds, and a path timed in a block of its own would carry that drift into the difference.
//! A connection's latency also settles in one of a few levels (which cores the threads wake
//! on), so many short rounds average better than one long one; the spread of the rounds is
//! reported with the result.

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

    /// A new connection for a round, after `warmup` untimed calls on it.
    fn warm_connection(&mut self, call: &ToolCall, warmup: u32) -> Result<Connection> {
        let mut connection = Connection::open(&self.endpoint)?;
        for _ in 0..warmup {
            self.session
                .call(&mut connection, call)
                .with_context(|| format!("warm-up call {}", self.name))?;
        }
        Ok(connection)
    }

    /// One timed call, in ns.
    fn timed_call(&mut self, connection: &mut Connection, call: &ToolCall) -> Result<u64> {
        let started = Instant::now();
        self.session
            .call(connection, call)
            .with_context(|| format!("timed call {}", self.name))?;
        Ok(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX))
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
        // Each path gets a new connection; the timed calls then alternate between the paths,
        // each pair in the other order than the last, so that both meet the same state of
        // the upstream and the machine (a server's latency drifts with its JIT and garbage
        // collector, more than Pipelock adds).
        let mut direct_connection = direct.warm_connection(call, plan.warmup)?;
        let mut proxied_connection = proxied.warm_connection(call, plan.warmup)?;
        let capacity = usize::try_from(plan.calls).unwrap_or(0);
        let (mut direct_samples, mut proxied_samples) =
            (Vec::with_capacity(capacity), Vec::with_capacity(capacity));
        for pair in 0..plan.calls {
            if pair % 2 == 0 {
                direct_samples.push(direct.timed_call(&mut direct_connection, call)?);
                proxied_samples.push(proxied.timed_call(&mut proxied_connection, call)?);
            } else {
                proxied_samples.push(proxied.timed_call(&mut proxied_connection, call)?);
                direct_samples.push(direct.timed_call(&mut direct_connection, call)?);
            }
        }
        comparison.direct.add_round(direct_samples)?;
        comparison.proxied.add_round(proxied_samples)?;
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
