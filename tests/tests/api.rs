//! The HTTP API's happy paths, against the emulator: enqueue (one and bulk),
//! idempotent re-posts and conflicts, reading results inline and through a
//! presigned URL, cancelling, jobs with paging, and stats. Many go through
//! the real Lambda handler with API Gateway HTTP API (v2) events.

mod api_support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use api_support::{chat_line, event, fixture, post_bulk, post_json, ApiEnv, T0, TENANT};
use async_trait::async_trait;
use batchq_core::api::ApiRequest;
use batchq_core::ids::{CustomId, JobId, ModelName, ProviderBatchId, RequestKey, TenantId};
use batchq_core::job::{CostTotals, Job, JobError, JobStatus, ProviderBatchStatus, ProviderKind, RequestCounts};
use batchq_core::money::Money;
use batchq_core::placement::InlineLimits;
use batchq_core::request::{
    Endpoint, InsertOutcome, NewRequest, Payload, QueueGroup, Request, RequestResult, RequestStatus, Usage,
};
use batchq_core::store::dynamo::DynamoStore;
use batchq_core::store::placed::PlacedStore;
use batchq_core::store::{Applied, ObjectStore, Page, QueueGroupStats, RequestStore, StatusCounts, StoreError};
use batchq_core::time::Timestamp;
use batchq_core::transition::RequestUpdate;
use batchq_tests::stores::{Store, StoreKind};
use serde_json::{json, Value};

fn ts(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

fn rfc(offset_ms: i64) -> String {
    ts(offset_ms).to_rfc3339()
}

fn tenant() -> TenantId {
    TenantId::parse(TENANT).unwrap()
}

fn default_key(custom_id: &str) -> RequestKey {
    RequestKey::derive(&tenant(), &CustomId::parse(custom_id).unwrap())
}

fn chat_group() -> QueueGroup {
    QueueGroup::of(Endpoint::ChatCompletions, ModelName::parse("gpt-4o-mini").unwrap())
}

async fn stored(t: &ApiEnv, custom_id: &str) -> Request {
    t.stores
        .store
        .get(&default_key(custom_id))
        .await
        .unwrap()
        .expect("request stored")
}

/// A job in `preparing` that has claimed `custom_id`.
async fn claim(t: &ApiEnv, custom_id: &str, at: Timestamp) -> (Job, Request) {
    let mut job = Job::new(
        JobId::generate(),
        ProviderKind::OpenAi,
        &chat_group(),
        at,
        at.plus(Duration::from_secs(960)),
    );
    job.tenants = vec![tenant()];
    t.stores.store.create_job(&job).await.unwrap();
    let req = stored(t, custom_id).await;
    assert_eq!(
        t.stores
            .store
            .apply(RequestUpdate::claim(&req, &job.id, at))
            .await
            .unwrap(),
        Applied::Now
    );
    (job, stored(t, custom_id).await)
}

/// Claims `custom_id` and finishes it with a 200 response `response_json`.
async fn complete(t: &ApiEnv, custom_id: &str, response_json: &str) -> Job {
    let (job, claimed) = claim(t, custom_id, ts(1_000)).await;
    let result = RequestResult {
        key: claimed.key.clone(),
        job_id: job.id.clone(),
        status_code: Some(200),
        response: Some(Payload::Inline(response_json.to_owned())),
        error: None,
        usage: Some(Usage {
            input_tokens: 12,
            cached_input_tokens: 0,
            output_tokens: 5,
            reasoning_tokens: 0,
            cache_write_tokens: 0,
        }),
        batch_cost: Some(Money::from_picodollars(4_800_000)),
        realtime_cost: Some(Money::from_picodollars(9_600_000)),
        recorded_at: ts(2_000),
        request_id: None,
    };
    let finish = RequestUpdate::finish(&claimed, &job.id, RequestStatus::Completed, result, ts(2_000));
    assert_eq!(t.stores.store.apply(finish).await.unwrap(), Applied::Now);
    job
}

async fn post(t: &ApiEnv, line: &Value) -> api_support::Answer {
    t.call(post_json(line)).await
}

// ------------------------------------------------------------------ enqueue one

#[tokio::test]
async fn posting_a_request_through_api_gateway_queues_it_with_202() {
    let t = ApiEnv::new().await;
    let a = t.lambda(&fixture("post-request.json")).await;

    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.content_type.as_deref(), Some("application/json"));
    assert_eq!(a.header("location"), Some("/v1/requests/fixture-1"));
    assert_eq!(
        a.body,
        json!({
            "custom_id": "fixture-1",
            "status": "queued",
            "provider": "openai",
            "url": "/v1/chat/completions",
            "model": "gpt-4o-mini",
            "attempts": 0,
            "job_id": null,
            "body_bytes": 70,
            "created_at": rfc(0),
            "updated_at": rfc(0),
            "expires_at": null,
            "last_error": null,
        })
    );

    let req = stored(&t, "fixture-1").await;
    assert_eq!(req.status, RequestStatus::Queued);
    assert_eq!(req.tenant, tenant(), "the tenant comes from the IAM authorizer context");
    let bodies = t.stores.store.bodies(std::slice::from_ref(&req.key)).await.unwrap();
    assert_eq!(
        bodies[&req.key], r#"{"messages":[{"content":"Hello","role":"user"}],"model":"gpt-4o-mini"}"#,
        "the body is stored compact with sorted keys"
    );
}

