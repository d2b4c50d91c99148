//! Generating and saving the interception CA.
//!
//! The CA follows the reference Pipelock: an ECDSA P-256 key, subject `O=<org>, CN=Pipelock CA`,
//! a random 128-bit serial, valid from one hour ago (clock skew) for 87 600 hours (10 years),
//! basic constraints `CA:TRUE, pathlen:0`, key usage certificate-sign and CRL-sign, both
//! critical. The certificate is written as a `CERTIFICATE` PEM (mode 0644), the key as a PKCS#8
//! `PRIVATE KEY` PEM (mode 0600, set when the file is created, never afterwards).

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Common name of every Pipelock CA.
pub const CA_COMMON_NAME: &str = "Pipelock CA";
/// Organization used when none is given.
pub const DEFAULT_ORG: &str = "Pipelock";
/// How long the CA is valid, counted from now: 87 600 hours (10 years).
pub const CA_VALIDITY: Duration = Duration::from_secs(87_600 * 3600);
/// How far `notBefore` is set back, to tolerate clients whose clock is a little behind.
pub const CA_BACKDATE: Duration = Duration::from_secs(3600);
/// Size of the random serial number.
const SERIAL_BYTES: usize = 16;
/// Mode of the private key file.
const KEY_MODE: u32 = 0o600;
/// Mode of the certificate file.
const CERT_MODE: u32 = 0o644;
/// Mode of a directory created to hold the CA.
const DIR_MODE: u32 = 0o750;
/// Where the serial number's randomness comes from.
const RANDOM_SOURCE: &str = "/dev/urandom";

/// Why a CA could not be generated or saved.
#[derive(Debug, Error)]
pub enum CaError {
    /// The organization name is empty.
    #[error("the CA organization name must not be empty")]
    EmptyOrg,
    /// The system clock is unusable.
    #[error("the system clock is before 1970 or too far in the future")]
    Clock,
    /// Randomness for the serial number could not be read.
    #[error("cannot read random bytes for the serial number from {RANDOM_SOURCE}")]
    Random(#[source] io::Error),
    /// The key pair could not be generated.
    #[error("cannot generate the CA key pair (ECDSA P-256)")]
    KeyPair(#[source] rcgen::Error),
    /// The certificate could not be built or signed.
    #[error("cannot build the CA certificate")]
    Certificate(#[source] rcgen::Error),
    /// The certificate and the key were asked to go to the same file.
    #[error("the CA certificate and key paths are the same: {}", path.display())]
    SamePath { path: PathBuf },
    /// A file is already there and overwriting was not asked for.
    #[error("the {what} {} already exists", path.display())]
    Exists { what: &'static str, path: PathBuf },
    /// Whether a file exists could not be determined.
    #[error("cannot check whether {} exists", path.display())]
    Inspect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A directory could not be created.
    #[error("cannot create directory {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file could not be created or written.
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A freshly written file could not be moved over the old one.
    #[error("cannot move {} into place at {}", from.display(), to.display())]
    Rename {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A freshly generated CA: certificate and private key as PEM, and the certificate's DER.
#[derive(Clone)]
pub struct GeneratedCa {
    /// The certificate, one `CERTIFICATE` PEM block.
    pub cert_pem: String,
    /// The private key, one PKCS#8 `PRIVATE KEY` PEM block.
    pub key_pem: String,
    /// The certificate's DER encoding (what the fingerprint is computed over).
    pub cert_der: Vec<u8>,
}

impl GeneratedCa {
    /// SHA-256 of the certificate's DER, as colon-separated uppercase hex (`AB:CD:…`).
    #[must_use]
    pub fn sha256_fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }
}

impl fmt::Debug for GeneratedCa {
    // The private key never goes to a log or a panic message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedCa")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .field("sha256", &self.sha256_fingerprint())
            .finish()
    }
}

/// SHA-256 of `der` as colon-separated uppercase hex.
fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Generates a self-signed CA with subject `O=<org>, CN=Pipelock CA`, valid from now.
pub fn generate_ca(org: &str) -> Result<GeneratedCa, CaError> {
    generate_ca_at(org, SystemTime::now())
}

/// [`generate_ca`] with the current time given (for tests).
fn generate_ca_at(org: &str, now: SystemTime) -> Result<GeneratedCa, CaError> {
    if org.trim().is_empty() {
        return Err(CaError::EmptyOrg);
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CaError::KeyPair)?;

    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    // The order Go writes a pkix.Name in: O before CN.
    subject.push(DnType::OrganizationName, org);
    subject.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = subject;
    params.serial_number = Some(random_serial()?);
    let since_epoch = now.duration_since(UNIX_EPOCH).map_err(|_| CaError::Clock)?;
    let not_before = since_epoch.checked_sub(CA_BACKDATE).ok_or(CaError::Clock)?;
    let not_after = since_epoch
        .checked_add(CA_VALIDITY)
        .filter(|t| t.as_secs() < MAX_UNIX_SECONDS)
        .ok_or(CaError::Clock)?;
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + not_before;
    params.not_after = epoch + not_after;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];

    let cert = params.self_signed(&key).map_err(CaError::Certificate)?;
    Ok(GeneratedCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().to_vec(),
    })
}

/// 9999-12-31T23:59:59Z: the last instant an X.509 GeneralizedTime (and the date library) holds.
const MAX_UNIX_SECONDS: u64 = 253_402_300_799;

/// A random positive serial of 128 bits (never zero), as the reference draws.
fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; SERIAL_BYTES];
    File::open(RANDOM_SOURCE)
        .and_then(|mut source| source.read_exact(&mut bytes))
        .map_err(CaError::Random)?;
    if bytes.iter().all(|&b| b == 0) {
        bytes[SERIAL_BYTES - 1] = 1;
    }
    // rcgen encodes the bytes as a positive INTEGER (a leading 0x00 is added when needed).
    Ok(SerialNumber::from_slice(&bytes))
}

