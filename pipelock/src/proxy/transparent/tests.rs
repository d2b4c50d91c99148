//! The transparent listener in-process, with a fixed original destination standing in for
//! the eBPF lookup: plain HTTP is routed through the forward proxy's pipeline to the original
//! address, the Host is checked against it, and other protocols are relayed only by an
//! allow rule.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::config::{Config, InterceptAllowRule};
use crate::proxy::{serve, Listener};
use crate::scan::Scanner;
use crate::telemetry::Metrics;

struct Fixed(SocketAddr);

impl OriginalDestinations for Fixed {
    fn original_destination(&self, _peer: SocketAddr) -> Option<SocketAddr> {
        Some(self.0)
    }
}

/// An origin on 127.0.0.1 that answers every request `hello` and counts what it received.
async fn origin() -> (SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                if got.starts_with(b"SSH-") {
                    let _ = stream.write_all(b"SSH-2.0-origin\r\n").await;
                    return;
                }
                if let Ok(mut seen) = record.lock() {
                    seen.push(String::from_utf8_lossy(&got).into_owned());
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
                    .await;
            });
        }
    });
    (addr, seen)
}

/// A transparent listener whose every connection was going to `original`.
async fn listener(original: SocketAddr, allow: Vec<InterceptAllowRule>) -> SocketAddr {
    let mut config = Config::default();
    config.ssrf.ip_allowlist = vec!["127.0.0.0/8".to_string()];
    // `localhost` is otherwise an internal name to the URL scanner.
    config.trusted_domains = vec!["localhost".to_string()];
    listener_with(original, allow, config).await
}

async fn listener_with(
    original: SocketAddr,
    allow: Vec<InterceptAllowRule>,
    config: Config,
) -> SocketAddr {
    let scanner = Scanner::new(&config).expect("scanner");
    let state = Arc::new(ServerState::new(
        Metrics::new("balanced"),
        Arc::new(config),
        scanner,
        None,
        None,
    ));
    let transparent = Arc::new(Transparent::new(
        Some(Arc::new(Fixed(original))),
        AllowList::resolve(&allow).await.expect("allow"),
        Duration::from_millis(300),
    ));
    let bound = Listener::bind_transparent(
        "transparent",
        "127.0.0.1:0".parse().expect("addr"),
        transparent,
    )
    .await
    .expect("bind");
    let addr = bound.local_addr().expect("addr");
    tokio::spawn(serve(vec![bound], state, std::future::pending()));
    addr
}

async fn send(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut client = TcpStream::connect(addr).await.expect("connect");
    client.write_all(bytes).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn http_goes_through_the_pipeline_to_the_original_destination() {
    let (origin, seen) = origin().await;
    let addr = listener(origin, Vec::new()).await;

    let ok = send(
        addr,
        b"GET /path?q=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.ends_with("hello"), "{ok}");
    let named = send(
        addr,
        b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        named.starts_with("HTTP/1.1 200"),
        "a name resolving to it passes: {named}"
    );
    let absolute = send(
        addr,
        format!(
            "GET http://127.0.0.1:{}/abs HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            origin.port()
        )
        .as_bytes(),
    )
    .await;
    assert!(absolute.starts_with("HTTP/1.1 200"), "{absolute}");
    assert_eq!(seen.lock().map(|s| s.len()).unwrap_or(0), 3);
    assert!(seen
        .lock()
        .map(|s| s[2].starts_with("GET /abs HTTP/1.1"))
        .unwrap_or(false));

    let mismatch = send(
        addr,
        b"GET / HTTP/1.1\r\nHost: 127.0.0.3\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(mismatch.starts_with("HTTP/1.1 403"), "{mismatch}");
    assert!(mismatch.contains("host_mismatch"), "{mismatch}");
    let secret = send(
        addr,
        b"GET /?key=AKIAIOSFODNN7EXAMPLE HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(secret.starts_with("HTTP/1.1 403"), "{secret}");
    assert!(secret.contains("\"blocked\":true"), "{secret}");
    assert_eq!(
        seen.lock().map(|s| s.len()).unwrap_or(0),
        3,
        "nothing refused reached the origin"
    );
}

#[tokio::test]
async fn other_protocols_need_an_allow_rule() {
    let (origin, _) = origin().await;
    let banner = b"SSH-2.0-client\r\n\r\n";
    let closed = listener(origin, Vec::new()).await;
    assert_eq!(
        send(closed, banner).await,
        "",
        "closed without an allow rule"
    );
    let rule = InterceptAllowRule {
        cidr: "127.0.0.1/32".to_string(),
        port: origin.port(),
        ..InterceptAllowRule::default()
    };
    let allowed = listener(origin, vec![rule]).await;
    assert_eq!(send(allowed, banner).await, "SSH-2.0-origin\r\n");
}

/// A listener that counts the connections reaching it and reads what they send.
async fn counting_origin() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    (addr, count)
}

#[tokio::test]
async fn tls_is_judged_on_its_server_name_and_the_original_address() {
    use crate::proxy::forward::sni::tests::client_hello;
    let (origin, count) = counting_origin().await;
    let connections = || count.load(std::sync::atomic::Ordering::SeqCst);

    // A blocklisted server name: closed before anything is dialled.
    let addr = listener(origin, Vec::new()).await;
    assert_eq!(send(addr, &client_hello(Some("x.pastebin.com"))).await, "");
    assert_eq!(connections(), 0);

    // An internal original address without ssrf.ip_allowlist: closed, even for a trusted
    // name, unless that name really resolves to the address (no SNI spoofing past SSRF).
    let config = Config {
        trusted_domains: vec!["localhost".to_string()],
        ..Config::default()
    };
    let strict = listener_with(origin, Vec::new(), config.clone()).await;
    assert_eq!(send(strict, &client_hello(Some("example.com"))).await, "");
    assert_eq!(connections(), 0);
    let elsewhere: SocketAddr = format!("127.0.0.2:{}", origin.port())
        .parse()
        .expect("addr");
    let spoofed = listener_with(elsewhere, Vec::new(), config.clone()).await;
    assert_eq!(send(spoofed, &client_hello(Some("localhost"))).await, "");
    assert_eq!(connections(), 0);
    let trusted = listener_with(origin, Vec::new(), config).await;
    let _ = send(trusted, &client_hello(Some("localhost"))).await;
    assert_eq!(
        connections(),
        1,
        "a trusted name that resolves to the address is relayed"
    );

    // Without a server name, only an allow rule lets it through.
    assert_eq!(send(addr, &client_hello(None)).await, "");
    assert_eq!(connections(), 1);
}
