//! The async runtime of the serving commands (`run`, `mcp proxy`): one worker per core, or as
//! many as `TOKIO_WORKER_THREADS` says.

use anyhow::{bail, Context};

/// The variable tokio reads for its worker count.
const WORKER_THREADS: &str = "TOKIO_WORKER_THREADS";

/// A multi-thread runtime with every driver. `TOKIO_WORKER_THREADS`, when set, must be a whole
/// number of at least 1 (tokio itself would panic on anything else).
///
/// # Errors
/// The variable is set to something else, or the runtime cannot start.
pub fn multi_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(value) = std::env::var_os(WORKER_THREADS) {
        builder.worker_threads(worker_threads(&value.to_string_lossy())?);
    }
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn worker_threads(value: &str) -> anyhow::Result<usize> {
    match value.trim().parse::<usize>() {
        Ok(count) if count >= 1 => Ok(count),
        _ => bail!("{WORKER_THREADS} must be a whole number of worker threads, at least 1; it is {value:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_threads_must_be_a_positive_whole_number() {
        assert_eq!(worker_threads("1").ok(), Some(1));
        assert_eq!(worker_threads(" 4 ").ok(), Some(4));
        for bad in ["", "0", "-1", "two", "1.5"] {
            let error = worker_threads(bad).expect_err(bad).to_string();
            assert!(error.contains("TOKIO_WORKER_THREADS"), "{error}");
        }
    }
}
