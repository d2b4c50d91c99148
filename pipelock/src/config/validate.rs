//! Checks that need the whole config, after it has been deserialized: regexes compile,
//! redirect rules name existing profiles, listen addresses and CIDRs parse, and the
//! combinations the reference refuses are refused here too. The first problem is reported,
//! with the field path `mod.rs` turns into a file position.

use std::net::IpAddr;

use super::located::FieldPath;
use super::schema::{Config, LogOutput, Mode, RuleAction};

/// A problem with a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: FieldPath,
    pub message: String,
}

fn problem(path: FieldPath, message: impl Into<String>) -> Problem {
    Problem {
        path,
        message: message.into(),
    }
}

/// Runs every check; the first problem wins.
///
/// # Errors
/// The first problem found.
pub fn validate(config: &Config) -> Result<(), Problem> {
    let root = FieldPath::default();
    if config.version != 1 {
        return Err(problem(
            root.key("version"),
            format!(
                "unsupported version {}; the only config version is 1",
                config.version
            ),
        ));
    }
    if config.mode == Mode::Strict && config.api_allowlist.is_empty() {
        return Err(problem(
            root.key("api_allowlist"),
            "strict mode only allows allow-listed destinations: api_allowlist must not be empty",
        ));
    }
    listen_address(
        &config.fetch_proxy.listen,
        root.key("fetch_proxy").key("listen"),
        false,
    )?;
    listen_address(&config.metrics_listen, root.key("metrics_listen"), true)?;
    listen_address(
        &config.kill_switch.api_listen,
        root.key("kill_switch").key("api_listen"),
        true,
    )?;
    if config.reverse_proxy.enabled {
        listen_address(
            &config.reverse_proxy.listen,
            root.key("reverse_proxy").key("listen"),
            false,
        )?;
        if !(config.reverse_proxy.upstream.starts_with("http://")
            || config.reverse_proxy.upstream.starts_with("https://"))
        {
            return Err(problem(
                root.key("reverse_proxy").key("upstream"),
                "an enabled reverse proxy needs an http:// or https:// upstream",
            ));
        }
    }
    if config.mcp_reverse_proxy.enabled {
        let section = root.key("mcp_reverse_proxy");
        listen_address(
            &config.mcp_reverse_proxy.listen,
            section.key("listen"),
            false,
        )?;
        if config.mcp_reverse_proxy.upstream.trim().is_empty() {
            return Err(problem(
                section.key("upstream"),
                "an enabled MCP reverse proxy needs an upstream, e.g. http://127.0.0.1:3000/mcp",
            ));
        }
        mcp_upstream_url(&config.mcp_reverse_proxy.upstream)
            .map_err(|m| problem(section.key("upstream"), m))?;
    }
    if !config.kill_switch.api_listen.is_empty() {
        if config.kill_switch.api_token.is_empty() {
            return Err(problem(
                root.key("kill_switch").key("api_listen"),
                "the kill-switch API needs kill_switch.api_token",
            ));
        }
        if config.kill_switch.api_listen == config.fetch_proxy.listen {
            return Err(problem(
                root.key("kill_switch").key("api_listen"),
                "must differ from fetch_proxy.listen",
            ));
        }
    }
    for (i, entry) in config.kill_switch.allowlist_ips.iter().enumerate() {
        if crate::killswitch::parse_allowed(entry).is_none() {
            return Err(problem(
                root.key("kill_switch").key("allowlist_ips").index(i),
                format!("{entry:?} is not an IP address or a CIDR such as 10.0.0.0/8"),
            ));
        }
    }
    if matches!(config.logging.output, LogOutput::File | LogOutput::Both)
        && config.logging.file.trim().is_empty()
    {
        return Err(problem(
            root.key("logging").key("output"),
            format!(
                "logging.file is required when logging.output is {:?}",
                if config.logging.output == LogOutput::File {
                    "file"
                } else {
                    "both"
                }
            ),
        ));
    }

    for (i, cidr) in config.internal.iter().enumerate() {
        parse_cidr(cidr).map_err(|m| problem(root.key("internal").index(i), m))?;
    }
    for (i, cidr) in config.ssrf.ip_allowlist.iter().enumerate() {
        let path = root.key("ssrf").key("ip_allowlist").index(i);
        let prefix = parse_cidr(cidr).map_err(|m| problem(path.clone(), m))?;
        if prefix == 0 {
            return Err(problem(
                path,
                format!("{cidr:?} allows every address; list specific ranges"),
            ));
        }
    }
    for (i, domain) in config.trusted_domains.iter().enumerate() {
        let path = root.key("trusted_domains").index(i);
        if domain.trim().is_empty() {
            return Err(problem(path, "empty domain"));
        }
        if domain.parse::<IpAddr>().is_ok() {
            return Err(problem(path, format!("{domain:?} is an IP address; trusted_domains takes domain names (use ssrf.ip_allowlist for addresses)")));
        }
    }

    let monitoring = &config.fetch_proxy.monitoring;
    let monitoring_path = root.key("fetch_proxy").key("monitoring");
    for (name, value) in [
        ("entropy_threshold", monitoring.entropy_threshold),
        (
            "subdomain_entropy_threshold",
            monitoring.subdomain_entropy_threshold,
        ),
    ] {
        if !(value > 0.0 && value <= 8.0) {
            return Err(problem(
                monitoring_path.key(name),
                format!("{value} is outside (0, 8] bits per character"),
            ));
        }
    }
    if monitoring.max_url_length == 0 {
        return Err(problem(
            monitoring_path.key("max_url_length"),
            "must be at least 1",
        ));
    }

    let tls = &config.tls_interception;
    if !is_go_duration(&tls.cert_ttl) {
        return Err(problem(
            root.key("tls_interception").key("cert_ttl"),
            format!(
                "{:?} is not a duration such as 24h, 90m or 1h30m",
                tls.cert_ttl
            ),
        ));
    }
    for (section, value) in [
        (
            "request_body_scanning",
            config.request_body_scanning.max_body_bytes,
        ),
        ("websocket_proxy", config.websocket_proxy.max_message_bytes),
    ] {
        if value == 0 {
            let field = if section == "websocket_proxy" {
                "max_message_bytes"
            } else {
                "max_body_bytes"
            };
            return Err(problem(
                root.key(section).key(field),
                "must be at least 1 byte",
            ));
        }
    }
    if config.response_scanning.sse_streaming.max_event_bytes == 0 {
        return Err(problem(
            root.key("response_scanning")
                .key("sse_streaming")
                .key("max_event_bytes"),
            "must be at least 1 byte",
        ));
    }

    for (i, pattern) in config.dlp.patterns.iter().enumerate() {
        let path = root.key("dlp").key("patterns").index(i);
        if pattern.name.trim().is_empty() {
            return Err(problem(path.key("name"), "every pattern needs a name"));
        }
        regex(&pattern.regex, path.key("regex"))?;
    }
    for (i, pattern) in config.response_scanning.patterns.iter().enumerate() {
        let path = root.key("response_scanning").key("patterns").index(i);
        if pattern.name.trim().is_empty() {
            return Err(problem(path.key("name"), "every pattern needs a name"));
        }
        regex(&pattern.regex, path.key("regex"))?;
    }

    tool_policy(config, &root.key("mcp_tool_policy"))?;
    intercept(config, &root.key("intercept"))?;

    let chains = &config.tool_chain_detection;
    let chain_path = root.key("tool_chain_detection");
    if chains.window_size == 0 {
        return Err(problem(chain_path.key("window_size"), "must be at least 1"));
    }
    for (i, pattern) in chains.custom_patterns.iter().enumerate() {
        if pattern.sequence.len() < 2 {
            return Err(problem(
                chain_path.key("custom_patterns").index(i).key("sequence"),
                "a chain needs at least two steps",
            ));
        }
    }
    Ok(())
}

