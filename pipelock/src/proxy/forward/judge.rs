//! Findings to a decision for the forward proxy, through the one policy path.

use hyper::{Response, StatusCode};

use crate::policy::{verdict_for, Enforcement, Verdict};
use crate::proxy::response::{self, Body};
use crate::proxy::ServerState;
use crate::scan::Finding;

/// What to do with the traffic so far.
#[derive(Debug, Default)]
pub struct Judgement {
    /// The first finding that blocks, if any.
    pub block: Option<Finding>,
    /// Findings that only warn.
    pub warnings: Vec<Finding>,
}

impl Judgement {
    /// Adds findings judged with the config's mode and `enforce`; `section_blocks` is false
    /// when the section's `action` only warns.
    pub fn add(&mut self, state: &ServerState, findings: Vec<Finding>, section_blocks: bool) {
        let enforcement = Enforcement {
            mode: state.config.mode,
            enforce: state.config.enforce_enabled(),
            section_blocks,
        };
        for finding in findings {
            match verdict_for(&finding, enforcement) {
                Verdict::Block if self.block.is_none() => self.block = Some(finding),
                Verdict::Block | Verdict::Allow => {}
                Verdict::Warn => self.warnings.push(finding),
            }
        }
    }

    /// The verdict and the scanner that decided it, for metrics.
    pub fn outcome(&self) -> (&'static str, String) {
        match (&self.block, self.warnings.first()) {
            (Some(f), _) => ("block", f.scanner.to_string()),
            (None, Some(f)) => ("warn", f.scanner.to_string()),
            (None, None) => ("allow", "none".to_string()),
        }
    }

    /// The refusal of a `kind` (`http`, `connect`) request, counted under its verdict: the
    /// blocking finding answered with `status` and named as blocking `what`.
    pub fn refuse(
        &self,
        state: &ServerState,
        kind: &str,
        status: StatusCode,
        what: &str,
    ) -> Response<Body> {
        self.record_refusal(state, kind, what);
        match &self.block {
            Some(finding) => response::blocked(status, finding, what),
            None => response::error(status, "blocked", what),
        }
    }

    /// Counts and logs a refusal without answering: for a front door that can only close
    /// the connection (the transparent listener before any protocol is spoken).
    pub fn record_refusal(&self, state: &ServerState, kind: &str, what: &str) {
        let (verdict, scanner) = self.outcome();
        state.metrics.record_proxy_request(kind, verdict, &scanner);
        if let Some(finding) = &self.block {
            tracing::warn!(rule = %finding.rule_id, scanner = %finding.scanner, kind, what, "blocked");
        }
    }

    /// The value of the `X-Pipelock-Warning` header: the rule ids that warned.
    pub fn warning_header(&self) -> Option<String> {
        if self.warnings.is_empty() {
            return None;
        }
        let mut ids: Vec<&str> = self.warnings.iter().map(|f| f.rule_id.as_str()).collect();
        ids.dedup();
        Some(ids.join(", "))
    }
}
