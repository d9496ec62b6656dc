//! Generated data of realistic shape, deterministic per seed: chat-completion
//! request bodies of 0.5–8 KB (compact JSON, keys sorted, as batchq stores
//! them) and provider result lines whose answers are 0.2–4 KB of text (the
//! whole response body, with ids and usage, about 0.6 KB more).

use batchq_core::ids::ModelName;
use batchq_core::ids::{CustomId, RequestKey, TenantId};
use batchq_core::request::{Endpoint, NewRequest};

const WORDS: &[&str] = &[
    "the",
    "battery",
    "lasts",
    "all",
    "day",
    "and",
    "screen",
    "is",
    "bright",
    "but",
    "the",
    "case",
    "feels",
    "cheap",
    "delivery",
    "was",
    "late",
    "by",
    "two",
    "days",
    "support",
    "answered",
    "quickly",
    "quarterly",
    "revenue",
    "grew",
    "8%",
    "while",
    "costs",
    "fell",
    "analysts",
    "expected",
    "a",
    "loss",
    "\"great\"",
    "value",
    "for",
    "money",
    "café",
    "naïve",
    "über",
    "—",
    "price",
    "€49",
    "won't",
    "recommend",
    "it",
    "summary:",
    "customers",
    "report",
    "that",
    "setup",
    "took",
    "minutes",
    "(not",
    "hours)",
    "overall",
];

/// Text of about `bytes` bytes, JSON-escaped, with a line break now and then.
pub fn text(rng: &mut fastrand::Rng, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 16);
    while out.len() < bytes {
        if !out.is_empty() {
            out.push_str(if rng.u8(..) < 8 { "\\n" } else { " " });
        }
        let w = WORDS[rng.usize(..WORDS.len())];
        for c in w.chars() {
            match c {
                '"' => out.push_str("\\\""),
                c => out.push(c),
            }
        }
    }
    out
}

/// A chat-completion body of about `bytes` bytes (compact, keys sorted).
pub fn chat_body(rng: &mut fastrand::Rng, model: &str, bytes: usize) -> String {
    let system = "You are a careful assistant. Classify the review as positive, negative or mixed and give one reason.";
    let overhead = 120 + system.len() + model.len();
    let user = text(rng, bytes.saturating_sub(overhead).max(16));
    format!(
        r#"{{"max_tokens":{},"messages":[{{"content":"{system}","role":"system"}},{{"content":"{user}","role":"user"}}],"model":"{model}","temperature":0.2}}"#,
        16 + rng.u32(..200)
    )
}

/// A uniformly drawn size between `lo` and `hi` bytes.
pub fn size_between(rng: &mut fastrand::Rng, lo: usize, hi: usize) -> usize {
    rng.usize(lo..=hi)
}

/// Bytes a response body has beyond its answer text.
pub const RESPONSE_OVERHEAD: usize = 560;

/// A chat.completion response body whose answer is about `content_bytes`
/// of text, with usage as OpenAI reports it.
pub fn response_body(rng: &mut fastrand::Rng, model: &str, content_bytes: usize) -> String {
    let content = text(rng, content_bytes.max(16));
    let prompt = 100 + rng.u64(..1900);
    let completion = (content.len() / 4) as u64 + 1;
    let cached = if prompt >= 1024 { prompt / 2 / 128 * 128 } else { 0 };
    format!(
        concat!(
            r#"{{"id":"chatcmpl-{:016x}","object":"chat.completion","created":1790000000,"model":"{}","#,
            r#""choices":[{{"index":0,"message":{{"role":"assistant","content":"{}","refusal":null,"annotations":[]}},"logprobs":null,"finish_reason":"stop"}}],"#,
            r#""usage":{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{},"prompt_tokens_details":{{"cached_tokens":{},"audio_tokens":0}},"#,
            r#""completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}},"#,
            r#""service_tier":"default","system_fingerprint":"fp_0123456789"}}"#
        ),
        rng.u64(..),
        model,
        content,
        prompt,
        completion,
        prompt + completion,
        cached,
    )
}

/// One line of a provider output file.
pub fn output_line(rng: &mut fastrand::Rng, key: &str, body: &str) -> String {
    format!(
        r#"{{"id":"batch_req_{:024x}","custom_id":"{key}","response":{{"status_code":200,"request_id":"{:032x}","body":{body}}},"error":null}}"#,
        rng.u128(..) >> 32,
        rng.u128(..),
    )
}

