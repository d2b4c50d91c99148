//! Keep-alive HTTP/1.1 connections to origins, reused across requests.
//!
//! A connection is keyed by the vetted address it was dialled to and, for TLS, the name its
//! certificate was verified for. Every request is still resolved and checked by the SSRF guard
//! first; only connections to an address that passed are reused, so reuse never widens what
//! may be reached.
//!
//! A connection has no task of its own: its state machine ([`Conn`]) is driven by whoever
//! uses it, the task sending a request and then the response body's reader, so a request and
//! its answer cross no task boundary (each crossing can be a wake-up of another thread). It
//! goes back to the pool as soon as its response body has been read to the end (a body
//! dropped half-read closes it); the next request to take it drives it until it is ready
//! ([`READY_TIMEOUT`]). Idle connections are looked at by the periodic sweep, which closes
//! those the origin closed and those idle longer than [`IDLE_TIMEOUT`].

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::client::conn::TrySendError;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::http::BoxError;

/// The body type of every request Pipelock sends to an origin.
pub type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

/// The sending half of one HTTP/1.1 connection to an origin.
pub type Sender = SendRequest<UpstreamBody>;

/// The byte stream of a connection to an origin: TCP, or TLS over TCP.
pub trait OriginIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> OriginIo for T {}

/// The state machine of one HTTP/1.1 connection (reads, writes, keep-alive).
type Driver = http1::Connection<TokioIo<Box<dyn OriginIo>>, UpstreamBody>;

/// One HTTP/1.1 connection to an origin: the handle requests are sent with, and the
/// connection's state machine, polled by the connection's user instead of a task.
pub struct Conn {
    sender: Sender,
    /// `None` once the connection has ended. The mutex only makes `Conn` `Sync` (the request
    /// body inside is not); it is always reached through `&mut`, never locked.
    driver: Option<Mutex<Pin<Box<Driver>>>>,
}

impl Conn {
    /// A connection over `io`, after the HTTP/1.1 handshake.
    ///
    /// # Errors
    /// The handshake failed.
    pub async fn handshake(io: Box<dyn OriginIo>) -> Result<Self, hyper::Error> {
        let (sender, driver) = http1::handshake(TokioIo::new(io)).await?;
        Ok(Self {
            sender,
            driver: Some(Mutex::new(Box::pin(driver))),
        })
    }

    /// Lets the connection make progress (send, receive, settle after an exchange). Ready
    /// when it has ended (closed by either side, or failed): it is then dropped, which also
    /// fails a request still waiting on it.
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(driver) = self.driver.as_mut() else {
            return Poll::Ready(());
        };
        let driver = driver.get_mut().unwrap_or_else(PoisonError::into_inner);
        match driver.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                if let Err(error) = result {
                    tracing::debug!(%error, "upstream connection ended with an error");
                }
                self.driver = None;
                Poll::Ready(())
            }
        }
    }

    /// Whether the connection may still take requests.
    fn is_open(&self) -> bool {
        self.driver.is_some() && !self.sender.is_closed()
    }

    /// Drives the connection until it can take a request; `false` if it ended instead.
    pub async fn ready(&mut self) -> bool {
        poll_fn(|cx| {
            let ended = self.drive(cx).is_ready();
            match self.sender.poll_ready(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(true),
                Poll::Ready(Err(_)) => Poll::Ready(false),
                Poll::Pending if ended => Poll::Ready(false),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Sends `request` and drives the connection until the response head has arrived. An
    /// error gives the request back when it never went out.
    ///
    /// # Errors
    /// The connection was not ready, ended, or the answer was not valid HTTP.
    pub async fn send(
        &mut self,
        request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<UpstreamBody>>> {
        let mut response = std::pin::pin!(self.sender.try_send_request(request));
        poll_fn(|cx| {
            if let Poll::Ready(answer) = response.as_mut().poll(cx) {
                return Poll::Ready(answer);
            }
            // If this ends the connection, dropping it answers the request with an error.
            let _ = self.drive(cx);
            response.as_mut().poll(cx)
        })
        .await
    }
}

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
    conn: Conn,
    since: Instant,
}

/// Idle connections by [`Key`].
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
}

impl Pool {
    /// An idle connection for `key` still open, the most recently used first; wait for it to
    /// be ready ([`Conn::ready`]) before sending.
    pub fn checkout(&self, key: &Key) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(key)?;
        let mut found = None;
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() < IDLE_TIMEOUT && entry.conn.is_open() {
                found = Some(entry.conn);
                break;
            }
        }
        if list.is_empty() {
            idle.remove(key);
        }
        found
    }

    fn checkin(&self, key: Key, conn: Conn) {
        if !conn.is_open() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.entry(key).or_default();
        list.retain(|e| e.since.elapsed() < IDLE_TIMEOUT && e.conn.is_open());
        if list.len() < MAX_IDLE_PER_KEY {
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Closes the connections idle longer than [`IDLE_TIMEOUT`] or closed by their origin
    /// (each idle connection is driven once, to read a close that arrived meanwhile).
    pub fn sweep(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let mut cx = Context::from_waker(Waker::noop());
        idle.retain(|_, list| {
            list.retain_mut(|e| {
                let _ = e.conn.drive(&mut cx);
                e.since.elapsed() < IDLE_TIMEOUT && e.conn.is_open()
            });
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
    pub conn: Conn,
}

impl Loan {
    /// Pools the connection (its response was read to the end).
    fn give_back(self) {
        self.pool.checkin(self.key, self.conn);
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
        let mut polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_pending() {
            // The body's data comes from the connection, which only this reader drives.
            if let Some(loan) = self.loan.as_mut() {
                let _ = loan.conn.drive(cx);
                polled = Pin::new(&mut self.inner).poll_frame(cx);
            }
        }
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
