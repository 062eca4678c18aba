//! Errors of the remediation brain: a configuration that cannot be used, or
//! inputs that do not fit together. Each names the file, key path and value.

use std::path::PathBuf;

/// One thing wrong with a configuration: where, what, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `targets[2].max_replicas` (`targets[cart]` names a target).
    pub path: String,
    /// The offending value as written.
    pub value: String,
    /// What is wrong and what would be right.
    pub why: String,
}

impl Problem {
    /// A problem at `path` with `value`.
    pub fn new(path: impl Into<String>, value: impl ToString, why: impl Into<String>) -> Self {
        Self { path: path.into(), value: value.to_string(), why: why.into() }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {}: {}", self.path, self.value, self.why)
    }
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is not valid TOML or does not have the expected shape
    /// (unknown key, wrong type); the message has the line and column.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The parser's message, with line, column and key.
        message: String,
    },

    /// The configuration parsed but some values cannot be used.
    #[error("{}: invalid configuration:\n{}", path.display(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Every problem found (not only the first).
        problems: Vec<Problem>,
    },

    /// A forecast or sample input that the detectors cannot use.
    #[error("{series}: {why}")]
    Input {
        /// `entity:metric`.
        series: String,
        /// What is wrong.
        why: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
