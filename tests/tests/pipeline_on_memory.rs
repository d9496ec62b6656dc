//! Pipeline tests on the in-memory store, no emulator: the harness
//! (`batchq_tests::memory_pipeline`) builds `Core` and `Api` over
//! `MemoryStore`. The first three cases are `pipeline.rs`'s, run here
//! (with the checks of `assert_invariants` that do not need the emulator).

use std::sync::Arc;
use std::time::Duration;

use batchq_core::api::ApiRequest;
use batchq_core::ids::TenantId;
use batchq_core::job::JobStatus;
use batchq_core::pipeline::{NoCrashes, SubmitOptions};
use batchq_core::request::{RequestStatus, Usage};
use batchq_core::store::SavingsStore;
use batchq_tests::memory_pipeline::MemoryPipeline;
use batchq_tests::pipeline::{chat, embedding, expected_response, keys};
use fake_openai::{FakeConfig, Faults};
use serde_json::json;

#[tokio::test]
async fn queued_requests_end_completed_with_the_providers_exact_answer() {
    let p = MemoryPipeline::start(FakeConfig::default(), |_| {}).await;
    let mut reqs: Vec<_> = (0..60).map(|i| chat(i, "gpt-4o-mini")).collect();
    reqs.extend((0..40).map(|i| embedding(i, "text-embedding-3-small")));
    p.enqueue(&reqs).await;

    p.settle(&keys(&reqs), 4).await;

    let states = p.states(&keys(&reqs)).await;
    assert!(states
        .values()
        .all(|r| r.status == RequestStatus::Completed && r.attempts == 1));
    let mut completed_usage = Usage::default();
    for req in &reqs {
        let (_, result) = p.result(&req.key).await;
        let result = result.expect("a completed request has a result");
        let body = p.response_json(result.response.as_ref().expect("response")).await;
        assert_eq!(
            body,
            expected_response(req),
            "{} got someone else's answer",
            req.custom_id
        );
        completed_usage.add(&result.usage.expect("usage"));
    }
    let jobs = p.all_jobs().await;
    assert_eq!(jobs.len(), 2, "one job per (endpoint, model)");
    let mut job_usage = Usage::default();
    for job in &jobs {
        assert_eq!(job.status, JobStatus::Done);
        assert!(job.totals.usage.input_tokens > 0);
        assert!(job.totals.batch_cost.picodollars() > 0, "both models are priced");
        assert_eq!(
            job.totals.realtime_cost.picodollars(),
            2 * job.totals.batch_cost.picodollars(),
            "the Batch API is half price for these models"
        );
        assert!(job.ingested_output && job.copied_at.is_some());
        job_usage.add(&job.totals.usage);
    }
    assert_eq!(job_usage, completed_usage, "job totals count every result once");
    let savings = p
        .store
        .savings(&TenantId::default_tenant(), "0000-00-00", "9999-12-31")
        .await
        .unwrap();
    let mut saved = Usage::default();
    for row in &savings {
        saved.add(&row.totals.usage);
    }
    assert_eq!(saved, completed_usage, "the savings count every result once");
    assert_eq!(p.fake.file_count(), 0, "provider files are deleted once copied");
    let counts = batchq_core::store::RequestStore::counts(p.store.as_ref(), &TenantId::default_tenant())
        .await
        .unwrap();
    assert_eq!(
        (
            counts.get(RequestStatus::Completed),
            counts.pending(),
            counts.pending_bytes
        ),
        (100, 0, 0)
    );
}

