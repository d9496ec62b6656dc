//! Hourly activity and the daily report after real runs of the pipeline
//! (enqueue → submit → poll → ingest, in process, against the fake
//! provider) on the store `BATCHQ_TEST_STORE` names: the report's figures
//! are `/v1/stats`' and `/v1/savings`' for the same day, the activity stays
//! exact when a step crashes and is re-run or an event comes twice, and the
//! poll function's scheduled report is written and sent once.

use std::sync::{Arc, Mutex};

use batchq_core::activity::Hour;
use batchq_core::api::ApiRequest;
use batchq_core::ids::TenantId;
use batchq_core::pipeline::crash::CrashOnce;
use batchq_core::pipeline::CrashPoint;
use batchq_core::report::{self, render, LocalApi};
use batchq_core::request::RequestStatus;
use batchq_core::time::Clock;
use batchq_tests::pipeline::{assert_activity_matches, assert_invariants, chat, embedding, keys, Pipeline};
use fake_openai::Faults;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DAY: &str = "2026-11-30";

/// A pipeline whose clock stands at 10:00 UTC on [`DAY`]; a fifth of the
/// lines fail with a 400 (for good).
async fn pipeline_on_the_day() -> Pipeline {
    let faults = Faults {
        fail_percent: 20,
        fail_status: Some(400),
        ..Faults::default()
    };
    let p = Pipeline::with_faults(faults, |_| {}).await;
    p.clock.set(Hour::day_start(DAY).unwrap().plus(10).start());
    p
}

async fn get(p: &Pipeline, path: &str, query: &str) -> Value {
    let a = p
        .api()
        .handle(&TenantId::default_tenant(), ApiRequest::get(path).with_query(query))
        .await;
    assert_eq!(a.status, 200, "{path}?{query}: {}", a.body);
    a.body
}

#[tokio::test]
async fn the_reports_figures_equal_stats_and_savings_for_the_same_day_after_a_real_run() {
    let p = pipeline_on_the_day().await;
    let mut reqs: Vec<_> = (0..30).map(|i| chat(i, "gpt-4o-mini")).collect();
    reqs.extend((0..10).map(|i| embedding(i, "text-embedding-3-small")));
    p.enqueue(&reqs).await;
    let cancelled = chat(99, "gpt-4o-mini");
    p.enqueue(std::slice::from_ref(&cancelled)).await;
    let a = p
        .api()
        .handle(&TenantId::default_tenant(), ApiRequest::delete("/v1/requests/chat-99"))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    p.settle(&keys(&reqs), 6).await;
    // The cancelled request is one of the run's too (its feed entry, its
    // hour's cancelled count).
    let all: Vec<_> = reqs.iter().cloned().chain([cancelled.clone()]).collect();
    assert_invariants(&p, &all).await;
    assert_eq!(p.clock.now().utc_date(), DAY, "the run stayed within the day");

    let api = p.api();
    let r = report::build(
        &LocalApi {
            api: &api,
            tenant: TenantId::default_tenant(),
        },
        DAY,
    )
    .await
    .unwrap();
    let stats = get(&p, "/v1/stats", "").await;
    let savings = get(&p, "/v1/savings", &format!("from={DAY}&to={DAY}")).await;
    let by = &stats["requests"]["by_status"];
    let d = &r.day;
    assert_eq!(d.requests.enqueued, stats["requests"]["total"].as_i64().unwrap());
    assert_eq!(d.requests.completed, by["completed"].as_i64().unwrap());
    assert_eq!(d.requests.failed, by["failed"].as_i64().unwrap());
    assert_eq!(d.requests.cancelled, by["cancelled"].as_i64().unwrap());
    let states = p.states(&keys(&reqs)).await;
    let failed = states.values().filter(|r| r.status == RequestStatus::Failed).count() as i64;
    assert!(failed > 0, "some lines failed");
    assert_eq!(
        (d.requests.failed, d.requests.cancelled),
        (failed, 1),
        "the failed lines; chat-99"
    );
    assert_eq!(d.failures.values().sum::<i64>(), d.requests.failed);
    assert_eq!(d.spend_usd, savings["total"]["batch_cost_usd"].as_str().unwrap());
    assert_eq!(d.saved_usd, savings["total"]["saved_usd"].as_str().unwrap());
    assert_eq!(d.realtime_usd, savings["total"]["realtime_cost_usd"].as_str().unwrap());
    assert_eq!(d.priced_requests, savings["total"]["requests"].as_u64().unwrap());
    let zero = batchq_core::money::Money::default();
    assert!(
        batchq_core::money::Money::parse_decimal(&d.spend_usd).unwrap() > zero,
        "the run cost something: {}",
        d.spend_usd
    );
    // Every job was submitted and finished this day; the slowest are listed.
    let jobs = p.all_jobs().await;
    assert_eq!(d.jobs_submitted.values().sum::<u64>(), jobs.len() as u64);
    assert_eq!(d.jobs_finished.values().sum::<u64>(), jobs.len() as u64);
    assert_eq!(d.slowest.len(), jobs.len().min(report::SLOWEST));
    // The day before had nothing.
    assert_eq!(r.previous.requests, Default::default());
    assert_eq!(
        batchq_core::money::Money::parse_decimal(&r.previous.spend_usd),
        Some(zero)
    );
    assert!(r.previous.jobs_finished.is_empty());
    // Every format shows the same figures.
    let completed = d.requests.completed.to_string();
    let md = render::markdown(&r);
    assert!(
        md.contains(&format!("| requests completed | {completed} | 0 | +{completed} |")),
        "{md}"
    );
    let html = render::html(&r);
    assert!(
        html.contains(&format!("<td class=\"n\">${}</td>", d.spend_usd)),
        "{html}"
    );
    let back: Value = serde_json::from_str(&render::json(&r)).unwrap();
    assert_eq!(back["day"]["requests"]["completed"], json!(d.requests.completed));
}

