//! What `pipelock validate` prints: the mode, the listeners and each feature's state.

use super::schema::Config;

fn on_off(enabled: bool) -> &'static str {
    if enabled {
        "enabled"
    } else {
        "disabled"
    }
}

fn with_action(enabled: bool, action: impl std::fmt::Display) -> String {
    if enabled {
        format!("enabled, action {action}")
    } else {
        "disabled".to_string()
    }
}

impl Config {
    /// One (name, state) pair per line of `pipelock validate`'s output.
    #[must_use]
    pub fn summary(&self) -> Vec<(String, String)> {
        let lines: Vec<(&str, String)> = vec![
            ("mode", self.mode.to_string()),
            (
                "enforce",
                if self.enforce_enabled() {
                    "on"
                } else {
                    "off (findings are only logged)"
                }
                .to_string(),
            ),
            ("listen", self.fetch_proxy.listen.clone()),
            (
                "metrics",
                if self.metrics_listen.is_empty() {
                    "on the main listener".to_string()
                } else {
                    self.metrics_listen.clone()
                },
            ),
            (
                "forward_proxy",
                on_off(self.forward_proxy.enabled).to_string(),
            ),
            (
                "tls_interception",
                on_off(self.tls_interception.enabled).to_string(),
            ),
            (
                "websocket_proxy",
                on_off(self.websocket_proxy.enabled).to_string(),
            ),
            (
                "request_body_scanning",
                with_action(
                    self.request_body_scanning.enabled,
                    self.request_body_scanning.action,
                ),
            ),
            (
                "dlp",
                format!(
                    "{} custom patterns, built-ins {}, env secrets {}",
                    self.dlp.patterns.len(),
                    if self.dlp.include_defaults {
                        "included"
                    } else {
                        "excluded"
                    },
                    if self.dlp.scan_env {
                        "scanned"
                    } else {
                        "not scanned"
                    }
                ),
            ),
            (
                "response_scanning",
                with_action(
                    self.response_scanning.enabled,
                    self.response_scanning.action,
                ),
            ),
            (
                "mcp_input_scanning",
                with_action(
                    self.mcp_input_scanning.enabled,
                    self.mcp_input_scanning.action,
                ),
            ),
            (
                "mcp_tool_scanning",
                with_action(
                    self.mcp_tool_scanning.enabled,
                    self.mcp_tool_scanning.action,
                ),
            ),
            (
                "mcp_tool_policy",
                if self.mcp_tool_policy.enabled {
                    format!(
                        "enabled, action {}, {} rules, {} redirect profiles",
                        self.mcp_tool_policy.action,
                        self.mcp_tool_policy.rules.len(),
                        self.mcp_tool_policy.redirect_profiles.len()
                    )
                } else {
                    "disabled".to_string()
                },
            ),
            (
                "mcp_session_binding",
                with_action(
                    self.mcp_session_binding.enabled,
                    self.mcp_session_binding.unknown_tool_action,
                ),
            ),
            (
                "tool_chain_detection",
                with_action(
                    self.tool_chain_detection.enabled,
                    self.tool_chain_detection.action,
                ),
            ),
            (
                "session_profiling",
                on_off(self.session_profiling.enabled).to_string(),
            ),
            (
                "adaptive_enforcement",
                on_off(self.adaptive_enforcement.enabled).to_string(),
            ),
            (
                "kill_switch",
                if self.kill_switch.enabled {
                    "ACTIVE (deny all)"
                } else {
                    "inactive"
                }
                .to_string(),
            ),
            (
                "intercept",
                if self.intercept.active() {
                    format!(
                        "enabled, {} cgroups, transparent port {}, DNS port {}, {} allow rules",
                        self.intercept.cgroups.len(),
                        self.intercept.transparent_port,
                        self.intercept.dns_port,
                        self.intercept.allow.len()
                    )
                } else {
                    "disabled".to_string()
                },
            ),
            ("trusted_domains", self.trusted_domains.len().to_string()),
            (
                "logging",
                format!("{:?} to {:?}", self.logging.format, self.logging.output).to_lowercase(),
            ),
        ];
        lines.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}
