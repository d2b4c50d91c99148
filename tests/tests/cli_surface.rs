//! The command-line surface: version, help, and commands that later releases implement.

use std::time::Duration;

use pipelock_e2e::{describe, run_pipelock};

const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn version_prints_the_crate_version() {
    let output = run_pipelock(&["version"], None, TIMEOUT).expect("version");
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("pipelock {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_lists_every_subcommand() {
    let output = run_pipelock(&["--help"], None, TIMEOUT).expect("help");
    assert!(output.status.success(), "{}", describe(&output));
    let help = String::from_utf8_lossy(&output.stdout);
    for command in [
        "run",
        "check",
        "validate",
        "generate",
        "healthcheck",
        "attach",
        "detach",
        "status",
        "simulate",
        "tls",
        "version",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(command)),
            "{command} missing from --help:\n{help}"
        );
    }
}

#[test]
fn later_commands_say_they_are_not_yet_available() {
    // attach, detach and status work (tests/tests/ebpf_intercept.rs,
    // transparent_interception.rs).
    let cases: [&[&str]; 1] = [&["simulate"]];
    for args in cases {
        let output = run_pipelock(args, None, TIMEOUT).expect("run");
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            describe(&output)
        );
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("not yet available"),
            "{args:?}: {}",
            describe(&output)
        );
        let mut help_args = args[..1].to_vec();
        help_args.push("--help");
        let help = run_pipelock(&help_args, None, TIMEOUT).expect("help");
        assert!(
            String::from_utf8_lossy(&help.stdout).contains("not yet available"),
            "{help_args:?}: {}",
            describe(&help)
        );
    }
}

#[test]
fn attach_explains_what_is_missing() {
    // A pin path that is not on a bpffs: refused before anything is loaded, with the fix.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = pipelock_e2e::write_file(
        dir.path(),
        "pipelock.yaml",
        &format!(
            "version: 1\nintercept:\n  pin_path: {}\n",
            dir.path().join("pins").display()
        ),
    )
    .expect("config");
    let output = run_pipelock(
        &[
            "attach",
            "--cgroup",
            dir.path().to_str().expect("utf-8"),
            "--config",
            config.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
        ],
        None,
        TIMEOUT,
    )
    .expect("run");
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot attach the eBPF interception")
            && stderr.contains("is not on a BPF filesystem")
            && stderr.contains("mount -t bpf"),
        "{}",
        describe(&output)
    );
}

#[test]
fn unknown_subcommands_and_flags_are_usage_errors() {
    let output = run_pipelock(&["frobnicate"], None, TIMEOUT).expect("run");
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let output = run_pipelock(&["run", "--no-such-flag"], None, TIMEOUT).expect("run");
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
}
