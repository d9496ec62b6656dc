//! OpenAI's batch events in AWS (issue #17): the enqueue function verifies
//! the event and hands its batch to the poll function by an asynchronous
//! Lambda invocation; the poll function, given that payload, polls that one
//! batch; its copy to S3 fires ingest as usual.
//!
//! Lambda's Invoke API is played by a stand-in on loopback
//! (`AWS_ENDPOINT_URL_LAMBDA`) that checks the path, the invocation type and
//! that the call is SigV4-signed, and records each payload. The stores are
//! those `BATCHQ_TEST_STORE` names; the provider is the fake.

mod api_support;

use api_support::{lambda_answer, post_event};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use batchq_core::api::{ApiRequest, Method};
use batchq_core::config::WebhookSecretSource;
use batchq_core::ids::TenantId;
use batchq_core::job::JobStatus;
use batchq_core::time::Clock;
use batchq_core::webhook::signature::{self, WebhookSecret};
use batchq_tests::lambda::LambdaStandIn;
use batchq_tests::pipeline::Pipeline;
use fake_openai::FakeConfig;
use serde_json::{json, Value};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const POLL_FUNCTION: &str = "batchq-test-poll";
const ACCESS_KEY: &str = "AKIDPROVWH";
const REQUESTS: usize = 3;

fn batch_event(event_id: &str, batch: &str) -> String {
    json!({"id": event_id, "object": "event", "type": "batch.completed", "created_at": 1, "data": {"id": batch}})
        .to_string()
}

/// The API Gateway event of OpenAI's POST, signed with `secret` at `ts`.
fn signed_post(secret: &WebhookSecret, msg_id: &str, ts: i64, body: &str) -> Value {
    let mut e = post_event("/v1/provider-webhooks/openai", "application/json", body);
    let h = e["headers"].as_object_mut().unwrap();
    h.insert("webhook-id".into(), msg_id.into());
    h.insert("webhook-timestamp".into(), ts.to_string().into());
    h.insert(
        "webhook-signature".into(),
        signature::sign(secret, msg_id, ts, body.as_bytes()).into(),
    );
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_batch_event_invokes_the_poll_function_which_polls_that_batch_and_ingest_gets_its_file() {
    let p = Pipeline::start(FakeConfig::default(), |_| {}).await;
    let lambda = LambdaStandIn::start(POLL_FUNCTION, ACCESS_KEY).await;
    let secret = WebhookSecret::parse(SECRET).unwrap();

    // The enqueue function as its main builds it: the API, then the
    // provider-webhook route wired from the configuration.
    let mut config = p.config().clone();
    config.openai_webhook_secret = Some(WebhookSecretSource::Literal(secret.clone()));
    config.poll_function = Some(POLL_FUNCTION.into());
    config.lambda_endpoint_url = Some(lambda.url());
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(ACCESS_KEY, "secret", None, None, "test"))
        .load()
        .await;
    let api = batchq_enqueue::with_provider_webhooks(p.api(), &config, &sdk)
        .await
        .expect("wired");

    // Requests enqueued and submitted; the fake finishes the batch at its
    // first retrieve, which nobody has made yet.
    let tenant = TenantId::parse("default").unwrap();
    for i in 0..REQUESTS {
        let body = json!({"custom_id": format!("pw-{i}"), "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("Q{i}")}]}});
        let resp = api
            .handle(
                &tenant,
                ApiRequest::post("/v1/requests", "application/json", body.to_string()),
            )
            .await;
        assert!(resp.status < 300, "{}", resp.body);
    }
    p.submitter().run(Default::default()).await.expect("submit");
    let jobs = p.all_jobs().await;
    assert_eq!(jobs.len(), 1);
    let job = jobs[0].clone();
    let batch = job.provider_batch_id.clone().expect("submitted").as_str().to_owned();
    let now = p.clock.now().millis().div_euclid(1000);

    // A bad signature: refused, nothing invoked.
    let wrong = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
    let answer = lambda_answer(&api, &signed_post(&wrong, "wh_1", now, &batch_event("evt_1", &batch))).await;
    assert_eq!((answer.status, answer.error().0), (400, Some("webhook-signature")));
    assert!(lambda.calls().is_empty(), "{:?}", lambda.calls());

    // The real event: answered at once, the poll function invoked, the job
    // not polled by the API function.
    let event = signed_post(&secret, "wh_1", now, &batch_event("evt_1", &batch));
    let answer = lambda_answer(&api, &event).await;
    assert_eq!(
        (answer.status, &answer.body["poll"]),
        (200, &json!("queued")),
        "{}",
        answer.body
    );
    let calls = lambda.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].status, 202, "the stand-in refused the call: {calls:?}");
    assert_eq!(
        calls[0].path,
        format!("/2015-03-31/functions/{POLL_FUNCTION}/invocations")
    );
    assert_eq!(calls[0].invocation_type.as_deref(), Some("Event"));
    assert!(calls[0].amz_date.is_some(), "{calls:?}");
    assert!(
        calls[0]
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with(&format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/"))
                && a.contains("/us-east-1/lambda/aws4_request")
                && a.contains("x-amz-invocation-type")),
        "{calls:?}"
    );
    assert_eq!(
        calls[0].payload,
        json!({"poll_batch": {"provider": "openai", "batch_id": batch}})
    );
    assert_eq!(p.job(&job.id).await.status, job.status, "the API function polled");

    // The poll function given that payload polls the batch and copies its
    // file; the copy's S3 event brings it to ingest.
    let out = p
        .poll_event_via_handler(&p.reports(None), calls[0].payload.clone())
        .await
        .expect("poll of one batch");
    assert_eq!(out["polled"], true, "{out}");
    assert_eq!(out["report"]["copied"].as_array().map(Vec::len), Some(1), "{out}");
    p.deliver(&p.ingester()).await.expect("ingest");
    for i in 0..REQUESTS {
        let resp = api
            .handle(&tenant, ApiRequest::new(Method::Get, format!("/v1/requests/pw-{i}")))
            .await;
        assert_eq!(resp.body["status"], "completed", "{}", resp.body);
    }
    let closed = p.job(&job.id).await;
    assert_eq!(closed.status, JobStatus::Done, "{closed:?}");

    // A redelivery: still 200, handed over again; the poll finds the job
    // closed and does nothing.
    let answer = lambda_answer(&api, &event).await;
    assert_eq!(
        (answer.status, &answer.body["poll"]),
        (200, &json!("queued")),
        "{}",
        answer.body
    );
    let calls = lambda.calls();
    assert_eq!(calls.len(), 2);
    let out = p
        .poll_event_via_handler(&p.reports(None), calls[1].payload.clone())
        .await
        .expect("poll of one batch");
    assert_eq!(out["polled"], false, "{out}");
    assert!(p.new_result_events().await.is_empty(), "a second copy was made");
}

#[tokio::test]
async fn a_webhook_secret_without_a_poll_function_is_a_start_up_error() {
    let p = Pipeline::start(FakeConfig::default(), |_| {}).await;
    let mut config = p.config().clone();
    config.openai_webhook_secret = Some(WebhookSecretSource::Literal(WebhookSecret::parse(SECRET).unwrap()));
    config.poll_function = None;
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(ACCESS_KEY, "secret", None, None, "test"))
        .load()
        .await;
    let err = batchq_enqueue::with_provider_webhooks(p.api(), &config, &sdk)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("BATCHQ_POLL_FUNCTION"), "{err}");
}
