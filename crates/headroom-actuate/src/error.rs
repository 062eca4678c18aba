//! Errors of the actuation edge. Every variant names the file and what
//! failed, and says what to do.

use std::path::PathBuf;

/// What went wrong while writing the audit log or acting on a target.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read, written, synced or renamed.
    #[error("{}: could not {what}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done (`append to the audit log`, `rotate`, …).
        what: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// Another process (or another handle in this one) has the log open.
    #[error(
        "{}: the audit log is already open for writing (lock {} is held); run one headroom writer per log, or give this one its own `audit_log` path",
        path.display(),
        lock.display()
    )]
    Locked {
        /// The audit log.
        path: PathBuf,
        /// The lock file beside it.
        lock: PathBuf,
    },

    /// The options cannot be used.
    #[error("{}: audit log options: {why}", path.display())]
    Options {
        /// The audit log.
        path: PathBuf,
        /// What is wrong and what would be right.
        why: String,
    },

    /// The write was refused because it would break the log's guarantees
    /// (doing something twice, an outcome without an intent, …).
    #[error("{}: refused to record decision {id}: {why}", path.display())]
    Refused {
        /// The audit log.
        path: PathBuf,
        /// The decision id.
        id: String,
        /// Why, and what to do instead.
        why: String,
    },

    /// A record could not be turned into a line that reads back.
    #[error("{}: decision {id} cannot be written as a record that reads back: {source}", path.display())]
    Encode {
        /// The audit log.
        path: PathBuf,
        /// The decision id.
        id: String,
        /// The JSON error (e.g. a non-finite number in the evidence).
        source: serde_json::Error,
    },

    /// An actuator could not read or change its target (the platform's
    /// answer, with the object it was about).
    #[error("{actuator}: {target}: {why}")]
    Actuator {
        /// Which actuator (`systemd`, `kubernetes`, `process`, `windows`, `dry-run`).
        actuator: String,
        /// The target (name, unit, object path).
        target: String,
        /// What the platform said, and what to do.
        why: String,
    },

    /// An earlier write failed and the partial line could not be removed;
    /// appending more could corrupt the next record.
    #[error(
        "{}: an earlier write failed and could not be undone; fix the cause (disk full?) and reopen the log, which repairs it",
        path.display()
    )]
    Poisoned {
        /// The audit log.
        path: PathBuf,
    },
}

impl Error {
    /// Maps an IO error on `path` while doing `what`.
    pub(crate) fn io(path: impl Into<PathBuf>, what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, what, source }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
