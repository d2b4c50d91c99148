//! Prometheus metrics. Every metric name Pipelock exports is declared here and nowhere else.
//!
//! A `Metrics` value is built once at start-up and shared (it is cheap to clone: every metric is
//! an `Arc` inside). Front doors record into it; the `/metrics` endpoint renders it in the
//! OpenMetrics text format that Prometheus scrapes.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The content type of the rendered metrics.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of `pipelock_http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpRequestLabels {
    /// Which endpoint answered (`health`, `metrics`, `not_found`, `proxy_unavailable`, …).
    pub endpoint: String,
    /// The HTTP status code sent.
    pub status: u16,
}

/// Labels of `pipelock_proxy_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProxyRequestLabels {
    /// `http` (absolute-URI request), `connect` (tunnel) or `websocket` (session).
    pub kind: String,
    /// `allow`, `warn` or `block`.
    pub verdict: String,
    /// The scanner behind a warn or block (`url`, `dlp`, `injection`, …), `none` otherwise.
    pub scanner: String,
}

/// Labels of `pipelock_proxy_bytes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `out` (client to upstream) or `in` (upstream to client).
    pub direction: String,
}

/// Labels of `pipelock_scan_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScanLabels {
    /// `request` (URL, headers, body) or `response`.
    pub direction: String,
}

/// Labels of `pipelock_websocket_messages_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebsocketMessageLabels {
    /// `out` (client to upstream) or `in` (upstream to client).
    pub direction: String,
    /// `allow`, `warn`, `block` (scanned text), `unscanned` (binary when allowed, text when
    /// its scan is off) or `refused` (binary when not allowed, or over `max_message_bytes`).
    pub verdict: String,
}

/// Labels of `pipelock_mcp_messages_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct McpMessageLabels {
    /// `client` (client to MCP server) or `server` (MCP server to client).
    pub direction: String,
    /// `allow`, `warn`, `block`, `redirect` (answered by a `redirect_profiles` handler) or
    /// `refused` (the kill switch stopped it).
    pub verdict: String,
    /// The scanner behind a warn or block (`dlp`, `injection`, `tool_poison`, `tool_policy`,
    /// `kill_switch`, …), `none` otherwise.
    pub scanner: String,
}

/// Labels of `pipelock_transparent_connections_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransparentRouteLabels {
    /// `http`, `tls`, `allowed` (relayed unscanned by an `intercept.allow` rule) or
    /// `refused` (closed: no original destination, a protocol that is not allowed, a block).
    pub route: String,
}

/// Labels of `pipelock_dns_queries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DnsQueryLabels {
    /// `allow`, `warn`, `block` (answered REFUSED), `malformed` (FORMERR or dropped) or
    /// `error` (the upstream resolver failed; answered SERVFAIL).
    pub verdict: String,
}

/// Labels of `pipelock_intercept_denied_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeniedLabels {
    /// Why the kernel refused (`kill_switch`, `udp_not_allowed`, …).
    pub reason: String,
    /// `tcp`, `udp` or `other`.
    pub protocol: String,
}

/// The process-wide metrics registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    http_requests: Family<HttpRequestLabels, Counter>,
    proxy_requests: Family<ProxyRequestLabels, Counter>,
    proxy_bytes: Family<DirectionLabels, Counter>,
    open_tunnels: Gauge,
    tls_leaves: Gauge,
    open_connections: Gauge,
    scan_duration: Family<ScanLabels, Histogram>,
    websocket_connections: Gauge,
    websocket_messages: Family<WebsocketMessageLabels, Counter>,
    mcp_messages: Family<McpMessageLabels, Counter>,
    kill_switch_active: Gauge,
    intercept_denied: Family<DeniedLabels, Counter>,
    transparent_connections: Family<TransparentRouteLabels, Counter>,
    dns_queries: Family<DnsQueryLabels, Counter>,
}

