//! The emergency deny-all switch (`kill_switch`).
//!
//! Four sources are OR-ed, as in the reference, and reported in this priority: the config
//! (`kill_switch.enabled: true` activates it at start-up), the API (`POST
//! /api/v1/killswitch`), SIGUSR1 (each signal toggles it) and the sentinel file (active while
//! it exists; a stat error other than "not found" counts as active, failing closed).
//!
//! While active, every proxied request is refused with 503 `kill_switch_active`, open tunnels
//! and WebSocket sessions are closed, and the eBPF programs refuse every connect from the
//! attached cgroups. `/health`, `/metrics` and the API stay reachable (each can be made
//! subject to it with `*_exempt: false`), and clients in `allowlist_ips` are never refused.
//!
//! [`KillSwitch::refresh`] recomputes the state and publishes changes to subscribers; the
//! sentinel file is polled for that by [`sources::watch`].

pub mod sources;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::KillSwitch as KillSwitchConfig;
use crate::scan::url::Cidr;

/// The environment variable that overrides `kill_switch.api_token`.
pub const API_TOKEN_ENV: &str = "PIPELOCK_KILLSWITCH_API_TOKEN";

/// What activated the kill switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Config,
    Api,
    Signal,
    Sentinel,
}

impl Source {
    /// The name used in logs, metrics and the API.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Api => "api",
            Source::Signal => "signal",
            Source::Sentinel => "sentinel",
        }
    }
}

/// Which of Pipelock's own endpoints stay reachable while the switch is active.
#[derive(Debug, Clone, Copy)]
pub struct Exemptions {
    pub health: bool,
    pub metrics: bool,
    pub api: bool,
}

/// The kill switch of one running Pipelock.
#[derive(Debug)]
pub struct KillSwitch {
    config: bool,
    api: AtomicBool,
    signal: AtomicBool,
    sentinel: Option<PathBuf>,
    message: String,
    exempt: Exemptions,
    allowlist: Vec<Cidr>,
    api_token: Option<String>,
    /// The last published state; subscribers wait on it.
    published: tokio::sync::watch::Sender<bool>,
}

/// An `allowlist_ips` entry: an IP address or a CIDR block.
#[must_use]
pub fn parse_allowed(entry: &str) -> Option<Cidr> {
    let entry = entry.trim();
    if let Some((addr, prefix)) = entry.split_once('/') {
        let max = if addr.contains(':') { 128 } else { 32 };
        prefix
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .and_then(|_| Cidr::parse(entry))
    } else {
        entry.parse::<IpAddr>().ok().map(Cidr::host)
    }
}

impl KillSwitch {
    /// The switch described by `config` (validated: every allowlist entry parses); the API
    /// token comes from [`API_TOKEN_ENV`] when set, else from the config.
    #[must_use]
    pub fn new(config: &KillSwitchConfig) -> Self {
        let token = std::env::var(API_TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| Some(config.api_token.clone()).filter(|t| !t.is_empty()));
        let switch = Self {
            config: config.enabled,
            api: AtomicBool::new(false),
            signal: AtomicBool::new(false),
            sentinel: (!config.sentinel_file.trim().is_empty())
                .then(|| PathBuf::from(config.sentinel_file.trim())),
            message: config.message.clone(),
            exempt: Exemptions {
                health: config.health_exempt,
                metrics: config.metrics_exempt,
                api: config.api_exempt,
            },
            allowlist: config
                .allowlist_ips
                .iter()
                .filter_map(|e| parse_allowed(e))
                .collect(),
            api_token: token,
            published: tokio::sync::watch::channel(false).0,
        };
        switch.refresh();
        switch
    }

    /// What keeps the switch active now, if anything (the sentinel file is checked now).
    #[must_use]
    pub fn active(&self) -> Option<Source> {
        if self.config {
            Some(Source::Config)
        } else if self.api.load(Ordering::SeqCst) {
            Some(Source::Api)
        } else if self.signal.load(Ordering::SeqCst) {
            Some(Source::Signal)
        } else if self.sentinel_present() {
            Some(Source::Sentinel)
        } else {
            None
        }
    }

    fn sentinel_present(&self) -> bool {
        let Some(path) = &self.sentinel else {
            return false;
        };
        match std::fs::metadata(path) {
            Ok(_) => true,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
            // Cannot tell whether the file exists: fail closed.
            Err(_) => true,
        }
    }

