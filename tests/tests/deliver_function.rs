//! The deliver function (`batchq-deliver`) on the emulator: requests finish
//! through the real pipeline, an endpoint is registered through the API
//! (private targets allowed, for the loopback receiver), and the handler is
//! invoked with a DynamoDB stream event and with the schedule's event, as
//! Lambda would. A receiver that answers 500 first gets each event on a
//! later scheduled run; a repeated stream event sends nothing twice; every
//! message's signature verifies.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use batchq_core::api::ApiRequest;
use batchq_core::ids::TenantId;
use batchq_core::pipeline::dispatch::{Dispatcher, HttpSender, WebhookConfig};
use batchq_core::store::webhooks::dynamo::DynamoWebhooks;
use batchq_core::store::webhooks::WebhookStore;
use batchq_core::time::Clock;
use batchq_core::webhook::delivery::RetrySchedule;
use batchq_core::webhook::signature::{verify, SignedHeaders, WebhookSecret};
use batchq_core::webhook::target::TargetPolicy;
use batchq_tests::pipeline::{chat, keys, Pipeline};
use batchq_tests::stores::StoreKind;
use fake_openai::FakeConfig;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One POST the receiver got, and what it answered.
#[derive(Clone, Debug)]
struct Received {
    headers: BTreeMap<String, String>,
    body: String,
    answered: u16,
}

/// A loopback HTTP receiver answering 500 to its first `fail_first` POSTs,
/// then 200.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(fail_first: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let seen = got.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    // Headers, then Content-Length bytes of body.
                    let (head_end, len) = loop {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..at]).to_string();
                            let len = head
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse().ok())?
                                })
                                .unwrap_or(0usize);
                            break (at + 4, len);
                        }
                    };
                    while buf.len() < head_end + len {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let headers = head
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
                    let answered = {
                        let mut got = seen.lock().unwrap();
                        let answered = if got.len() < fail_first { 500 } else { 200 };
                        got.push(Received {
                            headers,
                            body,
                            answered,
                        });
                        answered
                    };
                    let reply = format!("HTTP/1.1 {answered} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    let _ = sock.write_all(reply.as_bytes()).await;
                });
            }
        });
        Self { url, got }
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

/// A DynamoDB stream event with one INSERT of a results feed entry of
/// `tenant`, as the jobs table's stream (KEYS_ONLY) delivers it.
fn stream_event(tenant: &TenantId, seq: u64) -> LambdaEvent<Value> {
    let record = json!({
        "eventID": format!("e{seq}"),
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "Keys": {"pk": {"S": format!("feed#{tenant}")}, "sk": {"S": format!("{seq:020}")}},
            "SequenceNumber": format!("{seq}"),
            "SizeBytes": 60,
            "StreamViewType": "KEYS_ONLY"
        }
    });
    LambdaEvent::new(json!({"Records": [record]}), Context::default())
}

fn schedule_event() -> LambdaEvent<Value> {
    LambdaEvent::new(
        json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}),
        Context::default(),
    )
}

/// The sum of one metric over EMF lines.
fn total(lines: &[String], name: &str) -> f64 {
    lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|d| d[name].as_f64())
        .sum()
}

