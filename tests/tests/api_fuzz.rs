//! Thousands of generated malformed requests through the API, against the
//! emulator: bodies (mutated, damaged, cut short, arbitrary bytes), bulk
//! files whose every line is bad, content types, paths, query strings,
//! methods and missing identities, sent as API Gateway events through the
//! Lambda handler or as raw requests to the core. Every answer must be a
//! 4xx with a JSON error body (never a 5xx, never a panic), and afterwards
//! the tables and the bucket must be exactly as before.
//!
//! `CASES` cases a run (or `PROPTEST_CASES`), random seed; a failure is
//! shrunk and its seed saved next to this file (`*.proptest-regressions`,
//! commit it).

mod api_support;
mod fuzz_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use api_support::{chat_line, event, post_json, ApiEnv};
use batchq_core::api::parse::{bulk_lines, check_content_type, decode_line, parse_line, JSONL_TYPES, JSON_TYPES};
use batchq_core::api::query::percent_decode;
use batchq_core::api::{ApiRequest, Method};
use batchq_core::config::Config;
use fuzz_support::*;
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError, TestRunner};
use serde_json::Value;

/// Cases a run: about 10-20 s against the emulator on two cores.
const CASES: u32 = 3000;
/// Every this many cases the tables and bucket are compared in full.
const CHECK_EVERY: u32 = 250;
/// The body limit of the environment (small, so "too large" is reachable).
const BODY_LIMIT: u64 = 2048;

/// One malformed request and how it reaches the API.
#[derive(Debug, Clone)]
enum Sent {
    /// An API Gateway v2 event through `batchq_enqueue::handle`.
    Lambda { what: &'static str, event: Value },
    /// The core directly (bytes no event could carry).
    Core { what: &'static str, request: ApiRequest },
}

/// Whether a line of a request body would be accepted.
fn line_accepted(bytes: &[u8]) -> bool {
    decode_line(bytes)
        .ok()
        .is_some_and(|v| parse_line(v, BODY_LIMIT).is_ok())
}

/// A request body the single route must refuse.
fn bad_single_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => (valid_line(), prop::collection::vec(mutation(), 1..4)).prop_filter_map("still valid", |(mut v, ms)| {
            for m in &ms {
                apply(&mut v, m);
            }
            line_oracle(&v, BODY_LIMIT).is_err().then(|| v.to_string().into_bytes())
        }),
        2 => (valid_line(), prop::collection::vec(damage(), 1..4))
            .prop_map(|(v, d)| damaged(v.to_string().into_bytes(), &d)),
        1 => (valid_line(), any::<prop::sample::Index>()).prop_map(|(v, i)| {
            let text = v.to_string().into_bytes();
            let at = i.index(text.len());
            text[..at].to_vec()
        }),
        1 => prop::collection::vec(any::<u8>(), 0..300),
        1 => valid_line().prop_map(|mut v| {
            // Over BODY_LIMIT: 413.
            v["body"]["padding"] = "x".repeat(BODY_LIMIT as usize).into();
            v.to_string().into_bytes()
        }),
    ]
    .prop_filter("accepted", |b| !enqueue_accepts_with(b, BODY_LIMIT))
}

fn enqueue_accepts_with(bytes: &[u8], limit: u64) -> bool {
    batchq_core::api::parse::decode_document(bytes)
        .ok()
        .is_some_and(|v| parse_line(v, limit).is_ok())
}

/// A bulk body none of whose lines can be used.
fn bad_bulk_body() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(
            prop_oneof![
                4 => bad_single_body(),
                1 => Just(Vec::new()),
                1 => Just(b" \t".to_vec()),
            ],
            0..12,
        ),
        any::<bool>(),
    )
        .prop_map(|(lines, crlf)| lines.join(if crlf { &b"\r\n"[..] } else { &b"\n"[..] }))
        .prop_filter("a line is usable", |body| {
            bulk_lines(body).iter().all(|l| !line_accepted(l.bytes))
        })
}

fn good_body() -> impl Strategy<Value = Vec<u8>> {
    valid_line().prop_filter_map("too large", |v| {
        enqueue_accepts_with(v.to_string().as_bytes(), BODY_LIMIT).then(|| v.to_string().into_bytes())
    })
}

