//! Logging and Prometheus metrics.