/// One line of a provider error file: an expired request or a 500.
pub fn error_line(rng: &mut fastrand::Rng, key: &str) -> String {
    if rng.bool() {
        format!(
            r#"{{"id":"batch_req_{:024x}","custom_id":"{key}","response":null,"error":{{"code":"batch_expired","message":"This request could not be executed before the completion window expired."}}}}"#,
            rng.u128(..) >> 32
        )
    } else {
        format!(
            r#"{{"id":"batch_req_{:024x}","custom_id":"{key}","response":{{"status_code":500,"request_id":"{:032x}","body":{{"error":{{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}}}}},"error":null}}"#,
            rng.u128(..) >> 32,
            rng.u128(..)
        )
    }
}

/// The key batchq derives for `custom_id` of the default tenant.
pub fn key_of(custom_id: &str) -> RequestKey {
    RequestKey::derive(
        &TenantId::default_tenant(),
        &CustomId::parse(custom_id).expect("generated custom_id is valid"),
    )
}

/// A request as the store takes it (default tenant, chat completions).
/// The `i`th request of the peak-memory runs: a `gpt-4o-mini` chat body of
/// about `avg` serialized bytes (a little under it: under the inline limit
/// when `avg` is).
pub fn big_request(rng: &mut fastrand::Rng, i: usize, avg: usize) -> NewRequest {
    let size = size_between(rng, avg - avg / 10, avg + avg / 20).saturating_sub(100);
    new_request(&format!("big-{i}"), "gpt-4o-mini", chat_body(rng, "gpt-4o-mini", size))
}

pub fn new_request(custom_id: &str, model: &str, body_json: String) -> NewRequest {
    NewRequest::new(
        TenantId::default_tenant(),
        CustomId::parse(custom_id).expect("generated custom_id is valid"),
        Endpoint::ChatCompletions,
        ModelName::parse(model).expect("model name"),
        body_json,
    )
}

/// A result file of about `bytes` bytes: 97% output lines, 3% error lines,
/// for keys `key_0`, `key_1`, … (not batchq keys: parsing needs hex ones, so
/// they are derived).
pub fn result_file(seed: u64, bytes: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::with_capacity(bytes + 8192);
    let mut i = 0u64;
    while out.len() < bytes {
        let key = key_of(&format!("hot-{i}"));
        let line = if rng.u8(..100) < 3 {
            error_line(&mut rng, key.as_str())
        } else {
            let size = size_between(&mut rng, 200, 4096);
            let body = response_body(&mut rng, "gpt-4o-mini", size);
            output_line(&mut rng, key.as_str(), &body)
        };
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        i += 1;
    }
    out
}

/// Requests as submit reads them back: (key, body) with bodies of 0.5–8 KB,
/// about `bytes` in all.
pub fn input_requests(seed: u64, bytes: usize) -> Vec<(RequestKey, String)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    let mut total = 0;
    let mut i = 0u64;
    while total < bytes {
        let size = size_between(&mut rng, 512, 8192);
        let body = chat_body(&mut rng, "gpt-4o-mini", size);
        total += body.len();
        out.push((key_of(&format!("in-{i}")), body));
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_bodies_and_lines_are_valid_json_of_the_asked_size() {
        let mut rng = fastrand::Rng::with_seed(7);
        for size in [512, 3000, 8192] {
            let b = chat_body(&mut rng, "gpt-4o-mini", size);
            let v: serde_json::Value = serde_json::from_str(&b).unwrap();
            assert_eq!(v["model"], "gpt-4o-mini");
            assert!(b.len().abs_diff(size) < 64, "{} vs {size}", b.len());
        }
        for size in [200, 1000, 4096] {
            let b = response_body(&mut rng, "gpt-4o-mini", size);
            let _: serde_json::Value = serde_json::from_str(&b).unwrap();
            assert!(b.len().abs_diff(size + RESPONSE_OVERHEAD) < 64, "{} vs {size}", b.len());
        }
        let file = result_file(1, 200_000);
        for line in file.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            batchq_core::provider::openai::output::read_result_line(line).unwrap();
        }
    }
}
