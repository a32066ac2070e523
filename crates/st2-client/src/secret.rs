//! Secret values: resolved from the environment or a file, never printed.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// The marker Portarium's own logger writes in place of a secret value.
pub const REDACTED: &str = "[REDACTED]";

/// A credential taken from config.
///
/// Written in config as a literal, `env:NAME` (read from the environment at load) or
/// `file:PATH` (read from a file at load, trailing newline trimmed). `Debug` and `Display`
/// print [`REDACTED`], so a secret cannot reach a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    source: SecretSource,
}

/// Where a [`Secret`] came from, kept so error messages can name it without showing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// Written inline in the config file.
    Literal,
    /// Read from this environment variable.
    Env(String),
    /// Read from this file.
    File(String),
}

/// Why a secret reference could not be resolved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// `env:NAME` named a variable that is unset or empty.
    #[error("environment variable {0} is not set or empty; export it or change the reference")]
    MissingEnv(String),
    /// `file:PATH` could not be read.
    #[error("cannot read secret file {path}: {reason}; check the path and its permissions")]
    File {
        /// The file named in config.
        path: String,
        /// The I/O error, as text.
        reason: String,
    },
    /// The reference resolved to an empty value.
    #[error("the secret is empty; give a value, env:NAME or file:PATH")]
    Empty,
}

impl Secret {
    /// Resolves a config reference (`literal`, `env:NAME` or `file:PATH`).
    pub fn resolve(reference: &str) -> Result<Self, SecretError> {
        let (value, source) = if let Some(name) = reference.strip_prefix("env:") {
            let value = std::env::var(name).unwrap_or_default();
            if value.is_empty() {
                return Err(SecretError::MissingEnv(name.to_string()));
            }
            (value, SecretSource::Env(name.to_string()))
        } else if let Some(path) = reference.strip_prefix("file:") {
            let raw = std::fs::read_to_string(path).map_err(|e| SecretError::File {
                path: path.to_string(),
                reason: e.to_string(),
            })?;
            (
                raw.trim_end_matches(['\r', '\n']).to_string(),
                SecretSource::File(path.to_string()),
            )
        } else {
            (reference.to_string(), SecretSource::Literal)
        };
        if value.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self { value, source })
    }

    /// Wraps a value that is already in memory (tests, tokens obtained at run time).
    pub fn from_value(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            source: SecretSource::Literal,
        }
    }

    /// The secret itself; call only where it is sent to the party that needs it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Where the value came from.
    pub fn source(&self) -> &SecretSource {
        &self.source
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let reference = String::deserialize(deserializer)?;
        Secret::resolve(&reference).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_env_and_file_references_resolve() {
        assert_eq!(Secret::resolve("abc").unwrap().expose(), "abc");
        // SAFETY: single-threaded test setting a variable no other test reads.
        unsafe { std::env::set_var("PST2_TEST_SECRET_A", "from-env") };
        let s = Secret::resolve("env:PST2_TEST_SECRET_A").unwrap();
        assert_eq!(s.expose(), "from-env");
        assert_eq!(s.source(), &SecretSource::Env("PST2_TEST_SECRET_A".into()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "from-file\n").unwrap();
        let s = Secret::resolve(&format!("file:{}", path.display())).unwrap();
        assert_eq!(s.expose(), "from-file");
    }

    #[test]
    fn unresolvable_references_are_errors_that_name_the_source() {
        let err = Secret::resolve("env:PST2_TEST_SECRET_UNSET").unwrap_err();
        assert!(err.to_string().contains("PST2_TEST_SECRET_UNSET"));
        let err = Secret::resolve("file:/nonexistent/pst2-secret").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/pst2-secret"));
        assert_eq!(Secret::resolve("").unwrap_err(), SecretError::Empty);
    }

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::from_value("hunter2");
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{s}"), REDACTED);
    }
}
