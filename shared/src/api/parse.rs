//! Turning request bytes into validated [`NewRequest`] parts: content types,
//! JSON decoding with positions, the shape of one request line (a line of an
//! OpenAI batch input file), and the splitting of a JSONL bulk body.
//!
//! Nothing here touches a store: a request that fails any check here is
//! refused before anything is written.

use serde_json::Value;

use super::error::ApiError;
use crate::ids::{CustomId, ModelName};
use crate::request::Endpoint;
use crate::tokens::{self, Weight};

/// Media types `POST /v1/requests` reads.
pub const JSON_TYPES: &[&str] = &["application/json"];

/// Media types `POST /v1/requests/bulk` reads (one JSON request per line).
pub const JSONL_TYPES: &[&str] = &[
    "application/x-ndjson",
    "application/jsonl",
    "application/json-lines",
    "application/x-jsonlines",
    "text/plain",
];

/// The fields of a request line. Anything else is refused, so a typo
/// (`"bdy"`) fails loudly instead of being dropped.
pub const LINE_FIELDS: &[&str] = &["custom_id", "method", "url", "body", "provider"];

/// Longest piece of caller input echoed back in an error message.
const ECHO_MAX: usize = 80;

/// A request line that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedLine {
    pub custom_id: CustomId,
    /// Whether `custom_id` was generated because the line had none.
    pub generated_id: bool,
    pub endpoint: Endpoint,
    pub model: ModelName,
    /// The `body` object, compact with sorted keys.
    pub body_json: String,
    /// The body's estimated weight (tokens, inputs), from the parsed value.
    pub weight: Weight,
    /// The output limit the body sets, if any ([`crate::spend::max_output_tokens`]).
    pub max_output_tokens: Option<u64>,
    /// The provider instance the caller asked for, if any.
    pub provider: Option<String>,
}

/// Checks the `Content-Type` header against the media types a route reads.
/// Parameters other than `charset` are ignored; a charset must be UTF-8.
pub fn check_content_type(content_type: Option<&str>, accepted: &[&str]) -> Result<(), ApiError> {
    let Some(raw) = content_type.filter(|c| !c.trim().is_empty()) else {
        return Err(ApiError::UnsupportedMediaType {
            message: format!("the Content-Type header is missing; send {}", accepted.join(" or ")),
        });
    };
    let mut parts = raw.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    if !accepted.contains(&essence.as_str()) {
        return Err(ApiError::UnsupportedMediaType {
            message: format!(
                "Content-Type {:?} is not accepted here; send {}",
                echo(&essence),
                accepted.join(" or ")
            ),
        });
    }
    for param in parts {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("charset") {
            let value = value.trim().trim_matches('"');
            if !value.eq_ignore_ascii_case("utf-8") && !value.eq_ignore_ascii_case("utf8") {
                return Err(ApiError::UnsupportedMediaType {
                    message: format!("charset {:?} is not accepted; send UTF-8", echo(value)),
                });
            }
        }
    }
    Ok(())
}

/// Decodes a whole JSON document (the single-request route). Errors name the
/// line and column.
pub fn decode_document(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            None,
            "empty_body",
            "the request body is empty; send one JSON request object",
        ));
    }
    let text = utf8(bytes)?;
    serde_json::from_str(strip_bom(text)).map_err(|e| {
        let (code, what) = json_error_kind(&e);
        ApiError::bad_request(
            None,
            code,
            format!(
                "{what} at line {}, column {}: {}",
                e.line(),
                e.column(),
                json_error_text(&e)
            ),
        )
    })
}

/// Decodes one line of a JSONL body. Errors name the column (the line number
/// is reported next to them).
pub fn decode_line(bytes: &[u8]) -> Result<Value, ApiError> {
    let text = utf8(bytes)?;
    serde_json::from_str(strip_bom(text)).map_err(|e| {
        let (code, what) = json_error_kind(&e);
        ApiError::bad_request(
            None,
            code,
            format!("{what} at column {}: {}", e.column(), json_error_text(&e)),
        )
    })
}

fn utf8(bytes: &[u8]) -> Result<&str, ApiError> {
    // simdutf8's `compat` flavour: SIMD validation (a bulk body is megabytes
    // of prompts) that still says where the first bad byte is.
    simdutf8::compat::from_utf8(bytes).map_err(|e| {
        ApiError::bad_request(
            None,
            "invalid_utf8",
            format!("input is not valid UTF-8: invalid byte at offset {}", e.valid_up_to()),
        )
    })
}

fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

fn json_error_kind(e: &serde_json::Error) -> (&'static str, &'static str) {
    match e.classify() {
        serde_json::error::Category::Eof => ("truncated_json", "JSON ends too early"),
        _ => ("invalid_json", "invalid JSON"),
    }
}

/// serde_json's message without its own " at line L column C" suffix.
fn json_error_text(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    full.strip_suffix(&suffix).unwrap_or(&full).to_owned()
}

/// Validates one request line: `{"custom_id"?, "method"?, "url", "body",
/// "provider"?}`.
/// `max_body_bytes` bounds the compact serialization of `body`.
pub fn parse_line(value: Value, max_body_bytes: u64) -> Result<ParsedLine, ApiError> {
    let mut obj = match value {
        Value::Object(obj) => obj,
        other => {
            return Err(ApiError::bad_request(
                None,
                "not_an_object",
                format!(
                    "a request must be a JSON object with url and body, not {}",
                    type_name(&other)
                ),
            ))
        }
    };
    if let Some(unknown) = obj.keys().find(|k| !LINE_FIELDS.contains(&k.as_str())) {
        let name = echo(unknown);
        return Err(ApiError::bad_request(
            Some(&name),
            "unknown_field",
            format!("unknown field {name:?}; a request has only {}", LINE_FIELDS.join(", ")),
        ));
    }

    let (custom_id, generated_id) = match obj.remove("custom_id") {
        None | Some(Value::Null) => (CustomId::generate(), true),
        Some(Value::String(s)) => (CustomId::parse(s)?, false),
        Some(other) => return Err(wrong_type("custom_id", "a string", &other)),
    };

    match obj.remove("method") {
        None | Some(Value::Null) => {}
        Some(Value::String(m)) if m == "POST" => {}
        Some(Value::String(m)) => {
            return Err(ApiError::bad_request(
                Some("method"),
                "unsupported",
                format!("method must be \"POST\" (batch requests are POSTs), not {:?}", echo(&m)),
            ))
        }
        Some(other) => return Err(wrong_type("method", "the string \"POST\"", &other)),
    }

    let endpoint = match obj.remove("url") {
        None | Some(Value::Null) => return Err(missing("url", "the endpoint path, e.g. \"/v1/chat/completions\"")),
        Some(Value::String(url)) if url.len() > ECHO_MAX => {
            // Endpoint::parse would echo it whole.
            return Err(Endpoint::parse(&format!("{}…", echo(&url))).unwrap_err().into());
        }
        Some(Value::String(url)) => Endpoint::parse(&url)?,
        Some(other) => return Err(wrong_type("url", "a string", &other)),
    };

    let provider = match obj.remove("provider") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => Some(p),
        Some(other) => return Err(wrong_type("provider", "a provider name (a string)", &other)),
    };

    let body = match obj.remove("body") {
        None | Some(Value::Null) => return Err(missing("body", "the JSON request body for the endpoint")),
        Some(Value::Object(body)) => body,
        Some(other) => return Err(wrong_type("body", "a JSON object", &other)),
    };
    let model = match body.get("model") {
        None | Some(Value::Null) => return Err(missing("body.model", "the model name, e.g. \"gpt-4o-mini\"")),
        Some(Value::String(m)) => ModelName::parse(m.as_str())?,
        Some(other) => return Err(wrong_type("body.model", "a string", other)),
    };

    let body = Value::Object(body);
    let weight = tokens::estimate(endpoint, &body);
    let max_output_tokens = crate::spend::max_output_tokens(&body);
    let body_json = canonical_json(&body);
    if body_json.len() as u64 > max_body_bytes {
        return Err(ApiError::too_large(
            Some("body"),
            "too_large",
            format!(
                "body is {} bytes as compact JSON; at most {max_body_bytes} are accepted",
                body_json.len()
            ),
        ));
    }

    Ok(ParsedLine {
        custom_id,
        generated_id,
        endpoint,
        model,
        body_json,
        weight,
        max_output_tokens,
        provider,
    })
}

/// The `custom_id` of a line, if it has a valid one (to label a rejected
/// bulk line).
pub fn custom_id_of(value: &Value) -> Option<CustomId> {
    value
        .get("custom_id")
        .and_then(Value::as_str)
        .and_then(|s| CustomId::parse(s).ok())
}

