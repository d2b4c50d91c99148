//! DLP: credentials and identifiers in outbound text.
//!
//! Regexes are the slow part, so a rule's regex only runs when its cheap trigger fired: one
//! Aho-Corasick pass finds every literal prefix (`AKIA`, `ghp_`, `sk-ant-`, …), one
//! ASCII-case-insensitive pass finds assignment keywords (`password`, `secret`, …), and one
//! byte pass notices long digit runs (cards, SSNs, IBANs) and long token runs (formats without
//! a prefix). Clean prose usually fires nothing and costs those three linear passes.

mod checks;
pub mod rules;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::Regex;

use super::finding::{redact, Finding, ScannerKind};
use crate::config::{Dlp, Severity};
use rules::{BuiltinRule, Check, Trigger, BUILTIN_RULES};

/// Digits (with spaces and dashes between them) that make a run worth checking.
const DIGIT_RUN_MIN_DIGITS: usize = 9;
/// Token characters in a row that make a run worth checking.
const TOKEN_RUN_MIN: usize = 24;

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
    exact: AhoCorasick,
    /// Rules armed by each literal of `exact` (a literal such as `-----BEGIN ` arms several).
    exact_rules: Vec<Vec<usize>>,
    folded: AhoCorasick,
    folded_rules: Vec<Vec<usize>>,
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
        let mut exact_literals: Vec<&str> = Vec::new();
        let mut exact_rules: Vec<Vec<usize>> = Vec::new();
        let mut folded_literals: Vec<&str> = Vec::new();
        let mut folded_rules: Vec<Vec<usize>> = Vec::new();

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
                        add_literals(
                            &mut exact_literals,
                            &mut exact_rules,
                            literals,
                            index,
                            false,
                        );
                        Gate::Literal
                    }
                    Trigger::Folded(literals) => {
                        add_literals(
                            &mut folded_literals,
                            &mut folded_rules,
                            literals,
                            index,
                            true,
                        );
                        Gate::Literal
                    }
                    Trigger::DigitRun => Gate::DigitRun,
                    Trigger::TokenRun => Gate::TokenRun,
                });
            }
        }
        for pattern in &config.patterns {
            let id = format!("dlp.custom.{}", slug(&pattern.name));
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

        // Leftmost-longest, non-overlapping: at a position where both `sk-` and `sk-ant-`
        // start, only the longer literal arms its rule, which is the only one that can match
        // there. This keeps the automaton's fast prefilters usable.
        let exact = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&exact_literals)?;
        let folded = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .ascii_case_insensitive(true)
            .build(&folded_literals)?;
        Ok(Self {
            rules,
            gates,
            exact,
            exact_rules,
            folded,
            folded_rules,
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
        let mut armed = vec![false; self.rules.len()];
        for hit in self.exact.find_iter(text) {
            for &rule in &self.exact_rules[hit.pattern().as_usize()] {
                armed[rule] = true;
            }
        }
        for hit in self.folded.find_iter(text) {
            for &rule in &self.folded_rules[hit.pattern().as_usize()] {
                armed[rule] = true;
            }
        }
        let (digit_run, token_run) = runs(text.as_bytes());
        for (armed, gate) in armed.iter_mut().zip(&self.gates) {
            match gate {
                Gate::DigitRun => *armed = digit_run,
                Gate::TokenRun => *armed = token_run,
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

/// Adds `literals` for rule `index`, sharing an entry when another rule has the same literal.
fn add_literals<'a>(
    all: &mut Vec<&'a str>,
    rules: &mut Vec<Vec<usize>>,
    literals: &[&'a str],
    index: usize,
    fold_case: bool,
) {
    for literal in literals {
        let existing = all.iter().position(|l| {
            if fold_case {
                l.eq_ignore_ascii_case(literal)
            } else {
                l == literal
            }
        });
        match existing {
            Some(at) => rules[at].push(index),
            None => {
                all.push(literal);
                rules.push(vec![index]);
            }
        }
    }
}

/// One pass over the bytes: is there a digit run (≥ 9 digits joined by spaces or dashes) and
/// a token run (≥ 24 token characters)?
fn runs(bytes: &[u8]) -> (bool, bool) {
    let (mut digits, mut digit_run) = (0usize, false);
    let (mut token, mut token_run) = (0usize, false);
    for &b in bytes {
        if b.is_ascii_digit() {
            digits += 1;
        } else if b != b' ' && b != b'-' {
            digits = 0;
        }
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            token += 1;
        } else {
            token = 0;
        }
        digit_run |= digits >= DIGIT_RUN_MIN_DIGITS;
        token_run |= token >= TOKEN_RUN_MIN;
        if digit_run && token_run {
            break;
        }
    }
    (digit_run, token_run)
}

/// A rule-id-safe form of a pattern name: `Internal Token` → `internal_token`.
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
