//! The one error type of configuration loading: every variant names where the problem is.

use std::fmt;

/// A problem found in a configuration file, with the YAML path it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{file}: cannot read: {reason}")]
    Unreadable { file: String, reason: String },
    /// The file is not valid YAML, or its top level is not a mapping.
    #[error("{file}: {reason}")]
    Syntax { file: String, reason: String },
    /// A value does not fit the schema (wrong type, unknown field, missing required field).
    #[error("{path}: {reason}")]
    Schema { path: String, reason: String },
    /// A value has the right type but is not allowed.
    #[error("{path}: {value} {reason}")]
    Invalid {
        path: String,
        value: String,
        reason: String,
    },
    /// A second item with an id or name already used.
    #[error("{path}: duplicate {what} {name:?} (first at {first})")]
    Duplicate {
        path: String,
        what: &'static str,
        name: String,
        first: String,
    },
    /// A reference to a pool or monitor that does not exist.
    #[error("{path}: no {what} with id {name:?}")]
    UnknownRef {
        path: String,
        what: &'static str,
        name: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(
        path: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            path: path.into(),
            // Shown on stderr and in the reload log: a value must not end or forge a line there.
            value: super::printable::escape(&value.to_string()).into_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn schema(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Schema {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Every error found in one file; displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
