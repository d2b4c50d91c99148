//! The state of one MCP session: which client requests are still unanswered (so a response
//! is read as the answer to `tools/list` or `tools/call`), the tool definitions seen, the
//! pinned inventory (session binding), and the recent tool calls (chains). Every table is
//! bounded.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde_json::Value;

use super::chains::ChainWindow;

/// Most unanswered requests remembered; the oldest is forgotten first.
pub const MAX_PENDING: usize = 4096;
/// Most tool definitions remembered (as the reference's drift baseline cap).
pub const MAX_TOOLS: usize = 10_000;

/// A client request waiting for its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub method: String,
}

/// Per-session scanning state. One per MCP session (`Mcp-Session-Id`, or one stdio child).
#[derive(Debug, Default, Clone)]
pub struct Session {
    pending: HashMap<String, Pending>,
    pending_order: VecDeque<String>,
    /// Tool name → its latest definition as compact JSON. `serde_json` writes object keys
    /// sorted, so two definitions are the same value exactly when their texts are equal; and
    /// keeping a text costs one allocation per tool where a cloned `Value` costs one per node.
    pub(crate) tools: BTreeMap<String, Box<[u8]>>,
    /// The pinned inventory; `None` until the first `tools/list` answer.
    pub(crate) baseline: Option<BTreeSet<String>>,
    /// True while the first listing is still being paged (`nextCursor`): its pages join the
    /// baseline.
    pub(crate) baseline_open: bool,
    pub(crate) chain: ChainWindow,
}

/// The key of a JSON-RPC id (`1` and `"1"` are different ids).
fn id_key(id: &Value) -> String {
    id.to_string()
}

impl Session {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Remembers a client request so its response can be matched to it.
    pub fn track_request(&mut self, id: &Value, method: &str) {
        let key = id_key(id);
        if self
            .pending
            .insert(
                key.clone(),
                Pending {
                    method: method.to_string(),
                },
            )
            .is_none()
        {
            self.pending_order.push_back(key);
        }
        while self.pending.len() > MAX_PENDING {
            match self.pending_order.pop_front() {
                Some(oldest) => {
                    self.pending.remove(&oldest);
                }
                None => break,
            }
        }
    }

    /// The request `id` answers, forgotten once answered; `None` for an id never asked.
    pub fn take_request(&mut self, id: &Value) -> Option<Pending> {
        let key = id_key(id);
        let pending = self.pending.remove(&key)?;
        self.pending_order.retain(|k| *k != key);
        Some(pending)
    }

    /// The pinned tool names, if a baseline exists.
    #[must_use]
    pub fn baseline(&self) -> Option<&BTreeSet<String>> {
        self.baseline.as_ref()
    }

    /// The latest definition of a tool.
    #[must_use]
    pub fn tool(&self, name: &str) -> Option<Value> {
        self.tools
            .get(name)
            .and_then(|text| serde_json::from_slice(text).ok())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn requests_are_matched_once_and_bounded() {
        let mut session = Session::new();
        session.track_request(&json!(1), "tools/list");
        assert_eq!(session.take_request(&json!("1")), None);
        assert_eq!(
            session.take_request(&json!(1)).map(|p| p.method),
            Some("tools/list".to_string())
        );
        assert_eq!(session.take_request(&json!(1)), None);
        for i in 0..(MAX_PENDING + 10) {
            session.track_request(&json!(i), "ping");
        }
        assert_eq!(session.pending.len(), MAX_PENDING);
        assert_eq!(session.take_request(&json!(0)), None);
    }
}
