//! Bad input never gets a 5xx and never writes anything. Each case below is
//! one malformed request; each must be refused with the exact 4xx status, an
//! error body `{"error": {"code", "message", "field"}}` whose field and
//! message name the problem, and unchanged tables and bucket. Most cases go
//! through the real Lambda handler as API Gateway HTTP API (v2) events.

mod api_support;

use api_support::{chat_line, event, post_event, Answer, ApiEnv};
use batchq_core::api::ApiRequest;
use serde_json::{json, Value};

const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";

/// How a case reaches the API.
enum Via {
    /// An API Gateway v2 event through `batchq_enqueue::handle`.
    Lambda(Value),
    /// The core directly (for payloads too big to be worth an event).
    Core(ApiRequest),
}

struct Case {
    name: &'static str,
    via: Via,
    status: u16,
    code: &'static str,
    /// `error.field`; `None` when the problem is not about one field.
    field: Option<&'static str>,
    /// A fragment the message must contain, naming the problem.
    mentions: &'static str,
}

fn lambda_post(body: &str) -> Via {
    Via::Lambda(post_event("/v1/requests", JSON, body))
}

/// A chat request line with `change` applied to it.
fn line_with(change: impl FnOnce(&mut Value)) -> String {
    let mut v = chat_line("bad-1", "hi");
    change(&mut v);
    v.to_string()
}

fn case(
    name: &'static str,
    via: Via,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
    mentions: &'static str,
) -> Case {
    Case {
        name,
        via,
        status,
        code,
        field,
        mentions,
    }
}

/// A fresh environment holding one good request, so "unchanged" is about
/// tables that have rows in them.
async fn seeded() -> ApiEnv {
    seeded_with(|_| {}).await
}

async fn seeded_with(tweak: impl FnOnce(&mut batchq_core::config::Config)) -> ApiEnv {
    let t = ApiEnv::with(tweak).await;
    let a = t.call(api_support::post_json(&chat_line("seed", "hello"))).await;
    assert_eq!(a.status, 202, "seeding: {}", a.body);
    t
}

async fn expect_refused(t: &ApiEnv, cases: Vec<Case>) {
    let before = t.snapshot().await;
    assert_eq!(before.objects, 0, "the seed request's body is inline");
    for c in cases {
        let a: Answer = match c.via {
            Via::Lambda(e) => t.lambda(&e).await,
            Via::Core(r) => t.call(r).await,
        };
        assert_eq!(a.status, c.status, "{}: status; body {}", c.name, a.body);
        assert_eq!(a.content_type.as_deref(), Some("application/json"), "{}", c.name);
        let (field, code, message) = a.error();
        assert_eq!(code, c.code, "{}: code; message {message:?}", c.name);
        assert_eq!(field, c.field, "{}: field; message {message:?}", c.name);
        assert!(
            message.contains(c.mentions),
            "{}: message {message:?} should mention {:?}",
            c.name,
            c.mentions
        );
        assert_eq!(t.snapshot().await, before, "{}: nothing may be written", c.name);
    }
}

