//! TLS towards origins (intercepted tunnels, `/fetch` of https URLs, `wss://` WebSocket
//! targets): certificates are verified against the system's
//! roots (`/etc/ssl/certs`, or `SSL_CERT_FILE`/`SSL_CERT_DIR` when set) plus, optionally, the
//! CAs in `tls_interception.upstream_ca_file`. Pipelock speaks HTTP/1.1 to origins.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use thiserror::Error;

/// Why the trust store for origins could not be built.
#[derive(Debug, Error)]
pub enum UpstreamTlsError {
    #[error("no trusted root certificates: the system store is empty and no tls_interception.upstream_ca_file is set")]
    NoRoots,
    #[error("cannot read tls_interception.upstream_ca_file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tls_interception.upstream_ca_file {} holds no usable PEM certificate", path.display())]
    Empty { path: PathBuf },
    #[error("tls_interception.upstream_ca_file {}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot set up TLS: {0}")]
    Rustls(String),
}

/// The client configuration for connections to origins.
///
/// # Errors
/// The extra CA file is unreadable or holds no certificate, or no root is trusted at all.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, UpstreamTlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "a system root certificate could not be loaded");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::debug!(added, ignored, "system roots loaded");
    }
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path).map_err(|source| UpstreamTlsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut count = 0usize;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| UpstreamTlsError::Invalid {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            roots.add(cert).map_err(|e| UpstreamTlsError::Invalid {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            count += 1;
        }
        if count == 0 {
            return Err(UpstreamTlsError::Empty {
                path: path.to_path_buf(),
            });
        }
    }
    if roots.is_empty() {
        return Err(UpstreamTlsError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamTlsError::Rustls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
