//! Property tests (fuzzing with a fixed budget) for the two parsers that read
//! untrusted bytes: the enqueue request parser (`batchq_core::api::parse`)
//! and the result-line parser ingest uses
//! (`batchq_core::provider::openai::output::read_result_line`).
//!
//! Each property runs a fixed number of cases per run (`CASES`, or
//! `PROPTEST_CASES`), a few seconds in all; the seed is random, so every run
//! explores new inputs. A failing case is shrunk and its seed saved under
//! `tests/tests/fuzz_parsers.proptest-regressions` (commit it: it is replayed first on every
//! later run), and the minimal input belongs in `tests/fuzz-corpus/` too.
//!
//! The checked-in corpus (`tests/fuzz-corpus/{enqueue,result}/`) is replayed
//! on every run, and mutated (byte flips, insertions, cuts, splices) as
//! another source of cases. Files named `ok-*` must be accepted and `bad-*`
//! refused; every file must keep the invariants below.
//!
//! Invariants: no panic; an error is a 4xx with a stable code and a bounded
//! message that never echoes more than a short piece of the input; what is
//! accepted is exactly what an independent statement of the rules (the
//! `*_oracle` functions here) accepts, and reads back the same fields.

use std::path::{Path, PathBuf};

use batchq_core::api::parse::{
    bulk_lines, canonical_json, check_content_type, custom_id_of, decode_document, decode_line, parse_line,
    JSONL_TYPES, JSON_TYPES,
};
use batchq_core::api::ApiError;
use batchq_core::ids::RequestKey;
use batchq_core::provider::openai::output::{read_result_line, ResultLineView};
use batchq_core::provider::openai::usage::MAX_USAGE_TOKENS;
use batchq_core::request::Usage;
mod fuzz_support;

use fuzz_support::*;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Map, Value};

/// Cases per property and run.
const CASES: u32 = 512;
/// Longest error message any refusal may carry, whatever the input's size.
const MESSAGE_MAX: usize = 600;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- the enqueue parser: oracle and checks

const DECODE_CODES: [&str; 4] = ["empty_body", "invalid_utf8", "invalid_json", "truncated_json"];

/// A refusal as the parsers must make it: 400 or 413, a known code, a
/// message that is short whatever the input was.
fn check_refusal(e: &ApiError, input_len: usize) {
    assert!(matches!(e.status(), 400 | 413), "status {} for {e:?}", e.status());
    let msg = e.to_string();
    assert!(!msg.is_empty(), "{e:?}");
    assert!(
        msg.len() <= MESSAGE_MAX,
        "a {}-byte message for a {input_len}-byte input: {msg:.200}",
        msg.len()
    );
    if let Some(f) = e.field() {
        assert!(f.chars().count() <= 80, "field {f:.100}");
    }
}

fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix("\u{feff}".as_bytes()).unwrap_or(b)
}

/// decode_document and decode_line accept exactly what serde_json accepts
/// (after UTF-8 and an optional BOM), and give the same value.
fn check_decoders(bytes: &[u8]) -> Option<Value> {
    let expected = std::str::from_utf8(bytes)
        .ok()
        .and_then(|_| serde_json::from_slice::<Value>(strip_bom(bytes)).ok());
    let line = decode_line(bytes);
    match (&line, &expected) {
        (Ok(v), Some(want)) => assert_eq!(v, want),
        (Err(e), None) => {
            check_refusal(e, bytes.len());
            assert!(DECODE_CODES.contains(&e.code()), "{e:?}");
        }
        (Ok(v), None) => panic!("decode_line accepted what serde_json refuses: {v}"),
        (Err(e), Some(_)) => panic!("decode_line refused valid JSON: {e:?}"),
    }
    let doc = decode_document(bytes);
    let blank = bytes.iter().all(u8::is_ascii_whitespace);
    match (&doc, &expected) {
        (Ok(v), Some(want)) => assert_eq!(v, want),
        (Err(e), _) if blank => assert_eq!(e.code(), "empty_body"),
        (Err(e), None) => {
            check_refusal(e, bytes.len());
            assert!(DECODE_CODES.contains(&e.code()), "{e:?}");
            if e.code() == "invalid_json" || e.code() == "truncated_json" {
                assert!(e.to_string().contains("at line "), "{e}");
            }
        }
        (Ok(v), None) => panic!("decode_document accepted what serde_json refuses: {v}"),
        (Err(e), Some(_)) => panic!("decode_document refused valid JSON: {e:?}"),
    }
    expected
}

