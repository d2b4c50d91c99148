//! Sending a request to an origin: on a pooled keep-alive connection to one of the vetted
//! addresses when there is one, else on a new connection (TLS when the target is secure).

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use super::dial;
use super::http::Target;
use super::pool::{self, Key, Loan, Returning, Sender, UpstreamBody};
use crate::proxy::ServerState;

/// Why the exchange with the origin failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        authority: String,
        source: std::io::Error,
    },
    #[error("TLS with the origin failed: {0}")]
    Tls(std::io::Error),
    #[error("upstream request failed: {0}")]
    Http(#[from] hyper::Error),
}

/// Sends `request` to `target` at one of `addrs` (each vetted by the SSRF guard) and returns
/// the response, whose body gives the connection back to the pool when read to the end.
///
/// # Errors
/// No connection could be made, TLS failed, or the origin's answer was not valid HTTP.
pub async fn send(
    state: &ServerState,
    target: &Target,
    addrs: &[SocketAddr],
    request: Request<UpstreamBody>,
) -> Result<Response<Returning>, SendError> {
    let tls_name = target.secure.then(|| target.host.clone());
    let pooled = ready_pooled(state, addrs, tls_name.as_ref()).await;
    let request = match pooled {
        Some((key, mut sender)) => match sender.try_send_request(request).await {
            Ok(response) => return Ok(loaned(state, key, sender, response)),
            // The origin closed the idle connection before the request went out: the
            // request is untouched, so it goes on a new connection.
            Err(mut error) => match error.take_message() {
                Some(request) => request,
                None => return Err(SendError::Http(error.into_error())),
            },
        },
        None => request,
    };
    let (key, mut sender) = dial_new(state, target, addrs, tls_name).await?;
    let response = sender.send_request(request).await?;
    Ok(loaned(state, key, sender, response))
}

/// A pooled connection to one of `addrs` that is ready for a request. One whose previous
/// exchange does not settle within [`pool::READY_TIMEOUT`], or that closed, is dropped.
async fn ready_pooled(
    state: &ServerState,
    addrs: &[SocketAddr],
    tls_name: Option<&String>,
) -> Option<(Key, Sender)> {
    for addr in addrs {
        let key = Key {
            addr: *addr,
            tls_name: tls_name.cloned(),
        };
        while let Some(mut sender) = state.pool.checkout(&key) {
            if let Ok(Ok(())) = tokio::time::timeout(pool::READY_TIMEOUT, sender.ready()).await {
                return Some((key, sender));
            }
        }
    }
    None
}

fn loaned(
    state: &ServerState,
    key: Key,
    sender: Sender,
    response: Response<hyper::body::Incoming>,
) -> Response<Returning> {
    let loan = Loan {
        pool: Arc::clone(&state.pool),
        key,
        sender,
    };
    response.map(|body| Returning::new(body, Some(loan)))
}

async fn dial_new(
    state: &ServerState,
    target: &Target,
    addrs: &[SocketAddr],
    tls_name: Option<String>,
) -> Result<(Key, Sender), SendError> {
    let tcp = dial::connect(state, addrs)
        .await
        .map_err(|source| SendError::Connect {
            authority: target.authority(),
            source,
        })?;
    let addr = tcp.peer_addr().map_err(|source| SendError::Connect {
        authority: target.authority(),
        source,
    })?;
    let sender = if target.secure {
        let tls = dial::connect_tls(state, &target.host, tcp)
            .await
            .map_err(SendError::Tls)?;
        handshake(tls).await?
    } else {
        handshake(tcp).await?
    };
    Ok((Key { addr, tls_name }, sender))
}

async fn handshake<S>(stream: S) -> Result<Sender, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}
