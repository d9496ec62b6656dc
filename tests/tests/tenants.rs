//! Tenants: who a caller is comes from the edge (API Gateway's IAM or JWT
//! authorizer, or a bearer key of `batchq serve`), and each tenant sees and
//! touches only its own requests, jobs, stats and savings. Quotas per tenant
//! refuse with 429 and write nothing. Finished rows carry their TTL.

mod api_support;

use std::time::Duration;

use api_support::{chat_line, event, post_bulk, post_json, ApiEnv, T0};
use batchq_core::api::ApiRequest;
use batchq_core::ids::{CustomId, JobId, ModelName, RequestKey, TenantId};
use batchq_core::job::{Job, JobStatus, ProviderKind};
use batchq_core::money::Money;
use batchq_core::request::{Endpoint, NewRequest, Payload, QueueGroup, RequestResult, RequestStatus, Usage};
use batchq_core::store::{SavingsRow, SavingsTotals};
use batchq_core::time::Timestamp;
use batchq_core::transition::RequestUpdate;
use batchq_tests::scan_all;
use batchq_tests::stores::StoreKind;
use serde_json::{json, Value};

const ACME: &str = "acme";
const GLOBEX: &str = "globex";

fn tenant(t: &str) -> TenantId {
    TenantId::parse(t).unwrap()
}

fn key(t: &str, custom_id: &str) -> RequestKey {
    RequestKey::derive(&tenant(t), &CustomId::parse(custom_id).unwrap())
}

fn group() -> QueueGroup {
    QueueGroup::of(Endpoint::ChatCompletions, ModelName::parse("gpt-4o-mini").unwrap())
}

fn line_with_model(custom_id: &str, model: &str) -> Value {
    json!({
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": "hello"}]}
    })
}

