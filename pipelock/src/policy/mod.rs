//! Policy: findings plus mode turn into one verdict. This is the single decision path every
//! front door (and `pipelock check`) uses.
//!
//! - `strict` blocks every finding;
//! - `balanced` blocks high and critical findings and warns on the rest;
//! - `audit` never blocks: findings are warnings;
//! - `enforce: false` turns any block into a warning;
//! - a section whose `action` is `warn` only ever warns.

mod judgement;

use std::fmt;

use crate::config::{Config, Mode, Severity};
use crate::scan::Finding;

pub use judgement::Judgement;

/// What happens to the inspected traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Allow,
    Warn,
    Block,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "allow",
            Self::Warn => "warn",
            Self::Block => "block",
        })
    }
}

/// The enforcement settings a decision depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enforcement {
    pub mode: Mode,
    /// `enforce` from the config (omitted means true).
    pub enforce: bool,
    /// False when the section's `action` is `warn`.
    pub section_blocks: bool,
}

impl Enforcement {
    /// The mode and `enforce` of `config`; `section_blocks` is false when the section's
    /// action only warns.
    #[must_use]
    pub fn for_config(config: &Config, section_blocks: bool) -> Self {
        Self {
            mode: config.mode,
            enforce: config.enforce_enabled(),
            section_blocks,
        }
    }
}

/// The verdict for one finding.
#[must_use]
pub fn verdict_for(finding: &Finding, enforcement: Enforcement) -> Verdict {
    let by_mode = match enforcement.mode {
        Mode::Strict => Verdict::Block,
        Mode::Balanced if finding.severity >= Severity::High => Verdict::Block,
        Mode::Balanced | Mode::Audit => Verdict::Warn,
    };
    if by_mode == Verdict::Block && !(enforcement.enforce && enforcement.section_blocks) {
        Verdict::Warn
    } else {
        by_mode
    }
}

/// The verdict for all findings: the strictest one, `Allow` when there are none.
#[must_use]
pub fn decide(findings: &[Finding], enforcement: Enforcement) -> Verdict {
    findings
        .iter()
        .map(|f| verdict_for(f, enforcement))
        .max()
        .unwrap_or(Verdict::Allow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::ScannerKind;

    fn finding(severity: Severity) -> Finding {
        Finding {
            rule_id: "dlp.test".into(),
            rule_name: "test".into(),
            scanner: ScannerKind::Dlp,
            severity,
            span: 0..1,
            view: "raw",
            preview: String::new(),
        }
    }

    fn enforcement(mode: Mode) -> Enforcement {
        Enforcement {
            mode,
            enforce: true,
            section_blocks: true,
        }
    }

    #[test]
    fn modes() {
        let low = [finding(Severity::Low)];
        let critical = [finding(Severity::Low), finding(Severity::Critical)];
        assert_eq!(decide(&[], enforcement(Mode::Strict)), Verdict::Allow);
        assert_eq!(decide(&low, enforcement(Mode::Strict)), Verdict::Block);
        assert_eq!(decide(&low, enforcement(Mode::Balanced)), Verdict::Warn);
        assert_eq!(
            decide(&critical, enforcement(Mode::Balanced)),
            Verdict::Block
        );
        assert_eq!(decide(&critical, enforcement(Mode::Audit)), Verdict::Warn);
    }

    #[test]
    fn enforce_off_and_warn_sections_never_block() {
        let critical = [finding(Severity::Critical)];
        let mut e = enforcement(Mode::Strict);
        e.enforce = false;
        assert_eq!(decide(&critical, e), Verdict::Warn);
        let mut e = enforcement(Mode::Strict);
        e.section_blocks = false;
        assert_eq!(decide(&critical, e), Verdict::Warn);
    }
}
