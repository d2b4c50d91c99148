//! The life of an admitted WebSocket session, after the client has been answered 101: it
//! holds one of the `max_concurrent_connections` slots from the moment the gates pass until
//! both closing handshakes are done, waits for the client's side of the upgrade, runs the
//! [`Relay`], and logs how it ended.
//!
//! The slots are counted in `ServerState::websocket_sessions`, a watch channel, so shutdown
//! can wait for the count to reach zero: on shutdown every relay closes both sides with 1001
//! (going away) and the listener waits for them within its grace period, as for tunnels.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::upgrade::{OnUpgrade, Upgraded};

use super::relay::{Limits, Relay};
use super::target::Target;
use crate::proxy::ServerState;

/// How long the client may take to complete its side of the upgrade once answered 101.
const CLIENT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// A session whose upstream handshake is done, ready to relay.
pub struct Session {
    pub slot: Slot,
    pub target: Target,
    pub upstream: Upgraded,
    pub limits: Limits,
}

impl Session {
    /// Waits for the client's upgrade (`client`), relays until the session ends, and gives
    /// the slot back. Shutting down before the client's upgrade completes drops the session.
    pub async fn run(self, state: Arc<ServerState>, client: OnUpgrade) {
        let Self {
            slot,
            target,
            upstream,
            limits,
        } = self;
        let mut stopping = state.stopping.subscribe();
        let client = tokio::select! {
            upgraded = tokio::time::timeout(CLIENT_UPGRADE_TIMEOUT, client) => match upgraded {
                Ok(Ok(upgraded)) => upgraded,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "client WebSocket upgrade failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("client WebSocket upgrade timed out");
                    return;
                }
            },
            _ = stopping.wait_for(|stop| *stop) => {
                tracing::debug!("shutting down before the client's WebSocket upgrade completed");
                return;
            }
        };
        tracing::info!(target_host = %target.host, path = %target.path_and_query, "WebSocket session opened");
        let started = Instant::now();
        let relay = Relay::new(Arc::clone(&state), target.host.clone(), limits);
        let ended = relay.run(client, upstream).await;
        tracing::info!(
            target_host = %target.host,
            reason = %ended.reason,
            messages_out = ended.messages_out,
            messages_in = ended.messages_in,
            seconds = started.elapsed().as_secs_f64(),
            "WebSocket session closed"
        );
        drop(slot);
    }
}

/// One of the `max_concurrent_connections` session slots, given back when dropped.
pub struct Slot {
    state: Arc<ServerState>,
}

impl Slot {
    /// Takes a slot, or `None` when all are taken.
    pub fn take(state: &Arc<ServerState>) -> Option<Self> {
        let cap = usize::try_from(state.config.websocket_proxy.max_concurrent_connections)
            .unwrap_or(usize::MAX);
        let taken = state.websocket_sessions.send_if_modified(|open| {
            let free = *open < cap;
            if free {
                *open += 1;
            }
            free
        });
        if !taken {
            return None;
        }
        state.metrics.websockets(1);
        Some(Self {
            state: Arc::clone(state),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.state
            .websocket_sessions
            .send_modify(|open| *open = open.saturating_sub(1));
        self.state.metrics.websockets(-1);
    }
}