    /// Recomputes the state and, when it changed, publishes it to subscribers; returns it.
    pub fn refresh(&self) -> bool {
        let source = self.active();
        let on = source.is_some();
        let changed = self.published.send_if_modified(|current| {
            let changed = *current != on;
            *current = on;
            changed
        });
        if changed {
            match source {
                Some(source) => tracing::error!(
                    source = source.name(),
                    "kill switch ACTIVE: every proxied request and connect is refused"
                ),
                None => tracing::warn!("kill switch released"),
            }
        }
        on
    }

    /// Sets the API source (`POST /api/v1/killswitch`); returns the resulting state.
    pub fn set_api(&self, on: bool) -> bool {
        self.api.store(on, Ordering::SeqCst);
        self.refresh()
    }

    /// Toggles the signal source (SIGUSR1); returns the resulting state.
    pub fn toggle_signal(&self) -> bool {
        self.signal.fetch_xor(true, Ordering::SeqCst);
        self.refresh()
    }

    /// The published state, to wait for changes (`wait_for(|on| *on)`).
    #[must_use]
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.published.subscribe()
    }

    /// Whether requests from `client` are never refused (`allowlist_ips`).
    #[must_use]
    pub fn exempt_client(&self, client: IpAddr) -> bool {
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        self.allowlist.iter().any(|c| c.contains(client))
    }

    /// Which of Pipelock's own endpoints stay reachable.
    #[must_use]
    pub fn exemptions(&self) -> Exemptions {
        self.exempt
    }

    /// The message refusals carry (`kill_switch.message`).
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the API is served (a token is configured).
    #[must_use]
    pub fn api_enabled(&self) -> bool {
        self.api_token.is_some()
    }

    /// Whether `presented` is the API token, compared in constant time.
    #[must_use]
    pub fn token_matches(&self, presented: &str) -> bool {
        let Some(token) = &self.api_token else {
            return false;
        };
        crate::auth::constant_time_eq(token.as_bytes(), presented.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switch(edit: impl FnOnce(&mut KillSwitchConfig)) -> KillSwitch {
        let mut config = KillSwitchConfig::default();
        edit(&mut config);
        KillSwitch::new(&config)
    }

    #[test]
    fn sources_are_or_ed_and_reported_by_priority() {
        let ks = switch(|_| {});
        assert_eq!(ks.active(), None);
        assert!(ks.toggle_signal());
        assert_eq!(ks.active(), Some(Source::Signal));
        assert!(ks.set_api(true));
        assert_eq!(ks.active(), Some(Source::Api));
        assert!(ks.set_api(false), "the signal still holds it");
        assert!(!ks.toggle_signal());
        assert!(switch(|c| c.enabled = true).refresh());
    }

    #[test]
    fn the_sentinel_file_holds_it_while_it_exists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stop");
        let ks = switch(|c| c.sentinel_file = path.display().to_string());
        let changes = ks.subscribe();
        assert!(!ks.refresh());
        std::fs::write(&path, b"").expect("write");
        assert!(ks.refresh());
        assert!(changes.has_changed().unwrap_or(false));
        assert_eq!(ks.active(), Some(Source::Sentinel));
        std::fs::remove_file(&path).expect("remove");
        assert!(!ks.refresh());
    }

    #[test]
    fn allowlisted_clients_and_tokens() {
        let ks = switch(|c| {
            c.allowlist_ips = vec!["10.0.0.0/8".into(), "127.0.0.1".into()];
            c.api_token = "s3cret-token".into();
        });
        assert!(ks.exempt_client("10.1.2.3".parse().expect("ip")));
        assert!(ks.exempt_client("::ffff:127.0.0.1".parse().expect("ip")));
        assert!(!ks.exempt_client("127.0.0.2".parse().expect("ip")));
        assert!(ks.token_matches("s3cret-token"));
        assert!(!ks.token_matches("s3cret-toke"));
        assert!(!ks.token_matches("s3cret-tokenx"));
        assert!(!ks.token_matches(""));
        assert!(parse_allowed("nonsense").is_none());
        assert!(parse_allowed("10.0.0.0/33").is_none());
        assert!(parse_allowed("fd00::/64").is_some());
    }
}
