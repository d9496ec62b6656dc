//! Deterministic response bodies: the same (custom_id, body) always gives the
//! same answer, so tests can compute exactly what a request should get back.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// 64 bits of SHA-256 over the parts, for deterministic choices.
pub fn hash64(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    u64::from_le_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

pub(crate) fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(text_of).collect::<Vec<_>>().join(" "),
        Value::Object(o) => o
            .get("text")
            .or_else(|| o.get("content"))
            .map(text_of)
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Tokens as ~4 characters each, at least 1.
pub(crate) fn tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

fn is_reasoning(model: &str) -> bool {
    ["o1", "o3", "o4", "gpt-5"].iter().any(|p| model.starts_with(p))
}

/// The texts of an embeddings request: one per input (a string is one
/// input, an array one per element; no input is one empty input).
fn embedding_texts(body: &Value) -> Vec<String> {
    match body.get("input") {
        Some(Value::Array(a)) => a.iter().map(text_of).collect(),
        Some(v) => vec![text_of(v)],
        None => vec![String::new()],
    }
}

/// How many embedding inputs a request carries, counted as `respond` answers
/// them (one embedding each).
pub fn embedding_inputs(body: &Value) -> u64 {
    match body.get("input") {
        Some(Value::Array(a)) => a.len() as u64,
        _ => 1,
    }
}

/// The prompt tokens `respond` reports for a request (`usage.prompt_tokens`,
/// or `input_tokens` on `/v1/responses`); 0 for moderations, whose answers
/// carry no usage. The enqueued-token limits count these, so a batch's queue
/// share always equals the input tokens its output file reports.
pub fn prompt_tokens(endpoint: &str, body: &Value) -> u64 {
    match endpoint {
        "/v1/embeddings" => embedding_texts(body).iter().map(|t| tokens(t)).sum(),
        "/v1/moderations" => 0,
        _ => {
            let prompt_text = match body.get("messages") {
                Some(m) => text_of(m),
                None => body
                    .get("input")
                    .or_else(|| body.get("prompt"))
                    .map(text_of)
                    .unwrap_or_default(),
            };
            tokens(&prompt_text) + 7
        }
    }
}

/// The response body the fake returns for one request line.
pub fn respond(endpoint: &str, custom_id: &str, body: &Value) -> Value {
    let model = body.get("model").and_then(Value::as_str).unwrap_or("unknown");
    let seed = hash64(&[custom_id.as_bytes(), body.to_string().as_bytes()]);
    let created = 1_790_000_000 + (seed % 1_000_000) as i64;
    match endpoint {
        "/v1/embeddings" => {
            let inputs = embedding_texts(body);
            let prompt = prompt_tokens(endpoint, body);
            let data: Vec<Value> = inputs
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let h = hash64(&[text.as_bytes(), &(i as u64).to_le_bytes()]);
                    let emb: Vec<f64> = (0..8)
                        .map(|k| (((h >> (k * 8)) & 0xff) as f64 / 127.5 - 1.0) * 0.5)
                        .collect();
                    json!({"object": "embedding", "index": i, "embedding": emb})
                })
                .collect();
            json!({"object": "list", "data": data, "model": model,
                   "usage": {"prompt_tokens": prompt, "total_tokens": prompt}})
        }
        "/v1/moderations" => {
            json!({"id": format!("modr-{seed:016x}"), "model": model,
                   "results": [{"flagged": false, "categories": {}, "category_scores": {}}]})
        }
        _ => {
            let prompt_tokens = prompt_tokens(endpoint, body);
            let cached = if prompt_tokens >= 1024 {
                (prompt_tokens / 2) / 128 * 128
            } else {
                0
            };
            let cap = body
                .get("max_completion_tokens")
                .or_else(|| body.get("max_tokens"))
                .or_else(|| body.get("max_output_tokens"))
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            let visible = (5 + seed % 60).min(cap.max(1));
            let reasoning = if is_reasoning(model) {
                (64 + seed % 256).min(cap.saturating_sub(visible))
            } else {
                0
            };
            let completion = visible + reasoning;
            let content = format!("Fake answer {seed:016x} for {custom_id} ({visible} tokens).");
            let usage = json!({
                "prompt_tokens": prompt_tokens, "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion,
                "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                    "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
            });
            match endpoint {
                "/v1/responses" => json!({
                    "id": format!("resp_{seed:016x}"), "object": "response", "created_at": created,
                    "status": "completed", "model": model,
                    "output": [{"type": "message", "role": "assistant",
                                "content": [{"type": "output_text", "text": content}]}],
                    "usage": {"input_tokens": prompt_tokens, "input_tokens_details": {"cached_tokens": cached},
                              "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": reasoning},
                              "total_tokens": prompt_tokens + completion}
                }),
                "/v1/completions" => json!({
                    "id": format!("cmpl-{seed:016x}"), "object": "text_completion", "created": created,
                    "model": model, "choices": [{"text": content, "index": 0, "finish_reason": "stop"}],
                    "usage": usage
                }),
                _ => json!({
                    "id": format!("chatcmpl-{seed:016x}"), "object": "chat.completion", "created": created,
                    "model": model, "system_fingerprint": "fp_fake",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null},
                                 "logprobs": null, "finish_reason": "stop"}],
                    "usage": usage
                }),
            }
        }
    }
}
