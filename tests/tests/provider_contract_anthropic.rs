//! Contract tests: the Anthropic client against the fake's Message Batches
//! API over real HTTP, its results read by the Anthropic format.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use batchq_core::config::{Config, ProviderConfig};
use batchq_core::ids::{CustomId, JobId, ProviderBatchId, ProviderFileId, RequestKey, TenantId};
use batchq_core::job::{ProviderBatchStatus, ProviderKind};
use batchq_core::provider::anthropic::{AnthropicClient, AnthropicFormat};
use batchq_core::provider::{
    Batch, BatchFormat, CreateBatch, ObjectSource, Outcome, Provider, ProviderError, ResultLine,
};
use batchq_core::request::Endpoint;
use batchq_core::store::memory::MemoryObjects;
use batchq_core::store::ObjectStore;
use bytes::Bytes;
use fake_openai::{FakeConfig, FakeHandle, FakeServer, Faults};
use futures::TryStreamExt;
use serde_json::{json, Value};

const INPUT_KEY: &str = "jobs/job-1/input.jsonl";

async fn fake(faults: Faults) -> FakeHandle {
    FakeServer::start(FakeConfig {
        faults,
        ..FakeConfig::default()
    })
    .await
    .unwrap()
}

fn provider_config(fake: &FakeHandle, extra: &[(&str, &str)]) -> ProviderConfig {
    let base = fake.base_url();
    let extra: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut cfg = Config::from_lookup(&move |k| {
        if let Some((_, v)) = extra.iter().find(|(n, _)| n == k) {
            return Some(v.clone());
        }
        match k {
            "OPENAI_BASE_URL" => Some(base.clone()),
            "BATCHQ_HTTP_MAX_RETRIES" => Some("3".into()),
            "BATCHQ_PROVIDER_LIST_LAG_SECS" => Some("0".into()),
            _ => None,
        }
    })
    .unwrap()
    .provider;
    cfg.kind = ProviderKind::Anthropic;
    cfg.api_version = "2023-06-01".into();
    cfg
}

struct Setup {
    fake: FakeHandle,
    objects: Arc<dyn ObjectStore>,
    client: AnthropicClient,
}

async fn setup(faults: Faults, extra: &[(&str, &str)], key: &str) -> Setup {
    let fake = fake(faults).await;
    let objects: Arc<dyn ObjectStore> = Arc::new(MemoryObjects::default());
    let client = AnthropicClient::new(&provider_config(&fake, extra), key, objects.clone())
        .unwrap()
        .with_backoff(Duration::from_millis(1), Duration::from_millis(5));
    Setup { fake, objects, client }
}

fn key_of(i: usize) -> RequestKey {
    RequestKey::derive(
        &TenantId::parse("tenant-a").unwrap(),
        &CustomId::parse(format!("req-{i}")).unwrap(),
    )
}

/// The params of request `i`: every 7th marks a cached system prompt.
fn params(i: usize) -> Value {
    let mut p = json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 200,
                       "messages": [{"role": "user", "content": format!("Classify review {i}: great value, slow delivery")}]});
    if i.is_multiple_of(7) {
        p["system"] = json!([{"type": "text", "text": "You classify product reviews. ".repeat(20), "cache_control": {"type": "ephemeral"}}]);
    }
    p
}

/// Stages `n` requests (with `odd` params for the listed indexes) under
/// `key` as the pipeline does; answers key → params in input order.
async fn stage(
    objects: &Arc<dyn ObjectStore>,
    key: &str,
    n: usize,
    odd: &[(usize, Value)],
) -> Vec<(RequestKey, Value)> {
    let mut out = Vec::new();
    let mut reqs = Vec::new();
    for i in 0..n {
        let p = odd
            .iter()
            .find(|(j, _)| *j == i)
            .map_or_else(|| params(i), |(_, p)| p.clone());
        AnthropicFormat.write_input_line(&mut out, &key_of(i), "/v1/messages", &p.to_string());
        reqs.push((key_of(i), p));
    }
    objects.put(key, Bytes::from(out), "application/jsonl").await.unwrap();
    reqs
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn create_req(input_key: &str, lines: u64, taken: &[&Batch]) -> CreateBatch {
    CreateBatch {
        job_id: JobId::generate(),
        input_file_id: ProviderFileId::new(format!("inline:{input_key}")),
        input_key: input_key.into(),
        lines,
        taken: taken.iter().map(|b| b.batch_id()).collect(),
        endpoint: Endpoint::Messages,
        not_before: now_s() - 1,
    }
}

async fn results(client: &AnthropicClient, batch: &Batch) -> Vec<ResultLine> {
    let file = batch.output_file_id.as_ref().expect("a results file");
    let chunks: Vec<Bytes> = client.file_content(file).await.unwrap().try_collect().await.unwrap();
    chunks
        .concat()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| {
            AnthropicFormat
                .read_result_line(Endpoint::Messages, i as u64 + 1, l)
                .unwrap()
        })
        .collect()
}