/// parse_line agrees with the oracle; what it accepts is canonical and reads
/// back the same; custom_id_of agrees with both.
fn check_line(v: &Value, max_body: u64) {
    let got = parse_line(v.clone(), max_body);
    let want = line_oracle(v, max_body);
    match (&got, &want) {
        (Ok(p), Ok(id)) => {
            match id {
                Some(id) => {
                    assert_eq!(p.custom_id.as_str(), id);
                    assert!(!p.generated_id);
                }
                None => {
                    assert!(p.generated_id);
                    assert!(custom_id_ok(p.custom_id.as_str()), "{}", p.custom_id.as_str());
                }
            }
            assert_eq!(p.endpoint.as_str(), v["url"].as_str().unwrap());
            assert_eq!(p.model.as_str(), v["body"]["model"].as_str().unwrap());
            assert_eq!(p.body_json, canonical_json(&v["body"]));
            assert!(p.body_json.len() as u64 <= max_body);
            let reread: Value = serde_json::from_str(&p.body_json).expect("the stored body is JSON");
            assert_eq!(reread, v["body"], "the stored body is the body sent");
            assert_eq!(canonical_json(&reread), p.body_json, "canonical form is stable");
        }
        (Err(e), Err(field)) => {
            check_refusal(e, v.to_string().len());
            assert_eq!(e.field().map(str::to_owned), *field, "{e:?}");
            let too_large = field.as_deref() == Some("body") && matches!(v.get("body"), Some(Value::Object(_)));
            assert_eq!(e.status(), if too_large { 413 } else { 400 }, "{e:?}");
        }
        (Ok(p), Err(field)) => panic!("accepted {v} (as {p:?}) but the rules refuse it at {field:?}"),
        (Err(e), Ok(_)) => panic!("refused {v} ({e:?}) but the rules accept it"),
    }
    let by_label = custom_id_of(v);
    match v.get("custom_id") {
        Some(Value::String(s)) if custom_id_ok(s) => assert_eq!(by_label.unwrap().as_str(), s),
        _ => assert!(by_label.is_none()),
    }
}

/// bulk_lines: numbered as an editor numbers them, blank lines skipped,
/// no terminator left on a line, nothing else dropped.
fn check_bulk(body: &[u8]) {
    let lines = bulk_lines(body);
    let raw: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    let mut expected = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        if !l.iter().all(u8::is_ascii_whitespace) {
            expected.push((i + 1, l));
        }
    }
    let got: Vec<(usize, &[u8])> = lines.iter().map(|l| (l.number, l.bytes)).collect();
    assert_eq!(got, expected);
    for l in &lines {
        assert!(!l.bytes.contains(&b'\n'));
        assert!(l.number >= 1 && l.number <= raw.len());
    }
    assert!(lines.windows(2).all(|w| w[0].number < w[1].number));
}

/// Everything the enqueue parsers do with one input.
fn check_enqueue_bytes(bytes: &[u8]) {
    if let Some(v) = check_decoders(bytes) {
        check_line(&v, MAX_BODY);
        check_line(&v, 64);
    }
    check_bulk(bytes);
    for l in bulk_lines(bytes).into_iter().take(50) {
        if let Some(v) = check_decoders(l.bytes) {
            check_line(&v, MAX_BODY);
        }
    }
}

// ---------------------------------------------------------------- the result-line parser: oracle and checks

const RETRYABLE_CODES: [&str; 5] = [
    "batch_expired",
    "batch_cancelled",
    "request_timeout",
    "server_error",
    "rate_limit_exceeded",
];

/// What the rules say about a result line that is a JSON object: the key,
/// the status code and whether it is retried, or a refusal. `None` when the
/// oracle does not decide (a value ingest reads leniently, see below).
/// What the rules say a line reads as: its key, status code and whether it is retried.
type Judged = (String, Option<u16>, bool);

