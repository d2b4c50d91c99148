//! Per-site rate limit and data budget (`fetch_proxy.monitoring.max_requests_per_minute` and
//! `max_data_per_minute`), the hooks the front doors call around each request. A site is a
//! registrable domain (eTLD+1 by the public suffix list), so `a.evil.com` and `b.evil.com`
//! share one budget; IP addresses and single-label hosts are their own sites.
//!
//! This is the one stateful part of scanning. It does no I/O and reads no clock: callers pass
//! the time, so the proxy passes `Instant::now()` and tests pass instants of their choosing.
//! Counts are kept in one-second buckets over a sliding 60-second window, so memory per site
//! is fixed, and the number of sites tracked is bounded: when the table is full of sites
//! active in the window, requests to new sites are refused (fail closed) rather than
//! forgetting a site's count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use super::finding::{Finding, ScannerKind};
use crate::config::{Monitoring, Severity};

/// Seconds in the sliding window.
const WINDOW: usize = 60;
/// Default requests per minute: the reference reads 0 as this too, so the limit cannot be
/// switched off by setting 0.
pub const DEFAULT_REQUESTS_PER_MINUTE: u64 = 60;
/// Sites tracked at once.
pub const MAX_SITES: usize = 10_000;

#[derive(Debug, Clone)]
struct Site {
    /// Per second of the window: requests admitted and response bytes recorded.
    requests: [u32; WINDOW],
    bytes: [u64; WINDOW],
    /// The second (since the budgets were created) the buckets were last advanced to.
    second: u64,
}

impl Site {
    fn new(second: u64) -> Self {
        Self {
            requests: [0; WINDOW],
            bytes: [0; WINDOW],
            second,
        }
    }

    /// Moves the window to `now`, emptying the seconds that fell out of it.
    fn advance(&mut self, now: u64) {
        if now <= self.second {
            return;
        }
        let gap = now - self.second;
        if gap >= WINDOW as u64 {
            self.requests = [0; WINDOW];
            self.bytes = [0; WINDOW];
        } else {
            for s in self.second + 1..=now {
                let slot = bucket(s);
                self.requests[slot] = 0;
                self.bytes[slot] = 0;
            }
        }
        self.second = now;
    }

    fn request_count(&self) -> u64 {
        self.requests.iter().map(|r| u64::from(*r)).sum()
    }

    fn byte_count(&self) -> u64 {
        self.bytes
            .iter()
            .fold(0u64, |sum, b| sum.saturating_add(*b))
    }

    fn idle(&self, now: u64) -> bool {
        now.saturating_sub(self.second) >= WINDOW as u64
            || (self.request_count() == 0 && self.byte_count() == 0)
    }
}

fn bucket(second: u64) -> usize {
    usize::try_from(second % WINDOW as u64).unwrap_or(0)
}

/// The per-site counters for one config, shared by every connection.
#[derive(Debug)]
pub struct DomainBudgets {
    max_requests: u64,
    /// 0: no data budget.
    max_bytes: u64,
    epoch: Instant,
    sites: Mutex<HashMap<String, Site>>,
}

impl DomainBudgets {
    /// Budgets from `fetch_proxy.monitoring`; `epoch` is any instant not after the first call.
    #[must_use]
    pub fn new(monitoring: &Monitoring, epoch: Instant) -> Self {
        Self {
            max_requests: match monitoring.max_requests_per_minute {
                0 => DEFAULT_REQUESTS_PER_MINUTE,
                n => n,
            },
            max_bytes: monitoring.max_data_per_minute,
            epoch,
            sites: Mutex::new(HashMap::new()),
        }
    }

    /// Requests allowed per site per minute.
    #[must_use]
    pub fn max_requests(&self) -> u64 {
        self.max_requests
    }

    /// Admits a request to `host` and counts it, or says why not: the site's requests in the
    /// last minute reached the limit, its data budget is spent, or too many sites are active.
    /// A refused request is not counted.
    pub fn admit(&self, host: &str, now: Instant) -> Result<(), Finding> {
        let site = site_of(host);
        let second = self.second(now);
        self.with_site(&site, second, |entry| {
            if entry.request_count() >= self.max_requests {
                return Err(finding(
                    "url.rate_limit",
                    "Rate Limit",
                    &site,
                    format!("{} requests per minute", self.max_requests),
                ));
            }
            if self.max_bytes > 0 && entry.byte_count() >= self.max_bytes {
                return Err(finding(
                    "url.data_budget",
                    "Data Budget",
                    &site,
                    format!("{} bytes per minute", self.max_bytes),
                ));
            }
            let slot = &mut entry.requests[bucket(second)];
            *slot = slot.saturating_add(1);
            Ok(())
        })
    }

    /// Adds `bytes` transferred with `host` to its data budget (after the response, as the
    /// reference does).
    pub fn record_bytes(&self, host: &str, bytes: u64, now: Instant) {
        let site = site_of(host);
        let second = self.second(now);
        // A full table refuses new sites at `admit`; bytes for an unknown site have no
        // request to belong to, so dropping them changes nothing.
        let _ = self.with_site(&site, second, |entry| {
            let slot = &mut entry.bytes[bucket(second)];
            *slot = slot.saturating_add(bytes);
            Ok(())
        });
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs()
    }

