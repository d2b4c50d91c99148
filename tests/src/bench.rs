//! Helpers shared by the benchmark binaries (`intercept-bench`, `mcp-bench`): the `pipelock`
//! binary to measure, and latency samples collected in rounds.

use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};

/// The `pipelock` binary to measure: `$PIPELOCK_BIN` (set by the `cargo xtask bench-*` tasks
/// to the release build), else the one next to the running benchmark
/// (`target/<profile>/pipelock`).
///
/// # Errors
/// Neither exists.
pub fn pipelock_binary() -> Result<PathBuf> {
    let path = match std::env::var_os("PIPELOCK_BIN") {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()?
            .parent()
            .context("this binary has no directory")?
            .join("pipelock"),
    };
    ensure!(
        path.is_file(),
        "the pipelock binary {} does not exist: build it (`cargo build --release -p pipelock`) or set PIPELOCK_BIN",
        path.display()
    );
    Ok(path)
}

/// Percentile `p` (0–100) of sorted samples.
#[must_use]
pub fn percentile(sorted: &[u64], p: usize) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = (sorted.len() * p / 100).min(sorted.len() - 1);
    #[allow(clippy::cast_precision_loss)]
    let value = sorted[index] as f64;
    value
}

/// One case's (or path's) samples in ns over all rounds, and each round's p50.
#[derive(Debug, Default)]
pub struct RoundSamples {
    pub all: Vec<u64>,
    pub round_p50: Vec<f64>,
}

impl RoundSamples {
    /// Adds one round's samples.
    ///
    /// # Errors
    /// The round has no samples.
    pub fn add_round(&mut self, mut samples: Vec<u64>) -> Result<()> {
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

    /// (p50, p90) in µs over every sample.
    pub fn p50_p90_us(&mut self) -> (f64, f64) {
        (self.percentile_us(50), self.percentile_us(90))
    }

    /// (lowest, highest) round p50 in µs.
    #[must_use]
    pub fn round_spread_us(&self) -> (f64, f64) {
        let low = self.round_p50.iter().copied().fold(f64::INFINITY, f64::min);
        let high = self.round_p50.iter().copied().fold(0.0, f64::max);
        (low / 1000.0, high / 1000.0)
    }
}