fn error_code(line: &ResultLine) -> Option<(&str, bool)> {
    match &line.outcome {
        Outcome::Error { error, retryable, .. } => Some((error.code.as_str(), *retryable)),
        Outcome::Success { .. } => None,
    }
}

#[tokio::test]
async fn a_staged_object_becomes_a_batch_that_runs_to_ended_and_every_result_parses() {
    let s = setup(
        Faults {
            stay_in_progress_polls: 1,
            fail_prefix: Some(key_of(3).as_str().to_owned()),
            fail_status: Some(529),
            ..Faults::default()
        },
        &[],
        "sk-fake",
    )
    .await;
    let refused = json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 0, "messages": []});
    let reqs = stage(&s.objects, INPUT_KEY, 20, &[(5, refused)]).await;

    // The "upload" sends nothing.
    let source = ObjectSource {
        objects: s.objects.clone(),
        key: INPUT_KEY.into(),
        filename: "job-1.jsonl".into(),
    };
    let (file, stats) = s.client.upload_file(&source).await.unwrap();
    assert_eq!(file.id, "inline:job-1.jsonl");
    assert_eq!(
        file.bytes,
        Some(s.objects.get(INPUT_KEY).await.unwrap().unwrap().len() as u64)
    );
    assert_eq!(stats.bytes_sent, 0);
    assert!(s.client.list_files(None, 100).await.unwrap().data.is_empty());
    assert_eq!(s.client.find_uploaded_file("job-1.jsonl", 1, 0).await.unwrap(), None);
    assert_eq!(s.client.kind(), ProviderKind::Anthropic);
    assert_eq!(s.client.endpoint_url(Endpoint::Messages), "/v1/messages");
    assert!(s.fake.log().is_empty(), "nothing was sent: {:?}", s.fake.log());

    let created = s
        .client
        .create_batch(&create_req(INPUT_KEY, 20, &[]), true)
        .await
        .unwrap();
    assert!(created.id.starts_with("msgbatch_"), "{}", created.id);
    assert_eq!(created.status, ProviderBatchStatus::InProgress);
    assert_eq!(
        (created.request_counts.total, created.request_counts.completed),
        (20, 0)
    );
    assert_eq!(created.output_file_id, None);
    assert!(created.created_at.unwrap() >= now_s() - 5);
    assert_eq!(created.expires_at, created.created_at.map(|t| t + 86_400));
    let submitted = s.fake.submissions();
    assert_eq!(submitted.len(), 1);
    let keys: Vec<&str> = reqs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(submitted[0].custom_ids, keys, "every staged line, in order");

    let running = s.client.retrieve_batch(&created.batch_id()).await.unwrap();
    assert_eq!(running.status, ProviderBatchStatus::InProgress);
    let ended = s.client.retrieve_batch(&created.batch_id()).await.unwrap();
    assert_eq!(ended.status, ProviderBatchStatus::Completed);
    assert_eq!(
        (
            ended.request_counts.total,
            ended.request_counts.completed,
            ended.request_counts.failed
        ),
        (20, 18, 2)
    );
    assert_eq!(
        ended.output_file_id,
        Some(ProviderFileId::new(format!("results:{}", created.id)))
    );
    assert_eq!(ended.error_file_id, None);

    let lines = results(&s.client, &ended).await;
    assert_eq!(lines.len(), 20);
    let order: Vec<&str> = lines.iter().map(|l| l.key.as_str()).collect();
    assert_ne!(order, keys, "results come out of input order");
    let by_key: HashMap<&str, &Value> = reqs.iter().map(|(k, p)| (k.as_str(), p)).collect();
    for line in &lines {
        let i = reqs.iter().position(|(k, _)| *k == line.key).unwrap();
        match (&line.outcome, i) {
            (Outcome::Error { error, retryable, .. }, 3) => {
                assert_eq!(
                    (error.code.as_str(), error.status_code, *retryable),
                    ("overloaded_error", Some(529), true)
                );
            }
            (Outcome::Error { error, retryable, .. }, 5) => {
                assert_eq!(
                    (error.code.as_str(), error.status_code, *retryable),
                    ("invalid_request_error", Some(400), false)
                );
            }
            (
                Outcome::Success {
                    status_code,
                    body,
                    usage,
                    model,
                },
                _,
            ) => {
                assert_eq!(*status_code, 200);
                let want = fake_openai::respond_message(line.key.as_str(), by_key[line.key.as_str()]);
                assert_eq!(
                    serde_json::from_str::<Value>(body).unwrap(),
                    want,
                    "the message verbatim"
                );
                assert_eq!(model.as_deref(), Some("claude-3-5-haiku-20241022"));
                let u = usage.expect("priced");
                assert_eq!(
                    u.input_tokens,
                    fake_openai::anthropic_prompt_tokens(by_key[line.key.as_str()])
                );
                assert_eq!(u.output_tokens, want["usage"]["output_tokens"].as_u64().unwrap());
                if i.is_multiple_of(7) {
                    assert!(u.cached_input_tokens > 0 && u.cache_write_tokens > 0, "{i}: {u:?}");
                } else {
                    assert_eq!((u.cached_input_tokens, u.cache_write_tokens), (0, 0), "{i}");
                }
            }
            (other, i) => panic!("request {i}: unexpected {other:?}"),
        }
    }

    // The staged input was never uploaded; the results file is the batch.
    s.client
        .delete_file(&ProviderFileId::new("inline:job-1.jsonl"))
        .await
        .unwrap();
    s.client
        .delete_file(ended.output_file_id.as_ref().unwrap())
        .await
        .unwrap();
    assert!(matches!(
        s.client.retrieve_batch(&created.batch_id()).await,
        Err(ProviderError::NotFound { what: "batch", .. })
    ));
    assert!(matches!(
        s.client.delete_file(ended.output_file_id.as_ref().unwrap()).await,
        Err(ProviderError::NotFound { .. })
    ));
    assert_eq!(s.fake.calls("create").len(), 1);
}

