//! Contract tests: the provider client against the fake provider over real HTTP.

mod compat_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use batchq_core::config::Config;
use batchq_core::ids::{ProviderBatchId, ProviderFileId};
use batchq_core::job::ProviderBatchStatus;
use batchq_core::provider::openai::OpenAiClient;
use batchq_core::provider::{Batch, Provider, ProviderError};
use compat_support::*;
use fake_openai::{FakeConfig, FakeHandle, FakeServer, Faults};
use serde_json::{json, Value};

fn client_for(fake: &FakeHandle, extra: &[(&str, &str)]) -> OpenAiClient {
    // Tests that need the listing's lag waited out set it themselves.
    let azure = fake.azure_endpoint();
    let mut settings = vec![("AZURE_OPENAI_ENDPOINT", azure.as_str())];
    settings.extend_from_slice(extra);
    let cfg = provider_config("openai", &fake.base_url(), &settings);
    OpenAiClient::new(&cfg, "sk-fake")
        .unwrap()
        .with_backoff(BACKOFF.0, BACKOFF.1)
}

/// A valid input file of `n` chat requests for one model.
fn input(n: usize, url: &str) -> (Vec<u8>, Vec<(String, Value)>) {
    let mut out = Vec::new();
    let mut lines = Vec::new();
    for i in 0..n {
        let id = format!("req-{i:04}");
        let body =
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("Classify review {i}")}]});
        out.extend_from_slice(
            json!({"custom_id": id, "method": "POST", "url": url, "body": body})
                .to_string()
                .as_bytes(),
        );
        out.push(b'\n');
        lines.push((id, body));
    }
    (out, lines)
}

/// A file's lines as JSON.
async fn download_json(client: &OpenAiClient, id: &ProviderFileId) -> Vec<Value> {
    download(client, id)
        .await
        .iter()
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

async fn submit(client: &OpenAiClient, data: Vec<u8>) -> Batch {
    let (file, _) = client.upload_file(&MemSource(data)).await.unwrap();
    client.create_batch(&create_req(&file.id), false).await.unwrap()
}

#[tokio::test]
async fn upload_create_retrieve_list_download_and_delete_round_trip() {
    let fake = fake().await;
    let client = client_for(&fake, &[]);
    let (data, lines) = input(20, "/v1/chat/completions");
    let (file, stats) = client.upload_file(&MemSource(data.clone())).await.unwrap();
    assert_eq!(file.bytes, Some(data.len() as u64));
    assert_eq!(file.purpose.as_deref(), Some("batch"));
    assert_eq!(stats.bytes_sent, data.len() as u64);

    let req = create_req(&file.id);
    let created = client.create_batch(&req, true).await.unwrap();
    assert_eq!(created.status, ProviderBatchStatus::Validating);
    assert_eq!(created.job_id_metadata(), Some(req.job_id.as_str()));
    assert_eq!(created.output_file_id, None);

    let done = client.retrieve_batch(&created.batch_id()).await.unwrap();
    assert_eq!(done.status, ProviderBatchStatus::Completed);
    assert_eq!(done.request_counts.total, 20);
    assert_eq!(done.request_counts.completed, 20);
    assert!(done.usage.is_some());

    let out = download_json(&client, done.output_file_id.as_ref().unwrap()).await;
    assert_eq!(out.len(), 20);
    let order: Vec<&str> = out.iter().map(|l| l["custom_id"].as_str().unwrap()).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_ne!(
        order, sorted,
        "output order is shuffled, as the real API does not promise order"
    );
    for (id, body) in &lines {
        let line = out.iter().find(|l| l["custom_id"] == id.as_str()).unwrap();
        assert_eq!(line["response"]["status_code"], 200);
        assert_eq!(
            line["response"]["body"],
            fake_openai::respond("/v1/chat/completions", id, body)
        );
    }

    let page = client.list_batches(None, 10).await.unwrap();
    assert_eq!(page.data[0].id, created.id);
    assert!(client.find_batch(&req).await.unwrap().is_some());

    delete_twice(&client, &file.file_id()).await;
    assert_eq!(fake.submitted_counts().values().copied().max(), Some(1));
}

#[tokio::test]
async fn list_paginates_newest_first() {
    let fake = fake().await;
    let client = client_for(&fake, &[]);
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(submit(&client, input(1, "/v1/chat/completions").0).await.id);
    }
    ids.reverse();
    let first = client.list_batches(None, 2).await.unwrap();
    assert!(first.has_more);
    let second = client
        .list_batches(first.data.last().map(|b| b.id.as_str()), 2)
        .await
        .unwrap();
    let third = client
        .list_batches(second.data.last().map(|b| b.id.as_str()), 2)
        .await
        .unwrap();
    assert!(!third.has_more);
    let seen: Vec<String> = [first, second, third]
        .into_iter()
        .flat_map(|p| p.data)
        .map(|b| b.id)
        .collect();
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn files_list_newest_first_in_pages_and_an_earlier_upload_is_found_by_name_and_size() {
    let fake = fake().await;
    let client = client_for(&fake, &[]);
    let mut uploaded = Vec::new();
    for n in [2, 3, 4] {
        let (data, _) = input(n, "/v1/chat/completions");
        let (file, _) = client.upload_file(&MemSource(data.clone())).await.unwrap();
        uploaded.push((file.id, data.len() as u64));
    }
    let first = client.list_files(None, 2).await.unwrap();
    let ids: Vec<&str> = first.data.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![uploaded[2].0.as_str(), uploaded[1].0.as_str()],
        "newest first"
    );
    assert!(first.has_more);
    let rest = client.list_files(Some(&uploaded[1].0), 2).await.unwrap();
    assert_eq!(rest.data.len(), 1);
    assert_eq!(rest.data[0].id, uploaded[0].0);
    assert!(!rest.has_more);

    let (oldest, bytes) = &uploaded[0];
    let found = client.find_uploaded_file("input.jsonl", *bytes, 0).await.unwrap();
    assert_eq!(
        found.map(|f| f.id),
        Some(oldest.clone()),
        "the older file of that name and size"
    );
    assert_eq!(
        client.find_uploaded_file("input.jsonl", bytes + 1, 0).await.unwrap(),
        None
    );
    assert_eq!(client.find_uploaded_file("other.jsonl", *bytes, 0).await.unwrap(), None);
}

