//! Logging and Prometheus metrics.
pub mod metrics;
pub use metrics::Metrics;
