//! Pipelock: a security proxy for AI agents.
//!
//! The crate is laid out as in `DESIGN.md`: `config` reads and validates the YAML the reference
//! Pipelock uses, `intercept` loads and attaches the eBPF programs, `proxy` holds the front doors,
//! `telemetry` the logging and Prometheus metrics, and `cli` the command-line edge.

pub mod cli;
pub mod config;
pub mod intercept;
pub mod killswitch;
pub mod mcp;
pub mod policy;
pub mod proxy;
pub mod scan;
pub mod telemetry;
pub mod tls;
