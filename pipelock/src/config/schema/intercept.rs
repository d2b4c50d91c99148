//! `intercept`: transparent interception with eBPF (a Pipelock extension; the reference
//! Pipelock has no such section). The kernel programs redirect the TCP connects and DNS
//! queries of the attached cgroups to Pipelock's transparent and DNS listeners; the fields
//! here are the ports, the mark of Pipelock's own sockets, where the kernel objects are
//! pinned, and the destinations that connect directly.

use serde::Deserialize;

/// The `intercept` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Intercept {
    /// Serve the transparent and DNS listeners even when no cgroup is listed (for a process
    /// such as `pipelock attach` that attaches cgroups itself). Listing `cgroups` implies it.
    pub enabled: bool,
    /// cgroup v2 directories `pipelock run` attaches to at start (absolute paths).
    pub cgroups: Vec<String>,
    /// TCP port of the transparent listener, on 127.0.0.1 and [::1].
    pub transparent_port: u16,
    /// UDP port of the DNS listener, on 127.0.0.1 and [::1].
    pub dns_port: u16,
    /// The resolver queries are forwarded to, `ip:port`; empty means the first `nameserver`
    /// of /etc/resolv.conf (port 53).
    pub dns_upstream: String,
    /// `SO_MARK` of every socket Pipelock opens while interception is on; the kernel programs
    /// never redirect a socket carrying it.
    pub mark: u32,
    /// Where the maps and links are pinned (a bpffs directory), so a restarted Pipelock
    /// re-adopts them.
    pub pin_path: String,
    /// Destinations that connect directly, unscanned (Postgres, Redis, other UDP).
    pub allow: Vec<InterceptAllowRule>,
    /// How long the transparent listener waits for a client's first bytes.
    pub peek_timeout_ms: u64,
    /// aya-log output of the kernel programs.
    pub debug_log: bool,
}

impl Default for Intercept {
    fn default() -> Self {
        Self {
            enabled: false,
            cgroups: Vec::new(),
            transparent_port: 8890,
            dns_port: 8853,
            dns_upstream: String::new(),
            mark: 0x0050_4c4b,
            pin_path: "/sys/fs/bpf/pipelock".to_string(),
            allow: Vec::new(),
            peek_timeout_ms: 5000,
            debug_log: false,
        }
    }
}

impl Intercept {
    /// Whether the transparent and DNS listeners run (and Pipelock's sockets carry the mark):
    /// `enabled: true`, or any cgroup listed.
    #[must_use]
    pub fn active(&self) -> bool {
        self.enabled || !self.cgroups.is_empty()
    }
}

/// Which transport an allow rule is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterceptProtocol {
    #[default]
    Tcp,
    Udp,
}

impl std::fmt::Display for InterceptProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        })
    }
}

/// One direct destination: an address range (`cidr`) or a name resolved at start (`host`,
/// each of its addresses a single-address rule), and a port (0 means any port).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InterceptAllowRule {
    pub protocol: InterceptProtocol,
    /// `10.0.0.5/32`, `fd00::/8`; exactly one of `cidr` and `host`.
    pub cidr: String,
    /// A name (`db.internal`) or an address, resolved once when Pipelock starts.
    pub host: String,
    pub port: u16,
}