#[tokio::test]
async fn a_request_posted_to_the_api_is_answered_through_the_pipeline() {
    let p = MemoryPipeline::start(FakeConfig::default(), |_| {}).await;
    let api = p.api();
    let tenant = TenantId::parse("acme").unwrap();
    let line = json!({
        "custom_id": "api-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}
    });
    let posted = api
        .handle(
            &tenant,
            ApiRequest::post("/v1/requests", "application/json", line.to_string()),
        )
        .await;
    assert_eq!(posted.status, 202, "{}", posted.body_string());

    for _ in 0..4 {
        p.round().await;
    }

    let got = api.handle(&tenant, ApiRequest::get("/v1/requests/api-1")).await;
    assert_eq!(got.status, 200, "{}", got.body_string());
    let body: serde_json::Value = serde_json::from_str(&got.body_string()).unwrap();
    assert_eq!(body["status"], "completed", "{body}");
    let other = api
        .handle(&TenantId::parse("beta").unwrap(), ApiRequest::get("/v1/requests/api-1"))
        .await;
    assert_eq!(other.status, 404, "another tenant does not see it");
}

#[tokio::test]
async fn replaying_a_result_file_while_its_job_is_still_ingesting_changes_nothing() {
    let faults = Faults {
        fail_percent: 30,
        fail_status: Some(500),
        ..Faults::default()
    };
    let p = MemoryPipeline::with_faults(faults, |_| {}).await;
    let reqs: Vec<_> = (0..40).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    p.submitter().run(SubmitOptions::default()).await.unwrap();
    p.poller().run().await.unwrap();
    let job = p.all_jobs().await.remove(0);
    assert!(job.output_file_id.is_some() && job.error_file_id.is_some());
    let output = batchq_core::keys::job_output(&job.id);
    let first = p
        .ingest_via_handler(&p.ingester(), p.s3_event(&output, 1, "a"))
        .await
        .unwrap();
    assert!(first["ingested"][0]["counted"].as_bool().unwrap());
    let counted = p.job(&job.id).await;
    assert_eq!(counted.status, JobStatus::Ingesting, "the error file is still to come");
    let before = p.snapshot();

    let again = p
        .ingest_via_handler(&p.ingester(), p.s3_event(&output, 1, "a"))
        .await
        .unwrap();
    let forced = p
        .ingester_with(Arc::new(NoCrashes))
        .ingest_file(counted.clone(), batchq_core::pipeline::ingest::FileKind::Output)
        .await
        .unwrap();
    assert_eq!(again["ingested"][0]["counted"], false);
    assert!(!forced.counted);
    assert_eq!(p.snapshot(), before, "a replay wrote something");
    assert_eq!(p.job(&job.id).await.totals, counted.totals);

    let mut uncounted = counted.clone();
    uncounted.ingested_output = false;
    let reread = p
        .ingester()
        .ingest_file(uncounted, batchq_core::pipeline::ingest::FileKind::Output)
        .await
        .unwrap();
    assert_eq!(reread.completed + reread.failed + reread.requeued, 0, "{reread:?}");
    assert!(reread.replayed > 0);
    assert!(!reread.counted, "the job row says the file is counted");
    assert_eq!(p.snapshot(), before);
}

#[tokio::test]
async fn a_job_given_up_right_after_its_claims_releases_them_though_the_job_index_lags() {
    let faults = Faults {
        http_400: [("upload".to_owned(), 1)].into(),
        ..Faults::default()
    };
    let p = MemoryPipeline::with_faults(faults, |_| {})
        .await
        .with_index_lag(Duration::from_secs(1));
    let reqs: Vec<_> = (0..20).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // the queue index has them

    let report = p.submitter().run(SubmitOptions::default()).await.unwrap();
    assert_eq!(report.abandoned.len(), 1, "{report:?}");
    for r in p.states(&keys(&reqs)).await.values() {
        assert_eq!(
            r.status,
            RequestStatus::Queued,
            "{} is left claimed by a failed job",
            r.custom_id
        );
        assert_eq!(r.last_error.as_ref().unwrap().code, "submit_failed");
    }
    p.settle(&keys(&reqs), 5).await;
    let states = p.states(&keys(&reqs)).await;
    assert!(
        states.values().all(|r| r.status == RequestStatus::Completed),
        "{states:?}"
    );
    let jobs = p.all_jobs().await;
    assert!(jobs.iter().all(|j| j.status.is_terminal()));
}
