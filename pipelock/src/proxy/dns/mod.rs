//! The DNS listener (`intercept.dns_port`, UDP on 127.0.0.1 and [::1]): the kernel programs
//! redirect the attached cgroups' DNS queries (UDP port 53) here. Each query's name is
//! scanned ([`crate::scan::dns`]) and judged on the one policy path; a block is answered
//! REFUSED with the question echoed and never leaves the machine, anything else is forwarded
//! to `intercept.dns_upstream` from a socket carrying the mark, and the resolver's answer is
//! relayed byte for byte. Audit mode warns and forwards.
//!
//! A message that is not a query with one question is answered FORMERR when its header
//! parses (NOTIMP for other operations), else dropped; both are counted. A resolver that does
//! not answer within [`UPSTREAM_TIMEOUT`] gets the client a SERVFAIL.

pub mod message;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;

use self::message::{Rcode, Unusable};
use crate::proxy::forward::judge::Judgement;
use crate::proxy::ServerState;

/// How long the upstream resolver may take (under the 5 s most stub resolvers wait, so the
/// client hears SERVFAIL rather than nothing).
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(4);
/// Largest message read (the UDP maximum; EDNS answers are usually ≤ 4096).
const MAX_MESSAGE: usize = 65_535;
/// Queries in flight at once; beyond, new ones are dropped (the client retries).
const MAX_IN_FLIGHT: usize = 1024;

/// Why the DNS listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("intercept.dns_upstream is empty and /etc/resolv.conf names no usable nameserver; set intercept.dns_upstream (ip:port)")]
    NoUpstream,
    #[error("cannot read /etc/resolv.conf for the DNS upstream: {0}")]
    ResolvConf(io::Error),
    #[error("intercept.dns_upstream {0:?} is not ip:port")]
    BadUpstream(String),
    #[error("the DNS upstream {0} is Pipelock's own DNS listener; set intercept.dns_upstream to a real resolver")]
    Loop(SocketAddr),
    #[error("cannot listen for DNS on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// The resolver queries go to: `configured` (`ip:port`), or the first `nameserver` of
/// `resolv_conf` (port 53). Refused when it is the DNS listener itself (`dns_port` on a
/// loopback address).
///
/// # Errors
/// Nothing usable is configured, or the choice would loop.
pub fn upstream(
    configured: &str,
    resolv_conf: Option<&str>,
    dns_port: u16,
) -> Result<SocketAddr, DnsError> {
    let addr = if configured.is_empty() {
        resolv_conf
            .unwrap_or("")
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                (words.next() == Some("nameserver"))
                    .then(|| words.next())
                    .flatten()
            })
            .find_map(|ip| ip.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .ok_or(DnsError::NoUpstream)?
    } else {
        configured
            .parse()
            .map_err(|_| DnsError::BadUpstream(configured.to_string()))?
    };
    if addr.ip().is_loopback() && addr.port() == dns_port {
        return Err(DnsError::Loop(addr));
    }
    Ok(addr)
}

/// The upstream for the config in `state`, reading /etc/resolv.conf when needed.
///
/// # Errors
/// See [`upstream`]; also a resolv.conf that cannot be read.
pub fn upstream_from_config(config: &crate::config::Intercept) -> Result<SocketAddr, DnsError> {
    let resolv_conf = if config.dns_upstream.is_empty() {
        Some(std::fs::read_to_string("/etc/resolv.conf").map_err(DnsError::ResolvConf)?)
    } else {
        None
    };
    upstream(
        &config.dns_upstream,
        resolv_conf.as_deref(),
        config.dns_port,
    )
}

/// The bound DNS sockets and where queries go.
pub struct DnsListener {
    sockets: Vec<Arc<UdpSocket>>,
    upstream: SocketAddr,
}

impl DnsListener {
    /// Binds `port` on 127.0.0.1 and [::1] (port 0 picks a free port for each).
    ///
    /// # Errors
    /// A socket cannot be bound.
    pub async fn bind(port: u16, upstream: SocketAddr) -> Result<Self, DnsError> {
        let mut sockets = Vec::new();
        for ip in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            let addr = SocketAddr::new(ip, port);
            let socket = UdpSocket::bind(addr)
                .await
                .map_err(|source| DnsError::Bind { addr, source })?;
            sockets.push(Arc::new(socket));
        }
        Ok(Self { sockets, upstream })
    }

    /// The bound addresses.
    ///
    /// # Errors
    /// Only if the OS cannot report a socket's address.
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.sockets.iter().map(|s| s.local_addr()).collect()
    }

    /// Answers queries until `state.stopping` is set (in-flight queries end with the
    /// runtime; each is bounded by [`UPSTREAM_TIMEOUT`]).
    pub async fn serve(self, state: Arc<ServerState>) {
        let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
        let mut loops = tokio::task::JoinSet::new();
        for socket in self.sockets {
            loops.spawn(receive(
                socket,
                Arc::clone(&state),
                self.upstream,
                Arc::clone(&in_flight),
            ));
        }
        let mut stopping = state.stopping.subscribe();
        let _ = stopping.wait_for(|stop| *stop).await;
        loops.abort_all();
    }
}

