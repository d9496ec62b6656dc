//! The four real Lambda handler functions driven with the real event shapes
//! (API Gateway HTTP API v2 requests, EventBridge scheduled events, S3 event
//! notifications) against the emulator and the fake provider.

mod api_support;

use std::collections::HashMap;

use api_support::{event, lambda_answer, post_event, Answer};
use batchq_core::api::Api;
use batchq_core::ids::{CustomId, RequestKey, TenantId};
use batchq_tests::pipeline::Pipeline;
use fake_openai::FakeConfig;
use serde_json::{json, Value};

async fn call(api: &Api, ev: &Value) -> Answer {
    lambda_answer(api, ev).await
}

fn api_of(p: &Pipeline) -> Api {
    Api::new(
        p.store.clone(),
        p.store.clone(),
        p.env.s3.clone(),
        p.clock.clone(),
        &p.config().limits,
    )
}

/// 1,000 review classifications (chat, gpt-4o-mini) and 1,000 article
/// embeddings (text-embedding-3-small).
fn workload() -> Vec<Value> {
    let mut lines = Vec::new();
    for i in 0..1000 {
        lines.push(json!({
            "custom_id": format!("review-{i:04}"),
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "Answer with one word: positive, negative or mixed."},
                    {"role": "user", "content": format!("Review {i}: arrived late, but the sound is {}.", ["great", "poor", "fine"][i % 3])}
                ],
                "max_tokens": 3
            }
        }));
    }
    for i in 0..1000 {
        lines.push(json!({
            "custom_id": format!("article-{i:04}"),
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": format!("Article {i}: the council approved the new budget.")}
        }));
    }
    lines
}

#[tokio::test]
async fn two_thousand_requests_through_the_four_handlers_end_completed_with_their_own_answers() {
    let p = Pipeline::start(FakeConfig::default(), |c| c.policy.submit_min_requests = 500).await;
    let api = api_of(&p);
    let lines = workload();

    // Enqueue: the first ten one by one, the rest in bulk bodies of 500 lines.
    for line in &lines[..10] {
        let c = call(&api, &post_event("/v1/requests", "application/json", &line.to_string())).await;
        assert_eq!(c.status, 202, "{}", c.body);
        assert_eq!(c.body["status"], "queued");
    }
    for chunk in lines[10..].chunks(500) {
        let body: Vec<String> = chunk.iter().map(Value::to_string).collect();
        let c = call(
            &api,
            &post_event("/v1/requests/bulk", "application/x-ndjson", &body.join("\n")),
        )
        .await;
        assert_eq!(c.status, 200, "{}", c.body);
        assert_eq!(
            c.body["summary"]["created"],
            chunk.len() as u64,
            "{}",
            c.body["summary"]
        );
    }
    let stats = call(&api, &event("GET", "/v1/stats", None, None, false)).await;
    assert_eq!(stats.status, 200);

    // The schedule and the bucket notifications drive the rest.
    let (submitter, poller, ingester) = (p.submitter(), p.poller(), p.ingester());
    let keys: Vec<RequestKey> = lines
        .iter()
        .map(|l| {
            RequestKey::derive(
                &TenantId::default_tenant(),
                &CustomId::parse(l["custom_id"].as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    let mut rounds = 0;
    while !p.all_terminal(&keys).await {
        rounds += 1;
        assert!(rounds <= 5, "not finished after {rounds} rounds");
        let submitted = p.submit_via_handler(&submitter).await.expect("submit handler");
        assert!(submitted["jobs"].is_array());
        p.poll_via_handler(&poller).await.expect("poll handler");
        for ev in p.new_result_events().await {
            let out = p.ingest_via_handler(&ingester, ev).await.expect("ingest handler");
            assert!(out["skipped"].as_array().unwrap().is_empty(), "{out}");
        }
    }

    // Every request is retrievable with exactly the body the fake produced for it.
    let mut by_status: HashMap<String, usize> = HashMap::new();
    for (line, key) in lines.iter().zip(&keys) {
        let id = line["custom_id"].as_str().unwrap();
        let c = call(&api, &event("GET", &format!("/v1/requests/{id}"), None, None, false)).await;
        assert_eq!(c.status, 200, "{}", c.body);
        *by_status
            .entry(c.body["status"].as_str().unwrap().to_owned())
            .or_default() += 1;
        let expected = fake_openai::respond(line["url"].as_str().unwrap(), key.as_str(), &line["body"]);
        let expected: Value = serde_json::from_str(&expected.to_string()).unwrap();
        assert_eq!(c.body["result"]["response"], expected, "{id} got another answer");
        assert_eq!(c.body["result"]["status_code"], 200);
        assert_eq!(c.body["attempts"], 1);
    }
    assert_eq!(by_status, HashMap::from([("completed".to_owned(), 2000)]));

    // The provider saw each custom_id exactly once.
    let counts = p.fake.submitted_counts();
    assert_eq!(counts.len(), 2000);
    assert!(counts.values().all(|n| *n == 1), "a request reached the provider twice");

    // Jobs: one per (endpoint, model), closed with their totals.
    let jobs = call(&api, &event("GET", "/v1/jobs", None, None, false)).await;
    let jobs = jobs.body["jobs"].as_array().unwrap().clone();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    for j in &jobs {
        assert_eq!(j["status"], "done");
    }
    let stats = call(&api, &event("GET", "/v1/stats", None, None, false)).await;
    assert_eq!(stats.body["requests"]["by_status"]["completed"], 2000, "{}", stats.body);
}

#[tokio::test]
async fn the_same_scheduled_and_s3_events_delivered_twice_change_nothing_the_second_time() {
    let p = Pipeline::start(FakeConfig::default(), |_| {}).await;
    let api = api_of(&p);
    let body: Vec<String> = workload()[..50]
        .iter()
        .chain(&workload()[1000..1030])
        .map(Value::to_string)
        .collect();
    let c = call(
        &api,
        &post_event("/v1/requests/bulk", "application/x-ndjson", &body.join("\n")),
    )
    .await;
    assert_eq!(c.body["summary"]["created"], 80);

    // submit, twice
    p.submit_via_handler(&p.submitter()).await.unwrap();
    let after_first = p.snapshot().await;
    p.submit_via_handler(&p.submitter()).await.unwrap();
    assert_eq!(
        p.snapshot().await,
        after_first,
        "a second submit event changed something"
    );
    assert_eq!(p.fake.submissions().len(), 2);

    // poll, twice (the first copies the results and records it)
    p.poll_via_handler(&p.poller()).await.unwrap();
    let after_first = p.snapshot().await;
    p.poll_via_handler(&p.poller()).await.unwrap();
    assert_eq!(p.snapshot().await, after_first, "a second poll event changed something");

    // each S3 notification, twice
    let events = p.new_result_events().await;
    assert_eq!(events.len(), 2, "one output file per job");
    for ev in events {
        p.ingest_via_handler(&p.ingester(), ev.clone()).await.unwrap();
        let after_first = p.snapshot().await;
        let again = p.ingest_via_handler(&p.ingester(), ev).await.unwrap();
        assert_eq!(
            p.snapshot().await,
            after_first,
            "a second S3 event changed something: {again}"
        );
    }
    let jobs = p.all_jobs().await;
    assert!(jobs.iter().all(|j| j.status == batchq_core::job::JobStatus::Done));
}
