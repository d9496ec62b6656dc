//! Each function's IAM role against the calls its code really makes
//! (issue 14, "IAM against real calls").
//!
//! One run of the whole system in which each of the four functions is
//! built as its `main.rs` builds it (an `App` from the configuration, the
//! provider key read from a Secrets Manager secret, the price table read
//! from `s3://BUCKET/config/prices.json`, and, for enqueue, submit and poll,
//! the provider table from `s3://BUCKET/config/providers.json`), but with an
//! access key id of its
//! own, `fn-<function>-<unique>`, and driven through its real handler with
//! real event shapes. The emulator records every call made with those keys
//! (scripts/moto_calls.py). Then, for each function: (a) every recorded call
//! is allowed by its role in infra/template.yaml, and (b) every grant of the
//! role is used by some recorded call, except the grants Lambda uses on the
//! function's behalf and the known gaps, each listed with its reason below.
//!
//! A hand-written list of what the code needs cannot see what it really
//! does: the poll role once lacked `dynamodb:Query` on the jobs table and
//! on queue-index, which every poll run makes, and every poll run in AWS
//! failed with AccessDenied. Here that is a recorded call its role does not
//! allow.
//!
//! The scenarios reach every code path behind a grant: bodies over
//! BATCHQ_INLINE_BODY_MAX_BYTES (S3), responses over
//! BATCHQ_INLINE_RESULT_MAX_BYTES (S3) and a presigned URL to one fetched
//! over HTTP, an answer read from its result file's copy, a re-posted request, a cancelled large-body request that a
//! stale queue listing still offers to submit (a lost claim), a request
//! whose body object is gone (a 404 needs s3:ListBucket), results the
//! provider lost (closing a job reads its input file), a result file whose
//! download breaks off after its first part (an aborted multipart copy), a
//! result file whose ingest event never comes (poll ingests it a lease
//! later), a submit run killed right after its claims (the next run resumes
//! the job through the job index), an upload the provider refuses with HTTP
//! 400 (the job is given up), a batch failed for the model's token limit
//! (poll reads its input file and learns the budget), every read route
//! of the API, and an OpenAI batch event (the enqueue function reads the
//! webhook secret and invokes the poll function: Lambda's Invoke calls are
//! recorded by a stand-in, `batchq_tests::lambda`).
//!
//! Lost conditions are made certain, not hoped for: a global index is held
//! at what it was when the emulator was asked to lag it by an hour
//! (`set_table_index_lag`), so it lists requests as they were then.
//!
//! One grant is the code's but no scenario here can reach its path: see
//! `known_gaps`.

mod api_support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use api_support::{event, lambda_answer, post_event, Answer, TENANT};
use batchq_core::app::App;
use batchq_core::config::WebhookSecretSource;
use batchq_core::config::{ApiKeySource, Config};
use batchq_core::ids::{CustomId, JobId, RequestKey, TenantId};
use batchq_core::keys;
use batchq_core::pipeline::crash::CrashOnce;
use batchq_core::pipeline::dispatch::{HttpSender, WebhookConfig};
use batchq_core::pipeline::{CrashPoint, Ingester, Poller, Submitter};
use batchq_core::request::RequestStatus;
use batchq_core::store::{JobStore, ObjectStore, RequestStore};
use batchq_core::time::{Clock, ManualClock, SystemClock};
use batchq_core::webhook::delivery::RetrySchedule;
use batchq_core::webhook::signature::{self, WebhookSecret};
use batchq_core::webhook::target::TargetPolicy;
use batchq_tests::iam::{check, function_sdk, grants_of, recorded_calls, Call, Findings, Names, Unrecorded};
use batchq_tests::lambda::LambdaStandIn;
use batchq_tests::pipeline::{s3_event, scheduled_event};
use batchq_tests::template::{read, Template};
use batchq_tests::{set_table_index_lag, unique, TestEnv};
use fake_openai::{FakeConfig, FakeServer, Faults};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};

