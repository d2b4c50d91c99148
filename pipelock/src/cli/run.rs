//! `pipelock run`: load the config (or the embedded balanced default), set up logging, open the
//! listeners and serve until SIGTERM or SIGINT.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use super::EXIT_OK;
use crate::config::{self, Config};
use crate::proxy::dns::DnsListener;
use crate::proxy::endpoints::Routes;
use crate::proxy::transparent::{AllowList, OriginalDestinations, Transparent};
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
    /// Serve the MCP reverse proxy on this address (host:port), overriding
    /// `mcp_reverse_proxy.listen` and enabling it; needs --mcp-upstream.
    #[arg(long, value_name = "ADDR", requires = "mcp_upstream")]
    mcp_listen: Option<String>,
    /// The MCP server (Streamable HTTP endpoint, http:// or https://) the MCP reverse proxy
    /// relays to, e.g. http://127.0.0.1:3000/mcp; needs --mcp-listen.
    #[arg(long, value_name = "URL", requires = "mcp_listen", value_parser = parse_mcp_upstream)]
    mcp_upstream: Option<String>,
}

fn parse_mcp_upstream(value: &str) -> Result<String, String> {
    config::mcp_upstream_url(value).map(|_| value.trim().to_string())
}

/// `pipelock attach`: `run`, attached to one more cgroup.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The application's cgroup v2 directory (added to `intercept.cgroups`).
    #[arg(long)]
    cgroup: PathBuf,
    #[command(flatten)]
    run: RunArgs,
}

pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    let (config, source) = load(&args)?;
    serve_blocking(config, source)
}

/// Serves like `run`, with the eBPF programs attached to `--cgroup` as well as to the cgroups
/// the config lists; the attachment is pinned, so it outlives this process (`pipelock detach`
/// removes it).
pub fn attach(args: AttachArgs) -> anyhow::Result<u8> {
    let (mut config, source) = load(&args.run)?;
    let cgroup = std::path::absolute(&args.cgroup)
        .with_context(|| format!("cannot resolve {}", args.cgroup.display()))?;
    let cgroup = cgroup.display().to_string();
    if !config.intercept.cgroups.contains(&cgroup) {
        config.intercept.cgroups.push(cgroup);
    }
    serve_blocking(config, source)
}

fn load(args: &RunArgs) -> anyhow::Result<(Config, String)> {
    let (mut config, source) = match &args.config {
        Some(path) => (config::load_file(path)?, path.display().to_string()),
        None => (
            config::default_config(),
            "embedded balanced default".to_string(),
        ),
    };
    if let Some(listen) = &args.listen {
        config.fetch_proxy.listen.clone_from(listen);
    }
    if let (Some(listen), Some(upstream)) = (&args.mcp_listen, &args.mcp_upstream) {
        let section = &mut config.mcp_reverse_proxy;
        section.enabled = true;
        section.listen.clone_from(listen);
        section.upstream.clone_from(upstream);
    }
    Ok((config, source))
}

fn serve_blocking(config: Config, source: String) -> anyhow::Result<u8> {
    init_logging(&config.logging).context("cannot set up logging")?;
    raise_open_files_limit();

    let runtime = super::runtime::multi_thread()?;
    runtime.block_on(serve_config(config, source))?;
    Ok(EXIT_OK)
}

