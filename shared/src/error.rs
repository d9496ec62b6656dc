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

/// An error and its causes, `outer: inner: innermost`, for messages people
/// read: the AWS SDK's own `DisplayErrorContext` ends with a Rust debug dump
/// of the whole error (`(DispatchFailure(DispatchFailure { source: … }))`),
/// which says nothing the chain does not.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // Some layers repeat their cause in their own message.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Error)]
    #[error("dispatch failure")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn an_error_chain_reads_as_its_messages_without_a_debug_dump() {
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(chain(&e), "dispatch failure: connection refused");
    }
}