async fn receive(
    socket: Arc<UdpSocket>,
    state: Arc<ServerState>,
    upstream: SocketAddr,
    in_flight: Arc<tokio::sync::Semaphore>,
) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (len, client) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(error) => {
                tracing::debug!(%error, "DNS receive failed");
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&in_flight).try_acquire_owned() else {
            state.metrics.record_dns_query("error");
            tracing::warn!(%client, "DNS query dropped: too many in flight");
            continue;
        };
        let query = buf[..len].to_vec();
        let (socket, state) = (Arc::clone(&socket), Arc::clone(&state));
        tokio::spawn(async move {
            let _slot = slot;
            if let Some(reply) = answer(&state, upstream, &query).await {
                if let Err(error) = socket.send_to(&reply, client).await {
                    tracing::debug!(%client, %error, "DNS reply not sent");
                }
            }
        });
    }
}

/// The reply to one query (`None`: drop it).
async fn answer(state: &ServerState, upstream: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let parsed = match message::parse(query) {
        Ok(parsed) => parsed,
        Err(Unusable::Drop) => {
            state.metrics.record_dns_query("malformed");
            return None;
        }
        Err(Unusable::Malformed(header)) => {
            state.metrics.record_dns_query("malformed");
            return Some(message::answer(header, None, Rcode::FormErr));
        }
        Err(Unusable::NotAQuery(header)) => {
            state.metrics.record_dns_query("malformed");
            return Some(message::answer(header, None, Rcode::NotImp));
        }
    };
    let name = parsed.name();
    let mut judged = Judgement::default();
    judged.add(state, state.scanner.scan_dns_name(&name), true);
    let question = query.get(parsed.question.clone());
    // Logged by the name's last two labels only: the rest may be the secret.
    let domain = registrable_part(&name);
    if let Some(finding) = &judged.block {
        state.metrics.record_dns_query("block");
        tracing::warn!(domain, qtype = parsed.qtype, rule = %finding.rule_id, scanner = %finding.scanner, "DNS query refused");
        return Some(message::answer(parsed.header, question, Rcode::Refused));
    }
    let verdict = if judged.warnings.is_empty() {
        "allow"
    } else {
        for warning in &judged.warnings {
            tracing::warn!(domain, qtype = parsed.qtype, rule = %warning.rule_id, "DNS query forwarded with a warning");
        }
        "warn"
    };
    match forward(state, upstream, query, parsed.header.id).await {
        Ok(reply) => {
            state.metrics.record_dns_query(verdict);
            Some(reply)
        }
        Err(error) => {
            state.metrics.record_dns_query("error");
            tracing::warn!(domain, %upstream, %error, "DNS upstream failed; answering SERVFAIL");
            Some(message::answer(parsed.header, question, Rcode::ServFail))
        }
    }
}

/// Sends `query` to `upstream` from a fresh, marked socket and returns the first reply with
/// the query's `id`, unchanged.
async fn forward(
    state: &ServerState,
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
) -> io::Result<Vec<u8>> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    if let Some(mark) = state.socket_mark {
        crate::intercept::mark_socket(socket.as_fd(), mark)?;
    }
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        loop {
            let len = socket.recv(&mut buf).await?;
            if len >= 2 && buf[..2] == id.to_be_bytes() {
                buf.truncate(len);
                return Ok(buf);
            }
        }
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))?
}

/// The last two labels of `name`, for logs.
fn registrable_part(name: &str) -> &str {
    let name = name.trim_end_matches('.');
    let mut dots = name.rmatch_indices('.');
    dots.next();
    match dots.next() {
        Some((at, _)) => &name[at + 1..],
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_is_configured_or_read_from_resolv_conf() {
        assert_eq!(
            upstream("10.0.0.2:5353", None, 8853).expect("configured"),
            "10.0.0.2:5353".parse::<SocketAddr>().expect("addr")
        );
        let conf = "# generated\nsearch example.com\nnameserver fe80::1%eth0\nnameserver 127.0.0.53\nnameserver 10.0.0.1\n";
        assert_eq!(
            upstream("", Some(conf), 8853).expect("resolv.conf"),
            "127.0.0.53:53".parse::<SocketAddr>().expect("addr")
        );
        assert!(matches!(
            upstream("", Some("search x\n"), 8853),
            Err(DnsError::NoUpstream)
        ));
        assert!(matches!(
            upstream("", None, 8853),
            Err(DnsError::NoUpstream)
        ));
        assert!(matches!(
            upstream("nope", None, 8853),
            Err(DnsError::BadUpstream(_))
        ));
        assert!(matches!(
            upstream("127.0.0.1:8853", None, 8853),
            Err(DnsError::Loop(_))
        ));
    }

    #[test]
    fn logs_name_only_the_last_two_labels() {
        assert_eq!(
            registrable_part("secret.attacker.example."),
            "attacker.example"
        );
        assert_eq!(registrable_part("example"), "example");
        assert_eq!(registrable_part("a.b"), "a.b");
    }
}