/// Where the price table is put; BATCHQ_PRICING_FILE names it.
const PRICES_KEY: &str = "config/prices.json";
const PROVIDERS_KEY: &str = "config/providers.json";
const PRICES: &str = include_str!("../../shared/data/prices.json");
/// OpenAI's webhook signing secret, in its secret.
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The poll function's name, as the enqueue function invokes it.
const POLL_FUNCTION: &str = "batchq-iam-poll";

/// An index lag far longer than this test: the index stays as it was when
/// the lag was set (for the writes that follow) until it is set to zero.
const HELD: Duration = Duration::from_secs(3600);

/// Where the provider cuts the first download of a larger file: past the
/// first 5 MiB part of the copy's multipart upload.
const CUT_AT: u64 = 5 * 1024 * 1024 + 512 * 1024;

/// Requests in the batch whose result file is downloaded in two tries, and
/// the embeddings each asks for: 16 × 2,000 embeddings make an output file
/// of about 7 MB, over `CUT_AT`.
const BIG_FILE_REQUESTS: usize = 16;
const BIG_FILE_INPUTS: usize = 2000;

/// Grants the code never uses itself, each with the reason it is there.
fn used_by_lambda(function: &str) -> Vec<Unrecorded> {
    let short = function.trim_end_matches("Function");
    let mut out = vec![
        Unrecorded {
            grant: ("logs:CreateLogStream".into(), format!("{short}LogGroup")),
            why: "Lambda creates the function's log streams with its role; the code makes no CloudWatch Logs call"
                .into(),
        },
        Unrecorded {
            grant: ("logs:PutLogEvents".into(), format!("{short}LogGroup")),
            why: "Lambda sends the function's output (its log lines) to its log group with its role".into(),
        },
    ];
    if function == "DeliverFunction" {
        for action in [
            "dynamodb:DescribeStream",
            "dynamodb:GetRecords",
            "dynamodb:GetShardIterator",
            "dynamodb:ListStreams",
        ] {
            out.push(Unrecorded {
                grant: (action.into(), "JobsTable/stream".into()),
                why: "Lambda's event source mapping reads the jobs table's stream with the function's role and \
                      invokes deliver with the records; the code makes no stream call"
                    .into(),
            });
        }
    }
    if function != "EnqueueFunction" {
        out.push(Unrecorded {
            grant: ("sqs:SendMessage".into(), format!("{short}Dlq")),
            why: "Lambda sends the event of a failed asynchronous invocation to the function's OnFailure \
                  destination with its role"
                .into(),
        });
    }
    out
}

/// Grants the code uses on a path no scenario here can reach. Each is
/// listed, not skipped: it is a question for the code's owners (keep the
/// grant, or change the code so that the path can be exercised).
fn known_gaps(function: &str) -> Vec<Unrecorded> {
    match function {
        "SubmitFunction" => vec![Unrecorded {
            grant: ("s3:AbortMultipartUpload".into(), "DataBucket/inputs/*".into()),
            why: "known gap: submit aborts an input file's multipart upload when writing the file fails after \
                  its first part (5 MiB or more) for a reason other than a crash: reading a body from S3 or \
                  DynamoDB failing after the SDK's retries, or a corrupt body. The emulator cannot make S3 or \
                  DynamoDB fail, and a missing body object is skipped, not an error. A denied abort is logged \
                  and the bucket's AbortIncompleteMultipartUpload rule removes the upload"
                .into(),
        }],
        _ => Vec::new(),
    }
}

fn not_recorded(function: &str) -> Vec<Unrecorded> {
    let mut out = used_by_lambda(function);
    out.extend(known_gaps(function));
    out
}

/// The five functions, by their logical ids in the template.
const FUNCTIONS: [&str; 5] = [
    "EnqueueFunction",
    "SubmitFunction",
    "PollFunction",
    "IngestFunction",
    "DeliverFunction",
];

/// A cold start as in the function's main.rs, with the function's own
/// credentials, and the test's clock (leases pass when the test says so).
async fn cold_start(config: &Config, access_key_id: &str, clock: &Arc<ManualClock>) -> App {
    App::from_sdk(config.clone(), function_sdk(access_key_id).await).with_clock(clock.clone())
}

