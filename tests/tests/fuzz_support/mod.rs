//! Strategies and rule statements shared by the property tests
//! (`fuzz_parsers.rs`) and the malformed-request test (`api_fuzz.rs`).

#![allow(dead_code)] // each test binary uses a different subset

use batchq_core::api::parse::{canonical_json, decode_document, parse_line, LINE_FIELDS};
use batchq_core::request::Endpoint;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// The body limit used unless a case picks its own.
pub const MAX_BODY: u64 = 4 * 1024 * 1024;

/// Characters that make parsers and escapers work: quotes, backslashes,
/// controls, a BOM, surrogates' neighbours, multi-byte letters.
pub fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => proptest::char::range('a', 'z'),
        2 => proptest::char::range('0', '9'),
        1 => prop::sample::select(vec![
            '"', '\\', '/', '\n', '\r', '\t', '\0', '\u{7f}', '\u{feff}', '\u{fffd}', '\u{d7ff}', '\u{e000}',
            '\u{10ffff}', 'é', 'ß', '中', '😀', ' ', ':', '.', '-', '_', '%', '{', '}', '[', ']', ',',
        ]),
        1 => any::<char>(),
    ]
}

pub fn tricky_string(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(tricky_char(), 0..=max).prop_map(|cs| cs.into_iter().collect())
}

/// A JSON number as text (serde_json keeps it exactly: arbitrary_precision).
pub fn json_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "0",
            "-0",
            "1e400",
            "-1e-400",
            "123456789012345678901234567890",
            "0.1000000000000000055511151231257827",
            "18446744073709551616",
            "-9223372036854775809",
            "4294967296",
            "65536",
            "200.0",
            "2e2",
        ])
        .prop_map(|s| serde_json::from_str::<Value>(s).unwrap()),
    ]
}

pub fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_number(),
        tricky_string(12).prop_map(Value::String),
    ]
}

/// Any JSON value, a few levels deep.
pub fn any_json() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key_name(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// Object keys: mostly the names the parsers look for, sometimes anything.
pub fn key_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "custom_id", "method", "url", "body", "model", "messages", "input", "id", "response",
            "status_code", "request_id", "error", "code", "message", "type", "usage", "prompt_tokens",
            "completion_tokens", "Custom_Id", "custom_id ", "",
        ])
        .prop_map(str::to_owned),
        1 => tricky_string(8),
    ]
}

pub fn valid_custom_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:-]{1,64}"
}

pub fn valid_model() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["gpt-4o-mini", "gpt-4.1-mini", "text-embedding-3-small", "o3", "ft:gpt-4o-mini:acme::x1"])
            .prop_map(str::to_owned),
        1 => "[a-zA-Z0-9 ._:/-]{0,20}[a-z][a-zA-Z0-9 ._:/-]{0,20}",
        1 => "[a-z]{1,3}[é中😀]{1,10}",
    ]
}

pub fn endpoint() -> impl Strategy<Value = Endpoint> {
    prop::sample::select(Endpoint::ALL.to_vec())
}

/// A request line every rule accepts.
pub fn valid_line() -> impl Strategy<Value = Value> {
    (
        prop::option::of(valid_custom_id()),
        any::<bool>(),
        endpoint(),
        valid_model(),
        prop::collection::vec((key_name(), any_json()), 0..4),
    )
        .prop_map(|(custom_id, method, endpoint, model, extra)| {
            let mut body = Map::new();
            for (k, v) in extra {
                body.insert(k, v);
            }
            body.insert("model".into(), model.into());
            let mut line = Map::new();
            if let Some(id) = custom_id {
                line.insert("custom_id".into(), id.into());
            }
            if method {
                line.insert("method".into(), "POST".into());
            }
            line.insert("url".into(), endpoint.as_str().into());
            line.insert("body".into(), Value::Object(body));
            Value::Object(line)
        })
}