#[tokio::test]
async fn an_expired_batch_ends_with_its_unrun_requests_retryable_as_batch_expired() {
    let s = setup(Faults::default(), &[], "sk-fake").await;
    stage(&s.objects, INPUT_KEY, 16, &[]).await;
    let created = s
        .client
        .create_batch(&create_req(INPUT_KEY, 16, &[]), false)
        .await
        .unwrap();
    assert!(s.fake.expire(&created.id));
    let ended = s.client.retrieve_batch(&created.batch_id()).await.unwrap();
    assert_eq!(ended.status, ProviderBatchStatus::Completed);
    let lines = results(&s.client, &ended).await;
    let expired = lines
        .iter()
        .filter(|l| error_code(l) == Some(("batch_expired", true)))
        .count();
    let answered = lines.iter().filter(|l| error_code(l).is_none()).count();
    assert!(expired > 0 && answered > 0, "{expired} expired, {answered} answered");
    assert_eq!(expired + answered, 16);
    assert_eq!(ended.request_counts.failed, expired as u64);
}

#[tokio::test]
async fn a_cancel_goes_through_canceling_to_ended_with_canceled_lines() {
    let s = setup(
        Faults {
            stay_in_progress_polls: 100,
            stay_cancelling_polls: 1,
            ..Faults::default()
        },
        &[],
        "sk-fake",
    )
    .await;
    stage(&s.objects, INPUT_KEY, 12, &[]).await;
    let created = s
        .client
        .create_batch(&create_req(INPUT_KEY, 12, &[]), false)
        .await
        .unwrap();
    let canceling = s.client.cancel_batch(&created.batch_id()).await.unwrap();
    assert_eq!(canceling.status, ProviderBatchStatus::Cancelling);
    assert!(canceling.cancelling_at.is_some());
    let results_file = ProviderFileId::new(format!("results:{}", created.id));
    match s.client.delete_file(&results_file).await {
        Err(ProviderError::Api { status: 400, code, .. }) => {
            assert_eq!(code.as_deref(), Some("invalid_request_error"))
        }
        other => panic!("a batch still processing cannot be deleted: {other:?}"),
    }
    let still = s.client.retrieve_batch(&created.batch_id()).await.unwrap();
    assert_eq!(still.status, ProviderBatchStatus::Cancelling);
    assert_eq!(still.request_counts.total, 12);
    let ended = s.client.retrieve_batch(&created.batch_id()).await.unwrap();
    assert_eq!(ended.status, ProviderBatchStatus::Cancelled);
    assert!(ended.cancelled_at.is_some());
    let lines = results(&s.client, &ended).await;
    let canceled = lines
        .iter()
        .filter(|l| error_code(l) == Some(("batch_cancelled", true)))
        .count();
    assert!(canceled > 0 && canceled < 12, "{canceled} canceled");
    assert_eq!(ended.request_counts.completed, 12 - canceled as u64);
    s.client.delete_file(&results_file).await.unwrap();
}