/// A job holding the given (tenant, custom_id) requests, each claimed and
/// then completed with a small priced result.
async fn finished_job(t: &ApiEnv, requests: &[(&str, &str)]) -> Job {
    let now = Timestamp::from_millis(T0 + 1_000);
    let mut job = Job::new(
        JobId::generate(),
        ProviderKind::OpenAi,
        &group(),
        now,
        now.plus(Duration::from_secs(960)),
    );
    t.stores.store.create_job(&job).await.unwrap();
    let mut tenants: Vec<TenantId> = requests.iter().map(|(tn, _)| tenant(tn)).collect();
    tenants.sort();
    tenants.dedup();
    for (tn, id) in requests {
        let req = t.stores.store.get(&key(tn, id)).await.unwrap().expect("stored");
        t.stores
            .store
            .apply(RequestUpdate::claim(&req, &job.id, now))
            .await
            .unwrap();
        let claimed = t.stores.store.get(&key(tn, id)).await.unwrap().unwrap();
        let result = RequestResult {
            key: claimed.key.clone(),
            job_id: job.id.clone(),
            status_code: Some(200),
            response: Some(Payload::Inline(r#"{"id":"chatcmpl-1","choices":[]}"#.into())),
            error: None,
            usage: Some(Usage {
                input_tokens: 10,
                cached_input_tokens: 0,
                output_tokens: 4,
                reasoning_tokens: 0,
                cache_write_tokens: 0,
            }),
            batch_cost: Some(Money::from_picodollars(1_000_000)),
            realtime_cost: Some(Money::from_picodollars(2_000_000)),
            recorded_at: now,
            request_id: None,
        };
        let finish = RequestUpdate::finish(&claimed, &job.id, RequestStatus::Completed, result, now);
        t.stores.store.apply(finish).await.unwrap();
    }
    // As submit records them: one item per tenant, a bounded list on the row.
    t.stores.store.add_job_tenants(&job, &tenants).await.unwrap();
    let mut next = job.clone();
    next.tenant_count = tenants.len() as u64;
    next.tenants = tenants.into_iter().take(batchq_core::job::MAX_JOB_TENANTS).collect();
    next.status = JobStatus::Staged;
    next.input_lines = requests.len() as u64;
    next.request_counts.total = requests.len() as u64;
    job = t.stores.store.save_job(&job, next).await.unwrap();
    job
}

// ------------------------------------------------------------------ isolation per route

#[tokio::test]
async fn another_tenants_request_is_invisible_and_cannot_be_cancelled() {
    let t = ApiEnv::new().await;
    let created = t.call_as(ACME, post_json(&chat_line("order-1", "acme's prompt"))).await;
    assert_eq!(created.status, 202, "{}", created.body);

    let seen = t.call_as(GLOBEX, ApiRequest::get("/v1/requests/order-1")).await;
    assert_eq!(seen.status, 404, "{}", seen.body);
    assert!(
        !seen.body.to_string().contains("acme"),
        "a 404 must not hint at the owner: {}",
        seen.body
    );

    let cancelled = t.call_as(GLOBEX, ApiRequest::delete("/v1/requests/order-1")).await;
    assert_eq!(cancelled.status, 404, "{}", cancelled.body);

    let mine = t.call_as(ACME, ApiRequest::get("/v1/requests/order-1")).await;
    assert_eq!(mine.status, 200);
    assert_eq!(mine.body["status"], "queued", "globex's cancel touched acme's request");
}

#[tokio::test]
async fn the_same_custom_id_from_another_tenant_is_a_separate_request_and_overwrites_nothing() {
    let t = ApiEnv::new().await;
    assert_eq!(
        t.call_as(ACME, post_json(&line_with_model("order-1", "gpt-4o-mini")))
            .await
            .status,
        202
    );
    // A different body under the same id: for acme a 409, for globex its own request.
    let other = line_with_model("order-1", "gpt-4.1-mini");
    assert_eq!(t.call_as(ACME, post_json(&other)).await.status, 409);
    let theirs = t.call_as(GLOBEX, post_json(&other)).await;
    assert_eq!(theirs.status, 202, "{}", theirs.body);
    let bulk = t
        .call_as(
            GLOBEX,
            post_bulk(&[line_with_model("order-2", "gpt-4.1-mini").to_string()]),
        )
        .await;
    assert_eq!(bulk.status, 200);
    assert_eq!(bulk.body["summary"]["created"], 1);

    let acme = t.call_as(ACME, ApiRequest::get("/v1/requests/order-1")).await;
    assert_eq!(acme.body["model"], "gpt-4o-mini", "acme's request was overwritten");
    let globex = t.call_as(GLOBEX, ApiRequest::get("/v1/requests/order-1")).await;
    assert_eq!(globex.body["model"], "gpt-4.1-mini");
    assert_eq!(
        t.call_as(ACME, ApiRequest::get("/v1/requests/order-2")).await.status,
        404
    );

    // Cancelling globex's copy leaves acme's queued.
    assert_eq!(
        t.call_as(GLOBEX, ApiRequest::delete("/v1/requests/order-1"))
            .await
            .status,
        200
    );
    let acme = t.stores.store.get(&key(ACME, "order-1")).await.unwrap().unwrap();
    assert_eq!(acme.status, RequestStatus::Queued);
}

#[tokio::test]
async fn jobs_are_listed_and_shown_only_to_tenants_with_requests_in_them() {
    let t = ApiEnv::new().await;
    for (tn, id) in [(ACME, "a-1"), (ACME, "a-2"), (GLOBEX, "g-1")] {
        assert_eq!(t.call_as(tn, post_json(&chat_line(id, "x"))).await.status, 202);
    }
    let acme_only = finished_job(&t, &[(ACME, "a-1")]).await;
    let shared = finished_job(&t, &[(ACME, "a-2"), (GLOBEX, "g-1")]).await;

    let path = |j: &Job| format!("/v1/jobs/{}", j.id);
    // globex: acme's own job does not exist for it, the shared one does.
    assert_eq!(t.call_as(GLOBEX, ApiRequest::get(path(&acme_only))).await.status, 404);
    let listed = t.call_as(GLOBEX, ApiRequest::get("/v1/jobs")).await;
    let ids: Vec<&str> = listed.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![shared.id.as_str()]);

    // A shared job hides the figures that would tell about the other tenant.
    let seen = t.call_as(GLOBEX, ApiRequest::get(path(&shared))).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.body["shared"], true);
    for hidden in ["request_counts", "totals", "input", "provider_batch_id"] {
        assert_eq!(
            seen.body[hidden],
            Value::Null,
            "{hidden} of a shared job: {}",
            seen.body
        );
    }

    // acme sees both; its own job in full.
    let listed = t.call_as(ACME, ApiRequest::get("/v1/jobs")).await;
    assert_eq!(listed.body["jobs"].as_array().unwrap().len(), 2);
    let own = t.call_as(ACME, ApiRequest::get(path(&acme_only))).await;
    assert_eq!(own.body["shared"], false);
    assert_eq!(own.body["request_counts"]["total"], 1);

    // A third tenant sees no job at all, even with a page size of one.
    let none = t
        .call_as("initech", ApiRequest::get("/v1/jobs").with_query("limit=1"))
        .await;
    assert_eq!(none.body["jobs"], json!([]), "{}", none.body);
}

