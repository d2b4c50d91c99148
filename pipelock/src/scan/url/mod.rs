//! URL scanning, before any DNS lookup: scheme, CRLF and path-traversal tricks, the domain
//! blocklist (and, in strict mode, the allowlist), SSRF on IP literals in every notation
//! (decimal, octal, hex, IPv6-mapped: the WHATWG parser canonicalizes them), path and
//! subdomain entropy, length, and DLP over every component.
//!
//! Hostnames are not resolved here. A front door that resolves one checks the answers with
//! [`UrlScanner::check_resolved`], which honours `trusted_domains`.

use std::net::IpAddr;

use url::{Host, Url};

use super::env_secrets::entropy;
use super::finding::{redact, Finding, ScannerKind};
use super::text::TextDlp;
use crate::config::{Config, Mode, Severity};

/// Query values and path segments shorter than this are not entropy-checked.
const MIN_ENTROPY_LEN: usize = 20;
/// Subdomain labels shorter than this are not entropy-checked.
const MIN_LABEL_LEN: usize = 8;
/// Host names that always mean "this machine" or cloud metadata.
const INTERNAL_NAMES: &[&str] = &[
    "localhost",
    "metadata.google.internal",
    "metadata",
    "instance-data",
];

/// A parsed CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// `addr/prefix`; `None` when either part does not parse.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = text.split_once('/')?;
        Some(Self {
            addr: addr.parse().ok()?,
            prefix: prefix.parse().ok()?,
        })
    }

    /// A bare address as a one-address block (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Self {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, prefix }
    }

    /// Whether `ip` is in the block (an IPv4 address is never in an IPv6 block).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix.min(32)))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix.min(128)))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The URL scanner for one config.
#[derive(Debug)]
pub struct UrlScanner {
    strict: bool,
    allowlist: Vec<String>,
    blocklist: Vec<String>,
    trusted: Vec<String>,
    internal: Vec<Cidr>,
    ip_allowlist: Vec<Cidr>,
    entropy_threshold: f64,
    subdomain_threshold: f64,
    subdomain_exclusions: Vec<String>,
    max_length: usize,
}

fn finding(id: &str, name: &str, severity: Severity, matched: &str) -> Finding {
    Finding {
        rule_id: format!("url.{id}"),
        rule_name: name.to_string(),
        scanner: ScannerKind::Url,
        severity,
        span: 0..matched.len(),
        view: "url",
        preview: redact(matched),
    }
}

/// Whether `host` matches `pattern` (`*.x.com` also matches `x.com`), ignoring case.
#[must_use]
pub fn matches_domain(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.');
    let pattern = pattern.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(apex) => is_domain_or_subdomain(host, apex),
        None => host.eq_ignore_ascii_case(pattern),
    }
}

/// `host` is `apex` or ends with `.apex`, ignoring ASCII case (no allocation).
fn is_domain_or_subdomain(host: &str, apex: &str) -> bool {
    let (host, apex) = (host.as_bytes(), apex.as_bytes());
    host.eq_ignore_ascii_case(apex)
        || (host.len() > apex.len()
            && host[host.len() - apex.len() - 1] == b'.'
            && host[host.len() - apex.len()..].eq_ignore_ascii_case(apex))
}

impl UrlScanner {
    /// Takes the URL-related settings of `config` (CIDRs that do not parse are skipped; config
    /// validation rejects them first).
    #[must_use]
    pub fn new(config: &Config) -> Self {
        let monitoring = &config.fetch_proxy.monitoring;
        Self {
            strict: config.mode == Mode::Strict,
            allowlist: config.api_allowlist.clone(),
            blocklist: monitoring.blocklist.clone(),
            trusted: config.trusted_domains.clone(),
            internal: config
                .internal
                .iter()
                .filter_map(|c| Cidr::parse(c))
                .collect(),
            ip_allowlist: config
                .ssrf
                .ip_allowlist
                .iter()
                .filter_map(|c| Cidr::parse(c))
                .collect(),
            entropy_threshold: monitoring.entropy_threshold,
            subdomain_threshold: monitoring.subdomain_entropy_threshold,
            subdomain_exclusions: monitoring.subdomain_entropy_exclusions.clone(),
            max_length: usize::try_from(monitoring.max_url_length).unwrap_or(usize::MAX),
        }
    }