/// A Content-Type that `accepted` refuses (or none).
fn bad_content_type(accepted: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        3 => prop_oneof![
            Just("text/html".to_owned()),
            Just("application/json; charset=latin1".to_owned()),
            Just("application/x-www-form-urlencoded".to_owned()),
            Just("multipart/form-data; boundary=x".to_owned()),
            Just("application/jsonl".to_owned()),
            Just("application/json".to_owned()),
            Just("".to_owned()),
            "[a-z]{1,10}/[a-z.+-]{1,12}",
            "[ -~]{0,40}",
        ]
        .prop_map(Some),
    ]
    .prop_filter("accepted", move |ct| {
        check_content_type(ct.as_deref(), accepted).is_err()
    })
}

/// URI-safe query text (what API Gateway hands over), with at least one
/// parameter no route reads, so every route must refuse it.
fn bad_query(known: &'static [&'static str]) -> impl Strategy<Value = String> {
    let unknown = "[a-z_]{1,12}".prop_filter("known", move |n| !known.contains(&n.as_str()));
    let value = "[A-Za-z0-9._~-]{0,12}|%[0-9A-Fa-f]{2}|%[g-z]{2}|%";
    let other = prop_oneof![
        prop::sample::select([known, &["limit"]].concat()).prop_map(str::to_owned),
        Just(String::new()),
        "[a-z%+]{1,8}",
    ];
    (
        prop::collection::vec((other, value), 0..3),
        (unknown, value),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(mut pairs, (n, v), at)| {
            let at = at.index(pairs.len() + 1);
            pairs.insert(at, (n, v.to_owned()));
            pairs
                .into_iter()
                .map(|(n, v)| if v.is_empty() { n } else { format!("{n}={v}") })
                .collect::<Vec<_>>()
                .join("&")
        })
        .prop_filter("no parameter", |q| q.split('&').any(|p| !p.is_empty()))
}

/// Methods: the real ones, wrong case, and extension tokens.
fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"
        ]),
        prop::sample::select(vec!["get", "Post", "delete", "FOO", "M-SEARCH", "PROPFIND"]),
    ]
    .prop_map(str::to_owned)
}

/// A route shape and whether `method` on it could succeed without a bad
/// body or query: such combinations are not generated by the path family.
fn could_succeed(method: &str, raw_path: &str) -> bool {
    let path = match raw_path.strip_suffix('/') {
        Some(p) if !p.is_empty() => p,
        _ => raw_path,
    };
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    match (segments.as_slice(), method) {
        // POST bodies are bad in this family; GET/DELETE of an id other
        // than the seed's is a 404.
        (["v1", "requests", id], "GET" | "DELETE") => percent_decode(id, false).as_deref() == Some("seed"),
        (["v1", "jobs"] | ["v1", "stats"] | ["v1", "savings"], "GET") => true,
        _ => false,
    }
}

/// Paths: near misses of the routes and random ones, always starting with
/// `/` as API Gateway's rawPath does; only URI-safe characters and escapes.
fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        4 => prop::sample::select(vec![
            "v1", "v2", "V1", "requests", "request", "bulk", "jobs", "stats", "savings", "", ".", "..", "seed",
            "%2F", "%00", "%zz", "%", "job_0123456789abcdef0123456789abcdef", "a%20b", "%C3%A9", "%FF", "~",
        ])
        .prop_map(str::to_owned),
        1 => "[A-Za-z0-9._~:@!$&'()*+,;=-]{1,70}",
        1 => "(%[0-9A-F]{2}){1,6}",
    ];
    prop::collection::vec(segment, 0..5).prop_map(|segs| format!("/{}", segs.join("/")))
}

fn lambda(what: &'static str, method: &str, path: &str, query: &str, ct: Option<&str>, body: &[u8]) -> Sent {
    let pq = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    };
    let text = std::str::from_utf8(body).is_ok();
    let body = (!body.is_empty()).then_some(body);
    Sent::Lambda {
        what,
        event: event(method, &pq, ct, body, !text),
    }
}

fn core(what: &'static str, method: &str, path: &str, query: &str, ct: Option<String>, body: Vec<u8>) -> Sent {
    Sent::Core {
        what,
        request: ApiRequest {
            method: Method::parse(method),
            path: path.to_owned(),
            query: query.to_owned(),
            content_type: ct,
            webhook_headers: Default::default(),
            body: body.into(),
        },
    }
}