#[tokio::test]
async fn a_bad_key_is_unauthorized_and_a_call_without_a_version_is_refused() {
    let s = setup(Faults::default(), &[], "sk-wrong").await;
    match s.client.list_batches(None, 10).await {
        Err(ProviderError::Unauthorized { message, .. }) => assert!(message.contains("x-api-key"), "{message}"),
        other => panic!("expected Unauthorized: {other:?}"),
    }
    assert!(matches!(
        s.client.retrieve_batch(&ProviderBatchId::new("msgbatch_x")).await,
        Err(ProviderError::Unauthorized { .. })
    ));
    let resp = reqwest::Client::new()
        .get(format!("{}/messages/batches", s.fake.base_url()))
        .header("x-api-key", "sk-fake")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(
        s.fake.calls("list").iter().map(|c| c.status).collect::<Vec<_>>(),
        [401, 400]
    );
}

#[tokio::test]
async fn rate_limits_overload_and_server_errors_are_retried_honouring_retry_after() {
    let s = setup(
        Faults {
            http_429: HashMap::from([("list".into(), 1)]),
            http_529: HashMap::from([("retrieve".into(), 2)]),
            http_500: HashMap::from([("create".into(), 1)]),
            retry_after_ms: 1_000,
            ..Faults::default()
        },
        &[],
        "sk-fake",
    )
    .await;
    let waits = Arc::new(Mutex::new(Vec::new()));
    let client = s.client.clone().record_waits(waits.clone());
    let page = client.list_batches(None, 5).await.unwrap();
    assert!(page.data.is_empty());
    assert_eq!(*waits.lock().unwrap(), [Duration::from_secs(1)], "retry-after honoured");

    // A 500 on create may have made the batch: it is looked for, then created once.
    stage(&s.objects, INPUT_KEY, 3, &[]).await;
    let created = client
        .create_batch(&create_req(INPUT_KEY, 3, &[]), false)
        .await
        .unwrap();
    assert_eq!(s.fake.submissions().len(), 1);
    assert_eq!(
        s.fake.calls("create").iter().map(|c| c.status).collect::<Vec<_>>(),
        [500, 200]
    );

    let got = client.retrieve_batch(&created.batch_id()).await.unwrap();
    assert_eq!(got.id, created.id);
    assert_eq!(
        s.fake.calls("retrieve").iter().map(|c| c.status).collect::<Vec<_>>(),
        [529, 529, 200]
    );
}

#[tokio::test]
async fn a_lost_create_answer_is_recovered_by_find_batch_without_a_second_batch() {
    let s = setup(
        Faults {
            hang_after_create_ms: Some(3_000),
            ..Faults::default()
        },
        &[("BATCHQ_HTTP_READ_TIMEOUT_SECS", "1")],
        "sk-fake",
    )
    .await;
    stage(&s.objects, INPUT_KEY, 4, &[]).await;
    let batch = s
        .client
        .create_batch(&create_req(INPUT_KEY, 4, &[]), false)
        .await
        .unwrap();
    let submitted = s.fake.submissions();
    assert_eq!(submitted.len(), 1, "one batch, not two");
    assert_eq!(batch.id, submitted[0].batch_id);
    assert_eq!(s.fake.calls("create").len(), 1);
    assert!(!s.fake.calls("list").is_empty(), "found by listing");
}

