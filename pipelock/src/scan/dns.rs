//! Data leaving through DNS query names: a name such as `<secret>.attacker.example` reaches
//! the attacker's name server whatever the answer. Checked, in order:
//! - DLP over the dotted name (which also decodes base64 and hex runs in it);
//! - DLP over the subdomain labels joined, for a secret split across labels;
//! - DLP over base32-decoded labels (the usual encoding of DNS tunnels, since names are
//!   case-insensitive);
//! - Shannon entropy of each subdomain label against
//!   `fetch_proxy.monitoring.subdomain_entropy_threshold` (the URL scanner's setting, and its
//!   `subdomain_entropy_exclusions`). A DNS name has no other place to carry data, so a
//!   high-entropy label is a `high` finding here (blocked in balanced mode), where the URL
//!   scanner's is `medium`.
//!
//! Subdomain labels are every label but the last two (the registrable domain, roughly).

use super::env_secrets::entropy;
use super::finding::{redact, Finding, ScannerKind};
use super::text::TextDlp;
use super::url::matches_domain;
use crate::config::{Config, Severity};

/// Labels shorter than this are not entropy-checked (and cannot exceed 4 bits anyway).
const MIN_ENTROPY_LABEL: usize = 16;
/// Shortest label worth base32-decoding (10 bytes of payload).
const MIN_BASE32_LABEL: usize = 16;

/// The DNS name checks of one config.
#[derive(Debug)]
pub struct DnsNameScanner {
    threshold: f64,
    exclusions: Vec<String>,
}

impl DnsNameScanner {
    #[must_use]
    pub fn new(config: &Config) -> Self {
        let monitoring = &config.fetch_proxy.monitoring;
        Self {
            threshold: monitoring.subdomain_entropy_threshold,
            exclusions: monitoring.subdomain_entropy_exclusions.clone(),
        }
    }

    /// Every finding in the query name `name` (dotted, labels as sent); `dlp` does the DLP.
    #[must_use]
    pub fn scan(&self, name: &str, dlp: &TextDlp) -> Vec<Finding> {
        let name = name.trim_end_matches('.');
        let mut findings = dlp.scan(name);
        let labels: Vec<&str> = name.split('.').collect();
        let subdomain = &labels[..labels.len().saturating_sub(2)];
        let mut add = |found: Vec<Finding>, view: &'static str| {
            for mut finding in found {
                if !findings
                    .iter()
                    .any(|f| f.rule_id == finding.rule_id && f.preview == finding.preview)
                {
                    finding.view = view;
                    findings.push(finding);
                }
            }
        };
        if subdomain.len() > 1 {
            add(dlp.scan(&subdomain.concat()), "dns-joined");
        }
        for label in subdomain {
            if let Some(decoded) = base32(label) {
                add(dlp.scan(&String::from_utf8_lossy(&decoded)), "dns-base32");
            }
        }
        if subdomain.len() > 1 {
            if let Some(decoded) = base32(&subdomain.concat()) {
                add(dlp.scan(&String::from_utf8_lossy(&decoded)), "dns-base32");
            }
        }
        let excluded = self.exclusions.iter().any(|p| matches_domain(p, name));
        if !excluded {
            if let Some(label) = subdomain
                .iter()
                .find(|l| l.len() >= MIN_ENTROPY_LABEL && entropy(l) > self.threshold)
            {
                findings.push(Finding {
                    rule_id: "dns.label_entropy".to_string(),
                    rule_name: "High-Entropy DNS Label (possible exfiltration)".to_string(),
                    scanner: ScannerKind::Url,
                    severity: Severity::High,
                    span: 0..label.len(),
                    view: "dns",
                    preview: redact(label),
                });
            }
        }
        findings
    }
}

/// `label` decoded as unpadded base32 (RFC 4648, either case), when it is one.
fn base32(label: &str) -> Option<Vec<u8>> {
    if label.len() < MIN_BASE32_LABEL {
        return None;
    }
    let mut out = Vec::with_capacity(label.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in label.bytes() {
        let value = match b.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner() -> (DnsNameScanner, TextDlp) {
        let config = Config::default();
        (
            DnsNameScanner::new(&config),
            TextDlp::with_env(&config.dlp, None).expect("dlp"),
        )
    }

    fn rules(name: &str) -> Vec<String> {
        let (dns, dlp) = scanner();
        dns.scan(name, &dlp)
            .into_iter()
            .map(|f| format!("{}@{}", f.rule_id, f.view))
            .collect()
    }

    /// RFC 4648 base32 without padding.
    fn encode_base32(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let (mut acc, mut bits, mut out) = (0u32, 0u32, String::new());
        for &b in bytes {
            acc = (acc << 8) | u32::from(b);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
            }
        }
        if bits > 0 {
            out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
        }
        out
    }

    #[test]
    fn ordinary_names_pass() {
        for name in [
            "example.com",
            "www.example.com.",
            "api.eu-west-1.amazonaws.com",
            "d111111abcdef8.cloudfront.net",
            "my-service.my-namespace.svc.cluster.local",
            "_http._tcp.example.com",
            "r3---sn-ab5l6nzr.googlevideo.com",
            "4.3.2.1.in-addr.arpa",
            "0123456789abcdef0123456789abcdef.example.com", // hex: at most 4 bits a character
        ] {
            assert_eq!(rules(name), Vec::<String>::new(), "{name}");
        }
    }

    #[test]
    fn a_secret_as_a_label_split_or_encoded() {
        assert!(
            rules("AKIAIOSFODNN7EXAMPLE.attacker.example")
                .iter()
                .any(|r| r.starts_with("dlp.aws")),
            "{:?}",
            rules("AKIAIOSFODNN7EXAMPLE.attacker.example")
        );
        let split = rules("AKIAIOSF.ODNN7EXAMPLE.attacker.example");
        assert!(
            split.iter().any(|r| r.ends_with("@dns-joined")),
            "{split:?}"
        );
        let encoded = encode_base32(b"AKIAIOSFODNN7EXAMPLE");
        let found = rules(&format!(
            "{}.attacker.example",
            encoded.to_ascii_lowercase()
        ));
        assert!(
            found.iter().any(|r| r.ends_with("@dns-base32")),
            "{found:?}"
        );
    }

    #[test]
    fn high_entropy_labels() {
        let label = encode_base32(&[
            0x8f, 0x1c, 0x77, 0x02, 0xe4, 0x9a, 0x51, 0xc3, 0x3d, 0xb0, 0x6e, 0x25, 0xf8, 0x14,
            0xa9, 0x47, 0x5b, 0xd2, 0x0e, 0x93,
        ]);
        let name = format!("{label}.t.attacker.example");
        assert!(
            rules(&name).contains(&"dns.label_entropy@dns".to_string()),
            "{name}"
        );
        let (mut dns, dlp) = scanner();
        dns.exclusions.push("*.attacker.example".to_string());
        assert!(dns.scan(&name, &dlp).is_empty());
    }

    #[test]
    fn base32_decoding() {
        assert_eq!(
            base32("MZXW6YTBOI======"),
            None,
            "padding is not a DNS label"
        );
        assert_eq!(
            base32("mzxw6ytboi2dmnzq").as_deref(),
            Some(&b"foobar4670"[..])
        );
        assert_eq!(base32("short"), None);
        assert_eq!(base32("not-base32-at-all-1"), None);
    }
}
