//! `pipelock tls init` through the real binary: the CA files, their modes, what `openssl` reads
//! in them, refusing to overwrite without `--force`, replacing with it, and the path options.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use pipelock_e2e::{describe, pipelock_command, run_pipelock, run_with_timeout};

const TIMEOUT: Duration = Duration::from_secs(20);

fn init(args: &[&str]) -> Output {
    let mut full = vec!["tls", "init"];
    full.extend(args);
    run_pipelock(&full, None, TIMEOUT).expect("pipelock tls init")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Runs `openssl ARGS`, asserts it succeeds, and returns its stdout.
fn openssl(args: &[&str]) -> String {
    let mut command = Command::new("openssl");
    command.args(args);
    let output = run_with_timeout(command, None, TIMEOUT).expect("openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        describe(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The SHA-256 fingerprint openssl computes, as `AB:CD:…`.
fn openssl_fingerprint(cert: &Path) -> String {
    let out = openssl(&[
        "x509",
        "-in",
        path_str(cert),
        "-noout",
        "-fingerprint",
        "-sha256",
    ]);
    out.trim()
        .rsplit_once('=')
        .map(|(_, fp)| fp.to_string())
        .unwrap_or_else(|| panic!("unexpected fingerprint output {out:?}"))
}

/// The `SHA-256 fingerprint:` value pipelock printed.
fn printed_fingerprint(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("SHA-256 fingerprint:"))
        .map(|fp| fp.trim().to_string())
        .unwrap_or_else(|| panic!("no fingerprint line: {}", describe(output)))
}

struct CaFiles {
    cert: PathBuf,
    key: PathBuf,
}

impl CaFiles {
    fn in_dir(dir: &Path) -> Self {
        Self {
            cert: dir.join("ca.pem"),
            key: dir.join("ca-key.pem"),
        }
    }

    fn read(&self) -> (Vec<u8>, Vec<u8>) {
        (
            fs::read(&self.cert).expect("read cert"),
            fs::read(&self.key).expect("read key"),
        )
    }
}

#[test]
fn init_writes_a_p256_ca_that_openssl_reads() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("nested").join("ca");
    let output = init(&["--dir", path_str(&dir)]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let files = CaFiles::in_dir(&dir);

    // Modes: key 0600 exactly, certificate at most 0644, directory at most 0750.
    assert_eq!(mode(&files.key), 0o600, "key mode");
    assert_eq!(
        mode(&files.cert) & !0o644,
        0,
        "cert mode {:o}",
        mode(&files.cert)
    );
    assert_eq!(mode(&dir) & !0o750, 0, "dir mode {:o}", mode(&dir));
    let mut names: Vec<_> = fs::read_dir(&dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["ca-key.pem", "ca.pem"]);

    // What openssl sees.
    let text = openssl(&["x509", "-in", path_str(&files.cert), "-noout", "-text"]);
    assert!(text.contains("CA:TRUE"), "{text}");
    assert!(text.contains("pathlen:0"), "{text}");
    assert!(text.contains("Pipelock CA"), "{text}");
    assert!(text.contains("O = Pipelock"), "{text}");
    assert!(
        text.contains("prime256v1") || text.contains("P-256"),
        "{text}"
    );
    assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
    assert!(text.contains("ecdsa-with-SHA256"), "{text}");
    let dates = openssl(&[
        "x509",
        "-in",
        path_str(&files.cert),
        "-noout",
        "-checkend",
        "0",
    ]);
    assert!(dates.contains("will not expire"), "{dates}");

    // The key is a PKCS#8 PEM whose public half is the certificate's.
    let (_, key_pem) = files.read();
    assert!(
        String::from_utf8_lossy(&key_pem).starts_with("-----BEGIN PRIVATE KEY-----"),
        "not PKCS#8"
    );
    let key_pub = openssl(&["pkey", "-in", path_str(&files.key), "-pubout"]);
    let cert_pub = openssl(&["x509", "-in", path_str(&files.cert), "-noout", "-pubkey"]);
    assert_eq!(key_pub, cert_pub, "the key does not match the certificate");

    // The printed paths and fingerprint.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(path_str(&files.cert)), "{stdout}");
    assert!(stdout.contains(path_str(&files.key)), "{stdout}");
    assert!(stdout.contains("SSL_CERT_FILE"), "{stdout}");
    assert_eq!(
        printed_fingerprint(&output),
        openssl_fingerprint(&files.cert)
    );
}

#[test]
fn second_init_refuses_without_force_and_replaces_with_it() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = path_str(temp.path());
    let files = CaFiles::in_dir(temp.path());
    let first = init(&["--dir", dir]);
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    let before = files.read();

    let again = init(&["--dir", dir]);
    assert_eq!(again.status.code(), Some(1), "{}", describe(&again));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains(path_str(&files.cert)), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(files.read(), before, "the files changed without --force");

    let forced = init(&["--dir", dir, "--force"]);
    assert_eq!(forced.status.code(), Some(0), "{}", describe(&forced));
    let after = files.read();
    assert_ne!(after.0, before.0, "the certificate was not replaced");
    assert_ne!(after.1, before.1, "the key was not replaced");
    assert_eq!(mode(&files.key), 0o600, "key mode after --force");
    assert_ne!(printed_fingerprint(&forced), printed_fingerprint(&first));
    assert_eq!(
        printed_fingerprint(&forced),
        openssl_fingerprint(&files.cert)
    );
    assert_eq!(
        fs::read_dir(temp.path()).expect("list").count(),
        2,
        "stray files"
    );
}

#[test]
fn an_existing_key_alone_blocks_and_nothing_is_written() {
    let temp = tempfile::tempdir().expect("tempdir");
    let files = CaFiles::in_dir(temp.path());
    fs::write(&files.key, "precious").expect("write");
    let output = init(&["--dir", path_str(temp.path())]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(path_str(&files.key)),
        "{}",
        describe(&output)
    );
    assert!(!files.cert.exists(), "a certificate was written");
    assert_eq!(fs::read_to_string(&files.key).expect("key"), "precious");
}

#[test]
fn org_sets_the_subject_organization() {
    let temp = tempfile::tempdir().expect("tempdir");
    let output = init(&["--dir", path_str(temp.path()), "--org", "Acme"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let cert = temp.path().join("ca.pem");
    let subject = openssl(&["x509", "-in", path_str(&cert), "-noout", "-subject"]);
    assert!(subject.contains("O = Acme"), "{subject}");
    assert!(subject.contains("CN = Pipelock CA"), "{subject}");
    let issuer = openssl(&["x509", "-in", path_str(&cert), "-noout", "-issuer"]);
    assert!(issuer.contains("O = Acme"), "{issuer}");

    let empty = init(&["--dir", path_str(&temp.path().join("x")), "--org", ""]);
    assert_eq!(empty.status.code(), Some(1), "{}", describe(&empty));
    assert!(
        !temp.path().join("x").exists(),
        "an empty --org wrote files"
    );
}

#[test]
fn default_dir_is_under_home_and_cert_key_override_it() {
    let temp = tempfile::tempdir().expect("tempdir");
    let mut command = pipelock_command();
    command.args(["tls", "init"]).env("HOME", temp.path());
    let output = run_with_timeout(command, None, TIMEOUT).expect("tls init");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let files = CaFiles::in_dir(&temp.path().join(".pipelock"));
    assert!(
        files.cert.is_file() && files.key.is_file(),
        "{}",
        describe(&output)
    );
    assert_eq!(mode(&files.key), 0o600);

    let cert = temp.path().join("certs").join("my-ca.crt");
    let key = temp.path().join("keys").join("my-ca.key");
    let output = init(&["--cert", path_str(&cert), "--key", path_str(&key)]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(mode(&key), 0o600);
    let text = openssl(&["x509", "-in", path_str(&cert), "-noout", "-text"]);
    assert!(text.contains("CA:TRUE"), "{text}");

    // No HOME and no --dir: a clear error, not a file in the working directory.
    let mut command = pipelock_command();
    command
        .args(["tls", "init"])
        .env_remove("HOME")
        .current_dir(temp.path());
    let output = run_with_timeout(command, None, TIMEOUT).expect("tls init");
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("HOME"),
        "{}",
        describe(&output)
    );
}
