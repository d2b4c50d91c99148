//! `pipelock tls init`: generate the TLS interception CA and write it to disk.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use super::EXIT_OK;
use crate::tls::{self, ca::DEFAULT_ORG, CaError, CA_CERT_FILE, CA_KEY_FILE};

#[derive(Debug, Args)]
pub struct TlsInitArgs {
    /// Directory for ca.pem and ca-key.pem, created with mode 0750 if missing [default: ~/.pipelock].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Where to write the CA certificate [default: DIR/ca.pem].
    #[arg(long, value_name = "PATH")]
    cert: Option<PathBuf>,
    /// Where to write the CA private key, created with mode 0600 [default: DIR/ca-key.pem].
    #[arg(long, value_name = "PATH")]
    key: Option<PathBuf>,
    /// Organization (O) in the CA's subject.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_ORG)]
    org: String,
    /// Replace an existing CA certificate and key.
    #[arg(long)]
    force: bool,
}

pub fn init(args: &TlsInitArgs) -> anyhow::Result<u8> {
    let (cert_path, key_path) = output_paths(args, std::env::var_os("HOME"))?;
    let ca = tls::generate_ca(&args.org).context("cannot generate the CA")?;
    match tls::write_ca(&ca, &cert_path, &key_path, args.force) {
        Ok(()) => {}
        Err(error @ CaError::Exists { .. }) => {
            return Err(error)
                .context("refusing to overwrite an existing CA (nothing was written; pass --force to replace it)");
        }
        Err(error) => return Err(error).context("cannot save the CA"),
    }
    println!("CA certificate: {}", cert_path.display());
    println!("CA key:         {}", key_path.display());
    println!("SHA-256 fingerprint: {}", ca.sha256_fingerprint());
    println!(
        "Clients must trust {} to accept intercepted TLS: add it to the system store (e.g. update-ca-certificates) or point SSL_CERT_FILE at it.",
        cert_path.display()
    );
    Ok(EXIT_OK)
}

/// The certificate and key paths: `--cert`/`--key` when given, else `ca.pem`/`ca-key.pem` in
/// `--dir`, else in `$HOME/.pipelock`.
fn output_paths(args: &TlsInitArgs, home: Option<OsString>) -> anyhow::Result<(PathBuf, PathBuf)> {
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        return Ok((cert.clone(), key.clone()));
    }
    let (cert, key) = match &args.dir {
        Some(dir) => (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE)),
        None => match crate::tls::default_ca_paths(home) {
            Some(paths) => paths,
            None => bail!("HOME is not set: pass --dir DIR (or both --cert and --key)"),
        },
    };
    Ok((
        args.cert.clone().unwrap_or(cert),
        args.key.clone().unwrap_or(key),
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn args(dir: Option<&str>, cert: Option<&str>, key: Option<&str>) -> TlsInitArgs {
        TlsInitArgs {
            dir: dir.map(PathBuf::from),
            cert: cert.map(PathBuf::from),
            key: key.map(PathBuf::from),
            org: DEFAULT_ORG.to_string(),
            force: false,
        }
    }

    fn paths(args: &TlsInitArgs, home: Option<&str>) -> anyhow::Result<(PathBuf, PathBuf)> {
        output_paths(args, home.map(OsString::from))
    }

    #[test]
    fn default_paths_are_in_home() {
        let (cert, key) = paths(&args(None, None, None), Some("/home/u")).expect("paths");
        assert_eq!(cert, Path::new("/home/u/.pipelock/ca.pem"));
        assert_eq!(key, Path::new("/home/u/.pipelock/ca-key.pem"));
    }

    #[test]
    fn dir_cert_and_key_override() {
        let (cert, key) = paths(&args(Some("/x"), None, None), None).expect("paths");
        assert_eq!(cert, Path::new("/x/ca.pem"));
        assert_eq!(key, Path::new("/x/ca-key.pem"));
        let (cert, key) = paths(&args(Some("/x"), Some("/c.pem"), None), None).expect("paths");
        assert_eq!(cert, Path::new("/c.pem"));
        assert_eq!(key, Path::new("/x/ca-key.pem"));
        let (cert, key) = paths(&args(None, Some("/c.pem"), Some("/k.pem")), None).expect("paths");
        assert_eq!(cert, Path::new("/c.pem"));
        assert_eq!(key, Path::new("/k.pem"));
    }

    #[test]
    fn missing_home_needs_dir() {
        for home in [None, Some("")] {
            let error = paths(&args(None, Some("/c.pem"), None), home).expect_err("no HOME");
            assert!(error.to_string().contains("--dir"), "{error}");
        }
    }
}
