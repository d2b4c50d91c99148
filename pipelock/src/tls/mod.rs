//! TLS interception: the certificate authority Pipelock signs per-host certificates with.
//!
//! `ca` generates the CA (ECDSA P-256, self-signed, path length 0) and writes its certificate and
//! private key as PEM files, the key readable by its owner only. `leaf` signs and caches the
//! per-host certificates clients are shown; `upstream` verifies the origins' certificates;
//! `interceptor` ties them to the `tls_interception` section.

pub mod ca;
mod interceptor;
mod leaf;
mod upstream;

pub use ca::{generate_ca, write_ca, CaError, GeneratedCa};
pub use interceptor::{InterceptError, Interceptor};
pub use leaf::LeafError;
pub use upstream::{client_config as upstream_client_config, UpstreamTlsError};

/// The directory under `$HOME` that holds the CA by default.
pub const DEFAULT_CA_DIR: &str = ".pipelock";
/// File name of the CA certificate inside the CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside the CA directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// The default CA certificate and key paths, in `$HOME/.pipelock`; `None` without a `HOME`.
pub fn default_ca_paths(
    home: Option<std::ffi::OsString>,
) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let home = home.filter(|h| !h.is_empty())?;
    let dir = std::path::Path::new(&home).join(DEFAULT_CA_DIR);
    Some((dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE)))
}