fn result_oracle(v: &Value) -> Option<Result<Judged, ()>> {
    let obj = v.as_object()?;
    let key = match obj.get("custom_id") {
        Some(Value::String(s)) => s.clone(),
        _ => return Some(Err(())),
    };
    let status = match obj.get("response") {
        None | Some(Value::Null) => None,
        // serde also reads a struct from a JSON array (fields in order):
        // lenient, harmless, and not what this oracle states.
        Some(Value::Array(_)) => return None,
        Some(Value::Object(r)) => match r.get("status_code") {
            None | Some(Value::Null) => None,
            // Only an integer literal in u16's range: 200.0, 2e2 and -0 are
            // floats to serde and refused.
            Some(n) => match n.as_u64().and_then(|n| u16::try_from(n).ok()) {
                Some(code) => Some(code),
                None => return Some(Err(())),
            },
        },
        Some(_) => return Some(Err(())),
    };
    let error_code = match obj.get("error") {
        None | Some(Value::Null) => None,
        Some(Value::Array(_)) => return None,
        Some(Value::Object(e)) => {
            match e.get("message") {
                None | Some(Value::Null) | Some(Value::String(_)) => {}
                Some(_) => return Some(Err(())),
            }
            Some(match e.get("code") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => "unknown".to_owned(),
            })
        }
        Some(_) => return Some(Err(())),
    };
    if RequestKey::parse(key.clone()).is_err() {
        return Some(Err(()));
    }
    match (status, error_code) {
        (Some(s), _) => Some(Ok((key, Some(s), matches!(s, 408 | 429) || s >= 500))),
        (None, Some(code)) => Some(Ok((key, None, RETRYABLE_CODES.contains(&code.as_str())))),
        (None, None) => Some(Err(())),
    }
}

fn check_result_bytes(bytes: &[u8]) -> Result<ResultLineView, String> {
    let got = read_result_line(bytes).map_err(|e| e.to_string());
    match &got {
        Ok(view) => {
            // The key is the line's own custom_id, and a valid one.
            if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
                if let Some(id) = v.get("custom_id").and_then(Value::as_str) {
                    assert_eq!(view.key.as_str(), id);
                }
            }
            assert!(RequestKey::parse(view.key.as_str().to_owned()).is_ok());
            let success = view.error_code.is_none();
            assert_eq!(success, matches!(view.status_code, Some(200..=299)), "{view:?}");
            if success {
                assert!(!view.retryable);
            } else {
                assert!(view.usage.is_none());
            }
            if let Some(u) = &view.usage {
                for n in [
                    u.input_tokens,
                    u.cached_input_tokens,
                    u.output_tokens,
                    u.reasoning_tokens,
                ] {
                    assert!(n <= MAX_USAGE_TOKENS, "{u:?}");
                }
            }
        }
        Err(reason) => {
            assert!(!reason.is_empty());
            assert!(reason.len() <= MESSAGE_MAX, "{reason:.200}");
        }
    }
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        if let Some(want) = result_oracle(&v) {
            match (&got, want) {
                (Ok(view), Ok((key, status, retryable))) => {
                    assert_eq!(view.key.as_str(), key);
                    assert_eq!(view.status_code, status, "{v}");
                    assert_eq!(view.retryable, retryable, "{v}");
                }
                (Err(_), Err(())) => {}
                // A key given twice is one key in a Value, but ingest's
                // reader refuses the line: stricter, and fine.
                (Err(reason), Ok(_)) if reason.contains("duplicate field") => {}
                (Ok(view), Err(())) => panic!("accepted {v} as {view:?}; the rules refuse it"),
                (Err(reason), Ok(_)) => panic!("refused {v} ({reason}); the rules accept it"),
            }
        }
    }
    got
}

fn usage_json() -> impl Strategy<Value = (Value, Option<Usage>)> {
    let count = prop_oneof![
        8 => 0u64..=100_000,
        1 => 0u64..=MAX_USAGE_TOKENS,
        1 => (MAX_USAGE_TOKENS + 1)..=u64::MAX,
    ];
    (
        count.clone(),
        count.clone(),
        prop::option::of(count.clone()),
        prop::option::of(count),
        any::<bool>(),
    )
        .prop_map(|(input, output, cached, reasoning, responses_api)| {
            let (i, o, d_in, d_out) = if responses_api {
                (
                    "input_tokens",
                    "output_tokens",
                    "input_tokens_details",
                    "output_tokens_details",
                )
            } else {
                (
                    "prompt_tokens",
                    "completion_tokens",
                    "prompt_tokens_details",
                    "completion_tokens_details",
                )
            };
            let mut u = json!({i: input, o: output, "total_tokens": 1});
            if let Some(c) = cached {
                u[d_in] = json!({"cached_tokens": c});
            }
            if let Some(r) = reasoning {
                u[d_out] = json!({"reasoning_tokens": r});
            }
            let usage = Usage {
                input_tokens: input,
                cached_input_tokens: cached.unwrap_or(0),
                output_tokens: output,
                reasoning_tokens: reasoning.unwrap_or(0),
                cache_write_tokens: 0,
            };
            let believable = [input, output, usage.cached_input_tokens, usage.reasoning_tokens]
                .iter()
                .all(|n| *n <= MAX_USAGE_TOKENS);
            (u, believable.then_some(usage))
        })
}

