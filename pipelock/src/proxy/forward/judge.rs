//! Findings to a decision for the forward proxy, through the one policy path
//! ([`crate::policy::Judgement`]); this adds what needs the server: its config, metrics and
//! the HTTP refusal.

use hyper::{Response, StatusCode};

use crate::policy::Enforcement;
pub use crate::policy::Judgement;
use crate::proxy::response::{self, Body};
use crate::proxy::ServerState;
use crate::scan::Finding;

impl Judgement {
    /// Adds findings judged with the config's mode and `enforce`; `section_blocks` is false
    /// when the section's `action` only warns.
    pub fn add(&mut self, state: &ServerState, findings: Vec<Finding>, section_blocks: bool) {
        self.add_judged(
            findings,
            Enforcement::for_config(&state.config, section_blocks),
        );
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
}
