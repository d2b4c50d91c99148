//! Secrets from the process environment (`dlp.scan_env`): values that look like secrets are
//! matched literally and in the encodings an agent might use to smuggle them (base64,
//! base64url, hex, URL-encoding), so a leaked `$OPENAI_API_KEY` is caught even when its format
//! matches no DLP rule.
//!
//! The environment is read once, when the scanner is built; scanning itself is one
//! Aho-Corasick pass.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use super::finding::{redact, Finding, ScannerKind};
use crate::config::Severity;

/// Names whose values are configuration, not secrets, whatever they look like.
const IGNORED_NAMES: &[&str] = &[
    "PATH",
    "HOME",
    "PWD",
    "OLDPWD",
    "SHELL",
    "TERM",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TMPDIR",
    "TEMP",
    "TMP",
    "HOSTNAME",
    "DISPLAY",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "MAIL",
    "_",
    "SHLVL",
    "LS_COLORS",
    "LSCOLORS",
    "DBUS_SESSION_BUS_ADDRESS",
    "SSH_AUTH_SOCK",
    "SSH_AGENT_PID",
    "GOPATH",
    "GOROOT",
    "PYTHONPATH",
    "NODE_PATH",
    "MANPATH",
    "INFOPATH",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "PS1",
    "PS2",
    "PS3",
    "PS4",
    "PROMPT_COMMAND",
    "HISTFILE",
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "SYSTEMD_EXEC_PID",
    "KUBERNETES_SERVICE_HOST",
    "PIPELOCK_LOG",
    "PIPELOCK_BIN",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "CARGO",
    "CARGO_MANIFEST_DIR",
    "CARGO_PKG_VERSION",
    "OUT_DIR",
];
/// Name prefixes of configuration variables.
const IGNORED_PREFIXES: &[&str] = &["LC_", "XDG_", "CARGO_PKG_", "npm_config_", "GIT_"];
/// Shannon entropy (bits per character) a value needs to count as a secret.
const MIN_ENTROPY: f64 = 3.0;

/// Secret values from the environment and their encodings.
#[derive(Debug)]
pub struct EnvSecrets {
    names: Vec<String>,
    /// (index into `names`, encoding) per automaton pattern.
    variants: Vec<(usize, &'static str)>,
    automaton: Option<AhoCorasick>,
}

impl EnvSecrets {
    /// Collects the secrets among `vars` (name, value) that are at least `min_length` long.
    #[must_use]
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I, min_length: usize) -> Self {
        let mut names = Vec::new();
        let mut patterns: Vec<String> = Vec::new();
        let mut variants = Vec::new();
        for (name, value) in vars {
            if !looks_secret(&name, &value, min_length) {
                continue;
            }
            let index = names.len();
            names.push(name);
            for (encoding, encoded) in encodings(&value) {
                if !patterns.contains(&encoded) {
                    patterns.push(encoded);
                    variants.push((index, encoding));
                }
            }
        }
        let automaton = if patterns.is_empty() {
            None
        } else {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .ok()
        };
        Self {
            names,
            variants,
            automaton,
        }
    }

    /// The secrets of this process's environment.
    #[must_use]
    pub fn from_process(min_length: usize) -> Self {
        Self::from_vars(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
            min_length,
        )
    }

    /// How many environment variables hold secrets.
    #[must_use]
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no environment variable holds a secret.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Every occurrence of an environment secret, in any encoding, in `text`.
    #[must_use]
    pub fn scan(&self, text: &str, view: &'static str) -> Vec<Finding> {
        let Some(automaton) = &self.automaton else {
            return Vec::new();
        };
        automaton
            .find_iter(text)
            .map(|hit| {
                let (index, encoding) = self.variants[hit.pattern().as_usize()];
                let name = &self.names[index];
                Finding {
                    rule_id: format!("dlp.env_secret.{}", name.to_ascii_lowercase()),
                    rule_name: format!("Environment secret ${name} ({encoding})"),
                    scanner: ScannerKind::EnvSecret,
                    severity: Severity::Critical,
                    span: hit.range(),
                    view,
                    preview: redact(&text[hit.range()]),
                }
            })
            .collect()
    }
}