/// The pipeline's API with the emulator's webhook table, and an endpoint
/// of `tenant` for `events` at a receiver that refuses its first
/// `refuse_first` POSTs.
async fn with_endpoint(
    p: &Pipeline,
    tenant: &TenantId,
    refuse_first: usize,
    events: Value,
) -> (Arc<dyn WebhookStore>, batchq_core::api::Api, Receiver, WebhookSecret) {
    let config = p.config();
    let table = config
        .webhooks_table
        .clone()
        .expect("the test tables include a webhook table");
    let sdk = batchq_core::aws::sdk_config(config).await;
    let hooks: Arc<dyn WebhookStore> = Arc::new(DynamoWebhooks::new(
        batchq_core::aws::dynamo_client(&sdk, &Arc::new(batchq_core::overhead::UsageTally::on_aws())),
        table,
    ));
    let api = p
        .api()
        .with_webhooks(hooks.clone(), TargetPolicy { allow_private: true });
    let receiver = Receiver::start(refuse_first).await;
    let created = api
        .handle(
            tenant,
            ApiRequest::post(
                "/v1/webhooks/endpoints",
                "application/json",
                json!({"url": receiver.url, "events": events}).to_string(),
            ),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let secret = WebhookSecret::parse(created.body["secret"].as_str().unwrap()).unwrap();
    (hooks, api, receiver, secret)
}

#[tokio::test]
async fn the_stream_wakes_deliver_a_failed_delivery_arrives_on_a_later_scheduled_run_and_nothing_is_sent_twice() {
    let p = Pipeline::start_on(StoreKind::Emulator, FakeConfig::default(), |_| {}).await;
    let tenant = TenantId::default_tenant();
    // The receiver refuses the first two POSTs.
    let (hooks, api, receiver, secret) =
        with_endpoint(&p, &tenant, 2, json!(["request.completed", "job.finished"])).await;

    p.clock.advance(Duration::from_millis(10));
    let reqs: Vec<_> = (0..3).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    p.settle(&keys(&reqs), 8).await;
    assert!(p.all_terminal(&keys(&reqs)).await);
    // One more round closes the jobs whose results are in.
    p.round().await;
    let jobs = p.all_jobs().await;
    assert!(jobs.iter().all(|j| j.status.is_terminal()), "{jobs:?}");
    let jobs = jobs.len();

    let webhooks = WebhookConfig {
        schedule: RetrySchedule {
            delays: vec![Duration::from_secs(60)],
            min_span: Duration::from_secs(3600),
        },
        target: TargetPolicy { allow_private: true },
        ..WebhookConfig::default()
    };
    let sender = Arc::new(HttpSender::new(&webhooks).unwrap());
    let ports = p.ports();
    let dispatcher = Dispatcher::new(hooks.clone(), Arc::new(ports.clone()), ports.clock, sender, webhooks);
    let mut lines = Vec::new();

    // The stream's event: the three results and the job's end are made
    // into deliveries and sent; the first two are refused.
    let (r, l) = batchq_deliver::handle_metered(&dispatcher, "batchq/test", stream_event(&tenant, 1)).await;
    let first = r.unwrap();
    lines.extend(l);
    assert_eq!(first["materialised"], json!(3 + jobs), "{first}");
    assert_eq!(
        (first["delivered"].as_u64(), first["retrying"].as_u64()),
        (Some(1 + jobs as u64), Some(2)),
        "{first}"
    );
    assert!(first["oldest_undelivered_secs"].as_u64().is_some(), "{first}");
    let after_first = receiver.got().len();

    // The same stream record again (Lambda retries a batch): nothing is due,
    // nothing is sent.
    let (r, _) = batchq_deliver::handle_metered(&dispatcher, "batchq/test", stream_event(&tenant, 1)).await;
    let again = r.unwrap();
    assert_eq!(
        (again["materialised"].as_u64(), again["delivered"].as_u64()),
        (Some(0), Some(0)),
        "{again}"
    );
    assert_eq!(receiver.got().len(), after_first);

    // A stream event of another tenant passes over none of these endpoints.
    let other = TenantId::parse("someone-else").unwrap();
    let (r, _) = batchq_deliver::handle_metered(&dispatcher, "batchq/test", stream_event(&other, 1)).await;
    assert_eq!(r.unwrap()["endpoints"], 0);

    // The retry's time comes: the schedule's run sends the two again.
    p.clock.advance(Duration::from_secs(61));
    let (r, l) = batchq_deliver::handle_metered(&dispatcher, "batchq/test", schedule_event()).await;
    let retried = r.unwrap();
    lines.extend(l);
    assert_eq!(retried["delivered"], 2, "{retried}");
    assert_eq!(retried["oldest_undelivered_secs"], 0, "{retried}");
    let (r, _) = batchq_deliver::handle_metered(&dispatcher, "batchq/test", schedule_event()).await;
    assert_eq!(r.unwrap()["delivered"], 0);

    // Every event arrived answered 2xx exactly once, signed.
    let got = receiver.got();
    let mut ok: BTreeMap<String, usize> = BTreeMap::new();
    let mut types = BTreeSet::new();
    for g in &got {
        let h = SignedHeaders {
            id: &g.headers["webhook-id"],
            timestamp: &g.headers["webhook-timestamp"],
            signature: &g.headers["webhook-signature"],
        };
        verify(&secret, &h, g.body.as_bytes(), p.clock.now().unix_seconds(), 300)
            .unwrap_or_else(|e| panic!("signature of {}: {e}", h.id));
        let v: Value = serde_json::from_str(&g.body).unwrap();
        types.insert(v["type"].as_str().unwrap().to_owned());
        if g.answered == 200 {
            *ok.entry(g.headers["webhook-id"].clone()).or_default() += 1;
        }
    }
    assert_eq!(ok.len(), 3 + jobs, "{ok:?}");
    assert!(ok.values().all(|n| *n == 1), "{ok:?}");
    assert_eq!(got.len(), 3 + jobs + 2, "two refused, each sent once more");
    assert_eq!(
        types,
        BTreeSet::from(["request.completed".into(), "job.finished".into()])
    );

    // The runs' metrics add up to what happened.
    assert_eq!(total(&lines, "WebhookAttempts"), got.len() as f64);
    assert_eq!(total(&lines, "WebhooksDelivered"), (3 + jobs) as f64);
    assert_eq!(total(&lines, "WebhooksFailed"), 0.0);
    assert!(lines.iter().any(|l| l.contains("WebhookOldestUndeliveredAge")));

    // The deliveries are listed through the API, all delivered.
    let mut list = ApiRequest::get("/v1/webhooks/deliveries");
    list.query = "status=delivered".into();
    let listed = api.handle(&tenant, list).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    assert_eq!(
        listed.body["deliveries"].as_array().map(Vec::len),
        Some(3 + jobs),
        "{:?}",
        listed.body
    );
}

/// Deliver's `main` builds its dispatcher from the configuration alone
/// (`app::aws_dispatcher`: the webhook table and the tables read as they
/// are, no `App`); wired that way it finds and sends what the stream names.
#[tokio::test]
async fn deliver_wired_from_its_configuration_alone_sends_each_event_once() {
    let p = Pipeline::start_on(StoreKind::Emulator, FakeConfig::default(), |_| {}).await;
    let config = p.config().clone();
    let tenant = TenantId::default_tenant();
    let (_, _, receiver, _) = with_endpoint(&p, &tenant, 0, json!(["request.completed"])).await;
    p.clock.advance(Duration::from_millis(10));
    let reqs: Vec<_> = (0..2).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    p.settle(&keys(&reqs), 8).await;
    assert!(p.all_terminal(&keys(&reqs)).await);

    let webhooks = WebhookConfig {
        target: TargetPolicy { allow_private: true },
        ..WebhookConfig::default()
    };
    let sender = Arc::new(HttpSender::new(&webhooks).unwrap());
    let dispatcher = batchq_core::app::aws_dispatcher(&config, webhooks, sender)
        .await
        .expect("BATCHQ_WEBHOOKS_TABLE is set");
    let (r, _) = batchq_deliver::handle_metered(&dispatcher, "batchq/test", stream_event(&tenant, 1)).await;
    let first = r.unwrap();
    assert_eq!(
        (first["materialised"].as_u64(), first["delivered"].as_u64()),
        (Some(2), Some(2)),
        "{first}"
    );
    let (r, _) = batchq_deliver::handle_metered(&dispatcher, "batchq/test", schedule_event()).await;
    assert_eq!(r.unwrap()["delivered"], 0);
    let got = receiver.got();
    assert_eq!(got.len(), 2, "each completed request once");
    let ids: BTreeSet<_> = got.iter().map(|g| g.headers["webhook-id"].clone()).collect();
    assert_eq!(ids.len(), 2);
}
