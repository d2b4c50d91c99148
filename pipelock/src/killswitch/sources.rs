//! The kill switch's asynchronous sources: SIGUSR1 toggles it, and the sentinel file is
//! polled so that subscribers (tunnels, WebSocket sessions, the eBPF flag) learn of it
//! within [`POLL_INTERVAL`]. Requests check the file themselves, at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use super::KillSwitch;

/// How often the sentinel file is checked for subscribers.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Listens for SIGUSR1 and polls the sentinel file, until the task is dropped.
///
/// # Errors
/// SIGUSR1 cannot be handled.
pub fn watch(switch: Arc<KillSwitch>) -> std::io::Result<impl std::future::Future<Output = ()>> {
    let mut toggles = signal(SignalKind::user_defined1())?;
    Ok(async move {
        let mut every = tokio::time::interval(POLL_INTERVAL);
        loop {
            tokio::select! {
                received = toggles.recv() => {
                    if received.is_none() {
                        return;
                    }
                    let on = switch.toggle_signal();
                    tracing::warn!(active = on, "kill switch toggled by SIGUSR1");
                }
                _ = every.tick() => {
                    switch.refresh();
                }
            }
        }
    })
}
