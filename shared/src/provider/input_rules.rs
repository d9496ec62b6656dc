//! The provider's input file rules, enforced before anything is uploaded:
//! one model per file, at most N lines and B bytes, unique custom_id, and
//! every line's url equal to the batch endpoint. A file that breaks them
//! would fail validation at the provider after a wasted upload (or, with
//! some compatible servers, hang or be accepted half-broken).

use std::collections::HashSet;

use crate::error::ValidationError;
use crate::ids::{ModelName, RequestKey};

/// Checks lines as they are appended to an input file.
#[derive(Debug)]
pub struct InputFileRules {
    endpoint_url: String,
    model: Option<ModelName>,
    max_lines: u64,
    max_bytes: u64,
    /// Embedding inputs over all lines (OpenAI: 50,000 per embeddings batch).
    max_inputs: u64,
    lines: u64,
    bytes: u64,
    inputs: u64,
    seen: HashSet<RequestKey>,
}

/// Why a line cannot go into this file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The file is full; the line belongs in the next file.
    Full,
    /// The line can never be in this file (wrong model or url, duplicate id).
    Invalid(ValidationError),
}

impl InputFileRules {
    pub fn new(endpoint_url: &str, max_lines: u64, max_bytes: u64) -> Self {
        Self {
            endpoint_url: endpoint_url.to_owned(),
            model: None,
            max_lines,
            max_bytes,
            max_inputs: u64::MAX,
            lines: 0,
            bytes: 0,
            inputs: 0,
            seen: HashSet::new(),
        }
    }

    /// Also holds the lines' inputs (embeddings) to at most `max_inputs`.
    pub fn with_max_inputs(mut self, max_inputs: u64) -> Self {
        self.max_inputs = max_inputs;
        self
    }

    /// Admits a line of `line_bytes` bytes (including its newline) carrying
    /// `inputs` inputs, or says why not.
    pub fn admit(
        &mut self,
        key: &RequestKey,
        url: &str,
        model: &ModelName,
        line_bytes: u64,
        inputs: u64,
    ) -> Result<(), Refusal> {
        if url != self.endpoint_url {
            return Err(Refusal::Invalid(ValidationError::new(
                "url",
                "url_mismatch",
                format!("line url {url} differs from the batch endpoint {}", self.endpoint_url),
            )));
        }
        if let Some(m) = &self.model {
            if m != model {
                return Err(Refusal::Invalid(ValidationError::new(
                    "body.model",
                    "mixed_models",
                    format!("model {model} differs from the file's model {m}; one file holds one model"),
                )));
            }
        }
        if self.seen.contains(key) {
            return Err(Refusal::Invalid(ValidationError::new(
                "custom_id",
                "duplicate_custom_id",
                format!("custom_id {key} is already in this file"),
            )));
        }
        if line_bytes > self.max_bytes {
            return Err(Refusal::Invalid(ValidationError::new(
                "body",
                "too_large",
                format!(
                    "a line of {line_bytes} bytes can never fit a file of at most {} bytes",
                    self.max_bytes
                ),
            )));
        }
        if inputs > self.max_inputs {
            return Err(Refusal::Invalid(ValidationError::new(
                "body.input",
                "too_many_inputs",
                format!(
                    "a line of {inputs} inputs can never fit a batch of at most {}",
                    self.max_inputs
                ),
            )));
        }
        if self.lines + 1 > self.max_lines
            || self.bytes + line_bytes > self.max_bytes
            || self.inputs + inputs > self.max_inputs
        {
            return Err(Refusal::Full);
        }
        self.model.get_or_insert_with(|| model.clone());
        self.seen.insert(key.clone());
        self.lines += 1;
        self.bytes += line_bytes;
        self.inputs += inputs;
        Ok(())
    }

    pub fn inputs(&self) -> u64 {
        self.inputs
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{CustomId, TenantId};

    fn key(i: u32) -> RequestKey {
        RequestKey::derive(
            &TenantId::parse("t").unwrap(),
            &CustomId::parse(format!("c{i}")).unwrap(),
        )
    }

    fn model(m: &str) -> ModelName {
        ModelName::parse(m).unwrap()
    }

    #[test]
    fn file_is_full_at_the_line_limit() {
        let mut r = InputFileRules::new("/v1/chat/completions", 2, 1000);
        r.admit(&key(1), "/v1/chat/completions", &model("m"), 10, 1).unwrap();
        r.admit(&key(2), "/v1/chat/completions", &model("m"), 10, 1).unwrap();
        assert_eq!(
            r.admit(&key(3), "/v1/chat/completions", &model("m"), 10, 1),
            Err(Refusal::Full)
        );
        assert_eq!((r.lines(), r.bytes()), (2, 20));
    }

    #[test]
    fn file_is_full_at_the_byte_limit() {
        let mut r = InputFileRules::new("/v1/embeddings", 100, 25);
        r.admit(&key(1), "/v1/embeddings", &model("m"), 20, 1).unwrap();
        assert_eq!(
            r.admit(&key(2), "/v1/embeddings", &model("m"), 10, 1),
            Err(Refusal::Full)
        );
        r.admit(&key(3), "/v1/embeddings", &model("m"), 5, 1).unwrap();
    }

    #[test]
    fn an_embeddings_file_is_full_at_the_input_limit() {
        let mut r = InputFileRules::new("/v1/embeddings", 100, 1000).with_max_inputs(5);
        r.admit(&key(1), "/v1/embeddings", &model("m"), 10, 3).unwrap();
        assert_eq!(
            r.admit(&key(2), "/v1/embeddings", &model("m"), 10, 3),
            Err(Refusal::Full)
        );
        r.admit(&key(3), "/v1/embeddings", &model("m"), 10, 2).unwrap();
        assert_eq!(r.inputs(), 5);
        assert!(matches!(
            r.admit(&key(4), "/v1/embeddings", &model("m"), 10, 6),
            Err(Refusal::Invalid(e)) if e.code == "too_many_inputs"
        ));
    }

    #[test]
    fn mixed_models_duplicates_wrong_urls_and_giant_lines_are_refused() {
        let mut r = InputFileRules::new("/v1/chat/completions", 100, 1000);
        r.admit(&key(1), "/v1/chat/completions", &model("a"), 10, 1).unwrap();
        let code = |x: Result<(), Refusal>| match x {
            Err(Refusal::Invalid(e)) => e.code,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            code(r.admit(&key(2), "/v1/chat/completions", &model("b"), 10, 1)),
            "mixed_models"
        );
        assert_eq!(
            code(r.admit(&key(1), "/v1/chat/completions", &model("a"), 10, 1)),
            "duplicate_custom_id"
        );
        assert_eq!(
            code(r.admit(&key(3), "/v1/completions", &model("a"), 10, 1)),
            "url_mismatch"
        );
        assert_eq!(
            code(r.admit(&key(4), "/v1/chat/completions", &model("a"), 5000, 1)),
            "too_large"
        );
        assert_eq!(r.lines(), 1);
    }
}