/// Read routes and the query parameters each takes.
const READ_ROUTES: [(&str, &[&str]); 5] = [
    ("/v1/jobs", &["limit", "cursor"]),
    ("/v1/stats", &[]),
    ("/v1/savings", &["from", "to", "group_by"]),
    ("/v1/requests/seed", &[]),
    ("/v1/jobs/job_0123456789abcdef0123456789abcdef", &[]),
];

/// One malformed request of any kind.
fn malformed() -> impl Strategy<Value = Sent> {
    let via_lambda = any::<bool>();
    prop_oneof![
        // A bad body on the single route.
        3 => (bad_single_body(), prop::sample::select(vec!["application/json", "application/json; charset=utf-8", "Application/JSON"]), via_lambda)
            .prop_map(|(b, ct, l)| if l {
                lambda("bad body", "POST", "/v1/requests", "", Some(ct), &b)
            } else {
                core("bad body", "POST", "/v1/requests", "", Some(ct.to_owned()), b)
            }),
        // A bulk file with no usable line.
        2 => (bad_bulk_body(), prop::sample::select(JSONL_TYPES.to_vec()), via_lambda)
            .prop_map(|(b, ct, l)| if l {
                lambda("bad bulk", "POST", "/v1/requests/bulk", "", Some(ct), &b)
            } else {
                core("bad bulk", "POST", "/v1/requests/bulk", "", Some(ct.to_owned()), b)
            }),
        // A good body with a content type the route does not read.
        1 => (good_body(), bad_content_type(JSON_TYPES), via_lambda)
            .prop_map(|(b, ct, l)| if l {
                lambda("bad content type", "POST", "/v1/requests", "", ct.as_deref(), &b)
            } else {
                core("bad content type", "POST", "/v1/requests", "", ct, b)
            }),
        1 => (good_body(), bad_content_type(JSONL_TYPES))
            .prop_map(|(b, ct)| core("bad bulk content type", "POST", "/v1/requests/bulk", "", ct, b)),
        // A good body with a query parameter the route does not take.
        1 => (good_body(), bad_query(&[]), any::<bool>(), via_lambda)
            .prop_map(|(b, q, bulk, l)| {
                let (path, ct) = if bulk { ("/v1/requests/bulk", "application/x-ndjson") } else { ("/v1/requests", "application/json") };
                if l { lambda("bad query on a write", "POST", path, &q, Some(ct), &b) } else { core("bad query on a write", "POST", path, &q, Some(ct.to_owned()), b) }
            }),
        // A good body with a method the route does not allow.
        1 => (good_body(), prop::sample::select(vec!["PUT", "PATCH", "DELETE", "GET", "OPTIONS", "post"]), via_lambda)
            .prop_map(|(b, m, l)| if l {
                lambda("wrong method", m, "/v1/requests", "", Some("application/json"), &b)
            } else {
                core("wrong method", m, "/v1/requests", "", Some("application/json".to_owned()), b)
            }),
        // Reads with bad queries.
        2 => prop::sample::select(READ_ROUTES.to_vec())
            .prop_flat_map(|(p, known)| (Just(p), bad_query(known), any::<bool>(), prop::sample::select(vec!["GET", "DELETE"])))
            .prop_map(|(p, q, l, m)| {
                // DELETE only on the request route: cancelling the seed with a
                // bad query must be refused before anything is written.
                let m = if p.starts_with("/v1/requests/") { m } else { "GET" };
                if l { lambda("bad query on a read", m, p, &q, None, b"") } else { core("bad query on a read", m, p, &q, None, Vec::new()) }
            }),
        // Bad values of known parameters.
        1 => prop_oneof![
            "limit=(0|201|-1|ten|1e2|%31%30%30%30|)".prop_map(|q| ("/v1/jobs", q)),
            "cursor=[A-Za-z0-9_-]{0,40}".prop_map(|q| ("/v1/jobs", q)),
            "limit=5&limit=6".prop_map(|q| ("/v1/jobs", q)),
            "(from=2026-13-01|to=yesterday|group_by=week|from=2026-11-30&to=2026-11-01|from=%zz)".prop_map(|q| ("/v1/savings", q)),
        ]
        .prop_map(|(p, q)| core("bad parameter value", "GET", p, &q, None, Vec::new())),
        // Paths and methods.
        3 => (method(), path(), bad_single_body(), bad_bulk_body(), via_lambda)
            .prop_filter("could succeed", |(m, p, ..)| !could_succeed(m, p))
            .prop_map(|(m, p, single, bulk, l)| {
                let body = if p.contains("bulk") { bulk } else { single };
                let ct = if p.contains("bulk") { "application/x-ndjson" } else { "application/json" };
                let valid_token = m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if l && valid_token { lambda("path or method", &m, &p, "", Some(ct), &body) } else { core("path or method", &m, &p, "", Some(ct.to_owned()), body) }
            }),
        // Anything at all in the path, query and method (the core only: no
        // event could carry these).
        1 => (tricky_string(40), tricky_string(20), tricky_string(8), bad_single_body())
            .prop_filter("could succeed", |(p, _, m, _)| !could_succeed(m, p))
            .prop_map(|(p, q, m, b)| {
                // A query the routes that take none refuse.
                let q = format!("{q}&x=1");
                core("raw path, query and method", &m, &p, &q, Some("application/json".to_owned()), b)
            }),
        // A good request whose identity API Gateway did not vouch for.
        1 => (good_body(), 0..3usize).prop_map(|(b, how)| {
            let mut e = event("POST", "/v1/requests", Some("application/json"), Some(&b), false);
            let ctx = &mut e["requestContext"];
            match how {
                0 => {
                    ctx.as_object_mut().unwrap().remove("authorizer");
                }
                1 => ctx["authorizer"]["iam"]["userArn"] = Value::Null,
                _ => ctx["authorizer"] = serde_json::json!({"jwt": {"claims": {"scope": "x"}, "scopes": null}}),
            }
            Sent::Lambda { what: "no identity", event: e }
        }),
    ]
}