fn tool_policy(config: &Config, path: &FieldPath) -> Result<(), Problem> {
    let policy = &config.mcp_tool_policy;
    if policy.enabled && policy.rules.is_empty() {
        return Err(problem(
            path.key("rules"),
            "mcp_tool_policy is enabled but has no rules",
        ));
    }
    for (name, profile) in &policy.redirect_profiles {
        if profile.exec.is_empty() || profile.exec[0].trim().is_empty() {
            return Err(problem(
                path.key("redirect_profiles").key(name).key("exec"),
                "a redirect profile needs a program to run",
            ));
        }
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        let rule_path = path.key("rules").index(i);
        if rule.tool_pattern.is_empty() {
            return Err(problem(
                rule_path.key("tool_pattern"),
                "every rule needs a tool_pattern",
            ));
        }
        regex(&rule.tool_pattern, rule_path.key("tool_pattern"))?;
        if !rule.arg_pattern.is_empty() {
            regex(&rule.arg_pattern, rule_path.key("arg_pattern"))?;
        }
        let action = rule.action.unwrap_or(policy.action);
        if action == RuleAction::Redirect {
            if rule.redirect_profile.is_empty() {
                return Err(problem(
                    rule_path.key("action"),
                    "a redirect rule needs redirect_profile",
                ));
            }
            if !policy
                .redirect_profiles
                .contains_key(&rule.redirect_profile)
            {
                let known: Vec<&str> = policy
                    .redirect_profiles
                    .keys()
                    .map(String::as_str)
                    .collect();
                let known = if known.is_empty() {
                    "no redirect_profiles are defined".to_string()
                } else {
                    format!("defined: {}", known.join(", "))
                };
                return Err(problem(
                    rule_path.key("redirect_profile"),
                    format!("unknown profile {:?} ({known})", rule.redirect_profile),
                ));
            }
        }
    }
    Ok(())
}

