//! A configuration problem named by the dotted path of its field.

use std::fmt;

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `st2.base_url`.
    pub field: String,
    /// What is wrong and what to do.
    pub reason: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}
