//! Front doors: the listeners that turn traffic into things to inspect.
//!
//! The main listener (port 8888 by default, `fetch_proxy.listen`) serves Pipelock's own
//! endpoints, `/health` and `/metrics`, and the forward proxy: absolute-URI HTTP requests and
//! CONNECT tunnels ([`forward`]).

pub mod dns;
pub mod endpoints;
pub mod forward;
mod killswitch_api;
pub mod listener;
pub mod response;
mod rewake;
pub mod transparent;

pub use listener::{serve, Listener, ServerState};
