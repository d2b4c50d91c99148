//! Server → client messages: `tools/list` answers (poisoning, drift, the pinned inventory) and
//! injection in everything else the model will read — tool results, resources, prompts,
//! sampling requests, notifications and errors.

use serde_json::Value;

use super::drift::{canonical_json, diff_summary};
use super::inspection::{self, Inspection, Peer, Reply};
use super::session::{Session, MAX_TOOLS};
use super::strings::leaves;
use super::McpScanner;
use crate::config::Severity;
use crate::mcp::jsonrpc::code::RESPONSE_BLOCKED;
use crate::mcp::jsonrpc::{self, Message};
use crate::policy::Judgement;
use crate::scan::{Finding, ScannerKind};

impl McpScanner {
    /// Inspects a message the server sends (one message or a batch). `answers` is the
    /// request a response answers when the transport knows it; otherwise the session's
    /// tracker finds it by id. In a batch, only the elements that block are replaced by
    /// errors.
    pub fn server_message(
        &self,
        session: &mut Session,
        answers: Option<&Value>,
        message: &Value,
    ) -> Inspection {
        let items = match jsonrpc::elements(message) {
            Ok(items) => items,
            Err(error) => return self.unparseable(Peer::Server, &error),
        };
        let mut classified = Vec::with_capacity(items.len());
        for item in &items {
            match Message::classify(item) {
                Ok(m) => classified.push((*item, m)),
                Err(error) => return self.unparseable(Peer::Server, &error),
            }
        }
        if !message.is_array() {
            let (value, parsed) = classified[0];
            return self.server_one(session, answers, value, parsed);
        }
        let mut judgement = Judgement::default();
        let mut replaced = Vec::with_capacity(classified.len());
        let mut stripped_any = false;
        for (value, parsed) in classified {
            let answered = answers.and_then(|a| matching_request(a, parsed.id()));
            let inspection = self.server_one(session, answered, value, parsed);
            match &inspection {
                Inspection::Strip { message, .. } => {
                    stripped_any = true;
                    replaced.push(message.clone());
                }
                Inspection::Block(blocked) => {
                    // A server request or notification inside a batch is dropped.
                    if let Some(Reply {
                        to: Peer::Client,
                        message,
                    }) = &blocked.reply
                    {
                        replaced.push(message.clone());
                    }
                }
                _ => replaced.push(value.clone()),
            }
            inspection.merge_into(&mut judgement);
        }
        if stripped_any && judgement.block.is_none() {
            return Inspection::Strip {
                message: Value::Array(replaced),
                findings: judgement.warnings,
            };
        }
        Inspection::from_judgement(judgement, RESPONSE_BLOCKED, "response", |_| {
            Some(Reply {
                to: Peer::Client,
                message: Value::Array(replaced),
            })
        })
    }

    /// Bytes from the server that are not a JSON-RPC message: blocked (the client gets a
    /// -32700 error), except in audit mode or with `enforce: false`.
    #[must_use]
    pub fn server_parse_error(&self, raw: &[u8]) -> Inspection {
        let Err(error) = jsonrpc::validate(raw) else {
            return Inspection::Allow;
        };
        self.unparseable(Peer::Server, &error)
    }

