//! Client → server messages: input scanning of every request, notification and response the
//! client sends, and for `tools/call` the session binding, the tool policy and the chains.

use std::time::Instant;

use serde_json::Value;

use super::inspection::{self, Inspection, Peer, Redirected, Reply};
use super::session::Session;
use super::strings::leaves;
use super::McpScanner;
use crate::config::Severity;
use crate::mcp::jsonrpc::code::REQUEST_BLOCKED;
use crate::mcp::jsonrpc::{self, Message};
use crate::policy::Judgement;
use crate::scan::{Finding, ScannerKind};

/// Argument keys whose values are commands, read with the shell scanner whatever the tool.
const COMMAND_KEYS: &[&str] = &[
    "command",
    "cmd",
    "script",
    "shell",
    "commandline",
    "command_line",
    "bash",
    "exec",
    "args",
    "argv",
];

impl McpScanner {
    /// Inspects a message the client sends (one message or a batch). A batch is judged as a
    /// whole: if any element blocks (or would be redirected), the batch is blocked and every
    /// request in it gets the error.
    pub fn client_message(&self, session: &mut Session, message: &Value) -> Inspection {
        let items = match jsonrpc::elements(message) {
            Ok(items) => items,
            Err(error) => return self.unparseable(Peer::Client, &error),
        };
        let mut classified = Vec::with_capacity(items.len());
        for item in &items {
            match Message::classify(item) {
                Ok(m) => classified.push((*item, m)),
                Err(error) => return self.unparseable(Peer::Client, &error),
            }
        }
        if !message.is_array() {
            let (value, parsed) = classified[0];
            return self.client_one(session, value, parsed);
        }
        let mut judgement = Judgement::default();
        let mut ids = Vec::new();
        for (value, parsed) in classified {
            if let Some(id) = parsed
                .id()
                .filter(|_| matches!(parsed, Message::Request { .. }))
            {
                ids.push(id.clone());
            }
            self.client_one(session, value, parsed)
                .merge_into(&mut judgement);
        }
        Inspection::from_judgement(judgement, REQUEST_BLOCKED, "request", |error| {
            (!ids.is_empty()).then(|| Reply {
                to: Peer::Client,
                message: Value::Array(
                    ids.iter()
                        .map(|id| inspection::error_reply(id, error))
                        .collect(),
                ),
            })
        })
    }

    fn client_one(&self, session: &mut Session, value: &Value, message: Message<'_>) -> Inspection {
        let mut judgement = Judgement::default();
        let (payload, method) = match message {
            Message::Request { id, method, params } => {
                session.track_request(id, method);
                (params, Some(method))
            }
            Message::Notification { method, params } => (params, Some(method)),
            Message::Result { result, .. } => (Some(result), None),
            Message::Error { error, .. } => (Some(error), None),
        };
        let call = match (method, payload) {
            (Some("tools/call"), Some(params)) => params
                .get("name")
                .and_then(Value::as_str)
                .map(|name| (name, params.get("arguments"))),
            _ => None,
        };
        if let Some(payload) = payload {
            let findings = self.scan_input(payload, call.map(|(name, _)| name));
            judgement.add_judged(findings, self.enforcement(self.input_blocks));
        }
        let mut redirect = None;
        if let Some((tool, arguments)) = call {
            self.bind(session, tool, &mut judgement);
            let outcome = self.policy.evaluate(tool, arguments);
            for (finding, blocks) in outcome.findings {
                judgement.add_judged(vec![finding], self.enforcement(blocks));
            }
            redirect = outcome.redirect;
            if let Some(chains) = &self.chains {
                for (finding, blocks) in
                    chains.record(&mut session.chain, tool, arguments, Instant::now())
                {
                    judgement.add_judged(vec![finding], self.enforcement(blocks));
                }
            }
        }
        let id = message
            .id()
            .filter(|_| matches!(message, Message::Request { .. }));
        if judgement.block.is_none() {
            if let (Some(profile), true) = (redirect, self.enforcing()) {
                if self.redirect_profiles.contains_key(&profile) {
                    let output_schema =
                        call.and_then(|(tool, _)| session.tool(tool))
                            .and_then(|mut definition| {
                                definition.get_mut("outputSchema").map(Value::take)
                            });
                    return Inspection::Redirect(Redirected {
                        profile,
                        request: value.clone(),
                        output_schema,
                        findings: judgement.warnings,
                    });
                }
                judgement.block = Some(Finding::unscannable(
                    "tool_policy.redirect_profile_missing",
                    format!("Redirect profile {profile:?} is not defined"),
                    ScannerKind::ToolPolicy,
                ));
            }
        }
        Inspection::from_judgement(judgement, REQUEST_BLOCKED, "request", |error| {
            id.map(|id| Reply {
                to: Peer::Client,
                message: inspection::error_reply(id, error),
            })
        })
        .naming_tool(call.map(|(tool, _)| tool))
    }