#[tokio::test]
async fn stats_and_savings_count_only_the_callers_requests() {
    let t = ApiEnv::new().await;
    for id in ["a-1", "a-2", "a-3"] {
        t.call_as(ACME, post_json(&chat_line(id, "x"))).await;
    }
    t.call_as(GLOBEX, post_json(&chat_line("g-1", "x"))).await;
    let day = Timestamp::from_millis(T0).to_rfc3339()[..10].to_owned();
    t.stores
        .store
        .add_savings(
            "test#1",
            vec![SavingsRow {
                tenant: tenant(ACME),
                day,
                provider: batchq_core::ids::ProviderName::default_name(),
                model: ModelName::parse("gpt-4o-mini").unwrap(),
                totals: SavingsTotals {
                    requests: 3,
                    batch_cost: Money::from_picodollars(5_000_000_000),
                    realtime_cost: Money::from_picodollars(10_000_000_000),
                    ..Default::default()
                },
            }],
        )
        .await
        .unwrap();

    let g = t.call_as(GLOBEX, ApiRequest::get("/v1/stats")).await;
    assert_eq!(g.status, 200, "{}", g.body);
    assert_eq!(g.body["tenant"], GLOBEX);
    assert_eq!(g.body["requests"]["total"], 1);
    assert_eq!(g.body["quota"]["pending"], 1);
    assert_eq!(g.body["savings"]["requests"], 0, "{}", g.body);
    assert!(
        g.body["queue"].get("groups").is_none(),
        "other tenants' queues are not shown"
    );

    let a = t.call_as(ACME, ApiRequest::get("/v1/stats")).await;
    assert_eq!(a.body["requests"]["total"], 3);
    assert_eq!(a.body["savings"]["requests"], 3);

    let gs = t.call_as(GLOBEX, ApiRequest::get("/v1/savings")).await;
    assert_eq!(gs.status, 200, "{}", gs.body);
    assert_eq!(gs.body["tenant"], GLOBEX);
    assert!(
        !gs.body.to_string().contains("0.005"),
        "acme's savings leaked: {}",
        gs.body
    );
    let as_ = t.call_as(ACME, ApiRequest::get("/v1/savings")).await;
    assert!(as_.body.to_string().contains("0.005"), "{}", as_.body);
}

// ------------------------------------------------------------------ identity at the Lambda edge

fn with_iam(mut e: Value, arn: &str) -> Value {
    e["requestContext"]["authorizer"] = json!({"iam": {
        "accessKey": "ASIAXAMPLEKEY1234567", "accountId": "123456789012",
        "callerId": "AROAEXAMPLE:s", "cognitoIdentity": null, "principalOrgId": null,
        "userArn": arn, "userId": "AROAEXAMPLE:s"
    }});
    e
}

fn with_jwt(mut e: Value, claims: Value) -> Value {
    e["requestContext"]["authorizer"] = json!({"jwt": {"claims": claims, "scopes": null}});
    e
}

fn post_event(custom_id: &str) -> Value {
    let body = chat_line(custom_id, "hi").to_string();
    event(
        "POST",
        "/v1/requests",
        Some("application/json"),
        Some(body.as_bytes()),
        false,
    )
}

fn get_event(custom_id: &str) -> Value {
    event("GET", &format!("/v1/requests/{custom_id}"), None, None, false)
}

