//! What a request weighs against the provider's per-batch and per-model
//! limits, estimated once at enqueue from its body: its input tokens (the
//! enqueued-token limit counts a model's batches by them) and, for
//! embeddings, its inputs (at most 50,000 per batch).
//!
//! There is no tokenizer here (a BPE table per model family would add
//! megabytes to every function for an estimate). The estimate is a
//! deliberate over-count of the usual rules of thumb:
//!
//! * text: one token per 4 ASCII characters (rounded up) plus one token per
//!   non-ASCII character. English runs near 4 characters a token; accented,
//!   Cyrillic and CJK text takes more tokens per character, which counting
//!   each such character as a whole token covers.
//! * chat messages: 4 tokens of framing each, 3 for the reply's priming
//!   (OpenAI's published counting recipe for chat formats).
//! * images: 765 tokens each (a 1024×1024 image at the default detail).
//! * anything else that is sent (tools, schemas, audio references): its
//!   JSON's length over 4.
//! * token arrays (`[1, 2, 3]` as a prompt or embedding input): their length.
//!
//! How far the estimate is from a provider's count is measured on the fake
//! provider's bodies by a test (`estimate_stays_above_the_fake_providers_count`)
//! and in docs/lifecycle.md (Enqueued tokens); batches are planned against a budget learnt from the
//! provider's own answers (see `budget`), so an estimate that runs low only
//! costs one refused batch.

use serde_json::Value;

use crate::endpoint::Endpoint;

/// Tokens counted for one image in a chat or responses body.
pub const IMAGE_TOKENS: u64 = 765;

/// A request's weight against provider limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Weight {
    /// Estimated input tokens.
    pub tokens: u64,
    /// Embedding inputs (1 for every other endpoint).
    pub inputs: u64,
}

impl Weight {
    /// The weight of a stored request written before weights were kept:
    /// its body's bytes over 3, an over-count of any text's tokens.
    pub fn from_body_bytes(body_bytes: u64) -> Self {
        Self {
            tokens: body_bytes.div_ceil(3).max(1),
            inputs: 1,
        }
    }
}

/// Estimates the weight of a request body for `endpoint`.
pub fn estimate(endpoint: Endpoint, body: &Value) -> Weight {
    let tokens = match endpoint {
        Endpoint::ChatCompletions => {
            let messages = match body.get("messages") {
                Some(Value::Array(m)) => m.iter().map(|m| 4 + message_tokens(m)).sum(),
                Some(other) => json_tokens(other),
                None => 0,
            };
            3 + messages + extras(body, &["tools", "functions", "response_format", "tool_choice"])
        }
        Endpoint::Responses => {
            let input = body.get("input").map(content_tokens).unwrap_or(0);
            let instructions = body.get("instructions").map(content_tokens).unwrap_or(0);
            3 + input + instructions + extras(body, &["tools", "text", "tool_choice"])
        }
        Endpoint::Messages => {
            let messages = match body.get("messages") {
                Some(Value::Array(m)) => m.iter().map(|m| 4 + message_tokens(m)).sum(),
                Some(other) => json_tokens(other),
                None => 0,
            };
            let system = body.get("system").map(content_tokens).unwrap_or(0);
            3 + messages + system + extras(body, &["tools", "tool_choice"])
        }
        Endpoint::Completions => body.get("prompt").map(prompt_tokens).unwrap_or(0),
        Endpoint::Embeddings | Endpoint::Moderations => body.get("input").map(prompt_tokens).unwrap_or(0),
    };
    let inputs = match (endpoint, body.get("input")) {
        (Endpoint::Embeddings, Some(Value::Array(items))) if items.first().is_some_and(|i| !i.is_number()) => {
            items.len() as u64
        }
        _ => 1,
    };
    Weight {
        tokens: tokens.max(1),
        inputs: inputs.max(1),
    }
}

/// Tokens of a text.
pub fn text_tokens(text: &str) -> u64 {
    // Counted on bytes, not decoded chars (a bulk enqueue runs this over
    // every prompt): in UTF-8 an ASCII char is one byte below 0x80, and any
    // other char has exactly one lead byte, 0xC0 or above. Byte counts
    // vectorise; `chars()` decodes one char at a time.
    let (ascii, other) = text.as_bytes().iter().fold((0u64, 0u64), |(a, o), &b| {
        (a + u64::from(b < 0x80), o + u64::from(b >= 0xC0))
    });
    ascii.div_ceil(4) + other
}

/// Tokens of a value sent as is (a schema, a tool): its JSON's length over 4.
fn json_tokens(v: &Value) -> u64 {
    (v.to_string().len() as u64).div_ceil(4)
}

fn extras(body: &Value, fields: &[&str]) -> u64 {
    fields.iter().filter_map(|f| body.get(*f)).map(json_tokens).sum()
}

