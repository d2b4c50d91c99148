//! Tool-call chains: sequences of calls that are harmless one by one and dangerous together
//! (read a credential, then send something over the network).
//!
//! Each call is classified into categories from its tool name (split on `_ - . /` and
//! camelCase; priority exec > persist > env > network > write > read > list, as the
//! reference) and its arguments (a command or path that installs persistence makes the call
//! `persist`; a path to a credential file makes a read `credential`). `tool_categories` in
//! the config overrides the name classification. A pattern matches when its steps appear in
//! order among the last `window_size` calls (within `window_seconds`) with at most `max_gap`
//! unrelated calls between consecutive steps; it is reported on the call that completes it.
//!
//! The section's `action` applies to the built-in patterns too (the reference hard-codes
//! them to warn; `pattern_overrides` still sets any pattern's action by name).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::Value;

use super::strings::leaves;
use crate::config::Severity::{self, Critical, High, Medium};
use crate::config::{BlockOrWarn, ToolChainDetection};
use crate::scan::finding::{Finding, ScannerKind};

/// (name, steps, severity) of every built-in pattern.
#[rustfmt::skip]
pub const BUILTIN_CHAINS: &[(&str, &[&str], Severity)] = &[
    ("read-then-exec", &["read", "exec"], High),
    ("read-write-send", &["read", "write", "network"], Critical),
    ("env-then-network", &["env", "network"], Critical),
    ("env-then-write", &["env", "write"], High),
    ("directory-scan", &["list", "list", "read"], Medium),
    ("recon-then-exfil", &["list", "read", "network"], High),
    ("credential-then-network", &["credential", "network"], Critical),
    ("write-execute", &["write", "exec"], High),
    ("write-chmod-execute", &["write", "exec", "exec"], Critical),
    ("read-sensitive-write", &["credential", "write"], Medium),
    ("shell-burst", &["exec", "exec", "exec", "exec"], High),
    ("write-persist", &["write", "persist"], Critical),
    ("persist-callback", &["persist", "network"], Critical),
];

/// Name keywords per category, in priority order.
#[rustfmt::skip]
const NAME_KEYWORDS: &[(&str, &[&str])] = &[
    ("exec", &["exec", "execute", "run", "shell", "bash", "sh", "zsh", "command", "cmd", "terminal", "eval", "spawn", "process", "powershell", "script", "subprocess"]),
    ("persist", &["cron", "crontab", "schedule", "scheduler", "systemd", "launchd", "startup", "autostart", "persist", "service"]),
    ("env", &["env", "environment", "getenv", "printenv", "environ", "secrets", "variables"]),
    ("network", &["http", "https", "fetch", "request", "curl", "wget", "post", "upload", "send", "webhook", "url", "download", "browse", "browser", "email", "mail", "slack", "socket", "net", "network", "api", "web", "ping"]),
    ("write", &["write", "create", "save", "edit", "update", "put", "append", "modify", "patch", "insert", "store", "move", "copy", "delete", "remove", "rename", "mkdir", "chmod"]),
    ("read", &["read", "get", "cat", "open", "load", "view", "show", "query", "retrieve", "head", "tail", "content", "contents", "file"]),
    ("list", &["list", "ls", "dir", "directory", "find", "search", "glob", "tree", "scan", "enumerate", "walk", "grep", "locate"]),
];

/// Name segments that mean reading, which keep `persist` from being chosen (`read_crontab`).
const READ_SEGMENTS: &[&str] = &["read", "get", "list", "show", "view", "cat"];

/// Argument text that installs persistence.
const PERSIST_ARGS: &str = r"(?i)\bcrontab\s+-e\b|\bcrontab\s+\S+|\bsystemctl\s+(?:--user\s+)?enable\b|\blaunchctl\s+load\b|/etc/cron|/var/spool/cron|/etc/systemd/|\.config/systemd/|/library/launch(?:agents|daemons)/|\.config/autostart/|\.(?:bashrc|bash_profile|zshrc|profile)\b";
/// Argument text that names a credential file.
const CREDENTIAL_ARGS: &str = r"(?i)\.ssh/|id_rsa|id_ed25519|id_ecdsa|\.aws/credentials|/etc/shadow|\.git-credentials|\.netrc|\.npmrc|\.pypirc|\.docker/config\.json|\.kube/config|kubeconfig|(?:^|/)\.env\b|\.gnupg/";

/// One call in the window.
#[derive(Debug, Clone)]
struct Call {
    categories: Vec<String>,
    at: Instant,
}

/// A chain pattern ready to match.
#[derive(Debug, Clone)]
struct Pattern {
    name: String,
    steps: Vec<String>,
    severity: Severity,
    blocks: bool,
}

