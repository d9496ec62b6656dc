//! Helpers for the API tests: the API core over private stores (in memory,
//! or on the emulator: `BATCHQ_TEST_STORE`, see `batchq_tests::stores`), API Gateway HTTP API (v2) events built from the fixtures in
//! `tests/fixtures/apigw/`, and "nothing was written" snapshots.

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use batchq_core::api::{Api, ApiRequest, ApiResponse};
use batchq_core::ids::TenantId;
use batchq_core::time::{ManualClock, Timestamp};
use batchq_tests::stores::{StoreKind, Stores};
use serde_json::Value;

/// The tenant of the fixtures' caller: their IAM authorizer context names
/// a session of the role `batch-worker` of account 123456789012.
pub const TENANT: &str = "123456789012:role:batch-worker";

/// 2026-09-21T…: a fixed start so timestamps in answers are predictable.
pub const T0: i64 = 1_790_000_000_000;

/// The API core over fresh stores, with a clock that only moves when told to.
pub struct ApiEnv {
    pub stores: Stores,
    pub api: Api,
    pub clock: Arc<ManualClock>,
}

/// What a response looked like to a caller.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `error.field`, `error.code` and `error.message` of an error answer.
    pub fn error(&self) -> (Option<&str>, &str, &str) {
        let e = &self.body["error"];
        assert!(e.is_object(), "expected an error body, got {}", self.body);
        (
            e["field"].as_str(),
            e["code"].as_str().expect("error.code"),
            e["message"].as_str().expect("error.message"),
        )
    }
}

impl From<ApiResponse> for Answer {
    fn from(r: ApiResponse) -> Self {
        Self {
            status: r.status,
            content_type: Some(r.content_type().to_owned()),
            headers: r.headers.iter().map(|(n, v)| (n.to_string(), v.clone())).collect(),
            body: r.body,
        }
    }
}

/// Rows and objects, for "a refused request wrote nothing".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub rows: std::collections::BTreeMap<String, String>,
    pub objects: usize,
}

impl ApiEnv {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut batchq_core::config::Config)) -> Self {
        Self::on(StoreKind::from_env(), tweak).await
    }

    /// The API over stores of `kind`.
    pub async fn on(kind: StoreKind, tweak: impl FnOnce(&mut batchq_core::config::Config)) -> Self {
        let stores = Stores::on(kind, tweak).await;
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
        let api = Api::new(stores.ports(clock.clone()), &stores.config.limits);
        Self { stores, api, clock }
    }

    /// Calls the core directly, as [`TENANT`] (the fixtures' caller).
    pub async fn call(&self, req: ApiRequest) -> Answer {
        self.api.handle(&TenantId::parse(TENANT).unwrap(), req).await.into()
    }

    /// Calls the core as `tenant`.
    pub async fn call_as(&self, tenant: &str, req: ApiRequest) -> Answer {
        let tenant = TenantId::parse(tenant).unwrap();
        self.api.handle(&tenant, req).await.into()
    }

    /// Sends an API Gateway v2 event (JSON text) through the Lambda handler.
    pub async fn lambda(&self, event: &Value) -> Answer {
        lambda_answer(&self.api, event).await
    }

    pub async fn snapshot(&self) -> Snapshot {
        Snapshot {
            rows: self.stores.snapshot().await,
            objects: self.stores.object_keys().await.len(),
        }
    }
}

/// Sends an API Gateway v2 event (JSON text) through the enqueue Lambda
/// handler over `api`, as API Gateway would.
pub async fn lambda_answer(api: &Api, event: &Value) -> Answer {
    let edge = batchq_enqueue::Edge::new(api.clone(), "sub");
    // The event as the Lambda runtime hands it over: JSON, converted by the
    // function itself.
    let resp = batchq_enqueue::handle_json(&edge, event.clone())
        .await
        .expect("the handler never fails");
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    let content_type = resp.headers.get("content-type").map(|v| v.to_str().unwrap().to_owned());
    assert!(!resp.is_base64_encoded);
    let text = match &resp.body {
        Some(lambda_http::Body::Text(s)) => s.clone(),
        other => panic!("expected a text body, got {other:?}"),
    };
    Answer {
        status: resp.status_code as u16,
        body: serde_json::from_str(&text).expect("the body is JSON"),
        content_type,
        headers,
    }
}

/// A fixture event from `tests/fixtures/apigw/`.
pub fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/apigw/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// An HTTP API v2 event for `method path?query`, built on the realistic
/// POST fixture: headers, request context and stage stay as API Gateway
/// sends them; `body` is sent as text, or base64-encoded when `base64`.
pub fn event(
    method: &str,
    path_and_query: &str,
    content_type: Option<&str>,
    body: Option<&[u8]>,
    base64: bool,
) -> Value {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let mut e = fixture("post-request.json");
    let route = format!("{method} {path}");
    e["routeKey"] = route.clone().into();
    e["requestContext"]["routeKey"] = route.into();
    e["rawPath"] = path.into();
    e["requestContext"]["http"]["path"] = path.into();
    e["requestContext"]["http"]["method"] = method.into();
    e["rawQueryString"] = query.into();
    let headers = e["headers"].as_object_mut().unwrap();
    headers.remove("content-length");
    match content_type {
        Some(ct) => {
            headers.insert("content-type".into(), ct.into());
        }
        None => {
            headers.remove("content-type");
        }
    }
    let obj = e.as_object_mut().unwrap();
    match body {
        None => {
            obj.remove("body");
            obj.insert("isBase64Encoded".into(), false.into());
        }
        Some(bytes) if base64 => {
            obj.insert("body".into(), STANDARD.encode(bytes).into());
            obj.insert("isBase64Encoded".into(), true.into());
        }
        Some(bytes) => {
            let text = std::str::from_utf8(bytes).expect("a text body; use base64 for bytes");
            obj.insert("body".into(), text.into());
            obj.insert("isBase64Encoded".into(), false.into());
        }
    }
    e
}

/// A POST event with a JSON text body.
pub fn post_event(path: &str, content_type: &str, body: &str) -> Value {
    event("POST", path, Some(content_type), Some(body.as_bytes()), false)
}

/// A chat-completion request line.
pub fn chat_line(custom_id: &str, text: &str) -> Value {
    serde_json::json!({
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    })
}

/// `POST /v1/requests` with a JSON value.
pub fn post_json(v: &Value) -> ApiRequest {
    ApiRequest::post("/v1/requests", "application/json", v.to_string())
}

/// `POST /v1/requests/bulk` with these lines joined by newlines.
pub fn post_bulk(lines: &[String]) -> ApiRequest {
    ApiRequest::post("/v1/requests/bulk", "application/x-ndjson", lines.join("\n"))
}
