//! Denied connects and sends, as the kernel reports them through the `DENIED_EVENTS` ring
//! buffer, for Pipelock to turn into log lines and metrics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use aya::maps::{MapData, RingBuf};
use pipelock_common::{DeniedEventRecord, AF_INET, DENY_KILL_SWITCH, DENY_PROTOCOL, DENY_UDP};
use serde::Serialize;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::maps::address_bytes;
use super::settings::Protocol;
use super::InterceptError;

/// Why the kernel refused a connect or send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// The kill switch is on.
    KillSwitch,
    /// UDP to a port other than 53 with no allow rule.
    UdpNotAllowed,
    /// Neither TCP nor UDP.
    Protocol,
    /// A code this build does not know (a newer kernel object).
    Unknown(u8),
}

impl DenyReason {
    fn from_code(code: u8) -> Self {
        match code {
            DENY_KILL_SWITCH => Self::KillSwitch,
            DENY_UDP => Self::UdpNotAllowed,
            DENY_PROTOCOL => Self::Protocol,
            other => Self::Unknown(other),
        }
    }

    /// A short name for logs and metric labels.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::KillSwitch => "kill_switch",
            Self::UdpNotAllowed => "udp_not_allowed",
            Self::Protocol => "protocol",
            Self::Unknown(_) => "unknown",
        }
    }
}

/// One refused connect or send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeniedEvent {
    /// Where the process tried to go.
    pub destination: SocketAddr,
    /// IP protocol number (6 TCP, 17 UDP, others for other protocols).
    pub ip_protocol: u8,
    /// The process (thread group id, as in `/proc`).
    pub pid: u32,
    /// cgroup v2 id of the process's cgroup.
    pub cgroup_id: u64,
    pub reason: DenyReason,
}

impl DeniedEvent {
    fn from_record(record: &DeniedEventRecord) -> Self {
        let ip = if record.family == AF_INET {
            IpAddr::V4(Ipv4Addr::from(record.addr[0].to_ne_bytes()))
        } else {
            IpAddr::V6(Ipv6Addr::from(address_bytes(&record.addr)))
        };
        Self {
            destination: SocketAddr::new(ip, record.port),
            ip_protocol: record.protocol,
            pid: record.pid,
            cgroup_id: record.cgroup_id,
            reason: DenyReason::from_code(record.reason),
        }
    }

    /// TCP or UDP, when it is one of them.
    #[must_use]
    pub const fn protocol(&self) -> Option<Protocol> {
        Protocol::from_number(self.ip_protocol)
    }
}

/// The stream of denied events, from [`super::Interception::denied_events`].
pub struct DeniedEvents {
    /// The ring buffer until the first wait, which hands it to tokio's reactor.
    ring: Option<RingBuf<MapData>>,
    reactor: Option<AsyncFd<RingBuf<MapData>>>,
}

impl DeniedEvents {
    pub(super) fn new(ring: RingBuf<MapData>) -> Self {
        Self {
            ring: Some(ring),
            reactor: None,
        }
    }

    fn ring_mut(&mut self) -> Option<&mut RingBuf<MapData>> {
        match self.reactor.as_mut() {
            Some(reactor) => Some(reactor.get_mut()),
            None => self.ring.as_mut(),
        }
    }

    /// The next event already in the ring buffer, without waiting.
    pub fn try_next(&mut self) -> Option<DeniedEvent> {
        let ring = self.ring_mut()?;
        loop {
            let item = ring.next()?;
            if item.len() < std::mem::size_of::<DeniedEventRecord>() {
                // Not a record of this build; skip it.
                continue;
            }
            // SAFETY: the item holds at least size_of::<DeniedEventRecord>() bytes written by
            // the kernel program from a value of that type; read_unaligned copies them out
            // whatever the buffer's alignment, and every bit pattern is a valid record.
            let record =
                unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<DeniedEventRecord>()) };
            return Some(DeniedEvent::from_record(&record));
        }
    }

    /// Waits for the next event. Must run inside a tokio runtime.
    ///
    /// # Errors
    /// Fails when the ring buffer cannot be registered with or polled by tokio's reactor.
    pub async fn next(&mut self) -> Result<DeniedEvent, InterceptError> {
        loop {
            if let Some(event) = self.try_next() {
                return Ok(event);
            }
            if let Some(ring) = self.ring.take() {
                // SAFETY: the RingBuf owns its map fd for its whole life and always returns
                // that same fd from as_raw_fd().
                match unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) } {
                    Ok(reactor) => self.reactor = Some(reactor),
                    Err(error) => {
                        let (ring, error) = error.into_parts();
                        self.ring = Some(ring);
                        return Err(InterceptError::Events(error));
                    }
                }
            }
            let Some(reactor) = self.reactor.as_mut() else {
                return Err(InterceptError::EventsTaken);
            };
            let mut guard = reactor
                .readable_mut()
                .await
                .map_err(InterceptError::Events)?;
            // Clear readiness before reading (at the top of the loop), so an event written
            // after that read wakes this wait again.
            guard.clear_ready();
        }
    }
}