    /// Every finding in `raw` (a URL as the client sent it); `dlp` scans its components.
    #[must_use]
    pub fn scan(&self, raw: &str, dlp: &TextDlp) -> Vec<Finding> {
        let mut findings = Vec::new();
        if raw.len() > self.max_length {
            findings.push(finding("too_long", "URL Too Long", Severity::Medium, raw));
        }
        if has_crlf(raw) {
            findings.push(finding(
                "crlf_injection",
                "CRLF Injection",
                Severity::High,
                raw,
            ));
        }
        // DLP over the whole URL and its decodings (query parameters, base64 in values, …).
        for mut f in dlp.scan(raw) {
            f.view = if f.view == "raw" { "url" } else { f.view };
            findings.push(f);
        }
        let url = match Url::parse(raw) {
            Ok(url) => url,
            Err(error) => {
                findings.push(finding(
                    "parse_error",
                    &format!("Unparseable URL ({error})"),
                    Severity::High,
                    raw,
                ));
                return findings;
            }
        };
        if !matches!(url.scheme(), "http" | "https") {
            findings.push(finding(
                "scheme",
                &format!("Scheme {} Not Allowed", url.scheme()),
                Severity::High,
                raw,
            ));
        }
        if has_traversal(raw) {
            findings.push(finding(
                "path_traversal",
                "Path Traversal",
                Severity::High,
                raw,
            ));
        }
        match url.host() {
            None => findings.push(finding("no_host", "URL Without Host", Severity::High, raw)),
            Some(Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip), raw, &mut findings),
            Some(Host::Ipv6(ip)) => {
                let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
                self.check_ip(ip, raw, &mut findings);
            }
            Some(Host::Domain(domain)) => {
                self.check_domain(domain, &mut findings);
                // A secret split across labels (`AKIAIOSF.ODNN7EXAMPLE.evil.com`), read from the
                // URL as sent: the parsed host is lowercased, which would hide case-sensitive keys.
                // Only the subdomain labels: the registrable domain would run into the secret.
                // With one subdomain label there is nothing to join: the URL scan saw it whole.
                let labels: Vec<&str> = raw_host(raw).split('.').collect();
                if labels.len() > 3 {
                    let collapsed = labels[..labels.len() - 2].concat();
                    for mut f in dlp.scan(&collapsed) {
                        f.view = "host-collapsed";
                        findings.push(f);
                    }
                }
            }
        }
        if let Some(host) = url.host_str() {
            if self.strict && !self.allowlist.iter().any(|p| matches_domain(p, host)) {
                findings.push(finding(
                    "not_allowlisted",
                    "Destination Not in api_allowlist (strict mode)",
                    Severity::High,
                    host,
                ));
            }
        }
        for segment in url.path_segments().into_iter().flatten() {
            self.check_entropy(segment, &mut findings);
        }
        for (key, value) in url.query_pairs() {
            self.check_entropy(&key, &mut findings);
            self.check_entropy(&value, &mut findings);
        }
        findings
    }

    fn check_ip(&self, ip: IpAddr, raw: &str, findings: &mut Vec<Finding>) {
        if self.is_internal(ip) {
            findings.push(finding(
                "ssrf",
                &format!("Internal Address {ip}"),
                Severity::Critical,
                raw,
            ));
        }
    }

    fn is_internal(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.internal.iter().any(|c| c.contains(ip))
            && !self.ip_allowlist.iter().any(|c| c.contains(ip))
    }

    fn check_domain(&self, domain: &str, findings: &mut Vec<Finding>) {
        let host = domain.trim_end_matches('.').to_ascii_lowercase();
        if self.blocklist.iter().any(|p| matches_domain(p, &host)) {
            findings.push(finding(
                "blocklist",
                "Blocklisted Domain",
                Severity::High,
                &host,
            ));
        }
        let trusted = self.trusted.iter().any(|p| matches_domain(p, &host));
        if !trusted
            && INTERNAL_NAMES
                .iter()
                .any(|n| is_domain_or_subdomain(&host, n))
        {
            findings.push(finding(
                "ssrf",
                "Internal Host Name",
                Severity::Critical,
                &host,
            ));
        }
        let labels: Vec<&str> = host.split('.').collect();
        let excluded = self
            .subdomain_exclusions
            .iter()
            .any(|p| matches_domain(p, &host));
        if labels.len() >= 3 && !excluded {
            for label in &labels[..labels.len() - 2] {
                if label.len() >= MIN_LABEL_LEN && entropy(label) > self.subdomain_threshold {
                    findings.push(finding(
                        "subdomain_entropy",
                        "High-Entropy Subdomain",
                        Severity::Medium,
                        label,
                    ));
                    break;
                }
            }
        }
    }

    fn check_entropy(&self, part: &str, findings: &mut Vec<Finding>) {
        if part.len() >= MIN_ENTROPY_LEN
            && entropy(part) > self.entropy_threshold
            && !findings.iter().any(|f| f.rule_id == "url.high_entropy")
        {
            findings.push(finding(
                "high_entropy",
                "High-Entropy URL Component",
                Severity::Medium,
                part,
            ));
        }
    }

    /// Checks the addresses a front door resolved `host` to: any internal one is SSRF, unless
    /// `host` is in `trusted_domains` or the address is in `ssrf.ip_allowlist`.
    #[must_use]
    pub fn check_resolved(&self, host: &str, addresses: &[IpAddr]) -> Vec<Finding> {
        if self.is_trusted(host) {
            return Vec::new();
        }
        self.check_addresses(host, addresses)
    }

    /// [`Self::check_resolved`] without the `trusted_domains` exception: for addresses that
    /// did not come from resolving `host` (a transparent connection's original destination
    /// and the name its client claims).
    #[must_use]
    pub fn check_addresses(&self, host: &str, addresses: &[IpAddr]) -> Vec<Finding> {
        addresses
            .iter()
            .filter(|ip| self.is_internal(**ip))
            .take(1)
            .map(|ip| {
                finding(
                    "ssrf",
                    &format!("{host} Resolves to Internal Address {ip}"),
                    Severity::Critical,
                    host,
                )
            })
            .collect()
    }

    /// Whether `host` is in `trusted_domains`.
    #[must_use]
    pub fn is_trusted(&self, host: &str) -> bool {
        self.trusted.iter().any(|p| matches_domain(p, host))
    }
}

