//! `GET /fetch?url=…` through the real binary: Pipelock fetches the page itself, every hop
//! scanned, and answers the reference's JSON shape.

use pipelock_e2e::upstream::{TestPki, Upstream};
use pipelock_e2e::{curl_status_body, write_file, Pipelock};

const AWS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";

fn start(yaml: &str) -> (Pipelock, tempfile::TempDir) {
    Pipelock::start_with_yaml(yaml).expect("pipelock starts")
}

/// `/fetch` of `target`: (status, JSON answer).
fn fetch(pipelock: &Pipelock, target: &str, extra: &[&str]) -> (u16, serde_json::Value) {
    let mut args = vec!["-G", "--data-urlencode"];
    let param = format!("url={target}");
    args.push(&param);
    args.extend_from_slice(extra);
    let (status, body) =
        curl_status_body(&args, &format!("http://{}/fetch", pipelock.addr)).expect("curl");
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    (status, json)
}

#[test]
fn fetch_returns_readable_text_and_blocks_what_the_proxy_blocks() {
    let origin = Upstream::start().expect("origin");
    let (pipelock, _dir) = start(
        "version: 1\nssrf:\n  ip_allowlist: [\"127.0.0.0/8\"]\nresponse_scanning:\n  action: block\nrequest_body_scanning:\n  action: block\n",
    );

    let (status, answer) = fetch(&pipelock, &origin.url("/page"), &[]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["blocked"], false);
    assert_eq!(answer["status_code"], 200);
    assert_eq!(answer["title"], "Monthly spending");
    assert_eq!(
        answer["content"],
        "Spending\nGroceries: 412 EUR\nRent: 950 EUR"
    );
    assert_eq!(answer["url"], origin.url("/page"));
    let seen = origin.seen();
    let last = seen.last().expect("the origin was asked");
    assert!(
        last.headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("user-agent") && v == "Pipelock Fetch/1.0"),
        "{last:?}"
    );

    // A secret in the URL never leaves; the answer does not repeat it.
    let before = origin.seen().len();
    let (status, answer) = fetch(&pipelock, &origin.url(&format!("/clean?k={AWS_KEY}")), &[]);
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["blocked"], true);
    assert!(!answer.to_string().contains(AWS_KEY), "{answer}");
    // A secret in the client's own headers is refused too.
    let header = format!("Authorization: Bearer {AWS_KEY}");
    let (status, answer) = fetch(&pipelock, &origin.url("/clean"), &["-H", &header]);
    assert_eq!(status, 403, "{answer}");
    assert_eq!(
        origin.seen().len(),
        before,
        "a blocked fetch reached the origin"
    );

    // Injection: in the page, behind a redirect, and split by markup.
    for path in ["/inject", "/redirect?to=/inject", "/split"] {
        let (status, answer) = fetch(&pipelock, &origin.url(path), &[]);
        assert_eq!(status, 403, "{path}: {answer}");
        assert_eq!(answer["blocked"], true, "{path}");
        assert!(
            answer["block_reason"]
                .as_str()
                .unwrap_or("")
                .contains("injection"),
            "{path}: {answer}"
        );
    }
    // A redirect to a secret-bearing URL is scanned as its own hop.
    let (status, answer) = fetch(
        &pipelock,
        &origin.url(&format!("/redirect?to=/clean?k={AWS_KEY}")),
        &[],
    );
    assert_eq!(status, 403, "{answer}");

    // Bad requests.
    let (status, answer) = fetch(&pipelock, "ftp://example.com/", &[]);
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid URL: must be http or https"))
    );
    let (status, body) =
        curl_status_body(&[], &format!("http://{}/fetch", pipelock.addr)).expect("curl");
    assert_eq!(status, 400, "{body}");
    let (status, body) = curl_status_body(
        &["-X", "POST"],
        &format!("http://{}/fetch?url=http://127.0.0.1/", pipelock.addr),
    )
    .expect("curl");
    assert_eq!(status, 405, "{body}");
}

#[test]
fn fetch_guards_private_addresses_and_verifies_https_origins() {
    let origin = Upstream::start().expect("origin");
    // Without the loopback allowlist the SSRF guard refuses the private destination.
    let (guarded, _dir) = start("version: 1\n");
    let (status, answer) = fetch(&guarded, &origin.url("/page"), &[]);
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["blocked"], true);
    assert!(
        origin.seen().is_empty(),
        "the guarded fetch reached the origin"
    );

    // An HTTPS origin whose CA is trusted through upstream_ca_file is fetched over TLS; one
    // with an unknown CA fails with a clear error.
    let pki = TestPki::new().expect("pki");
    let tls_origin = Upstream::start_tls(&pki).expect("tls origin");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = write_file(dir.path(), "origin-ca.pem", &pki.ca_pem).expect("ca");
    let (trusting, _dir2) = start(&format!(
        "version: 1\nssrf:\n  ip_allowlist: [\"127.0.0.0/8\"]\ntls_interception:\n  upstream_ca_file: {}\n",
        ca.display()
    ));
    let (status, answer) = fetch(&trusting, &tls_origin.url("/page"), &[]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["title"], "Monthly spending");
    let (plain, _dir3) = start("version: 1\nssrf:\n  ip_allowlist: [\"127.0.0.0/8\"]\n");
    let (status, answer) = fetch(&plain, &tls_origin.url("/page"), &[]);
    assert_eq!(status, 502, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or("")
            .contains("certificate"),
        "{answer}"
    );
}