async fn serve_config(config: Config, source: String) -> anyhow::Result<()> {
    // Build the scanners and take over the signals before announcing the listeners, so that a
    // client (or a signal) that follows the "listening" line meets a ready server.
    let scanner = Scanner::new(&config).context("cannot build the scanners")?;
    let extra_ca = (!config.tls_interception.upstream_ca_file.is_empty())
        .then(|| PathBuf::from(&config.tls_interception.upstream_ca_file));
    let upstream_tls = match crate::tls::upstream_client_config(extra_ca.as_deref()) {
        Ok(tls) => Some(tls),
        // Interception cannot work without it; /fetch of https URLs and wss:// WebSocket
        // targets then answer 502.
        Err(error) if !config.tls_interception.enabled && extra_ca.is_none() => {
            tracing::warn!(%error, "no TLS to origins: https URLs cannot be fetched, wss:// targets cannot be reached");
            None
        }
        Err(error) => return Err(error).context("cannot set up TLS to origins (tls_interception)"),
    };
    let interceptor = if config.tls_interception.enabled {
        let interceptor =
            crate::tls::Interceptor::load(&config.tls_interception, std::env::var_os("HOME"))
                .context("cannot set up TLS interception (tls_interception)")?;
        Some(Arc::new(interceptor))
    } else {
        None
    };
    let shutdown = shutdown_signal()?;
    let mode = config.mode.to_string();
    let state = Arc::new(ServerState::new(
        Metrics::new(&mode),
        Arc::new(config),
        scanner,
        interceptor,
        upstream_tls,
    ));
    let config = Arc::clone(&state.config);
    let separate_metrics = !config.metrics_listen.trim().is_empty();
    let separate_api = !config.kill_switch.api_listen.trim().is_empty();
    let mut listeners = vec![
        Listener::bind(
            "main",
            &config.fetch_proxy.listen,
            Routes {
                health: true,
                metrics: !separate_metrics,
                proxy: true,
                kill_switch_api: !separate_api,
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
                    kill_switch_api: false,
                },
            )
            .await?,
        );
    }
    if separate_api {
        listeners.push(
            Listener::bind(
                "kill_switch_api",
                &config.kill_switch.api_listen,
                Routes {
                    health: false,
                    metrics: false,
                    proxy: false,
                    kill_switch_api: true,
                },
            )
            .await?,
        );
    }
    if config.mcp_reverse_proxy.enabled {
        let section = &config.mcp_reverse_proxy;
        let proxy = crate::mcp::transport::McpProxy::new(
            &section.upstream,
            crate::mcp::transport::McpProxy::token_from_env_or(&section.auth_token),
            crate::mcp::build_inspector(&config, Arc::clone(&state.scanner), state.metrics.clone())
                .context("cannot set up MCP scanning")?,
        )
        .context("cannot set up the MCP reverse proxy (mcp_reverse_proxy.upstream)")?;
        tracing::info!(
            upstream = proxy.upstream_url(),
            auth = proxy.requires_token(),
            "MCP reverse proxy"
        );
        listeners.push(Listener::bind_mcp("mcp", &section.listen, Arc::new(proxy)).await?);
    }
    let dns = if config.intercept.active() {
        let mut own = Vec::new();
        for listener in &listeners {
            if let Some(serves) = listener.own_service() {
                own.push((
                    listener
                        .local_addr()
                        .context("cannot read the bound address")?,
                    serves,
                ));
            }
        }
        let (transparent, dns) = bind_interception(&state, own).await?;
        listeners.extend(transparent);
        Some(dns)
    } else {
        None
    };

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
    if let Some(dns) = &dns {
        for (name, addr) in ["dns", "dns6"].into_iter().zip(
            dns.local_addrs()
                .context("cannot read the DNS listener's address")?,
        ) {
            tracing::info!(listener = name, addr = %addr, "listening");
        }
    }

    let kill_switch = Arc::clone(&state.kill_switch);
    let sources = crate::killswitch::sources::watch(Arc::clone(&kill_switch))
        .context("cannot handle SIGUSR1 (the kill switch's signal)")?;
    let sources = tokio::spawn(sources);
    let metrics = state.metrics.clone();
    let mut changes = kill_switch.subscribe();
    let reporter = tokio::spawn(async move {
        loop {
            let active = *changes.borrow_and_update();
            metrics.set_kill_switch(active);
            if changes.changed().await.is_err() {
                return;
            }
        }
    });
    let dns = dns.map(|dns| tokio::spawn(dns.serve(Arc::clone(&state))));
    serve(listeners, state, shutdown).await;
    sources.abort();
    reporter.abort();
    if let Some(dns) = dns {
        // It stops once `serve` has set `stopping`.
        let _ = dns.await;
    }
    Ok(())
}

/// The listeners of transparent interception (`intercept` active): the transparent
/// listener on 127.0.0.1 and [::1], and the DNS listener. `origins` is the eBPF side's
/// original-destination lookup; without it every transparent connection is refused.
/// `own` are Pipelock's HTTP and MCP listeners, served as themselves when an application in the
/// attached cgroups connects to them.
async fn bind_interception(
    state: &ServerState,
    own: Vec<(SocketAddr, crate::proxy::listener::Serves)>,
) -> anyhow::Result<(Vec<Listener>, DnsListener)> {
    let section = &state.config.intercept;
    let allow = AllowList::resolve(&section.allow)
        .await
        .context("cannot prepare intercept.allow")?;
    let upstream = crate::proxy::dns::upstream_from_config(section)
        .context("cannot start the DNS listener")?;
    let origins: Option<Arc<dyn OriginalDestinations>> = if section.cgroups.is_empty() {
        tracing::warn!("transparent listener: no cgroup to attach (intercept.cgroups is empty); every connection it accepts is refused");
        None
    } else {
        let cgroups: Vec<PathBuf> = section.cgroups.iter().map(PathBuf::from).collect();
        let interception = crate::intercept::live::start(
            section,
            allow.entries(),
            &cgroups,
            &state.kill_switch,
            &state.metrics,
        )
        .context("cannot attach the eBPF interception (intercept.cgroups)")?;
        Some(interception)
    };
    let transparent = Arc::new(
        Transparent::new(
            origins,
            allow,
            std::time::Duration::from_millis(section.peek_timeout_ms),
        )
        .with_own_listeners(own),
    );
    let mut listeners = Vec::new();
    for (name, ip) in [
        ("transparent", IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ("transparent6", IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ] {
        let addr = SocketAddr::new(ip, section.transparent_port);
        listeners.push(Listener::bind_transparent(name, addr, Arc::clone(&transparent)).await?);
    }
    let dns = DnsListener::bind(section.dns_port, upstream).await?;
    tracing::info!(%upstream, "DNS queries are forwarded to this resolver");
    Ok((listeners, dns))
}

/// Raises the soft limit on open files to the hard limit: each proxied connection or tunnel
/// holds two descriptors, and the usual soft limit of 1024 would cap tunnels far below
/// `MAX_TUNNELS`.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && {
            let previous = limit.rlim_cur;
            limit.rlim_cur = limit.rlim_max;
            previous == limit.rlim_max || libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
        }
    };
    if raised {
        tracing::debug!(open_files = limit.rlim_cur, "open files limit");
    } else {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot raise the open files limit; tunnels may run out of descriptors"
        );
    }
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
    [(config.reverse_proxy.enabled, "reverse_proxy")]
        .into_iter()
        .filter_map(|(enabled, name)| enabled.then_some(name))
        .collect()
}
