//! batchq's own AWS use, as it measures it, against the emulator's meter
//! (scripts/moto_meter.py) on the same calls (issue 20, "Net savings,
//! honestly").
//!
//! The four functions are built as their `main.rs` builds them (an `App`
//! over the AWS stores, each its own process's usage tally), with one access
//! key `fn-overhead-<unique>` between them, so the meter keeps their calls
//! apart from every other test's. The pipeline runs through the real
//! handlers: single and bulk enqueue, submit, poll, ingest. Then:
//!
//! * the DynamoDB units batchq added up from the calls' answers equal the
//!   units the meter charged them (less those of refused calls, whose
//!   answers report none): a call that did not ask for its consumed
//!   capacity, or whose answer was not added, makes them differ;
//! * batchq's S3 requests by price class equal the meter's;
//! * what batchq recorded as overhead (`/v1/savings`, and the tallies not
//!   yet folded into a write) is what its usage costs at the list prices;
//! * `/v1/jobs/{id}` and `/v1/savings` show `aws_overhead_usd` and
//!   `net_saved_usd` = saved − overhead.
//!
//! Needs the emulator with its meter (`scripts/with-emulator.sh` starts it
//! so unless BATCHQ_MOTO_METER=0).

mod api_support;

use std::sync::Arc;

use api_support::{event, lambda_answer, post_event};
use batchq_core::app::App;
use batchq_core::config::{ApiKeySource, Config};
use batchq_core::ids::JobId;
use batchq_core::money::Money;
use batchq_core::overhead::{AwsUsage, AWS_LIST};
use batchq_core::time::{Clock, ManualClock, SystemClock};
use batchq_tests::iam::function_sdk;
use batchq_tests::pipeline::{s3_event, scheduled_event};
use batchq_tests::{emulator_endpoint, unique, TestEnv};
use fake_openai::{FakeConfig, FakeServer};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};

/// The meter's totals of the calls signed with `key`: service → operation → counts.
async fn meter_of(key: &str) -> Value {
    let url = format!("{}/_batchq/meter?key={key}", emulator_endpoint());
    let resp = reqwest::get(&url).await.expect("the emulator answers");
    assert!(
        resp.status().is_success(),
        "{url}: {} (the emulator must run with its meter, BATCHQ_MOTO_METER=1)",
        resp.status()
    );
    resp.json().await.expect("the meter answers JSON")
}

fn sum(meter: &Value, service: &str, field: &str, only: impl Fn(&str) -> bool) -> f64 {
    meter[service]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(op, _)| only(op))
        .map(|(_, c)| c[field].as_f64().unwrap_or(0.0))
        .sum()
}

/// S3 operations AWS bills at the PUT rate (the bench's list, bench/src/meter.rs).
fn s3_put_class(op: &str) -> bool {
    matches!(
        op,
        "PutObject"
            | "CopyObject"
            | "CreateMultipartUpload"
            | "UploadPart"
            | "UploadPartCopy"
            | "CompleteMultipartUpload"
            | "ListObjects"
            | "ListObjectsV2"
            | "PostObject"
            | "CreateBucket"
    )
}

fn s3_free(op: &str) -> bool {
    matches!(
        op,
        "DeleteObject" | "DeleteObjects" | "AbortMultipartUpload" | "DeleteBucket"
    )
}

fn chat_line(custom_id: &str, text: &str) -> Value {
    json!({
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    })
}

fn money(v: &Value) -> Money {
    Money::parse_decimal(v.as_str().unwrap_or_else(|| panic!("not an amount: {v}"))).expect("an amount")
}

