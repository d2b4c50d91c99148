//! The `tls_interception` section made ready to serve: the CA and its leaf cache, and the
//! passthrough list.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use thiserror::Error;

use super::leaf::{LeafAuthority, LeafError};
use crate::config::TlsInterception;

/// Why interception could not be set up (Pipelock refuses to start).
#[derive(Debug, Error)]
pub enum InterceptError {
    #[error("tls_interception.ca_cert and ca_key are empty and HOME is not set, so ~/.pipelock/ca.pem cannot be found")]
    NoHome,
    #[error("tls_interception.cert_ttl {0:?} is not a positive duration")]
    Ttl(String),
    #[error(transparent)]
    Leaf(#[from] LeafError),
    #[error("cannot set up TLS: {0}")]
    Rustls(String),
}

/// Everything needed to terminate a client's TLS and open the origin's.
pub struct Interceptor {
    leaves: LeafAuthority,
    provider: Arc<CryptoProvider>,
    passthrough: Vec<String>,
}

impl Interceptor {
    /// Loads the CA named by `section`; `home` resolves the
    /// default CA paths (`~/.pipelock/ca.pem`, `ca-key.pem`).
    ///
    /// # Errors
    /// A file is missing or unusable; see [`InterceptError`].
    pub fn load(
        section: &TlsInterception,
        home: Option<std::ffi::OsString>,
    ) -> Result<Self, InterceptError> {
        let defaults = super::default_ca_paths(home);
        let pick = |configured: &str, default: Option<PathBuf>| {
            if configured.is_empty() {
                default.ok_or(InterceptError::NoHome)
            } else {
                Ok(PathBuf::from(configured))
            }
        };
        let cert = pick(&section.ca_cert, defaults.as_ref().map(|d| d.0.clone()))?;
        let key = pick(&section.ca_key, defaults.map(|d| d.1))?;
        let ttl = crate::config::parse_go_duration(&section.cert_ttl)
            .filter(|ttl| !ttl.is_zero())
            .ok_or_else(|| InterceptError::Ttl(section.cert_ttl.clone()))?;
        let capacity = usize::try_from(section.cert_cache_size).unwrap_or(usize::MAX);
        let leaves = LeafAuthority::load(&cert, &key, ttl, capacity)?;
        Ok(Self {
            leaves,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            passthrough: section.passthrough_domains.clone(),
        })
    }

    /// Whether tunnels to `host` are relayed untouched (certificate-pinned clients).
    pub fn passes_through(&self, host: &str) -> bool {
        self.passthrough
            .iter()
            .any(|pattern| crate::scan::url::matches_domain(pattern, host))
    }

    /// The server configuration a client of a tunnel to `host` is answered with: a leaf for
    /// `host`, ALPN h2 and http/1.1.
    ///
    /// # Errors
    /// The leaf could not be signed.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, InterceptError> {
        let leaf = self.leaves.leaf(host)?;
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| InterceptError::Rustls(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(leaf)));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// How many leaf certificates are cached.
    pub fn cached_leaves(&self) -> usize {
        self.leaves.cached()
    }
}

/// One certificate for every hello (the CONNECT host's; the server name was checked before).
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}