/// Every stored row and every object key, for "nothing changed".
async fn everything(t: &ApiEnv) -> BTreeMap<String, String> {
    let mut out = t.stores.snapshot().await;
    for key in t.stores.object_keys().await {
        out.insert(format!("object {key}"), String::new());
    }
    out
}

#[test]
fn thousands_of_malformed_requests_get_4xx_and_write_nothing() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t = rt.block_on(async {
        let t = ApiEnv::with(|c: &mut Config| c.limits.max_body_bytes = BODY_LIMIT).await;
        let seeded = t.call(post_json(&chat_line("seed", "hello"))).await;
        assert_eq!(seeded.status, 202, "seeding: {}", seeded.body);
        t
    });
    let before = rt.block_on(everything(&t));
    assert!(!before.is_empty());

    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    let mut config = ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        // Filters (a mutated line that stayed valid, …) reject some draws.
        max_global_rejects: cases * 4,
        ..ProptestConfig::default()
    };
    config.source_file = Some(file!());
    let mut runner = TestRunner::new(config);
    let done = AtomicU32::new(0);
    let statuses = std::sync::Mutex::new(BTreeMap::<u16, u32>::new());
    let result = runner.run(&malformed(), |sent| {
        let (what, answer) = rt.block_on(async {
            match &sent {
                Sent::Lambda { what, event } => (*what, t.lambda(event).await),
                Sent::Core { what, request } => (*what, t.call(request.clone()).await),
            }
        });
        prop_assert!(
            (400..500).contains(&answer.status),
            "{what}: status {} for {sent:?}; body {}",
            answer.status,
            answer.body
        );
        prop_assert_eq!(answer.content_type.as_deref(), Some("application/json"));
        prop_assert!(answer.body["error"]["code"].is_string(), "{}: {}", what, answer.body);
        prop_assert!(answer.body["error"]["message"].is_string(), "{}: {}", what, answer.body);
        *statuses.lock().unwrap().entry(answer.status).or_default() += 1;
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(CHECK_EVERY) {
            let now = rt.block_on(everything(&t));
            if now != before {
                return Err(TestCaseError::fail(format!(
                    "{what}: something was written by now (after {n} cases, this one {sent:?})"
                )));
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert_eq!(
        rt.block_on(everything(&t)),
        before,
        "a malformed request wrote something"
    );
    let by_status = statuses.into_inner().unwrap();
    eprintln!("answers by status: {by_status:?}");
    // Every family reached the API: refusals of several kinds.
    for status in [400, 404, 405, 415] {
        assert!(by_status.get(&status).copied().unwrap_or(0) > 0, "{by_status:?}");
    }
}