#[tokio::test]
async fn the_lambda_takes_the_tenant_from_the_iam_principal_not_the_request() {
    let t = ApiEnv::new().await;
    let alice = "arn:aws:sts::123456789012:assumed-role/team-a/session-1";
    let bob = "arn:aws:sts::123456789012:assumed-role/team-b/session-1";
    // A tenant named in the body is not a field batchq reads: refused as unknown.
    let mut sneaky = chat_line("r-0", "hi");
    sneaky["tenant"] = json!("team-b");
    let body = sneaky.to_string();
    let e = event(
        "POST",
        "/v1/requests",
        Some("application/json"),
        Some(body.as_bytes()),
        false,
    );
    assert_eq!(t.lambda(&with_iam(e, alice)).await.status, 400);

    assert_eq!(t.lambda(&with_iam(post_event("r-1"), alice)).await.status, 202);
    let stored = t
        .stores
        .store
        .get(&key("123456789012:role:team-a", "r-1"))
        .await
        .unwrap();
    assert!(stored.is_some(), "stored under the IAM principal's tenant");
    // Another session of the same role is the same tenant; another role is not.
    let other_session = "arn:aws:sts::123456789012:assumed-role/team-a/session-2";
    assert_eq!(t.lambda(&with_iam(get_event("r-1"), other_session)).await.status, 200);
    assert_eq!(t.lambda(&with_iam(get_event("r-1"), bob)).await.status, 404);
}

/// IAM allows a user and a role of the same name in one account; they are
/// different principals and must not see each other's requests.
#[tokio::test]
async fn an_iam_user_and_a_role_of_the_same_name_are_different_tenants() {
    let t = ApiEnv::new().await;
    let user = "arn:aws:iam::123456789012:user/team-a";
    let role = "arn:aws:sts::123456789012:assumed-role/team-a/session-1";

    assert_eq!(t.lambda(&with_iam(post_event("r-1"), user)).await.status, 202);
    assert!(t
        .stores
        .store
        .get(&key("123456789012:user:team-a", "r-1"))
        .await
        .unwrap()
        .is_some());
    // The role does not see the user's request ...
    assert_eq!(t.lambda(&with_iam(get_event("r-1"), role)).await.status, 404);
    assert_eq!(
        t.lambda(&with_iam(event("DELETE", "/v1/requests/r-1", None, None, false), role))
            .await
            .status,
        404
    );
    // ... and posting the same custom_id creates the role's own request.
    assert_eq!(t.lambda(&with_iam(post_event("r-1"), role)).await.status, 202);
    assert!(t
        .stores
        .store
        .get(&key("123456789012:role:team-a", "r-1"))
        .await
        .unwrap()
        .is_some());
    let stats = |arn: &str| with_iam(event("GET", "/v1/stats", None, None, false), arn);
    let user_stats = t.lambda(&stats(user)).await.body;
    let role_stats = t.lambda(&stats(role)).await.body;
    assert_eq!(user_stats["tenant"], "123456789012:user:team-a");
    assert_eq!(role_stats["tenant"], "123456789012:role:team-a");
    assert_eq!(user_stats["requests"]["total"], 1);
    assert_eq!(role_stats["requests"]["total"], 1);
}

#[tokio::test]
async fn the_lambda_refuses_events_without_an_authorizer_identity_and_writes_nothing() {
    let t = ApiEnv::new().await;
    let before = t.snapshot().await;
    let mut e = post_event("r-1");
    e["requestContext"].as_object_mut().unwrap().remove("authorizer");
    let a = t.lambda(&e).await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(a.error().1, "unauthorized");
    assert_eq!(a.header("www-authenticate"), Some("Bearer"));
    // A principal whose name cannot be a tenant id is refused, not folded.
    let odd = with_iam(post_event("r-2"), "arn:aws:iam::123456789012:user/a+b@example.com");
    let a = t.lambda(&odd).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(t.snapshot().await, before);
}

#[tokio::test]
async fn behind_the_jwt_authorizer_the_configured_claim_names_the_tenant() {
    let t = ApiEnv::new().await;
    let e = with_jwt(post_event("r-1"), json!({"sub": "team-7", "iss": "https://issuer"}));
    assert_eq!(t.lambda(&e).await.status, 202);
    assert!(t.stores.store.get(&key("team-7", "r-1")).await.unwrap().is_some());
    let other = with_jwt(get_event("r-1"), json!({"sub": "team-8"}));
    assert_eq!(t.lambda(&other).await.status, 404);
    let before = t.snapshot().await;
    let no_claim = with_jwt(post_event("r-2"), json!({"iss": "https://issuer"}));
    assert_eq!(t.lambda(&no_claim).await.status, 403);
    assert_eq!(t.snapshot().await, before);
}

// ------------------------------------------------------------------ quotas

