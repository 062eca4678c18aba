//! What can go wrong installing, removing or reading a service.

use std::path::PathBuf;

/// An install, uninstall or status that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request cannot be installed as given (a path the unit's sandbox
    /// would hide, a unit name systemd refuses, …): nothing was changed.
    #[error("{0}")]
    Invalid(String),
    /// A file could not be read, written or removed.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The service manager refused or could not be reached (D-Bus, the SCM).
    #[error("{what}: {why}")]
    Manager {
        /// What was asked.
        what: String,
        /// What it answered.
        why: String,
    },
    /// A file of the same name exists and was not written by headroom: it is
    /// left alone.
    #[error(
        "{path} exists and was not written by `headroom service install` (its first line is not the marker): not touched; move it away to install"
    )]
    NotOurs {
        /// The file.
        path: PathBuf,
    },
}

/// This crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An IO error on `path` while doing `what`.
    pub fn io(path: impl Into<PathBuf>, what: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, what, source }
    }
}
