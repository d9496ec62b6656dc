//! `GET /v1/results`, the results feed, on the store `BATCHQ_TEST_STORE`
//! names: a reader that keeps `next` sees every finished request exactly
//! once while ingest keeps finishing more (several result files ingested
//! at once), each with what `GET /v1/requests/{custom_id}` answers; another
//! tenant's listing and cursor show nothing of this tenant; bad `after`
//! and `limit` are 400s naming them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use batchq_core::api::{Api, ApiRequest, ApiResponse};
use batchq_core::ids::{CustomId, ModelName, TenantId};
use batchq_core::request::{Endpoint, NewRequest, RequestStatus};
use batchq_tests::pipeline::{chat, expected_response, keys, Pipeline};
use fake_openai::{FakeConfig, Faults};
use serde_json::Value;

fn globex() -> TenantId {
    TenantId::parse("globex").unwrap()
}

fn globex_request(i: usize) -> NewRequest {
    let body = serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("g {i}")}]});
    NewRequest::new(
        globex(),
        CustomId::parse(format!("g-{i}")).unwrap(),
        Endpoint::ChatCompletions,
        ModelName::parse("gpt-4o-mini").unwrap(),
        body.to_string(),
    )
}

async fn results(api: &Api, tenant: &TenantId, query: &str) -> ApiResponse {
    api.handle(tenant, ApiRequest::get("/v1/results").with_query(query.to_owned()))
        .await
}

fn after(cursor: &Option<String>, limit: u32) -> String {
    match cursor {
        Some(c) => format!("limit={limit}&after={}", batchq_core::api::query::percent_encode(c)),
        None => format!("limit={limit}"),
    }
}