#[tokio::test]
async fn reposting_the_same_request_answers_200_with_the_stored_one() {
    let t = ApiEnv::new().await;
    let first = post(&t, &chat_line("same-1", "hi")).await;
    assert_eq!(first.status, 202);
    let items = t.snapshot().await;

    t.clock.advance(Duration::from_secs(30));
    // Same content, other key order and whitespace, method left out.
    let again = ApiRequest::post(
        "/v1/requests",
        "application/json; charset=utf-8",
        r#"{ "body": {"messages": [{"content": "hi", "role": "user"}], "model": "gpt-4o-mini"},
             "url": "/v1/chat/completions", "custom_id": "same-1" }"#,
    );
    let a = t.call(again).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, first.body, "the stored request comes back unchanged");
    assert_eq!(a.header("location"), None);
    assert_eq!(t.snapshot().await, items, "nothing new was written");
}

#[tokio::test]
async fn reposting_a_custom_id_with_other_content_is_a_409_conflict() {
    let t = ApiEnv::new().await;
    assert_eq!(post(&t, &chat_line("taken", "first")).await.status, 202);
    let items = t.snapshot().await;

    let a = post(&t, &chat_line("taken", "second")).await;
    assert_eq!(a.status, 409);
    let (field, code, message) = a.error();
    assert_eq!((field, code), (Some("custom_id"), "conflict"));
    assert!(message.contains("\"taken\""), "{message}");
    assert_eq!(t.snapshot().await, items);

    // Another endpoint under the same id is other content too.
    let mut other_url = chat_line("taken", "first");
    other_url["url"] = "/v1/completions".into();
    assert_eq!(post(&t, &other_url).await.status, 409);
}

