//! Every built-in rule has a positive sample and a near-miss negative.

use super::*;
use crate::config::{Dlp, DlpPattern};

fn r(unit: &str, n: usize) -> String {
    unit.repeat(n)
}

/// (rule id, text that must match, near miss that must not).
fn cases() -> Vec<(&'static str, String, String)> {
    let hex64 = r("0123456789abcdef", 4);
    vec![
        ("aws_access_key_id", "key AKIAIOSFODNN7EXAMPLE here".into(), "key AKIAIOSFODNN7EXAMPL here".into()),
        ("aws_secret_access_key", "aws_secret_access_key = \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"".into(), "aws_secret_access_key = \"short\"".into()),
        ("gcp_service_account_key", r#"{"type": "service_account", "project_id": "p"}"#.into(), "the service_account field".into()),
        ("google_api_key", "AIzaSyA1234567890abcdefghijklmnopqrstuv".into(), "AIzaShort".into()),
        ("google_oauth_client_secret", format!("GOCSPX-{}", r("abcd", 7)), "GOCSPX-short".into()),
        ("google_oauth_token", "ya29.a0AfH6SMBx1234567890abcdefgh".into(), "ya29.short".into()),
        ("google_oauth_client_id", "123456789012-abcdefghijklmnopqrstuvwxyz012345.apps.googleusercontent.com".into(), "myapp.apps.googleusercontent.com".into()),
        ("azure_storage_connection_string", format!("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={}==", r("AbCd", 11)), "AccountKey=<your key>".into()),
        ("azure_sas_token", format!("https://a.blob.core.windows.net/c?sv=2021-08-06&ss=b&sig={}", r("AbC1", 9)), "?sv=2021-08-06&sig=short".into()),
        ("digitalocean_token", format!("dop_v1_{hex64}"), "dop_v1_abc".into()),
        ("openai_api_key", format!("sk-proj-{}", r("aB3", 12)), "sk-proj-short".into()),
        ("openai_legacy_api_key", format!("sk-{}T3BlbkFJ{}", r("aB3c", 5), r("xY9z", 5)), "install sk-learn first".into()),
        ("anthropic_api_key", format!("sk-ant-api03-{}", r("aB3c", 10)), "sk-ant-short".into()),
        ("huggingface_token", format!("hf_{}", r("aB3", 12)), "hf_short".into()),
        ("cohere_api_key", format!("COHERE_API_KEY=\"{}\"", r("aB3c", 10)), "cohere is a company".into()),
        ("groq_api_key", format!("gsk_{}", r("aB3c", 13)), "gsk_short".into()),
        ("xai_api_key", format!("xai-{}", r("aB3c", 20)), "xai-short".into()),
        ("replicate_api_token", format!("r8_{}", r("aB3", 13)), "r8_short".into()),
        ("fireworks_api_key", format!("fw_{}", r("aB3", 9)), "fw_short".into()),
        ("perplexity_api_key", format!("pplx-{}", r("aB3c", 12)), "pplx-short".into()),
        ("pinecone_api_key", format!("pcsk_{}", r("aB3c", 11)), "pcsk_short".into()),
        ("github_classic_token", format!("ghp_{}", r("aB3c", 9)), "ghp_short".into()),
        ("github_fine_grained_pat", format!("github_pat_{}", r("aB3_", 21)), "github_pat_short".into()),
        ("github_app_token", format!("ghs_{}", r("aB3c", 9)), "ghs_short".into()),
        ("gitlab_token", format!("glpat-{}", r("aB3c", 5)), "glpat-short".into()),
        ("npm_token", format!("npm_{}", r("aB3c", 9)), "run npm_install".into()),
        ("pypi_token", format!("pypi-AgEIcHlwaS5vcmc{}", r("aB3c", 15)), "pypi-AgEIcHlwaS5vcmc".into()),
        ("vault_token", format!("hvs.{}", r("aB3c", 6)), "hvs.short".into()),
        ("slack_token", "xoxb-1234567890-abcdefghij".into(), "xoxb-short".into()),
        ("slack_app_token", "xapp-1-A0123ABCDEF-1234567890123-abcdef0123456789".into(), "xapp-x".into()),
        ("slack_webhook_url", "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX".into(), "https://hooks.slack.com/help".into()),
        ("discord_bot_token", "MTA1234567890123456789012.GhIjKl.abcdefghijklmnopqrstuvwxyz1234567".into(), "MTA1234567890123456789012.short.x".into()),
        ("discord_webhook_url", format!("https://discord.com/api/webhooks/123456789012345678/{}", r("aB3c", 17)), "https://discord.com/api/webhooks/docs".into()),
        ("telegram_bot_token", "123456789:AAabcdefghijklmnopqrstuvwxyz1234567".into(), "aspect ratio 16:AA".into()),
        ("stripe_secret_key", format!("sk_live_{}", r("aB3c", 6)), "sk_live_x".into()),
        ("stripe_webhook_secret", format!("whsec_{}", r("aB3c", 8)), "whsec_x".into()),
        ("square_token", format!("sq0atp-{}", r("aB3c", 6)), "sq0atp-x".into()),
        ("shopify_token", format!("shpat_{}", r("0a1b", 8)), "shpat_xyz".into()),
        ("twilio_api_key", format!("SK{}", r("0a1b", 8)), format!("SK{}", r("0A1B", 8))),
        ("sendgrid_api_key", format!("SG.{}.{}", r("aB3c_", 4) + "xy", r("aB3c-", 8) + "xyz"), "SG.short".into()),
        ("mailgun_api_key", format!("key-{}", r("aB3c", 8)), "a key-value store".into()),
        ("new_relic_api_key", format!("NRAK-{}", r("AB3", 9)), "NRAK-short".into()),
        ("databricks_token", format!("dapi{}", r("0a1b", 8)), "dapi is a word".into()),
        ("linear_api_key", format!("lin_api_{}", r("aB3c", 10)), "lin_api_x".into()),
        ("notion_token", format!("ntn_{}", r("aB3c", 12)), "ntn_x".into()),
        ("sentry_token", format!("sntrys_{}", r("aB3c", 15)), "sntrys_x".into()),
        ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U".into(), "eyJhbGciOiJIUzI1NiJ9".into()),
        ("pem_private_key", "-----BEGIN RSA PRIVATE KEY-----\nMIIE".into(), "-----BEGIN PUBLIC KEY-----".into()),
        ("openssh_private_key", "-----BEGIN OPENSSH PRIVATE KEY-----".into(), "-----BEGIN CERTIFICATE-----".into()),
        ("pgp_private_key", "-----BEGIN PGP PRIVATE KEY BLOCK-----".into(), "-----BEGIN PGP PUBLIC KEY BLOCK-----".into()),
        ("age_secret_key", format!("AGE-SECRET-KEY-1{}", r("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 2).get(..58).unwrap_or_default()), "AGE-SECRET-KEY-1QPZRY".into()),
        ("database_url_password", "DATABASE_URL=postgres://app:s3cretpw@db.internal:5432/app".into(), "postgres://db.internal:5432/app".into()),
        ("password_assignment", "login with password=hunter2xyz now".into(), "password: $DB_PASSWORD".into()),
        ("env_var_secret", "OPENAI_API_KEY=sk12345678abc".into(), "MY_TOKEN=short".into()),
        ("credit_card", "card 4111 1111 1111 1111 exp".into(), "card 4111 1111 1111 1112 exp".into()),
        ("iban", "IBAN DE89370400440532013000".into(), "IBAN DE89370400440532013001".into()),
        ("us_ssn", "ssn 123-45-6789".into(), "ssn 666-45-6789".into()),
        ("bitcoin_wif_private_key", "5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTJ".into(), "5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTK".into()),
        ("extended_private_key", "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi".into(), "xprv9s21Zr".into()),
        ("ethereum_private_key", format!("0x{hex64}"), format!("address 0x{}", &hex64[..40])),
    ]
}

fn scanner() -> DlpScanner {
    DlpScanner::new(&Dlp::default()).expect("builds")
}

#[test]
fn at_least_48_rules_and_every_one_is_tested() {
    assert!(BUILTIN_RULES.len() >= 48, "{} rules", BUILTIN_RULES.len());
    let tested: Vec<&str> = cases().iter().map(|(id, _, _)| *id).collect();
    for rule in BUILTIN_RULES {
        assert!(
            tested.contains(&rule.id),
            "rule {} has no test case",
            rule.id
        );
    }
    let mut ids: Vec<&str> = BUILTIN_RULES.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), BUILTIN_RULES.len(), "rule ids must be unique");
}

#[test]
fn every_rule_matches_its_positive_and_not_its_near_miss() {
    let scanner = scanner();
    for (id, positive, negative) in cases() {
        let rule_id = format!("dlp.{id}");
        let found = scanner.scan(&positive, "raw");
        assert!(
            found.iter().any(|f| f.rule_id == rule_id),
            "{rule_id} missed {positive:?}; found {found:?}"
        );
        let found = scanner.scan(&negative, "raw");
        assert!(
            !found.iter().any(|f| f.rule_id == rule_id),
            "{rule_id} fired on near miss {negative:?}"
        );
    }
}

#[test]
fn findings_carry_span_severity_and_a_redacted_preview() {
    let text = format!("token: ghp_{} end", r("aB3c", 9));
    let found = scanner().scan(&text, "raw");
    let finding = found
        .iter()
        .find(|f| f.rule_id == "dlp.github_classic_token")
        .expect("finding");
    assert_eq!(&text[finding.span.clone()], &text[7..47]);
    assert_eq!(finding.severity, Severity::Critical);
    assert_eq!(finding.scanner, ScannerKind::Dlp);
    assert!(!finding.preview.contains("aB3caB3c"), "{}", finding.preview);
}

#[test]
fn clean_prose_has_no_findings() {
    let prose = "The quarterly report shows revenue grew 12% in 2024. Our team of 45 engineers \
        shipped the new API on March 3rd; see the changelog for details. Passwords are never \
        stored in plain text, and the secret to good software is testing.";
    assert_eq!(scanner().scan(prose, "raw"), Vec::new());
}

#[test]
fn custom_patterns_join_and_override() {
    let config = Dlp {
        patterns: vec![
            DlpPattern {
                name: "Internal Token".into(),
                regex: "itk_[a-z0-9]{16}".into(),
                severity: Severity::High,
                ..DlpPattern::default()
            },
            DlpPattern {
                name: "US Social Security Number".into(),
                regex: r"\bSSN#\d{9}\b".into(),
                severity: Severity::High,
                ..DlpPattern::default()
            },
        ],
        ..Dlp::default()
    };
    let scanner = DlpScanner::new(&config).expect("builds");
    assert_eq!(scanner.rule_count(), BUILTIN_RULES.len() + 1);
    let found = scanner.scan("ITK_ABCDEF0123456789 and ssn 123-45-6789", "raw");
    assert!(
        found
            .iter()
            .any(|f| f.rule_id == "dlp.custom.internal_token"),
        "{found:?}"
    );
    assert!(
        !found.iter().any(|f| f.rule_id == "dlp.us_ssn"),
        "the custom rule replaces the built-in"
    );

    let only_custom = DlpScanner::new(&Dlp {
        include_defaults: false,
        ..config
    })
    .expect("builds");
    assert_eq!(only_custom.rule_count(), 2);
    assert!(only_custom.scan("AKIAIOSFODNN7EXAMPLE", "raw").is_empty());
}

#[test]
fn odd_input_does_not_panic() {
    let scanner = scanner();
    for text in [
        "",
        "\0\0\0",
        "é".repeat(10_000).as_str(),
        "1-".repeat(5000).as_str(),
        "-----BEGIN ",
    ] {
        let _ = scanner.scan(text, "raw");
    }
}

/// Rules gated on a long token run must only match text that has one: their positive cases'
/// matches each hold a run, and the gate closed means no literal search at all.
#[test]
fn token_gated_rules_match_only_long_tokens() {
    let all = cases();
    for rule in BUILTIN_RULES {
        if !matches!(rule.trigger, Trigger::Token(_)) {
            continue;
        }
        let (_, positive, _) = all
            .iter()
            .find(|(id, _, _)| *id == rule.id)
            .unwrap_or_else(|| panic!("{} has no case", rule.id));
        let regex = Regex::new(rule.regex).expect("compiles");
        let found = regex.find(positive).expect("the positive case matches");
        assert!(
            crate::scan::runs::runs(found.as_str().as_bytes()).token,
            "{}: {:?} has no long token run",
            rule.id,
            found.as_str()
        );
    }
}