    fn server_one(
        &self,
        session: &mut Session,
        answers: Option<&Value>,
        value: &Value,
        message: Message<'_>,
    ) -> Inspection {
        let mut judgement = Judgement::default();
        let response_scan = self.enforcement(self.response_blocks);
        // The member of `value` replaced by its stripped copy (`response_scanning: strip`).
        let mut stripped: Option<(&str, Value)> = None;
        let reply = match message {
            Message::Result { id, result } => {
                let method = answered_method(session, answers, id);
                if method.as_deref() == Some("tools/list") {
                    self.tools_list(session, result, &mut judgement);
                    // The listing's other fields (nextCursor, _meta) still reach the model.
                    if let Some(map) = result.as_object() {
                        for (key, value) in map.iter().filter(|(k, _)| *k != "tools") {
                            judgement.add_judged(self.injection_in(value, key), response_scan);
                        }
                    }
                } else {
                    if method.is_none() {
                        judgement.add_judged(vec![unsolicited(id)], response_scan);
                    }
                    stripped = self
                        .judge_part(result, "result", &mut judgement)
                        .map(|copy| ("result", copy));
                }
                Some((Peer::Client, id))
            }
            Message::Error { id, error } => {
                answered_method(session, answers, id);
                stripped = self
                    .judge_part(error, "error", &mut judgement)
                    .map(|copy| ("error", copy));
                Some((Peer::Client, id))
            }
            // sampling/createMessage, elicitation/create, …: the server asks the client's
            // model something; a refusal goes back to the server.
            Message::Request { id, params, .. } => {
                if let Some(params) = params {
                    stripped = self
                        .judge_part(params, "params", &mut judgement)
                        .map(|copy| ("params", copy));
                }
                Some((Peer::Server, id))
            }
            Message::Notification { params, .. } => {
                if let Some(params) = params {
                    stripped = self
                        .judge_part(params, "params", &mut judgement)
                        .map(|copy| ("params", copy));
                }
                None
            }
        };
        if let (Some((member, copy)), None) = (stripped, &judgement.block) {
            let mut message = value.clone();
            if let Some(object) = message.as_object_mut() {
                object.insert(member.to_string(), copy);
            }
            return Inspection::Strip {
                message,
                findings: judgement.warnings,
            };
        }
        // The tool whose result this is, when the transport knows the tools/call it answers.
        let tool = answers
            .filter(|request| request.get("method").and_then(Value::as_str) == Some("tools/call"))
            .and_then(|request| request.pointer("/params/name"))
            .and_then(Value::as_str);
        Inspection::from_judgement(judgement, RESPONSE_BLOCKED, "response", |error| {
            reply.map(|(to, id)| Reply {
                to,
                message: inspection::error_reply(id, error),
            })
        })
        .naming_tool(tool)
    }

    /// Judges injection in `part` (a member of a server message, named `root`). With
    /// `response_scanning.action: strip`, matches are cut out of its strings where they
    /// can be: when nothing that blocks is left, the findings only warn and the stripped copy
    /// is returned to be sent instead; what cannot be cut out (seen only in a normalized or
    /// decoded view) still blocks, as in the forward proxy.
    fn judge_part(&self, part: &Value, root: &str, judgement: &mut Judgement) -> Option<Value> {
        let findings = self.injection_in(part, root);
        let scan = self.enforcement(self.response_blocks);
        if self.response_strip && !findings.is_empty() {
            let mut copy = part.clone();
            if strip_strings(&mut copy, &|text| self.scanner.strip_inbound(text)) {
                let mut after = Judgement::default();
                after.add_judged(self.injection_in(&copy, root), scan);
                if after.block.is_none() {
                    judgement.add_judged(findings, self.enforcement(false));
                    return Some(copy);
                }
            }
        }
        judgement.add_judged(findings, scan);
        None
    }

    /// Injection in every string value of `value` (not keys: a response's shape is the
    /// server's, its text is what the model reads). Nothing when `response_scanning` is off.
    fn injection_in(&self, value: &Value, root: &str) -> Vec<Finding> {
        let mut findings: Vec<Finding> = Vec::new();
        for leaf in leaves(value, root).into_iter().filter(|l| !l.is_key) {
            for mut finding in self.scanner.scan_inbound(leaf.text) {
                if !findings.iter().any(|f| f.rule_id == finding.rule_id) {
                    finding.preview = format!("at {}: {}", leaf.path, finding.preview);
                    findings.push(finding);
                }
            }
        }
        findings
    }