async fn submit(submitter: &Submitter) -> Value {
    batchq_submit::handle(submitter, scheduled_event())
        .await
        .unwrap_or_else(|e| panic!("submit run failed: {e}"))
}

async fn poll(poller: &Poller, reports: &batchq_poll::Reports) -> Value {
    batchq_poll::handle(poller, reports, scheduled_event())
        .await
        .unwrap_or_else(|e| panic!("poll run failed: {e}"))
}

/// Delivers the S3 notification of the object under `key` to ingest.
async fn ingest(env: &TestEnv, ingester: &Ingester, key: &str) -> Value {
    let head = env
        .s3_client
        .head_object()
        .bucket(&env.config.bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{key} is not in the bucket: {e}"));
    let ev = s3_event(
        &env.config.bucket,
        key,
        head.content_length().unwrap_or(0) as u64,
        head.e_tag().unwrap_or_default(),
    );
    batchq_ingest::handle(ingester, &env.config.bucket, LambdaEvent::new(ev, Context::default()))
        .await
        .unwrap_or_else(|e| panic!("ingest of {key} failed: {e}"))
}

fn chat_line(custom_id: &str, text: &str) -> Value {
    json!({
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    })
}

fn embeddings_line(custom_id: &str, model: &str, inputs: usize, text: &str) -> Value {
    let input: Vec<String> = (0..inputs).map(|i| format!("{text} ({i})")).collect();
    json!({"custom_id": custom_id, "url": "/v1/embeddings", "body": {"model": model, "input": input}})
}

/// The job a submit report lists for a model.
fn job_of(report: &Value, model: &str) -> String {
    report["jobs"]
        .as_array()
        .and_then(|jobs| {
            jobs.iter()
                .find(|j| j["group"].as_str().is_some_and(|g| g.ends_with(model)))
        })
        .and_then(|j| j["job_id"].as_str())
        .unwrap_or_else(|| panic!("no job for {model} in {report}"))
        .to_owned()
}

/// The key of a job's output file copy.
fn output_key(job: &str) -> String {
    keys::job_output(&JobId::parse(job).expect("a job id"))
}

fn listed(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} list in {v}"))
        .iter()
        .map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string()))
        .collect()
}