fn looks_secret(name: &str, value: &str, min_length: usize) -> bool {
    let upper = name.to_ascii_uppercase();
    if IGNORED_NAMES.contains(&upper.as_str())
        || IGNORED_PREFIXES.iter().any(|p| name.starts_with(p))
    {
        return false;
    }
    value.len() >= min_length
        && !value.contains(char::is_whitespace)
        && !value.starts_with('/')
        && entropy(value) > MIN_ENTROPY
}

/// Shannon entropy of `text` in bits per byte.
#[must_use]
pub fn entropy(text: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in text.bytes() {
        counts[usize::from(b)] += 1;
    }
    #[allow(clippy::cast_precision_loss)] // lengths of config values are small
    let len = text.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / len;
            -p * p.log2()
        })
        .sum()
}

/// The value and its encoded forms.
fn encodings(value: &str) -> Vec<(&'static str, String)> {
    let bytes = value.as_bytes();
    let std = base64(bytes, STD_ALPHABET);
    let url = base64(bytes, URL_ALPHABET);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = vec![
        ("raw", value.to_string()),
        ("hex", hex.clone()),
        ("hex", hex.to_ascii_uppercase()),
        ("base64", std.trim_end_matches('=').to_string()),
        ("base64url", url.trim_end_matches('=').to_string()),
    ];
    let percent = percent_encode(value);
    if percent != value {
        out.push(("url-encoded", percent));
    }
    out
}

const STD_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "Zq8#mP2v!Lx9~~~RtW4kN7b";

    fn secrets() -> EnvSecrets {
        EnvSecrets::from_vars(
            [
                ("MY_SERVICE_TOKEN".to_string(), SECRET.to_string()),
                (
                    "PATH".to_string(),
                    "/usr/local/bin:/usr/bin:/bin:/sbin".to_string(),
                ),
                ("SHORT".to_string(), "abc".to_string()),
                (
                    "LOW_ENTROPY".to_string(),
                    "aaaaaaaaaaaaaaaaaaaaaaaa".to_string(),
                ),
                ("LC_ALL".to_string(), "Zq8#mP2v!Lx9RtW4kN7bQQ".to_string()),
            ],
            16,
        )
    }

    #[test]
    fn only_secret_looking_values_are_kept() {
        assert_eq!(secrets().len(), 1);
    }

    #[test]
    fn every_encoding_is_caught_and_never_echoed() {
        let s = secrets();
        let bytes = SECRET.as_bytes();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        for (encoding, text) in [
            ("raw", format!("key={SECRET}")),
            ("base64", format!("data={}", base64(bytes, STD_ALPHABET))),
            (
                "base64url",
                format!("d={}", base64(bytes, URL_ALPHABET).trim_end_matches('=')),
            ),
            ("hex", format!("h={hex}")),
            ("hex", format!("h={}", hex.to_uppercase())),
            ("url-encoded", format!("q={}", percent_encode(SECRET))),
        ] {
            let found = s.scan(&text, "raw");
            assert_eq!(found.len(), 1, "{encoding}: {text}");
            assert_eq!(found[0].rule_id, "dlp.env_secret.my_service_token");
            assert!(
                found[0].rule_name.contains(encoding),
                "{}",
                found[0].rule_name
            );
            assert!(!found[0].preview.contains("mP2v"), "{}", found[0].preview);
        }
        assert!(
            s.scan("Zq8#mP2v!Lx9~~~RtW4kN7", "raw").is_empty(),
            "a prefix is not the secret"
        );
    }

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(base64(b"foobar", STD_ALPHABET), "Zm9vYmFy");
        assert_eq!(base64(b"fo", STD_ALPHABET), "Zm8=");
        assert_eq!(base64(&[0xfb, 0xff], URL_ALPHABET), "-_8=");
    }
}