/// A result line as the provider writes it, with what ingest must read.
fn valid_result_line() -> impl Strategy<Value = (Value, ResultLineView)> {
    let key = "[0-9a-f]{32}";
    let success = (
        key,
        200u16..300,
        usage_json(),
        prop::option::of(valid_model()),
        any_json(),
    )
        .prop_map(|(key, status, (usage, expected), model, extra)| {
            let mut body = json!({"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"x": extra}], "usage": usage});
            if let Some(m) = model {
                body["model"] = m.into();
            }
            let line = json!({"id": "batch_req_1", "custom_id": key, "response": {"status_code": status, "request_id": "r", "body": body}, "error": null});
            let view = ResultLineView {
                key: RequestKey::parse(key).unwrap(),
                status_code: Some(status),
                error_code: None,
                retryable: false,
                usage: expected,
            };
            (line, view)
        });
    let http_error = (
        key,
        prop_oneof![300u16..=599, 100u16..200, 600u16..=u16::MAX],
        prop::option::of("[a-z_]{1,20}"),
        tricky_string(40),
    )
        .prop_map(|(key, status, code, message)| {
            let mut err = json!({"message": message, "type": "invalid_request_error"});
            if let Some(c) = &code {
                err["code"] = c.clone().into();
            }
            let line =
                json!({"custom_id": key, "response": {"status_code": status, "body": {"error": err}}, "error": null});
            let view = ResultLineView {
                key: RequestKey::parse(key).unwrap(),
                status_code: Some(status),
                error_code: Some(code.unwrap_or_else(|| "invalid_request_error".into())),
                retryable: matches!(status, 408 | 429) || status >= 500,
                usage: None,
            };
            (line, view)
        });
    let file_error = (
        key,
        prop_oneof![
            prop::sample::select(RETRYABLE_CODES.to_vec()).prop_map(str::to_owned),
            "[a-z_]{1,20}"
        ],
        tricky_string(40),
    )
        .prop_map(|(key, code, message)| {
            let line = json!({"id": "batch_req_2", "custom_id": key, "response": null, "error": {"code": code, "message": message}});
            let view = ResultLineView {
                key: RequestKey::parse(key).unwrap(),
                status_code: None,
                retryable: RETRYABLE_CODES.contains(&code.as_str()),
                error_code: Some(code),
                usage: None,
            };
            (line, view)
        });
    prop_oneof![3 => success, 1 => http_error, 1 => file_error]
}

// ---------------------------------------------------------------- corpus

fn corpus_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus").join(kind)
}

fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{}: the corpus is missing", dir.display());
    files
}

#[test]
fn the_enqueue_corpus_is_replayed() {
    let files = corpus("enqueue");
    for (name, bytes) in &files {
        let outcome = std::panic::catch_unwind(|| check_enqueue_bytes(bytes));
        assert!(outcome.is_ok(), "corpus file enqueue/{name} breaks an invariant");
        if name.starts_with("ok-") {
            assert!(enqueue_accepts(bytes), "enqueue/{name} should be accepted");
        } else if name.starts_with("bad-") {
            assert!(!enqueue_accepts(bytes), "enqueue/{name} should be refused");
        }
    }
    assert!(files.iter().any(|(n, _)| n.starts_with("ok-")));
    assert!(files.iter().any(|(n, _)| n.starts_with("bad-")));
}

