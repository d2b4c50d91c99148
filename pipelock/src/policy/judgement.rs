//! Findings collected into one decision: the first finding that blocks, and those that only
//! warn. Every front door (the forward proxy, the MCP scanner, `pipelock check`) judges its
//! findings through here, so a finding means the same thing wherever it is seen.

use super::{verdict_for, Enforcement, Verdict};
use crate::scan::Finding;

/// What to do with the traffic so far.
#[derive(Debug, Default, Clone)]
pub struct Judgement {
    /// The first finding that blocks, if any.
    pub block: Option<Finding>,
    /// Findings that only warn.
    pub warnings: Vec<Finding>,
    /// Findings that would also block, after the first (kept for reports and logs).
    pub more_blocks: Vec<Finding>,
}

impl Judgement {
    /// Adds findings judged under `enforcement`.
    pub fn add_judged(&mut self, findings: Vec<Finding>, enforcement: Enforcement) {
        for finding in findings {
            match verdict_for(&finding, enforcement) {
                Verdict::Block if self.block.is_none() => self.block = Some(finding),
                Verdict::Block => self.more_blocks.push(finding),
                Verdict::Allow => {}
                Verdict::Warn => self.warnings.push(finding),
            }
        }
    }

    /// The verdict so far.
    #[must_use]
    pub fn verdict(&self) -> Verdict {
        if self.block.is_some() {
            Verdict::Block
        } else if self.warnings.is_empty() {
            Verdict::Allow
        } else {
            Verdict::Warn
        }
    }

    /// The verdict and the scanner that decided it, for metrics.
    #[must_use]
    pub fn outcome(&self) -> (&'static str, String) {
        match (&self.block, self.warnings.first()) {
            (Some(f), _) => ("block", f.scanner.to_string()),
            (None, Some(f)) => ("warn", f.scanner.to_string()),
            (None, None) => ("allow", "none".to_string()),
        }
    }

    /// The value of the `X-Pipelock-Warning` header: the rule ids that warned.
    #[must_use]
    pub fn warning_header(&self) -> Option<String> {
        if self.warnings.is_empty() {
            return None;
        }
        let mut ids: Vec<&str> = self.warnings.iter().map(|f| f.rule_id.as_str()).collect();
        ids.dedup();
        Some(ids.join(", "))
    }
}
