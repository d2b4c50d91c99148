//! Prompt injection in inbound text (responses, tool results, tool descriptions).
//!
//! The text is scanned in several views so that evasions meet the same patterns: the text
//! lowercased with whitespace runs as single spaces (`lowercased`; line-anchored patterns use
//! the lowercased text as it is, `raw`), its normalized form for non-ASCII text (`normalized`: invisible
//! characters, fullwidth forms, combining marks and homoglyphs folded), its leetspeak reading
//! (`leet`), and its decoded views (base64, hex, URL-encoding, escapes). In each view a keyword
//! pass decides which patterns' regexes run at all. Each pattern is reported once, in the first
//! view where it matched.

pub mod patterns;

use regex::{Regex, RegexBuilder};

use super::decode::{decoded_views_with, has_long_run};
use super::finding::{redact, rule_slug, Finding, ScannerKind};
use super::keywords::{KeywordError, Keywords};
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
    #[error("injection keywords: {0}")]
    Keywords(#[from] KeywordError),
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
    /// Keywords of the patterns matched on whitespace-collapsed views.
    keywords: Keywords,
    /// Keywords of the line-anchored patterns, matched on the lowercased text as it is.
    line_keywords: Keywords,
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
        let mut line_keywords: Vec<(&str, usize)> = Vec::new();
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
                let target = if builtin.lines {
                    &mut line_keywords
                } else {
                    &mut keywords
                };
                target.extend(builtin.keywords.iter().map(|k| (*k, index)));
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
            keywords: Keywords::new(keywords)?,
            line_keywords: Keywords::new(line_keywords)?,
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
        let views = &self.keywords;
        let ascii = lower_ascii(text);
        let (primary, primary_name) = match ascii {
            Some(lowered) => (lowered, "lowercased"),
            None => (normalize(text), "normalized"),
        };
        // The line-anchored patterns need the text lowercased with its line breaks kept. Their
        // keywords hold no whitespace, so ASCII text only needs that view when the primary
        // view holds one of them.
        let mut line_hit = primary_name == "normalized";
        if !line_hit {
            self.line_keywords
                .for_each_hit(primary.as_bytes(), |_, _| line_hit = true);
        }
        if line_hit {
            let lowered = text.to_lowercase();
            self.scan_view(
                &lowered,
                "raw",
                &self.line_keywords,
                false,
                &mut found,
                &mut findings,
            );
        }
        self.scan_view(
            &primary,
            primary_name,
            views,
            true,
            &mut found,
            &mut findings,
        );
        if may_hold_leet(&primary) {
            let leet = fold_leet(&primary);
            self.scan_view(&leet, "leet", views, false, &mut found, &mut findings);
        }
        for view in decoded_views_with(text, has_long_run(text.as_bytes())) {
            let lowered = lower_ascii(&view.text).unwrap_or_else(|| normalize(&view.text));
            self.scan_view(&lowered, view.name, views, false, &mut found, &mut findings);
        }
        findings
    }

    /// `text` with every match of every pattern, found in the text as it is (any case),
    /// replaced by `[REDACTED: <pattern name>]` (the `strip` action); `None` when nothing
    /// matched there. Matches that only show in a normalized or decoded view cannot be cut out,
    /// so the caller scans the result again and blocks when anything is left.
    #[must_use]
    pub fn strip(&self, text: &str) -> Option<String> {
        let mut out = std::borrow::Cow::Borrowed(text);
        for pattern in &self.patterns {
            let replaced = pattern
                .regex
                .replace_all(&out, format!("[REDACTED: {}]", pattern.name).as_str());
            if let std::borrow::Cow::Owned(changed) = replaced {
                out = std::borrow::Cow::Owned(changed);
            }
        }
        match out {
            std::borrow::Cow::Owned(changed) => Some(changed),
            std::borrow::Cow::Borrowed(_) => None,
        }
    }

    fn scan_view(
        &self,
        view: &str,
        name: &'static str,
        trigger: &Keywords,
        with_custom: bool,
        found: &mut [bool],
        findings: &mut Vec<Finding>,
    ) {
        // Each armed pattern's regex runs only in windows around its keyword hits: every match
        // contains one of its keywords, and no match reaches further than `WINDOW_REACH`.
        let mut windows: Vec<Vec<std::ops::Range<usize>>> = vec![Vec::new(); self.patterns.len()];
        trigger.for_each_hit(view.as_bytes(), |index, hit| {
            if !found[index] {
                push_window(&mut windows[index], window_around(view, hit));
            }
        });
        for &index in self.always.iter().filter(|_| with_custom) {
            if !found[index] {
                windows[index] = std::iter::once(0..view.len()).collect();
            }
        }
        for (index, pattern) in self.patterns.iter().enumerate() {
            for window in &windows[index] {
                let Some(hit) = pattern.regex.find(&view[window.clone()]) else {
                    continue;
                };
                let span = window.start + hit.start()..window.start + hit.end();
                found[index] = true;
                findings.push(Finding {
                    rule_id: pattern.id.clone(),
                    rule_name: pattern.name.clone(),
                    scanner: ScannerKind::Injection,
                    severity: pattern.severity,
                    preview: redact(&view[span.clone()]),
                    span,
                    view: name,
                });
                break;
            }
        }
    }
}

/// How far around a keyword a match of its pattern may reach.
const WINDOW_REACH: usize = 256;

/// The window around a keyword hit: [`WINDOW_REACH`] bytes each side, starting at the hit's
/// line start when that is closer (line-anchored patterns need it), on character boundaries.
fn window_around(view: &str, hit: std::ops::Range<usize>) -> std::ops::Range<usize> {
    let bytes = view.as_bytes();
    let mut start = hit.start.saturating_sub(WINDOW_REACH);
    if let Some(newline) = memchr::memrchr(b'\n', &bytes[start..hit.start]) {
        start += newline + 1;
    }
    let mut end = (hit.end + WINDOW_REACH).min(view.len());
    while !view.is_char_boundary(start) {
        start -= 1;
    }
    while !view.is_char_boundary(end) {
        end += 1;
    }
    start..end
}

/// Adds `window` to a sorted list of windows, merging it with the last one when they touch.
fn push_window(windows: &mut Vec<std::ops::Range<usize>>, window: std::ops::Range<usize>) {
    match windows.last_mut() {
        Some(last) if window.start <= last.end => last.end = last.end.max(window.end),
        _ => windows.push(window),
    }
}

#[cfg(test)]
mod tests;