#[tokio::test]
async fn malformed_json_is_refused_naming_where_it_breaks() {
    let t = seeded().await;
    let mut invalid_utf8 = br#"{"custom_id":"u-1","url":"/v1/chat/completions","body":{"model":"m","input":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe]);
    invalid_utf8.extend_from_slice(br#""}}"#);
    expect_refused(
        &t,
        vec![
            case(
                "not JSON at all",
                lambda_post("custom_id=1&url=x"),
                400,
                "invalid_json",
                None,
                "line 1, column 1",
            ),
            case(
                "a bare word inside an object",
                lambda_post(r#"{"url": /v1/chat/completions}"#),
                400,
                "invalid_json",
                None,
                "line 1, column 9",
            ),
            case(
                "truncated JSON",
                lambda_post(r#"{"custom_id":"t-1","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini""#),
                400,
                "truncated_json",
                None,
                "EOF",
            ),
            case(
                "an error on a later line",
                lambda_post("{\n  \"url\": \"/v1/chat/completions\",\n  \"body\": {\"model\": \"m\",}\n}"),
                400,
                "invalid_json",
                None,
                "line 3",
            ),
            case(
                "two objects in one single request",
                lambda_post(&(chat_line("two-1", "a").to_string() + &chat_line("two-2", "b").to_string())),
                400,
                "invalid_json",
                None,
                "trailing characters",
            ),
            case(
                "a JSON array instead of an object",
                lambda_post(&json!([chat_line("arr-1", "a")]).to_string()),
                400,
                "not_an_object",
                None,
                "an array",
            ),
            case(
                "a JSON string",
                lambda_post(r#""hello""#),
                400,
                "not_an_object",
                None,
                "a string",
            ),
            case("JSON null", lambda_post("null"), 400, "not_an_object", None, "null"),
            case(
                "an empty body",
                Via::Lambda(event("POST", "/v1/requests", Some(JSON), None, false)),
                400,
                "empty_body",
                None,
                "empty",
            ),
            case(
                "a whitespace-only body",
                lambda_post(" \n\t "),
                400,
                "empty_body",
                None,
                "empty",
            ),
            case(
                "invalid UTF-8 (base64-encoded by API Gateway)",
                Via::Lambda(event("POST", "/v1/requests", Some(JSON), Some(&invalid_utf8), true)),
                400,
                "invalid_utf8",
                None,
                "offset 77",
            ),
            case(
                "nesting deeper than the parser allows",
                lambda_post(&format!(
                    r#"{{"url":"/v1/chat/completions","body":{{"model":"m","x":{}{}}}}}"#,
                    "[".repeat(200),
                    "]".repeat(200)
                )),
                400,
                "invalid_json",
                None,
                "recursion limit",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn each_missing_or_mistyped_field_is_named() {
    let t = seeded().await;
    expect_refused(
        &t,
        vec![
            case(
                "a chat body posted without the batch-line envelope",
                lambda_post(r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#),
                400,
                "unknown_field",
                Some("messages"),
                "custom_id, method, url, body",
            ),
            case(
                "an unknown top-level field next to good ones",
                lambda_post(&line_with(|v| v["metadata"] = json!({"team": "x"}))),
                400,
                "unknown_field",
                Some("metadata"),
                "\"metadata\"",
            ),
            case(
                "custom_id is a number",
                lambda_post(&line_with(|v| v["custom_id"] = json!(42))),
                400,
                "wrong_type",
                Some("custom_id"),
                "a number",
            ),
            case(
                "custom_id has a space and a slash",
                lambda_post(&line_with(|v| v["custom_id"] = json!("a b/c"))),
                400,
                "invalid_characters",
                Some("custom_id"),
                "' '",
            ),
            case(
                "custom_id has non-ASCII letters",
                lambda_post(&line_with(|v| v["custom_id"] = json!("réq-1"))),
                400,
                "invalid_characters",
                Some("custom_id"),
                "'é'",
            ),
            case(
                "custom_id is 65 characters",
                lambda_post(&line_with(|v| v["custom_id"] = json!("x".repeat(65)))),
                400,
                "too_long",
                Some("custom_id"),
                "at most 64",
            ),
            case(
                "custom_id is empty",
                lambda_post(&line_with(|v| v["custom_id"] = json!(""))),
                400,
                "empty",
                Some("custom_id"),
                "must not be empty",
            ),
            case(
                "method is GET",
                lambda_post(&line_with(|v| v["method"] = json!("GET"))),
                400,
                "unsupported",
                Some("method"),
                "\"POST\"",
            ),
            case(
                "method is an array",
                lambda_post(&line_with(|v| v["method"] = json!(["POST"]))),
                400,
                "wrong_type",
                Some("method"),
                "an array",
            ),
            case(
                "url is missing",
                lambda_post(&line_with(|v| {
                    v.as_object_mut().unwrap().remove("url");
                })),
                400,
                "missing",
                Some("url"),
                "url is required",
            ),
            case(
                "url is an object",
                lambda_post(&line_with(|v| v["url"] = json!({"path": "/v1/chat/completions"}))),
                400,
                "wrong_type",
                Some("url"),
                "an object",
            ),
            case(
                "url is an endpoint batches do not serve",
                lambda_post(&line_with(|v| v["url"] = json!("/v1/images/generations"))),
                400,
                "unsupported",
                Some("url"),
                "/v1/chat/completions",
            ),
            case(
                "url is a GET-only endpoint",
                lambda_post(&line_with(|v| v["url"] = json!("/v1/models"))),
                400,
                "unsupported",
                Some("url"),
                "\"/v1/models\"",
            ),
            case(
                "url is absolute",
                lambda_post(&line_with(|v| {
                    v["url"] = json!("https://api.openai.com/v1/chat/completions")
                })),
                400,
                "unsupported",
                Some("url"),
                "not supported",
            ),
            case(
                "body is missing",
                lambda_post(&line_with(|v| {
                    v.as_object_mut().unwrap().remove("body");
                })),
                400,
                "missing",
                Some("body"),
                "body is required",
            ),
            case(
                "body is a string of JSON",
                lambda_post(&line_with(|v| v["body"] = json!(r#"{"model":"gpt-4o-mini"}"#))),
                400,
                "wrong_type",
                Some("body"),
                "a string",
            ),
            case(
                "body is an array",
                lambda_post(&line_with(|v| v["body"] = json!([{"model": "gpt-4o-mini"}]))),
                400,
                "wrong_type",
                Some("body"),
                "an array",
            ),
            case(
                "body has no model",
                lambda_post(&line_with(|v| {
                    v["body"].as_object_mut().unwrap().remove("model");
                })),
                400,
                "missing",
                Some("body.model"),
                "body.model is required",
            ),
            case(
                "model is a number",
                lambda_post(&line_with(|v| v["body"]["model"] = json!(4))),
                400,
                "wrong_type",
                Some("body.model"),
                "a number",
            ),
            case(
                "model is null",
                lambda_post(&line_with(|v| v["body"]["model"] = Value::Null)),
                400,
                "missing",
                Some("body.model"),
                "required",
            ),
            case(
                "model is empty",
                lambda_post(&line_with(|v| v["body"]["model"] = json!(""))),
                400,
                "empty",
                Some("body.model"),
                "non-empty",
            ),
            case(
                "model is too long",
                lambda_post(&line_with(|v| v["body"]["model"] = json!("m".repeat(300)))),
                400,
                "too_long",
                Some("body.model"),
                "256",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn wrong_routes_methods_and_content_types_are_refused() {
    let t = seeded().await;
    let good = chat_line("ok-1", "hi").to_string();
    expect_refused(
        &t,
        vec![
            case(
                "text/plain on the single route",
                Via::Lambda(post_event("/v1/requests", "text/plain", &good)),
                415,
                "unsupported_media_type",
                None,
                "application/json",
            ),
            case(
                "no content type",
                Via::Lambda(event("POST", "/v1/requests", None, Some(good.as_bytes()), false)),
                415,
                "unsupported_media_type",
                None,
                "missing",
            ),
            case(
                "a form post",
                Via::Lambda(post_event("/v1/requests", "application/x-www-form-urlencoded", &good)),
                415,
                "unsupported_media_type",
                None,
                "x-www-form-urlencoded",
            ),
            case(
                "JSON in another charset",
                Via::Lambda(post_event(
                    "/v1/requests",
                    "application/json; charset=ISO-8859-1",
                    &good,
                )),
                415,
                "unsupported_media_type",
                None,
                "UTF-8",
            ),
            case(
                "PUT on the enqueue route",
                Via::Lambda(event("PUT", "/v1/requests", Some(JSON), Some(good.as_bytes()), false)),
                405,
                "method_not_allowed",
                None,
                "POST",
            ),
            case(
                "listing requests is not a route",
                Via::Lambda(event("GET", "/v1/requests", None, None, false)),
                405,
                "method_not_allowed",
                None,
                "allowed: POST",
            ),
            case(
                "POST to a request's own path",
                Via::Lambda(post_event("/v1/requests/seed", JSON, &good)),
                405,
                "method_not_allowed",
                None,
                "GET, DELETE",
            ),
            case(
                "DELETE on stats",
                Via::Lambda(event("DELETE", "/v1/stats", None, None, false)),
                405,
                "method_not_allowed",
                None,
                "GET",
            ),
            case(
                "the provider's route instead of ours",
                Via::Lambda(post_event("/v1/chat/completions", JSON, &good)),
                404,
                "no_such_route",
                None,
                "/v1/chat/completions",
            ),
            case(
                "another API version",
                Via::Lambda(post_event("/v2/requests", JSON, &good)),
                404,
                "no_such_route",
                None,
                "/v1/requests",
            ),
            case(
                "a query parameter the route does not take",
                Via::Lambda(post_event("/v1/requests?dry_run=true", JSON, &good)),
                400,
                "unknown_parameter",
                Some("dry_run"),
                "takes none",
            ),
        ],
    )
    .await;

    // A 405 says what is allowed in the header too.
    let a = t
        .lambda(&event("PATCH", "/v1/requests/seed", Some(JSON), Some(b"{}"), false))
        .await;
    assert_eq!((a.status, a.header("allow")), (405, Some("GET, DELETE")));
}

#[tokio::test]
async fn bad_paths_and_query_parameters_are_400_not_404_or_500() {
    let t = seeded().await;
    expect_refused(
        &t,
        vec![
            case(
                "a custom_id in the path that is too long",
                Via::Lambda(event(
                    "GET",
                    &format!("/v1/requests/{}", "x".repeat(65)),
                    None,
                    None,
                    false,
                )),
                400,
                "too_long",
                Some("custom_id"),
                "at most 64",
            ),
            case(
                "a broken percent escape in the path",
                Via::Lambda(event("GET", "/v1/requests/a%zz", None, None, false)),
                400,
                "invalid_path",
                Some("custom_id"),
                "percent-encoded",
            ),
            case(
                "cancelling a custom_id with a space",
                Via::Lambda(event("DELETE", "/v1/requests/a%20b", None, None, false)),
                400,
                "invalid_characters",
                Some("custom_id"),
                "' '",
            ),
            case(
                "a job id that is not one",
                Via::Lambda(event("GET", "/v1/jobs/12345", None, None, false)),
                400,
                "invalid",
                Some("job_id"),
                "job_<32 hex digits>",
            ),
            case(
                "limit zero",
                Via::Lambda(event("GET", "/v1/jobs?limit=0", None, None, false)),
                400,
                "out_of_range",
                Some("limit"),
                "from 1 to 200",
            ),
            case(
                "limit above the maximum",
                Via::Lambda(event("GET", "/v1/jobs?limit=201", None, None, false)),
                400,
                "out_of_range",
                Some("limit"),
                "\"201\"",
            ),
            case(
                "limit not a number",
                Via::Core(ApiRequest::get("/v1/jobs").with_query("limit=ten")),
                400,
                "out_of_range",
                Some("limit"),
                "\"ten\"",
            ),
            case(
                "a cursor this API never issued",
                Via::Lambda(event(
                    "GET",
                    "/v1/jobs?cursor=eyJwayI6eyJTIjoieCJ9fQ",
                    None,
                    None,
                    false,
                )),
                400,
                "invalid_cursor",
                Some("cursor"),
                "next_cursor",
            ),
            case(
                "a misspelt parameter",
                Via::Core(ApiRequest::get("/v1/jobs").with_query("limt=5")),
                400,
                "unknown_parameter",
                Some("limt"),
                "limit, cursor",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn bad_activity_ranges_are_400_naming_the_bound() {
    let t = seeded().await;
    let get = |q: &str| Via::Core(ApiRequest::get("/v1/activity").with_query(q));
    expect_refused(
        &t,
        vec![
            case(
                "a day without its hour",
                get("from=2026-12-01"),
                400,
                "invalid_date",
                Some("from"),
                "YYYY-MM-DDTHH",
            ),
            case(
                "hour 24",
                get("to=2026-12-01T24"),
                400,
                "invalid_date",
                Some("to"),
                "\"2026-12-01T24\"",
            ),
            case(
                "a day that does not exist",
                get("from=2026-02-30T00&to=2026-03-01T00"),
                400,
                "invalid_date",
                Some("from"),
                "2026-02-30T00",
            ),
            case(
                "from after to",
                get("from=2026-12-02T00&to=2026-12-01T23"),
                400,
                "invalid_range",
                Some("from"),
                "after",
            ),
            case(
                "more than 31 days",
                get("from=2026-11-01T00&to=2026-12-02T00"),
                400,
                "invalid_range",
                Some("from"),
                "31 days",
            ),
            case(
                "a misspelt parameter",
                get("since=2026-12-01T00"),
                400,
                "unknown_parameter",
                Some("since"),
                "from, to",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn bulk_bodies_that_cannot_be_used_at_all_are_refused_whole() {
    let t = seeded().await;
    let all_bad = [
        r#"{"custom_id": "b-1", "url": "/v1/chat/completions"}"#.to_owned(),
        "not json".to_owned(),
        json!({"custom_id": "b-3", "url": "/v1/files", "body": {"model": "m"}}).to_string(),
    ]
    .join("\n");
    let over_cap = "{}\n".repeat(batchq_core::api::MAX_BULK_LINES + 1);
    expect_refused(
        &t,
        vec![
            case(
                "every line is bad",
                Via::Lambda(post_event("/v1/requests/bulk", NDJSON, &all_bad)),
                400,
                "no_valid_lines",
                Some("line 1: body"),
                "(3 rejected); line 1: body is required",
            ),
            case(
                "one line over the line cap",
                Via::Lambda(post_event("/v1/requests/bulk", NDJSON, &over_cap)),
                413,
                "too_many_lines",
                None,
                "at most 10000",
            ),
            case(
                "an empty bulk body",
                Via::Lambda(event("POST", "/v1/requests/bulk", Some(NDJSON), None, false)),
                400,
                "empty_body",
                None,
                "no lines",
            ),
            case(
                "a bulk body of blank lines",
                Via::Lambda(post_event("/v1/requests/bulk", NDJSON, "\n\r\n  \n")),
                400,
                "empty_body",
                None,
                "no lines",
            ),
            case(
                "a bulk body sent as one JSON array",
                Via::Lambda(post_event(
                    "/v1/requests/bulk",
                    JSON,
                    &json!([chat_line("arr", "x")]).to_string(),
                )),
                415,
                "unsupported_media_type",
                None,
                "application/x-ndjson",
            ),
            case(
                "a bulk body without content type",
                Via::Lambda(event("POST", "/v1/requests/bulk", None, Some(b"{}"), false)),
                415,
                "unsupported_media_type",
                None,
                "missing",
            ),
            case(
                "a bulk body whose only line is invalid UTF-8",
                Via::Lambda(event(
                    "POST",
                    "/v1/requests/bulk",
                    Some(NDJSON),
                    Some(b"{\"custom_id\":\"\xc3\x28\"}\n"),
                    true,
                )),
                400,
                "no_valid_lines",
                None,
                "not valid UTF-8",
            ),
        ],
    )
    .await;

    // The per-line outcomes still come with the refusal.
    let a = t.lambda(&post_event("/v1/requests/bulk", NDJSON, &all_bad)).await;
    let lines: Vec<u64> = a.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![1, 2, 3]);
    assert_eq!(a.body["results"][1]["error"]["code"], "invalid_json");
    assert_eq!(a.body["results"][2]["error"]["field"], "url");
}

#[tokio::test]
async fn oversized_bodies_and_payloads_are_413() {
    // A small body limit keeps the payloads small; the rule is the same at 4 MiB.
    let t = seeded_with(|c| c.limits.max_body_bytes = 1024).await;
    let big_body = line_with(|v| v["body"]["messages"][0]["content"] = json!("x".repeat(2_000)));
    let just_fits = line_with(|v| {
        v["custom_id"] = json!("fits");
        v["body"]["messages"][0]["content"] = json!("x".repeat(900));
    });
    let mut bulk_with_big_line = vec![big_body.clone()];
    bulk_with_big_line.push(r#"{"url": "/v1/embeddings"}"#.to_owned());
    expect_refused(
        &t,
        vec![
            case(
                "a body over the configured limit",
                lambda_post(&big_body),
                413,
                "too_large",
                Some("body"),
                "at most 1024",
            ),
            case(
                "a payload over the 10 MiB read limit",
                Via::Core(ApiRequest::post(
                    "/v1/requests",
                    JSON,
                    vec![b' '; batchq_core::api::MAX_PAYLOAD_BYTES + 1],
                )),
                413,
                "payload_too_large",
                None,
                "at most 10485760",
            ),
            case(
                "a bulk file over the 10 MiB read limit",
                Via::Core(ApiRequest::post(
                    "/v1/requests/bulk",
                    NDJSON,
                    "{}\n".repeat(batchq_core::api::MAX_PAYLOAD_BYTES / 3 + 1),
                )),
                413,
                "payload_too_large",
                None,
                "at most 10485760",
            ),
            case(
                "a bulk file whose lines are all too large or incomplete",
                Via::Core(api_support::post_bulk(&bulk_with_big_line)),
                400,
                "no_valid_lines",
                Some("line 1: body"),
                "at most 1024",
            ),
        ],
    )
    .await;

    // Whitespace outside `body` does not count: what is measured is the body
    // as stored (compact JSON).
    let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(&just_fits).unwrap()).unwrap();
    let padded = pretty.replace('\n', &format!("\n{}", " ".repeat(40)));
    assert!(padded.len() > 1024);
    let a = t.lambda(&post_event("/v1/requests", JSON, &padded)).await;
    assert_eq!(a.status, 202, "{}", a.body);
}

/// Bytes a URI may not hold raw, in the query API Gateway passes on:
/// lambda_http alone would panic building the request (a crashed instance,
/// a 5xx); the function encodes them and the API judges the parameter.
#[tokio::test]
async fn raw_bytes_in_the_query_string_are_a_400_not_a_crash() {
    let t = seeded().await;
    let before = t.snapshot().await;
    for raw in [
        "limit=1 2",
        "limit=\"5\"",
        "cursor=<script>",
        "limit=2&x=\u{7f}",
        "limit=%ZZ",
        "ünïcode=1",
    ] {
        let mut e = event("GET", "/v1/jobs", None, None, false);
        e["rawQueryString"] = raw.into();
        let a = t.lambda(&e).await;
        assert_eq!(a.status, 400, "{raw:?}: {}", a.body);
        assert!(
            a.error().0.is_some() || a.error().1 == "invalid_query",
            "{raw:?}: {}",
            a.body
        );
    }
    // A well-formed query still works after encoding.
    let mut e = event("GET", "/v1/jobs", None, None, false);
    e["rawQueryString"] = "limit=2".into();
    assert_eq!(t.lambda(&e).await.status, 200);
    assert_eq!(t.snapshot().await, before);
}