#[tokio::test]
async fn a_tenant_over_its_request_quota_gets_429_and_nothing_is_written() {
    let t = ApiEnv::with(|c| c.limits.tenant_max_pending = 3).await;
    for id in ["a-1", "a-2"] {
        assert_eq!(t.call_as(ACME, post_json(&chat_line(id, "x"))).await.status, 202);
    }
    let before = t.snapshot().await;
    // A bulk call that would pass the quota is refused whole.
    let bulk = t
        .call_as(
            ACME,
            post_bulk(&[chat_line("a-3", "x").to_string(), chat_line("a-4", "x").to_string()]),
        )
        .await;
    assert_eq!(bulk.status, 429, "{}", bulk.body);
    assert_eq!(bulk.error().1, "quota_exceeded");
    assert!(bulk.error().2.contains("quota of 3"), "{}", bulk.error().2);
    assert!(bulk.header("retry-after").is_some());
    assert_eq!(t.snapshot().await, before, "a refused call wrote something");

    assert_eq!(t.call_as(ACME, post_json(&chat_line("a-3", "x"))).await.status, 202);
    assert_eq!(t.call_as(ACME, post_json(&chat_line("a-4", "x"))).await.status, 429);
    // Other tenants have their own quota.
    assert_eq!(t.call_as(GLOBEX, post_json(&chat_line("g-1", "x"))).await.status, 202);
    // A finished request frees its place.
    assert_eq!(
        t.call_as(ACME, ApiRequest::delete("/v1/requests/a-1")).await.status,
        200
    );
    assert_eq!(t.call_as(ACME, post_json(&chat_line("a-4", "x"))).await.status, 202);
    let stats = t.call_as(ACME, ApiRequest::get("/v1/stats")).await;
    assert_eq!(stats.body["quota"]["pending"], 3);
    assert_eq!(stats.body["quota"]["max_pending"], 3);
}

#[tokio::test]
async fn a_tenant_over_its_byte_quota_gets_429_until_requests_finish() {
    let t = ApiEnv::with(|c| c.limits.tenant_max_pending_bytes = 400).await;
    let body_bytes = |a: &api_support::Answer| a.body["body_bytes"].as_u64().unwrap();
    let first = t.call_as(ACME, post_json(&chat_line("a-1", &"x".repeat(150)))).await;
    assert_eq!(first.status, 202);
    assert!(body_bytes(&first) > 150);
    let before = t.snapshot().await;
    let big = t.call_as(ACME, post_json(&chat_line("a-2", &"y".repeat(250)))).await;
    assert_eq!(big.status, 429, "{}", big.body);
    assert!(big.error().2.contains("bytes"), "{}", big.error().2);
    assert_eq!(t.snapshot().await, before);

    let stats = t.call_as(ACME, ApiRequest::get("/v1/stats")).await;
    assert_eq!(stats.body["quota"]["pending_bytes"].as_u64(), Some(body_bytes(&first)));
    t.call_as(ACME, ApiRequest::delete("/v1/requests/a-1")).await;
    let stats = t.call_as(ACME, ApiRequest::get("/v1/stats")).await;
    assert_eq!(
        stats.body["quota"]["pending_bytes"], 0,
        "a finished request still counts"
    );
    assert_eq!(
        t.call_as(ACME, post_json(&chat_line("a-2", &"y".repeat(250))))
            .await
            .status,
        202
    );
}

#[tokio::test]
async fn a_bulk_call_that_fits_the_byte_quota_only_by_its_compact_bodies_is_accepted() {
    // Before parsing, a bulk call is judged by its lines' length (a body is
    // never longer than its line); a call that passes only with the bodies'
    // compact length is parsed first and judged exactly.
    let t = ApiEnv::with(|c| c.limits.tenant_max_pending_bytes = 1000).await;
    let padded = |id: &str| {
        chat_line(id, "x")
            .to_string()
            .replace(',', &format!(",{}", " ".repeat(120)))
    };
    let lines = [padded("p-1"), padded("p-2")];
    let raw: usize = lines.iter().map(String::len).sum();
    assert!(raw > 1000, "the lines must pass the quota by their length ({raw})");
    let a = t.call_as(ACME, post_bulk(&lines)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["summary"]["created"], 2);
    let stats = t.call_as(ACME, ApiRequest::get("/v1/stats")).await;
    assert!(stats.body["quota"]["pending_bytes"].as_u64().unwrap() <= 1000);

    // And one whose compact bodies pass it is refused whole.
    let before = t.snapshot().await;
    let big: Vec<String> = (0..8)
        .map(|i| chat_line(&format!("b-{i}"), &"y".repeat(100)).to_string())
        .collect();
    let refused = t.call_as(ACME, post_bulk(&big)).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(t.snapshot().await, before, "a refused call wrote something");
}

