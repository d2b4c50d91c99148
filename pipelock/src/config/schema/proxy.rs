//! Sections of the front doors: the main listener, forward proxy, TLS interception,
//! WebSocket and reverse proxies, request-body scanning, and the kill switch.

use serde::Deserialize;

use super::BlockOrWarn;

/// The main listener (`/fetch`, forward proxy, `/health`, `/metrics`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchProxy {
    /// `host:port` of the main listener.
    pub listen: String,
    pub timeout_seconds: u64,
    pub max_response_mb: u64,
    pub user_agent: String,
    pub monitoring: Monitoring,
}

impl Default for FetchProxy {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8888".to_string(),
            timeout_seconds: 30,
            max_response_mb: 10,
            user_agent: "Pipelock Fetch/1.0".to_string(),
            monitoring: Monitoring::default(),
        }
    }
}

/// URL heuristics, rate limits and data budgets of outbound requests.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Monitoring {
    pub max_url_length: u64,
    pub entropy_threshold: f64,
    pub subdomain_entropy_threshold: f64,
    pub max_requests_per_minute: u64,
    /// Data budget: bytes per registrable domain per minute (0 disables).
    pub max_data_per_minute: u64,
    pub blocklist: Vec<String>,
    pub subdomain_entropy_exclusions: Vec<String>,
}

impl Default for Monitoring {
    fn default() -> Self {
        Self {
            max_url_length: 2048,
            entropy_threshold: 4.5,
            subdomain_entropy_threshold: 4.0,
            max_requests_per_minute: 60,
            max_data_per_minute: 0,
            blocklist: [
                "*.pastebin.com",
                "*.hastebin.com",
                "*.paste.ee",
                "*.transfer.sh",
                "*.file.io",
                "*.requestbin.com",
            ]
            .map(String::from)
            .to_vec(),
            subdomain_entropy_exclusions: Vec::new(),
        }
    }
}

/// The forward proxy (`HTTPS_PROXY`): absolute-URI requests and CONNECT on the main listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardProxy {
    pub enabled: bool,
    pub max_tunnel_seconds: u64,
    pub idle_timeout_seconds: u64,
    pub sni_verification: bool,
    pub redirect_websocket_hosts: Vec<String>,
}

impl Default for ForwardProxy {
    fn default() -> Self {
        Self {
            enabled: false,
            max_tunnel_seconds: 300,
            idle_timeout_seconds: 120,
            sni_verification: true,
            redirect_websocket_hosts: Vec::new(),
        }
    }
}

/// TLS interception of CONNECT tunnels with a Pipelock CA.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsInterception {
    pub enabled: bool,
    /// CA certificate (PEM); empty means `~/.pipelock/ca.pem`.
    pub ca_cert: String,
    /// CA key (PEM); empty means `~/.pipelock/ca-key.pem`.
    pub ca_key: String,
    pub passthrough_domains: Vec<String>,
    /// Leaf certificate lifetime, a Go duration such as `24h`.
    pub cert_ttl: String,
    pub cert_cache_size: u64,
    pub max_response_bytes: u64,
    /// Pipelock extension: a PEM file of CAs trusted for origins besides the system roots
    /// (an internal CA). Empty means the system roots only.
    pub upstream_ca_file: String,
}

impl Default for TlsInterception {
    fn default() -> Self {
        Self {
            enabled: false,
            ca_cert: String::new(),
            ca_key: String::new(),
            passthrough_domains: Vec::new(),
            cert_ttl: "24h".to_string(),
            cert_cache_size: 10_000,
            max_response_bytes: 5 * 1024 * 1024,
            upstream_ca_file: String::new(),
        }
    }
}

/// How the WebSocket proxy treats the `Origin` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OriginPolicy {
    #[default]
    Rewrite,
    Forward,
    Strip,
}

/// The WebSocket proxy (`/ws?url=…`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebsocketProxy {
    pub enabled: bool,
    pub max_message_bytes: u64,
    pub max_concurrent_connections: u64,
    pub scan_text_frames: bool,
    pub allow_binary_frames: bool,
    pub forward_cookies: bool,
    pub strip_compression: bool,
    pub max_connection_seconds: u64,
    pub idle_timeout_seconds: u64,
    pub origin_policy: OriginPolicy,
}

impl Default for WebsocketProxy {
    fn default() -> Self {
        Self {
            enabled: false,
            max_message_bytes: 1024 * 1024,
            max_concurrent_connections: 128,
            scan_text_frames: true,
            allow_binary_frames: false,
            forward_cookies: false,
            strip_compression: true,
            max_connection_seconds: 3600,
            idle_timeout_seconds: 300,
            origin_policy: OriginPolicy::Rewrite,
        }
    }
}

/// A generic scanning HTTP reverse proxy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReverseProxy {
    pub enabled: bool,
    pub listen: String,
    pub upstream: String,
}

impl Default for ReverseProxy {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: ":8890".to_string(),
            upstream: String::new(),
        }
    }
}

/// Which request headers are DLP-scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeaderMode {
    #[default]
    Sensitive,
    All,
}

/// DLP on request bodies and headers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequestBodyScanning {
    pub enabled: bool,
    pub action: BlockOrWarn,
    /// Bodies larger than this are blocked (they cannot be scanned).
    pub max_body_bytes: u64,
    pub scan_headers: bool,
    pub header_mode: HeaderMode,
    pub sensitive_headers: Vec<String>,
    pub ignore_headers: Vec<String>,
}

impl RequestBodyScanning {
    /// Whether the header `name` is scanned: header scanning is on, the header is not
    /// ignored, and it is sensitive (or every header is scanned in `header_mode: all`).
    #[must_use]
    pub fn scans_header(&self, name: &str) -> bool {
        self.scan_headers
            && !self
                .ignore_headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
            && (self.header_mode == HeaderMode::All
                || self
                    .sensitive_headers
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(name)))
    }
}

impl Default for RequestBodyScanning {
    fn default() -> Self {
        Self {
            enabled: true,
            action: BlockOrWarn::Warn,
            max_body_bytes: 5 * 1024 * 1024,
            scan_headers: true,
            header_mode: HeaderMode::Sensitive,
            sensitive_headers: [
                "Authorization",
                "Cookie",
                "X-Api-Key",
                "X-Token",
                "Proxy-Authorization",
                "X-Goog-Api-Key",
            ]
            .map(String::from)
            .to_vec(),
            ignore_headers: Vec::new(),
        }
    }
}

/// The emergency deny-all switch. `enabled: true` activates it at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KillSwitch {
    pub enabled: bool,
    /// While this file exists, the kill switch is active.
    pub sentinel_file: String,
    pub message: String,
    pub health_exempt: bool,
    pub metrics_exempt: bool,
    pub api_exempt: bool,
    /// Bearer token of the kill-switch API (env `PIPELOCK_KILLSWITCH_API_TOKEN` overrides).
    pub api_token: String,
    /// Separate `host:port` for the kill-switch API.
    pub api_listen: String,
    pub allowlist_ips: Vec<String>,
}

impl Default for KillSwitch {
    fn default() -> Self {
        Self {
            enabled: false,
            sentinel_file: String::new(),
            message: "Emergency deny-all active".to_string(),
            health_exempt: true,
            metrics_exempt: true,
            api_exempt: true,
            api_token: String::new(),
            api_listen: String::new(),
            allowlist_ips: Vec::new(),
        }
    }
}
