//! Loader tests: the deployment fixtures load unchanged, presets round-trip, and every kind of
//! bad config is one error naming file, line, column and field.

use super::*;

const SURE_COMPOSE: &str = include_str!("../../../tests/fixtures/sure-pipelock.example.yaml");
const SURE_HELM: &str = include_str!("../../../tests/fixtures/sure-helm-rendered.yaml");

fn error_text(source: &str) -> String {
    match load_str(source, "pipelock.yaml") {
        Ok(config) => panic!("expected an error, loaded {config:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn sure_compose_fixture_loads() {
    let config = load_str(SURE_COMPOSE, "sure-pipelock.example.yaml").expect("fixture loads");
    assert_eq!(config.mode, Mode::Balanced);
    assert!(config.forward_proxy.enabled);
    assert_eq!(config.forward_proxy.max_tunnel_seconds, 300);
    assert_eq!(config.forward_proxy.idle_timeout_seconds, 60);
    assert!(!config.websocket_proxy.enabled);
    assert_eq!(config.websocket_proxy.origin_policy, OriginPolicy::Rewrite);
    assert_eq!(config.response_scanning.action, ResponseAction::Warn);
    assert_eq!(config.mcp_input_scanning.action, BlockOrWarn::Block);
    assert_eq!(
        config.mcp_input_scanning.on_parse_error,
        OnParseError::Block
    );
    assert!(config.mcp_tool_scanning.detect_drift);
    assert!(!config.mcp_tool_policy.enabled);
    assert_eq!(config.tool_chain_detection.max_gap, 3);
    assert_eq!(config.request_body_scanning.max_body_bytes, 5_242_880);
    assert_eq!(
        config.request_body_scanning.header_mode,
        HeaderMode::Sensitive
    );
    assert!(config.health_watchdog.enabled);
    assert!(config.flight_recorder.redact);
    // Omitted sections keep their defaults.
    assert_eq!(config.fetch_proxy.listen, "127.0.0.1:8888");
    assert_eq!(config.logging.format, LogFormat::Json);
}

#[test]
fn sure_helm_fixture_loads() {
    let config = load_str(SURE_HELM, "sure-helm-rendered.yaml").expect("fixture loads");
    assert_eq!(
        config.trusted_domains,
        vec!["api.internal.example.com", "*.corp.example.com"]
    );
    let policy = &config.mcp_tool_policy;
    assert!(policy.enabled);
    assert_eq!(policy.rules.len(), 2);
    assert_eq!(policy.rules[0].name, "block-shell-rm");
    assert_eq!(policy.rules[0].arg_pattern, "rm\\s+-rf\\s+/");
    assert_eq!(policy.rules[0].action, Some(RuleAction::Block));
    assert_eq!(policy.rules[1].action, Some(RuleAction::Redirect));
    assert_eq!(policy.rules[1].arg_key, "url");
    assert_eq!(policy.rules[1].redirect_profile, "safe-fetch");
    let profile = &policy.redirect_profiles["safe-fetch"];
    assert_eq!(
        profile.exec,
        ["/pipelock", "internal-redirect", "fetch-proxy"]
    );
    assert_eq!(profile.reason, "Route fetch calls through audited proxy");
    assert!(!config.logging.include_allowed);
    assert!(config.logging.include_blocked);
    assert!(config.session_profiling.enabled);
    assert_eq!(config.session_profiling.max_sessions, 1000);
    assert_eq!(
        config.mcp_session_binding.unknown_tool_action,
        BlockOrWarn::Warn
    );
}

#[test]
fn presets_load_back_with_their_mode() {
    for (preset, mode) in [
        (Preset::Strict, Mode::Strict),
        (Preset::Balanced, Mode::Balanced),
        (Preset::Audit, Mode::Audit),
    ] {
        let config = load_str(preset_yaml(preset), "preset").expect("preset loads");
        assert_eq!(config.mode, mode);
        assert_eq!(config.fetch_proxy.listen, "127.0.0.1:8888");
        assert!(config.forward_proxy.enabled);
    }
    let audit = load_str(preset_yaml(Preset::Audit), "audit").expect("audit");
    assert!(!audit.enforce_enabled());
    assert_eq!(audit.response_scanning.action, ResponseAction::Warn);
    let strict = load_str(preset_yaml(Preset::Strict), "strict").expect("strict");
    assert!(strict.enforce_enabled());
    assert!((strict.fetch_proxy.monitoring.entropy_threshold - 3.5).abs() < f64::EPSILON);
    assert_eq!(strict.fetch_proxy.monitoring.max_url_length, 500);
    assert_eq!(strict.tool_chain_detection.action, BlockOrWarn::Block);
    assert_eq!(
        default_config(),
        load_str(preset_yaml(Preset::Balanced), "b").expect("balanced")
    );
}

#[test]
fn empty_file_means_defaults() {
    assert_eq!(load_str("", "e.yaml").expect("empty"), Config::default());
    assert_eq!(
        load_str("# nothing\n", "e.yaml").expect("comment"),
        Config::default()
    );
}

#[test]
fn unknown_field_names_position_and_suggests() {
    let text =
        error_text("version: 1\nforward_proxy:\n  enabled: true\n  max_tunel_seconds: 300\n");
    assert_eq!(
        text,
        "pipelock.yaml:4:3: forward_proxy.max_tunel_seconds: unknown field \"max_tunel_seconds\" (did you mean \"max_tunnel_seconds\"?)"
    );
    let text = error_text("mode: balanced\nresponse_scaning:\n  enabled: true\n");
    assert!(
        text.starts_with("pipelock.yaml:2:1: response_scaning: unknown field"),
        "{text}"
    );
}

#[test]
fn wrong_types_and_values() {
    assert_eq!(
        error_text("forward_proxy:\n  max_tunnel_seconds: abc\n"),
        "pipelock.yaml:2:23: forward_proxy.max_tunnel_seconds: expected an integer, found string \"abc\""
    );
    assert_eq!(
        error_text("dlp:\n  scan_env: \"yes please\"\n"),
        "pipelock.yaml:2:13: dlp.scan_env: expected true or false, found string \"yes please\""
    );
    assert_eq!(
        error_text("mode: paranoid\n"),
        "pipelock.yaml:1:7: mode: unknown value \"paranoid\", expected one of: strict, balanced, audit"
    );
    assert_eq!(
        error_text("trusted_domains: example.com\n"),
        "pipelock.yaml:1:18: trusted_domains: expected a list, found string \"example.com\""
    );
    let text = error_text("forward_proxy:\n  max_tunnel_seconds: -5\n");
    assert!(
        text.starts_with(
            "pipelock.yaml:2:23: forward_proxy.max_tunnel_seconds: -5 is out of range"
        ),
        "{text}"
    );
    let text = error_text(
        "mcp_tool_policy:\n  rules:\n    - name: x\n      tool_pattern: y\n      action: nuke\n",
    );
    assert!(
        text.starts_with(
            "pipelock.yaml:5:15: mcp_tool_policy.rules[0].action: unknown value \"nuke\""
        ),
        "{text}"
    );
}

#[test]
fn second_document_is_rejected() {
    let text = error_text("mode: balanced\n---\nmode: audit\n");
    assert!(
        text.starts_with("pipelock.yaml:2:1: a second YAML document"),
        "{text}"
    );
}

#[test]
fn duplicate_keys_and_syntax_errors() {
    assert_eq!(
        error_text("dlp:\n  scan_env: true\n  scan_env: false\n"),
        "pipelock.yaml:3:3: dlp.scan_env: duplicate key \"scan_env\""
    );
    let text = error_text("dlp:\n  scan_env: [true\nmode: x\n");
    assert!(
        text.starts_with("pipelock.yaml:") && text.contains("YAML syntax error"),
        "{text}"
    );
    let text = error_text("- a\n- b\n");
    assert!(text.contains("must be a mapping"), "{text}");
}

#[test]
fn invalid_regexes() {
    let text = error_text("dlp:\n  patterns:\n    - name: broken\n      regex: \"sk-[a-z\"\n");
    assert!(
        text.starts_with("pipelock.yaml:4:14: dlp.patterns[0].regex: invalid regex \"sk-[a-z\": unclosed character class"),
        "{text}"
    );
    let text = error_text("mcp_tool_policy:\n  enabled: true\n  rules:\n    - name: r\n      tool_pattern: \"(bash\"\n");
    assert!(
        text.starts_with(
            "pipelock.yaml:5:21: mcp_tool_policy.rules[0].tool_pattern: invalid regex"
        ),
        "{text}"
    );
}

#[test]
fn unknown_redirect_profile() {
    let typo = SURE_HELM.replace(
        "redirect_profile: \"safe-fetch\"",
        "redirect_profile: \"safe-fetc\"",
    );
    let line = typo
        .lines()
        .position(|l| l.contains("\"safe-fetc\""))
        .expect("line")
        + 1;
    assert_eq!(
        error_text(&typo),
        format!("pipelock.yaml:{line}:25: mcp_tool_policy.rules[1].redirect_profile: unknown profile \"safe-fetc\" (defined: safe-fetch)")
    );
    let missing = "mcp_tool_policy:\n  enabled: true\n  rules:\n    - name: r\n      tool_pattern: fetch\n      action: redirect\n";
    assert_eq!(
        error_text(missing),
        "pipelock.yaml:6:15: mcp_tool_policy.rules[0].action: a redirect rule needs redirect_profile"
    );
}

#[test]
fn ports_out_of_range_and_bad_addresses() {
    assert_eq!(
        error_text("fetch_proxy:\n  listen: \"127.0.0.1:70000\"\n"),
        "pipelock.yaml:2:11: fetch_proxy.listen: port 70000 is out of range (0-65535; 0 picks a free port)"
    );
    let text = error_text("metrics_listen: localhost\n");
    assert!(
        text.starts_with("pipelock.yaml:1:17: metrics_listen: invalid listen address"),
        "{text}"
    );
    let text = error_text("kill_switch:\n  api_listen: \"127.0.0.1:9090\"\n");
    assert!(
        text.contains("kill_switch.api_listen: the kill-switch API needs kill_switch.api_token"),
        "{text}"
    );
}

#[test]
fn semantic_checks() {
    let text = error_text("mode: strict\napi_allowlist: []\n");
    assert!(
        text.starts_with("pipelock.yaml:2:16: api_allowlist: strict mode"),
        "{text}"
    );
    let text = error_text("mcp_tool_policy:\n  enabled: true\n");
    assert!(
        text.starts_with(
            "pipelock.yaml:2:3: mcp_tool_policy.rules: mcp_tool_policy is enabled but has no rules"
        ),
        "{text}"
    );
    let text = error_text("logging:\n  output: file\n");
    assert!(
        text.starts_with("pipelock.yaml:2:11: logging.output: logging.file is required"),
        "{text}"
    );
    let text = error_text("ssrf:\n  ip_allowlist: [\"0.0.0.0/0\"]\n");
    assert!(text.contains("ssrf.ip_allowlist[0]"), "{text}");
    let text = error_text("tls_interception:\n  cert_ttl: 1d\n");
    assert!(text.contains("tls_interception.cert_ttl"), "{text}");
    let text = error_text("version: 2\n");
    assert!(
        text.starts_with("pipelock.yaml:1:10: version: unsupported version 2"),
        "{text}"
    );
}

#[test]
fn yaml_1_1_booleans_and_nulls_read_like_go() {
    let config =
        load_str("forward_proxy:\n  enabled: yes\nwebsocket_proxy: ~\n", "p").expect("loads");
    assert!(config.forward_proxy.enabled);
    assert_eq!(config.websocket_proxy, WebsocketProxy::default());
    let config = load_str("mode: \"audit\"\nversion: !!int 1\n", "p").expect("tags");
    assert_eq!(config.mode, Mode::Audit);
}

#[test]
fn malformed_input_never_panics() {
    let cases = [
        "\t- x",
        "a: \"unterminated",
        "{{{{",
        "[[[[",
        "mode: !custom x",
        ":",
        "- : :",
        "? a\n: b",
        "dlp: &a\n  scan_env: true\nresponse_scanning: *a\n",
        "mode: *nope",
        "\u{feff}mode: audit",
        "forward_proxy:\n  max_tunnel_seconds: 99999999999999999999999999\n",
        "version: 1.5",
        "internal: [\"10.0.0.0/99\"]",
        "dlp:\n  patterns:\n    - regex: x\n",
    ];
    for case in cases {
        let _ = load_str(case, "fuzz.yaml");
    }
    let deep = format!("a: {}", "[".repeat(10_000));
    assert!(load_str(&deep, "deep.yaml").is_err());
}

#[test]
fn load_file_names_the_file() {
    let error = load_file(std::path::Path::new("/nonexistent/pipelock.yaml")).expect_err("missing");
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/pipelock.yaml: cannot read"),
        "{error}"
    );
}
