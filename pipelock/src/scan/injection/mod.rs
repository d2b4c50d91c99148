//! Prompt injection in inbound text (responses, tool results, tool descriptions).
//!
//! The text is scanned in several views so that evasions meet the same patterns: the text
//! itself lowercased (`raw`), its normalized form for non-ASCII text (`normalized`: invisible
//! characters, fullwidth forms, combining marks and homoglyphs folded), its leetspeak reading
//! (`leet`), and its decoded views (base64, hex, URL-encoding, escapes). In each view a keyword
//! pass decides which patterns' regexes run at all. Each pattern is reported once, in the first
//! view where it matched.

pub mod patterns;

use regex::{Regex, RegexBuilder};

use super::decode::{decoded_views_with, has_long_run};
use super::finding::{redact, rule_slug, Finding, ScannerKind};
use super::literals::LiteralTrigger;
use super::normalize::{fold_leet, lower_ascii, may_hold_leet, normalize};
use crate::config::{ResponseScanning, Severity};
use patterns::BUILTIN_PATTERNS;

/// Why the injection scanner could not be built.
#[derive(Debug, thiserror::Error)]
pub enum InjectionBuildError {
    #[error("injection pattern {id}: {source}")]
    Regex {
        id: String,
        #[source]
        source: regex::Error,
    },
    #[error("injection keyword prefilter: {0}")]
    Prefilter(#[from] aho_corasick::BuildError),
}

#[derive(Debug)]
struct Pattern {
    id: String,
    name: String,
    severity: Severity,
    regex: Regex,
}

/// The injection scanner for one config, built once and shared.
#[derive(Debug)]
pub struct InjectionScanner {
    patterns: Vec<Pattern>,
    keywords: LiteralTrigger,
    /// Patterns without keywords (custom ones), run on every view.
    always: Vec<usize>,
}

fn compile(id: &str, regex: &str) -> Result<Regex, InjectionBuildError> {
    RegexBuilder::new(regex)
        .case_insensitive(true)
        .size_limit(16 * 1024 * 1024)
        .build()
        .map_err(|source| InjectionBuildError::Regex {
            id: id.to_string(),
            source,
        })
}

impl InjectionScanner {
    /// Compiles the built-in patterns (unless `include_defaults` is off) and the config's
    /// custom `patterns`; a custom pattern with a built-in's name replaces it.
    ///
    /// # Errors
    /// A regex that does not compile.
    pub fn new(config: &ResponseScanning) -> Result<Self, InjectionBuildError> {
        let mut patterns = Vec::new();
        let mut keywords: Vec<(&str, usize)> = Vec::new();
        let mut always = Vec::new();
        if config.include_defaults {
            for builtin in BUILTIN_PATTERNS {
                let replaced = config
                    .patterns
                    .iter()
                    .any(|p| p.name.eq_ignore_ascii_case(builtin.name) || p.name == builtin.id);
                if replaced {
                    continue;
                }
                let index = patterns.len();
                keywords.extend(builtin.keywords.iter().map(|k| (*k, index)));
                patterns.push(Pattern {
                    id: format!("injection.{}", builtin.id),
                    name: builtin.name.to_string(),
                    severity: builtin.severity,
                    regex: compile(builtin.id, builtin.regex)?,
                });
            }
        }
        for custom in &config.patterns {
            let id = format!("injection.custom.{}", rule_slug(&custom.name));
            always.push(patterns.len());
            patterns.push(Pattern {
                regex: compile(&id, &custom.regex)?,
                id,
                name: custom.name.clone(),
                severity: custom.severity,
            });
        }
        Ok(Self {
            patterns,
            keywords: LiteralTrigger::new(keywords, false)?,
            always,
        })
    }

    /// How many patterns are compiled.
    #[must_use]
    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// Every pattern that matches `text` in any of its views, once each.
    #[must_use]
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut found = vec![false; self.patterns.len()];
        let mut findings = Vec::new();
        let (primary, primary_name) = match lower_ascii(text) {
            Some(lower) => (lower, "raw"),
            None => (normalize(text), "normalized"),
        };
        self.scan_view(&primary, primary_name, &mut found, &mut findings);
        if may_hold_leet(&primary) {
            self.scan_view(&fold_leet(&primary), "leet", &mut found, &mut findings);
        }
        for view in decoded_views_with(text, has_long_run(text.as_bytes())) {
            let lowered = lower_ascii(&view.text).unwrap_or_else(|| normalize(&view.text));
            self.scan_view(&lowered, view.name, &mut found, &mut findings);
        }
        findings
    }

    fn scan_view(
        &self,
        view: &str,
        name: &'static str,
        found: &mut [bool],
        findings: &mut Vec<Finding>,
    ) {
        let mut armed = vec![false; self.patterns.len()];
        self.keywords.arm(view.as_bytes(), &mut armed);
        for &index in &self.always {
            armed[index] = true;
        }
        for (index, pattern) in self.patterns.iter().enumerate() {
            if !armed[index] || found[index] {
                continue;
            }
            if let Some(hit) = pattern.regex.find(view) {
                found[index] = true;
                findings.push(Finding {
                    rule_id: pattern.id.clone(),
                    rule_name: pattern.name.clone(),
                    scanner: ScannerKind::Injection,
                    severity: pattern.severity,
                    span: hit.range(),
                    view: name,
                    preview: redact(hit.as_str()),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
