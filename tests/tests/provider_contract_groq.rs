//! Contract tests: the OpenAI client as Groq's (kind `groq`) against the
//! fake's Groq routes (`/openai/v1`) over real HTTP.

mod compat_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use batchq_core::job::{ProviderBatchStatus, ProviderKind};
use batchq_core::provider::openai::OpenAiClient;
use batchq_core::provider::{check_completion_window, Outcome, Provider, ProviderError};
use batchq_core::request::Endpoint;
use compat_support::*;
use fake_openai::{FakeConfig, FakeHandle, FakeServer, Faults};

const MODEL: &str = "llama-3.1-8b-instant";

fn client(fake: &FakeHandle, extra: &[(&str, &str)]) -> OpenAiClient {
    let cfg = provider_config("groq", &fake.groq_base_url(), extra);
    assert_eq!(cfg.kind, ProviderKind::Groq);
    OpenAiClient::new(&cfg, "sk-fake")
        .unwrap()
        .with_backoff(BACKOFF.0, BACKOFF.1)
}

#[tokio::test]
async fn a_batch_with_a_two_day_window_runs_to_completion_and_its_output_reads_with_the_groq_format() {
    let fake = fake().await;
    let client = client(&fake, &[("BATCHQ_COMPLETION_WINDOW", "48h")]);
    assert_eq!(client.format().limits(Endpoint::ChatCompletions).max_bytes, 100_000_000);
    let (file, reqs) = upload(&client, 12, MODEL).await;
    let req = create_req(&file);
    let created = client.create_batch(&req, true).await.unwrap();
    assert_eq!(created.status, ProviderBatchStatus::Validating);
    assert_eq!(created.completion_window.as_deref(), Some("48h"));
    assert_eq!(created.expires_at, created.created_at.map(|t| t + 48 * 3600));
    assert_eq!(
        created.job_id_metadata(),
        Some(req.job_id.as_str()),
        "Groq keeps metadata"
    );

    let done = client.retrieve_batch(&created.batch_id()).await.unwrap();
    assert_eq!(done.status, ProviderBatchStatus::Completed);
    assert_eq!(done.request_counts.completed, 12);
    let lines = results(&client, done.output_file_id.as_ref().unwrap()).await;
    assert_eq!(lines.len(), 12);
    for r in &reqs {
        let line = lines.iter().find(|l| l.key == r.key).expect("every request answered");
        match &line.outcome {
            Outcome::Success {
                status_code,
                body,
                usage,
                ..
            } => {
                assert_eq!(*status_code, 200);
                let want = fake_openai::respond("/v1/chat/completions", r.key.as_str(), &r.body);
                assert_eq!(serde_json::from_str::<serde_json::Value>(body).unwrap(), want);
                assert!(usage.is_some());
            }
            o => panic!("{o:?}"),
        }
    }
    assert!(client.find_batch(&req).await.unwrap().is_some());
    // Groq's lists take no paging parameters.
    assert!(fake.calls("list").iter().all(|e| e.query.is_empty()));
    assert!(fake.log().iter().all(|e| e.path.starts_with("/openai/v1/")));
}

#[tokio::test]
async fn a_completed_batch_with_failed_lines_has_an_error_file_read_as_retryable_failures() {
    let fake = fake().await;
    fake.set_faults(Faults {
        fail_percent: 50,
        fail_status: Some(500),
        ..Faults::default()
    });
    let client = client(&fake, &[]);
    let (file, _) = upload(&client, 20, MODEL).await;
    let batch = client.create_batch(&create_req(&file), false).await.unwrap();
    let done = client.retrieve_batch(&batch.batch_id()).await.unwrap();
    assert_eq!(done.status, ProviderBatchStatus::Completed);
    assert!(done.request_counts.failed > 0 && done.request_counts.completed > 0);
    let errors = results(&client, done.error_file_id.as_ref().unwrap()).await;
    assert_eq!(errors.len() as u64, done.request_counts.failed);
    assert!(errors.iter().all(|l| matches!(
        &l.outcome,
        Outcome::Error { retryable: true, error, .. } if error.status_code == Some(500)
    )));
}