#[tokio::test]
async fn batchq_counts_every_dynamodb_unit_and_s3_request_the_meter_charges_it() {
    let env = TestEnv::with(|c| c.policy.submit_min_requests = 1).await;
    let fake = FakeServer::start(FakeConfig::default())
        .await
        .expect("start the fake provider");
    let mut config: Config = env.config.clone();
    config.provider.base_url = fake.base_url();
    config.provider.api_key = ApiKeySource::Literal("sk-fake".into());
    let key = unique("fn-overhead");
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let cold_start = || async { App::from_sdk(config.clone(), function_sdk(&key).await).with_clock(clock.clone()) };
    let (enqueue_app, submit_app, poll_app, ingest_app) = (
        cold_start().await,
        cold_start().await,
        cold_start().await,
        cold_start().await,
    );
    let api = enqueue_app.api();
    let submitter = submit_app.submitter(submit_app.providers().await.expect("a provider"));
    let poller = poll_app.poller(poll_app.providers().await.expect("a provider"));
    let reports = batchq_poll::Reports::new(poll_app.api(), poll_app.ports.objects.clone(), Vec::new(), None);
    let ingester = ingest_app.ingester();

    // Enqueue: two single calls and a bulk call with bodies of a few KB.
    let text = |i: usize| {
        format!(
            "Review {i}: {}",
            "works well, would buy again. ".repeat(20 + 40 * (i % 4))
        )
    };
    for i in 0..2 {
        let c = lambda_answer(
            &api,
            &post_event(
                "/v1/requests",
                "application/json",
                &chat_line(&format!("one-{i}"), &text(i)).to_string(),
            ),
        )
        .await;
        assert_eq!(c.status, 202, "{}", c.body);
    }
    let bulk: Vec<String> = (0..30)
        .map(|i| chat_line(&format!("bulk-{i}"), &text(i)).to_string())
        .collect();
    let c = lambda_answer(
        &api,
        &post_event("/v1/requests/bulk", "application/x-ndjson", &bulk.join("\n")),
    )
    .await;
    assert_eq!(c.status, 200, "{}", c.body);
    assert_eq!(c.body["summary"]["created"], 30, "{}", c.body);
    // The bulk call folded its own use before it answered (its last
    // transaction's units too): its process holds only the folding update's
    // own write unit, not a call's worth left for a next call that may never come.
    assert_eq!(
        enqueue_app.ports.usage.peek(),
        AwsUsage {
            wcu: 1.0,
            ..AwsUsage::default()
        }
    );

    // Submit, poll (the fake ends the batch at once; poll copies its file), ingest.
    let submitted = batchq_submit::handle(&submitter, scheduled_event())
        .await
        .expect("submit runs");
    assert_eq!(submitted["claimed"], 32, "{submitted}");
    let job = submitted["jobs"][0]["job_id"].as_str().expect("a job").to_owned();
    let polled = batchq_poll::handle(&poller, &reports, scheduled_event())
        .await
        .expect("poll runs");
    let copied: Vec<String> = polled["copied"]
        .as_array()
        .unwrap_or_else(|| panic!("{polled}"))
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    assert!(!copied.is_empty(), "{polled}");
    for k in &copied {
        let head = env
            .s3_client
            .head_object()
            .bucket(&env.config.bucket)
            .key(k)
            .send()
            .await
            .unwrap();
        let ev = s3_event(
            &env.config.bucket,
            k,
            head.content_length().unwrap_or(0) as u64,
            head.e_tag().unwrap_or_default(),
        );
        let out = batchq_ingest::handle(&ingester, &env.config.bucket, LambdaEvent::new(ev, Context::default()))
            .await
            .expect("ingest runs");
        assert_eq!(out["ingested"][0]["completed"], 32, "{out}");
    }

    // What batchq measured, against what the meter charged.
    let apps = [&enqueue_app, &submit_app, &poll_app, &ingest_app];
    let mut measured = AwsUsage::default();
    for app in apps {
        measured.add(&app.ports.usage.lifetime());
    }
    let meter = meter_of(&key).await;
    let all = |_: &str| true;
    let charged_wcu = sum(&meter, "dynamodb", "wcu", all) - sum(&meter, "dynamodb", "refused_wcu", all);
    let charged_rcu = sum(&meter, "dynamodb", "rcu", all) - sum(&meter, "dynamodb", "refused_rcu", all);
    assert!(charged_wcu > 0.0 && charged_rcu > 0.0, "{meter}");
    assert_eq!(
        measured.wcu, charged_wcu,
        "write units: batchq's against the meter's {meter}"
    );
    assert_eq!(
        measured.rcu, charged_rcu,
        "read units: batchq's against the meter's {meter}"
    );
    let calls = |only: &dyn Fn(&str) -> bool| sum(&meter, "s3", "calls", only) as u64;
    assert_eq!(
        measured.s3_put_class,
        calls(&s3_put_class),
        "S3 PUT-class requests {meter}"
    );
    assert_eq!(
        measured.s3_get_class,
        calls(&|op| !s3_put_class(op) && !s3_free(op)),
        "S3 GET-class requests {meter}"
    );

    // What was recorded is what the usage costs. Every take of a tally is
    // folded into one write: enqueue's into the tenant's hourly counters,
    // submit's and poll's into the job's saves, ingest's into the savings
    // totals and the job (one amount, shown in both). So the enqueue
    // overhead, the job's, and what the tallies still hold add up to the
    // usage priced, to the picodollar a fold rounds.
    let by_model = lambda_answer(&api, &event("GET", "/v1/savings?group_by=model", None, None, false)).await;
    assert_eq!(by_model.status, 200, "{}", by_model.body);
    let enqueue_overhead = money(&by_model.body["enqueue_aws_overhead_usd"]);
    let total = &by_model.body["total"];
    let overhead = money(&total["aws_overhead_usd"]);
    assert!(
        enqueue_overhead > Money::ZERO && overhead > enqueue_overhead,
        "{}",
        by_model.body
    );
    assert_eq!(
        money(&total["net_saved_usd"]),
        money(&total["saved_usd"]) - overhead,
        "{total}"
    );
    let stored = ingest_app
        .ports
        .jobs
        .get_job(&JobId::parse(&job).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(stored.aws_overhead_ingest > Money::ZERO, "{stored:?}");
    let mut pending = AwsUsage::default();
    for app in apps {
        pending.add(&app.ports.usage.peek());
    }
    // (The reads of /v1/savings above are usage too: priced as of now.)
    let mut measured = AwsUsage::default();
    for app in apps {
        measured.add(&app.ports.usage.lifetime());
    }
    let priced = measured.cost(&AWS_LIST);
    let accounted = enqueue_overhead + stored.aws_overhead + pending.cost(&AWS_LIST);
    let diff = (priced.picodollars() - accounted.picodollars()).abs();
    assert!(diff <= 64, "usage priced {priced}, recorded and pending {accounted}");
    // The savings hold the enqueue overhead and the job's up to its ingest
    // (what closing the job saved after is the job's alone).
    assert!(overhead <= enqueue_overhead + stored.aws_overhead, "{total} {stored:?}");

    let shown = lambda_answer(&api, &event("GET", &format!("/v1/jobs/{job}"), None, None, false)).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(
        money(&shown.body["aws_overhead_usd"]),
        stored.aws_overhead,
        "{}",
        shown.body
    );
    assert_eq!(
        money(&shown.body["net_saved_usd"]),
        money(&shown.body["totals"]["saved"]) - stored.aws_overhead,
        "{}",
        shown.body
    );
}
