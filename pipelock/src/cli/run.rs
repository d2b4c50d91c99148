//! `pipelock run`: load the config (or the embedded balanced default), set up logging, open the
//! listeners and serve until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use super::EXIT_OK;
use crate::config::{self, Config};
use crate::proxy::endpoints::Routes;
use crate::proxy::{serve, Listener, ServerState};
use crate::scan::Scanner;
use crate::telemetry::{init_logging, Metrics};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Config file (YAML, the reference Pipelock's format). Without it, the embedded balanced
    /// default is used.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Listen address of the main listener, overriding `fetch_proxy.listen` (host:port; port 0
    /// picks a free port, which is logged).
    #[arg(short, long)]
    listen: Option<String>,
}

pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    let (mut config, source) = match &args.config {
        Some(path) => (config::load_file(path)?, path.display().to_string()),
        None => (
            config::default_config(),
            "embedded balanced default".to_string(),
        ),
    };
    if let Some(listen) = args.listen {
        config.fetch_proxy.listen = listen;
    }
    init_logging(&config.logging).context("cannot set up logging")?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve_config(config, source))?;
    Ok(EXIT_OK)
}

async fn serve_config(config: Config, source: String) -> anyhow::Result<()> {
    // Build the scanners and take over the signals before announcing the listeners, so that a
    // client (or a signal) that follows the "listening" line meets a ready server.
    let scanner = Scanner::new(&config).context("cannot build the scanners")?;
    let shutdown = shutdown_signal()?;
    let separate_metrics = !config.metrics_listen.trim().is_empty();
    let mut listeners = vec![
        Listener::bind(
            "main",
            &config.fetch_proxy.listen,
            Routes {
                health: true,
                metrics: !separate_metrics,
                proxy: true,
            },
        )
        .await?,
    ];
    if separate_metrics {
        listeners.push(
            Listener::bind(
                "metrics",
                &config.metrics_listen,
                Routes {
                    health: false,
                    metrics: true,
                    proxy: false,
                },
            )
            .await?,
        );
    }

    let mode = config.mode.to_string();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        mode = %mode,
        config = %source,
        "pipelock starting"
    );
    let pending = features_not_yet_served(&config);
    if !pending.is_empty() {
        tracing::warn!(
            features = %pending.join(", "),
            "enabled in the config but not yet available in this build"
        );
    }
    for listener in &listeners {
        let addr = listener
            .local_addr()
            .context("cannot read the bound address")?;
        tracing::info!(listener = listener.name(), addr = %addr, "listening");
    }

    let state = Arc::new(ServerState {
        started: Instant::now(),
        metrics: Metrics::new(&mode),
        mode,
        config: Arc::new(config),
        scanner,
        websocket_sessions: std::sync::atomic::AtomicUsize::new(0),
    });
    serve(listeners, state, shutdown).await;
    Ok(())
}

/// Completes on the first SIGTERM or SIGINT.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
    })
}

/// Sections the config enables that this build cannot serve yet, so the operator is told
/// rather than left to assume they are active.
fn features_not_yet_served(config: &Config) -> Vec<&'static str> {
    [
        (config.tls_interception.enabled, "tls_interception"),
        (config.reverse_proxy.enabled, "reverse_proxy"),
        (config.kill_switch.enabled, "kill_switch"),
    ]
    .into_iter()
    .filter_map(|(enabled, name)| enabled.then_some(name))
    .collect()
}
