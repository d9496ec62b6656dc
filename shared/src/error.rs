//! Error types of the core. Each layer has one enum; the edges (HTTP handler,
//! Lambda handlers, CLI) map them to responses in one place.

use thiserror::Error;

/// Input that batchq refuses. Always names the offending field so the API can
/// answer `{"error": {"code", "message", "field"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// Dotted path of the field at fault (`body.model`, `custom_id`, `line 3: url`).
    pub field: String,
    /// Stable machine-readable code (`missing`, `too_long`, `unsupported`, …).
    pub code: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

/// A status change that the state machine does not allow; defined with the
/// state machine in [`crate::status`].
pub use crate::status::{TransitionError, UnknownStatus};