#[tokio::test]
async fn find_batch_takes_the_oldest_untaken_batch_of_the_job_s_size_since_not_before() {
    let s = setup(Faults::default(), &[], "sk-fake").await;
    stage(&s.objects, INPUT_KEY, 5, &[]).await;
    stage(&s.objects, "other.jsonl", 6, &[]).await;
    let req = create_req(INPUT_KEY, 5, &[]);
    let other_job = s
        .client
        .create_batch(&create_req(INPUT_KEY, 5, &[]), false)
        .await
        .unwrap();
    let other_size = s
        .client
        .create_batch(&create_req("other.jsonl", 6, &[]), false)
        .await
        .unwrap();
    assert_eq!(other_size.request_counts.total, 6);

    // Untaken, the other job's batch looks like this job's.
    assert_eq!(
        s.client.find_batch(&req).await.unwrap().map(|b| b.id),
        Some(other_job.id.clone())
    );
    let mine = CreateBatch {
        taken: vec![other_job.batch_id()],
        ..req.clone()
    };
    assert_eq!(s.client.find_batch(&mine).await.unwrap(), None);
    let ours = s.client.create_batch(&mine, true).await.unwrap();
    assert_ne!(ours.id, other_job.id);
    assert_eq!(s.fake.submissions().len(), 3);
    // A later batch of the same size: the oldest untaken one is the job's.
    let later = s
        .client
        .create_batch(&create_req(INPUT_KEY, 5, &[]), false)
        .await
        .unwrap();
    assert_eq!(
        s.client.find_batch(&mine).await.unwrap().map(|b| b.id),
        Some(ours.id.clone())
    );
    // With check_first, a create finds it instead of making another.
    assert_eq!(s.client.create_batch(&mine, true).await.unwrap().id, ours.id);
    assert_eq!(s.fake.submissions().len(), 4);
    let future = CreateBatch {
        not_before: now_s() + 60,
        ..mine.clone()
    };
    assert_eq!(s.client.find_batch(&future).await.unwrap(), None);
    assert_ne!(later.id, ours.id);
}

#[tokio::test]
async fn batches_list_newest_first_and_page_both_ways() {
    let s = setup(Faults::default(), &[], "sk-fake").await;
    stage(&s.objects, INPUT_KEY, 2, &[]).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            s.client
                .create_batch(&create_req(INPUT_KEY, 2, &[]), false)
                .await
                .unwrap()
                .id,
        );
    }
    let first = s.client.list_batches(None, 2).await.unwrap();
    assert_eq!(first.data.iter().map(|b| &b.id).collect::<Vec<_>>(), [&ids[2], &ids[1]]);
    assert!(first.has_more);
    let rest = s.client.list_batches(first.last_id.as_deref(), 2).await.unwrap();
    assert_eq!(rest.data.iter().map(|b| &b.id).collect::<Vec<_>>(), [&ids[0]]);
    assert!(!rest.has_more);
    let http = reqwest::Client::new();
    let get = |q: String| {
        http.get(format!("{}/messages/batches?{q}", s.fake.base_url()))
            .header("x-api-key", "sk-fake")
            .header("anthropic-version", "2023-06-01")
            .send()
    };
    let newer: Value = get(format!("before_id={}&limit=1", ids[0]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(newer["data"][0]["id"], ids[1].as_str());
    assert_eq!(newer["has_more"], true);
    assert_eq!(newer["data"][0]["type"], "message_batch");
    assert_eq!(get("limit=1001".into()).await.unwrap().status(), 400);
}

#[tokio::test]
async fn exhausted_retries_end_in_an_error_and_create_no_batch() {
    let s = setup(
        Faults {
            http_500: HashMap::from([("retrieve".into(), 10)]),
            http_429: HashMap::from([("create".into(), 10)]),
            ..Faults::default()
        },
        &[],
        "sk-fake",
    )
    .await;
    match s.client.retrieve_batch(&ProviderBatchId::new("msgbatch_x")).await {
        Err(ProviderError::RetriesExhausted { attempts: 4, last, .. }) => {
            assert!(matches!(*last, ProviderError::Retryable { status: 500, .. }), "{last}")
        }
        other => panic!("expected RetriesExhausted: {other:?}"),
    }
    stage(&s.objects, INPUT_KEY, 2, &[]).await;
    match s.client.create_batch(&create_req(INPUT_KEY, 2, &[]), false).await {
        Err(ProviderError::RetriesExhausted { attempts: 4, .. }) => {}
        other => panic!("expected RetriesExhausted: {other:?}"),
    }
    assert!(s.fake.submissions().is_empty());
}

#[tokio::test]
async fn a_results_download_cut_short_fails_as_a_stream_error() {
    let s = setup(
        Faults {
            cut_content: 1,
            cut_content_at_bytes: 100,
            ..Faults::default()
        },
        &[],
        "sk-fake",
    )
    .await;
    stage(&s.objects, INPUT_KEY, 4, &[]).await;
    let created = s
        .client
        .create_batch(&create_req(INPUT_KEY, 4, &[]), false)
        .await
        .unwrap();
    let ended = s.client.retrieve_batch(&created.batch_id()).await.unwrap();
    let stream = s
        .client
        .file_content(ended.output_file_id.as_ref().unwrap())
        .await
        .unwrap();
    assert!(stream.try_collect::<Vec<Bytes>>().await.is_err());
    assert_eq!(s.fake.calls("results").len(), 1);
    // The next download is whole.
    assert_eq!(results(&s.client, &ended).await.len(), 4);
}