#[tokio::test]
async fn activity_stays_exact_when_ingest_crashes_mid_file_and_its_event_comes_three_times() {
    let p = pipeline_on_the_day().await;
    // More answers than one ingest chunk (100 lines), so the crash falls
    // inside the output file.
    let reqs: Vec<_> = (0..250).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    let crash = Arc::new(CrashOnce::new(CrashPoint::IngestMidFile));
    let crashing = p.ingester_with(crash.clone());
    for _ in 0..4 {
        p.submitter().run(Default::default()).await.expect("submit");
        p.poller().run().await.expect("poll");
        for event in p.new_result_events().await {
            if !crash.fired() {
                let first = p.ingest_via_handler(&crashing, event.clone()).await;
                if crash.fired() {
                    assert!(first.as_ref().is_err_and(|e| e.contains("crash injected")), "{first:?}");
                }
            }
            // Lambda retries the event; S3 delivers it once more besides.
            p.ingest_via_handler(&p.ingester(), event.clone()).await.expect("retry");
            p.ingest_via_handler(&p.ingester(), event).await.expect("duplicate");
        }
    }
    assert!(crash.fired(), "the crash was reached");
    // A poll run repeated changes nothing more.
    p.poller().run().await.expect("poll again");
    p.settle(&keys(&reqs), 4).await;
    assert_invariants(&p, &reqs).await;

    let states = p.states(&keys(&reqs)).await;
    assert_activity_matches(&p, &reqs, &states).await;
    let first = Hour::day_start(DAY).unwrap();
    let a = get(&p, "/v1/activity", &format!("from={first}&to={}", first.plus(23))).await;
    let failed = states.values().filter(|r| r.status == RequestStatus::Failed).count();
    assert_eq!(
        a["total"],
        json!({"enqueued": 250, "completed": 250 - failed, "failed": failed, "cancelled": 0, "retried": 0}),
        "each request counted once"
    );
    assert!(failed > 0, "some lines failed");
    assert_eq!(a["hours"][10]["enqueued"], 250);
}

/// A webhook receiver: answers 200 to each POST and keeps its body.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let body = loop {
                let n = conn.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break Some(buf[end + 4..end + 4 + len].to_vec());
                }
            };
            if let Some(body) = body {
                seen.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
            }
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
    });
    (url, got)
}

#[tokio::test]
async fn the_scheduled_report_is_written_to_the_bucket_and_sent_once_when_the_event_comes_twice() {
    let p = pipeline_on_the_day().await;
    let reqs: Vec<_> = (0..20).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    p.settle(&keys(&reqs), 6).await;
    // The schedule fires after midnight: the report is of the day before.
    p.clock.set(
        Hour::day_start(DAY)
            .unwrap()
            .plus(24)
            .start()
            .plus(std::time::Duration::from_secs(900)),
    );
    let (url, got) = webhook().await;
    let reports = p.reports(Some(url));
    let event =
        json!({"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {"report": true}});

    let first = p.poll_event_via_handler(&reports, event.clone()).await.unwrap();
    let keys: Vec<String> = ["md", "html", "json"]
        .iter()
        .map(|ext| format!("reports/{DAY}/default.{ext}"))
        .collect();
    assert_eq!(
        first,
        json!({"reports": [{"tenant": "default", "day": DAY, "keys": keys, "written": true, "sent": true}]})
    );
    let second = p.poll_event_via_handler(&reports, event).await.unwrap();
    assert_eq!(second["reports"][0]["written"], false, "{second}");
    assert_eq!(second["reports"][0]["sent"], false, "{second}");

    let sent = got.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "one POST for one day and tenant: {sent:?}");
    assert_eq!(sent[0]["day"], DAY);
    assert_eq!(sent[0]["report"]["day"]["requests"]["enqueued"], 20);
    assert!(sent[0]["markdown"].as_str().unwrap().contains("requests completed"));
    let stored = p
        .objects()
        .get(&keys[2])
        .await
        .unwrap()
        .expect("the JSON report is stored");
    let stored: Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(stored, sent[0]["report"]);
    let html = p
        .objects()
        .get(&keys[1])
        .await
        .unwrap()
        .expect("the HTML page is stored");
    assert!(String::from_utf8_lossy(&html).starts_with("<!doctype html>"));
}