/// Writes the certificate to `cert_path` (mode 0644) and the key to `key_path` (mode 0600),
/// creating missing parent directories with mode 0750.
///
/// Without `force`, an existing file at either path is an error ([`CaError::Exists`]) and
/// nothing is written; both paths are checked before anything is created, and files are created
/// exclusively, so a file appearing in between is not overwritten either. With `force`, both
/// files are written next to their targets first and then renamed over them, so a failure
/// leaves the old CA in place and the new key never has a mode other than 0600.
pub fn write_ca(
    ca: &GeneratedCa,
    cert_path: &Path,
    key_path: &Path,
    force: bool,
) -> Result<(), CaError> {
    if cert_path == key_path {
        return Err(CaError::SamePath {
            path: cert_path.to_path_buf(),
        });
    }
    if !force {
        refuse_existing("CA certificate", cert_path)?;
        refuse_existing("CA key", key_path)?;
    }
    create_parent_dir(cert_path)?;
    create_parent_dir(key_path)?;

    let key = PendingFile {
        path: key_path,
        contents: ca.key_pem.as_bytes(),
        mode: KEY_MODE,
    };
    let cert = PendingFile {
        path: cert_path,
        contents: ca.cert_pem.as_bytes(),
        mode: CERT_MODE,
    };
    if force {
        replace_files(&[key, cert])
    } else {
        create_files(&[key, cert])
    }
}

/// A file to write: where, what, and the mode it is created with.
struct PendingFile<'a> {
    path: &'a Path,
    contents: &'a [u8],
    mode: u32,
}

