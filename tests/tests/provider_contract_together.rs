//! Contract tests: the Together client against the fake's Together routes
//! (`/together/v1`) over real HTTP.

mod compat_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use batchq_core::job::{ProviderBatchStatus, ProviderKind};
use batchq_core::provider::together::{TogetherClient, TogetherFormat};
use batchq_core::provider::{check_completion_window, BatchFormat, Outcome, Provider, ProviderError};
use batchq_core::request::Endpoint;
use compat_support::*;
use fake_openai::{FakeConfig, FakeHandle, FakeServer, Faults};
use serde_json::Value;

const MODEL: &str = "meta-llama/Llama-3.3-70B-Instruct-Turbo";

fn client(fake: &FakeHandle, extra: &[(&str, &str)]) -> TogetherClient {
    let cfg = provider_config("together", &fake.together_base_url(), extra);
    assert_eq!(cfg.kind, ProviderKind::Together);
    TogetherClient::new(&cfg, "sk-fake")
        .unwrap()
        .with_backoff(BACKOFF.0, BACKOFF.1)
}

#[tokio::test]
async fn upload_create_poll_and_read_the_output_with_the_together_format() {
    let fake = fake().await;
    let client = client(&fake, &[]);
    let reqs = requests(10, MODEL);
    let data = input_file(&client, &reqs);
    let first: Value = serde_json::from_slice(data.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert!(
        first.get("method").is_none() && first.get("url").is_none(),
        "Together lines are {{custom_id, body}}"
    );
    let (file, stats) = client.upload_file(&MemSource(data.clone())).await.unwrap();
    assert_eq!(file.purpose.as_deref(), Some("batch-api"));
    assert_eq!(file.bytes, Some(data.len() as u64));
    assert_eq!(file.filename.as_deref(), Some("input.jsonl"));
    assert_eq!(stats.bytes_sent, data.len() as u64);
    assert!(fake
        .calls("upload")
        .iter()
        .all(|e| e.path == "/together/v1/files/upload"));

    let req = create_req(&file.id);
    let created = client.create_batch(&req, true).await.unwrap();
    assert_eq!(created.status, ProviderBatchStatus::Validating);
    assert_eq!(created.input_file_id.as_deref(), Some(file.id.as_str()));
    assert!(created.created_at.is_some_and(|t| t > 1_700_000_000), "ISO time read");
    assert_eq!(created.expires_at, created.created_at.map(|t| t + 86_400));
    assert_eq!(created.job_id_metadata(), None, "Together keeps no metadata");

    let done = client.retrieve_batch(&created.batch_id()).await.unwrap();
    assert_eq!(done.status, ProviderBatchStatus::Completed);
    assert_eq!(done.model.as_deref(), Some(MODEL));
    assert!(done.completed_at.is_some());
    let lines = results(&client, done.output_file_id.as_ref().unwrap()).await;
    assert_eq!(lines.len(), 10);
    for r in &reqs {
        let line = lines.iter().find(|l| l.key == r.key).expect("every request answered");
        assert!(matches!(
            &line.outcome,
            Outcome::Success {
                status_code: 200,
                usage: Some(_),
                ..
            }
        ));
    }
    let listed = client.list_batches(None, 10).await.unwrap();
    assert_eq!(listed.data[0].id, created.id);
    assert_eq!(
        client.find_batch(&req).await.unwrap().map(|b| b.id),
        Some(created.id.clone())
    );
    let found = client
        .find_uploaded_file("input.jsonl", data.len() as u64, 0)
        .await
        .unwrap();
    assert_eq!(found.map(|f| f.id), Some(file.id.clone()));

    delete_twice(&client, &file.file_id()).await;
    assert_eq!(fake.submitted_counts().values().copied().max(), Some(1));
}

#[tokio::test]
async fn a_completed_batch_can_still_have_an_error_file() {
    let fake = fake().await;
    fake.set_faults(Faults {
        fail_percent: 50,
        fail_status: Some(400),
        ..Faults::default()
    });
    let client = client(&fake, &[]);
    let (file, _) = upload(&client, 20, MODEL).await;
    let batch = client.create_batch(&create_req(&file), false).await.unwrap();
    let done = client.retrieve_batch(&batch.batch_id()).await.unwrap();
    assert_eq!(done.status, ProviderBatchStatus::Completed);
    let ok = results(&client, done.output_file_id.as_ref().unwrap()).await;
    let failed = results(&client, done.error_file_id.as_ref().expect("an error file")).await;
    assert!(!ok.is_empty() && !failed.is_empty());
    assert_eq!(ok.len() + failed.len(), 20);
    assert!(failed.iter().all(|l| matches!(
        &l.outcome,
        Outcome::Error { retryable: false, error, .. } if error.status_code == Some(400)
    )));
}

#[tokio::test]
async fn a_batch_of_bad_lines_fails_with_its_error_string() {
    let fake = fake().await;
    let client = client(&fake, &[]);
    // OpenAI's lines are not Together's.
    let mut data = Vec::new();
    for r in requests(2, MODEL) {
        batchq_core::provider::openai::OpenAiFormat.write_input_line(
            &mut data,
            &r.key,
            "/v1/chat/completions",
            &r.body.to_string(),
        );
    }
    let (file, _) = client.upload_file(&MemSource(data)).await.unwrap();
    let batch = client.create_batch(&create_req(&file.id), false).await.unwrap();
    let done = client.retrieve_batch(&batch.batch_id()).await.unwrap();
    assert_eq!(done.status, ProviderBatchStatus::Failed);
    assert!(
        done.job_errors()[0].message.contains("line 1"),
        "{:?}",
        done.job_errors()
    );
}

#[tokio::test]
async fn a_cancelled_batch_goes_through_canceling_to_cancelled() {
    let fake = FakeServer::start(FakeConfig {
        step_ms: 60_000,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    fake.set_faults(Faults {
        stay_cancelling_polls: 1,
        ..Faults::default()
    });
    let client = client(&fake, &[]);
    let (file, _) = upload(&client, 3, MODEL).await;
    let batch = client.create_batch(&create_req(&file), false).await.unwrap();
    let cancelling = client.cancel_batch(&batch.batch_id()).await.unwrap();
    assert_eq!(cancelling.status, ProviderBatchStatus::Cancelling);
    assert_eq!(
        client.retrieve_batch(&batch.batch_id()).await.unwrap().status,
        ProviderBatchStatus::Cancelling
    );
    let done = client.retrieve_batch(&batch.batch_id()).await.unwrap();
    assert_eq!(done.status, ProviderBatchStatus::Cancelled);
    assert!(done.cancelled_at.is_some());
}

#[tokio::test]
async fn a_wrong_key_is_unauthorized() {
    let fake = fake().await;
    let cfg = provider_config("together", &fake.together_base_url(), &[]);
    let client = TogetherClient::new(&cfg, "wrong").unwrap();
    assert!(matches!(
        client.list_batches(None, 1).await,
        Err(ProviderError::Unauthorized { .. })
    ));
    assert!(matches!(
        client.upload_file(&MemSource(b"{}\n".to_vec())).await,
        Err(ProviderError::Unauthorized { .. })
    ));
}

#[tokio::test]
async fn a_429_and_500s_are_retried_and_an_unknown_batch_is_not_found() {
    let fake = fake().await;
    let client = client(&fake, &[]);
    let (file, _) = upload(&client, 1, MODEL).await;
    let batch = client.create_batch(&create_req(&file), false).await.unwrap();
    fake.set_faults(Faults {
        http_429: [("retrieve".to_owned(), 1)].into(),
        http_500: [("retrieve".to_owned(), 1), ("upload".to_owned(), 1)].into(),
        retry_after_ms: 30,
        ..Faults::default()
    });
    let waits = Arc::new(Mutex::new(Vec::new()));
    let client = client.record_waits(waits.clone());
    let done = client.retrieve_batch(&batch.batch_id()).await.unwrap();
    assert_eq!(done.status, ProviderBatchStatus::Completed);
    let statuses: Vec<u16> = fake.calls("retrieve").iter().map(|e| e.status).collect();
    assert_eq!(statuses, vec![429, 500, 200]);
    assert_eq!(waits.lock().unwrap()[0], Duration::from_millis(30));
    let (_, stats) = client.upload_file(&MemSource(b"{}\n".to_vec())).await.unwrap();
    assert_eq!(stats.attempts, 2, "the upload was sent again after a 500");
    assert!(matches!(
        client
            .retrieve_batch(&batchq_core::ids::ProviderBatchId::new("nope"))
            .await,
        Err(ProviderError::NotFound { what: "batch", .. })
    ));
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_found_by_its_input_file_without_a_second_batch() {
    let fake = fake().await;
    let client = client(&fake, &[("BATCHQ_HTTP_READ_TIMEOUT_SECS", "1")]);
    let (file, _) = upload(&client, 5, MODEL).await;
    fake.set_faults(Faults {
        hang_after_create_ms: Some(3_000),
        ..Faults::default()
    });
    let req = create_req(&file);
    let batch = client.create_batch(&req, false).await.unwrap();
    assert_eq!(fake.submissions().len(), 1, "exactly one provider batch");
    assert_eq!(fake.submissions()[0].batch_id, batch.id);
    assert_eq!(fake.calls("create").len(), 1, "found instead of created again");
    assert_eq!(batch.input_file_id.as_deref(), Some(file.as_str()));

    // A later run of the same job (a crash after create) finds it too.
    fake.set_faults(Faults::default());
    assert_eq!(client.create_batch(&req, true).await.unwrap().id, batch.id);
    assert_eq!(fake.submissions().len(), 1);
}

#[tokio::test]
async fn a_window_together_refuses_is_caught_by_the_check_and_refused_by_the_api() {
    let err = check_completion_window(ProviderKind::Together, "48h").unwrap_err();
    assert!(err.contains("24h only"), "{err}");

    let fake = fake().await;
    // The configuration refuses the window before any call...
    let base = fake.together_base_url();
    let refused =
        std::panic::catch_unwind(move || provider_config("together", &base, &[("BATCHQ_COMPLETION_WINDOW", "48h")]));
    assert!(refused.is_err(), "BATCHQ_COMPLETION_WINDOW=48h is refused for together");
    // ...and the API refuses it too, should one get through.
    let mut cfg = provider_config("together", &fake.together_base_url(), &[]);
    cfg.completion_window = "48h".into();
    let client = TogetherClient::new(&cfg, "sk-fake")
        .unwrap()
        .with_backoff(BACKOFF.0, BACKOFF.1);
    let (file, _) = upload(&client, 1, MODEL).await;
    assert!(matches!(
        client.create_batch(&create_req(&file), false).await,
        Err(ProviderError::Api { status: 400, .. })
    ));
    assert!(fake.submissions().is_empty());
}

#[test]
fn the_together_format_caps_files_and_writes_no_url() {
    let l = TogetherFormat.limits(Endpoint::ChatCompletions);
    assert_eq!((l.max_lines, l.max_bytes), (50_000, 100_000_000));
}

#[tokio::test]
async fn an_expired_batch_has_partial_output_and_retryable_expired_lines() {
    let fake = FakeServer::start(FakeConfig {
        step_ms: 60_000,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let client = client(&fake, &[]);
    let (file, _) = upload(&client, 16, MODEL).await;
    let batch = client.create_batch(&create_req(&file), false).await.unwrap();
    assert!(fake.expire(&batch.id));
    let done = client.retrieve_batch(&batch.batch_id()).await.unwrap();
    assert_eq!(done.status, ProviderBatchStatus::Expired);
    assert!(done.expired_at.is_some());
    let ok = results(&client, done.output_file_id.as_ref().unwrap()).await;
    let expired = results(&client, done.error_file_id.as_ref().unwrap()).await;
    assert_eq!(ok.len() + expired.len(), 16);
    assert!(!expired.is_empty());
    assert!(expired.iter().all(|l| matches!(
        &l.outcome,
        Outcome::Error { retryable: true, error, .. } if error.code == "batch_expired"
    )));
}