/// One chat message: its content, its name, and tool calls it carries.
fn message_tokens(m: &Value) -> u64 {
    let Value::Object(obj) = m else { return json_tokens(m) };
    let mut n = obj.get("content").map(content_tokens).unwrap_or(0);
    if let Some(Value::String(name)) = obj.get("name") {
        n += text_tokens(name) + 1;
    }
    for field in ["tool_calls", "function_call", "audio"] {
        if let Some(v) = obj.get(field) {
            n += json_tokens(v);
        }
    }
    n
}

/// Message or responses content: a string, or an array of parts.
fn content_tokens(v: &Value) -> u64 {
    match v {
        Value::String(s) => text_tokens(s),
        Value::Null => 0,
        Value::Array(parts) => parts.iter().map(part_tokens).sum(),
        other => part_tokens(other),
    }
}

fn part_tokens(part: &Value) -> u64 {
    let Value::Object(obj) = part else {
        return content_tokens_of_scalar(part);
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("image_url" | "input_image" | "image") => IMAGE_TOKENS,
        _ => {
            if let Some(Value::String(t)) = obj.get("text") {
                text_tokens(t)
            } else if let Some(c) = obj.get("content") {
                // A responses input item ({"role", "content"}): framing + content.
                4 + content_tokens(c)
            } else {
                json_tokens(part)
            }
        }
    }
}

fn content_tokens_of_scalar(v: &Value) -> u64 {
    match v {
        Value::String(s) => text_tokens(s),
        other => json_tokens(other),
    }
}

/// A prompt or input: text, a list of texts, a token array or a list of them.
fn prompt_tokens(v: &Value) -> u64 {
    match v {
        Value::String(s) => text_tokens(s),
        Value::Array(items) if items.iter().all(Value::is_number) => items.len() as u64,
        Value::Array(items) => items.iter().map(prompt_tokens).sum(),
        other => json_tokens(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_tokens_counted_on_bytes_equal_the_count_over_decoded_chars() {
        let by_chars = |t: &str| {
            let ascii = t.chars().filter(char::is_ascii).count() as u64;
            ascii.div_ceil(4) + (t.chars().count() as u64 - ascii)
        };
        // One, two, three and four byte chars, mixed in every order.
        let alphabet = [
            'a',
            ' ',
            '\u{7f}',
            'é',
            'ß',
            '\u{7ff}',
            '日',
            '\u{ffff}',
            '😀',
            '\u{10ffff}',
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        for len in 0..200 {
            let text: String = (0..len).map(|_| alphabet[rng.usize(..alphabet.len())]).collect();
            assert_eq!(text_tokens(&text), by_chars(&text), "{text:?}");
        }
    }

    #[test]
    fn text_counts_four_ascii_characters_a_token_and_each_other_character_as_one() {
        assert_eq!(text_tokens(""), 0);
        assert_eq!(text_tokens("abcd"), 1);
        assert_eq!(text_tokens("abcde"), 2);
        assert_eq!(text_tokens("日本語"), 3);
        assert_eq!(text_tokens("café"), 2);
    }

    #[test]
    fn chat_counts_message_framing_text_images_and_tools() {
        let body = json!({"model": "m", "messages": [
            {"role": "system", "content": "abcdefgh"},
            {"role": "user", "content": [
                {"type": "text", "text": "abcd"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
            ]}
        ], "tools": [{"type": "function", "function": {"name": "f"}}]});
        let tools = json_tokens(&body["tools"]);
        let w = estimate(Endpoint::ChatCompletions, &body);
        assert_eq!(w.tokens, 3 + (4 + 2) + (4 + 1 + IMAGE_TOKENS) + tools);
        assert_eq!(w.inputs, 1);
    }

    #[test]
    fn embeddings_count_inputs_and_token_arrays() {
        let one = estimate(Endpoint::Embeddings, &json!({"input": "abcdefgh"}));
        assert_eq!((one.tokens, one.inputs), (2, 1));
        let many = estimate(Endpoint::Embeddings, &json!({"input": ["abcd", "abcd", "ab"]}));
        assert_eq!((many.tokens, many.inputs), (3, 3));
        let ids = estimate(Endpoint::Embeddings, &json!({"input": [1, 2, 3, 4, 5]}));
        assert_eq!((ids.tokens, ids.inputs), (5, 1), "one token array is one input");
        let arrays = estimate(Endpoint::Embeddings, &json!({"input": [[1, 2], [3]]}));
        assert_eq!((arrays.tokens, arrays.inputs), (3, 2));
    }

    #[test]
    fn responses_and_completions_read_their_own_fields() {
        let r = estimate(
            Endpoint::Responses,
            &json!({"instructions": "abcd", "input": [{"role": "user", "content": "abcdefgh"}]}),
        );
        assert_eq!(r.tokens, 3 + 1 + (4 + 2));
        let c = estimate(Endpoint::Completions, &json!({"prompt": ["abcd", "abcd"]}));
        assert_eq!(c.tokens, 2);
    }

    #[test]
    fn every_request_weighs_at_least_one_token() {
        for e in Endpoint::ALL {
            let w = estimate(e, &json!({}));
            assert!(w.tokens >= 1 && w.inputs == 1, "{e}: {w:?}");
        }
        assert_eq!(Weight::from_body_bytes(10).tokens, 4);
    }
}
