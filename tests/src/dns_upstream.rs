//! A tiny DNS resolver for tests, on a loopback address: it answers every A query with one
//! address, and records every message it received, so a test can prove what reached it.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};

/// A running resolver; stopped on drop.
pub struct DnsUpstream {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl DnsUpstream {
    /// Starts on `ip`:free port; A queries are answered with `answer`.
    pub fn start(ip: Ipv4Addr, answer: Ipv4Addr) -> Result<Self> {
        let socket =
            UdpSocket::bind((ip, 0)).with_context(|| format!("bind the resolver on {ip}"))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .context("read timeout")?;
        let addr = socket.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, halt) = (Arc::clone(&received), Arc::clone(&sent), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !halt.load(Ordering::Relaxed) {
                let Ok((len, client)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let query = buf[..len].to_vec();
                if let Ok(mut r) = r.lock() {
                    r.push(query.clone());
                }
                if let Some(reply) = a_reply(&query, answer) {
                    if socket.send_to(&reply, client).is_ok() {
                        if let Ok(mut s) = s.lock() {
                            s.push(reply);
                        }
                    }
                }
            }
        });
        Ok(Self {
            addr,
            received,
            sent,
            stop,
            thread: Some(thread),
        })
    }

    /// Every message received so far.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Every reply sent so far.
    pub fn sent(&self) -> Vec<Vec<u8>> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for DnsUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A standard query (RD set) for the dotted `name`, type `qtype`, class IN.
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(u8::try_from(label.len()).unwrap_or(63));
        out.extend_from_slice(label.as_bytes());
    }
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&[0, 1]);
    out
}

/// The answer to `query`: its id and question, QR/RD/RA set, and one A record (a pointer to
/// the question's name, TTL 60) when it asks for A.
fn a_reply(query: &[u8], answer: Ipv4Addr) -> Option<Vec<u8>> {
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    let question_end = at + 4;
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let mut reply = query.get(..2)?.to_vec();
    reply.extend_from_slice(&[0x81, 0x80, 0, 1, 0, u8::from(qtype == 1), 0, 0, 0, 0]);
    reply.extend_from_slice(query.get(12..question_end)?);
    if qtype == 1 {
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        reply.extend_from_slice(&answer.octets());
    }
    Some(reply)
}
