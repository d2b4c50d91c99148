//! DLP: credentials and identifiers in outbound text.
//!
//! Regexes are the slow part, so a rule's regex only runs when its cheap trigger fired: one
//! Aho-Corasick pass finds every literal prefix (`AKIA`, `ghp_`, `sk-ant-`, …), one
//! ASCII-case-insensitive pass finds assignment keywords (`password`, `secret`, …), and one
//! byte pass notices long digit runs (cards, SSNs, IBANs) and long token runs (formats without
//! a prefix). Clean prose usually fires nothing and costs those three linear passes.

mod checks;
pub mod rules;

use regex::Regex;

use super::finding::{redact, rule_slug, Finding, ScannerKind};
use super::literals::LiteralTrigger;
use super::runs::{runs, Runs};
use crate::config::{Dlp, Severity};
use rules::{BuiltinRule, Check, Trigger, BUILTIN_RULES};

/// How far before a `:`/`=` (past quotes and spaces) a case-folded keyword may start.
const KEYWORD_REACH: usize = 40;

/// A compiled rule.
#[derive(Debug)]
struct Rule {
    id: String,
    name: String,
    severity: Severity,
    regex: Regex,
    check: Option<Check>,
}

/// When a rule's regex runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Literal,
    DigitRun,
    TokenRun,
    Always,
}

/// Why a DLP scanner could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DlpBuildError {
    #[error("DLP rule {id}: {source}")]
    Regex {
        id: String,
        #[source]
        source: regex::Error,
    },
    #[error("DLP literal prefilter: {0}")]
    Prefilter(#[from] aho_corasick::BuildError),
}

/// The DLP scanner for one config, built once and shared.
#[derive(Debug)]
pub struct DlpScanner {
    rules: Vec<Rule>,
    gates: Vec<Gate>,
    /// Literal prefixes (case-sensitive).
    exact: LiteralTrigger,
    /// Literal prefixes of long-token formats (case-sensitive), searched only in text with a
    /// long token run.
    token: LiteralTrigger,
    /// Assignment keywords (ASCII case-insensitive).
    folded: LiteralTrigger,
}

impl DlpScanner {
    /// Compiles the built-in rules (unless `include_defaults` is off) and the config's custom
    /// patterns. A custom pattern with a built-in's name replaces it.
    ///
    /// # Errors
    /// A regex that does not compile (config validation normally catches it first).
    pub fn new(config: &Dlp) -> Result<Self, DlpBuildError> {
        let mut rules = Vec::new();
        let mut gates = Vec::new();
        let mut exact_literals: Vec<(&str, usize)> = Vec::new();
        let mut token_literals: Vec<(&str, usize)> = Vec::new();
        let mut folded_literals: Vec<(&str, usize)> = Vec::new();

        let overridden = |builtin: &BuiltinRule| {
            config
                .patterns
                .iter()
                .any(|p| p.name.eq_ignore_ascii_case(builtin.name) || p.name == builtin.id)
        };
        if config.include_defaults {
            for builtin in BUILTIN_RULES.iter().filter(|b| !overridden(b)) {
                let index = rules.len();
                rules.push(Rule {
                    id: format!("dlp.{}", builtin.id),
                    name: builtin.name.to_string(),
                    severity: builtin.severity,
                    regex: Regex::new(builtin.regex).map_err(|source| DlpBuildError::Regex {
                        id: builtin.id.to_string(),
                        source,
                    })?,
                    check: builtin.check,
                });
                gates.push(match builtin.trigger {
                    Trigger::Exact(literals) => {
                        exact_literals.extend(literals.iter().map(|l| (*l, index)));
                        Gate::Literal
                    }
                    Trigger::Token(literals) => {
                        token_literals.extend(literals.iter().map(|l| (*l, index)));
                        Gate::Literal
                    }
                    Trigger::Folded(literals) => {
                        folded_literals.extend(literals.iter().map(|l| (*l, index)));
                        Gate::Literal
                    }
                    Trigger::DigitRun => Gate::DigitRun,
                    Trigger::TokenRun => Gate::TokenRun,
                });
            }
        }
        for pattern in &config.patterns {
            let id = format!("dlp.custom.{}", rule_slug(&pattern.name));
            // As in the reference, custom patterns match case-insensitively.
            let regex = Regex::new(&format!("(?i){}", pattern.regex)).map_err(|source| {
                DlpBuildError::Regex {
                    id: id.clone(),
                    source,
                }
            })?;
            rules.push(Rule {
                id,
                name: pattern.name.clone(),
                severity: pattern.severity,
                regex,
                check: pattern.validator.map(|v| match v {
                    crate::config::Validator::Luhn => Check::Luhn,
                    crate::config::Validator::Mod97 => Check::Mod97,
                    crate::config::Validator::Wif => Check::Wif,
                    crate::config::Validator::Aba => Check::Aba,
                }),
            });
            gates.push(Gate::Always);
        }

        let exact = LiteralTrigger::new(exact_literals, false)?;
        let token = LiteralTrigger::new(token_literals, false)?;
        let folded = LiteralTrigger::new(folded_literals, true)?;
        Ok(Self {
            rules,
            gates,
            exact,
            token,
            folded,
        })
    }