impl Metrics {
    /// Builds the registry with every metric Pipelock exports.
    #[must_use]
    pub fn new(mode: &str) -> Self {
        let mut registry = Registry::with_prefix("pipelock");

        registry.register(
            "build",
            "Pipelock version and configured mode",
            Info::new(vec![
                ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                ("mode".to_string(), mode.to_string()),
            ]),
        );

        let start_time = Gauge::<i64>::default();
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        start_time.set(started);
        registry.register(
            "start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds",
            start_time,
        );

        let http_requests = Family::<HttpRequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered by Pipelock's own endpoints, by endpoint and status",
            http_requests.clone(),
        );

        let proxy_requests = Family::<ProxyRequestLabels, Counter>::default();
        registry.register(
            "proxy_requests",
            "Forward proxy requests and tunnels, by kind, verdict and deciding scanner",
            proxy_requests.clone(),
        );
        let proxy_bytes = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "proxy_bytes",
            "Bytes relayed by the forward proxy, by direction",
            proxy_bytes.clone(),
        );
        let open_tunnels = Gauge::default();
        registry.register(
            "open_tunnels",
            "CONNECT tunnels open now",
            open_tunnels.clone(),
        );

        let tls_leaves = Gauge::default();
        registry.register(
            "tls_leaf_cache_size",
            "Leaf certificates cached for TLS interception",
            tls_leaves.clone(),
        );

        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open now, on every listener",
            open_connections.clone(),
        );
        let scan_duration = Family::<ScanLabels, Histogram>::new_with_constructor(|| {
            // 1 µs to about 4 s.
            Histogram::new(exponential_buckets(1e-6, 4.0, 12))
        });
        registry.register(
            "scan_duration_seconds",
            "Time spent scanning one proxied request or response, by direction",
            scan_duration.clone(),
        );
        let websocket_connections = Gauge::default();
        registry.register(
            "websocket_connections",
            "WebSocket proxy sessions holding a slot now (opening or open)",
            websocket_connections.clone(),
        );
        let websocket_messages = Family::<WebsocketMessageLabels, Counter>::default();
        registry.register(
            "websocket_messages",
            "WebSocket data messages seen by the WebSocket proxy, by direction and verdict",
            websocket_messages.clone(),
        );
        let mcp_messages = Family::<McpMessageLabels, Counter>::default();
        registry.register(
            "mcp_messages",
            "JSON-RPC messages seen by the MCP front doors, by direction and verdict",
            mcp_messages.clone(),
        );
        let kill_switch_active = Gauge::default();
        registry.register(
            "kill_switch_active",
            "1 while the kill switch refuses every proxied request and connect, else 0",
            kill_switch_active.clone(),
        );

        let transparent_connections = Family::<TransparentRouteLabels, Counter>::default();
        registry.register(
            "transparent_connections",
            "Connections accepted by the transparent listener, by the route taken",
            transparent_connections.clone(),
        );
        let dns_queries = Family::<DnsQueryLabels, Counter>::default();
        registry.register(
            "dns_queries",
            "DNS queries received by the DNS listener, by verdict",
            dns_queries.clone(),
        );

        let intercept_denied = Family::<DeniedLabels, Counter>::default();
        registry.register(
            "intercept_denied",
            "Connects and sends the eBPF programs refused in the attached cgroups, by reason",
            intercept_denied.clone(),
        );

        Self {
            registry: Arc::new(registry),
            http_requests,
            proxy_requests,
            proxy_bytes,
            open_tunnels,
            tls_leaves,
            open_connections,
            scan_duration,
            websocket_connections,
            websocket_messages,
            mcp_messages,
            kill_switch_active,
            intercept_denied,
            transparent_connections,
            dns_queries,
        }
    }

    /// Whether the kill switch is active.
    pub fn set_kill_switch(&self, active: bool) {
        self.kill_switch_active.set(i64::from(active));
    }

    /// A client connection opened (`1`) or closed (`-1`).
    pub fn connections(&self, delta: i64) {
        self.open_connections.inc_by(delta);
    }

    /// Records how long scanning one request or response (`direction`) took.
    pub fn observe_scan(&self, direction: &str, seconds: f64) {
        self.scan_duration
            .get_or_create(&ScanLabels {
                direction: direction.to_string(),
            })
            .observe(seconds);
    }

    /// Counts one request answered by one of Pipelock's own endpoints.
    pub fn record_http_request(&self, endpoint: &str, status: u16) {
        self.http_requests
            .get_or_create(&HttpRequestLabels {
                endpoint: endpoint.to_string(),
                status,
            })
            .inc();
    }

    /// Counts one forward-proxy request or tunnel and its verdict.
    pub fn record_proxy_request(&self, kind: &str, verdict: &str, scanner: &str) {
        self.proxy_requests
            .get_or_create(&ProxyRequestLabels {
                kind: kind.to_string(),
                verdict: verdict.to_string(),
                scanner: scanner.to_string(),
            })
            .inc();
    }

    /// Counts bytes relayed in one direction (`out` or `in`).
    pub fn record_proxy_bytes(&self, direction: &str, bytes: u64) {
        self.proxy_bytes
            .get_or_create(&DirectionLabels {
                direction: direction.to_string(),
            })
            .inc_by(bytes);
    }

    /// A tunnel opened (`1`) or closed (`-1`).
    pub fn tunnels(&self, delta: i64) {
        self.open_tunnels.inc_by(delta);
    }

    /// How many leaf certificates the interception cache holds.
    pub fn set_tls_leaves(&self, cached: usize) {
        self.tls_leaves
            .set(i64::try_from(cached).unwrap_or(i64::MAX));
    }

    /// A WebSocket session took (`1`) or gave back (`-1`) one of the
    /// `max_concurrent_connections` slots.
    pub fn websockets(&self, delta: i64) {
        self.websocket_connections.inc_by(delta);
    }

    /// Counts one WebSocket data message in `direction` (`out`, `in`) and its `verdict`.
    pub fn record_websocket_message(&self, direction: &str, verdict: &str) {
        self.websocket_messages
            .get_or_create(&WebsocketMessageLabels {
                direction: direction.to_string(),
                verdict: verdict.to_string(),
            })
            .inc();
    }

    /// Counts one JSON-RPC message in `direction` (`client`, `server`), its `verdict` and the
    /// `scanner` that decided it.
    pub fn record_mcp_message(&self, direction: &str, verdict: &str, scanner: &str) {
        self.mcp_messages
            .get_or_create(&McpMessageLabels {
                direction: direction.to_string(),
                verdict: verdict.to_string(),
                scanner: scanner.to_string(),
            })
            .inc();
    }

    /// Counts one connect or send the kernel refused.
    pub fn record_intercept_denied(&self, reason: &str, protocol: &str) {
        self.intercept_denied
            .get_or_create(&DeniedLabels {
                reason: reason.to_string(),
                protocol: protocol.to_string(),
            })
            .inc();
    }

    /// Counts one connection of the transparent listener by the `route` it took.
    pub fn record_transparent_connection(&self, route: &str) {
        self.transparent_connections
            .get_or_create(&TransparentRouteLabels {
                route: route.to_string(),
            })
            .inc();
    }

    /// Counts one DNS query by its `verdict`.
    pub fn record_dns_query(&self, verdict: &str) {
        self.dns_queries
            .get_or_create(&DnsQueryLabels {
                verdict: verdict.to_string(),
            })
            .inc();
    }

    /// Renders every metric in the OpenMetrics text format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail: fmt::Write for String is infallible.
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
            out.push_str("# EOF\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let metrics = Metrics::new("balanced");
        metrics.record_http_request("health", 200);
        metrics.record_http_request("health", 200);
        let text = metrics.render();
        assert!(
            text.contains(r#"pipelock_http_requests_total{endpoint="health",status="200"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"pipelock_build_info{version=""#), "{text}");
        assert!(text.contains(r#"mode="balanced""#), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