/// Fails with [`CaError::Exists`] when anything (even a dangling symlink) is at `path`.
fn refuse_existing(what: &'static str, path: &Path) -> Result<(), CaError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Err(CaError::Exists {
            what,
            path: path.to_path_buf(),
        }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CaError::Inspect {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Creates the directory `path` is in (and its missing ancestors) with mode 0750.
fn create_parent_dir(path: &Path) -> Result<(), CaError> {
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(parent)
        .map_err(|source| CaError::CreateDir {
            path: parent.to_path_buf(),
            source,
        })
}

/// Creates every file exclusively (never overwriting); on a failure removes the ones created.
fn create_files(files: &[PendingFile<'_>]) -> Result<(), CaError> {
    for (done, file) in files.iter().enumerate() {
        if let Err(error) = create_exclusive(file.path, file.contents, file.mode) {
            for created in &files[..done] {
                let _ = fs::remove_file(created.path);
            }
            return Err(error);
        }
    }
    Ok(())
}

/// Writes every file beside its target, then renames them over the targets.
fn replace_files(files: &[PendingFile<'_>]) -> Result<(), CaError> {
    let mut staged: Vec<(PathBuf, &Path)> = Vec::with_capacity(files.len());
    let cleanup = |staged: &[(PathBuf, &Path)]| {
        for (temp, _) in staged {
            let _ = fs::remove_file(temp);
        }
    };
    for file in files {
        let temp = staging_path(file.path);
        if let Err(error) = create_exclusive(&temp, file.contents, file.mode) {
            cleanup(&staged);
            return Err(error);
        }
        staged.push((temp, file.path));
    }
    for (index, (temp, target)) in staged.iter().enumerate() {
        if let Err(source) = fs::rename(temp, target) {
            cleanup(&staged[index..]);
            return Err(CaError::Rename {
                from: temp.clone(),
                to: target.to_path_buf(),
                source,
            });
        }
    }
    Ok(())
}

/// A hidden, unique sibling of `path` to stage its new contents in.
fn staging_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.{nanos}.tmp", std::process::id()))
}

/// Creates `path` (which must not exist) with `mode` from the start, writes `contents` and
/// syncs it; removes the file again when writing fails.
fn create_exclusive(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let write_error = |source| CaError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(write_error)?;
    if let Err(source) = file.write_all(contents).and_then(|()| file.sync_all()) {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(write_error(source));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
    use x509_parser::prelude::*;

    use super::*;

    /// The DER inside a single `CERTIFICATE` PEM block.
    fn pem_to_der(pem: &str) -> Vec<u8> {
        let (rest, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("one PEM");
        assert!(rest.iter().all(u8::is_ascii_whitespace), "trailing data");
        assert_eq!(block.label, "CERTIFICATE");
        block.contents
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
    }

    #[test]
    fn generated_ca_is_a_p256_ca_with_the_reference_fields() {
        let now = SystemTime::now();
        let ca = generate_ca_at("Pipelock", now).expect("generate");
        let der = pem_to_der(&ca.cert_pem);
        assert_eq!(der, ca.cert_der, "the PEM holds the DER");
        let (_, cert) = X509Certificate::from_der(&der).expect("parse certificate");

        assert_eq!(cert.version(), X509Version::V3);
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().expect("utf8"))
            .collect();
        assert_eq!(cn, [CA_COMMON_NAME]);
        let org: Vec<_> = cert
            .subject()
            .iter_organization()
            .map(|a| a.as_str().expect("utf8"))
            .collect();
        assert_eq!(org, ["Pipelock"]);
        assert_eq!(cert.subject(), cert.issuer(), "self-signed");
        assert_eq!(cert.subject().to_string(), "O=Pipelock, CN=Pipelock CA");

        // CA:TRUE, pathlen:0, critical.
        assert!(cert.is_ca());
        let bc = cert
            .basic_constraints()
            .expect("one basicConstraints")
            .expect("basicConstraints present");
        assert!(bc.critical);
        assert!(bc.value.ca);
        assert_eq!(bc.value.path_len_constraint, Some(0));

        // keyCertSign + cRLSign only, critical.
        let ku = cert
            .key_usage()
            .expect("one keyUsage")
            .expect("keyUsage present");
        assert!(ku.critical);
        assert!(ku.value.key_cert_sign());
        assert!(ku.value.crl_sign());
        assert!(!ku.value.digital_signature());
        assert!(!ku.value.key_encipherment());
        assert!(cert.extended_key_usage().expect("eku").is_none());

        // ECDSA P-256 key, ecdsa-with-SHA256 signature that verifies.
        let spki = cert.public_key();
        assert_eq!(spki.algorithm.algorithm, OID_KEY_TYPE_EC_PUBLIC_KEY);
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .expect("curve parameter")
            .as_oid()
            .expect("named curve");
        assert_eq!(curve, OID_EC_P256);
        assert_eq!(
            cert.signature_algorithm.algorithm,
            x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256
        );

        // Validity: one hour back, 87 600 hours forward (whole seconds).
        let now_secs = i64::try_from(now.duration_since(UNIX_EPOCH).expect("clock").as_secs())
            .expect("seconds");
        let validity = cert.validity();
        assert_eq!(validity.not_before.timestamp(), now_secs - 3600);
        assert_eq!(validity.not_after.timestamp(), now_secs + 87_600 * 3600);
        assert!(validity.is_valid());

        // A positive serial of at most 128 bits.
        let serial = cert.raw_serial();
        assert!(serial.len() <= SERIAL_BYTES + 1, "serial {serial:02x?}");
        assert!(serial.len() < SERIAL_BYTES + 1 || serial[0] == 0);
        assert!(cert.serial.bits() <= 128 && cert.serial.bits() > 0);
    }

    #[test]
    fn key_is_pkcs8_and_matches_the_certificate() {
        let ca = generate_ca("Pipelock").expect("generate");
        assert!(ca.key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(ca.key_pem.trim_end().ends_with("-----END PRIVATE KEY-----"));
        let key = KeyPair::from_pem(&ca.key_pem).expect("the key parses");
        assert!(key.is_compatible(&PKCS_ECDSA_P256_SHA256));
        let (_, cert) = X509Certificate::from_der(&ca.cert_der).expect("parse");
        assert_eq!(
            cert.public_key().raw,
            rcgen::PublicKeyData::subject_public_key_info(&key).as_slice()
        );
        // The signature checks out against the certificate's own key.
        assert!(cert.verify_signature(None).is_ok());
    }

    #[test]
    fn org_is_used_and_must_not_be_empty() {
        let ca = generate_ca("Acme Corp").expect("generate");
        let (_, cert) = X509Certificate::from_der(&ca.cert_der).expect("parse");
        assert_eq!(cert.subject().to_string(), "O=Acme Corp, CN=Pipelock CA");
        assert!(matches!(generate_ca(""), Err(CaError::EmptyOrg)));
        assert!(matches!(generate_ca("  "), Err(CaError::EmptyOrg)));
    }

    #[test]
    fn serials_and_keys_differ_between_runs() {
        let a = generate_ca("Pipelock").expect("generate");
        let b = generate_ca("Pipelock").expect("generate");
        let (_, ca) = X509Certificate::from_der(&a.cert_der).expect("parse");
        let (_, cb) = X509Certificate::from_der(&b.cert_der).expect("parse");
        assert_ne!(ca.raw_serial(), cb.raw_serial());
        assert_ne!(a.key_pem, b.key_pem);
        assert_ne!(a.sha256_fingerprint(), b.sha256_fingerprint());
    }

    #[test]
    fn fingerprint_is_uppercase_colon_hex_of_the_der() {
        assert_eq!(
            fingerprint(b"abc"),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
        let ca = generate_ca("Pipelock").expect("generate");
        let fp = ca.sha256_fingerprint();
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert_eq!(fp, fingerprint(&ca.cert_der));
        assert!(
            !format!("{ca:?}").contains("PRIVATE KEY"),
            "Debug hides the key"
        );
    }

    #[test]
    fn write_creates_directories_and_files_with_their_modes() {
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path().join("a").join("b");
        let cert = dir.join("ca.pem");
        let key = dir.join("ca-key.pem");
        let ca = generate_ca("Pipelock").expect("generate");
        write_ca(&ca, &cert, &key, false).expect("write");

        assert_eq!(fs::read_to_string(&cert).expect("cert"), ca.cert_pem);
        assert_eq!(fs::read_to_string(&key).expect("key"), ca.key_pem);
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&cert) & !CERT_MODE, 0, "cert mode {:o}", mode(&cert));
        assert_eq!(mode(&dir) & !DIR_MODE, 0, "dir mode {:o}", mode(&dir));
        assert_eq!(
            fs::read_dir(&dir).expect("list").count(),
            2,
            "no stray files"
        );
    }

    #[test]
    fn existing_files_are_kept_without_force() {
        let temp = tempfile::tempdir().expect("tempdir");
        let cert = temp.path().join("ca.pem");
        let key = temp.path().join("ca-key.pem");
        let first = generate_ca("Pipelock").expect("generate");
        write_ca(&first, &cert, &key, false).expect("write");
        let second = generate_ca("Pipelock").expect("generate");

        let error = write_ca(&second, &cert, &key, false).expect_err("refused");
        assert!(
            matches!(&error, CaError::Exists { path, .. } if *path == cert),
            "{error}"
        );
        assert!(error.to_string().contains(&cert.display().to_string()));
        assert_eq!(fs::read_to_string(&cert).expect("cert"), first.cert_pem);
        assert_eq!(fs::read_to_string(&key).expect("key"), first.key_pem);

        // Only the key exists: still refused, and no certificate appears.
        fs::remove_file(&cert).expect("remove");
        let error = write_ca(&second, &cert, &key, false).expect_err("refused");
        assert!(
            matches!(&error, CaError::Exists { path, .. } if *path == key),
            "{error}"
        );
        assert!(!cert.exists());
        assert_eq!(fs::read_to_string(&key).expect("key"), first.key_pem);
    }

    #[test]
    fn force_replaces_both_files_and_restores_the_key_mode() {
        let temp = tempfile::tempdir().expect("tempdir");
        let cert = temp.path().join("ca.pem");
        let key = temp.path().join("ca-key.pem");
        fs::write(&cert, "old cert").expect("write");
        fs::write(&key, "old key").expect("write");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).expect("chmod");

        let ca = generate_ca("Pipelock").expect("generate");
        write_ca(&ca, &cert, &key, true).expect("forced write");
        assert_eq!(fs::read_to_string(&cert).expect("cert"), ca.cert_pem);
        assert_eq!(fs::read_to_string(&key).expect("key"), ca.key_pem);
        assert_eq!(mode(&key), 0o600);
        assert_eq!(
            fs::read_dir(temp.path()).expect("list").count(),
            2,
            "no staging files left"
        );

        // --force also works when nothing exists yet.
        let fresh = temp.path().join("fresh");
        write_ca(&ca, &fresh.join("c.pem"), &fresh.join("k.pem"), true).expect("write");
        assert_eq!(mode(&fresh.join("k.pem")), 0o600);
    }

    #[test]
    fn same_path_and_unwritable_locations_are_errors() {
        let temp = tempfile::tempdir().expect("tempdir");
        let ca = generate_ca("Pipelock").expect("generate");
        let path = temp.path().join("both.pem");
        assert!(matches!(
            write_ca(&ca, &path, &path, false),
            Err(CaError::SamePath { .. })
        ));
        assert!(!path.exists());

        // A parent that is a file cannot become a directory (without --force the existence
        // check already fails on it).
        let blocker = temp.path().join("file");
        fs::write(&blocker, "x").expect("write");
        let (cert, key) = (blocker.join("ca.pem"), blocker.join("ca-key.pem"));
        let error = write_ca(&ca, &cert, &key, false).expect_err("not a directory");
        assert!(matches!(error, CaError::Inspect { .. }), "{error}");
        let error = write_ca(&ca, &cert, &key, true).expect_err("not a directory");
        assert!(matches!(error, CaError::CreateDir { .. }), "{error}");

        // With --force the key's location is a directory: the rename fails, the staged files are
        // removed, and no certificate appears.
        let cert = temp.path().join("ca.pem");
        let key_dir = temp.path().join("ca-key.pem");
        fs::create_dir(&key_dir).expect("mkdir");
        let error = write_ca(&ca, &cert, &key_dir, true).expect_err("key is a directory");
        assert!(error.to_string().contains("ca-key.pem"), "{error}");
        let mut names: Vec<_> = fs::read_dir(temp.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["ca-key.pem", "file"], "no staging files left");
        assert!(!cert.exists(), "the old state is kept");
    }
}