#[test]
fn the_result_corpus_is_replayed() {
    let files = corpus("result");
    for (name, bytes) in &files {
        let outcome = std::panic::catch_unwind(|| {
            check_result_bytes(bytes).ok();
            for line in bytes.split(|b| *b == b'\n') {
                check_result_bytes(line).ok();
            }
        });
        assert!(outcome.is_ok(), "corpus file result/{name} breaks an invariant");
        if name.starts_with("ok-") {
            let r = read_result_line(bytes.strip_suffix(b"\n").unwrap_or(bytes));
            assert!(r.is_ok(), "result/{name} should be accepted: {r:?}");
        } else if name.starts_with("bad-") {
            let r = read_result_line(bytes.strip_suffix(b"\n").unwrap_or(bytes));
            assert!(r.is_err(), "result/{name} should be refused: {r:?}");
        }
    }
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_break_the_enqueue_parsers(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_enqueue_bytes(&bytes);
    }

    #[test]
    fn arbitrary_text_never_breaks_the_enqueue_parsers(text in tricky_string(200)) {
        check_enqueue_bytes(text.as_bytes());
    }

    #[test]
    fn any_json_value_is_judged_by_the_rules(v in any_json(), max_body in prop_oneof![Just(MAX_BODY), 2u64..200]) {
        check_line(&v, max_body);
        check_enqueue_bytes(v.to_string().as_bytes());
    }

    #[test]
    fn valid_lines_are_accepted_whatever_their_key_order_and_whitespace(v in valid_line()) {
        check_line(&v, MAX_BODY);
        let p = parse_line(v.clone(), MAX_BODY).unwrap();
        // Pretty-printed, with a BOM, and with the keys in reverse order.
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        let reversed = {
            let obj = v.as_object().unwrap();
            let mut s = String::from("{");
            for (i, (k, x)) in obj.iter().rev().enumerate() {
                if i > 0 { s.push_str(" ,\n\t"); }
                s.push_str(&format!("{} :  {}", Value::String(k.clone()), x));
            }
            s.push('}');
            s
        };
        for text in [pretty.clone(), format!("\u{feff}{pretty}"), reversed] {
            let q = parse_line(decode_document(text.as_bytes()).unwrap(), MAX_BODY).unwrap();
            prop_assert_eq!(&q.body_json, &p.body_json);
            prop_assert_eq!(q.endpoint, p.endpoint);
            prop_assert_eq!(&q.model, &p.model);
            if !p.generated_id {
                prop_assert_eq!(&q.custom_id, &p.custom_id);
            }
        }
    }

    #[test]
    fn mutated_lines_are_accepted_or_refused_exactly_as_the_rules_say(
        v in valid_line(),
        mutations in prop::collection::vec(mutation(), 1..4),
        max_body in prop_oneof![3 => Just(MAX_BODY), 1 => 16u64..400],
    ) {
        let mut v = v;
        for m in &mutations {
            apply(&mut v, m);
        }
        check_line(&v, max_body);
    }

    #[test]
    fn damaged_request_text_never_breaks_the_parsers(
        v in valid_line(),
        damages in prop::collection::vec(damage(), 1..5),
    ) {
        let bytes = damaged(v.to_string().into_bytes(), &damages);
        check_enqueue_bytes(&bytes);
    }

    #[test]
    fn every_proper_prefix_of_a_request_is_refused(v in valid_line(), cut in any::<prop::sample::Index>()) {
        let text = v.to_string();
        let at = cut.index(text.len());
        let prefix = &text.as_bytes()[..at];
        prop_assert!(!enqueue_accepts(prefix));
        check_enqueue_bytes(prefix);
    }

    #[test]
    fn bulk_bodies_are_split_into_numbered_lines(
        lines in prop::collection::vec(prop_oneof![
            3 => valid_line().prop_map(|v| v.to_string()),
            1 => tricky_string(30),
            1 => Just(String::new()),
            1 => "[ \t]{1,4}",
        ], 0..20),
        crlf in any::<bool>(),
        final_newline in any::<bool>(),
    ) {
        let sep = if crlf { "\r\n" } else { "\n" };
        let mut body = lines.join(sep);
        if final_newline { body.push_str(sep); }
        check_bulk(body.as_bytes());
        let got = bulk_lines(body.as_bytes());
        let want: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.bytes().all(|b| b.is_ascii_whitespace()))
            .map(|(i, _)| i + 1)
            .collect();
        // A tricky string may hold its own newlines, which start new lines.
        if lines.iter().all(|l| !l.contains('\n') && !l.ends_with('\r')) {
            prop_assert_eq!(got.iter().map(|l| l.number).collect::<Vec<_>>(), want);
        }
    }

    #[test]
    fn content_types_are_accepted_only_from_the_list(
        essence in prop_oneof![
            prop::sample::select([JSON_TYPES, JSONL_TYPES].concat()).prop_map(str::to_owned),
            tricky_string(30),
            "[a-z]{1,12}/[a-z.+-]{1,16}",
        ],
        upper in any::<bool>(),
        params in prop::collection::vec((prop_oneof![Just("charset".to_owned()), "[a-z]{1,8}"], prop_oneof![
            Just("utf-8".to_owned()), Just("UTF8".to_owned()), Just("\"utf-8\"".to_owned()), Just("latin1".to_owned()), tricky_string(10)
        ]), 0..3),
        jsonl in any::<bool>(),
    ) {
        let accepted = if jsonl { JSONL_TYPES } else { JSON_TYPES };
        let essence_sent = if upper { essence.to_ascii_uppercase() } else { essence.clone() };
        let mut header = essence_sent.clone();
        for (k, v) in &params {
            header.push_str(&format!("; {k}={v}"));
        }
        let got = check_content_type(Some(&header), accepted);
        let essence_ok = !header.trim().is_empty()
            && accepted.contains(&header.split(';').next().unwrap().trim().to_ascii_lowercase().as_str());
        let charset_ok = params.iter().all(|(k, v)| {
            // A parameter whose value holds ';' splits into more parts; judge
            // only simple ones here.
            k != "charset" || {
                let v = v.trim().trim_matches('"');
                v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("utf8")
            }
        });
        let simple = params.iter().all(|(_, v)| !v.contains(';') && !v.contains('=')) && !essence.contains(';');
        if let Err(e) = &got {
            prop_assert_eq!(e.status(), 415);
            prop_assert!(e.to_string().len() <= MESSAGE_MAX);
        }
        if simple {
            prop_assert_eq!(got.is_ok(), essence_ok && charset_ok, "{:?}", header);
        }
    }

    #[test]
    fn arbitrary_bytes_never_break_the_result_parser(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = check_result_bytes(&bytes);
    }

    #[test]
    fn any_json_in_the_shape_of_a_result_line_is_judged_by_the_rules(
        key in prop_oneof!["[0-9a-f]{32}", "[0-9a-fA-F]{30,34}", tricky_string(40)],
        response in prop_oneof![
            Just(None),
            any_json().prop_map(Some),
            (prop_oneof![json_number(), json_leaf()], any_json())
                .prop_map(|(s, b)| Some(json!({"status_code": s, "request_id": "r", "body": b}))),
            (100u16..=599, any_json()).prop_map(|(s, b)| Some(json!({"status_code": s, "body": b}))),
        ],
        error in prop_oneof![Just(None), any_json().prop_map(Some), (json_leaf(), json_leaf()).prop_map(|(c, m)| Some(json!({"code": c, "message": m})))],
        extra in prop::collection::vec((key_name(), any_json()), 0..3),
    ) {
        let mut line = Map::new();
        for (k, v) in extra {
            line.insert(k, v);
        }
        line.insert("custom_id".into(), key.into());
        if let Some(r) = response { line.insert("response".into(), r); }
        if let Some(e) = error { line.insert("error".into(), e); }
        let _ = check_result_bytes(Value::Object(line).to_string().as_bytes());
    }

    #[test]
    fn well_formed_result_lines_read_back_exactly((line, want) in valid_result_line()) {
        let text = line.to_string();
        let got = check_result_bytes(text.as_bytes());
        prop_assert_eq!(got.as_ref(), Ok(&want), "{}", text);
        // Whitespace and a trailing CR do not matter either.
        let pretty = serde_json::to_string_pretty(&line).unwrap();
        prop_assert_eq!(read_result_line(pretty.as_bytes()), Ok(want));
    }

    #[test]
    fn damaged_result_lines_never_break_the_parser(
        (line, _) in valid_result_line(),
        damages in prop::collection::vec(damage(), 1..5),
    ) {
        let bytes = damaged(line.to_string().into_bytes(), &damages);
        let _ = check_result_bytes(&bytes);
    }

    #[test]
    fn every_proper_prefix_of_a_result_line_is_refused((line, _) in valid_result_line(), cut in any::<prop::sample::Index>()) {
        let text = line.to_string();
        let at = cut.index(text.len());
        prop_assert!(read_result_line(&text.as_bytes()[..at]).is_err());
    }

    #[test]
    fn damaged_corpus_files_never_break_either_parser(
        pick in any::<prop::sample::Index>(),
        damages in prop::collection::vec(damage(), 1..6),
    ) {
        let mut all = corpus("enqueue");
        all.extend(corpus("result"));
        let (_, bytes) = &all[pick.index(all.len())];
        let bytes = damaged(bytes.clone(), &damages);
        check_enqueue_bytes(&bytes);
        let _ = check_result_bytes(&bytes);
    }
}
