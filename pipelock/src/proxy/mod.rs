//! Front doors: the listeners that turn traffic into things to inspect.
//!
//! Today the main listener (port 8888 by default, `fetch_proxy.listen`) serves Pipelock's own
//! endpoints, `/health` and `/metrics`. Forward proxying (absolute-URI requests and CONNECT)
//! arrives with the forward proxy; until then such requests are refused with a well-formed
//! error, never passed through unscanned.

pub mod endpoints;
pub mod listener;
pub mod response;

pub use listener::{serve, Listener, ServerState};
