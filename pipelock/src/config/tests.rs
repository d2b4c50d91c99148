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

#[test]
fn intercept_section_defaults_and_values() {
    let defaults = Config::default().intercept;
    assert!(!defaults.active());
    assert_eq!(
        (defaults.transparent_port, defaults.dns_port, defaults.mark),
        (8890, 8853, 0x0050_4c4b)
    );
    assert_eq!(defaults.pin_path, "/sys/fs/bpf/pipelock");
    assert_eq!(defaults.peek_timeout_ms, 5000);
    let config = load_str(
        "intercept:\n  cgroups: [/sys/fs/cgroup/app]\n  transparent_port: 9890\n  dns_port: 9853\n  dns_upstream: \"[::1]:53\"\n  mark: 0x1234\n  allow:\n    - {protocol: tcp, cidr: \"10.0.0.5/32\", port: 5432}\n    - {protocol: udp, host: ntp.internal, port: 123}\n    - {host: \"10.0.0.9\"}\n  peek_timeout_ms: 250\n  debug_log: true\n",
        "i.yaml",
    )
    .expect("loads");
    let section = &config.intercept;
    assert!(section.active());
    assert_eq!(section.mark, 0x1234);
    assert_eq!(section.dns_upstream, "[::1]:53");
    assert_eq!(section.allow.len(), 3);
    assert_eq!(section.allow[0].protocol, InterceptProtocol::Tcp);
    assert_eq!(section.allow[0].port, 5432);
    assert_eq!(section.allow[1].protocol, InterceptProtocol::Udp);
    assert_eq!(section.allow[1].host, "ntp.internal");
    assert_eq!(section.allow[2].port, 0);
    assert!(section.debug_log);
    let enabled = load_str("intercept:\n  enabled: true\n", "i.yaml").expect("loads");
    assert!(enabled.intercept.active());
}