#[tokio::test]
async fn a_request_without_custom_id_gets_a_generated_one() {
    let t = ApiEnv::new().await;
    let a = post(
        &t,
        &json!({"url": "/v1/embeddings", "body": {"model": "text-embedding-3-small", "input": "x"}}),
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let id = a.body["custom_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("req_"), "{id}");
    let got = t.call(ApiRequest::get(format!("/v1/requests/{id}"))).await;
    assert_eq!((got.status, got.body["url"].as_str()), (200, Some("/v1/embeddings")));
}

#[tokio::test]
async fn a_body_above_the_inline_limit_is_accepted_and_kept_in_s3() {
    let t = ApiEnv::new().await;
    let big = "word ".repeat(5_000); // 25 KB, above the 16 KB inline limit
    let a = post(&t, &chat_line("big-1", &big)).await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert!(a.body["body_bytes"].as_u64().unwrap() > 25_000);
    assert_eq!(t.snapshot().await.objects, 1);
}

// ------------------------------------------------------------------ bulk

#[tokio::test]
async fn bulk_through_api_gateway_answers_one_outcome_per_line() {
    let t = ApiEnv::new().await;
    for name in ["post-bulk.json", "post-bulk-base64.json"] {
        let a = t.lambda(&fixture(name)).await;
        assert_eq!(a.status, 200, "{name}: {}", a.body);
        let results = a.body["results"].as_array().unwrap();
        assert_eq!(results.len(), 3, "{name}");
        let outcome = |i: usize| results[i]["outcome"].as_str().unwrap();
        let first_time = name == "post-bulk.json";
        let expected = if first_time { "created" } else { "existing" };
        assert_eq!(
            (outcome(0), outcome(1), outcome(2)),
            (expected, expected, "rejected"),
            "{name}"
        );
        assert_eq!(results[2]["line"], 3);
        assert_eq!(results[2]["custom_id"], "fixture-bulk-3");
        assert_eq!(results[2]["error"]["field"], "url");
        assert!(results[2]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/images/generations"));
        assert_eq!(results[0]["status"], "queued");
    }
    assert_eq!(stored(&t, "fixture-bulk-2").await.endpoint, Endpoint::Embeddings);
}

#[tokio::test]
async fn bulk_mixes_created_existing_conflict_and_rejected_lines() {
    let t = ApiEnv::new().await;
    assert_eq!(post(&t, &chat_line("old-same", "a")).await.status, 202);
    assert_eq!(post(&t, &chat_line("old-diff", "a")).await.status, 202);

    let lines = vec![
        chat_line("new-1", "x").to_string(),                                 // 1 created
        chat_line("old-same", "a").to_string(),                              // 2 existing
        chat_line("old-diff", "b").to_string(),                              // 3 conflict
        String::new(),                                                       // 4 blank: skipped
        r#"{"custom_id": "broken", "url": "/v1/chat/completions", "#.into(), // 5 truncated JSON
        chat_line("new-1", "x").to_string(),                                 // 6 same id again, same content
        chat_line("new-1", "other").to_string(),                             // 7 same id again, other content
        json!({"custom_id": "no-model", "url": "/v1/chat/completions", "body": {}}).to_string(), // 8
        chat_line("new-2", "y").to_string() + "\r",                          // 9 CRLF line end
    ];
    let a = t.call(post_bulk(&lines)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body["summary"],
        json!({"lines": 8, "created": 2, "existing": 2, "conflict": 2, "rejected": 2})
    );
    let by_line: HashMap<u64, &Value> = a.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r))
        .collect();
    let outcome = |n: u64| by_line[&n]["outcome"].as_str().unwrap();
    assert_eq!(outcome(1), "created");
    assert_eq!(outcome(2), "existing");
    assert_eq!(outcome(3), "conflict");
    assert_eq!(by_line[&3]["error"]["code"], "conflict");
    assert!(!by_line.contains_key(&4), "blank lines have no outcome");
    assert_eq!(outcome(5), "rejected");
    assert_eq!(by_line[&5]["error"]["code"], "truncated_json");
    assert_eq!(by_line[&5]["custom_id"], Value::Null);
    assert_eq!(outcome(6), "existing");
    assert_eq!(outcome(7), "conflict");
    assert_eq!(outcome(8), "rejected");
    assert_eq!(by_line[&8]["error"]["field"], "body.model");
    assert_eq!(by_line[&8]["custom_id"], "no-model");
    assert_eq!(outcome(9), "created");

    let counts = t.stores.store.counts(&tenant()).await.unwrap();
    assert_eq!(counts.get(RequestStatus::Queued), 4);
}

#[tokio::test]
async fn bulk_larger_than_one_insert_chunk_stores_every_line() {
    let t = ApiEnv::new().await;
    let n = batchq_core::api::INSERT_CHUNK + 30;
    let lines: Vec<String> = (0..n)
        .map(|i| chat_line(&format!("many-{i}"), "x").to_string())
        .collect();
    let a = t.call(post_bulk(&lines)).await;
    assert_eq!(a.status, 200, "{}", a.body["summary"]);
    assert_eq!(a.body["summary"]["created"], n);
    let lines_seen: Vec<u64> = a.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines_seen, (1..=n as u64).collect::<Vec<_>>());
    let counts = t.stores.store.counts(&tenant()).await.unwrap();
    assert_eq!(counts.get(RequestStatus::Queued), n as i64);
}

#[tokio::test]
async fn a_custom_id_repeated_in_a_later_part_of_a_bulk_call_finds_the_earlier_parts_row() {
    let t = ApiEnv::new().await;
    let part = batchq_core::api::STREAM_PART_LINES;
    let n = 2 * part + 10;
    let (same, other) = (part + 5, 2 * part + 1);
    let lines: Vec<String> = (0..n)
        .map(|i| match i {
            3 => chat_line("rep-1", "x"),
            i if i == same => chat_line("rep-1", "x"),
            i if i == other => chat_line("rep-1", "not x"),
            i => chat_line(&format!("part-{i}"), "x"),
        })
        .map(|v| v.to_string())
        .collect();
    let a = t.call(post_bulk(&lines)).await;
    assert_eq!(a.status, 200, "{}", a.body["summary"]);
    let results = a.body["results"].as_array().unwrap();
    assert_eq!(results[3]["outcome"], "created");
    assert_eq!(results[same]["outcome"], "existing");
    assert_eq!(results[other]["outcome"], "conflict");
    assert_eq!(results[other]["error"]["field"], "custom_id");
    assert_eq!(a.body["summary"]["created"], n - 2);
    let counts = t.stores.store.counts(&tenant()).await.unwrap();
    assert_eq!(counts.get(RequestStatus::Queued), n as i64 - 2);
}

// ------------------------------------------------------------------ read

#[tokio::test]
async fn a_queued_request_reads_back_through_api_gateway() {
    let t = ApiEnv::new().await;
    assert_eq!(t.lambda(&fixture("post-request.json")).await.status, 202);
    t.clock.advance(Duration::from_secs(5));

    let a = t.lambda(&fixture("get-request.json")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["status"], "queued");
    assert_eq!(a.body["custom_id"], "fixture-1");
    assert_eq!(a.body["job_id"], Value::Null);
    assert_eq!(a.body["job_status"], Value::Null);
    assert_eq!(a.body["result"], Value::Null);
    assert_eq!(a.body["created_at"], rfc(0));
}