    /// How many rules are compiled.
    #[must_use]
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Every finding in `text`; `view` names the view of the input being scanned.
    #[must_use]
    pub fn scan(&self, text: &str, view: &'static str) -> Vec<Finding> {
        self.scan_with(text, view, runs(text.as_bytes()))
    }

    /// Like [`DlpScanner::scan`], with the byte-class pass over `text` already done.
    #[must_use]
    pub fn scan_with(&self, text: &str, view: &'static str, runs: Runs) -> Vec<Finding> {
        let mut armed = vec![false; self.rules.len()];
        self.exact.arm(text.as_bytes(), &mut armed);
        if runs.token {
            self.token.arm(text.as_bytes(), &mut armed);
        }
        // Every case-folded rule needs its keyword right before a `:` or `=` (an assignment,
        // or a URL scheme), so only the text just before those separators is searched.
        for window in keyword_windows(text.as_bytes()) {
            self.folded.arm(&text.as_bytes()[window], &mut armed);
        }
        for (armed, gate) in armed.iter_mut().zip(&self.gates) {
            match gate {
                Gate::DigitRun => *armed = runs.digits,
                Gate::TokenRun => *armed = runs.token,
                Gate::Always => *armed = true,
                Gate::Literal => {}
            }
        }

        let mut findings = Vec::new();
        for (rule, _) in self.rules.iter().zip(&armed).filter(|(_, a)| **a) {
            for found in rule.regex.find_iter(text) {
                if rule
                    .check
                    .is_some_and(|check| !checks::passes(check, found.as_str()))
                {
                    continue;
                }
                findings.push(Finding {
                    rule_id: rule.id.clone(),
                    rule_name: rule.name.clone(),
                    scanner: ScannerKind::Dlp,
                    severity: rule.severity,
                    span: found.range(),
                    view,
                    preview: redact(found.as_str()),
                });
            }
        }
        findings
    }
}

/// The byte ranges that may hold a case-folded keyword: before each `:` or `=`, skipping
/// back over quotes and whitespace, [`KEYWORD_REACH`] bytes. Overlapping ranges are merged.
fn keyword_windows(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut windows: Vec<std::ops::Range<usize>> = Vec::new();
    for separator in memchr::memchr2_iter(b':', b'=', bytes) {
        let mut end = separator;
        while end > 0 && matches!(bytes[end - 1], b' ' | b'\t' | b'\r' | b'\n' | b'"' | b'\'') {
            end -= 1;
        }
        let start = end.saturating_sub(KEYWORD_REACH);
        // Keep the separator itself: `accountkey=` and `postgres://` include it.
        let end = (separator + 3).min(bytes.len());
        match windows.last_mut() {
            Some(last) if last.end >= start => last.end = last.end.max(end),
            _ => windows.push(start..end),
        }
    }
    windows
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod run_tests {
    use super::*;

    #[test]
    fn keyword_windows_reach_back_over_quotes_and_spaces() {
        let text = br#"{"password"     :   "hunter2"}"#;
        let windows = keyword_windows(text);
        assert!(windows.iter().any(|w| w.start == 0), "{windows:?}");
        let far = format!("password{}= x", " ".repeat(200));
        let windows = keyword_windows(far.as_bytes());
        assert_eq!(windows[0].start, 0, "{windows:?}");
        assert!(keyword_windows(b"no separators here").is_empty());
    }
}