#[tokio::test]
async fn a_cancelled_batch_ends_cancelled() {
    let fake = FakeServer::start(FakeConfig {
        step_ms: 60_000,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let client = client(&fake, &[]);
    let (file, _) = upload(&client, 3, MODEL).await;
    let batch = client.create_batch(&create_req(&file), false).await.unwrap();
    let cancelling = client.cancel_batch(&batch.batch_id()).await.unwrap();
    assert_eq!(cancelling.status, ProviderBatchStatus::Cancelling);
    let done = client.retrieve_batch(&batch.batch_id()).await.unwrap();
    assert_eq!(done.status, ProviderBatchStatus::Cancelled);
}

#[tokio::test]
async fn a_wrong_key_is_unauthorized() {
    let fake = fake().await;
    let cfg = provider_config("groq", &fake.groq_base_url(), &[]);
    let client = OpenAiClient::new(&cfg, "gsk-wrong").unwrap();
    assert!(matches!(
        client.list_batches(None, 1).await,
        Err(ProviderError::Unauthorized { .. })
    ));
}

#[tokio::test]
async fn a_429_and_a_500_are_retried_honouring_retry_after() {
    let fake = fake().await;
    let client = client(&fake, &[]);
    let (file, _) = upload(&client, 1, MODEL).await;
    let batch = client.create_batch(&create_req(&file), false).await.unwrap();
    fake.set_faults(Faults {
        http_429: [("retrieve".to_owned(), 1)].into(),
        http_500: [("retrieve".to_owned(), 1)].into(),
        retry_after_ms: 40,
        ..Faults::default()
    });
    let waits = Arc::new(Mutex::new(Vec::new()));
    let client = client.record_waits(waits.clone());
    let done = client.retrieve_batch(&batch.batch_id()).await.unwrap();
    assert_eq!(done.status, ProviderBatchStatus::Completed);
    let statuses: Vec<u16> = fake.calls("retrieve").iter().map(|e| e.status).collect();
    assert_eq!(statuses, vec![429, 500, 200]);
    assert_eq!(waits.lock().unwrap()[0], Duration::from_millis(40));
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_found_again_without_a_second_batch() {
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
    assert_eq!(fake.calls("create").len(), 1);
}

#[tokio::test]
async fn a_window_groq_refuses_is_caught_by_the_check_and_refused_by_the_api() {
    assert!(check_completion_window(ProviderKind::Groq, "7d").is_ok());
    let err = check_completion_window(ProviderKind::Groq, "8d").unwrap_err();
    assert!(err.contains("24h to 7d"), "{err}");

    let fake = fake().await;
    // The configuration refuses the window before any call...
    let base = fake.groq_base_url();
    let refused =
        std::panic::catch_unwind(move || provider_config("groq", &base, &[("BATCHQ_COMPLETION_WINDOW", "8d")]));
    assert!(refused.is_err(), "BATCHQ_COMPLETION_WINDOW=8d is refused for groq");
    // ...and the API refuses it too, should one get through.
    let mut cfg = provider_config("groq", &fake.groq_base_url(), &[]);
    cfg.completion_window = "8d".into();
    let client = OpenAiClient::new(&cfg, "sk-fake")
        .unwrap()
        .with_backoff(BACKOFF.0, BACKOFF.1);
    let (file, _) = upload(&client, 1, MODEL).await;
    match client.create_batch(&create_req(&file), false).await {
        Err(ProviderError::Api {
            status: 400, message, ..
        }) => assert!(message.contains("24h and 7d"), "{message}"),
        other => panic!("expected a 400, got {other:?}"),
    }
    assert!(fake.submissions().is_empty());
}

#[tokio::test]
async fn an_endpoint_groq_does_not_batch_is_refused_without_a_call() {
    let fake = fake().await;
    let client = client(&fake, &[]);
    let mut req = create_req("file-x");
    req.endpoint = Endpoint::Embeddings;
    assert!(matches!(
        client.create_batch(&req, false).await,
        Err(ProviderError::Api { status: 400, .. })
    ));
    assert!(fake.log().is_empty());
}
