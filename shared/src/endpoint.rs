//! The provider endpoints batchq accepts.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// The provider endpoints batchq accepts. One batch file serves one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Endpoint {
    #[serde(rename = "/v1/chat/completions")]
    ChatCompletions,
    #[serde(rename = "/v1/embeddings")]
    Embeddings,
    #[serde(rename = "/v1/completions")]
    Completions,
    #[serde(rename = "/v1/responses")]
    Responses,
    #[serde(rename = "/v1/moderations")]
    Moderations,
    /// Anthropic's Messages API (Message Batches).
    #[serde(rename = "/v1/messages")]
    Messages,
}

impl Endpoint {
    pub const ALL: [Endpoint; 6] = [
        Self::ChatCompletions,
        Self::Embeddings,
        Self::Completions,
        Self::Responses,
        Self::Moderations,
        Self::Messages,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/v1/chat/completions",
            Self::Embeddings => "/v1/embeddings",
            Self::Completions => "/v1/completions",
            Self::Responses => "/v1/responses",
            Self::Moderations => "/v1/moderations",
            Self::Messages => "/v1/messages",
        }
    }

    pub fn parse(url: &str) -> Result<Self, ValidationError> {
        Self::ALL.into_iter().find(|e| e.as_str() == url).ok_or_else(|| {
            let supported: Vec<&str> = Self::ALL.iter().map(|e| e.as_str()).collect();
            ValidationError::new(
                "url",
                "unsupported",
                format!("url {url:?} is not supported; use one of {}", supported.join(", ")),
            )
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_parse_lists_supported_urls_on_error() {
        assert_eq!(Endpoint::parse("/v1/embeddings").unwrap(), Endpoint::Embeddings);
        let e = Endpoint::parse("/v1/images/generations").unwrap_err();
        assert_eq!(e.field, "url");
        assert!(e.message.contains("/v1/chat/completions"));
    }
}
