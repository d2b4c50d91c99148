//! The one error type of config loading. Its message is one line a user can act on:
//! `file:line:column: dotted.field.path: what is wrong`.

use std::fmt;
use std::io;

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read the config: {source}")]
    Read {
        file: String,
        #[source]
        source: io::Error,
    },
    /// The file was read but is not a valid config.
    #[error("{0}")]
    Invalid(Located),
}

/// A config problem at a place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted field path, such as `mcp_tool_policy.rules[1].redirect_profile`; empty for
    /// problems of the file as a whole (syntax, a second document).
    pub path: String,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl ConfigError {
    fn located(&self) -> Option<&Located> {
        match self {
            Self::Invalid(located) => Some(located),
            Self::Read { .. } => None,
        }
    }

    /// The 1-based line of the problem, when it has one.
    #[must_use]
    pub fn line(&self) -> Option<usize> {
        self.located().map(|l| l.line)
    }

    /// The 1-based column of the problem, when it has one.
    #[must_use]
    pub fn column(&self) -> Option<usize> {
        self.located().map(|l| l.column)
    }

    /// The dotted field path of the problem, when it has one.
    #[must_use]
    pub fn path(&self) -> Option<&str> {
        self.located().map(|l| l.path.as_str())
    }
}