#[tokio::test]
async fn each_role_allows_the_calls_its_function_makes_and_no_more() {
    let env = TestEnv::with(|c| c.policy.submit_min_requests = 1).await;
    let tenant = TenantId::parse(TENANT).unwrap();
    let key_of = |custom_id: &str| RequestKey::derive(&tenant, &CustomId::parse(custom_id).unwrap());

    // The provider ends each embeddings batch without a result for one of
    // its requests (closing such a job reads its input file and job index).
    let lost = ["emb-a-lost", "emb-b-lost"].map(|id| key_of(id).as_str().to_owned());
    let fake = FakeServer::start(FakeConfig {
        faults: Faults {
            lose_custom_ids: lost.to_vec(),
            ..Faults::default()
        },
        ..FakeConfig::default()
    })
    .await
    .expect("start the fake provider");

    // What the stack provides: the key in a secret, the price table in the bucket.
    let admin_sdk = batchq_core::aws::sdk_config(&env.config).await;
    let secret_id = aws_sdk_secretsmanager::Client::new(&admin_sdk)
        .create_secret()
        .name(unique("openai-key"))
        .secret_string("sk-fake")
        .send()
        .await
        .expect("create the key's secret")
        .arn
        .expect("the secret's ARN");
    env.s3
        .put(PRICES_KEY, PRICES.as_bytes().to_vec().into(), "application/json")
        .await
        .expect("put the price table");
    // OpenAI's webhook signing secret (OpenAiWebhookSecretArn), and Lambda's
    // Invoke API for the poll function the enqueue function hands a verified
    // batch event to.
    let webhook_secret_id = aws_sdk_secretsmanager::Client::new(&admin_sdk)
        .create_secret()
        .name(unique("openai-webhook"))
        .secret_string(WEBHOOK_SECRET)
        .send()
        .await
        .expect("create the webhook secret")
        .arn
        .expect("the secret's ARN");
    let mut config = env.config.clone();
    config.openai_webhook_secret = Some(WebhookSecretSource::SecretArn(webhook_secret_id.clone()));
    config.poll_function = Some(POLL_FUNCTION.into());
    config.provider.base_url = fake.base_url();
    config.provider.api_key = ApiKeySource::SecretArn(secret_id.clone());
    config.pricing_file = Some(format!("s3://{}/{PRICES_KEY}", config.bucket));
    // A provider table naming the fake, its key in the deployment's secret.
    let table = serde_json::json!({"providers": {"openai": {
        "kind": "openai", "base_url": fake.base_url(), "api_key_secret_arn": secret_id.clone()}}});
    env.s3
        .put(PROVIDERS_KEY, table.to_string().into_bytes().into(), "application/json")
        .await
        .expect("put the provider table");
    config.providers_file = Some(format!("s3://{}/{PROVIDERS_KEY}", config.bucket));

    // Cold starts, each function with its own access key.
    let access: HashMap<&str, String> = FUNCTIONS
        .iter()
        .map(|f| {
            (
                *f,
                unique(&format!("fn-{}", f.trim_end_matches("Function").to_lowercase())),
            )
        })
        .collect();
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let enqueue_app = cold_start(&config, &access["EnqueueFunction"], &clock)
        .await
        .with_configured_tables()
        .await
        .expect("enqueue reads the provider table");
    let lambda = LambdaStandIn::start(POLL_FUNCTION, &access["EnqueueFunction"]).await;
    let mut enqueue_config = (*enqueue_app.config).clone();
    enqueue_config.lambda_endpoint_url = Some(lambda.url());
    // Private targets allowed: the webhook endpoint is on loopback.
    let api = batchq_enqueue::with_provider_webhooks(
        enqueue_app.api().with_webhooks(
            enqueue_app.webhooks().expect("the test stack has a webhook table"),
            TargetPolicy { allow_private: true },
        ),
        &enqueue_config,
        &enqueue_app.sdk,
    )
    .await
    .expect("enqueue reads the webhook secret");
    let deliver_app = cold_start(&config, &access["DeliverFunction"], &clock).await;
    // No retries: a refused attempt fails the delivery at once (so it can
    // be replayed through the API below).
    let webhook_config = WebhookConfig {
        target: TargetPolicy { allow_private: true },
        schedule: RetrySchedule {
            delays: Vec::new(),
            min_span: Duration::ZERO,
        },
        ..WebhookConfig::default()
    };
    let dispatcher = deliver_app
        .dispatcher(
            webhook_config.clone(),
            Arc::new(HttpSender::new(&webhook_config).unwrap()),
        )
        .expect("deliver has the webhook table");
    let submit_app = cold_start(&config, &access["SubmitFunction"], &clock)
        .await
        .with_configured_tables()
        .await
        .expect("submit reads the provider table");
    let submitter = submit_app.submitter(submit_app.providers().await.expect("submit reads the key's secret"));
    let poll_app = cold_start(&config, &access["PollFunction"], &clock)
        .await
        .with_configured_tables()
        .await
        .expect("poll reads the price table");
    let poller = poll_app.poller(poll_app.providers().await.expect("poll reads the key's secret"));
    let reports = batchq_poll::Reports::new(
        poll_app.api(),
        poll_app.ports.objects.clone(),
        poll_app.config.report_tenants.clone(),
        None,
    );
    let ingest_app = cold_start(&config, &access["IngestFunction"], &clock)
        .await
        .with_configured_tables()
        .await
        .expect("ingest reads the price table");
    let ingester = ingest_app.ingester();
    // The enqueue handler over the enqueue function's API core (its edge
    // reads the IAM identity of API Gateway's events, as in main.rs).
    let call = |ev: Value| {
        let api = api.clone();
        async move { lambda_answer(&api, &ev).await }
    };
    let state = |custom_id: &str| {
        let key = key_of(custom_id);
        let store = &env.store;
        async move { store.get(&key).await.unwrap().expect("request stored") }
    };

    // ---- A webhook endpoint for every event (it answers 404: each
    // attempt fails, and with no retries the delivery is failed).
    let hook = call(post_event(
        "/v1/webhooks/endpoints",
        "application/json",
        &json!({"url": format!("{}/no-such-hook", fake.base_url()),
                "events": ["request.completed", "request.failed", "request.cancelled", "job.finished"]})
        .to_string(),
    ))
    .await;
    assert_eq!(hook.status, 201, "{}", hook.body);
    let hook_id = hook.body["id"].as_str().unwrap().to_owned();

    // ---- Enqueue: one request, then a bulk file with large bodies (S3).
    let large_text = "The quarterly report, paragraph after paragraph. ".repeat(400);
    let first = chat_line("chat-1", "Is this review positive? 'Works well.'");
    let c = call(post_event("/v1/requests", "application/json", &first.to_string())).await;
    assert_eq!(c.status, 202, "{}", c.body);
    let mut bulk = vec![
        chat_line("chat-2", "Is this review positive? 'Broke in a week.'"),
        chat_line("chat-gone", &large_text),
        chat_line("chat-cancel", &large_text),
        embeddings_line(
            "emb-a-big",
            "text-embedding-3-small",
            300,
            "Article of the council's record: the budget was approved after a long debate",
        ),
        embeddings_line("emb-a-lost", "text-embedding-3-small", 1, "A short note"),
        embeddings_line("emb-b-lost", "text-embedding-3-large", 1, "A short note"),
    ];
    for i in 0..BIG_FILE_REQUESTS {
        bulk.push(embeddings_line(
            &format!("emb-b-{i:02}"),
            "text-embedding-3-large",
            BIG_FILE_INPUTS,
            "Item",
        ));
    }
    let body: Vec<String> = bulk.iter().map(Value::to_string).collect();
    let c = call(post_event(
        "/v1/requests/bulk",
        "application/x-ndjson",
        &body.join("\n"),
    ))
    .await;
    assert_eq!(c.status, 200, "{}", c.body);
    assert_eq!(c.body["summary"]["created"], bulk.len(), "{}", c.body["summary"]);
    // Posting the same request again answers the stored one.
    let again: Answer = call(post_event("/v1/requests", "application/json", &first.to_string())).await;
    assert_eq!(again.status, 200, "{}", again.body);

    // ---- Submit, while queue-index still lists chat-cancel as queued: it
    // is cancelled after the index was held, so submit's claim of it loses
    // its condition. chat-gone's body object is lost: a 404, and the request
    // fails instead of its batch.
    set_table_index_lag(&config.requests_table, HELD).await;
    let c = call(event("DELETE", "/v1/requests/chat-cancel", None, None, false)).await;
    assert_eq!(c.status, 200, "{}", c.body);
    assert_eq!(c.body["status"], "cancelled");
    let gone = env
        .s3_client
        .list_objects_v2()
        .bucket(&config.bucket)
        .prefix(format!("bodies/{}/", key_of("chat-gone").as_str()))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.contents().len(), 1, "chat-gone's body is in S3");
    env.s3.delete(gone.contents()[0].key().unwrap()).await.unwrap();
    let submitted = submit(&submitter).await;
    set_table_index_lag(&config.requests_table, Duration::ZERO).await;
    assert_eq!(listed(&submitted, "errors"), Vec::<String>::new(), "{submitted}");
    assert_eq!(submitted["jobs"].as_array().unwrap().len(), 3, "{submitted}");
    let chat_job = job_of(&submitted, "gpt-4o-mini");
    let job_a = job_of(&submitted, "text-embedding-3-small");
    let job_b = job_of(&submitted, "text-embedding-3-large");
    assert_eq!(state("chat-cancel").await.status, RequestStatus::Cancelled);
    let gone = state("chat-gone").await;
    assert_eq!(gone.status, RequestStatus::Failed);
    assert_eq!(gone.last_error.unwrap().code, "body_missing");
    let c = call(event("GET", "/v1/requests/chat-1", None, None, false)).await;
    assert_eq!(c.body["status"], "claimed", "{}", c.body);

    // ---- Results, while job-index still lists the embeddings requests as
    // claimed: closing a job whose results lack a request re-queues it from
    // the input file and the index, and the index names requests that have
    // finished meanwhile (lost conditions).
    set_table_index_lag(&config.requests_table, HELD).await;
    fake.set_faults(Faults {
        cut_content: 1,
        cut_content_at_bytes: CUT_AT,
        ..Faults::default()
    });
    let polled = poll(&poller, &reports).await;
    let copied = listed(&polled, "copied");
    assert!(copied.contains(&output_key(&chat_job)), "{polled}");
    assert!(copied.contains(&output_key(&job_a)), "{polled}");
    // Job B's output file is over CUT_AT: its download broke off after the
    // first part of the copy, which was aborted.
    let errors = listed(&polled, "errors");
    assert!(
        errors.len() == 1 && errors[0].starts_with(&job_b),
        "only job B's copy fails: {polled}"
    );
    for job in [&chat_job, &job_a] {
        let report = ingest(&env, &ingester, &output_key(job)).await;
        assert_eq!(report["ingested"][0]["closed"], true, "{report}");
    }
    assert_eq!(state("emb-a-big").await.status, RequestStatus::Completed);
    let requeued = state("emb-a-lost").await;
    assert_eq!(requeued.status, RequestStatus::Queued);
    assert_eq!(requeued.last_error.unwrap().code, "missing_result");
    // The second try copies job B's file; its notification never comes, and
    // a lease later poll ingests the file itself.
    let polled = poll(&poller, &reports).await;
    assert_eq!(listed(&polled, "copied"), [output_key(&job_b)], "{polled}");
    clock.advance(config.policy.job_lease + Duration::from_secs(1));
    let polled = poll(&poller, &reports).await;
    assert_eq!(listed(&polled, "ingested_late"), [output_key(&job_b)], "{polled}");
    assert!(listed(&polled, "closed").contains(&job_b), "{polled}");
    set_table_index_lag(&config.requests_table, Duration::ZERO).await;
    for i in 0..BIG_FILE_REQUESTS {
        assert_eq!(state(&format!("emb-b-{i:02}")).await.status, RequestStatus::Completed);
    }
    assert_eq!(state("emb-b-lost").await.status, RequestStatus::Queued);

    // ---- The two lost requests go again. The first submit run stops right
    // after its first claim (killed); a lease later the next run resumes
    // that job, finding its claims through the job index. The provider
    // refuses the resumed job's upload with HTTP 400 (the job is given up,
    // its request back in the queue) and fails the other batch for the
    // model's enqueued-token limit.
    let killed = Submitter::new(
        submit_app
            .core()
            .with_crashes(Arc::new(CrashOnce::new(CrashPoint::SubmitAfterClaim))),
        submit_app.providers().await.expect("submit reads the key's secret"),
    );
    let crashed = batchq_submit::handle(&killed, scheduled_event()).await;
    assert!(crashed.is_err(), "the run stops after its claim");
    clock.advance(config.policy.job_lease + Duration::from_secs(1));
    fake.set_faults(Faults {
        http_400: HashMap::from([("upload".to_owned(), 1)]),
        token_limit_exceeded: true,
        ..Faults::default()
    });
    let submitted = submit(&submitter).await;
    assert_eq!(listed(&submitted, "abandoned").len(), 1, "{submitted}");
    // The given-up job's request goes out again in the same run, with the other.
    assert_eq!(submitted["jobs"].as_array().unwrap().len(), 2, "{submitted}");
    let polled = poll(&poller, &reports).await;
    assert!(
        polled["changed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["to"] == "failed"),
        "{polled}"
    );
    // Each was refused alone for the limit: that uses an attempt, and
    // emb-b-lost (in its third batch, counting the killed run's) has none left.
    assert_eq!(state("emb-a-lost").await.status, RequestStatus::Queued);
    let exhausted = state("emb-b-lost").await;
    assert_eq!(exhausted.status, RequestStatus::Failed);
    assert_eq!(exhausted.last_error.unwrap().code, "token_limit_exceeded");

    // ---- Every read route of the API, and a large response through its URL.
    for path in ["/v1/stats", "/v1/jobs", &format!("/v1/jobs/{job_a}"), "/v1/savings"] {
        let c = call(event("GET", path, None, None, false)).await;
        assert_eq!(c.status, 200, "{path}: {}", c.body);
    }
    let c = call(event("GET", "/v1/requests/emb-a-big", None, None, false)).await;
    assert_eq!(c.body["status"], "completed", "{}", c.body);
    let url = c.body["result"]["response_url"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("a large response comes as a URL: {}", c.body));
    let fetched: Value = reqwest::get(url)
        .await
        .unwrap()
        .error_for_status()
        .expect("the presigned URL works")
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["data"].as_array().unwrap().len(), 300);
    // An answer read from the copy of its result file (a ranged GET).
    let c = call(event("GET", "/v1/requests/chat-1", None, None, false)).await;
    assert_eq!(c.body["status"], "completed", "{}", c.body);
    assert!(c.body["result"]["response"].is_object(), "{}", c.body);

    // ---- The daily report run (a second schedule of poll), twice: the
    // second finds it written.
    for written in [true, false] {
        let mut report_event = scheduled_event();
        report_event.payload = serde_json::json!({"report": clock.now().utc_date()});
        let r = batchq_poll::handle(&poller, &reports, report_event)
            .await
            .unwrap_or_else(|e| panic!("report run failed: {e}"));
        assert_eq!(r["reports"][0]["written"], written, "{r}");
    }

    // ---- An OpenAI batch event for a closed job's batch: verified, handed
    // to the poll function (an asynchronous invocation), which finds no open
    // job with that batch.
    let batch = env
        .store
        .get_job(&JobId::parse(&job_a).unwrap())
        .await
        .unwrap()
        .expect("job A")
        .provider_batch_id
        .expect("submitted")
        .as_str()
        .to_owned();
    let body =
        json!({"id": "evt_iam", "object": "event", "type": "batch.completed", "created_at": 1, "data": {"id": batch}})
            .to_string();
    let ts = clock.now().millis().div_euclid(1000);
    let mut hook = post_event("/v1/provider-webhooks/openai", "application/json", &body);
    let secret = WebhookSecret::parse(WEBHOOK_SECRET).unwrap();
    for (name, value) in [
        ("webhook-id", "wh_iam".to_owned()),
        ("webhook-timestamp", ts.to_string()),
        (
            "webhook-signature",
            signature::sign(&secret, "wh_iam", ts, body.as_bytes()),
        ),
    ] {
        hook["headers"][name] = value.into();
    }
    let c = call(hook).await;
    assert_eq!((c.status, &c.body["poll"]), (200, &json!("queued")), "{}", c.body);
    let invoked = lambda.calls();
    assert_eq!(invoked.len(), 1, "{invoked:?}");
    let mut one = scheduled_event();
    one.payload = invoked[0].payload.clone();
    let r = batchq_poll::handle(&poller, &reports, one)
        .await
        .unwrap_or_else(|e| panic!("poll of one batch failed: {e}"));
    assert_eq!(r["polled"], false, "{r}");

    // ---- Deliver: the stream's event for the tenant, then the schedule's.
    let stream = json!({"Records": [{"eventName": "INSERT", "eventSource": "aws:dynamodb",
        "dynamodb": {"Keys": {"pk": {"S": format!("feed#{TENANT}")}, "sk": {"S": "00000000000000000001"}}}}]});
    let delivered = batchq_deliver::handle(&dispatcher, "batchq/test", LambdaEvent::new(stream, Context::default()))
        .await
        .unwrap_or_else(|e| panic!("deliver run failed: {e}"));
    assert!(delivered["materialised"].as_u64() > Some(0), "{delivered}");
    assert!(delivered["failed"].as_u64() > Some(0), "{delivered}");
    clock.advance(Duration::from_secs(3 * 3600));
    let ticked = batchq_deliver::handle(&dispatcher, "batchq/test", scheduled_event())
        .await
        .unwrap_or_else(|e| panic!("deliver run failed: {e}"));
    assert_eq!(ticked["errors"], 0, "{ticked}");

    // ---- The webhook routes: list, replay, change, remove.
    let listed = call(event("GET", "/v1/webhooks/deliveries", None, None, false)).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let delivery = listed.body["deliveries"][0]["id"].as_str().unwrap().to_owned();
    let replayed = call(post_event(
        &format!("/v1/webhooks/deliveries/{delivery}/replay"),
        "application/json",
        "{}",
    ))
    .await;
    assert!(replayed.status < 300, "{}", replayed.body);
    let changed = call(event(
        "PATCH",
        &format!("/v1/webhooks/endpoints/{hook_id}"),
        Some("application/json"),
        Some(br#"{"enabled": false}"#),
        false,
    ))
    .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    let removed = call(event(
        "DELETE",
        &format!("/v1/webhooks/endpoints/{hook_id}"),
        None,
        None,
        false,
    ))
    .await;
    assert!(removed.status < 300, "{}", removed.body);

    // ---- The roles against the calls.
    let names = Names {
        requests_table: config.requests_table.clone(),
        jobs_table: config.jobs_table.clone(),
        webhooks_table: config.webhooks_table.clone(),
        bucket: config.bucket.clone(),
        secret_id,
        webhook_secret_id,
        poll_function: POLL_FUNCTION.into(),
    };
    let mut calls = HashMap::new();
    for function in FUNCTIONS {
        let mut recorded = recorded_calls(&access[function]).await;
        assert!(!recorded.is_empty(), "{function} made no call with its own access key");
        if function == "EnqueueFunction" {
            // Lambda's Invoke calls go to the stand-in, which records them.
            recorded.extend(invoked.iter().map(|i| Call {
                service: "lambda".into(),
                operation: "Invoke".into(),
                resource: POLL_FUNCTION.into(),
                index: None,
                status: i.status,
            }));
        }
        calls.insert(function, recorded);
    }
    let findings_of = |template: &Template, function: &str| -> Findings {
        check(
            &grants_of(template, function),
            &calls[function],
            &names,
            &not_recorded(function),
        )
    };
    let template = Template::load();
    let mut problems = String::new();
    for function in FUNCTIONS {
        let findings = findings_of(&template, function);
        if !findings.is_clean() {
            problems.push_str(&format!("{function}:\n{findings}"));
        }
    }
    assert!(
        problems.is_empty(),
        "infra/template.yaml against the calls each function made (denied: a call its role does not allow; \
         unused: a grant no call needed):\n{problems}"
    );

    // ---- The check itself: a grant taken away is a denied call, a grant
    // added is an unused one (the poll role's Query on the jobs table, which
    // it once lacked).
    let text = read("infra/template.yaml");
    let (start, end) = (
        text.find("\n  PollRole:").unwrap(),
        text.find("\n  IngestRole:").unwrap(),
    );
    let jobs = "Action: [dynamodb:GetItem, dynamodb:PutItem, dynamodb:UpdateItem, dynamodb:Query]\n                Resource: !GetAtt JobsTable.Arn";
    assert!(
        text[start..end].contains(jobs),
        "the poll role's jobs statement moved; update this check"
    );
    let with_poll_jobs = |action_list: &str| {
        let role = text[start..end].replacen(
            jobs,
            &format!("Action: [{action_list}]\n                Resource: !GetAtt JobsTable.Arn"),
            1,
        );
        Template::from_text(&format!("{}{role}{}", &text[..start], &text[end..]))
    };
    let narrowed = findings_of(
        &with_poll_jobs("dynamodb:GetItem, dynamodb:PutItem, dynamodb:UpdateItem"),
        "PollFunction",
    );
    let denied_query = format!(
        "dynamodb Query {} (200) needs dynamodb:Query on JobsTable",
        config.jobs_table
    );
    assert!(
        narrowed.denied.contains(&denied_query),
        "without Query on the jobs table: {narrowed}"
    );
    let widened = findings_of(
        &with_poll_jobs("dynamodb:GetItem, dynamodb:PutItem, dynamodb:UpdateItem, dynamodb:Query, dynamodb:DeleteItem"),
        "PollFunction",
    );
    assert_eq!(
        widened.unused,
        [("dynamodb:DeleteItem".to_owned(), "JobsTable".to_owned())],
        "{widened}"
    );
}