/// The `intercept` section: ports in range and distinct, a non-zero mark, an `ip:port`
/// resolver, absolute paths, and allow rules with one well-formed destination each.
fn intercept(config: &Config, path: &FieldPath) -> Result<(), Problem> {
    let section = &config.intercept;
    for (name, port) in [
        ("transparent_port", section.transparent_port),
        ("dns_port", section.dns_port),
    ] {
        if port == 0 {
            return Err(problem(
                path.key(name),
                "must be a port from 1 to 65535 (the kernel programs redirect to a fixed port)",
            ));
        }
    }
    if section.transparent_port == section.dns_port {
        return Err(problem(
            path.key("dns_port"),
            format!(
                "{} is also intercept.transparent_port; the two listeners need distinct ports",
                section.dns_port
            ),
        ));
    }
    // Only a running transparent listener can collide with Pipelock's other TCP listeners.
    let listeners = [
        ("fetch_proxy.listen", &config.fetch_proxy.listen, true),
        ("metrics_listen", &config.metrics_listen, true),
        (
            "kill_switch.api_listen",
            &config.kill_switch.api_listen,
            true,
        ),
        (
            "mcp_reverse_proxy.listen",
            &config.mcp_reverse_proxy.listen,
            config.mcp_reverse_proxy.enabled,
        ),
        (
            "reverse_proxy.listen",
            &config.reverse_proxy.listen,
            config.reverse_proxy.enabled,
        ),
    ];
    for (name, listen, enabled) in listeners {
        let port = listen
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse::<u16>().ok());
        if section.active() && enabled && port == Some(section.transparent_port) {
            return Err(problem(
                path.key("transparent_port"),
                format!(
                    "{} is also the port of {name}; the listeners need distinct ports",
                    section.transparent_port
                ),
            ));
        }
    }
    if section.mark == 0 {
        return Err(problem(
            path.key("mark"),
            "must not be 0: unmarked sockets are the ones the kernel programs redirect",
        ));
    }
    if !section.dns_upstream.is_empty()
        && section
            .dns_upstream
            .parse::<std::net::SocketAddr>()
            .is_err()
    {
        return Err(problem(
            path.key("dns_upstream"),
            format!(
                "{:?} is not ip:port, such as 10.0.0.2:53 or [fd00::53]:53 (empty means the first nameserver of /etc/resolv.conf)",
                section.dns_upstream
            ),
        ));
    }
    if !section.pin_path.starts_with('/') {
        return Err(problem(
            path.key("pin_path"),
            format!("{:?} is not an absolute path", section.pin_path),
        ));
    }
    for (i, cgroup) in section.cgroups.iter().enumerate() {
        if !cgroup.starts_with('/') {
            return Err(problem(
                path.key("cgroups").index(i),
                format!("{cgroup:?} is not an absolute path to a cgroup v2 directory"),
            ));
        }
    }
    if section.peek_timeout_ms == 0 || section.peek_timeout_ms > 60_000 {
        return Err(problem(
            path.key("peek_timeout_ms"),
            format!(
                "{} is outside 1 to 60000 milliseconds",
                section.peek_timeout_ms
            ),
        ));
    }
    for (i, rule) in section.allow.iter().enumerate() {
        let rule_path = path.key("allow").index(i);
        match (rule.cidr.trim().is_empty(), rule.host.trim().is_empty()) {
            (true, true) => {
                return Err(problem(
                    rule_path,
                    "an allow rule needs a destination: cidr (10.0.0.5/32) or host (db.internal)",
                ))
            }
            (false, false) => {
                return Err(problem(
                    rule_path.key("host"),
                    "give either cidr or host, not both",
                ))
            }
            (false, true) => {
                parse_cidr(&rule.cidr).map_err(|m| problem(rule_path.key("cidr"), m))?;
            }
            (true, false) => {
                let host = rule.host.trim();
                if host.contains(['/', ':']) && host.parse::<IpAddr>().is_err() {
                    return Err(problem(
                        rule_path.key("host"),
                        format!("{host:?} is not a host name or an IP address (ranges go in cidr; the port in port)"),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn regex(pattern: &str, path: FieldPath) -> Result<(), Problem> {
    if pattern.is_empty() {
        return Err(problem(path, "empty regex"));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(10 * 1024 * 1024)
        .build()
        .map(|_| ())
        .map_err(|e| {
            let text = e.to_string();
            let reason = text
                .lines()
                .find_map(|l| l.strip_prefix("error: "))
                .unwrap_or(&text)
                .trim()
                .to_string();
            problem(path, format!("invalid regex {pattern:?}: {reason}"))
        })
}

/// Checks `host:port` (host may be empty, a name, an IPv4 or a bracketed IPv6 address).
fn listen_address(addr: &str, path: FieldPath, optional: bool) -> Result<(), Problem> {
    if addr.is_empty() && optional {
        return Ok(());
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(problem(
            path,
            format!("invalid listen address {addr:?}: expected host:port, e.g. 127.0.0.1:8888"),
        ));
    };
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(problem(path, format!("invalid listen address {addr:?}: write IPv6 addresses in brackets, e.g. [::1]:8888")));
    }
    let port: u64 = port.parse().map_err(|_| {
        problem(
            path.clone(),
            format!("invalid listen address {addr:?}: the port {port:?} is not a number"),
        )
    })?;
    if port > 65_535 {
        return Err(problem(
            path,
            format!("port {port} is out of range (0-65535; 0 picks a free port)"),
        ));
    }
    Ok(())
}

/// Checks an MCP upstream: an absolute `http://` or `https://` URL with a host, no
/// credentials and no fragment. Shared by the config and `--mcp-upstream`.
///
/// # Errors
/// What is wrong with it, in words a user can act on.
pub fn mcp_upstream_url(upstream: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(upstream.trim()).map_err(|e| {
        format!("{upstream:?} is not a URL ({e}); expected e.g. http://127.0.0.1:3000/mcp")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{upstream:?}: the MCP upstream must be http:// or https://, not {}://",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{upstream:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{upstream:?} carries credentials; use mcp_reverse_proxy.auth_token or the client's Authorization header"
        ));
    }
    if url.fragment().is_some() {
        return Err(format!(
            "{upstream:?} has a #fragment, which HTTP never sends"
        ));
    }
    Ok(url)
}

/// Parses `addr/prefix` and returns the prefix length.
fn parse_cidr(cidr: &str) -> Result<u8, String> {
    let (addr, prefix) = cidr
        .split_once('/')
        .ok_or_else(|| format!("{cidr:?} is not a CIDR such as 10.0.0.0/8"))?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{cidr:?}: {addr:?} is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    prefix
        .parse::<u8>()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("{cidr:?}: the prefix length must be 0 to {max}"))
}

/// A Go duration: one or more `<number><unit>` with units ns, us, µs, ms, s, m, h.
fn is_go_duration(text: &str) -> bool {
    parse_go_duration(text).is_some()
}

/// Parses a Go duration (`24h`, `90m`, `1h30m`, `1.5h`, `300ms`); `None` when malformed.
pub fn parse_go_duration(text: &str) -> Option<std::time::Duration> {
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    let mut seconds = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest.get(..digits).filter(|d| !d.is_empty())?.parse().ok()?;
        rest = &rest[digits..];
        let (unit, scale) = [
            ("ns", 1e-9),
            ("us", 1e-6),
            ("µs", 1e-6),
            ("ms", 1e-3),
            ("s", 1.0),
            ("m", 60.0),
            ("h", 3600.0),
        ]
        .into_iter()
        .filter(|(u, _)| rest.starts_with(*u))
        .max_by_key(|(u, _)| u.len())?;
        rest = &rest[unit.len()..];
        seconds += value * scale;
    }
    std::time::Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        for ok in ["24h", "90m", "1h30m", "1.5h", "300ms", "10s"] {
            assert!(is_go_duration(ok), "{ok}");
        }
        assert_eq!(
            parse_go_duration("1h30m"),
            Some(std::time::Duration::from_secs(5400))
        );
        assert_eq!(
            parse_go_duration("300ms"),
            Some(std::time::Duration::from_millis(300))
        );
        assert_eq!(
            parse_go_duration("24h"),
            Some(std::time::Duration::from_secs(86_400))
        );
        for bad in ["", "24", "h", "1d", "1h-"] {
            assert!(!is_go_duration(bad), "{bad}");
        }
    }

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("10.0.0.0/8"), Ok(8));
        assert_eq!(parse_cidr("::1/128"), Ok(128));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("10.0.0.0").is_err());
        assert!(parse_cidr("nope/8").is_err());
    }
}