    /// A `tools/list` answer: poisoning and drift per tool, then the inventory.
    fn tools_list(&self, session: &mut Session, result: &Value, judgement: &mut Judgement) {
        let tools: &[Value] = result
            .get("tools")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        let section = self.enforcement(self.tools_block);
        let first_listing = session.baseline.is_none() || session.baseline_open;
        // Each listed tool with its definition as compact JSON (see `Session::tools`).
        let mut listed: Vec<(&str, Box<[u8]>)> = Vec::with_capacity(tools.len());
        let mut scratch = Vec::with_capacity(4096);
        for tool in tools {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                continue;
            };
            scratch.clear();
            canonical_json(tool, &mut scratch);
            let text: Box<[u8]> = scratch.as_slice().into();
            judgement.add_judged(self.poison.scan_tool(tool), section);
            if self.detect_drift {
                let changed = session
                    .tools
                    .get(name)
                    .filter(|previous| ***previous != *text);
                if let Some(previous) = changed.and_then(|p| serde_json::from_slice(p).ok()) {
                    let changes = diff_summary(&previous, tool);
                    if !changes.is_empty() {
                        judgement.add_judged(vec![drift(name, &changes)], section);
                    }
                }
            }
            listed.push((name, text));
        }
        let added: Vec<&str> = match &session.baseline {
            Some(baseline) if !first_listing => listed
                .iter()
                .map(|(name, _)| *name)
                .filter(|name| !baseline.contains(*name))
                .collect(),
            _ => Vec::new(),
        };
        if self.binding_enabled {
            for name in &added {
                judgement.add_judged(
                    vec![Finding {
                        rule_id: "session_binding.tool_added".into(),
                        rule_name: "Tool Added After the Session's First tools/list".into(),
                        scanner: ScannerKind::SessionBinding,
                        severity: Severity::Low,
                        span: 0..0,
                        view: "session",
                        preview: format!("tool {name:?}"),
                    }],
                    self.enforcement(false),
                );
            }
        }
        // A listing the client does not get changes nothing: a blocked poisoned tool must not
        // become callable, and a blocked rug pull must not become the reference that the
        // next listing is compared with.
        if judgement.block.is_some() {
            if first_listing {
                // The client was shown no tools: every call is to a tool it was not offered.
                session.baseline.get_or_insert_with(Default::default);
                session.baseline_open = false;
            }
            return;
        }
        let names: Vec<&str> = listed.iter().map(|(name, _)| *name).collect();
        for (name, text) in listed {
            let room = session.tools.len() < MAX_TOOLS;
            match session.tools.get_mut(name) {
                Some(previous) if **previous == *text => {}
                Some(previous) => *previous = text,
                None if room => {
                    session.tools.insert(name.to_string(), text);
                }
                None => {}
            }
        }
        let more_pages = result.get("nextCursor").is_some_and(|c| !c.is_null());
        if first_listing {
            session
                .baseline
                .get_or_insert_with(Default::default)
                .extend(names.into_iter().map(str::to_string));
            session.baseline_open = more_pages;
        } else if let Some(baseline) = session.baseline.as_mut() {
            for name in added {
                if baseline.len() < MAX_TOOLS {
                    baseline.insert(name.to_string());
                }
            }
        }
    }
}

/// The method of the request a response answers: the given request's, or the tracked one's.
/// The tracked entry is consumed either way.
fn answered_method(session: &mut Session, answers: Option<&Value>, id: &Value) -> Option<String> {
    let tracked = session.take_request(id).map(|p| p.method);
    answers
        .and_then(|a| a.get("method"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or(tracked)
}

/// In a batch of requests, the one with this id.
fn matching_request<'a>(answers: &'a Value, id: Option<&Value>) -> Option<&'a Value> {
    let id = id?;
    match answers {
        Value::Array(items) => items.iter().find(|r| r.get("id") == Some(id)),
        single => (single.get("id") == Some(id)).then_some(single),
    }
}

fn drift(name: &str, changes: &[String]) -> Finding {
    Finding {
        rule_id: "tool_drift.definition_changed".into(),
        rule_name: "Tool Definition Changed Within the Session".into(),
        scanner: ScannerKind::ToolDrift,
        severity: Severity::High,
        span: 0..0,
        view: "tool_definition",
        preview: format!("tool {name:?}: {}", changes.join("; ")),
    }
}

fn unsolicited(id: &Value) -> Finding {
    Finding {
        rule_id: "protocol.unsolicited_response".into(),
        rule_name: "Response to a Request Never Seen".into(),
        scanner: ScannerKind::Protocol,
        severity: Severity::Low,
        span: 0..0,
        view: "session",
        preview: format!("id {id}"),
    }
}

/// Replaces every string value (not key) of `value` that `strip` changes; whether any changed.
fn strip_strings(value: &mut Value, strip: &dyn Fn(&str) -> Option<String>) -> bool {
    match value {
        Value::String(text) => match strip(text) {
            Some(stripped) => {
                *text = stripped;
                true
            }
            None => false,
        },
        Value::Array(items) => {
            // Every item is visited: a short-circuiting `any` would leave later ones unstripped.
            let mut changed = false;
            for item in items.iter_mut() {
                changed |= strip_strings(item, strip);
            }
            changed
        }
        Value::Object(map) => {
            let mut changed = false;
            for item in map.values_mut() {
                changed |= strip_strings(item, strip);
            }
            changed
        }
        _ => false,
    }
}
