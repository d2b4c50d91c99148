//! The DLP pipeline for one piece of outbound text: the DLP rules and the environment secrets,
//! over the raw text and every decoded view of it. One finding per rule and matched value.

use super::decode::decoded_views_with;
use super::dlp::{DlpBuildError, DlpScanner};
use super::env_secrets::EnvSecrets;
use super::finding::Finding;
use super::seed_phrase::SeedPhrases;
use crate::config::{Dlp, SeedPhraseDetection};

/// DLP over text and its decodings, built once per config.
#[derive(Debug)]
pub struct TextDlp {
    rules: DlpScanner,
    env: Option<EnvSecrets>,
    seeds: Option<SeedPhrases>,
}

impl TextDlp {
    /// Builds the rules and, when `dlp.scan_env` is on, reads the process environment.
    ///
    /// # Errors
    /// A DLP regex that does not compile.
    pub fn new(config: &Dlp) -> Result<Self, DlpBuildError> {
        let env = config.scan_env.then(|| {
            EnvSecrets::from_process(
                usize::try_from(config.min_env_secret_length).unwrap_or(usize::MAX),
            )
        });
        Self::with_env(config, env)
    }

    /// Builds the rules with the given environment secrets (for tests and embedding).
    ///
    /// # Errors
    /// A DLP regex that does not compile.
    pub fn with_env(config: &Dlp, env: Option<EnvSecrets>) -> Result<Self, DlpBuildError> {
        Ok(Self {
            rules: DlpScanner::new(config)?,
            env,
            seeds: None,
        })
    }

    /// Adds BIP-39 seed phrase detection when `config.enabled`.
    #[must_use]
    pub fn with_seed_phrases(mut self, config: &SeedPhraseDetection) -> Self {
        self.seeds = config.enabled.then(|| SeedPhrases::new(config));
        self
    }

    /// Every DLP finding in `text` and its decoded views.
    #[must_use]
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        // One look at the byte classes serves the DLP gates and the base64/hex decoders.
        let runs = super::runs::runs(text.as_bytes());
        let mut findings = self.rules.scan_with(text, "raw", runs);
        if let Some(env) = &self.env {
            findings.extend(env.scan(text, "raw"));
        }
        if let Some(seeds) = &self.seeds {
            findings.extend(seeds.scan(text, "raw"));
        }
        for view in decoded_views_with(text, runs.encoded) {
            for finding in self.scan_view(&view.text, view.name) {
                let duplicate = findings
                    .iter()
                    .any(|f| f.rule_id == finding.rule_id && f.preview == finding.preview);
                if !duplicate {
                    findings.push(finding);
                }
            }
        }
        findings
    }

    fn scan_view(&self, text: &str, view: &'static str) -> Vec<Finding> {
        let mut findings = self.rules.scan(text, view);
        if let Some(env) = &self.env {
            findings.extend(env.scan(text, view));
        }
        if let Some(seeds) = &self.seeds {
            findings.extend(seeds.scan(text, view));
        }
        findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner() -> TextDlp {
        let env = EnvSecrets::from_vars(
            [("APP_SECRET".to_string(), "Zq8#mP2v!Lx9RtW4kN7b".to_string())],
            16,
        );
        TextDlp::with_env(&Dlp::default(), Some(env)).expect("builds")
    }

    fn rules(findings: &[Finding]) -> Vec<(&str, &str)> {
        findings
            .iter()
            .map(|f| (f.rule_id.as_str(), f.view))
            .collect()
    }

    #[test]
    fn encoded_secrets_are_found_in_their_view() {
        let s = scanner();
        for (text, view) in [
            ("AKIAIOSFODNN7EXAMPLE", "raw"),
            ("q=%41KIAIOSFODNN7EXAMPLE", "url-decoded"),
            ("q=%2541KIAIOSFODNN7EXAMPLE", "url-decoded"),
            ("x=QUtJQUlPU0ZPRE5ON0VYQU1QTEU=", "base64"),
            ("x=414b4941494f53464f444e4e374558414d504c45", "hex"),
            (r#"{"k": "\u0041KIAIOSFODNN7EXAMPLE"}"#, "unescaped"),
            (r#"{"k": "AKIAIOSF" + "ODNN7EXAMPLE"}"#, "joined"),
            ("AKIA\u{200B}IOSFODNN7EXAMPLE", "joined"),
        ] {
            let found = s.scan(text);
            assert!(
                rules(&found).contains(&("dlp.aws_access_key_id", view)),
                "{text}: {:?}",
                rules(&found)
            );
        }
    }

    #[test]
    fn environment_secrets_in_any_view() {
        let s = scanner();
        let found = s.scan("upload?d=WnE4I21QMnYhTHg5UnRXNGtON2I");
        assert!(
            found
                .iter()
                .any(|f| f.rule_id == "dlp.env_secret.app_secret"),
            "{found:?}"
        );
        let found = s.scan("p=Zq8%23mP2v%21Lx9RtW4kN7b");
        assert!(
            found
                .iter()
                .any(|f| f.rule_id == "dlp.env_secret.app_secret"),
            "{found:?}"
        );
    }

    #[test]
    fn seed_phrases_raw_and_base64() {
        let s = scanner().with_seed_phrases(&SeedPhraseDetection::default());
        let phrase = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
        assert!(s
            .scan(phrase)
            .iter()
            .any(|f| f.rule_id == "dlp.bip39_seed_phrase"));
        let encoded = "YWJhbmRvbiBhYmFuZG9uIGFiYW5kb24gYWJhbmRvbiBhYmFuZG9uIGFiYW5kb24gYWJhbmRvbiBhYmFuZG9uIGFiYW5kb24gYWJhbmRvbiBhYmFuZG9uIGFib3V0";
        let found = s.scan(encoded);
        assert!(
            found
                .iter()
                .any(|f| f.rule_id == "dlp.bip39_seed_phrase" && f.view == "base64"),
            "{found:?}"
        );
        let off = scanner().with_seed_phrases(&SeedPhraseDetection {
            enabled: false,
            ..SeedPhraseDetection::default()
        });
        assert!(off.scan(phrase).is_empty());
    }

    #[test]
    fn one_finding_per_value_across_views() {
        let found = scanner().scan("AKIAIOSFODNN7EXAMPLE and %41");
        assert_eq!(
            found
                .iter()
                .filter(|f| f.rule_id == "dlp.aws_access_key_id")
                .count(),
            1,
            "{found:?}"
        );
    }
}
