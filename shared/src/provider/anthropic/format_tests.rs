//! Tests of Anthropic's input lines and result line reader.

use super::*;
use crate::ids::{CustomId, TenantId};

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn line(json: &str) -> Result<ResultLine, MalformedLine> {
    AnthropicFormat.read_result_line(Endpoint::Messages, 1, json.as_bytes())
}

fn error_of(json: &str) -> (RequestError, Option<String>, bool) {
    match line(json).unwrap().outcome {
        Outcome::Error { error, body, retryable } => (error, body, retryable),
        Outcome::Success { .. } => panic!("expected a failure: {json}"),
    }
}

#[test]
fn input_line_is_a_requests_entry_of_the_predicted_length() {
    let key = RequestKey::derive(&TenantId::parse("t").unwrap(), &CustomId::parse("c").unwrap());
    let body = r#"{"max_tokens":64,"messages":[{"content":"hi \"there\"","role":"user"}],"model":"claude-3-5-haiku"}"#;
    let mut out = Vec::new();
    AnthropicFormat.write_input_line(&mut out, &key, "/v1/messages", body);
    assert_eq!(
        out.len() as u64,
        AnthropicFormat.input_line_len("/v1/messages", body.len() as u64)
    );
    assert_eq!(out.last(), Some(&b'\n'));
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["custom_id"], key.as_str());
    assert_eq!(v["params"]["model"], "claude-3-5-haiku");
    assert_eq!(v.as_object().unwrap().len(), 2, "only custom_id and params: {v}");
    assert_eq!(AnthropicFormat.input_line_key(&out), Some(key));
    assert_eq!(AnthropicFormat.input_line_key(b"{\"custom_id\":\"short\"}"), None);
}

#[test]
fn limits_are_a_hundred_thousand_lines_and_the_body_cap_less_its_wrapper() {
    let l = AnthropicFormat.limits(Endpoint::Messages);
    assert_eq!(l.max_lines, 100_000);
    assert_eq!(l.max_bytes, 256_000_000 - br#"{"requests":[]}"#.len() as u64);
    assert_eq!(l.max_inputs, u64::MAX);
}

#[test]
fn a_succeeded_line_keeps_its_message_verbatim_and_counts_cache_tokens_as_input() {
    let message = r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022","content":[{"type":"text","text":"Hi \"you\""}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":20,"cache_read_input_tokens":30,"output_tokens":5,"server_tool_use":null},"future_field":[1]}"#;
    let l = line(&format!(
        r#"{{"custom_id":"{KEY}","result":{{"type":"succeeded","message":{message}}},"extra":true}}"#
    ))
    .unwrap();
    assert_eq!((l.number, l.key.as_str()), (1, KEY));
    let Outcome::Success {
        status_code,
        body,
        usage,
        model,
    } = l.outcome
    else {
        panic!("expected success")
    };
    assert_eq!(status_code, 200);
    assert_eq!(body, message);
    assert_eq!(
        usage.unwrap(),
        Usage {
            input_tokens: 60,
            cached_input_tokens: 30,
            output_tokens: 5,
            reasoning_tokens: 0,
            cache_write_tokens: 20,
        }
    );
    assert_eq!(model.as_deref(), Some("claude-3-5-haiku-20241022"));
}

