//! TLS interception: the certificate authority Pipelock signs per-host certificates with.
//!
//! `ca` generates the CA (ECDSA P-256, self-signed, path length 0) and writes its certificate and
//! private key as PEM files, the key readable by its owner only.

pub mod ca;

pub use ca::{generate_ca, write_ca, CaError, GeneratedCa};

/// The directory under `$HOME` that holds the CA by default.
pub const DEFAULT_CA_DIR: &str = ".pipelock";
/// File name of the CA certificate inside the CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside the CA directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";
