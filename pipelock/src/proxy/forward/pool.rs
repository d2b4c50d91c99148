//! Keep-alive HTTP/1.1 connections to origins, reused across requests.
//!
//! A connection is keyed by the vetted address it was dialled to and, for TLS, the name its
//! certificate was verified for. Every request is still resolved and checked by the SSRF guard
//! first; only connections to an address that passed are reused, so reuse never widens what
//! may be reached.
//!
//! A connection goes back to the pool as soon as its response body has been read to the end
//! (a body dropped half-read closes it); the next request to take it waits until hyper has
//! it ready for another request ([`READY_TIMEOUT`]), which by then it almost always is. No
//! task is spawned per request for this. Idle connections are closed after [`IDLE_TIMEOUT`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;

use super::http::BoxError;

/// The body type of every request Pipelock sends to an origin.
pub type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

/// The sending half of one HTTP/1.1 connection to an origin.
pub type Sender = SendRequest<UpstreamBody>;

/// How long a connection may sit unused in the pool. Shorter than the keep-alive timeout of
/// common origins (nginx 75 s, Apache 5 s is the exception), so reuse rarely races a close;
/// a request that could not be sent on a reused connection is retried on a new one.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle connections kept per origin address.
const MAX_IDLE_PER_KEY: usize = 256;

/// How long a pooled connection may take to be ready for the next request. A healthy one is
/// ready within microseconds of its previous response's end; one that is not by then (a busy
/// machine, a confused origin) is closed and the request goes on a new connection.
pub const READY_TIMEOUT: Duration = Duration::from_millis(250);

/// Which connections may serve a request: the vetted address, and the TLS name if any.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub addr: SocketAddr,
    pub tls_name: Option<String>,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// Idle connections by [`Key`].
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
}

impl Pool {
    /// An idle connection for `key` still open, the most recently used first; wait for it to
    /// be ready ([`SendRequest::ready`]) before sending.
    pub fn checkout(&self, key: &Key) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(key)?;
        let mut found = None;
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() < IDLE_TIMEOUT && !entry.sender.is_closed() {
                found = Some(entry.sender);
                break;
            }
        }
        if list.is_empty() {
            idle.remove(key);
        }
        found
    }

    fn checkin(&self, key: Key, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.entry(key).or_default();
        list.retain(|e| e.since.elapsed() < IDLE_TIMEOUT && !e.sender.is_closed());
        if list.len() < MAX_IDLE_PER_KEY {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Closes the connections idle longer than [`IDLE_TIMEOUT`] or closed by their origin.
    pub fn sweep(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|_, list| {
            list.retain(|e| e.since.elapsed() < IDLE_TIMEOUT && !e.sender.is_closed());
            !list.is_empty()
        });
    }

    /// How many idle connections the pool holds.
    pub fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.values().map(Vec::len).sum()
    }
}

/// A connection on loan: given back to `pool` once its response has been read.
pub struct Loan {
    pub pool: Arc<Pool>,
    pub key: Key,
    pub sender: Sender,
}

impl Loan {
    /// Pools the connection (its response was read to the end).
    fn give_back(self) {
        self.pool.checkin(self.key, self.sender);
    }
}

/// An origin's response body that gives its connection back when read to the end.
pub struct Returning {
    inner: Incoming,
    loan: Option<Loan>,
}

impl Returning {
    /// `inner`, whose connection is `loan` (or `None` when it is not to be reused).
    pub fn new(inner: Incoming, loan: Option<Loan>) -> Self {
        Self { inner, loan }
    }

    fn finished(&mut self) {
        if let Some(loan) = self.loan.take() {
            loan.give_back();
        }
    }
}

impl HttpBody for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.finished(),
            Poll::Ready(Some(Err(_))) => self.loan = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        // A body with nothing in it (HEAD, 204, 304) may never be polled; one dropped
        // half-read leaves its connection unusable, and dropping the loan closes it.
        if self.inner.is_end_stream() {
            self.finished();
        }
    }
}