/// The chain detector for one config (shared); the window lives in [`ChainWindow`].
#[derive(Debug)]
pub struct ChainDetector {
    patterns: Vec<Pattern>,
    overrides: Vec<(String, String)>,
    window_size: usize,
    window: Duration,
    max_gap: usize,
    persist_args: Regex,
    credential_args: Regex,
}

/// The recent calls of one session.
#[derive(Debug, Default, Clone)]
pub struct ChainWindow {
    calls: VecDeque<Call>,
}

impl ChainDetector {
    /// Builds the patterns (built-in and custom) of `config`.
    ///
    /// # Errors
    /// Only if a built-in regex does not compile (a test proves they do).
    pub fn new(config: &ToolChainDetection) -> Result<Self, regex::Error> {
        let section_blocks = config.action == BlockOrWarn::Block;
        let blocks_for = |name: &str, default: bool| {
            config
                .pattern_overrides
                .get(name)
                .map_or(default, |a| *a == BlockOrWarn::Block)
        };
        let mut patterns: Vec<Pattern> = BUILTIN_CHAINS
            .iter()
            .map(|(name, steps, severity)| Pattern {
                name: (*name).to_string(),
                steps: steps.iter().map(|s| (*s).to_string()).collect(),
                severity: *severity,
                blocks: blocks_for(name, section_blocks),
            })
            .collect();
        for custom in &config.custom_patterns {
            let own = custom
                .action
                .map_or(section_blocks, |a| a == BlockOrWarn::Block);
            patterns.push(Pattern {
                name: custom.name.clone(),
                steps: custom.sequence.iter().map(|s| s.to_lowercase()).collect(),
                severity: custom.severity,
                blocks: blocks_for(&custom.name, own),
            });
        }
        Ok(Self {
            patterns,
            overrides: config
                .tool_categories
                .iter()
                .map(|(k, v)| (k.clone(), v.to_lowercase()))
                .collect(),
            window_size: usize::try_from(config.window_size.max(1)).unwrap_or(usize::MAX),
            window: Duration::from_secs(config.window_seconds.max(1)),
            max_gap: usize::try_from(config.max_gap).unwrap_or(usize::MAX),
            persist_args: Regex::new(PERSIST_ARGS)?,
            credential_args: Regex::new(CREDENTIAL_ARGS)?,
        })
    }

    /// The categories of a call to `tool` with `arguments`.
    #[must_use]
    pub fn classify(&self, tool: &str, arguments: Option<&Value>) -> Vec<String> {
        let args_text: String = arguments
            .map(|a| {
                leaves(a, "")
                    .into_iter()
                    .filter(|l| !l.is_key)
                    .map(|l| l.text)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let mut categories: Vec<String> = match self.overrides.iter().find(|(k, _)| k == tool) {
            Some((_, category)) => vec![category.clone()],
            None => classify_name(tool)
                .map(str::to_string)
                .into_iter()
                .collect(),
        };
        let primary = categories.first().cloned().unwrap_or_default();
        if matches!(primary.as_str(), "exec" | "write") && self.persist_args.is_match(&args_text) {
            categories.insert(0, "persist".into());
        }
        if matches!(primary.as_str(), "read" | "exec" | "list" | "")
            && self.credential_args.is_match(&args_text)
        {
            categories.insert(0, "credential".into());
            if primary.is_empty() {
                categories.push("read".into());
            }
        }
        categories
    }

    /// Records a call in `window` and returns a finding (with whether the pattern's action
    /// blocks) for every pattern this call completes.
    pub fn record(
        &self,
        window: &mut ChainWindow,
        tool: &str,
        arguments: Option<&Value>,
        now: Instant,
    ) -> Vec<(Finding, bool)> {
        let categories = self.classify(tool, arguments);
        window
            .calls
            .retain(|c| now.saturating_duration_since(c.at) <= self.window);
        window.calls.push_back(Call {
            categories,
            at: now,
        });
        while window.calls.len() > self.window_size {
            window.calls.pop_front();
        }
        let mut out = Vec::new();
        let Some(current) = window.calls.back() else {
            return out;
        };
        // Only a pattern whose last step this call takes can be completed by it.
        let mut completing = self
            .patterns
            .iter()
            .filter(|p| {
                p.steps
                    .last()
                    .is_some_and(|last| current.categories.contains(last))
            })
            .peekable();
        if completing.peek().is_none() {
            return out;
        }
        let calls: Vec<&Call> = window.calls.iter().collect();
        for pattern in completing {
            if ends_with_chain(&calls, &pattern.steps, self.max_gap) {
                out.push((
                    Finding {
                        rule_id: format!("tool_chain.{}", pattern.name),
                        rule_name: format!(
                            "Tool Chain {} ({})",
                            pattern.name,
                            pattern.steps.join(" → ")
                        ),
                        scanner: ScannerKind::ToolChain,
                        severity: pattern.severity,
                        span: 0..0,
                        view: "session",
                        preview: format!("completed by {tool:?}"),
                    },
                    pattern.blocks,
                ));
            }
        }
        out
    }
}

/// The category of a tool name, by keyword priority.
#[must_use]
pub fn classify_name(tool: &str) -> Option<&'static str> {
    let segments = name_segments(tool);
    let has_read = segments.iter().any(|s| READ_SEGMENTS.contains(&s.as_str()));
    NAME_KEYWORDS
        .iter()
        .filter(|(category, _)| !(has_read && *category == "persist"))
        .find(|(_, words)| segments.iter().any(|s| words.contains(&s.as_str())))
        .map(|(category, _)| *category)
}

/// `readFile`, `read_file`, `fs.read-file` → `read`, `file`.
fn name_segments(tool: &str) -> Vec<String> {
    let mut segments = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in tool.chars() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                segments.push(std::mem::take(&mut current));
            }
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower && !current.is_empty() {
            segments.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_lowercase();
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        segments.push(current);
    }
    segments
}

