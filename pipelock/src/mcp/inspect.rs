//! The hook every MCP message passes through, in both directions, on every MCP front door.
//!
//! The transports call it synchronously, once per JSON-RPC message (each element of a batch
//! separately, each SSE event's `data` separately), before the message moves on. Scanning
//! lives behind this trait; the transports only carry out its [`Decision`].
//!
//! What a [`Decision::Replace`] does depends on what was replaced:
//! - a client **request** is not forwarded; the replacement (normally a JSON-RPC error or a
//!   synthetic result carrying the request's `id`) is the answer the client gets;
//! - a client **notification or response** is not forwarded and nothing is answered (JSON-RPC
//!   has no answer to them); the replacement value is ignored;
//! - a **server message** (response, request or notification, in a JSON body or an SSE event)
//!   is delivered to the client as the replacement instead;
//! - [`Decision::AnswerServer`] is for a **server request** (such as `sampling/createMessage`)
//!   withheld from the client: the client gets nothing (an SSE event keeps its `id:` line, so
//!   resumption still works), and the value, a JSON-RPC response to the request, goes to the
//!   server in the client's name (a POST on the client's session, or a line on the stdio
//!   server's stdin), so the server does not wait for an answer that never comes;
//! - an **unparsable payload** ([`McpInspector::unparsable`]): from the client, the replacement
//!   is the answer and nothing is forwarded; from the server, the client gets the replacement.

use serde_json::Value;

/// What to do with one message (or one unparsable payload).
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Relay it unchanged (byte for byte when nothing else in the same payload is replaced).
    Forward,
    /// Do not relay it; send this JSON value in its place (see the module documentation).
    Replace(Value),
    /// Do not relay this server request to the client; answer the server with this JSON-RPC
    /// response instead. From the client (where it has no meaning) it drops the message.
    AnswerServer(Value),
}

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the MCP client towards the MCP server.
    Client,
    /// From the MCP server towards the MCP client.
    Server,
}

impl Direction {
    /// The `direction` label of `pipelock_mcp_messages_total`.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Direction::Client => "client",
            Direction::Server => "server",
        }
    }
}

/// Inspects MCP traffic. Implementations keep their own per-session state, keyed by `session`:
/// the `Mcp-Session-Id` of the HTTP exchange (empty before the server has assigned one, and
/// for servers that do not use sessions), or `"stdio"` for the stdio wrapper.
pub trait McpInspector: Send + Sync {
    /// A message from the client: a request, a notification, or a response to a server
    /// request. `msg` is a JSON object; the transport does not check it further (a missing
    /// `jsonrpc` or `method` is for the inspector to judge).
    fn client_message(&self, session: &str, msg: &Value) -> Decision;

    /// A message from the server. `answers` is the client request it answers (matched by
    /// `id` within the same POST, or the stdio session), when it is a response to one.
    fn server_message(&self, session: &str, answers: Option<&Value>, msg: &Value) -> Decision;

    /// A payload that is not JSON-RPC: not JSON at all, or JSON that is neither an object nor
    /// a non-empty array of objects. `raw` is the payload as received, `error` says why it
    /// was not accepted. [`Decision::Forward`] relays it as it is.
    fn unparsable(&self, session: &str, direction: Direction, raw: &[u8], error: &str) -> Decision;

    /// The session ended (a DELETE the server accepted, or the stdio child exited).
    fn session_closed(&self, session: &str) {
        let _ = session;
    }
}

/// Relays everything unchanged: the transport without scanning.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassThrough;

impl McpInspector for PassThrough {
    fn client_message(&self, _session: &str, _msg: &Value) -> Decision {
        Decision::Forward
    }

    fn server_message(&self, _session: &str, _answers: Option<&Value>, _msg: &Value) -> Decision {
        Decision::Forward
    }

    fn unparsable(
        &self,
        _session: &str,
        _direction: Direction,
        _raw: &[u8],
        _error: &str,
    ) -> Decision {
        Decision::Forward
    }
}
