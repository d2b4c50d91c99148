//! The attached programs working with a running Pipelock (`pipelock run` with
//! `intercept.cgroups`, or `pipelock attach`): the settings come from the `intercept`
//! section, the transparent listener asks the programs' table for original destinations, the
//! kill switch is mirrored into the kernel flag, and denied connects become log lines and
//! metrics.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Intercept, InterceptProtocol};
use crate::killswitch::KillSwitch;
use crate::proxy::transparent::{AllowEntry, OriginalDestinations};
use crate::telemetry::Metrics;

use super::{AllowRule, InterceptError, InterceptSettings, Interception, Protocol};

impl OriginalDestinations for Interception {
    fn original_destination(&self, peer: std::net::SocketAddr) -> Option<std::net::SocketAddr> {
        Interception::original_destination(self, peer)
    }
}

/// What the programs are told, from the `intercept` section and its resolved allow rules.
#[must_use]
pub fn settings(section: &Intercept, allow: &[AllowEntry]) -> InterceptSettings {
    InterceptSettings {
        transparent_port: section.transparent_port,
        dns_port: section.dns_port,
        mark: section.mark,
        allow: allow
            .iter()
            .map(|entry| AllowRule {
                protocol: match entry.protocol {
                    InterceptProtocol::Tcp => Protocol::Tcp,
                    InterceptProtocol::Udp => Protocol::Udp,
                },
                addr: entry.net.addr,
                prefix: entry.net.prefix,
                port: entry.port,
            })
            .collect(),
        debug_log: section.debug_log,
    }
}

/// Loads the programs (or re-adopts those pinned under `intercept.pin_path`), attaches them
/// to every cgroup in `cgroups`, and starts the companions: denied connects into logs and
/// `pipelock_intercept_denied_total`, and the kill switch into the kernel flag (set before
/// this returns, so a switch thrown at start-up holds from the first connect).
///
/// # Errors
/// Loading or attaching failed (see [`InterceptError`]), or the kill-switch flag could not be
/// written.
pub fn start(
    section: &Intercept,
    allow: &[AllowEntry],
    cgroups: &[PathBuf],
    kill_switch: &Arc<KillSwitch>,
    metrics: &Metrics,
) -> Result<Arc<Interception>, InterceptError> {
    let mut interception =
        Interception::load(Path::new(&section.pin_path), &settings(section, allow))?;
    for cgroup in cgroups {
        interception.attach(cgroup)?;
        tracing::info!(cgroup = %cgroup.display(), pin_path = %section.pin_path, "eBPF interception attached");
    }
    let mut events = interception.denied_events()?;
    interception.set_kill_switch(kill_switch.active().is_some())?;
    let interception = Arc::new(interception);

    let metrics = metrics.clone();
    tokio::spawn(async move {
        loop {
            match events.next().await {
                Ok(event) => {
                    let protocol = event
                        .protocol()
                        .map_or("other".to_string(), |p| p.to_string());
                    metrics.record_intercept_denied(event.reason.as_str(), &protocol);
                    tracing::warn!(
                        destination = %event.destination,
                        protocol = %protocol,
                        pid = event.pid,
                        cgroup_id = event.cgroup_id,
                        reason = event.reason.as_str(),
                        "connect refused in the kernel"
                    );
                }
                Err(error) => {
                    tracing::error!(%error, "cannot read the denied-connect events any more");
                    return;
                }
            }
        }
    });

    let mirrored = Arc::clone(&interception);
    let mut changes = kill_switch.subscribe();
    tokio::spawn(async move {
        loop {
            let on = *changes.borrow_and_update();
            if let Err(error) = mirrored.set_kill_switch(on) {
                tracing::error!(%error, on, "cannot set the kernel kill-switch flag");
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    });
    Ok(interception)
}
