//! What can be wrong with a price file, typed.

use thiserror::Error;

/// Decimal places of a USD-per-1M-tokens price that are whole picodollars per token.
pub const PRICE_DECIMALS: usize = 6;

/// A price file that cannot be used. Always says which field (and which
/// model) is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PricingError {
    /// Not JSON, or a duplicate key (the message has line and column).
    #[error("price file cannot be read: {0}")]
    Json(String),
    /// A top-level field or a provider key is wrong.
    #[error("price file: {field}: {problem}")]
    File { field: String, problem: String },
    /// A model entry is wrong; `field` is its path inside the entry (`batch.input`).
    #[error("price file: {provider} model {model:?}: {field}: {problem}")]
    Model {
        provider: String,
        model: String,
        field: String,
        problem: String,
    },
}

/// A price that is not a plain decimal of USD per 1M tokens.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PriceError {
    #[error("{0:?} is negative")]
    Negative(String),
    #[error("{0:?} is not a price; write a plain decimal such as \"0.150\" (USD per 1M tokens)")]
    NotDecimal(String),
    #[error(
        "{text:?} has {places} decimal places; at most {PRICE_DECIMALS} are exact \
         (USD per 1M tokens is stored as whole picodollars per token)"
    )]
    TooPrecise { text: String, places: usize },
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// A field of a model entry that is wrong: its path inside the entry
/// (`batch.input`) and the problem.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}
