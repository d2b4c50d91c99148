//! Per-host leaf certificates for TLS interception: signed by the Pipelock CA on first use,
//! then served from a bounded cache until they are near expiry.
//!
//! All leaves share one ECDSA P-256 key generated at start-up (the key never leaves memory);
//! minting a leaf is then one signature. The cache holds at most `cert_cache_size` hosts and
//! evicts the oldest first, as the reference does.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use thiserror::Error;

/// Leaves are renewed this long before they expire, so none is served about to lapse.
const RENEW_BEFORE: Duration = Duration::from_secs(60);
/// Leaves are valid from this long before they were minted (clock skew between machines).
const BACKDATE: Duration = Duration::from_secs(3600);

/// Why the CA could not be loaded or a leaf minted.
#[derive(Debug, Error)]
pub enum LeafError {
    #[error("cannot read the interception CA {what} {}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the interception CA certificate {} is not a PEM certificate", path.display())]
    Certificate {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    #[error("the interception CA key {} is not a PEM private key", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    #[error("the interception CA key {} is not an ECDSA P-256 or P-384 key (create one with `pipelock tls init`)", path.display())]
    KeyType { path: PathBuf },
    #[error("the interception CA key {} is readable by every user (chmod 600 it)", path.display())]
    KeyMode { path: PathBuf },
    #[error("cannot generate the leaf key")]
    LeafKey(#[source] rcgen::Error),
    #[error("cannot sign a leaf certificate for {host:?}")]
    Sign {
        host: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("the leaf key is not usable by rustls: {0}")]
    Rustls(String),
}

/// The interception CA: signs leaves for the hosts clients connect to.
pub struct LeafAuthority {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    leaf_key: KeyPair,
    leaf_signer: Arc<dyn rustls::sign::SigningKey>,
    ttl: Duration,
    cache: Mutex<Cache>,
}

struct Cache {
    capacity: usize,
    by_host: HashMap<String, (Arc<CertifiedKey>, SystemTime)>,
    order: VecDeque<String>,
}

impl LeafAuthority {
    /// Loads the CA from `cert` and `key` (PEM, as written by `pipelock tls init`).
    ///
    /// # Errors
    /// A file is missing or unreadable, not PEM, the key is not ECDSA, or the key file is
    /// world-readable.
    pub fn load(
        cert: &Path,
        key: &Path,
        ttl: Duration,
        capacity: usize,
    ) -> Result<Self, LeafError> {
        let read = |what: &'static str, path: &Path| {
            fs::read_to_string(path).map_err(|source| LeafError::Read {
                what,
                path: path.to_path_buf(),
                source,
            })
        };
        let cert_pem = read("certificate", cert)?;
        let key_pem = read("key", key)?;
        check_key_mode(key)?;
        let ca_key = KeyPair::from_pem(&key_pem).map_err(|source| LeafError::Key {
            path: key.to_path_buf(),
            source,
        })?;
        let alg = ca_key.algorithm();
        if alg != &PKCS_ECDSA_P256_SHA256 && alg != &PKCS_ECDSA_P384_SHA384 {
            return Err(LeafError::KeyType {
                path: key.to_path_buf(),
            });
        }
        let certificate = |source| LeafError::Certificate {
            path: cert.to_path_buf(),
            source,
        };
        let ca_der =
            first_pem_der(&cert_pem).ok_or(certificate(rcgen::Error::CouldNotParseCertificate))?;
        let issuer = Issuer::from_ca_cert_der(&ca_der, ca_key).map_err(certificate)?;
        let leaf_key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(LeafError::LeafKey)?;
        let pkcs8 = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let leaf_signer = rustls::crypto::ring::sign::any_ecdsa_type(&pkcs8)
            .map_err(|e| LeafError::Rustls(e.to_string()))?;
        Ok(Self {
            issuer,
            ca_der,
            leaf_key,
            leaf_signer,
            ttl,
            cache: Mutex::new(Cache {
                capacity: capacity.max(1),
                by_host: HashMap::new(),
                order: VecDeque::new(),
            }),
        })
    }

    /// The certificate chain and key for `host` (a DNS name or an IP literal), from the cache
    /// or freshly signed.
    ///
    /// # Errors
    /// The leaf could not be signed (for instance an invalid name).
    pub fn leaf(&self, host: &str) -> Result<Arc<CertifiedKey>, LeafError> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let now = SystemTime::now();
        if let Some((leaf, expires)) = self.lock().by_host.get(&host) {
            if now + RENEW_BEFORE < *expires {
                return Ok(Arc::clone(leaf));
            }
        }
        let (leaf, expires) = self.mint(&host, now)?;
        let mut cache = self.lock();
        if cache
            .by_host
            .insert(host.clone(), (Arc::clone(&leaf), expires))
            .is_none()
        {
            cache.order.push_back(host);
            while cache.order.len() > cache.capacity {
                if let Some(oldest) = cache.order.pop_front() {
                    cache.by_host.remove(&oldest);
                }
            }
        }
        Ok(leaf)
    }

    /// How many leaves are cached.
    pub fn cached(&self) -> usize {
        self.lock().by_host.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic while holding the lock leaves a consistent map; keep using it.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn mint(
        &self,
        host: &str,
        now: SystemTime,
    ) -> Result<(Arc<CertifiedKey>, SystemTime), LeafError> {
        let sign_error = |source| LeafError::Sign {
            host: host.to_string(),
            source,
        };
        let mut params = CertificateParams::default();
        let san = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.try_into().map_err(sign_error)?),
        };
        params.subject_alt_names = vec![san];
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, host);
        params.distinguished_name = name;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = (now - BACKDATE).into();
        let expires = now + self.ttl;
        params.not_after = expires.into();
        params.serial_number = Some(serial(host, now));
        let leaf = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(sign_error)?;
        let chain = vec![leaf.der().clone(), self.ca_der.clone()];
        Ok((
            Arc::new(CertifiedKey::new(chain, Arc::clone(&self.leaf_signer))),
            expires,
        ))
    }
}

/// A serial number unique per host and minting time (SHA-256 of both, 16 bytes, positive).
fn serial(host: &str, now: SystemTime) -> rcgen::SerialNumber {
    use sha2::{Digest, Sha256};
    let nanos = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let digest = Sha256::new()
        .chain_update(host.as_bytes())
        .chain_update(nanos.to_le_bytes())
        .finalize();
    let mut bytes = digest[..16].to_vec();
    bytes[0] &= 0x7f;
    rcgen::SerialNumber::from_slice(&bytes)
}

/// The DER of the first `CERTIFICATE` block in `pem`.
pub(crate) fn first_pem_der(pem: &str) -> Option<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .and_then(Result::ok)
}

/// The CA key must not be world-readable (as for `dlp.secrets_file`). Group access is
/// allowed for secrets mounted with a group-readable mode.
fn check_key_mode(key: &Path) -> Result<(), LeafError> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = fs::metadata(key).map_err(|source| LeafError::Read {
        what: "key",
        path: key.to_path_buf(),
        source,
    })?;
    if metadata.permissions().mode() & 0o007 != 0 {
        return Err(LeafError::KeyMode {
            path: key.to_path_buf(),
        });
    }
    Ok(())
}
