//! `pipelock validate` and `pipelock generate config` through the real binary: the deployment
//! fixtures validate, bad configs name file:line:col and the field, presets round-trip.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pipelock_e2e::{describe, run_pipelock, write_file};

const TIMEOUT: Duration = Duration::from_secs(20);

fn fixture(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    assert!(path.is_file(), "fixture {} is missing", path.display());
    path
}

#[test]
fn deployment_fixtures_validate() {
    for name in ["sure-pipelock.example.yaml", "sure-helm-rendered.yaml"] {
        let path = fixture(name);
        let output = run_pipelock(
            &["validate", "--config", path.to_str().expect("utf-8")],
            None,
            TIMEOUT,
        )
        .expect("validate");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{name}: {}",
            describe(&output)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("valid"), "{stdout}");
        assert!(stdout.contains("balanced"), "{stdout}");
    }
}

#[test]
fn bad_configs_name_file_line_column_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let helm = std::fs::read_to_string(fixture("sure-helm-rendered.yaml")).expect("fixture");
    let typo = helm.replace(
        "redirect_profile: \"safe-fetch\"",
        "redirect_profile: \"safe-fetc\"",
    );
    assert_ne!(typo, helm, "the fixture changed; update this test");
    let line = typo
        .lines()
        .position(|l| l.contains("safe-fetc\""))
        .expect("line")
        + 1;
    let path = write_file(dir.path(), "pipelock.yaml", &typo).expect("write");
    let output = run_pipelock(
        &["validate", "--config", path.to_str().expect("utf-8")],
        None,
        TIMEOUT,
    )
    .expect("validate");
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!(
        "{}:{line}:25: mcp_tool_policy.rules[1].redirect_profile: unknown profile \"safe-fetc\"",
        path.display()
    );
    assert!(
        stderr.contains(&expected),
        "expected {expected:?}\n{}",
        describe(&output)
    );

    // An unknown field, from standard input.
    let output = run_pipelock(
        &["validate", "--config", "-"],
        Some(b"version: 1\nforward_proxy:\n  enabled: true\n  max_tunel_seconds: 300\n"),
        TIMEOUT,
    )
    .expect("validate stdin");
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("<stdin>:4:3: forward_proxy.max_tunel_seconds"),
        "{}",
        describe(&output)
    );
}

#[test]
fn run_refuses_a_bad_config_before_listening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_file(
        dir.path(),
        "pipelock.yaml",
        "version: 1\nfetch_proxy:\n  listen: \"127.0.0.1:70000\"\n",
    )
    .expect("write");
    let output = run_pipelock(
        &["run", "--config", path.to_str().expect("utf-8")],
        None,
        TIMEOUT,
    )
    .expect("run");
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:3:11: fetch_proxy.listen", path.display())),
        "{}",
        describe(&output)
    );

    let output = run_pipelock(
        &["run", "--config", "/nonexistent/pipelock.yaml"],
        None,
        TIMEOUT,
    )
    .expect("run");
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/pipelock.yaml"));
}

#[test]
fn every_preset_round_trips_through_validate() {
    for preset in ["strict", "balanced", "audit"] {
        let generated = run_pipelock(&["generate", "config", "--preset", preset], None, TIMEOUT)
            .expect("generate");
        assert!(generated.status.success(), "{}", describe(&generated));
        let yaml = generated.stdout;
        assert!(
            String::from_utf8_lossy(&yaml)
                .lines()
                .filter(|l| l.trim_start().starts_with('#'))
                .count()
                > 10,
            "the {preset} preset should be a commented file"
        );
        let validated =
            run_pipelock(&["validate", "--config", "-"], Some(&yaml), TIMEOUT).expect("validate");
        assert_eq!(
            validated.status.code(),
            Some(0),
            "{preset}: {}",
            describe(&validated)
        );
        let stdout = String::from_utf8_lossy(&validated.stdout);
        assert!(stdout.contains(preset), "{preset}: {stdout}");
    }
}

#[test]
fn generate_writes_a_private_file_and_refuses_to_overwrite() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pipelock.yaml");
    let path_str = path.to_str().expect("utf-8");
    let output = run_pipelock(
        &["generate", "config", "--preset", "audit", "-o", path_str],
        None,
        TIMEOUT,
    )
    .expect("generate");
    assert!(output.status.success(), "{}", describe(&output));
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let again =
        run_pipelock(&["generate", "config", "-o", path_str], None, TIMEOUT).expect("again");
    assert_eq!(again.status.code(), Some(1), "{}", describe(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let before = std::fs::read_to_string(&path).expect("read");
    assert!(before.contains("audit"), "the file was overwritten");

    let forced = run_pipelock(
        &[
            "generate", "config", "--preset", "strict", "-o", path_str, "--force",
        ],
        None,
        TIMEOUT,
    )
    .expect("force");
    assert!(forced.status.success(), "{}", describe(&forced));
    let validated =
        run_pipelock(&["validate", "--config", path_str], None, TIMEOUT).expect("validate");
    assert!(String::from_utf8_lossy(&validated.stdout).contains("strict"));
}