/// The host of `raw` as written (original case): between `://` (and any `user@`) and the
/// first `/`, `?`, `#` or `:`.
fn raw_host(raw: &str) -> &str {
    let rest = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    host.split(':').next().unwrap_or_default()
}

/// A raw or percent-encoded (also double-encoded) CR or LF.
fn has_crlf(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    if memchr::memchr3(b'\r', b'\n', b'%', bytes).is_none() {
        return false;
    }
    if memchr::memchr2(b'\r', b'\n', bytes).is_some() {
        return true;
    }
    let lower = raw.to_ascii_lowercase();
    ["%0d", "%0a", "%250d", "%250a"]
        .iter()
        .any(|s| lower.contains(s))
}

/// `..` as a path segment, in any of its encodings.
fn has_traversal(raw: &str) -> bool {
    let path_and_query = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    if memchr::memchr2(b'%', b'\\', path_and_query.as_bytes()).is_none() {
        return path_and_query
            .split(['/', '?', '#'])
            .any(|segment| segment == "..");
    }
    let lower = path_and_query.to_ascii_lowercase();
    let decoded = lower
        .replace("%252e", ".")
        .replace("%2e", ".")
        .replace("%252f", "/")
        .replace("%2f", "/")
        .replace("%5c", "/")
        .replace('\\', "/");
    decoded
        .split(['/', '?', '#'])
        .any(|segment| segment == "..")
}

#[cfg(test)]
mod tests;
