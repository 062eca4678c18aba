//! Credentials: where they are read from, and the [`Secret`] that never prints.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Credentials sent with every request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// Where to read the token.
        token: SecretSource,
    },
    /// HTTP basic authentication.
    Basic {
        /// User name (not secret).
        username: String,
        /// Where to read the password.
        password: SecretSource,
    },
}

/// Where a secret is read from, once, when the source is built. Secrets are
/// never written in configuration files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretSource {
    /// A file holding the secret; surrounding whitespace (the trailing newline) is dropped.
    File(PathBuf),
    /// An environment variable holding the secret.
    Env(String),
}

impl SecretSource {
    /// Reads the secret; `field` names it in errors (which never hold the secret).
    pub fn read(&self, field: &str) -> Result<Secret> {
        let value = match self {
            SecretSource::File(path) => std::fs::read_to_string(path).map_err(Error::io(path))?,
            SecretSource::Env(name) => std::env::var(name).map_err(|e| {
                Error::Config(format!("prometheus.{field}: environment variable {name:?} cannot be read ({e})"))
            })?,
        };
        let value = value.trim();
        if value.is_empty() {
            let from = match self {
                SecretSource::File(path) => format!("file {}", path.display()),
                SecretSource::Env(name) => format!("environment variable {name:?}"),
            };
            return Err(Error::Config(format!("prometheus.{field}: {from} is empty")));
        }
        Ok(Secret::new(value))
    }
}

/// A credential. `Debug` and `Display` print `***`; only [`Secret::expose`]
/// gives the value, to put it in a request header.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Resolved credentials.
#[derive(Debug, Clone)]
pub(super) enum Auth {
    None,
    Bearer(Secret),
    Basic { username: String, password: Secret },
}

impl Auth {
    /// Reads the secrets `cfg` names, once.
    pub(super) fn read(cfg: Option<&AuthConfig>) -> Result<Auth> {
        Ok(match cfg {
            None => Auth::None,
            Some(AuthConfig::Bearer { token }) => Auth::Bearer(token.read("auth.token")?),
            Some(AuthConfig::Basic { username, password }) => {
                Auth::Basic { username: username.clone(), password: password.read("auth.password")? }
            }
        })
    }

    /// `request` with the credentials added.
    pub(super) fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token.expose()),
            Auth::Basic { username, password } => request.basic_auth(username, Some(password.expose())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::PrometheusSource;
    use super::super::fixtures::{config, install_tls, source};
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), "hunter2");

        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cr3t-token\n").unwrap();
        let mut cfg = config();
        cfg.auth = Some(AuthConfig::Bearer { token: SecretSource::File(token) });
        let src = source(cfg);
        assert!(
            matches!(&src.client.auth, Auth::Bearer(t) if t.expose() == "s3cr3t-token"),
            "trailing newline dropped"
        );
        let debug = format!("{src:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("***"), "{debug}");

        // CARGO_PKG_NAME is set by cargo for test binaries.
        let mut cfg = config();
        cfg.auth =
            Some(AuthConfig::Basic { username: "me".into(), password: SecretSource::Env("CARGO_PKG_NAME".into()) });
        let src = source(cfg);
        let debug = format!("{src:?}");
        assert!(matches!(&src.client.auth, Auth::Basic { password, .. } if password.expose() == "headroom-collect"));
        assert!(!debug.contains("headroom-collect"), "{debug}");
    }

    #[test]
    fn unreadable_secrets_are_named_not_shown() {
        install_tls();
        let mut cfg = config();
        cfg.auth = Some(AuthConfig::Bearer { token: SecretSource::Env("HEADROOM_TEST_SURELY_UNSET_4711".into()) });
        let err = PrometheusSource::new(cfg).unwrap_err().to_string();
        assert!(err.contains("prometheus.auth.token") && err.contains("HEADROOM_TEST_SURELY_UNSET_4711"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let mut cfg = config();
        cfg.auth = Some(AuthConfig::Basic { username: "me".into(), password: SecretSource::File(empty) });
        let err = PrometheusSource::new(cfg).unwrap_err().to_string();
        assert!(err.contains("prometheus.auth.password") && err.contains("is empty"), "{err}");
    }
}