    /// DLP, injection and (for command-like arguments or shell-like tools) shell findings in
    /// every string of `payload`, keys included.
    fn scan_input(&self, payload: &Value, tool: Option<&str>) -> Vec<Finding> {
        let shell_tool = tool
            .is_some_and(|t| matches!(super::chains::classify_name(t), Some("exec" | "persist")));
        let mut findings: Vec<Finding> = Vec::new();
        for leaf in leaves(payload, "") {
            let mut found = self.scanner.scan_outbound(leaf.text);
            found.extend(self.injection.scan(leaf.text));
            let key = object_key(&leaf.path);
            let command_like = !leaf.is_key
                && (shell_tool || COMMAND_KEYS.contains(&key.to_ascii_lowercase().as_str()));
            if command_like {
                found.extend(self.scanner.scan_shell(leaf.text));
            }
            for mut finding in found {
                if !findings.iter().any(|f| f.rule_id == finding.rule_id) {
                    finding.preview = format!("at {}: {}", leaf.path, finding.preview);
                    findings.push(finding);
                }
            }
        }
        findings
    }

    /// Session binding: a call before any `tools/list`, or to a tool not in the pinned
    /// inventory.
    fn bind(&self, session: &Session, tool: &str, judgement: &mut Judgement) {
        if !self.binding_enabled {
            return;
        }
        let (rule_id, rule_name, blocks) = match session.baseline() {
            None => (
                "session_binding.no_baseline",
                "Tool Call Before Any tools/list",
                self.no_baseline_blocks,
            ),
            Some(known) if !known.contains(tool) => (
                "session_binding.unknown_tool",
                "Call to a Tool Outside the Session's Inventory",
                self.unknown_tool_blocks,
            ),
            Some(_) => return,
        };
        let finding = Finding {
            rule_id: rule_id.to_string(),
            rule_name: rule_name.to_string(),
            scanner: ScannerKind::SessionBinding,
            severity: Severity::High,
            span: 0..0,
            view: "session",
            preview: format!("tool {tool:?}"),
        };
        judgement.add_judged(vec![finding], self.enforcement(blocks));
    }
}

/// The object key a leaf's path ends in, past any array indexes (`argv[2]` → `argv`), so
/// that the elements of a command array are read as command text.
fn object_key(path: &str) -> &str {
    let mut rest = path;
    while rest.ends_with(']') {
        match rest.rfind('[') {
            Some(open) => rest = &rest[..open],
            None => break,
        }
    }
    rest.rsplit('.').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::object_key;

    #[test]
    fn the_key_of_an_array_element_is_its_array_s() {
        assert_eq!(object_key("command"), "command");
        assert_eq!(object_key("opts.cmd"), "cmd");
        assert_eq!(object_key("argv[2]"), "argv");
        assert_eq!(object_key("opts.args[0][1]"), "args");
        assert_eq!(object_key("[3]"), "");
    }
}