#[tokio::test]
async fn a_claimed_request_shows_its_job_and_the_jobs_status() {
    let t = ApiEnv::new().await;
    assert_eq!(post(&t, &chat_line("c-1", "hi")).await.status, 202);
    let (job, _) = claim(&t, "c-1", ts(500)).await;

    let a = t.call(ApiRequest::get("/v1/requests/c-1")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["status"], "claimed");
    assert_eq!(a.body["attempts"], 1);
    assert_eq!(a.body["job_id"], job.id.as_str());
    assert_eq!(a.body["job_status"], "preparing");
    assert_eq!(a.body["updated_at"], rfc(500));
    assert_eq!(a.body["result"], Value::Null);
}

#[tokio::test]
async fn a_completed_request_embeds_its_response_as_json_with_costs() {
    let t = ApiEnv::new().await;
    assert_eq!(post(&t, &chat_line("done-1", "hi")).await.status, 202);
    let response = r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"}}],"usage":{"prompt_tokens":12,"completion_tokens":5}}"#;
    let job = complete(&t, "done-1", response).await;

    let a = t.call(ApiRequest::get("/v1/requests/done-1")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["status"], "completed");
    assert_eq!(
        a.body["job_status"],
        Value::Null,
        "only a claimed request shows its job's status"
    );
    let r = &a.body["result"];
    assert_eq!(r["job_id"], job.id.as_str());
    assert_eq!(r["status_code"], 200);
    assert_eq!(
        r["response"],
        serde_json::from_str::<Value>(response).unwrap(),
        "embedded as JSON, not a string"
    );
    assert_eq!(r["response_url"], Value::Null);
    assert_eq!(r["error"], Value::Null);
    assert_eq!(r["usage"]["input_tokens"], 12);
    assert_eq!(r["usage"]["output_tokens"], 5);
    assert_eq!(
        r["cost"],
        json!({"batch": "0.0000048", "realtime": "0.0000096", "saved": "0.0000048"})
    );
    assert_eq!(r["recorded_at"], rfc(2_000));
}

#[tokio::test]
async fn a_large_response_is_offered_as_a_presigned_url_valid_15_minutes() {
    // S3's presigned URL, fetched over HTTP: the emulator's.
    let t = ApiEnv::on(StoreKind::Emulator, |_| {}).await;
    assert_eq!(post(&t, &chat_line("large-1", "hi")).await.status, 202);
    let content = "x".repeat(40_000); // above the 16 KB inline result limit
    let response = json!({"id": "chatcmpl-2", "choices": [{"message": {"content": content}}]}).to_string();
    complete(&t, "large-1", &response).await;

    let a = t.call(ApiRequest::get("/v1/requests/large-1")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let r = &a.body["result"];
    assert_eq!(r["response"], Value::Null);
    let url = r["response_url"]["url"].as_str().expect("a presigned url");
    assert_eq!(r["response_url"]["bytes"], response.len());
    assert_eq!(r["response_url"]["expires_at"], ts(15 * 60 * 1000).to_rfc3339());
    assert!(url.contains("X-Amz-Expires=900"), "{url}");

    let fetched = reqwest::get(url).await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.text().await.unwrap(), response);
}

#[tokio::test]
async fn a_custom_id_in_the_path_may_be_percent_encoded() {
    let t = ApiEnv::new().await;
    assert_eq!(post(&t, &chat_line("team:42", "hi")).await.status, 202);
    let a = t
        .lambda(&event("GET", "/v1/requests/team%3A42", None, None, false))
        .await;
    assert_eq!((a.status, a.body["custom_id"].as_str()), (200, Some("team:42")));
}

#[tokio::test]
async fn an_unknown_request_is_404_and_tenants_do_not_see_each_other() {
    let t = ApiEnv::new().await;
    let a = t.call(ApiRequest::get("/v1/requests/nobody")).await;
    assert_eq!((a.status, a.error().1), (404, "not_found"));

    let created = t.call_as("team-a", post_json(&chat_line("shared-name", "hi"))).await;
    assert_eq!(created.status, 202);
    assert_eq!(
        t.call_as("team-a", ApiRequest::get("/v1/requests/shared-name"))
            .await
            .status,
        200
    );
    assert_eq!(
        t.call_as("team-b", ApiRequest::get("/v1/requests/shared-name"))
            .await
            .status,
        404
    );
    assert_eq!(
        t.call_as("team-b", ApiRequest::delete("/v1/requests/shared-name"))
            .await
            .status,
        404
    );
    // The same custom_id is free for another tenant.
    assert_eq!(
        t.call_as("team-b", post_json(&chat_line("shared-name", "other")))
            .await
            .status,
        202
    );
}

