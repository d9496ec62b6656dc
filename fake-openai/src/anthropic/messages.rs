//! Deterministic Message answers: the same (custom_id, params) always gives
//! the same message, so tests can compute what a request gets back.

use serde_json::{json, Value};

use crate::responses::{hash64, text_of, tokens};

/// The input tokens a request counts: its system prompt and messages, at
/// ~4 characters a token, plus 7.
pub fn prompt_tokens(params: &Value) -> u64 {
    let system = params.get("system").map(text_of).unwrap_or_default();
    let messages = params.get("messages").map(text_of).unwrap_or_default();
    tokens(&format!("{system} {messages}")) + 7
}

/// Why `params` would be refused when the request runs (`None`: it runs).
pub fn invalid_params(params: &Value) -> Option<String> {
    if params.get("model").and_then(Value::as_str).is_none() {
        return Some("model: Field required".into());
    }
    if !params.get("messages").is_some_and(Value::is_array) {
        return Some("messages: Field required".into());
    }
    match params.get("max_tokens").and_then(Value::as_u64) {
        Some(n) if n >= 1 => None,
        _ => Some("max_tokens: Input should be greater than or equal to 1".into()),
    }
}

/// The Message the fake answers a request with. A request that marks
/// `cache_control` anywhere has half its input tokens cached: a quarter
/// read from the cache, the rest written to it; `usage.input_tokens` counts
/// only the uncached rest, as Anthropic reports it.
pub fn respond_message(custom_id: &str, params: &Value) -> Value {
    let model = params.get("model").and_then(Value::as_str).unwrap_or("unknown");
    let seed = hash64(&[custom_id.as_bytes(), params.to_string().as_bytes()]);
    let prompt = prompt_tokens(params);
    let cached = if params.to_string().contains("\"cache_control\"") {
        prompt / 2
    } else {
        0
    };
    let (read, written) = (cached / 2, cached - cached / 2);
    let cap = params.get("max_tokens").and_then(Value::as_u64).unwrap_or(u64::MAX);
    let output = (5 + seed % 60).min(cap.max(1));
    let stop = if output == cap { "max_tokens" } else { "end_turn" };
    json!({
        "id": format!("msg_01{seed:022x}"), "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": format!("Fake answer {seed:016x} for {custom_id} ({output} tokens).")}],
        "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": prompt - cached, "cache_creation_input_tokens": written,
                  "cache_read_input_tokens": read, "output_tokens": output, "service_tier": "batch"}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_deterministic_and_count_cache_tokens_when_marked() {
        let plain =
            json!({"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": "hello there"}]});
        assert_eq!(respond_message("a", &plain), respond_message("a", &plain));
        assert_ne!(respond_message("a", &plain)["id"], respond_message("b", &plain)["id"]);
        let u = &respond_message("a", &plain)["usage"];
        assert_eq!(u["input_tokens"], prompt_tokens(&plain));
        assert_eq!(
            (
                u["cache_read_input_tokens"].as_u64(),
                u["cache_creation_input_tokens"].as_u64()
            ),
            (Some(0), Some(0))
        );
        let cached = json!({"model": "claude-x", "max_tokens": 100, "system": [{"type": "text", "text": "a long system prompt", "cache_control": {"type": "ephemeral"}}],
                            "messages": [{"role": "user", "content": "hi"}]});
        let u = &respond_message("a", &cached)["usage"];
        let total = u["input_tokens"].as_u64().unwrap()
            + u["cache_read_input_tokens"].as_u64().unwrap()
            + u["cache_creation_input_tokens"].as_u64().unwrap();
        assert_eq!(total, prompt_tokens(&cached));
        assert!(u["cache_read_input_tokens"].as_u64().unwrap() > 0);
        assert!(u["cache_creation_input_tokens"].as_u64().unwrap() > 0);
        assert_eq!(invalid_params(&cached), None);
        assert!(invalid_params(&json!({"model": "m", "messages": [], "max_tokens": 0})).is_some());
    }
}