#[test]
fn a_missing_input_or_output_count_makes_the_usage_unknown_but_missing_cache_counts_are_zero() {
    let usage_of = |usage: &str| {
        let json = format!(r#"{{"custom_id":"{KEY}","result":{{"type":"succeeded","message":{{"usage":{usage}}}}}}}"#);
        match line(&json).unwrap().outcome {
            Outcome::Success { usage, .. } => usage,
            Outcome::Error { .. } => panic!("a success"),
        }
    };
    assert_eq!(
        usage_of(r#"{"input_tokens":3,"output_tokens":2}"#),
        Some(Usage {
            input_tokens: 3,
            cached_input_tokens: 0,
            output_tokens: 2,
            reasoning_tokens: 0,
            cache_write_tokens: 0
        })
    );
    assert_eq!(
        usage_of(r#"{"input_tokens":3,"output_tokens":2,"cache_read_input_tokens":null}"#).map(|u| u.input_tokens),
        Some(3)
    );
    for unknown in [
        r#"{"output_tokens":2}"#,
        r#"{"input_tokens":3}"#,
        r#"{"input_tokens":null,"output_tokens":2}"#,
        r#"{"input_tokens":-1,"output_tokens":2}"#,
        r#"{"input_tokens":3,"output_tokens":2,"cache_read_input_tokens":4294967296}"#,
        "{}",
        "null",
    ] {
        assert_eq!(usage_of(unknown), None, "{unknown}");
    }
}

#[test]
fn errored_lines_are_retryable_by_their_error_type() {
    for (kind, status, retryable) in [
        ("invalid_request_error", 400, false),
        ("authentication_error", 401, false),
        ("permission_error", 403, false),
        ("not_found_error", 404, false),
        ("rate_limit_error", 429, true),
        ("api_error", 500, true),
        ("timeout_error", 504, true),
        ("overloaded_error", 529, true),
    ] {
        let json = format!(
            r#"{{"custom_id":"{KEY}","result":{{"type":"errored","error":{{"type":"error","error":{{"type":"{kind}","message":"m {kind}"}},"request_id":"req_1"}}}}}}"#
        );
        let (error, body, r) = error_of(&json);
        assert_eq!(
            (error.code.as_str(), error.status_code, r),
            (kind, Some(status), retryable)
        );
        assert_eq!(error.message, format!("m {kind}"));
        assert!(body.unwrap().contains("req_1"));
    }
    // The inner object alone is read too; an unknown type is not retried.
    let (error, _, retryable) = error_of(&format!(
        r#"{{"custom_id":"{KEY}","result":{{"type":"errored","error":{{"type":"overloaded_error","message":"busy"}}}}}}"#
    ));
    assert_eq!((error.code.as_str(), retryable), ("overloaded_error", true));
    let (error, body, retryable) = error_of(&format!(r#"{{"custom_id":"{KEY}","result":{{"type":"errored"}}}}"#));
    assert_eq!(
        (error.code.as_str(), error.status_code, body, retryable),
        ("unknown", None, None, false)
    );
}

#[test]
fn canceled_and_expired_lines_are_retryable_with_openais_codes() {
    for (kind, code) in [("canceled", "batch_cancelled"), ("expired", "batch_expired")] {
        let (error, body, retryable) = error_of(&format!(r#"{{"custom_id":"{KEY}","result":{{"type":"{kind}"}}}}"#));
        assert_eq!(
            (error.code.as_str(), error.status_code, body, retryable),
            (code, None, None, true)
        );
    }
}

#[test]
fn lines_that_are_not_result_lines_are_refused_without_echoing_content() {
    for (bad, why) in [
        ("not json".to_owned(), "not json"),
        ("{}".to_owned(), "no custom_id"),
        (
            r#"{"custom_id":"someone-elses-id","result":{"type":"succeeded","message":{}}}"#.to_owned(),
            "foreign",
        ),
        (format!(r#"{{"custom_id":"{KEY}"}}"#), "no result"),
        (
            format!(r#"{{"custom_id":"{KEY}","result":{{"type":"succeeded"}}}}"#),
            "no message",
        ),
        (
            format!(r#"{{"custom_id":"{KEY}","result":{{"type":"paused"}}}}"#),
            "unknown type",
        ),
        (format!(r#"{{"custom_id":"{KEY}","result":{{"type":7}}}}"#), "odd type"),
    ] {
        let err = line(&bad)
            .err()
            .unwrap_or_else(|| panic!("{why}: {bad} should be refused"))
            .to_string();
        assert!(!err.contains("someone-elses-id"), "{err}");
    }
    assert_eq!(
        line(r#"{"custom_id":"someone-elses-id","result":{"type":"expired"}}"#).unwrap_err(),
        MalformedLine::ForeignCustomId
    );
}

#[test]
fn a_line_that_is_not_utf8_is_refused_even_inside_the_message() {
    let good = format!(
        r#"{{"custom_id":"{KEY}","result":{{"type":"succeeded","message":{{"content":[{{"text":"caf\u00e9"}}]}}}}}}"#
    );
    assert!(line(&good).is_ok());
    let mut bytes = good.clone().into_bytes();
    let at = good.find("caf").unwrap() + 2;
    bytes[at] = 0xff;
    let err = AnthropicFormat
        .read_result_line(Endpoint::Messages, 1, &bytes)
        .unwrap_err();
    assert_eq!(err, MalformedLine::NotUtf8);
}

#[test]
fn an_over_long_line_is_known_by_the_custom_id_in_its_head() {
    let head = Bytes::from(format!(
        r#"{{"custom_id":"{KEY}","result":{{"type":"succeeded","message":{{"content":[{{"text":"aaa"#
    ));
    let l = AnthropicFormat.read_too_long_line(3, 40_000_000, &head).expect("known");
    assert_eq!((l.number, l.key.as_str()), (3, KEY));
    assert!(
        matches!(l.outcome, Outcome::Error { retryable: false, ref error, .. } if error.code == "result_too_large")
    );
    assert!(AnthropicFormat
        .read_too_long_line(1, 1, &Bytes::from_static(b"{\"result\":{"))
        .is_none());
    assert_eq!(AnthropicFormat.max_result_line_bytes(), MAX_RESULT_LINE_BYTES);
}

#[test]
fn an_errored_lines_request_id_is_kept_and_a_succeeded_line_has_none() {
    let errored = line(&format!(
        r#"{{"custom_id":"{KEY}","result":{{"type":"errored","error":{{"type":"error","error":{{"type":"overloaded_error","message":"Overloaded"}},"request_id":"req_01abc"}}}}}}"#
    ))
    .unwrap();
    assert_eq!(errored.request_id.as_deref(), Some("req_01abc"));
    let succeeded = line(&format!(
        r#"{{"custom_id":"{KEY}","result":{{"type":"succeeded","message":{{"id":"msg_01","usage":{{"input_tokens":1,"output_tokens":1}}}}}}}}"#
    ))
    .unwrap();
    assert_eq!(succeeded.request_id, None);
}

#[test]
fn an_errored_line_with_a_request_id_that_is_not_a_string_keeps_its_error() {
    let errored = line(&format!(
        r#"{{"custom_id":"{KEY}","result":{{"type":"errored","error":{{"type":"error","error":{{"type":"overloaded_error","message":"Overloaded"}},"request_id":7}}}}}}"#
    ))
    .unwrap();
    assert_eq!(errored.request_id, None);
    match errored.outcome {
        Outcome::Error { error, retryable, .. } => {
            assert_eq!(error.code, "overloaded_error");
            assert_eq!(error.message, "Overloaded");
            assert!(retryable);
        }
        other => panic!("{other:?}"),
    }
}
