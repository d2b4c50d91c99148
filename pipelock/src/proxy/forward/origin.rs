//! Sending a request to an origin: on a pooled keep-alive connection to one of the vetted
//! addresses when there is one, else on a new connection (TLS when the target is secure).

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::{Request, Response};

use super::dial;
use super::http::Target;
use super::pool::{self, Conn, Key, Loan, Returning, UpstreamBody};
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
        Some((key, mut conn)) => match conn.send(request).await {
            Ok(response) => return Ok(loaned(state, key, conn, response)),
            // The origin closed the idle connection before the request went out: the
            // request is untouched, so it goes on a new connection.
            Err(mut error) => match error.take_message() {
                Some(request) => request,
                None => return Err(SendError::Http(error.into_error())),
            },
        },
        None => request,
    };
    let (key, mut conn) = dial_new(state, target, addrs, tls_name).await?;
    let response = conn
        .send(request)
        .await
        .map_err(|error| SendError::Http(error.into_error()))?;
    Ok(loaned(state, key, conn, response))
}

/// A pooled connection to one of `addrs` that is ready for a request. One whose previous
/// exchange does not settle within [`pool::READY_TIMEOUT`], or that closed, is dropped.
async fn ready_pooled(
    state: &ServerState,
    addrs: &[SocketAddr],
    tls_name: Option<&String>,
) -> Option<(Key, Conn)> {
    for addr in addrs {
        let key = Key {
            addr: *addr,
            tls_name: tls_name.cloned(),
        };
        while let Some(mut conn) = state.pool.checkout(&key) {
            if let Ok(true) = tokio::time::timeout(pool::READY_TIMEOUT, conn.ready()).await {
                return Some((key, conn));
            }
        }
    }
    None
}

fn loaned(
    state: &ServerState,
    key: Key,
    conn: Conn,
    response: Response<hyper::body::Incoming>,
) -> Response<Returning> {
    let loan = Loan {
        pool: Arc::clone(&state.pool),
        key,
        conn,
    };
    response.map(|body| Returning::new(body, Some(loan)))
}

async fn dial_new(
    state: &ServerState,
    target: &Target,
    addrs: &[SocketAddr],
    tls_name: Option<String>,
) -> Result<(Key, Conn), SendError> {
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
    let io: Box<dyn pool::OriginIo> = if target.secure {
        let tls = dial::connect_tls(state, &target.host, tcp)
            .await
            .map_err(SendError::Tls)?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    Ok((Key { addr, tls_name }, Conn::handshake(io).await?))
}
