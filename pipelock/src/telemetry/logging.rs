//! Logging: the `logging` config section turned into a `tracing` subscriber.
//!
//! `format` picks JSON (one object per line, for log pipelines) or human-readable text;
//! `output` picks stdout, a file (appended, created with mode 0600 because audit events can name
//! destinations), or both. The level comes from `PIPELOCK_LOG` (an `EnvFilter` directive such as
//! `debug` or `pipelock=debug`), and defaults to `info`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogOutput, Logging};

/// Environment variable holding the log filter directive.
pub const LOG_FILTER_ENV: &str = "PIPELOCK_LOG";

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("logging.output is {output} but logging.file is empty: set logging.file to a path")]
    MissingFile { output: &'static str },
    #[error("cannot open log file {path}: {source}")]
    OpenFile { path: PathBuf, source: io::Error },
    #[error("invalid {LOG_FILTER_ENV} filter {value:?}: {message}")]
    Filter { value: String, message: String },
    #[error("a global logger is already installed")]
    AlreadyInstalled,
}

/// Installs the global `tracing` subscriber described by `logging`.
///
/// # Errors
/// Fails when the log file cannot be opened, when `output` needs a file but none is named, or
/// when the `PIPELOCK_LOG` filter does not parse.
pub fn init_logging(logging: &Logging) -> Result<(), LoggingError> {
    install(logging, false)
}

/// [`init_logging`], with stderr in place of stdout: for commands whose stdout carries a
/// protocol (`pipelock mcp proxy`).
///
/// # Errors
/// As [`init_logging`].
pub fn init_logging_stderr(logging: &Logging) -> Result<(), LoggingError> {
    install(logging, true)
}

fn install(logging: &Logging, stderr: bool) -> Result<(), LoggingError> {
    let filter = match std::env::var(LOG_FILTER_ENV) {
        Ok(value) if !value.trim().is_empty() => {
            EnvFilter::try_new(&value).map_err(|e| LoggingError::Filter {
                value,
                message: e.to_string(),
            })?
        }
        _ => EnvFilter::new("info"),
    };
    let writer = make_writer(logging, stderr)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(true);
    let result = match logging.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    result.map_err(|_| LoggingError::AlreadyInstalled)
}

fn make_writer(logging: &Logging, stderr: bool) -> Result<BoxMakeWriter, LoggingError> {
    Ok(match (logging.output, stderr) {
        (LogOutput::Stdout, false) => BoxMakeWriter::new(io::stdout),
        (LogOutput::Stdout, true) => BoxMakeWriter::new(io::stderr),
        (LogOutput::File, _) => BoxMakeWriter::new(open_log_file(logging, "file")?),
        (LogOutput::Both, false) => {
            BoxMakeWriter::new(io::stdout.and(open_log_file(logging, "both")?))
        }
        (LogOutput::Both, true) => {
            BoxMakeWriter::new(io::stderr.and(open_log_file(logging, "both")?))
        }
    })
}

fn open_log_file(logging: &Logging, output: &'static str) -> Result<Arc<File>, LoggingError> {
    if logging.file.trim().is_empty() {
        return Err(LoggingError::MissingFile { output });
    }
    let path = PathBuf::from(&logging.file);
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .map(Arc::new)
        .map_err(|source| LoggingError::OpenFile { path, source })
}
