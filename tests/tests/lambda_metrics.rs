//! The Lambda path's metrics: every metric of `batchq_core::metrics::ALL`
//! appears in a CloudWatch EMF line printed by a real run of the five
//! handlers (invoked in-process, as Lambda would), and each line is a valid
//! EMF document. Runs on the store `BATCHQ_TEST_STORE` names.

mod api_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use api_support::event;
use batchq_core::job::ProviderKind;
use batchq_core::metrics::{self, emf::MAX_METRICS_PER_LINE, ALL};
use batchq_core::money::Money;
use batchq_core::pipeline::dispatch::{Dispatcher, SendOutcome, WebhookConfig, WebhookSender};
use batchq_core::pricing::PriceBook;
use batchq_core::spend::{self, PeriodSetting};
use batchq_core::store::webhooks::memory::MemoryWebhooks;
use batchq_core::store::webhooks::WebhookStore;
use batchq_core::webhook::endpoint::{DeliveryMode, Endpoint, EndpointId, EndpointUrl, EventType};
use batchq_core::webhook::signature::WebhookSecret;
use batchq_tests::pipeline::{chat, embedding, Pipeline};
use fake_openai::Faults;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};

/// Answers every webhook POST with 200.
struct Answers200;

#[async_trait::async_trait]
impl WebhookSender for Answers200 {
    async fn post(&self, _: &EndpointUrl, _: Vec<(&'static str, String)>, _: String) -> SendOutcome {
        SendOutcome::Answered(200)
    }
}

/// Checks one EMF document and answers (metric name, its dimension names).
fn parse_emf(line: &str, namespace: &str) -> Vec<(String, Vec<String>)> {
    let doc: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let aws = &doc["_aws"];
    assert!(aws["Timestamp"].as_i64().is_some_and(|t| t > 0), "{line}");
    let directives = aws["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics");
    let mut out = Vec::new();
    for d in directives {
        assert_eq!(d["Namespace"], namespace, "{line}");
        let sets = d["Dimensions"].as_array().expect("Dimensions");
        let dims: Vec<String> = sets[0]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        for dim in &dims {
            assert!(doc[dim].is_string(), "dimension {dim} has no value: {line}");
        }
        let metrics = d["Metrics"].as_array().expect("Metrics");
        assert!(!metrics.is_empty() && metrics.len() <= MAX_METRICS_PER_LINE);
        for m in metrics {
            let name = m["Name"].as_str().unwrap();
            let known = metrics::by_name(name).unwrap_or_else(|| panic!("{name} is not in metrics::ALL"));
            assert_eq!(m["Unit"], known.unit.cloudwatch());
            assert!(doc[name].is_number(), "{name} has no value: {line}");
            out.push((name.to_owned(), dims.clone()));
        }
    }
    out
}

#[tokio::test]
async fn every_metric_appears_in_an_emf_line_of_the_lambda_path() {
    // The provider refuses the first batch create: a provider error, and
    // requests sent back to the queue.
    let faults = Faults {
        http_400: [("create".to_owned(), 1)].into(),
        ..Faults::default()
    };
    let mut reqs: Vec<_> = (0..6).map(|i| chat(i, "gpt-4o-mini")).collect();
    reqs.extend((0..3).map(|i| embedding(i, "text-embedding-3-small")));
    // A daily budget the whole file takes to 90%: one budget warning.
    let prices = PriceBook::bundled();
    let committed: i128 = reqs
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_str(&r.body_json).unwrap();
            let nanos = spend::estimate(
                prices.lookup(ProviderKind::OpenAi, r.model.as_str()),
                r.weight,
                spend::max_output_tokens(&body),
            )
            .unwrap();
            spend::nanos(nanos as i64).picodollars()
        })
        .sum();
    let limit = Money::from_picodollars(committed * 10 / 9);
    let p = Pipeline::with_faults(faults, |c| {
        c.limits.budgets.daily = PeriodSetting::parse(&limit.to_decimal_string()).unwrap();
        c.metrics_namespace = "batchq/test".into();
    })
    .await;

    // A webhook endpoint of the tenant (in memory: the deliver run's
    // metrics are what is checked here), answered 200 by a stub sender.
    let hooks = Arc::new(MemoryWebhooks::new());
    let now = p.ports().clock.now();
    hooks
        .create_endpoint(
            &Endpoint {
                id: EndpointId::generate(),
                tenant: batchq_core::ids::TenantId::parse(api_support::TENANT).unwrap(),
                url: EndpointUrl::parse("https://hooks.example.com/batchq").unwrap(),
                events: [EventType::RequestCompleted].into(),
                mode: DeliveryMode::PerRequest,
                secret: WebhookSecret::generate(),
                enabled: true,
                description: None,
                created_at: now,
                updated_at: now,
            },
            None,
        )
        .await
        .unwrap();
    let ports = p.ports();
    let dispatcher = Dispatcher::new(
        hooks,
        Arc::new(ports.clone()),
        ports.clock,
        Arc::new(Answers200),
        WebhookConfig::default(),
    );

    let mut lines: Vec<String> = Vec::new();
    let edge = batchq_enqueue::Edge::new(p.api(), "sub").with_metrics_namespace("batchq/test");
    let jsonl: Vec<String> = reqs
        .iter()
        .map(|r| {
            json!({"custom_id": r.custom_id, "url": r.endpoint.as_str(),
                   "body": serde_json::from_str::<Value>(&r.body_json).unwrap()})
            .to_string()
        })
        .collect();
    let bulk = event(
        "POST",
        "/v1/requests/bulk",
        Some("application/x-ndjson"),
        Some(jsonl.join("\n").as_bytes()),
        false,
    );
    let resp = batchq_enqueue::handle_json(&edge, bulk).await.unwrap();
    assert_eq!(resp.status_code, 200, "{:?}", resp.body);
    lines.extend(edge.take_emf_lines());

    // The tenant the fixture's caller maps to owns the requests.
    let tenant = batchq_core::ids::TenantId::parse(api_support::TENANT).unwrap();
    let keys: Vec<_> = reqs
        .iter()
        .map(|r| batchq_core::ids::RequestKey::derive(&tenant, &r.custom_id))
        .collect();
    let (submitter, poller, ingester) = (p.submitter(), p.poller(), p.ingester());
    let reports = p.reports(None);
    for _ in 0..8 {
        if p.all_terminal(&keys).await {
            break;
        }
        let (r, l) = batchq_submit::handle_metered(&submitter, p.scheduled_event()).await;
        r.unwrap();
        lines.extend(l);
        let (r, l) = batchq_poll::handle_metered(&poller, &reports, p.scheduled_event()).await;
        r.unwrap();
        lines.extend(l);
        for ev in p.new_result_events().await {
            let (r, l) =
                batchq_ingest::handle_metered(&ingester, &p.config().bucket, LambdaEvent::new(ev, Context::default()))
                    .await;
            r.unwrap();
            lines.extend(l);
        }
    }
    assert!(p.all_terminal(&keys).await, "the run finished");
    let (r, l) = batchq_deliver::handle_metered(&dispatcher, "batchq/test", p.scheduled_event()).await;
    r.unwrap();
    lines.extend(l);
    let counts = p.ports().requests.counts(&tenant).await.unwrap();
    assert_eq!(
        counts.committed_nanos, 0,
        "every estimate was given back as its request finished"
    );

    let mut seen: BTreeMap<String, BTreeSet<Vec<String>>> = BTreeMap::new();
    for line in &lines {
        for (name, dims) in parse_emf(line, "batchq/test") {
            seen.entry(name).or_default().insert(dims);
        }
    }
    for m in ALL {
        let sets = seen
            .get(m.name)
            .unwrap_or_else(|| panic!("{} in no EMF line; seen {:?}", m.name, seen.keys()));
        for dims in sets {
            assert!(
                dims.iter().all(|d| m.dims.iter().any(|k| k.cloudwatch() == d)),
                "{} written with dimensions {dims:?}, not its own",
                m.name
            );
        }
    }
    // The queue figures come per group and for all groups.
    assert!(seen["QueueDepth"].contains(&vec!["Endpoint".to_owned(), "Model".to_owned(), "Provider".to_owned()]));
    assert!(seen["OldestQueuedAge"].contains(&Vec::new()));

    // What the lines add up to is what happened.
    let total = |name: &str| -> f64 {
        lines
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter_map(|d| d[name].as_f64())
            .sum()
    };
    assert_eq!(total("RequestsCompleted"), reqs.len() as f64);
    assert_eq!(total("BudgetWarnings"), 1.0);
    assert_eq!(
        total("WebhooksDelivered"),
        reqs.len() as f64,
        "one event per completed request"
    );
    assert_eq!(total("WebhookAttempts"), reqs.len() as f64);
    assert!(total("ProviderErrors") >= 1.0);
    assert!(
        total("RequestsRetried") >= 1.0,
        "the refused batch's requests went back"
    );
}