// ------------------------------------------------------------------ TTL of finished rows

fn expires_at(
    items: &[std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>],
    pk: &str,
    sk: &str,
) -> Option<i64> {
    let item = items
        .iter()
        .find(|i| i["pk"].as_s().unwrap() == pk && i["sk"].as_s().unwrap() == sk)
        .unwrap_or_else(|| panic!("no item {pk}/{sk}"));
    item.get("expires_at").map(|v| v.as_n().unwrap().parse().unwrap())
}

#[tokio::test]
async fn finished_requests_and_jobs_expire_after_the_retention_and_unfinished_ones_do_not() {
    // Retention is DynamoDB's TTL: the in-memory store keeps rows for good.
    let t = ApiEnv::on(StoreKind::Emulator, |c| {
        c.policy.retention = Some(Duration::from_secs(7 * 86_400))
    })
    .await;
    for id in ["done", "cancelled", "waiting"] {
        t.call_as(ACME, post_json(&chat_line(id, "x"))).await;
    }
    finished_job(&t, &[(ACME, "done")]).await;
    t.call_as(ACME, ApiRequest::delete("/v1/requests/cancelled")).await;
    // A job expires from when it finished; an unfinished one never.
    let now = Timestamp::from_millis(T0);
    let job = Job::new(JobId::generate(), ProviderKind::OpenAi, &group(), now, now);
    t.stores.store.create_job(&job).await.unwrap();
    let mut done_job = job.clone();
    done_job.status = JobStatus::Done;
    done_job.finished_at = Some(Timestamp::from_millis(T0 + 5_000));
    t.stores.store.save_job(&job, done_job).await.unwrap();
    let open = Job::new(JobId::generate(), ProviderKind::OpenAi, &group(), now, now);
    t.stores.store.create_job(&open).await.unwrap();

    let items = scan_all(
        &t.stores.emulator().expect("on the emulator").dynamo,
        &t.stores.config.requests_table,
    )
    .await;
    let finished_at = (T0 + 1_000) / 1000;
    let week = 7 * 86_400;
    let done = key(ACME, "done");
    assert_eq!(expires_at(&items, done.as_str(), "state"), Some(finished_at + week));
    assert_eq!(expires_at(&items, done.as_str(), "result"), Some(finished_at + week));
    let cancelled = key(ACME, "cancelled");
    assert_eq!(expires_at(&items, cancelled.as_str(), "state"), Some(T0 / 1000 + week));
    let waiting = key(ACME, "waiting");
    assert_eq!(expires_at(&items, waiting.as_str(), "state"), None);
    // Bodies get theirs when written (never rewritten at the finish): the
    // retention plus a horizon no unfinished request reaches.
    let horizon = batchq_core::store::dynamo::BODY_HORIZON.as_secs() as i64;
    for k in [&done, &cancelled, &waiting] {
        assert_eq!(expires_at(&items, k.as_str(), "body"), Some(T0 / 1000 + week + horizon));
    }

    let jobs = scan_all(
        &t.stores.emulator().expect("on the emulator").dynamo,
        &t.stores.config.jobs_table,
    )
    .await;
    assert_eq!(
        expires_at(&jobs, &format!("job#{}", job.id), "job"),
        Some((T0 + 5_000) / 1000 + week)
    );
    assert_eq!(expires_at(&jobs, &format!("job#{}", open.id), "job"), None);
    let shown = t.call_as(ACME, ApiRequest::get("/v1/requests/done")).await;
    assert_eq!(
        shown.body["expires_at"],
        Timestamp::from_millis((finished_at + week) * 1000).to_rfc3339()
    );
    assert_eq!(
        t.call_as(ACME, ApiRequest::get("/v1/requests/waiting")).await.body["expires_at"],
        Value::Null
    );
}

#[tokio::test]
async fn with_retention_off_nothing_expires() {
    let t = ApiEnv::on(StoreKind::Emulator, |c| c.policy.retention = None).await;
    t.call_as(ACME, post_json(&chat_line("done", "x"))).await;
    finished_job(&t, &[(ACME, "done")]).await;
    let items = scan_all(
        &t.stores.emulator().expect("on the emulator").dynamo,
        &t.stores.config.requests_table,
    )
    .await;
    assert!(items.iter().all(|i| !i.contains_key("expires_at")), "{items:?}");
}