/// One change to a request line; most make it invalid, some do not.
#[derive(Debug, Clone)]
pub enum Mutation {
    Set(&'static str, Value),
    Remove(&'static str),
    SetModel(Value),
    RemoveModel,
    AddField(String, Value),
    Replace(Value),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    let field = prop::sample::select(LINE_FIELDS.to_vec());
    let string_like = prop_oneof![
        tricky_string(80).prop_map(Value::String),
        valid_custom_id().prop_map(Value::String),
        "[a-z]{65,70}".prop_map(Value::String),
        prop::sample::select(vec![
            "POST",
            "post",
            "GET",
            "",
            " ",
            "/v1/chat/completions/",
            "/V1/chat/completions",
            "/v1/images/generations",
            "https://api.openai.com/v1/chat/completions",
            "/v1/embeddings?x=1",
            "/v1/chat/completions\0",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    prop_oneof![
        (field.clone(), prop_oneof![any_json(), string_like.clone()]).prop_map(|(f, v)| Mutation::Set(f, v)),
        field.prop_map(Mutation::Remove),
        prop_oneof![any_json(), string_like, "[a-z]{257,260}".prop_map(Value::String)].prop_map(Mutation::SetModel),
        Just(Mutation::RemoveModel),
        (key_name(), any_json()).prop_map(|(k, v)| Mutation::AddField(k, v)),
        any_json().prop_map(Mutation::Replace),
    ]
}

pub fn apply(line: &mut Value, m: &Mutation) {
    match m {
        Mutation::Replace(v) => *line = v.clone(),
        _ if !line.is_object() => {}
        Mutation::Set(f, v) => line[*f] = v.clone(),
        Mutation::Remove(f) => {
            line.as_object_mut().unwrap().remove(*f);
        }
        Mutation::SetModel(v) => {
            if let Some(b) = line.get_mut("body").and_then(Value::as_object_mut) {
                b.insert("model".into(), v.clone());
            }
        }
        Mutation::RemoveModel => {
            if let Some(b) = line.get_mut("body").and_then(Value::as_object_mut) {
                b.remove("model");
            }
        }
        Mutation::AddField(k, v) => {
            line.as_object_mut().unwrap().insert(k.clone(), v.clone());
        }
    }
}

/// How a byte string is damaged.
#[derive(Debug, Clone)]
pub enum Damage {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Cut(usize),
    Duplicate(usize, usize),
}

pub fn damage() -> impl Strategy<Value = Damage> {
    let fragment = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..8),
        prop::sample::select(vec![
            "\n", "\r\n", "\"", "\\", "\\u", "\\ud800", "{", "}", "[", "]", ",", ":", "null", "1e999", "\u{feff}",
            "\u{2028}", "\u{0}",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::Flip(i, b)),
        (any::<usize>(), fragment).prop_map(|(i, f)| Damage::Insert(i, f)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Damage::Delete(i, n)),
        any::<usize>().prop_map(Damage::Cut),
        (any::<usize>(), 1usize..32).prop_map(|(i, n)| Damage::Duplicate(i, n)),
    ]
}

pub fn damaged(mut bytes: Vec<u8>, damages: &[Damage]) -> Vec<u8> {
    for d in damages {
        let len = bytes.len();
        let at = |i: usize| if len == 0 { 0 } else { i % (len + 1) };
        match d {
            Damage::Flip(i, b) if len > 0 => bytes[i % len] ^= b | 1,
            Damage::Flip(..) => {}
            Damage::Insert(i, f) => {
                let i = at(*i);
                bytes.splice(i..i, f.iter().copied());
            }
            Damage::Delete(i, n) => {
                let i = at(*i);
                let end = (i + n).min(len);
                bytes.drain(i..end);
            }
            Damage::Cut(i) => bytes.truncate(at(*i)),
            Damage::Duplicate(i, n) => {
                let i = at(*i);
                let end = (i + n).min(len);
                let piece = bytes[i..end].to_vec();
                bytes.splice(i..i, piece);
            }
        }
    }
    bytes
}

pub fn custom_id_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

pub fn model_ok(s: &str) -> bool {
    !s.trim().is_empty() && s.len() <= 256 && !s.chars().any(char::is_control)
}

/// The rules of a request line, stated independently of `parse_line`:
/// `Ok(Some(custom_id))`/`Ok(None)` (generated) when accepted, else the
/// field the refusal must name (`None`: not about one field).
pub fn line_oracle(v: &Value, max_body: u64) -> Result<Option<String>, Option<String>> {
    let Some(obj) = v.as_object() else {
        return Err(None);
    };
    if let Some(k) = obj.keys().find(|k| !LINE_FIELDS.contains(&k.as_str())) {
        return Err(Some(k.chars().take(80).collect()));
    }
    let custom_id = match obj.get("custom_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if custom_id_ok(s) => Some(s.clone()),
        Some(_) => return Err(Some("custom_id".into())),
    };
    match obj.get("method") {
        None | Some(Value::Null) => {}
        Some(Value::String(m)) if m == "POST" => {}
        Some(_) => return Err(Some("method".into())),
    }
    match obj.get("url") {
        Some(Value::String(u)) if Endpoint::ALL.iter().any(|e| e.as_str() == u) => {}
        _ => return Err(Some("url".into())),
    }
    match obj.get("provider") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(_) => return Err(Some("provider".into())),
    }
    let Some(Value::Object(body)) = obj.get("body") else {
        return Err(Some("body".into()));
    };
    match body.get("model") {
        Some(Value::String(m)) if model_ok(m) => {}
        _ => return Err(Some("body.model".into())),
    }
    if canonical_json(&Value::Object(body.clone())).len() as u64 > max_body {
        return Err(Some("body".into()));
    }
    Ok(custom_id)
}

/// For `ok-`/`bad-` files: whether the single-request route's parsers
/// accept the whole file.
pub fn enqueue_accepts(bytes: &[u8]) -> bool {
    decode_document(bytes)
        .ok()
        .is_some_and(|v| parse_line(v, MAX_BODY).is_ok())
}