/// Whether `steps` appear in order in `calls`, the last step on the last call, with at most
/// `max_gap` other calls between consecutive steps. Dynamic programming over (call, step):
/// linear in the window for each step, whatever `max_gap` is.
fn ends_with_chain(calls: &[&Call], steps: &[String], max_gap: usize) -> bool {
    let Some(first) = steps.first() else {
        return false;
    };
    // ends[i]: steps[..=j] can end on call i.
    let mut ends: Vec<bool> = calls.iter().map(|c| c.categories.contains(first)).collect();
    for step in &steps[1..] {
        let mut next = vec![false; calls.len()];
        // The most recent call where the previous step could end, scanning forward.
        let mut last_end: Option<usize> = None;
        for (i, call) in calls.iter().enumerate() {
            if call.categories.contains(step) {
                next[i] = last_end.is_some_and(|k| i - k - 1 <= max_gap);
            }
            if ends[i] {
                last_end = Some(i);
            }
        }
        ends = next;
    }
    ends.last().copied().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn detector() -> ChainDetector {
        ChainDetector::new(&ToolChainDetection {
            enabled: true,
            ..ToolChainDetection::default()
        })
        .expect("builds")
    }

    fn run(calls: &[(&str, Value)]) -> Vec<String> {
        let detector = detector();
        let mut window = ChainWindow::default();
        let now = Instant::now();
        let mut found = Vec::new();
        for (tool, args) in calls {
            for (f, _) in detector.record(&mut window, tool, Some(args), now) {
                found.push(f.rule_id);
            }
        }
        found
    }

    #[test]
    fn at_least_ten_builtins() {
        assert!(BUILTIN_CHAINS.len() >= 10);
    }

    #[test]
    fn classification() {
        let d = detector();
        assert_eq!(d.classify("read_file", None), vec!["read"]);
        assert_eq!(d.classify("runCommand", None), vec!["exec"]);
        assert_eq!(d.classify("http_request", None), vec!["network"]);
        assert_eq!(d.classify("read_crontab", None), vec!["read"]);
        assert_eq!(
            d.classify("read_file", Some(&json!({"path": "~/.ssh/id_rsa"}))),
            vec!["credential", "read"]
        );
        assert_eq!(
            d.classify("bash", Some(&json!({"command": "crontab -e"}))),
            vec!["persist", "exec"]
        );
        assert!(d.classify("add", None).is_empty());
    }

    #[test]
    fn chains_match_as_subsequences_within_max_gap() {
        let key = json!({"path": "/home/u/.ssh/id_rsa"});
        let url = json!({"url": "https://example.com"});
        let other = json!({"a": 1});
        let found = run(&[
            ("read_file", key.clone()),
            ("add", other.clone()),
            ("add", other.clone()),
            ("http_request", url.clone()),
        ]);
        assert!(
            found.contains(&"tool_chain.credential-then-network".to_string()),
            "{found:?}"
        );
        // Four unrelated calls in between: more than max_gap (3).
        let found = run(&[
            ("read_file", key),
            ("add", other.clone()),
            ("add", other.clone()),
            ("add", other.clone()),
            ("add", other),
            ("http_request", url.clone()),
        ]);
        assert!(found.is_empty(), "{found:?}");
        // A plain read then a fetch is ordinary.
        let found = run(&[
            ("read_file", json!({"path": "README.md"})),
            ("fetch_url", url),
        ]);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn window_size_bounds_the_history() {
        let detector = ChainDetector::new(&ToolChainDetection {
            enabled: true,
            window_size: 2,
            max_gap: 10,
            ..ToolChainDetection::default()
        })
        .expect("builds");
        let mut window = ChainWindow::default();
        let now = Instant::now();
        for tool in ["get_env", "add", "add"] {
            detector.record(&mut window, tool, None, now);
        }
        assert!(detector
            .record(&mut window, "http_post", None, now)
            .is_empty());
    }
}