    fn with_site(
        &self,
        site: &str,
        second: u64,
        f: impl FnOnce(&mut Site) -> Result<(), Finding>,
    ) -> Result<(), Finding> {
        let mut sites = self
            .sites
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !sites.contains_key(site) && sites.len() >= MAX_SITES {
            sites.retain(|_, s| !s.idle(second));
            if sites.len() >= MAX_SITES {
                return Err(finding(
                    "url.rate_limit",
                    "Rate Limit",
                    site,
                    format!("more than {MAX_SITES} sites active in one minute"),
                ));
            }
        }
        let entry = sites
            .entry(site.to_string())
            .or_insert_with(|| Site::new(second));
        entry.advance(second);
        f(entry)
    }
}

fn finding(rule_id: &str, name: &str, site: &str, limit: String) -> Finding {
    Finding {
        rule_id: rule_id.to_string(),
        rule_name: format!("{name} ({limit})"),
        scanner: ScannerKind::Url,
        severity: Severity::High,
        span: 0..0,
        view: "site",
        preview: site.to_string(),
    }
}

/// The site a host belongs to: its registrable domain, lowercased without a trailing dot; an
/// IP address, or a host with no registrable domain (`localhost`, a bare suffix), as it is.
#[must_use]
pub fn site_of(host: &str) -> String {
    let host = host
        .trim_end_matches('.')
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if host.parse::<IpAddr>().is_ok() {
        return host;
    }
    match psl::domain_str(&host) {
        Some(domain) => domain.to_string(),
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn budgets(requests: u64, bytes: u64) -> (DomainBudgets, Instant) {
        let epoch = Instant::now();
        let monitoring = Monitoring {
            max_requests_per_minute: requests,
            max_data_per_minute: bytes,
            ..Monitoring::default()
        };
        (DomainBudgets::new(&monitoring, epoch), epoch)
    }

    #[test]
    fn sites_are_registrable_domains() {
        assert_eq!(site_of("api.openai.com"), "openai.com");
        assert_eq!(site_of("A.B.Example.CO.UK."), "example.co.uk");
        assert_eq!(site_of("x.evil.github.io"), "evil.github.io");
        assert_eq!(site_of("127.0.0.1"), "127.0.0.1");
        assert_eq!(site_of("[::1]"), "::1");
        assert_eq!(site_of("localhost"), "localhost");
    }

    #[test]
    fn the_limit_holds_per_site_over_a_sliding_minute() {
        let (b, t0) = budgets(3, 0);
        for host in ["a.example.com", "b.example.com", "example.com"] {
            assert!(b.admit(host, t0).is_ok());
        }
        let refused = b
            .admit("c.example.com", t0)
            .expect_err("fourth in a minute");
        assert_eq!(refused.rule_id, "url.rate_limit");
        assert_eq!(refused.preview, "example.com");
        // Another site has its own count.
        assert!(b.admit("other.org", t0).is_ok());
        // 59 s later the first three are still in the window; at 60 s they are gone.
        assert!(b
            .admit("example.com", t0 + Duration::from_secs(59))
            .is_err());
        assert!(b.admit("example.com", t0 + Duration::from_secs(60)).is_ok());
        // Refused requests were not counted: two more fit in this window.
        assert!(b.admit("example.com", t0 + Duration::from_secs(61)).is_ok());
        assert!(b.admit("example.com", t0 + Duration::from_secs(62)).is_ok());
        assert!(b
            .admit("example.com", t0 + Duration::from_secs(62))
            .is_err());
    }

    #[test]
    fn zero_requests_per_minute_means_the_default() {
        let (b, t0) = budgets(0, 0);
        assert_eq!(b.max_requests(), DEFAULT_REQUESTS_PER_MINUTE);
        for _ in 0..DEFAULT_REQUESTS_PER_MINUTE {
            assert!(b.admit("example.com", t0).is_ok());
        }
        assert!(b.admit("example.com", t0).is_err());
    }

    #[test]
    fn the_data_budget_refuses_once_spent_and_recovers() {
        let (b, t0) = budgets(1000, 1000);
        assert!(b.admit("files.example.com", t0).is_ok());
        b.record_bytes("files.example.com", 600, t0);
        assert!(b.admit("example.com", t0 + Duration::from_secs(1)).is_ok());
        b.record_bytes("cdn.example.com", 400, t0 + Duration::from_secs(1));
        let refused = b
            .admit("example.com", t0 + Duration::from_secs(2))
            .expect_err("budget spent");
        assert_eq!(refused.rule_id, "url.data_budget");
        // The first 600 bytes leave the window at 60 s.
        assert!(b.admit("example.com", t0 + Duration::from_secs(60)).is_ok());
        // No budget at all when it is 0.
        let (unlimited, t0) = budgets(1000, 0);
        unlimited.record_bytes("example.com", u64::MAX, t0);
        unlimited.record_bytes("example.com", u64::MAX, t0);
        assert!(unlimited.admit("example.com", t0).is_ok());
    }

    #[test]
    fn the_site_table_is_bounded_and_fails_closed() {
        let (b, t0) = budgets(10, 0);
        for i in 0..MAX_SITES {
            assert!(b.admit(&format!("site{i}.com"), t0).is_ok());
        }
        // Full of active sites: a new one is refused, a known one still admitted.
        assert!(b.admit("new.com", t0).is_err());
        assert!(b.admit("site0.com", t0).is_ok());
        // A minute later they are idle and make room.
        assert!(b.admit("new.com", t0 + Duration::from_secs(60)).is_ok());
    }
}
