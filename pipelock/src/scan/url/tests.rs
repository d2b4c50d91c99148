//! Each URL check with a positive and a negative.

use super::*;
use crate::config::{Config, Dlp};

fn scan_with(config: &Config, url: &str) -> Vec<String> {
    let dlp = TextDlp::with_env(&Dlp::default(), None).expect("dlp");
    UrlScanner::new(config)
        .scan(url, &dlp)
        .into_iter()
        .map(|f| f.rule_id)
        .collect()
}

fn scan(url: &str) -> Vec<String> {
    scan_with(&Config::default(), url)
}

fn has(findings: &[String], id: &str) -> bool {
    findings.iter().any(|f| f == id)
}

#[test]
fn a_typical_api_url_is_clean() {
    assert!(scan("https://api.openai.com/v1/chat/completions?model=gpt-4o&stream=true").is_empty());
}

#[test]
fn scheme_crlf_and_traversal() {
    assert!(has(&scan("ftp://example.com/file"), "url.scheme"));
    assert!(has(&scan("gopher://example.com/"), "url.scheme"));
    assert!(has(
        &scan("https://example.com/a%0d%0aSet-Cookie:x"),
        "url.crlf_injection"
    ));
    assert!(has(
        &scan("https://example.com/a%250a"),
        "url.crlf_injection"
    ));
    assert!(!has(
        &scan("https://example.com/a%20b"),
        "url.crlf_injection"
    ));
    for traversal in [
        "https://example.com/a/%2e%2e/etc/passwd",
        "https://example.com/a/.%2e/b",
        "https://example.com/%252e%252e/x",
        "https://example.com/a/..%2fb",
    ] {
        assert!(has(&scan(traversal), "url.path_traversal"), "{traversal}");
    }
    assert!(!has(
        &scan("https://example.com/a..b/c"),
        "url.path_traversal"
    ));
    assert!(has(&scan("not a url"), "url.parse_error"));
}

#[test]
fn ssrf_on_ip_literals_in_every_notation() {
    for url in [
        "http://127.0.0.1/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://localhost:8080/",
        "http://metadata.google.internal/",
    ] {
        assert!(has(&scan(url), "url.ssrf"), "{url}");
    }
    assert!(!has(&scan("http://93.184.216.34/"), "url.ssrf"));
    let mut config = Config::default();
    config.ssrf.ip_allowlist = vec!["10.1.0.0/16".to_string()];
    assert!(!has(&scan_with(&config, "http://10.1.2.3/"), "url.ssrf"));
    assert!(has(&scan_with(&config, "http://10.2.2.3/"), "url.ssrf"));
}

#[test]
fn resolved_addresses_and_trusted_domains() {
    let config = Config {
        trusted_domains: vec!["*.corp.example.com".to_string()],
        ..Config::default()
    };
    let scanner = UrlScanner::new(&config);
    let private: IpAddr = "10.0.0.5".parse().expect("ip");
    let public: IpAddr = "93.184.216.34".parse().expect("ip");
    assert_eq!(
        scanner
            .check_resolved("api.example.com", &[public, private])
            .len(),
        1
    );
    assert!(scanner
        .check_resolved("api.example.com", &[public])
        .is_empty());
    assert!(scanner
        .check_resolved("wiki.corp.example.com", &[private])
        .is_empty());
    assert!(scanner
        .check_resolved("corp.example.com", &[private])
        .is_empty());
}

#[test]
fn blocklist_and_strict_allowlist() {
    assert!(has(&scan("https://pastebin.com/raw/abc"), "url.blocklist"));
    assert!(has(
        &scan("https://www.pastebin.com/raw/abc"),
        "url.blocklist"
    ));
    assert!(!has(&scan("https://notpastebin.com/"), "url.blocklist"));
    let strict = Config {
        mode: Mode::Strict,
        ..Config::default()
    };
    assert!(has(
        &scan_with(&strict, "https://example.net/"),
        "url.not_allowlisted"
    ));
    assert!(!has(
        &scan_with(&strict, "https://api.openai.com/v1"),
        "url.not_allowlisted"
    ));
}

#[test]
fn secrets_in_every_component() {
    for url in [
        "https://evil.example/?k=AKIAIOSFODNN7EXAMPLE",
        "https://evil.example/AKIAIOSFODNN7EXAMPLE/x",
        "https://evil.example/?k=%41KIAIOSFODNN7EXAMPLE",
        "https://evil.example/?d=QUtJQUlPU0ZPRE5ON0VYQU1QTEU",
        "https://AKIAIOSF.ODNN7EXAMPLE.evil.example/",
    ] {
        assert!(
            has(&scan(url), "dlp.aws_access_key_id"),
            "{url}: {:?}",
            scan(url)
        );
    }
}

#[test]
fn entropy_and_length() {
    assert!(has(
        &scan("https://example.com/?d=Zk9xP2vL8mQ3rT6wY1uI5oA7sD4fG0hJ"),
        "url.high_entropy"
    ));
    assert!(!has(
        &scan("https://example.com/articles/how-to-bake-sourdough-bread"),
        "url.high_entropy"
    ));
    assert!(has(
        &scan("https://x7k2p9q4z8w1m3n6b5v0.evil.example/"),
        "url.subdomain_entropy"
    ));
    assert!(!has(
        &scan("https://documentation.example.com/"),
        "url.subdomain_entropy"
    ));
    let long = format!("https://example.com/?q={}", "a".repeat(3000));
    assert!(has(&scan(&long), "url.too_long"));
}

#[test]
fn domain_matching() {
    assert!(matches_domain("*.example.com", "a.b.example.com"));
    assert!(matches_domain("*.example.com", "EXAMPLE.com."));
    assert!(!matches_domain("*.example.com", "badexample.com"));
    assert!(matches_domain("api.example.com", "api.example.com"));
    assert!(!matches_domain("api.example.com", "x.api.example.com"));
}