/// Reads pages until one comes back empty; each entry by custom_id.
async fn drain(api: &Api, tenant: &TenantId, cursor: &mut Option<String>, seen: &mut Vec<Value>) {
    loop {
        let resp = results(api, tenant, &after(cursor, 23)).await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        let page = resp.body["results"].as_array().unwrap().clone();
        if page.is_empty() {
            assert_eq!(resp.body["next"].as_str().map(str::to_owned), *cursor);
            return;
        }
        assert_eq!(resp.body["next"], page.last().unwrap()["cursor"]);
        *cursor = resp.body["next"].as_str().map(str::to_owned);
        seen.extend(page);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_feed_returns_every_result_exactly_once_across_pages_while_results_keep_arriving() {
    let faults = Faults {
        fail_percent: 10,
        fail_status: Some(400),
        ..Faults::default()
    };
    let p = Pipeline::with_faults(faults, |c| {
        c.limits.max_lines_per_batch = 40;
        c.policy.max_attempts = 1;
    })
    .await;
    let ours: Vec<NewRequest> = (0..240).map(|i| chat(i, "gpt-4o-mini")).collect();
    let theirs: Vec<NewRequest> = (0..30).map(globex_request).collect();
    p.enqueue(&ours).await;
    p.enqueue(&theirs).await;
    let api = p.api();
    let us = TenantId::default_tenant();
    // Two of ours are cancelled while queued: their entries come first.
    for id in ["chat-7", "chat-8"] {
        let resp = api.handle(&us, ApiRequest::delete(format!("/v1/requests/{id}"))).await;
        assert_eq!(resp.status, 200, "{}", resp.body);
    }

    // A reader following the feed the whole time.
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (api, us, done) = (api.clone(), us.clone(), done.clone());
        tokio::spawn(async move {
            let mut cursor = None;
            let mut seen = Vec::new();
            let mut pages_while_running = 0;
            loop {
                let finished = done.load(Ordering::SeqCst);
                let before = seen.len();
                drain(&api, &us, &mut cursor, &mut seen).await;
                if finished {
                    return (seen, pages_while_running);
                }
                pages_while_running += usize::from(seen.len() > before);
                tokio::task::yield_now().await;
            }
        })
    };
    // The schedule, with every new result file ingested at once (as S3
    // notifications start concurrent ingest invocations).
    let all: Vec<_> = ours.iter().chain(&theirs).cloned().collect();
    for _ in 0..6 {
        if p.all_terminal(&keys(&all)).await {
            break;
        }
        p.submitter().run(Default::default()).await.expect("submit");
        p.poller().run().await.expect("poll");
        let events = p.new_result_events().await;
        let ingests = events.into_iter().map(|e| {
            let p = &p;
            async move { p.ingest_via_handler(&p.ingester(), e).await }
        });
        for r in futures::future::join_all(ingests).await {
            r.expect("ingest");
        }
    }
    assert!(p.all_terminal(&keys(&all)).await, "the run finished");
    done.store(true, Ordering::SeqCst);
    let (seen, pages_while_running) = reader.await.unwrap();
    assert!(pages_while_running > 0, "the reader read results while they arrived");

    // Every one of ours exactly once, as it finished, with its result.
    let mut by_id: HashMap<String, Vec<&Value>> = HashMap::new();
    for e in &seen {
        by_id
            .entry(e["custom_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(e);
    }
    assert_eq!(by_id.len(), ours.len(), "every request once: {} entries", seen.len());
    assert_eq!(seen.len(), ours.len(), "no request twice");
    let states = p.states(&keys(&ours)).await;
    let mut failed = 0;
    for r in &ours {
        let e = by_id[r.custom_id.as_str()][0];
        let st = &states[&r.key];
        assert_eq!(e["event"], st.status.as_str(), "{}", r.custom_id);
        assert_eq!(e["request"]["status"], st.status.as_str());
        let direct = api
            .handle(&us, ApiRequest::get(format!("/v1/requests/{}", r.custom_id)))
            .await;
        assert_eq!(
            e["request"], direct.body,
            "the entry shows what GET /v1/requests/{{id}} shows"
        );
        match st.status {
            RequestStatus::Completed => {
                assert_eq!(e["request"]["result"]["response"], expected_response(r));
            }
            RequestStatus::Failed => {
                failed += 1;
                assert!(e["request"]["result"]["error"].is_object() || e["request"]["last_error"].is_object());
            }
            RequestStatus::Cancelled => assert_eq!(e["job_id"], Value::Null),
            other => panic!("{} listed while {other}", r.custom_id),
        }
    }
    assert!(failed > 0, "the run had failures: the feed lists them too");
    assert_eq!(
        [seen[0]["custom_id"].as_str(), seen[1]["custom_id"].as_str()],
        [Some("chat-7"), Some("chat-8")],
        "in the order they finished"
    );

    // The other tenant sees only its own, and our cursor is refused.
    let mut theirs_seen = Vec::new();
    drain(&api, &globex(), &mut None, &mut theirs_seen).await;
    assert_eq!(theirs_seen.len(), theirs.len());
    assert!(theirs_seen
        .iter()
        .all(|e| e["custom_id"].as_str().unwrap().starts_with("g-")));
    let ours_cursor = seen[5]["cursor"].as_str().unwrap();
    let resp = results(&api, &globex(), &format!("after={ours_cursor}")).await;
    assert_eq!(
        (resp.status, resp.body["error"]["field"].as_str()),
        (400, Some("after"))
    );
    assert_eq!(resp.body["error"]["code"], "invalid_cursor");
}

#[tokio::test]
async fn bad_after_or_limit_is_a_400_naming_it_and_an_empty_feed_answers_no_cursor() {
    let p = Pipeline::start(FakeConfig::default(), |_| {}).await;
    let api = p.api();
    let us = TenantId::default_tenant();
    let before = p.snapshot().await;
    for (query, field) in [
        ("after=nonsense", "after"),
        ("after=fc1.00000000.x", "after"),
        ("limit=0", "limit"),
        ("limit=5001", "limit"),
        ("limit=ten", "limit"),
        ("cursor=x", "cursor"),
    ] {
        let resp = results(&api, &us, query).await;
        assert_eq!(resp.status, 400, "{query}: {}", resp.body);
        assert_eq!(resp.body["error"]["field"], field, "{query}");
    }
    let resp = results(&api, &us, "").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, serde_json::json!({"results": [], "next": null}));
    assert_eq!(p.snapshot().await, before, "reads change nothing");
}