// ------------------------------------------------------------------ cancel

#[tokio::test]
async fn cancelling_a_queued_request_is_200_and_idempotent() {
    let t = ApiEnv::new().await;
    assert_eq!(t.lambda(&fixture("post-request.json")).await.status, 202);
    t.clock.advance(Duration::from_secs(3));

    let a = t.lambda(&fixture("delete-request.json")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["status"], "cancelled");
    assert_eq!(a.body["updated_at"], rfc(3_000));
    assert_eq!(stored(&t, "fixture-1").await.status, RequestStatus::Cancelled);

    let again = t.lambda(&fixture("delete-request.json")).await;
    assert_eq!((again.status, &again.body), (200, &a.body));

    let counts = t.stores.store.counts(&tenant()).await.unwrap();
    assert_eq!(
        (counts.get(RequestStatus::Queued), counts.get(RequestStatus::Cancelled)),
        (0, 1)
    );
}

#[tokio::test]
async fn a_claimed_or_finished_request_cannot_be_cancelled() {
    let t = ApiEnv::new().await;
    assert_eq!(post(&t, &chat_line("busy", "hi")).await.status, 202);
    let (job, _) = claim(&t, "busy", ts(100)).await;
    let a = t.call(ApiRequest::delete("/v1/requests/busy")).await;
    assert_eq!(a.status, 409);
    let (field, code, message) = a.error();
    assert_eq!((field, code), (None, "not_cancellable"));
    assert!(
        message.contains("claimed") && message.contains(job.id.as_str()),
        "{message}"
    );
    assert_eq!(stored(&t, "busy").await.status, RequestStatus::Claimed);

    assert_eq!(post(&t, &chat_line("finished", "hi")).await.status, 202);
    complete(&t, "finished", r#"{"ok":true}"#).await;
    let a = t.call(ApiRequest::delete("/v1/requests/finished")).await;
    assert_eq!((a.status, a.error().1), (409, "not_cancellable"));
}

#[tokio::test]
async fn cancelling_an_unknown_request_is_404() {
    let t = ApiEnv::new().await;
    let a = t.lambda(&fixture("delete-request.json")).await;
    assert_eq!((a.status, a.error().1), (404, "not_found"));
}

/// A request store that lets a submit run claim the request between the
/// API's read and its conditional cancel.
struct ClaimsFirst {
    inner: Arc<dyn Store>,
    job: JobId,
}

#[async_trait]
impl RequestStore for ClaimsFirst {
    async fn insert(&self, r: Vec<NewRequest>, now: Timestamp) -> Result<Vec<InsertOutcome>, StoreError> {
        self.inner.insert(r, now).await
    }
    async fn get(&self, key: &RequestKey) -> Result<Option<Request>, StoreError> {
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[RequestKey]) -> Result<HashMap<RequestKey, Request>, StoreError> {
        self.inner.get_many(keys).await
    }
    async fn get_with_result(&self, key: &RequestKey) -> Result<Option<(Request, Option<RequestResult>)>, StoreError> {
        self.inner.get_with_result(key).await
    }
    async fn bodies(&self, keys: &[RequestKey]) -> Result<HashMap<RequestKey, String>, StoreError> {
        self.inner.bodies(keys).await
    }
    async fn queued(&self, g: &QueueGroup, c: Option<String>, l: u32) -> Result<Page<Request>, StoreError> {
        self.inner.queued(g, c, l).await
    }
    async fn queue_groups(&self) -> Result<Vec<QueueGroupStats>, StoreError> {
        self.inner.queue_groups().await
    }
    async fn by_job(&self, j: &JobId, c: Option<String>, l: u32) -> Result<Page<Request>, StoreError> {
        self.inner.by_job(j, c, l).await
    }
    async fn apply(&self, update: RequestUpdate) -> Result<Applied, StoreError> {
        if update.to == RequestStatus::Cancelled {
            let current = self.inner.get(&update.key).await?.unwrap();
            self.inner
                .apply(RequestUpdate::claim(&current, &self.job, update.now))
                .await?;
        }
        self.inner.apply(update).await
    }
    async fn apply_many(&self, u: Vec<RequestUpdate>) -> Result<Vec<Result<Applied, StoreError>>, StoreError> {
        self.inner.apply_many(u).await
    }
    async fn counts(&self, tenant: &TenantId) -> Result<StatusCounts, StoreError> {
        self.inner.counts(tenant).await
    }

    async fn activity(
        &self,
        tenant: &TenantId,
        from: batchq_core::activity::Hour,
        to: batchq_core::activity::Hour,
    ) -> Result<batchq_core::activity::ActivityRows, StoreError> {
        self.inner.activity(tenant, from, to).await
    }

    async fn feed(
        &self,
        tenant: &TenantId,
        after: Option<&batchq_core::feed::FeedCursor>,
        limit: u32,
    ) -> Result<batchq_core::feed::FeedPage, StoreError> {
        self.inner.feed(tenant, after, limit).await
    }

    async fn feed_end(&self, tenant: &TenantId) -> Result<Option<batchq_core::feed::FeedCursor>, StoreError> {
        self.inner.feed_end(tenant).await
    }
}

#[tokio::test]
async fn a_cancel_that_loses_the_race_to_submit_is_409() {
    let t = ApiEnv::new().await;
    assert_eq!(post(&t, &chat_line("racy", "hi")).await.status, 202);
    let job = Job::new(
        JobId::generate(),
        ProviderKind::OpenAi,
        &chat_group(),
        ts(0),
        ts(960_000),
    );
    t.stores.store.create_job(&job).await.unwrap();

    let inner = t.stores.store.clone();
    let mut racing = t.api.clone();
    racing.ports.requests = Arc::new(ClaimsFirst {
        inner: inner.clone(),
        job: job.id.clone(),
    });
    let a = racing.handle(&tenant(), ApiRequest::delete("/v1/requests/racy")).await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "not_cancellable");
    assert_eq!(stored(&t, "racy").await.status, RequestStatus::Claimed);
}