/// Compact JSON with object keys sorted at every level: the one form of a
/// body that is hashed (idempotency) and stored, whatever key order or
/// whitespace the caller used. Sorting here does not rely on serde_json's
/// map type (the `preserve_order` feature would change it).
pub fn canonical_json(value: &Value) -> String {
    serde_json::to_string(&Canonical(value)).expect("a JSON value always serializes")
}

/// A value that serializes with object keys sorted, written straight into
/// the output by serde_json's serializer (no string built per key or
/// scalar). A map that is already in order (serde_json's default `BTreeMap`)
/// is not copied to be sorted.
struct Canonical<'a>(&'a Value);

impl serde::Serialize for Canonical<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Object(map) => {
                let mut out = s.serialize_map(Some(map.len()))?;
                if map.keys().is_sorted() {
                    for (k, v) in map {
                        out.serialize_entry(k, &Canonical(v))?;
                    }
                } else {
                    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                    for (k, v) in entries {
                        out.serialize_entry(k, &Canonical(v))?;
                    }
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    out.serialize_element(&Canonical(v))?;
                }
                out.end()
            }
            scalar => scalar.serialize(s),
        }
    }
}

/// One non-blank line of a bulk body, numbered from 1 as an editor shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkLine<'a> {
    pub number: usize,
    pub bytes: &'a [u8],
}

/// Splits a JSONL body on `\n` (a trailing `\r` is dropped); blank lines are
/// skipped but still counted, so numbers match the caller's file.
pub fn bulk_lines(body: &[u8]) -> Vec<BulkLine<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    // memchr finds the line ends a word at a time; a byte-at-a-time split
    // was a few percent of a bulk enqueue.
    let ends = memchr::memchr_iter(b'\n', body).chain(std::iter::once(body.len()));
    for (i, end) in ends.enumerate() {
        let line = &body[start..end];
        start = end + 1;
        let bytes = line.strip_suffix(b"\r").unwrap_or(line);
        if !bytes.iter().all(u8::is_ascii_whitespace) {
            out.push(BulkLine { number: i + 1, bytes });
        }
    }
    out
}

fn missing(field: &str, what: &str) -> ApiError {
    ApiError::bad_request(Some(field), "missing", format!("{field} is required: {what}"))
}

fn wrong_type(field: &str, expected: &str, got: &Value) -> ApiError {
    ApiError::bad_request(
        Some(field),
        "wrong_type",
        format!("{field} must be {expected}, not {}", type_name(got)),
    )
}

