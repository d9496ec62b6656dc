//! The Together AI adapter: its batch file format ([`TogetherFormat`]) and
//! its HTTP client ([`TogetherClient`]), which maps Together's objects into
//! batchq's [`crate::provider::Batch`] and [`crate::provider::FileObject`].
//!
//! Together's batch API: files uploaded with purpose `batch-api`; input
//! lines `{custom_id, body}` (no method, no url); upper-case statuses; a
//! batch object with `job_deadline`, `progress`, `model_id`, one `error`
//! string and ISO 8601 times; create answers `{job, warning}`; no batch
//! metadata (a lost create is found again by its input file id); a
//! `COMPLETED` batch may still have an error file.

pub mod client;
pub mod wire;

use bytes::Bytes;

pub use client::TogetherClient;

use crate::ids::RequestKey;
use crate::provider::format::{BatchFormat, FileLimits, MalformedLine, ResultLine};
use crate::provider::openai::{input, output};
use crate::request::Endpoint;

/// Together's API base.
pub const DEFAULT_BASE_URL: &str = "https://api.together.xyz/v1";

/// Requests in one input file.
pub const MAX_LINES: u64 = 50_000;
/// Bytes of one input file.
pub const MAX_BYTES: u64 = 100_000_000;

/// Together's batch file format, as a [`BatchFormat`]: input lines
/// `{"custom_id":KEY,"body":BODY}`; output and error lines as OpenAI's
/// (`custom_id`, `response.status_code`, `response.body`, `error`), also
/// read when the error is a plain string or a response has no status code.
#[derive(Debug, Clone, Copy, Default)]
pub struct TogetherFormat;

impl BatchFormat for TogetherFormat {
    fn limits(&self, _endpoint: Endpoint) -> FileLimits {
        FileLimits {
            max_lines: MAX_LINES,
            max_bytes: MAX_BYTES,
            max_inputs: u64::MAX,
        }
    }

    fn write_input_line(&self, out: &mut Vec<u8>, key: &RequestKey, _url: &str, body_json: &str) {
        out.extend_from_slice(b"{\"custom_id\":\"");
        out.extend_from_slice(key.as_str().as_bytes());
        out.extend_from_slice(b"\",\"body\":");
        out.extend_from_slice(body_json.as_bytes());
        out.extend_from_slice(b"}\n");
    }

    fn input_line_len(&self, _url: &str, body_bytes: u64) -> u64 {
        // {"custom_id":"<32>","body":<body>}\n
        (14 + 32 + 9 + 2) as u64 + body_bytes
    }

    fn input_line_key(&self, line: &[u8]) -> Option<RequestKey> {
        // Both formats open with the key at the same offset.
        input::input_line_key(line)
    }

    fn max_result_line_bytes(&self) -> usize {
        crate::provider::openai::limits::MAX_RESULT_LINE_BYTES
    }

    fn read_result_line(&self, endpoint: Endpoint, number: u64, bytes: &[u8]) -> Result<ResultLine, MalformedLine> {
        match output::parse_line(endpoint, number, bytes) {
            Err(e @ (MalformedLine::NotJson(_) | MalformedLine::NoOutcome)) => match wire::as_openai_line(bytes) {
                Some(line) => output::parse_line(endpoint, number, &line),
                None => Err(e),
            },
            other => other,
        }
    }

    fn read_too_long_line(&self, number: u64, bytes: u64, head: &Bytes) -> Option<ResultLine> {
        output::too_long_line(number, bytes, head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{CustomId, TenantId};
    use crate::provider::Outcome;

    fn key() -> RequestKey {
        RequestKey::derive(&TenantId::parse("t").unwrap(), &CustomId::parse("c").unwrap())
    }

    #[test]
    fn input_line_has_only_custom_id_and_body_at_the_predicted_length() {
        let body = r#"{"messages":[{"content":"hi","role":"user"}],"model":"meta-llama/Llama-3.3-70B-Instruct-Turbo"}"#;
        let mut out = Vec::new();
        TogetherFormat.write_input_line(&mut out, &key(), "/v1/chat/completions", body);
        assert_eq!(
            out.len() as u64,
            TogetherFormat.input_line_len("/v1/chat/completions", body.len() as u64)
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let fields: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(fields, ["body", "custom_id"]);
        assert_eq!(TogetherFormat.input_line_key(&out), Some(key()));
        assert!(key().as_str().len() <= 64, "Together's custom_id cap");
    }

    #[test]
    fn output_error_string_and_status_less_lines_are_read() {
        let k = key();
        let ok = format!(
            r#"{{"id":"r1","custom_id":"{k}","response":{{"status_code":200,"body":{{"model":"m","usage":{{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}}}}}}}"#,
            k = k.as_str()
        );
        let line = TogetherFormat
            .read_result_line(Endpoint::ChatCompletions, 1, ok.as_bytes())
            .unwrap();
        assert!(matches!(
            line.outcome,
            Outcome::Success {
                status_code: 200,
                usage: Some(_),
                ..
            }
        ));

        let bare = format!(
            r#"{{"custom_id":"{}","response":{{"body":{{"model":"m"}}}}}}"#,
            k.as_str()
        );
        let line = TogetherFormat
            .read_result_line(Endpoint::ChatCompletions, 2, bare.as_bytes())
            .unwrap();
        assert!(matches!(line.outcome, Outcome::Success { status_code: 200, .. }));

        let err = format!(r#"{{"custom_id":"{}","error":"context length exceeded"}}"#, k.as_str());
        let line = TogetherFormat
            .read_result_line(Endpoint::ChatCompletions, 3, err.as_bytes())
            .unwrap();
        match line.outcome {
            Outcome::Error { error, retryable, .. } => {
                assert_eq!(error.message, "context length exceeded");
                assert!(!retryable);
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(
            TogetherFormat
                .read_result_line(Endpoint::ChatCompletions, 4, b"{\"custom_id\":\"x\"}")
                .unwrap_err(),
            MalformedLine::ForeignCustomId
        );
        assert!(TogetherFormat
            .read_result_line(Endpoint::ChatCompletions, 5, b"not json")
            .is_err());
    }
}
