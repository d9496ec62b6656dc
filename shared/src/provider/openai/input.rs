//! OpenAI's batch input line:
//! `{"custom_id":KEY,"method":"POST","url":URL,"body":BODY}\n`.

use crate::ids::RequestKey;

/// Appends one batch input line. `body_json` is already-serialized JSON,
/// copied as is (no re-parse); the key and url need no escaping (hex digits
/// and the provider's fixed endpoint path).
pub fn write_input_line(out: &mut Vec<u8>, key: &RequestKey, url: &str, body_json: &str) {
    out.extend_from_slice(b"{\"custom_id\":\"");
    out.extend_from_slice(key.as_str().as_bytes());
    out.extend_from_slice(b"\",\"method\":\"POST\",\"url\":\"");
    out.extend_from_slice(url.as_bytes());
    out.extend_from_slice(b"\",\"body\":");
    out.extend_from_slice(body_json.as_bytes());
    out.extend_from_slice(b"}\n");
}

/// The request key of a line [`write_input_line`] wrote: it sits at a fixed
/// offset, so the line (up to 200 MB a file) is never parsed.
pub fn input_line_key(line: &[u8]) -> Option<RequestKey> {
    let key = line.strip_prefix(b"{\"custom_id\":\"")?.get(..32)?;
    RequestKey::parse(std::str::from_utf8(key).ok()?).ok()
}

/// Size in bytes of the line [`write_input_line`] writes.
pub fn input_line_len(url: &str, body_bytes: u64) -> u64 {
    // {"custom_id":"<32>","method":"POST","url":"<url>","body":<body>}\n
    (14 + 32 + 25 + url.len() + 9 + 2) as u64 + body_bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{CustomId, TenantId};
    use crate::request::Endpoint;

    #[test]
    fn input_line_is_valid_json_of_the_predicted_length() {
        let key = RequestKey::derive(&TenantId::parse("t").unwrap(), &CustomId::parse("c").unwrap());
        let body = r#"{"messages":[{"content":"hi \"there\"","role":"user"}],"model":"gpt-4o-mini"}"#;
        let mut out = Vec::new();
        write_input_line(&mut out, &key, Endpoint::ChatCompletions.as_str(), body);
        assert_eq!(
            out.len() as u64,
            input_line_len(Endpoint::ChatCompletions.as_str(), body.len() as u64)
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(input_line_key(&out), Some(key.clone()));
        assert_eq!(input_line_key(b"{\"custom_id\":\"short\"}"), None);
        assert_eq!(v["custom_id"], key.as_str());
        assert_eq!(v["method"], "POST");
        assert_eq!(v["url"], "/v1/chat/completions");
        assert_eq!(v["body"]["model"], "gpt-4o-mini");
    }
}