#[tokio::test]
async fn a_finished_requests_large_body_is_deleted_from_s3_and_an_unfinished_ones_kept() {
    use batchq_core::keys;
    let t = ApiEnv::with(|c| c.limits.inline_body_max_bytes = 64).await;
    for id in ["done", "cancelled", "waiting"] {
        let a = t
            .call_as(ACME, post_json(&chat_line(id, &"long prompt ".repeat(20))))
            .await;
        assert_eq!(a.status, 202);
    }
    let object_of = |id: &str| {
        let t = &t;
        let id = id.to_owned();
        async move {
            let r = t.stores.store.get(&key(ACME, &id)).await.unwrap().unwrap();
            keys::body(&r.key, &r.content_hash)
        }
    };
    let (done, cancelled, waiting) = (
        object_of("done").await,
        object_of("cancelled").await,
        object_of("waiting").await,
    );
    for k in [&done, &cancelled, &waiting] {
        assert!(
            t.stores.objects.head(k).await.unwrap().is_some(),
            "{k} was stored in S3"
        );
    }
    let queued = t.stores.store.get(&key(ACME, "cancelled")).await.unwrap().unwrap();
    finished_job(&t, &[(ACME, "done")]).await;
    assert_eq!(
        t.call_as(ACME, ApiRequest::delete("/v1/requests/cancelled"))
            .await
            .status,
        200
    );
    assert!(
        t.stores.objects.head(&done).await.unwrap().is_none(),
        "a completed request's body stays"
    );
    assert!(
        t.stores.objects.head(&cancelled).await.unwrap().is_none(),
        "a cancelled request's body stays"
    );
    assert!(
        t.stores.objects.head(&waiting).await.unwrap().is_some(),
        "a queued request lost its body"
    );
    // A replayed terminal update (as after a crash before the delete)
    // deletes the body again and writes nothing else.
    t.stores
        .objects
        .put(&cancelled, "{}".into(), "application/json")
        .await
        .unwrap();
    let replay = RequestUpdate::cancel(&queued, Timestamp::from_millis(T0 + 9_000));
    assert_eq!(
        t.stores.store.apply(replay).await.unwrap(),
        batchq_core::store::Applied::Already
    );
    assert!(t.stores.objects.head(&cancelled).await.unwrap().is_none());
}

#[tokio::test]
async fn a_job_of_many_tenants_keeps_a_bounded_row_and_every_tenant_still_finds_it() {
    use batchq_tests::pipeline::Pipeline;
    // 130 tenants' requests in one batch: the row keeps 100 of them (a
    // DynamoDB item holds 400 KB), and each of the 130 sees the job.
    let p = Pipeline::start(fake_openai::FakeConfig::default(), |_| {}).await;
    let names: Vec<String> = (0..130).map(|i| format!("team-{i:03}")).collect();
    let reqs: Vec<NewRequest> = names
        .iter()
        .map(|tn| {
            NewRequest::new(
                tenant(tn),
                CustomId::parse("only").unwrap(),
                Endpoint::ChatCompletions,
                ModelName::parse("gpt-4o-mini").unwrap(),
                r#"{"messages":[{"content":"hi","role":"user"}],"model":"gpt-4o-mini"}"#.into(),
            )
        })
        .collect();
    p.enqueue(&reqs).await;
    p.submitter().run(Default::default()).await.unwrap();
    let job = p.all_jobs().await.remove(0);
    assert_eq!(job.tenant_count, 130);
    assert_eq!(
        job.tenants.len(),
        batchq_core::job::MAX_JOB_TENANTS,
        "the row's list is bounded"
    );

    let api = p.api();
    let last = tenant(names.last().unwrap());
    assert!(!job.tenants.contains(&last), "past the row's list");
    let seen = api.handle(&last, ApiRequest::get(format!("/v1/jobs/{}", job.id))).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(seen.body["shared"], true);
    let listed = api.handle(&last, ApiRequest::get("/v1/jobs")).await;
    assert_eq!(listed.body["jobs"][0]["id"], job.id.as_str(), "{}", listed.body);
    let stranger = api
        .handle(&tenant("team-999"), ApiRequest::get(format!("/v1/jobs/{}", job.id)))
        .await;
    assert_eq!(stranger.status, 404);
}