/// The JSON type of a value, as an error message names it.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Caller input shortened for an error message.
fn echo(s: &str) -> String {
    if s.chars().count() <= ECHO_MAX {
        s.to_owned()
    } else {
        s.chars().take(ECHO_MAX).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MAX: u64 = 4 * 1024 * 1024;

    fn line(v: Value) -> Result<ParsedLine, ApiError> {
        parse_line(v, MAX)
    }

    fn refused(v: Value) -> (String, &'static str, Option<String>) {
        let e = line(v).unwrap_err();
        (e.to_string(), e.code(), e.field().map(str::to_owned))
    }

    fn chat(extra: Value) -> Value {
        let mut v = json!({
            "custom_id": "r-1",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    #[test]
    fn a_batch_input_line_parses_into_its_parts() {
        let p = line(chat(json!({}))).unwrap();
        assert_eq!(p.custom_id.as_str(), "r-1");
        assert!(!p.generated_id);
        assert_eq!(p.endpoint, Endpoint::ChatCompletions);
        assert_eq!(p.model.as_str(), "gpt-4o-mini");
        assert_eq!(
            p.body_json,
            r#"{"messages":[{"content":"hi","role":"user"}],"model":"gpt-4o-mini"}"#
        );
    }

    #[test]
    fn custom_id_and_method_may_be_left_out() {
        let p = line(json!({"url": "/v1/embeddings", "body": {"model": "m", "input": "x"}})).unwrap();
        assert!(p.generated_id);
        assert!(p.custom_id.as_str().starts_with("req_"));
    }

    #[test]
    fn canonical_body_keeps_every_number_exactly_as_sent() {
        // Seeds past u64, and decimals with more digits than an f64 holds,
        // reach the provider as the caller wrote them.
        let text = r#"{"seed":123456789012345678901234567890,"temperature":0.1000000000000000055511151231257827,"n":-0,"top_p":1e-7}"#;
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"n":-0,"seed":123456789012345678901234567890,"temperature":0.1000000000000000055511151231257827,"top_p":1e-7}"#
        );
    }

    #[test]
    fn canonical_body_ignores_key_order_and_whitespace() {
        let a: Value = serde_json::from_str(r#"{"b": [1, {"y": 2, "x": 1}], "a": "é\n"}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":"é\n","b":[1,{"x":1,"y":2}]}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&a), r#"{"a":"é\n","b":[1,{"x":1,"y":2}]}"#);
    }

    #[test]
    fn each_malformed_field_is_named() {
        let cases = [
            (json!([1, 2]), "not_an_object", None),
            (chat(json!({"bdy": {}})), "unknown_field", Some("bdy")),
            (chat(json!({"custom_id": 7})), "wrong_type", Some("custom_id")),
            (
                chat(json!({"custom_id": "a b"})),
                "invalid_characters",
                Some("custom_id"),
            ),
            (chat(json!({"custom_id": ""})), "empty", Some("custom_id")),
            (chat(json!({"method": "GET"})), "unsupported", Some("method")),
            (chat(json!({"method": true})), "wrong_type", Some("method")),
            (chat(json!({"url": "/v1/models"})), "unsupported", Some("url")),
            (chat(json!({"url": 3})), "wrong_type", Some("url")),
            (chat(json!({"url": null})), "missing", Some("url")),
            (chat(json!({"body": "text"})), "wrong_type", Some("body")),
            (chat(json!({"body": {"messages": []}})), "missing", Some("body.model")),
            (chat(json!({"body": {"model": 4}})), "wrong_type", Some("body.model")),
            (chat(json!({"body": {"model": " "}})), "empty", Some("body.model")),
        ];
        for (input, code, field) in cases {
            let (msg, got_code, got_field) = refused(input.clone());
            assert_eq!((got_code, got_field.as_deref()), (code, field), "{input}: {msg}");
        }
    }

    #[test]
    fn an_oversized_body_is_too_large_not_bad() {
        let v = chat(json!({"body": {"model": "m", "input": "x".repeat(200)}}));
        let e = parse_line(v, 100).unwrap_err();
        assert_eq!((e.status(), e.field()), (413, Some("body")));
    }

    #[test]
    fn a_long_unsupported_url_is_not_echoed_whole() {
        let (msg, code, _) = refused(chat(json!({"url": "/v1/".to_owned() + &"x".repeat(10_000)})));
        assert_eq!(code, "unsupported");
        assert!(msg.len() < 400, "{msg}");
    }

    #[test]
    fn json_errors_name_the_position() {
        let e = decode_document(b"{\n  \"url\": ,\n}").unwrap_err();
        assert_eq!(e.code(), "invalid_json");
        assert!(e.to_string().contains("line 2, column 10"), "{e}");
        let e = decode_document(b"{\"url\": \"/v1/").unwrap_err();
        assert_eq!(e.code(), "truncated_json");
        let e = decode_line(b"{\"a\":1,}").unwrap_err();
        assert!(e.to_string().contains("column 8"), "{e}");
        let e = decode_document(b"   ").unwrap_err();
        assert_eq!(e.code(), "empty_body");
        let e = decode_document(b"{\"a\":\"\xff\"}").unwrap_err();
        assert_eq!(e.code(), "invalid_utf8");
        assert!(e.to_string().contains("offset 6"), "{e}");
        assert_eq!(decode_document("\u{feff}{}".as_bytes()).unwrap(), json!({}));
    }

    #[test]
    fn content_types_are_matched_by_essence_and_charset() {
        assert!(check_content_type(Some("application/json"), JSON_TYPES).is_ok());
        assert!(check_content_type(Some("Application/JSON; charset=UTF-8"), JSON_TYPES).is_ok());
        assert!(check_content_type(Some("application/x-ndjson"), JSONL_TYPES).is_ok());
        for bad in [
            None,
            Some(""),
            Some("text/json"),
            Some("application/json; charset=latin1"),
        ] {
            let e = check_content_type(bad, JSON_TYPES).unwrap_err();
            assert_eq!(e.status(), 415, "{bad:?}");
        }
    }

    #[test]
    fn bulk_lines_keep_file_numbering_and_skip_blanks() {
        let lines = bulk_lines(b"{\"a\":1}\r\n\n  \n{\"b\":2}\n");
        let got: Vec<(usize, &[u8])> = lines.iter().map(|l| (l.number, l.bytes)).collect();
        assert_eq!(got, vec![(1, &b"{\"a\":1}"[..]), (4, &b"{\"b\":2}"[..])]);
        assert!(bulk_lines(b"\n\n").is_empty());
    }
}