#[tokio::test]
async fn wrong_key_is_unauthorized() {
    let fake = fake().await;
    let base = fake.base_url();
    let cfg = Config::from_lookup(&|k| (k == "OPENAI_BASE_URL").then(|| base.clone())).unwrap();
    let client = OpenAiClient::new(&cfg.provider, "sk-wrong").unwrap();
    assert!(matches!(
        client.list_batches(None, 1).await,
        Err(ProviderError::Unauthorized { .. })
    ));
}

#[tokio::test]
async fn azure_variant_uses_api_key_header_api_version_and_short_endpoints() {
    let fake = fake().await;
    let client = client_for(
        &fake,
        &[("BATCHQ_PROVIDER", "azure_openai"), ("AZURE_OPENAI_API_KEY", "sk-fake")],
    );
    let (data, _) = input(3, "/chat/completions");
    let batch = submit(&client, data).await;
    assert_eq!(batch.endpoint.as_deref(), Some("/chat/completions"));
    let done = client.retrieve_batch(&batch.batch_id()).await.unwrap();
    assert_eq!(done.status, ProviderBatchStatus::Completed);
    assert!(fake
        .log()
        .iter()
        .all(|e| e.path.starts_with("/openai/") && e.query.contains("api-version=")));
}

#[tokio::test]
async fn validation_failures_come_back_with_codes_and_line_numbers() {
    let fake = fake().await;
    let client = client_for(&fake, &[]);
    let mut data = input(3, "/v1/chat/completions").0;
    data.extend_from_slice(b"{not json}\n");
    data.extend_from_slice(
        json!({"custom_id": "req-0001", "method": "POST", "url": "/v1/chat/completions",
               "body": {"model": "gpt-4o-mini"}})
        .to_string()
        .as_bytes(),
    );
    data.push(b'\n');
    data.extend_from_slice(
        json!({"custom_id": "other", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o"}})
            .to_string()
            .as_bytes(),
    );
    let batch = submit(&client, data).await;
    let failed = client.retrieve_batch(&batch.batch_id()).await.unwrap();
    assert_eq!(failed.status, ProviderBatchStatus::Failed);
    let errs: Vec<(String, Option<u64>)> = failed.job_errors().into_iter().map(|e| (e.code, e.line)).collect();
    assert_eq!(
        errs,
        vec![
            ("invalid_json_line".into(), Some(4)),
            ("duplicate_custom_id".into(), Some(5)),
            ("mismatched_model".into(), Some(6)),
        ]
    );
    assert!(!failed.is_token_limit_exceeded());
}

#[tokio::test]
async fn full_token_queue_is_a_failed_batch_not_an_http_error() {
    let fake = fake().await;
    fake.set_faults(Faults {
        token_limit_exceeded: true,
        ..Faults::default()
    });
    let client = client_for(&fake, &[]);
    let batch = submit(&client, input(2, "/v1/chat/completions").0).await;
    let failed = client.retrieve_batch(&batch.batch_id()).await.unwrap();
    assert_eq!(failed.status, ProviderBatchStatus::Failed);
    assert!(failed.is_token_limit_exceeded());
    assert_eq!(failed.job_errors()[0].line, None);
}

#[tokio::test]
async fn completed_batch_may_have_no_output_file_and_empty_string_ids() {
    let fake = fake().await;
    fake.set_faults(Faults {
        all_lines_fail: true,
        empty_string_file_ids: true,
        fail_status: Some(400),
        ..Faults::default()
    });
    let client = client_for(&fake, &[]);
    let batch = submit(&client, input(4, "/v1/chat/completions").0).await;
    let done = client.retrieve_batch(&batch.batch_id()).await.unwrap();
    assert_eq!(done.status, ProviderBatchStatus::Completed);
    assert_eq!(done.output_file_id, None, "\"\" reads as no file");
    assert_eq!(done.request_counts.completed, 0);
    let errors = download_json(&client, done.error_file_id.as_ref().unwrap()).await;
    assert_eq!(errors.len(), 4);
    assert!(errors
        .iter()
        .all(|l| l["response"]["status_code"] == 400 && l["error"].is_null()));
}

#[tokio::test]
async fn some_lines_fail_into_the_error_file() {
    let fake = fake().await;
    fake.set_faults(Faults {
        fail_prefix: Some("req-000".into()),
        fail_status: Some(429),
        ..Faults::default()
    });
    let client = client_for(&fake, &[]);
    let batch = submit(&client, input(15, "/v1/chat/completions").0).await;
    let done = client.retrieve_batch(&batch.batch_id()).await.unwrap();
    assert_eq!((done.request_counts.completed, done.request_counts.failed), (5, 10));
    let errors = download_json(&client, done.error_file_id.as_ref().unwrap()).await;
    assert!(errors
        .iter()
        .all(|l| l["custom_id"].as_str().unwrap().starts_with("req-000")));
    assert!(errors.iter().all(|l| l["response"]["status_code"] == 429));
}

#[tokio::test]
async fn expired_batch_has_partial_results_and_batch_expired_lines() {
    let fake = FakeServer::start(FakeConfig {
        step_ms: 60_000,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let client = client_for(&fake, &[]);
    let batch = submit(&client, input(40, "/v1/chat/completions").0).await;
    assert!(fake.expire(&batch.id));
    let expired = client.retrieve_batch(&batch.batch_id()).await.unwrap();
    assert_eq!(expired.status, ProviderBatchStatus::Expired);
    let out = download_json(&client, expired.output_file_id.as_ref().unwrap()).await;
    let errors = download_json(&client, expired.error_file_id.as_ref().unwrap()).await;
    assert_eq!(out.len() + errors.len(), 40);
    assert!(!out.is_empty() && !errors.is_empty());
    assert!(errors
        .iter()
        .all(|l| l["error"]["code"] == "batch_expired" && l["response"].is_null()));
}

#[tokio::test]
async fn cancelled_batch_has_partial_results() {
    let fake = fake().await;
    fake.set_faults(Faults {
        stay_finalizing_polls: 1,
        ..Faults::default()
    });
    let client = client_for(&fake, &[]);
    let batch = submit(&client, input(40, "/v1/chat/completions").0).await;
    assert_eq!(
        client.retrieve_batch(&batch.batch_id()).await.unwrap().status,
        ProviderBatchStatus::Finalizing
    );
    let cancelling = client.cancel_batch(&batch.batch_id()).await.unwrap();
    assert_eq!(cancelling.status, ProviderBatchStatus::Cancelling);
    let cancelled = client.retrieve_batch(&batch.batch_id()).await.unwrap();
    assert_eq!(cancelled.status, ProviderBatchStatus::Cancelled);
    let out = download_json(&client, cancelled.output_file_id.as_ref().unwrap()).await;
    let errors = download_json(&client, cancelled.error_file_id.as_ref().unwrap()).await;
    assert_eq!(out.len() + errors.len(), 40);
    assert!(!out.is_empty() && !errors.is_empty());
    assert!(errors.iter().all(|l| l["error"]["code"] == "batch_cancelled"));
    // A terminal batch cannot be cancelled.
    assert!(matches!(
        client.cancel_batch(&batch.batch_id()).await,
        Err(ProviderError::Api { status: 400, .. })
    ));
}

#[tokio::test]
async fn batch_cancelled_while_validating_ends_without_results() {
    let fake = fake().await;
    fake.set_faults(Faults {
        stay_validating_polls: 3,
        ..Faults::default()
    });
    let client = client_for(&fake, &[]);
    let batch = submit(&client, input(4, "/v1/chat/completions").0).await;
    client.cancel_batch(&batch.batch_id()).await.unwrap();
    let cancelled = client.retrieve_batch(&batch.batch_id()).await.unwrap();
    assert_eq!(cancelled.status, ProviderBatchStatus::Cancelled);
    assert_eq!((cancelled.output_file_id, cancelled.error_file_id), (None, None));
}

#[tokio::test]
async fn vanished_batch_is_not_found() {
    let fake = fake().await;
    fake.set_faults(Faults {
        vanish_after_polls: Some(1),
        stay_validating_polls: 5,
        ..Faults::default()
    });
    let client = client_for(&fake, &[]);
    let batch = submit(&client, input(2, "/v1/chat/completions").0).await;
    assert_eq!(
        client.retrieve_batch(&batch.batch_id()).await.unwrap().status,
        ProviderBatchStatus::Validating
    );
    match client.retrieve_batch(&batch.batch_id()).await {
        Err(ProviderError::NotFound { what, id, .. }) => assert_eq!((what, id.as_str()), ("batch", batch.id.as_str())),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(matches!(
        client.retrieve_batch(&ProviderBatchId::new("batch_nope")).await,
        Err(ProviderError::NotFound { .. })
    ));
}

#[tokio::test]
async fn slow_phases_hold_validating_and_finalizing() {
    let fake = fake().await;
    fake.set_faults(Faults {
        stay_validating_polls: 2,
        stay_finalizing_polls: 1,
        ..Faults::default()
    });
    let client = client_for(&fake, &[]);
    let batch = submit(&client, input(2, "/v1/chat/completions").0).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(client.retrieve_batch(&batch.batch_id()).await.unwrap().status);
    }
    use ProviderBatchStatus::*;
    assert_eq!(seen, vec![Validating, Validating, Finalizing, Completed]);
}

#[tokio::test]
async fn rate_limit_retry_after_is_honoured() {
    let fake = fake().await;
    let client = client_for(&fake, &[]);
    let batch = submit(&client, input(1, "/v1/chat/completions").0).await;
    fake.set_faults(Faults {
        http_429: [("retrieve".to_owned(), 2)].into(),
        retry_after_ms: 250,
        ..Faults::default()
    });
    let waits = Arc::new(Mutex::new(Vec::new()));
    let client = client.record_waits(waits.clone());
    let done = client.retrieve_batch(&batch.batch_id()).await.unwrap();
    assert_eq!(done.status, ProviderBatchStatus::Completed);
    assert_eq!(
        *waits.lock().unwrap(),
        vec![Duration::from_millis(250); 2],
        "waited what retry-after-ms asked"
    );
    let statuses: Vec<u16> = fake.calls("retrieve").iter().map(|e| e.status).collect();
    assert_eq!(statuses, vec![429, 429, 200]);
}

#[tokio::test]
async fn retries_stop_at_the_bound_with_a_typed_error() {
    let fake = fake().await;
    fake.set_faults(Faults {
        http_500: [("list".to_owned(), 100)].into(),
        ..Faults::default()
    });
    let client = client_for(&fake, &[]);
    match client.list_batches(None, 5).await {
        Err(ProviderError::RetriesExhausted { attempts, last, .. }) => {
            assert_eq!(attempts, 4, "one try plus BATCHQ_HTTP_MAX_RETRIES=3");
            assert!(matches!(*last, ProviderError::Retryable { status: 500, .. }));
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
    assert_eq!(fake.calls("list").len(), 4);
}

#[tokio::test]
async fn create_whose_response_was_lost_does_not_create_a_second_batch() {
    let fake = fake().await;
    let client = client_for(&fake, &[("BATCHQ_HTTP_READ_TIMEOUT_SECS", "1")]);
    let (file, _) = client
        .upload_file(&MemSource(input(5, "/v1/chat/completions").0))
        .await
        .unwrap();
    // The fake creates the batch, then holds the answer past the client's read timeout.
    fake.set_faults(Faults {
        hang_after_create_ms: Some(3_000),
        ..Faults::default()
    });
    let req = create_req(&file.id);
    let batch = client.create_batch(&req, false).await.unwrap();
    assert_eq!(fake.submissions().len(), 1, "exactly one provider batch");
    assert_eq!(fake.submissions()[0].batch_id, batch.id);
    assert_eq!(
        fake.calls("create").len(),
        1,
        "the client found the batch instead of creating again"
    );
    assert!(!fake.calls("list").is_empty());

    // And a later run of the same job (crash after create) finds it too.
    fake.set_faults(Faults::default());
    let again = client.create_batch(&req, true).await.unwrap();
    assert_eq!(again.id, batch.id);
    assert_eq!(fake.submissions().len(), 1);
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_while_the_listing_lags_still_makes_one_batch() {
    let fake = fake().await;
    let client = client_for(
        &fake,
        &[
            ("BATCHQ_HTTP_READ_TIMEOUT_SECS", "1"),
            ("BATCHQ_PROVIDER_LIST_LAG_SECS", "6"),
        ],
    );
    let (file, _) = client
        .upload_file(&MemSource(input(5, "/v1/chat/completions").0))
        .await
        .unwrap();
    // The batch is made, its answer never arrives, and for 2.5 s the
    // listing does not show it: a look right after the timeout misses it.
    fake.set_faults(Faults {
        hang_after_create_ms: Some(3_000),
        list_lag_ms: 2_500,
        ..Faults::default()
    });
    let waits = Arc::new(Mutex::new(Vec::new()));
    let client = client.record_waits(waits.clone());
    let batch = client.create_batch(&create_req(&file.id), false).await.unwrap();
    assert_eq!(fake.submissions().len(), 1, "a second batch was created");
    assert_eq!(fake.submissions()[0].batch_id, batch.id);
    assert_eq!(fake.calls("create").len(), 1);
    assert!(
        fake.calls("list").len() >= 2,
        "the listing was read again until it showed the batch"
    );
    assert!(!waits.lock().unwrap().is_empty());
}

#[tokio::test]
async fn create_retried_after_429_creates_one_batch() {
    let fake = fake().await;
    let client = client_for(&fake, &[]);
    let (file, _) = client
        .upload_file(&MemSource(input(3, "/v1/chat/completions").0))
        .await
        .unwrap();
    fake.set_faults(Faults {
        http_429: [("create".to_owned(), 2)].into(),
        retry_after_ms: 1,
        ..Faults::default()
    });
    client.create_batch(&create_req(&file.id), false).await.unwrap();
    assert_eq!(fake.submissions().len(), 1);
    let statuses: Vec<u16> = fake.calls("create").iter().map(|e| e.status).collect();
    assert_eq!(statuses, vec![429, 429, 200]);
}

#[tokio::test]
async fn upload_429_then_success_reopens_the_source() {
    let fake = fake().await;
    fake.set_faults(Faults {
        http_429: [("upload".to_owned(), 1)].into(),
        retry_after_ms: 1,
        ..Faults::default()
    });
    let client = client_for(&fake, &[]);
    let data = input(50, "/v1/chat/completions").0;
    let (file, stats) = client.upload_file(&MemSource(data.clone())).await.unwrap();
    assert_eq!(stats.attempts, 2);
    assert_eq!(fake.file_digest(&file.id).unwrap().0, data.len() as u64);
}

#[tokio::test]
async fn a_steady_rate_of_429s_and_500s_is_absorbed_by_retries() {
    let fake = fake().await;
    let client = client_for(&fake, &[]);
    let batch = submit(&client, input(1, "/v1/chat/completions").0).await;
    fake.set_faults(Faults {
        http_429_every: [("retrieve".to_owned(), 2)].into(),
        http_500_every: [("list".to_owned(), 3)].into(),
        retry_after_ms: 1,
        ..Faults::default()
    });
    for _ in 0..6 {
        client.retrieve_batch(&batch.batch_id()).await.unwrap();
        client.list_batches(None, 5).await.unwrap();
    }
    let retrieves: Vec<u16> = fake.calls("retrieve").iter().map(|e| e.status).collect();
    // Every second call is refused; each refused call is retried at once.
    let expected: Vec<u16> = (1..=11).map(|i| if i % 2 == 0 { 429 } else { 200 }).collect();
    assert_eq!(retrieves, expected);
    let lists: Vec<u16> = fake.calls("list").iter().map(|e| e.status).collect();
    assert!(lists.contains(&500) && lists.iter().filter(|s| **s == 200).count() == 6);
}

#[tokio::test]
async fn slow_responses_past_the_read_timeout_are_retried_then_reported() {
    let fake = fake().await;
    let client = client_for(
        &fake,
        &[("BATCHQ_HTTP_READ_TIMEOUT_SECS", "1"), ("BATCHQ_HTTP_MAX_RETRIES", "1")],
    );
    fake.set_faults(Faults {
        delay_ms: [("list".to_owned(), 1_500)].into(),
        ..Faults::default()
    });
    match client.list_batches(None, 1).await {
        Err(ProviderError::RetriesExhausted { attempts: 2, last, .. }) => {
            assert!(matches!(*last, ProviderError::Transport { .. }), "{last:?}");
        }
        other => panic!("expected RetriesExhausted after timeouts, got {other:?}"),
    }
    // A delay under the timeout is just slow.
    fake.set_faults(Faults {
        delay_ms: [("list".to_owned(), 200)].into(),
        ..Faults::default()
    });
    client.list_batches(None, 1).await.unwrap();
}

#[tokio::test]
async fn wrong_method_url_and_missing_fields_fail_validation_by_line() {
    let fake = fake().await;
    let client = client_for(&fake, &[]);
    let lines = [
        json!({"custom_id": "a", "method": "GET", "url": "/v1/chat/completions", "body": {"model": "m"}}),
        json!({"custom_id": "b", "method": "POST", "url": "/v1/embeddings", "body": {"model": "m"}}),
        json!({"method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}),
        json!({"custom_id": "d", "method": "POST", "url": "/v1/chat/completions"}),
        json!({"custom_id": "e", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}),
    ];
    let data: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect();
    let batch = submit(&client, data).await;
    let failed = client.retrieve_batch(&batch.batch_id()).await.unwrap();
    let errs: Vec<(String, Option<u64>)> = failed.job_errors().into_iter().map(|e| (e.code, e.line)).collect();
    assert_eq!(
        errs,
        vec![
            ("invalid_method".into(), Some(1)),
            ("invalid_url".into(), Some(2)),
            ("missing_required_parameter".into(), Some(3)),
            ("missing_required_parameter".into(), Some(4)),
        ]
    );
}

#[tokio::test]
async fn files_over_the_line_or_byte_limit_fail_validation() {
    for (cfg, code) in [
        (
            FakeConfig {
                max_lines: 3,
                ..FakeConfig::default()
            },
            "too_many_requests",
        ),
        (
            FakeConfig {
                max_bytes: 500,
                ..FakeConfig::default()
            },
            "file_too_large",
        ),
    ] {
        let fake = FakeServer::start(cfg).await.unwrap();
        let client = client_for(&fake, &[]);
        let batch = submit(&client, input(4, "/v1/chat/completions").0).await;
        let failed = client.retrieve_batch(&batch.batch_id()).await.unwrap();
        assert_eq!(failed.status, ProviderBatchStatus::Failed);
        assert_eq!(failed.job_errors()[0].code, code);
    }
}
