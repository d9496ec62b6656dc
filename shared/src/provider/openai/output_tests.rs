//! Tests of the OpenAI result line reader.

use super::*;

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn line(json: &str) -> Result<ResultLine, MalformedLine> {
    parse_line(Endpoint::ChatCompletions, 1, json.as_bytes())
}

#[test]
fn the_one_pass_read_keeps_the_body_text_and_reads_what_the_plain_way_reads() {
    fn seen(l: &ReadLine<'_>) -> String {
        let body = l.body.as_ref().map(|(raw, m)| {
            let e = m.error.as_ref().map(|e| (&e.message, &e.kind, &e.code));
            format!(
                "{raw:?} {:?} {:?} {e:?}",
                m.model,
                m.usage.as_ref().map(|u| u.to_usage(Endpoint::ChatCompletions))
            )
        });
        format!(
            "{:?} {:?} {:?} {body:?} {:?}",
            l.custom_id,
            l.status_code,
            l.request_id,
            l.error.as_ref().map(|e| (&e.code, &e.message))
        )
    }
    let usage = r#"{"prompt_tokens":12,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":1}}"#;
    let bodies = [
        format!(
            r#"{{"id":"x","model":"gpt-4o-mini","choices":[{{"message":{{"content":"a \"}}\" ] {{ b\\"}}}}],"usage":{usage}}}"#
        ),
        format!(r#" {{ "usage" : {usage} , "model" : "m" , "n" : [1, 2.5e3, true, null, {{"k": "}}"}}] }} "#),
        "{\r\n\t\"model\" :\"tabs\"\n}\n".to_owned(),
        r#"{"error":{"message":"bad","type":"invalid_request_error","code":"invalid_value"}}"#.to_owned(),
        r#"{"model":7,"usage":{"prompt_tokens":1}}"#.to_owned(),
        r#"{"model":"a","model":"b"}"#.to_owned(),
        r#"{"usage":{"prompt_tokens":1},"x":1,"usage":{"prompt_tokens":2}}"#.to_owned(),
        r#"{"x":1,"x":2,"model":"unknown names may repeat"}"#.to_owned(),
        // backslash runs before a quote: odd escapes it, even does not
        r#"{"x":"a\\","model":"even","y":"b\\\"c\\\\","usage":{"prompt_tokens":2}}"#.to_owned(),
        r#"{"x":"\\\"model\":\"fake\"","model":"real"}"#.to_owned(),
        r#"{"usage":{"prompt_tokens":-1}}"#.to_owned(),
        r#"{"mod\u0065l":"escaped","usage":null}"#.to_owned(),
        r#"{"model":"m","n\u0061me":"an escaped name later"}"#.to_owned(),
        r#"{"error":{"code":429},"usage":{"input_tokens":5,"output_tokens":2}}"#.to_owned(),
        r#"{"$serde_json::private::Number":"1"}"#.to_owned(),
        r#"[1,{"model":"in an array"}]"#.to_owned(),
        r#""text""#.to_owned(),
        // lone surrogates: the plain way skips them, a full read refuses them
        r#"{"\ud800":1,"model":"m"}"#.to_owned(),
        r#"{"model":"\udc00","usage":{"prompt_tokens":1}}"#.to_owned(),
        r#""\ud800""#.to_owned(),
        "12.5e3".to_owned(),
        "1e400".to_owned(),
        "true".to_owned(),
        "null".to_owned(),
        "{}".to_owned(),
        "{ }".to_owned(),
    ];
    for body in &bodies {
        for status in ["200", "404", "null"] {
            for (open, colon) in [("{", ":"), ("{ \n", " : ")] {
                let text = format!(
                    r#"{open}"custom_id"{colon}"{KEY}", "response"{colon}{{"status_code"{colon}{status},"request_id":"r","body"{colon}{body}}}{colon2}"error":null}}"#,
                    colon2 = if colon == ":" { "," } else { " ,\n" }
                );
                let one_pass = read_line(&text).unwrap();
                let plain = parse_plain(&text).unwrap();
                assert_eq!(seen(&one_pass), seen(&plain), "{text}");
                // A `null` body is no body, as serde reads an `Option`.
                let text_of_body = Some(body.trim_matches(|c| " \r\n\t".contains(c))).filter(|b| *b != "null");
                if status != "null" {
                    assert_eq!(one_pass.body.map(|(raw, _)| raw), text_of_body, "{text}");
                }
            }
        }
    }
}

#[test]
fn a_2xx_line_keeps_its_body_verbatim_and_reads_chat_usage() {
    let l = line(&format!(
        r#"{{"id":"b1","custom_id":"{KEY}","response":{{"status_code":200,"request_id":"r","body":{{"model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{{"prompt_tokens":12,"completion_tokens":5,"prompt_tokens_details":{{"cached_tokens":4}},"completion_tokens_details":{{"reasoning_tokens":2}}}}}}}},"error":null}}"#
    ))
    .unwrap();
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
    assert!(body.starts_with(r#"{"model":"gpt-4o-mini-2024-07-18","choices":[]"#));
    assert_eq!(
        usage.unwrap(),
        Usage {
            input_tokens: 12,
            cached_input_tokens: 4,
            output_tokens: 5,
            reasoning_tokens: 2,
            cache_write_tokens: 0,
        }
    );
    assert_eq!(model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
}

#[test]
fn responses_api_usage_is_read_from_its_own_field_names() {
    let l = line(&format!(
        r#"{{"custom_id":"{KEY}","response":{{"status_code":200,"body":{{"usage":{{"input_tokens":7,"output_tokens":3,"input_tokens_details":{{"cached_tokens":1}},"output_tokens_details":{{"reasoning_tokens":2}}}}}}}}}}"#
    ))
    .unwrap();
    let Outcome::Success { usage, .. } = l.outcome else {
        panic!()
    };
    assert_eq!(
        usage.unwrap(),
        Usage {
            input_tokens: 7,
            cached_input_tokens: 1,
            output_tokens: 3,
            reasoning_tokens: 2,
            cache_write_tokens: 0,
        }
    );
}

#[test]
fn expired_and_server_errors_are_retryable_but_a_400_is_not() {
    let expired = line(&format!(
        r#"{{"custom_id":"{KEY}","response":null,"error":{{"code":"batch_expired","message":"late"}}}}"#
    ))
    .unwrap();
    assert!(
        matches!(expired.outcome, Outcome::Error { retryable: true, ref error, .. } if error.code == "batch_expired")
    );
    let e500 = line(&format!(
        r#"{{"custom_id":"{KEY}","response":{{"status_code":500,"body":{{"error":{{"message":"oops","type":"server_error"}}}}}},"error":null}}"#
    ))
    .unwrap();
    assert!(
        matches!(e500.outcome, Outcome::Error { retryable: true, ref error, .. } if error.status_code == Some(500) && error.code == "server_error")
    );
    let e400 = line(&format!(
        r#"{{"custom_id":"{KEY}","response":{{"status_code":400,"body":{{"error":{{"message":"bad","type":"invalid_request_error","code":"invalid_value"}}}}}},"error":null}}"#
    ))
    .unwrap();
    assert!(
        matches!(e400.outcome, Outcome::Error { retryable: false, ref error, .. } if error.code == "invalid_value" && error.message == "bad")
    );
}

#[test]
fn an_over_long_line_is_known_by_the_custom_id_and_status_in_its_head() {
    let head = format!(
        r#"{{"id": "batch_req_1", "custom_id" : "{KEY}", "response": {{"status_code": 200, "body": {{"data": [0.1"#
    );
    let l = too_long_line(7, 40_000_000, head.as_bytes()).expect("known");
    assert_eq!((l.number, l.key.as_str()), (7, KEY));
    let Outcome::Error { error, retryable, .. } = l.outcome else {
        panic!("a failure")
    };
    assert_eq!(
        (error.code.as_str(), error.status_code, retryable),
        ("result_too_large", Some(200), false)
    );
    assert!(error.message.contains("40000000 bytes"), "{}", error.message);
    assert!(too_long_line(1, 1, b"{\"id\":\"x\",\"response\":{").is_none());
    assert!(too_long_line(1, 1, br#"{"custom_id":"someone-else"}"#).is_none());
}

#[test]
fn lines_that_are_not_result_lines_are_refused_without_echoing_content() {
    for bad in [
        "not json",
        "{}",
        r#"{"custom_id":"someone-elses-id","response":{"status_code":200,"body":{}}}"#,
        &format!(r#"{{"custom_id":"{KEY}"}}"#),
        &format!(r#"{{"custom_id":"{KEY}","response":{{"status_code":"200"}}}}"#),
    ] {
        let err = line(bad)
            .err()
            .unwrap_or_else(|| panic!("{bad} should be refused"))
            .to_string();
        assert!(!err.contains("someone-elses-id"), "{err}");
    }
}

#[test]
fn a_line_that_is_not_utf8_is_refused_even_where_the_text_is_not_read() {
    let good =
        format!(r#"{{"id":"b1","custom_id":"{KEY}","response":{{"status_code":200,"body":{{"x":"caf\u00e9"}}}}}}"#);
    assert!(parse_line(Endpoint::ChatCompletions, 1, good.as_bytes()).is_ok());
    for field in [r#""id":"b1""#, r#""x":"caf\u00e9""#] {
        let mut bytes = good.clone().into_bytes();
        let at = good.find(field).unwrap() + field.len() - 2;
        bytes[at] = 0xff;
        let err = parse_line(Endpoint::ChatCompletions, 1, &bytes)
            .err()
            .unwrap_or_else(|| panic!("{field}: 0xff accepted"))
            .to_string();
        assert!(err.contains("UTF-8"), "{err}");
    }
}

#[test]
fn the_endpoint_decides_whether_a_missing_output_count_is_unknown_or_zero() {
    let l = |endpoint: Endpoint, usage: &str| {
        let json = format!(r#"{{"custom_id":"{KEY}","response":{{"status_code":200,"body":{{"usage":{usage}}}}}}}"#);
        match parse_line(endpoint, 1, json.as_bytes()).unwrap().outcome {
            Outcome::Success { usage, .. } => usage,
            Outcome::Error { .. } => panic!("a success"),
        }
    };
    let embedding = r#"{"prompt_tokens":8,"total_tokens":8}"#;
    assert_eq!(
        l(Endpoint::Embeddings, embedding).map(|u| (u.input_tokens, u.output_tokens)),
        Some((8, 0))
    );
    assert_eq!(l(Endpoint::ChatCompletions, embedding), None);
    assert_eq!(
        l(
            Endpoint::ChatCompletions,
            r#"{"prompt_tokens":null,"completion_tokens":2}"#
        ),
        None
    );
}

#[test]
fn the_providers_request_id_is_read_from_the_response_and_absent_without_one() {
    let with = |response: &str| {
        line(&format!(
            r#"{{"id":"b1","custom_id":"{KEY}","response":{response},"error":null}}"#
        ))
        .unwrap()
        .request_id
    };
    assert_eq!(
        with(r#"{"status_code":200,"request_id":"req_abc123","body":{}}"#).as_deref(),
        Some("req_abc123")
    );
    assert_eq!(
        with(r#"{"status_code":429,"request_id":"req_def","body":{"error":{"message":"slow down"}}}"#).as_deref(),
        Some("req_def")
    );
    assert_eq!(with(r#"{"status_code":200,"body":{}}"#), None);
    assert_eq!(with(r#"{"status_code":200,"request_id":"","body":{}}"#), None);
    assert_eq!(with(r#"{"status_code":200,"request_id":null,"body":{}}"#), None);
    // A request id of another type is dropped; the result still counts.
    assert_eq!(with(r#"{"status_code":200,"request_id":false,"body":{}}"#), None);
    assert_eq!(with(r#"{"status_code":200,"request_id":{"a":1},"body":{}}"#), None);
}

/// `model`, `usage` and `error` are read in place during the one pass (not
/// borrowed and parsed again); when one of them is the body's last member
/// its value is found again from its name to find the body's end. Each
/// body here reads as the plain way reads it, and keeps its exact text.
#[test]
fn members_read_in_place_read_as_the_plain_way_reads_them_wherever_they_stand() {
    fn seen(l: &ReadLine<'_>) -> String {
        let body = l.body.as_ref().map(|(raw, m)| {
            let e = m.error.as_ref().map(|e| (&e.message, &e.kind, &e.code));
            let usage = m
                .usage
                .as_ref()
                .map(|u| [Endpoint::ChatCompletions, Endpoint::Embeddings, Endpoint::Responses].map(|e| u.to_usage(e)));
            format!("{raw:?} {:?} {usage:?} {e:?}", m.model)
        });
        format!("{:?} {:?} {body:?}", l.status_code, l.request_id)
    }
    let bodies = [
        // the last member read in place, with odd whitespace around it
        r#"{"id":"x","model":"gpt-4o-mini"}"#,
        "{\"id\":\"x\" ,\r\n\t\"usage\"\t:\n {\"prompt_tokens\":3,\"completion_tokens\":1} \r\n}",
        r#"{"error":{"message":"m","type":"t","param":null,"code":null}}"#,
        r#"{ "error" : { "message" : "m}\"{" , "code" : 12 } }"#,
        r#"{"model":null}"#,
        r#"{"usage":null}"#,
        r#"{"model":"m","usage":{"prompt_tokens":1,"completion_tokens":2},"error":null}"#,
        // unicode escapes in values read in place; an escaped name
        r#"{"model":"caf\u00e9 \ud83d\ude00","usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
        r#"{"model":"m","us\u0061ge":{"prompt_tokens":1}}"#,
        r#"{"\u006dodel":"m"}"#,
        // numbers of every form in usage: floats, big ints, negatives, exponents
        r#"{"usage":{"prompt_tokens":1.0,"completion_tokens":2}}"#,
        r#"{"usage":{"prompt_tokens":1e2,"completion_tokens":2}}"#,
        r#"{"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":2}}"#,
        r#"{"usage":{"prompt_tokens":18446744073709551616,"completion_tokens":2}}"#,
        r#"{"usage":{"prompt_tokens":4294967296,"completion_tokens":2}}"#,
        r#"{"usage":{"prompt_tokens":-0,"completion_tokens":2}}"#,
        r#"{"usage":{"prompt_tokens":"12","completion_tokens":2}}"#,
        r#"{"usage":{"input_tokens":5,"output_tokens":1,"input_tokens_details":{"cached_tokens":2.5}}}"#,
        r#"{"usage":{"prompt_tokens":8,"total_tokens":8,"extra":{"deep":[[[{"a":[]}]]]}}}"#,
        // wrong types and repeats, first, middle and last
        r#"{"model":["m"],"x":1}"#,
        r#"{"x":1,"usage":"none"}"#,
        r#"{"error":"text","model":"m"}"#,
        r#"{"model":"a","x":1,"model":"b"}"#,
        r#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":1}}"#,
        r#"{"error":null,"error":null}"#,
        r#"{"model":"m","model":7}"#,
        // names that only look like ours
        r#"{"Model":"M","models":"s","usage ":1,"x":"\"model\":\"no\""}"#,
        // not objects
        r#"[{"model":"m"}]"#,
        r#""model""#,
        "42",
        "{}",
    ];
    for body in bodies {
        for status in ["200", "500"] {
            for sep in [":", " :\r\n "] {
                let text = format!(
                    r#"{{"custom_id"{sep}"{KEY}","response"{sep}{{"status_code"{sep}{status},"request_id":"r","body"{sep}{body}}},"error":null}}"#
                );
                let one_pass = read_line(&text).unwrap();
                let plain = parse_plain(&text).unwrap();
                assert_eq!(seen(&one_pass), seen(&plain), "{text}");
                assert_eq!(one_pass.body.map(|(raw, _)| raw), Some(body), "{text}");
            }
        }
    }
}

/// A view ([`read_result_line_for`], which does not copy the body) says
/// what [`parse_line`] says of the same line, for every endpoint.
#[test]
fn a_view_of_a_line_says_what_the_parsed_line_says() {
    let lines = [
        format!(
            r#"{{"custom_id":"{KEY}","response":{{"status_code":200,"body":{{"model":"m","usage":{{"prompt_tokens":9,"completion_tokens":4}}}}}}}}"#
        ),
        format!(
            r#"{{"custom_id":"{KEY}","response":{{"status_code":200,"body":{{"usage":{{"prompt_tokens":9,"total_tokens":9}}}}}}}}"#
        ),
        format!(r#"{{"custom_id":"{KEY}","response":{{"status_code":200,"body":null}}}}"#),
        format!(r#"{{"custom_id":"{KEY}","response":{{"status_code":200,"body":[1]}}}}"#),
        format!(
            r#"{{"custom_id":"{KEY}","response":{{"status_code":429,"body":{{"error":{{"message":"slow","type":"rate_limit"}}}}}}}}"#
        ),
        format!(r#"{{"custom_id":"{KEY}","response":{{"status_code":404}}}}"#),
        format!(r#"{{"custom_id":"{KEY}","response":null,"error":{{"code":"batch_expired","message":"late"}}}}"#),
        format!(r#"{{"custom_id":"{KEY}","error":{{"code":"invalid_model"}}}}"#),
        format!(r#"{{"custom_id":"{KEY}"}}"#),
        r#"{"custom_id":"not-ours","response":{"status_code":200,"body":{}}}"#.to_owned(),
        r#"{"response":{"status_code":200,"body":{}}}"#.to_owned(),
        "not json".to_owned(),
    ];
    for endpoint in [Endpoint::ChatCompletions, Endpoint::Embeddings, Endpoint::Responses] {
        for text in &lines {
            let want = parse_line(endpoint, 0, text.as_bytes()).map(|l| match l.outcome {
                Outcome::Success { status_code, usage, .. } => ResultLineView {
                    key: l.key,
                    status_code: Some(status_code),
                    error_code: None,
                    retryable: false,
                    usage,
                },
                Outcome::Error { error, retryable, .. } => ResultLineView {
                    key: l.key,
                    status_code: error.status_code,
                    error_code: Some(error.code),
                    retryable,
                    usage: None,
                },
            });
            assert_eq!(read_result_line_for(endpoint, text.as_bytes()), want, "{text}");
        }
    }
}
