//! Operational sections: logging, session profiling, adaptive enforcement, the health
//! watchdog and the flight recorder.

use serde::Deserialize;

use super::BlockOrWarn;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

/// Where logs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogOutput {
    #[default]
    Stdout,
    File,
    Both,
}

/// Logging and audit events.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Logging {
    pub format: LogFormat,
    pub output: LogOutput,
    /// Log file, required when `output` is `file` or `both`.
    pub file: String,
    pub include_allowed: bool,
    pub include_blocked: bool,
}

impl Default for Logging {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            output: LogOutput::Stdout,
            file: String::new(),
            include_allowed: true,
            include_blocked: true,
        }
    }
}

/// Per-session behaviour profiling (domain bursts, volume spikes).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionProfiling {
    pub enabled: bool,
    pub anomaly_action: BlockOrWarn,
    pub domain_burst: u64,
    pub window_minutes: u64,
    pub volume_spike_ratio: f64,
    pub max_sessions: u64,
    pub session_ttl_minutes: u64,
    pub cleanup_interval_seconds: u64,
}

impl Default for SessionProfiling {
    fn default() -> Self {
        Self {
            enabled: false,
            anomaly_action: BlockOrWarn::Warn,
            domain_burst: 5,
            window_minutes: 5,
            volume_spike_ratio: 3.0,
            max_sessions: 1000,
            session_ttl_minutes: 30,
            cleanup_interval_seconds: 60,
        }
    }
}

/// Escalating enforcement for sessions that keep tripping scanners.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveEnforcement {
    pub enabled: bool,
    pub escalation_threshold: f64,
    pub decay_per_clean_request: f64,
    pub levels: EscalationLevels,
    pub exempt_domains: Vec<String>,
}

impl Default for AdaptiveEnforcement {
    fn default() -> Self {
        Self {
            enabled: false,
            escalation_threshold: 5.0,
            decay_per_clean_request: 0.5,
            levels: EscalationLevels::default(),
            exempt_domains: Vec::new(),
        }
    }
}

/// What each escalation level changes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscalationLevels {
    pub elevated: EscalationLevel,
    pub high: EscalationLevel,
    pub critical: EscalationLevel,
}

impl Default for EscalationLevels {
    fn default() -> Self {
        Self {
            elevated: EscalationLevel {
                upgrade_warn: Some(true),
                upgrade_ask: Some(false),
                block_all: Some(false),
            },
            high: EscalationLevel {
                upgrade_warn: Some(true),
                upgrade_ask: Some(true),
                block_all: Some(false),
            },
            critical: EscalationLevel {
                upgrade_warn: Some(true),
                upgrade_ask: Some(true),
                block_all: Some(true),
            },
        }
    }
}

/// One escalation level: turn warn (or ask) into block, or block everything.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscalationLevel {
    pub upgrade_warn: Option<bool>,
    pub upgrade_ask: Option<bool>,
    pub block_all: Option<bool>,
}

/// `/health` answers 503 when a subsystem's heartbeat goes stale.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthWatchdog {
    pub enabled: bool,
    pub interval_seconds: u64,
    pub expose_subsystems: bool,
}

impl Default for HealthWatchdog {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_seconds: 2,
            expose_subsystems: false,
        }
    }
}

/// Signed, hash-chained action receipts (inert until `dir` and `signing_key_path` are set).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlightRecorder {
    pub enabled: bool,
    pub dir: String,
    pub signing_key_path: String,
    pub require_receipts: bool,
    pub redact: bool,
    pub sign_checkpoints: bool,
}

impl Default for FlightRecorder {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: String::new(),
            signing_key_path: String::new(),
            require_receipts: false,
            redact: true,
            sign_checkpoints: true,
        }
    }
}
