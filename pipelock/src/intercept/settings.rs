//! What user space tells the kernel programs: the listener ports, Pipelock's socket mark, the
//! allow rules and the debug-log switch, and their kernel (`pipelock-common`) encodings.

use std::fmt;
use std::net::IpAddr;

use pipelock_common::{
    AllowKey, Settings, AF_INET, AF_INET6, ALLOW_KEY_FIXED_BITS, IPPROTO_TCP, IPPROTO_UDP, ON,
};
use serde::Serialize;

use super::InterceptError;

/// Default `SO_MARK` of Pipelock's own sockets ("PLK").
pub const DEFAULT_MARK: u32 = 0x0050_4c4b;

/// How the programs treat the attached cgroups' traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterceptSettings {
    /// Port of the transparent TCP listener on 127.0.0.1 and [::1].
    pub transparent_port: u16,
    /// Port of the DNS (UDP) listener on 127.0.0.1 and [::1].
    pub dns_port: u16,
    /// `SO_MARK` of Pipelock's own sockets: the programs leave them alone. 0 disables the
    /// exemption (then Pipelock must run outside the attached cgroups).
    pub mark: u32,
    /// Destinations that connect directly, unscanned.
    pub allow: Vec<AllowRule>,
    /// Emit the programs' aya-log debug records (into `tracing`, target `pipelock_ebpf`).
    pub debug_log: bool,
}

/// The transport an allow rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    #[must_use]
    pub const fn number(self) -> u8 {
        match self {
            Self::Tcp => IPPROTO_TCP,
            Self::Udp => IPPROTO_UDP,
        }
    }

    /// The protocol for an IP protocol number, when it is TCP or UDP.
    #[must_use]
    pub const fn from_number(number: u8) -> Option<Self> {
        match number {
            IPPROTO_TCP => Some(Self::Tcp),
            IPPROTO_UDP => Some(Self::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        })
    }
}

/// A destination that connects directly: `addr/prefix`, on `port` (0 = any port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AllowRule {
    pub protocol: Protocol,
    pub addr: IpAddr,
    /// Prefix length in bits: at most 32 for IPv4, 128 for IPv6.
    pub prefix: u8,
    pub port: u16,
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{} port {}",
            self.protocol, self.addr, self.prefix, self.port
        )
    }
}

impl AllowRule {
    /// The rule's LPM trie key: (prefix length in bits, data). Host bits beyond the prefix are
    /// cleared, so `10.0.0.5/24` and `10.0.0.0/24` are the same rule.
    ///
    /// # Errors
    /// Fails when the prefix is longer than the address.
    pub(super) fn key(&self) -> Result<(u32, AllowKey), InterceptError> {
        let (family, bytes, max) = match self.addr {
            IpAddr::V4(v4) => {
                let mut bytes = [0u8; 16];
                bytes[..4].copy_from_slice(&v4.octets());
                (AF_INET, bytes, 32u8)
            }
            IpAddr::V6(v6) => (AF_INET6, v6.octets(), 128u8),
        };
        if self.prefix > max {
            return Err(InterceptError::InvalidSettings(format!(
                "allow rule {self}: the prefix is longer than {max} bits"
            )));
        }
        let mut addr = [0u8; 16];
        for (i, byte) in bytes.iter().enumerate().take(usize::from(max / 8)) {
            let bit = u32::try_from(i * 8).unwrap_or(u32::MAX);
            let keep = u32::from(self.prefix).saturating_sub(bit).min(8);
            // Keep the first `keep` bits of the byte.
            let mask = if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
            addr[i] = byte & mask;
        }
        Ok((
            ALLOW_KEY_FIXED_BITS + u32::from(self.prefix),
            AllowKey {
                protocol: self.protocol.number(),
                // AF_INET6 (10) fits a u8.
                family: u8::try_from(family).unwrap_or(u8::MAX),
                port: self.port.to_be_bytes(),
                addr,
            },
        ))
    }
}

impl InterceptSettings {
    /// Checks what the kernel encoding cannot hold.
    ///
    /// # Errors
    /// Fails on a zero port, equal ports, or an allow rule whose prefix is too long.
    pub fn validate(&self) -> Result<(), InterceptError> {
        if self.transparent_port == 0 || self.dns_port == 0 {
            return Err(InterceptError::InvalidSettings(
                "transparent_port and dns_port must not be 0".to_string(),
            ));
        }
        for rule in &self.allow {
            rule.key()?;
        }
        Ok(())
    }

    /// The kernel's settings entry, with the kill switch as given.
    pub(super) fn kernel(&self, kill_switch: bool) -> Settings {
        Settings {
            transparent_port: self.transparent_port,
            dns_port: self.dns_port,
            mark: self.mark,
            kill_switch: if kill_switch { ON } else { 0 },
            debug_log: if self.debug_log { ON } else { 0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_keys_clear_host_bits_and_encode_the_port_big_endian() {
        let rule = AllowRule {
            protocol: Protocol::Tcp,
            addr: "10.1.2.3".parse().unwrap(),
            prefix: 20,
            port: 5432,
        };
        let (bits, key) = rule.key().unwrap();
        assert_eq!(bits, 32 + 20);
        assert_eq!(key.protocol, 6);
        assert_eq!(key.family, 2);
        assert_eq!(key.port, [0x15, 0x38]);
        assert_eq!(&key.addr[..4], &[10, 1, 0, 0]);

        let v6 = AllowRule {
            protocol: Protocol::Udp,
            addr: "2001:db8::1".parse().unwrap(),
            prefix: 128,
            port: 0,
        };
        let (bits, key) = v6.key().unwrap();
        assert_eq!(bits, 32 + 128);
        assert_eq!(key.family, 10);
        assert_eq!(key.addr[15], 1);
    }

    #[test]
    fn prefixes_longer_than_the_address_are_refused() {
        let rule = AllowRule {
            protocol: Protocol::Tcp,
            addr: "10.0.0.1".parse().unwrap(),
            prefix: 33,
            port: 1,
        };
        assert!(rule
            .key()
            .unwrap_err()
            .to_string()
            .contains("longer than 32"));
    }
}
