//! A transparent connection that opened with a TLS ClientHello naming a server: judged like
//! a CONNECT tunnel to that name ([`gates::admit`]), with the SSRF check on the address the
//! client dialled, then intercepted (TLS terminated with a Pipelock leaf for the name, each
//! request scanned and sent to the original address) or relayed opaquely to the original
//! address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;

use super::prefixed::Prefixed;
use crate::proxy::forward::gates::{self, Refusal};
use crate::proxy::forward::http::Target;
use crate::proxy::forward::{dial, intercept, tunnel};
use crate::proxy::ServerState;

/// The `kind` label of transparent TLS connections in `pipelock_proxy_requests_total` (the
/// requests inside an intercepted one are `transparent_intercepted`).
const KIND: &str = "transparent_tls";

/// Serves a TLS connection to `original` whose ClientHello (`first`, already read) names
/// `sni`.
pub async fn serve(
    state: Arc<ServerState>,
    original: SocketAddr,
    sni: String,
    first: Vec<u8>,
    client: TcpStream,
) {
    let Ok(slot) = Arc::clone(&state.tunnel_slots).try_acquire_owned() else {
        state
            .metrics
            .record_proxy_request(KIND, "block", "tunnel_limit");
        closed(&state, original, &sni, "every tunnel slot is taken");
        return;
    };
    let admitted = match gates::admit(&state, &sni, original.port(), Some(original)).await {
        Ok(admitted) => admitted,
        Err(Refusal::Blocked { judged, .. }) => {
            judged.record_refusal(&state, KIND, "tunnel");
            closed(&state, original, &sni, "blocked");
            return;
        }
        Err(Refusal::Unresolved(error)) => {
            state.metrics.record_proxy_request(KIND, "error", "dns");
            closed(
                &state,
                original,
                &sni,
                &format!("cannot vet the destination: {error}"),
            );
            return;
        }
    };
    let interceptor = state
        .interceptor
        .as_ref()
        .filter(|i| !i.passes_through(&sni))
        .map(Arc::clone);
    let upstream = if interceptor.is_some() {
        None
    } else {
        match dial::connect(&state, &admitted.addrs).await {
            Ok(stream) => Some(stream),
            Err(error) => {
                state
                    .metrics
                    .record_proxy_request(KIND, "error", "upstream");
                closed(&state, original, &sni, &format!("cannot connect: {error}"));
                return;
            }
        }
    };
    let (verdict, scanner) = admitted.judged.outcome();
    state.metrics.record_proxy_request(KIND, verdict, &scanner);
    state.metrics.record_transparent_connection("tls");
    for warning in &admitted.judged.warnings {
        tracing::warn!(target_host = %sni, %original, rule = %warning.rule_id, "transparent TLS allowed with a warning");
    }
    let limits = tunnel::Limits::from_config(&state);
    let relay_state = Arc::clone(&state);
    let host = sni.clone();
    super::hold_tunnel(&state, &sni, slot, async move {
        match (interceptor, upstream) {
            (Some(interceptor), _) => {
                let started = Instant::now();
                let target = Target {
                    host: host.clone(),
                    port: original.port(),
                    secure: true,
                    upstream: Some(original),
                };
                let reason = intercept::serve(
                    relay_state,
                    interceptor,
                    Prefixed::new(first, client),
                    target,
                    (limits.max, limits.idle),
                )
                .await;
                tracing::info!(
                    target_host = %host,
                    %original,
                    seconds = started.elapsed().as_secs_f64(),
                    reason,
                    "intercepted transparent TLS closed"
                );
            }
            (None, Some(upstream)) => {
                tunnel::relay_logged(&relay_state, client, upstream, first, &host, limits).await;
            }
            (None, None) => {}
        }
    })
    .await;
}

/// A refused TLS connection: counted and logged with its name and original destination.
fn closed(state: &ServerState, original: SocketAddr, sni: &str, reason: &str) {
    state.metrics.record_transparent_connection("refused");
    tracing::warn!(target_host = %sni, %original, reason, "transparent TLS connection closed");
}