// ------------------------------------------------------------------ jobs

/// A job holding requests of the fixtures' tenant.
fn job_at(offset_ms: i64) -> Job {
    let mut job = Job::new(
        JobId::generate(),
        ProviderKind::OpenAi,
        &chat_group(),
        ts(offset_ms),
        ts(offset_ms + 960_000),
    );
    job.tenants = vec![tenant()];
    job.tenant_count = 1;
    job
}

/// Stores a job the way submit does: its row and its tenants' job items.
async fn store_job(t: &ApiEnv, job: &Job) {
    t.stores.store.create_job(job).await.unwrap();
    t.stores.store.add_job_tenants(job, &job.tenants).await.unwrap();
}

#[tokio::test]
async fn jobs_are_listed_newest_first_in_pages() {
    let t = ApiEnv::new().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let job = job_at(i * 1_000);
        store_job(&t, &job).await;
        ids.push(job.id.to_string());
        // Job ids are time-ordered; keep them apart.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    ids.reverse();

    // First page through API Gateway (the fixture asks for limit=2).
    let first = t.lambda(&fixture("get-jobs.json")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let mut seen: Vec<String> = first.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen.len(), 2);
    let mut cursor = first.body["next_cursor"].as_str().map(str::to_owned);
    let mut pages = 1;
    while let Some(c) = cursor {
        let page = t
            .call(ApiRequest::get("/v1/jobs").with_query(format!("limit=2&cursor={c}")))
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        seen.extend(
            page.body["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_owned()),
        );
        cursor = page.body["next_cursor"].as_str().map(str::to_owned);
        pages += 1;
        assert!(pages <= 4, "paging must end");
    }
    assert_eq!(seen, ids, "every job once, newest first");

    let all = t.call(ApiRequest::get("/v1/jobs")).await;
    assert_eq!(all.body["jobs"].as_array().unwrap().len(), 5);
    assert_eq!(all.body["next_cursor"], Value::Null);
}

#[tokio::test]
async fn a_job_shows_its_progress_and_costs() {
    let t = ApiEnv::new().await;
    let mut job = job_at(0);
    job.status = JobStatus::InProgress;
    job.provider_status = Some(ProviderBatchStatus::InProgress);
    job.provider_batch_id = Some(ProviderBatchId::new("batch_abc"));
    job.input_lines = 3;
    job.input_bytes = 456;
    job.request_counts = RequestCounts {
        total: 3,
        completed: 1,
        failed: 1,
    };
    job.errors = vec![JobError {
        code: "invalid_request".into(),
        message: "line 2 is bad".into(),
        line: Some(2),
    }];
    job.totals = CostTotals {
        usage: Usage {
            input_tokens: 100,
            cached_input_tokens: 0,
            output_tokens: 50,
            reasoning_tokens: 0,
            cache_write_tokens: 0,
        },
        batch_cost: Money::from_picodollars(45_000_000),
        realtime_cost: Money::from_picodollars(90_000_000),
        unpriced_requests: 0,
    };
    job.submitted_at = Some(ts(1_000));
    t.stores.store.create_job(&job).await.unwrap();

    let a = t.call(ApiRequest::get(format!("/v1/jobs/{}", job.id))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let b = &a.body;
    assert_eq!(b["id"], job.id.as_str());
    assert_eq!(b["status"], "in_progress");
    assert_eq!(b["provider"], "openai");
    assert_eq!(b["provider_status"], "in_progress");
    assert_eq!(b["provider_batch_id"], "batch_abc");
    assert_eq!(
        (b["url"].as_str(), b["model"].as_str()),
        (Some("/v1/chat/completions"), Some("gpt-4o-mini"))
    );
    assert_eq!(b["input"], json!({"lines": 3, "bytes": 456}));
    assert_eq!(b["request_counts"], json!({"total": 3, "completed": 1, "failed": 1}));
    assert_eq!(
        b["errors"],
        json!([{"code": "invalid_request", "message": "line 2 is bad", "line": 2}])
    );
    assert_eq!(b["totals"]["batch_cost"], "0.000045");
    assert_eq!(b["totals"]["realtime_cost"], "0.00009");
    assert_eq!(b["totals"]["saved"], "0.000045");
    assert_eq!(b["totals"]["usage"]["output_tokens"], 50);
    assert_eq!(b["created_at"], rfc(0));
    assert_eq!(b["submitted_at"], rfc(1_000));
    assert_eq!(b["finished_at"], Value::Null);

    let missing = t.call(ApiRequest::get(format!("/v1/jobs/{}", JobId::generate()))).await;
    assert_eq!((missing.status, missing.error().1), (404, "not_found"));
}

// ------------------------------------------------------------------ stats

#[tokio::test]
async fn activity_lists_every_hour_with_its_counts_the_queue_by_model_and_failures() {
    use batchq_core::activity::Hour;
    let t = ApiEnv::new().await;
    let h0 = Hour::of(ts(0));
    let at = |hour: i64, secs: i64| Timestamp::from_millis(h0.plus(hour).start().millis() + secs * 1000);
    t.clock.set(at(0, 1));
    for id in ["a-1", "a-2", "a-3"] {
        assert_eq!(post(&t, &chat_line(id, "hi")).await.status, 202);
    }
    let emb = json!({"custom_id": "a-emb", "url": "/v1/embeddings", "body": {"model": "text-embedding-3-small", "input": "x"}});
    assert_eq!(post(&t, &emb).await.status, 202);
    // Hour 1: a-1 claimed, a-2 cancelled; hour 2: a-1 fails.
    let (job, claimed) = claim(&t, "a-1", at(1, 5)).await;
    t.clock.set(at(1, 6));
    assert_eq!(t.call(ApiRequest::delete("/v1/requests/a-2")).await.status, 200);
    let error = batchq_core::request::RequestError {
        code: "invalid_request".into(),
        message: "bad".into(),
        status_code: Some(400),
    };
    t.stores
        .store
        .apply(RequestUpdate::fail(&claimed, &job.id, error, at(2, 0)))
        .await
        .unwrap();
    t.clock.set(at(3, 0));

    let q = format!("from={}&to={}", h0, h0.plus(3));
    let a = t.call(ApiRequest::get("/v1/activity").with_query(q)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let hour = |h: i64, e: i64, f: i64, c: i64, mini: i64| {
        let mut queued = serde_json::Map::new();
        if mini > 0 {
            queued.insert("gpt-4o-mini".into(), json!(mini));
        }
        queued.insert("text-embedding-3-small".into(), json!(1));
        json!({"hour": h0.plus(h).to_string(), "enqueued": e, "completed": 0, "failed": f, "cancelled": c,
               "retried": 0, "queued_by_model": queued})
    };
    assert_eq!(
        a.body,
        json!({"tenant": TENANT, "from": h0.to_string(), "to": h0.plus(3).to_string(),
               "hours": [hour(0, 4, 0, 0, 3), hour(1, 0, 0, 1, 1), hour(2, 0, 1, 0, 1), hour(3, 0, 0, 0, 1)],
               "failures": [{"code": "invalid_request", "count": 1}],
               "total": {"enqueued": 4, "completed": 0, "failed": 1, "cancelled": 1, "retried": 0}})
    );
    // No range: the last 48 hours, the current one last.
    let d = t.call(ApiRequest::get("/v1/activity")).await;
    assert_eq!(d.status, 200, "{}", d.body);
    let hours = d.body["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 48);
    assert_eq!(hours[47]["hour"], h0.plus(3).to_string());
    assert_eq!(d.body["total"]["enqueued"], 4);
    // Another tenant sees none of it.
    let other = t.call_as("other", ApiRequest::get("/v1/activity")).await;
    assert_eq!(other.body["total"]["enqueued"], 0, "{}", other.body);
}

#[tokio::test]
async fn stats_count_requests_by_status_and_show_the_queues_age() {
    let t = ApiEnv::new().await;
    let empty = t.lambda(&fixture("get-stats.json")).await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(empty.body["requests"]["total"], 0);
    assert_eq!(empty.body["queue"]["oldest_queued_age_seconds"], Value::Null);
    assert_eq!(empty.body["jobs"]["open"], 0);

    for (i, id) in ["s-1", "s-2", "s-3", "s-4"].iter().enumerate() {
        t.clock.set(ts(i as i64 * 10_000));
        assert_eq!(post(&t, &chat_line(id, "hi")).await.status, 202);
    }
    t.clock.set(ts(40_000));
    let emb = json!({"custom_id": "s-emb", "url": "/v1/embeddings", "body": {"model": "text-embedding-3-small", "input": "x"}});
    assert_eq!(post(&t, &emb).await.status, 202);
    assert_eq!(t.call(ApiRequest::delete("/v1/requests/s-2")).await.status, 200);
    claim(&t, "s-1", ts(41_000)).await;
    t.clock.set(ts(100_000));

    let a = t.call(ApiRequest::get("/v1/stats")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body["requests"],
        json!({"by_status": {"queued": 3, "claimed": 1, "completed": 0, "failed": 0, "cancelled": 1}, "total": 5})
    );
    // s-3 (queued at 20 s) is the oldest still waiting: 80 s at 100 s.
    assert_eq!(a.body["queue"]["oldest_queued_age_seconds"], 80);
    // Per-group queue figures would tell about other tenants' traffic.
    assert_eq!(a.body["queue"].get("groups"), None);
    assert_eq!(a.body["quota"]["pending"], 4, "3 queued and 1 claimed");
    assert!(a.body["quota"]["pending_bytes"].as_u64().unwrap() > 0);
    assert_eq!(a.body["jobs"], json!({"open": 1, "by_status": {"preparing": 1}}));
    assert_eq!(a.body["generated_at"], rfc(100_000));
}

// ------------------------------------------------------------------ failures

#[tokio::test]
async fn a_storage_failure_is_a_503_that_reveals_nothing() {
    // DynamoDB's own failure (tables that do not exist), through the SDK.
    let t = ApiEnv::on(StoreKind::Emulator, |_| {}).await;
    let env = t.stores.emulator().expect("on the emulator");
    let broken = Arc::new(PlacedStore::new(
        DynamoStore::new(env.dynamo.clone(), "no-such-table-requests", "no-such-table-jobs"),
        env.s3.clone() as Arc<dyn ObjectStore>,
        InlineLimits {
            body_max: 16_384,
            result_max: 16_384,
        },
    ));
    let mut api = t.api.clone();
    api.ports.requests = broken.clone();
    api.ports.jobs = broken;
    for req in [
        post_json(&chat_line("x-1", "hi")),
        ApiRequest::get("/v1/requests/x-1"),
        ApiRequest::get("/v1/jobs"),
        ApiRequest::get("/v1/stats"),
    ] {
        let a = api.handle(&TenantId::default_tenant(), req).await;
        assert_eq!(a.status, 503, "{}", a.body);
        assert_eq!(a.body["error"]["code"], "unavailable");
        let text = a.body.to_string();
        assert!(!text.contains("no-such-table"), "{text}");
        assert!(!text.to_lowercase().contains("dynamo"), "{text}");
    }
}

#[tokio::test]
async fn the_dashboard_page_is_served_without_an_identity_and_its_data_is_not() {
    let env = ApiEnv::new().await;
    let edge = batchq_enqueue::Edge::new(env.api.clone(), "sub");
    let unsigned = |method: &str, path: &str| {
        let mut e = event(method, path, None, None, false);
        e["requestContext"].as_object_mut().unwrap().remove("authorizer");
        e
    };
    for asset in batchq_core::api::dashboard::ASSETS {
        let resp = batchq_enqueue::handle_json(&edge, unsigned("GET", asset.path))
            .await
            .unwrap();
        assert_eq!(resp.status_code, 200, "{}", asset.path);
        assert_eq!(resp.headers["content-type"], asset.content_type);
        assert_eq!(
            resp.headers["content-security-policy"],
            batchq_core::api::dashboard::CONTENT_SECURITY_POLICY
        );
        match &resp.body {
            Some(lambda_http::Body::Text(t)) => assert_eq!(t, asset.text),
            other => panic!("{other:?}"),
        }
    }
    // The routes the page reads still want an identity.
    let stats = batchq_enqueue::handle_json(&edge, unsigned("GET", "/v1/stats"))
        .await
        .unwrap();
    assert_eq!(stats.status_code, 401);
    // And an authenticated caller reaches the page through the core too.
    let page = env.call(ApiRequest::get("/dashboard")).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.content_type.as_deref(), Some("text/html; charset=utf-8"));
}