#[test]
fn intercept_section_errors_name_line_and_field() {
    assert_eq!(
        error_text("intercept:\n  transparent_port: 70000\n"),
        "pipelock.yaml:2:21: intercept.transparent_port: 70000 is out of range (expected 0 to 65535)"
    );
    assert_eq!(
        error_text("intercept:\n  dns_port: 0\n"),
        "pipelock.yaml:2:13: intercept.dns_port: must be a port from 1 to 65535 (the kernel programs redirect to a fixed port)"
    );
    assert_eq!(
        error_text("intercept:\n  transparent_port: 9000\n  dns_port: 9000\n"),
        "pipelock.yaml:3:13: intercept.dns_port: 9000 is also intercept.transparent_port; the two listeners need distinct ports"
    );
    let text =
        error_text("fetch_proxy:\n  listen: \"127.0.0.1:8890\"\nintercept:\n  enabled: true\n");
    assert!(
        text.starts_with("pipelock.yaml:4:3: intercept.transparent_port: 8890 is also the port of fetch_proxy.listen"),
        "{text}"
    );
    // Without interception the same main port is fine.
    load_str("fetch_proxy:\n  listen: \"127.0.0.1:8890\"\n", "p").expect("no conflict");
    // The other listeners too: the MCP reverse proxy, and reverse_proxy's default :8890.
    let text = error_text(
        "mcp_reverse_proxy:\n  enabled: true\n  listen: \"127.0.0.1:9100\"\n  upstream: \"http://127.0.0.1:3000/mcp\"\nintercept:\n  enabled: true\n  transparent_port: 9100\n",
    );
    assert!(
        text.contains(
            "intercept.transparent_port: 9100 is also the port of mcp_reverse_proxy.listen"
        ),
        "{text}"
    );
    let text = error_text(
        "reverse_proxy:\n  enabled: true\n  upstream: \"http://127.0.0.1:3000\"\nintercept:\n  enabled: true\n",
    );
    assert!(
        text.contains("intercept.transparent_port: 8890 is also the port of reverse_proxy.listen"),
        "{text}"
    );
    assert_eq!(
        error_text("intercept:\n  mark: 0\n"),
        "pipelock.yaml:2:9: intercept.mark: must not be 0: unmarked sockets are the ones the kernel programs redirect"
    );
    let text = error_text("intercept:\n  mark: -1\n");
    assert!(
        text.starts_with("pipelock.yaml:2:9: intercept.mark: -1 is out of range"),
        "{text}"
    );
    let text = error_text("intercept:\n  dns_upstream: \"10.0.0.2\"\n");
    assert!(
        text.starts_with("pipelock.yaml:2:17: intercept.dns_upstream: \"10.0.0.2\" is not ip:port"),
        "{text}"
    );
    assert_eq!(
        error_text("intercept:\n  cgroups:\n    - /ok\n    - relative/app\n"),
        "pipelock.yaml:4:7: intercept.cgroups[1]: \"relative/app\" is not an absolute path to a cgroup v2 directory"
    );
    let text = error_text("intercept:\n  pin_path: bpf/pipelock\n");
    assert!(
        text.starts_with("pipelock.yaml:2:13: intercept.pin_path:"),
        "{text}"
    );
    let text = error_text("intercept:\n  peek_timeout_ms: 0\n");
    assert!(
        text.starts_with("pipelock.yaml:2:20: intercept.peek_timeout_ms: 0 is outside"),
        "{text}"
    );
    let text = error_text("intercept:\n  allow:\n    - {protocol: sctp, cidr: \"10.0.0.0/8\"}\n");
    assert!(
        text.starts_with("pipelock.yaml:3:18: intercept.allow[0].protocol: unknown value \"sctp\", expected one of: tcp, udp"),
        "{text}"
    );
    let text = error_text("intercept:\n  allow:\n    - {cidr: \"10.0.0.0/40\", port: 5432}\n");
    assert!(
        text.starts_with("pipelock.yaml:3:14: intercept.allow[0].cidr: \"10.0.0.0/40\": the prefix length must be 0 to 32"),
        "{text}"
    );
    let text = error_text("intercept:\n  allow:\n    - {port: 5432}\n");
    assert!(
        text.starts_with(
            "pipelock.yaml:3:8: intercept.allow[0]: an allow rule needs a destination"
        ),
        "{text}"
    );
    let text = error_text("intercept:\n  allow:\n    - {cidr: \"10.0.0.0/8\", host: db}\n");
    assert!(
        text.starts_with("pipelock.yaml:3:34: intercept.allow[0].host: give either cidr or host"),
        "{text}"
    );
    let text = error_text("intercept:\n  allow:\n    - {host: \"db:5432\"}\n");
    assert!(
        text.contains("intercept.allow[0].host: \"db:5432\" is not a host name"),
        "{text}"
    );
    let text = error_text("intercept:\n  transparant_port: 1\n");
    assert!(
        text.contains("(did you mean \"transparent_port\"?)"),
        "{text}"
    );
}

#[test]
fn mcp_reverse_proxy_section() {
    let config = load_str("version: 1\n", "pipelock.yaml").expect("loads");
    assert!(!config.mcp_reverse_proxy.enabled);
    assert_eq!(config.mcp_reverse_proxy.listen, "127.0.0.1:8889");
    let config = load_str(
        "mcp_reverse_proxy:\n  enabled: true\n  upstream: http://web:3000/mcp\n  auth_token: t0k3n\n",
        "pipelock.yaml",
    )
    .expect("loads");
    assert_eq!(config.mcp_reverse_proxy.upstream, "http://web:3000/mcp");
    assert_eq!(config.mcp_reverse_proxy.auth_token, "t0k3n");
    assert_eq!(
        error_text("mcp_reverse_proxy:\n  enabled: true\n"),
        "pipelock.yaml:2:3: mcp_reverse_proxy.upstream: an enabled MCP reverse proxy needs an upstream, e.g. http://127.0.0.1:3000/mcp"
    );
    let text = error_text("mcp_reverse_proxy:\n  enabled: true\n  upstream: ws://web:3000/mcp\n");
    assert!(
        text.starts_with("pipelock.yaml:3:13: mcp_reverse_proxy.upstream: \"ws://web:3000/mcp\": the MCP upstream must be http:// or https://"),
        "{text}"
    );
    let text = error_text(
        "mcp_reverse_proxy:\n  enabled: true\n  listen: nowhere\n  upstream: http://a/mcp\n",
    );
    assert!(
        text.starts_with("pipelock.yaml:3:11: mcp_reverse_proxy.listen: invalid listen address"),
        "{text}"
    );
    let text = error_text("mcp_reverse_proxy:\n  upstrem: http://a/mcp\n");
    assert!(text.contains("upstrem"), "{text}");
}
