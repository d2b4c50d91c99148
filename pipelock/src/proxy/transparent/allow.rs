//! `intercept.allow` with every `host` rule resolved (once, at start): the destinations that
//! connect directly, unscanned. The kernel programs let them through without redirecting;
//! the transparent listener consults the same list for connections that reach it anyway
//! (no TLS server name, or a protocol other than TLS and HTTP), which it relays opaquely
//! only when a rule allows the original destination, and closes otherwise.

use std::net::{IpAddr, SocketAddr};

use crate::config::{InterceptAllowRule, InterceptProtocol};
use crate::scan::url::Cidr;

/// One resolved rule: a protocol, an address block and a port (0 = any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowEntry {
    pub protocol: InterceptProtocol,
    pub net: Cidr,
    pub port: u16,
}

/// Why the allow rules could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum AllowError {
    #[error("intercept.allow[{index}]: {cidr:?} is not a CIDR such as 10.0.0.5/32")]
    Cidr { index: usize, cidr: String },
    #[error("intercept.allow[{index}]: cannot resolve host {host:?}: {source}")]
    Resolve {
        index: usize,
        host: String,
        source: std::io::Error,
    },
    #[error("intercept.allow[{index}]: host {host:?} resolves to no address")]
    NoAddress { index: usize, host: String },
}

/// The resolved allow rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<AllowEntry>,
}

impl AllowList {
    /// Resolves `rules`: a `cidr` is one entry, a `host` one single-address entry per address
    /// it resolves to now.
    ///
    /// # Errors
    /// A CIDR that does not parse (validation rejects it first) or a host that does not
    /// resolve.
    pub async fn resolve(rules: &[InterceptAllowRule]) -> Result<Self, AllowError> {
        let mut entries = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            let entry = |addr: IpAddr, prefix: u8| AllowEntry {
                protocol: rule.protocol,
                net: Cidr {
                    addr: canonical(addr),
                    prefix: if addr.is_ipv6() && canonical(addr).is_ipv4() {
                        prefix.saturating_sub(96)
                    } else {
                        prefix
                    },
                },
                port: rule.port,
            };
            let cidr = rule.cidr.trim();
            if !cidr.is_empty() {
                let net = Cidr::parse(cidr).ok_or_else(|| AllowError::Cidr {
                    index,
                    cidr: cidr.to_string(),
                })?;
                entries.push(entry(net.addr, net.prefix));
                continue;
            }
            let host = rule.host.trim();
            let addrs: Vec<IpAddr> = if let Ok(ip) = host.parse::<IpAddr>() {
                vec![ip]
            } else {
                tokio::net::lookup_host((host, 0))
                    .await
                    .map_err(|source| AllowError::Resolve {
                        index,
                        host: host.to_string(),
                        source,
                    })?
                    .map(|a| a.ip())
                    .collect()
            };
            if addrs.is_empty() {
                return Err(AllowError::NoAddress {
                    index,
                    host: host.to_string(),
                });
            }
            for addr in addrs {
                let full = if addr.is_ipv4() { 32 } else { 128 };
                let resolved = entry(addr, full);
                if !entries.contains(&resolved) {
                    entries.push(resolved);
                }
            }
        }
        Ok(Self { entries })
    }

    /// Every resolved entry (what the kernel side's allow map is filled from).
    #[must_use]
    pub fn entries(&self) -> &[AllowEntry] {
        &self.entries
    }

    /// Whether a rule allows `protocol` traffic to `dest`.
    #[must_use]
    pub fn allows(&self, protocol: InterceptProtocol, dest: SocketAddr) -> bool {
        let ip = canonical(dest.ip());
        self.entries.iter().any(|e| {
            e.protocol == protocol && (e.port == 0 || e.port == dest.port()) && e.net.contains(ip)
        })
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(protocol: InterceptProtocol, cidr: &str, host: &str, port: u16) -> InterceptAllowRule {
        InterceptAllowRule {
            protocol,
            cidr: cidr.to_string(),
            host: host.to_string(),
            port,
        }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("socket address")
    }

    #[tokio::test]
    async fn cidr_host_and_port_rules() {
        let list = AllowList::resolve(&[
            rule(InterceptProtocol::Tcp, "10.0.0.5/32", "", 5432),
            rule(InterceptProtocol::Udp, "", "127.0.0.3", 0),
            rule(InterceptProtocol::Tcp, "fd00::/8", "", 0),
            rule(InterceptProtocol::Tcp, "", "localhost", 6379),
        ])
        .await
        .expect("resolves");
        let tcp = InterceptProtocol::Tcp;
        assert!(list.allows(tcp, addr("10.0.0.5:5432")));
        assert!(list.allows(tcp, addr("[::ffff:10.0.0.5]:5432")));
        assert!(!list.allows(tcp, addr("10.0.0.5:5433")));
        assert!(!list.allows(tcp, addr("10.0.0.6:5432")));
        assert!(!list.allows(InterceptProtocol::Udp, addr("10.0.0.5:5432")));
        assert!(list.allows(InterceptProtocol::Udp, addr("127.0.0.3:123")));
        assert!(!list.allows(tcp, addr("127.0.0.3:123")));
        assert!(list.allows(tcp, addr("[fd12::1]:443")));
        assert!(list.allows(tcp, addr("127.0.0.1:6379")));
        assert!(!list.allows(tcp, addr("127.0.0.1:6380")));
    }
}
