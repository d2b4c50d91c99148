//! Telemetry: what Pipelock tells its operator.
//!
//! `logging` turns the `logging` config section into a `tracing` subscriber (json or text, to
//! stdout, a file or both); `metrics` owns every Prometheus metric name, so the names live in one
//! place and `/metrics` renders them.

pub mod logging;
pub mod metrics;

pub use logging::{init_logging, init_logging_stderr, LoggingError};
pub use metrics::Metrics;
