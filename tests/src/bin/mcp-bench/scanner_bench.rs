//! Figures from Pipelock's own micro-benchmark, `pipelock bench FILTER`, which runs only the
//! cases whose name contains FILTER on one core and reports the best batch's time per
//! operation. The second target, scanning a `tools/list` of 100 tools, is its case
//! [`TOOLS_LIST`] (a realistic 100-tool listing scanned as the first one of a fresh session:
//! poisoning, drift pinning, session binding); [`INJECTION`] is reported next to it as a
//! yardstick of the machine's speed, comparable with the README's Performance table.
//!
//! Each figure is the best of [`RUNS`] processes: on a 2-core VM a process's figure lands in
//! one of two levels (for the listing scan about 1.6 ms or about 2.5 ms), whatever the core
//! it runs on, so one process is not enough to tell.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use pipelock_e2e::{describe, run_with_timeout};

/// The case of the `tools/list` target, as `pipelock bench` names it.
pub const TOOLS_LIST: &str = "mcp, tools/list of 100 tools (poisoning+binding)";
/// The yardstick case.
pub const INJECTION: &str = "injection, 10 KiB clean prose (all views)";
/// How long `pipelock bench` may take for one case (it runs about a second).
const TIMEOUT: Duration = Duration::from_secs(120);
/// How many `pipelock bench` processes measure each figure.
pub const RUNS: usize = 3;

/// The microseconds per operation of `case` in each of [`RUNS`] processes, sorted (the best
/// first).
pub fn per_op_us(binary: &Path, case: &str) -> Result<Vec<f64>> {
    let mut figures = (0..RUNS)
        .map(|_| run_once(binary, case))
        .collect::<Result<Vec<f64>>>()?;
    figures.sort_by(f64::total_cmp);
    Ok(figures)
}

/// Microseconds per operation of `case`, from one `binary bench CASE`.
fn run_once(binary: &Path, case: &str) -> Result<f64> {
    let mut command = Command::new(binary);
    command.env_remove("PIPELOCK_LOG").arg("bench").arg(case);
    let output = run_with_timeout(command, None, TIMEOUT)?;
    if !output.status.success() {
        bail!("`pipelock bench {case:?}` failed\n{}", describe(&output));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    parse(&text, case)
        .with_context(|| format!("no {case:?} figure in `pipelock bench` output:\n{text}"))
}

/// The µs/op figure of `case` in `pipelock bench` output.
fn parse(text: &str, case: &str) -> Option<f64> {
    let line = text.lines().find(|line| line.starts_with(case))?;
    let mut words = line[case.len()..].split_whitespace();
    let value = words.next()?.parse().ok()?;
    (words.next()? == "µs/op").then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_figure() {
        let text = format!("{TOOLS_LIST:<48}       412.30 µs/op        66.1 MB/s\n");
        assert_eq!(parse(&text, TOOLS_LIST), Some(412.3));
        assert_eq!(parse("dlp, 10 KiB    5.80 µs/op", TOOLS_LIST), None);
    }
}
