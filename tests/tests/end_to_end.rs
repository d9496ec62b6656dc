//! The four real Lambda handler functions driven with the real event shapes
//! (API Gateway HTTP API v2 requests, EventBridge scheduled events, S3 event
//! notifications) against the emulator and the fake provider.

mod api_support;

use std::collections::HashMap;

use api_support::{event, lambda_answer, post_event, Answer};
use batchq_core::api::Api;
use batchq_core::ids::{CustomId, RequestKey, TenantId};
use batchq_tests::pipeline::Pipeline;
use fake_openai::FakeConfig;
use serde_json::{json, Value};

async fn call(api: &Api, ev: &Value) -> Answer {
    lambda_answer(api, ev).await
}

/// `GET path?query` through the API core, as the default tenant.
async fn as_default_tenant(api: &Api, path: &str, query: &str) -> Answer {
    api.handle(
        &TenantId::default_tenant(),
        batchq_core::api::ApiRequest::get(path).with_query(query),
    )
    .await
    .into()
}

fn api_of(p: &Pipeline) -> Api {
    p.api()
}

/// 1,000 review classifications (chat, gpt-4o-mini) and 1,000 article
/// embeddings (text-embedding-3-small).
fn workload() -> Vec<Value> {
    let mut lines = Vec::new();
    for i in 0..1000 {
        lines.push(json!({
            "custom_id": format!("review-{i:04}"),
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "Answer with one word: positive, negative or mixed."},
                    {"role": "user", "content": format!("Review {i}: arrived late, but the sound is {}.", ["great", "poor", "fine"][i % 3])}
                ],
                "max_tokens": 3
            }
        }));
    }
    for i in 0..1000 {
        lines.push(json!({
            "custom_id": format!("article-{i:04}"),
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": format!("Article {i}: the council approved the new budget.")}
        }));
    }
    lines
}

#[tokio::test]
async fn two_thousand_requests_through_the_four_handlers_end_completed_with_their_own_answers() {
    two_thousand_requests(None).await;
}

/// The same run with both tables' global indexes lagging their writes by
/// 500 ms, as DynamoDB's eventually consistent indexes do.
#[tokio::test]
async fn two_thousand_requests_end_completed_with_their_own_answers_while_the_indexes_lag() {
    two_thousand_requests(Some(std::time::Duration::from_millis(500))).await;
}

async fn two_thousand_requests(index_lag: Option<std::time::Duration>) {
    let p = Pipeline::start(FakeConfig::default(), |c| c.policy.submit_min_requests = 500).await;
    let p = match index_lag {
        Some(lag) => p.with_index_lag(lag).await,
        None => p,
    };
    let api = api_of(&p);
    let lines = workload();

    // Enqueue: the first ten one by one, the rest in bulk bodies of 500 lines.
    for line in &lines[..10] {
        let c = call(&api, &post_event("/v1/requests", "application/json", &line.to_string())).await;
        assert_eq!(c.status, 202, "{}", c.body);
        assert_eq!(c.body["status"], "queued");
    }
    for chunk in lines[10..].chunks(500) {
        let body: Vec<String> = chunk.iter().map(Value::to_string).collect();
        let c = call(
            &api,
            &post_event("/v1/requests/bulk", "application/x-ndjson", &body.join("\n")),
        )
        .await;
        assert_eq!(c.status, 200, "{}", c.body);
        assert_eq!(
            c.body["summary"]["created"],
            chunk.len() as u64,
            "{}",
            c.body["summary"]
        );
    }
    let stats = call(&api, &event("GET", "/v1/stats", None, None, false)).await;
    assert_eq!(stats.status, 200);

    // The schedule and the bucket notifications drive the rest.
    let (submitter, poller, ingester) = (p.submitter(), p.poller(), p.ingester());
    let keys: Vec<RequestKey> = lines
        .iter()
        .map(|l| {
            RequestKey::derive(
                &TenantId::parse(api_support::TENANT).unwrap(),
                &CustomId::parse(l["custom_id"].as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    let mut rounds = 0;
    while !p.all_terminal(&keys).await {
        rounds += 1;
        assert!(rounds <= 5, "not finished after {rounds} rounds");
        // The schedule runs minutes apart, far longer than an index's lag.
        if let Some(lag) = index_lag {
            tokio::time::sleep(lag + std::time::Duration::from_millis(50)).await;
        }
        let submitted = p.submit_via_handler(&submitter).await.expect("submit handler");
        assert!(submitted["jobs"].is_array());
        p.poll_via_handler(&poller).await.expect("poll handler");
        for ev in p.new_result_events().await {
            let out = p.ingest_via_handler(&ingester, ev).await.expect("ingest handler");
            assert!(out["skipped"].as_array().unwrap().is_empty(), "{out}");
        }
    }

    // Every request is retrievable with exactly the body the fake produced for it.
    let mut by_status: HashMap<String, usize> = HashMap::new();
    for (line, key) in lines.iter().zip(&keys) {
        let id = line["custom_id"].as_str().unwrap();
        let c = call(&api, &event("GET", &format!("/v1/requests/{id}"), None, None, false)).await;
        assert_eq!(c.status, 200, "{}", c.body);
        *by_status
            .entry(c.body["status"].as_str().unwrap().to_owned())
            .or_default() += 1;
        let expected = fake_openai::respond(line["url"].as_str().unwrap(), key.as_str(), &line["body"]);
        let expected: Value = serde_json::from_str(&expected.to_string()).unwrap();
        assert_eq!(c.body["result"]["response"], expected, "{id} got another answer");
        assert_eq!(c.body["result"]["status_code"], 200);
        assert_eq!(c.body["attempts"], 1);
    }
    assert_eq!(by_status, HashMap::from([("completed".to_owned(), 2000)]));

    // The provider saw each custom_id exactly once.
    let counts = p.fake.submitted_counts();
    assert_eq!(counts.len(), 2000);
    assert!(counts.values().all(|n| *n == 1), "a request reached the provider twice");

    // Jobs: one per (endpoint, model), closed with their totals.
    let jobs = call(&api, &event("GET", "/v1/jobs", None, None, false)).await;
    let jobs = jobs.body["jobs"].as_array().unwrap().clone();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    for j in &jobs {
        assert_eq!(j["status"], "done");
    }
    let stats = call(&api, &event("GET", "/v1/stats", None, None, false)).await;
    assert_eq!(stats.body["requests"]["by_status"]["completed"], 2000, "{}", stats.body);
}

#[tokio::test]
async fn the_same_scheduled_and_s3_events_delivered_twice_change_nothing_the_second_time() {
    let p = Pipeline::start(FakeConfig::default(), |_| {}).await;
    let api = api_of(&p);
    let body: Vec<String> = workload()[..50]
        .iter()
        .chain(&workload()[1000..1030])
        .map(Value::to_string)
        .collect();
    let c = call(
        &api,
        &post_event("/v1/requests/bulk", "application/x-ndjson", &body.join("\n")),
    )
    .await;
    assert_eq!(c.body["summary"]["created"], 80);

    // submit, twice
    p.submit_via_handler(&p.submitter()).await.unwrap();
    let after_first = p.snapshot().await;
    p.submit_via_handler(&p.submitter()).await.unwrap();
    assert_eq!(
        p.snapshot().await,
        after_first,
        "a second submit event changed something"
    );
    assert_eq!(p.fake.submissions().len(), 2);

    // poll, twice (the first copies the results and records it)
    p.poll_via_handler(&p.poller()).await.unwrap();
    let after_first = p.snapshot().await;
    p.poll_via_handler(&p.poller()).await.unwrap();
    assert_eq!(p.snapshot().await, after_first, "a second poll event changed something");

    // each S3 notification, twice
    let events = p.new_result_events().await;
    assert_eq!(events.len(), 2, "one output file per job");
    for ev in events {
        p.ingest_via_handler(&p.ingester(), ev.clone()).await.unwrap();
        let after_first = p.snapshot().await;
        let again = p.ingest_via_handler(&p.ingester(), ev).await.unwrap();
        assert_eq!(
            p.snapshot().await,
            after_first,
            "a second S3 event changed something: {again}"
        );
    }
    let jobs = p.all_jobs().await;
    assert!(jobs.iter().all(|j| j.status == batchq_core::job::JobStatus::Done));
}

/// USD per 1M tokens as a decimal string → picodollars per token, by hand.
fn pico_per_token(price: &str) -> i128 {
    let (int, frac) = price.split_once('.').unwrap_or((price, ""));
    assert!(frac.len() <= 6, "{price}");
    let frac = format!("{frac:0<6}");
    int.parse::<i128>().unwrap() * 1_000_000 + frac.parse::<i128>().unwrap()
}

#[tokio::test]
async fn the_savings_endpoint_equals_costs_computed_from_the_fakes_usage_and_the_price_file() {
    let p = Pipeline::start(FakeConfig::default(), |_| {}).await;
    let api = api_of(&p);
    // Long shared instructions (cached input once past 1,024 tokens) on every
    // third request; o4-mini without an output cap (reasoning tokens).
    let long_instructions = "Follow the style guide: be brief, neutral and precise. ".repeat(150);
    let mut reqs = Vec::new();
    for i in 0..200 {
        for (model, cap) in [("gpt-4o-mini", Some(20)), ("gpt-4.1-mini", Some(40)), ("o4-mini", None)] {
            let system = if i % 3 == 0 {
                long_instructions.as_str()
            } else {
                "Classify the review."
            };
            let mut body = json!({"model": model, "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": format!("Review {i}: solid build, weak battery.")}
            ]});
            if let Some(cap) = cap {
                body["max_tokens"] = json!(cap);
            }
            reqs.push(batchq_tests::pipeline::new_request(
                &format!("{model}-{i}"),
                batchq_core::request::Endpoint::ChatCompletions,
                model,
                body,
            ));
        }
    }
    p.enqueue(&reqs).await;
    p.settle(&batchq_tests::pipeline::keys(&reqs), 4).await;

    // Independently: the fake's usage for each request, priced from the file.
    let prices: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/prices.json")).unwrap(),
    )
    .unwrap();
    let mut expected: HashMap<String, (i128, i128, u64)> = HashMap::new();
    let mut saw_cached = false;
    let mut saw_reasoning = false;
    for req in &reqs {
        let body: Value = serde_json::from_str(&req.body_json).unwrap();
        let answer = fake_openai::respond(req.endpoint.as_str(), req.key.as_str(), &body);
        let u = &answer["usage"];
        let input = u["prompt_tokens"].as_u64().unwrap() as i128;
        let output = u["completion_tokens"].as_u64().unwrap() as i128;
        let cached = u["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0) as i128;
        saw_cached |= cached > 0;
        saw_reasoning |= u["completion_tokens_details"]["reasoning_tokens"].as_u64().unwrap_or(0) > 0;
        let model = req.model.as_str();
        let price = &prices["providers"]["openai"]["models"][model];
        let cost = |tier: &str| {
            let t = &price[tier];
            let inp = pico_per_token(t["input"].as_str().unwrap());
            let cached_price = t["cached_input"].as_str().map(pico_per_token).unwrap_or(inp);
            let out = pico_per_token(t["output"].as_str().unwrap());
            (input - cached) * inp + cached * cached_price + output * out
        };
        let e = expected.entry(model.to_owned()).or_default();
        e.0 += cost("batch");
        e.1 += cost("realtime");
        e.2 += 1;
    }
    assert!(
        saw_cached && saw_reasoning,
        "the workload exercises cached and reasoning tokens"
    );

    // p.enqueue stored the requests for the default tenant: ask as that tenant.
    let report = as_default_tenant(&api, "/v1/savings", "group_by=model").await;
    assert_eq!(report.status, 200, "{}", report.body);
    let groups = report.body["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3);
    let money = |v: &Value| {
        batchq_core::money::Money::parse_decimal(v.as_str().unwrap())
            .unwrap()
            .picodollars()
    };
    let (mut all_batch, mut all_realtime) = (0i128, 0i128);
    for g in groups {
        let model = g["model"].as_str().unwrap();
        let (batch, realtime, n) = expected[model];
        assert_eq!(money(&g["batch_cost_usd"]), batch, "{model} batch cost");
        assert_eq!(money(&g["realtime_cost_usd"]), realtime, "{model} real-time cost");
        assert_eq!(money(&g["saved_usd"]), realtime - batch, "{model} saving");
        assert_eq!(g["requests"], n);
        all_batch += batch;
        all_realtime += realtime;
    }
    assert_eq!(money(&report.body["total"]["saved_usd"]), all_realtime - all_batch);
    let by_day = as_default_tenant(&api, "/v1/savings", "group_by=day").await;
    assert_eq!(by_day.body["total"], report.body["total"]);
    let stats = as_default_tenant(&api, "/v1/stats", "").await;
    assert_eq!(stats.body["savings"], report.body["total"]);

    // Replaying every result file leaves every total unchanged.
    let before = p.snapshot().await;
    for job in p.all_jobs().await {
        for kind in ["output", "errors"] {
            let key = format!("results/{}/{kind}.jsonl", job.id);
            if p.objects().head(&key).await.unwrap().is_some() {
                p.ingest_via_handler(&p.ingester(), p.s3_event(&key, 1, "replay"))
                    .await
                    .unwrap();
            }
        }
    }
    assert_eq!(p.snapshot().await, before);
    let again = as_default_tenant(&api, "/v1/savings", "group_by=model").await;
    assert_eq!(again.body, report.body);
}

/// 60 requests for each of three providers, enqueued through the API, whose
/// provider table routes `/v1/messages` to Anthropic (`claude`),
/// `openai/gpt-oss-*` to Groq (`groq`) and the rest to OpenAI (`openai`).
fn three_provider_workload() -> Vec<Value> {
    let long_system = "House style: one word, lower case, no punctuation. ".repeat(40);
    let mut lines = Vec::new();
    for i in 0..60 {
        lines.push(json!({
            "custom_id": format!("oa-{i:03}"),
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "max_tokens": 3, "messages": [
                {"role": "user", "content": format!("Review {i}: decent value.")}]}
        }));
        // Every third Messages request caches its long system prompt: the
        // fake reads half of it from the cache and writes the other half.
        let system = if i % 3 == 0 {
            json!([{"type": "text", "text": long_system, "cache_control": {"type": "ephemeral"}}])
        } else {
            json!("Answer with one word.")
        };
        lines.push(json!({
            "custom_id": format!("an-{i:03}"),
            "url": "/v1/messages",
            "body": {"model": "claude-haiku-4-5", "max_tokens": 8, "system": system, "messages": [
                {"role": "user", "content": format!("Review {i}: the strap broke.")}]}
        }));
        lines.push(json!({
            "custom_id": format!("gq-{i:03}"),
            "url": "/v1/chat/completions",
            "body": {"model": "openai/gpt-oss-20b", "max_tokens": 4, "messages": [
                {"role": "user", "content": format!("Review {i}: quiet fan.")}]}
        }));
    }
    lines
}

/// The usage counts `(uncached input, cache reads, cache writes, output)`
/// the fake answered with, read from its own answer.
fn fake_usage(line: &Value, key: &RequestKey) -> (i128, i128, i128, i128) {
    let url = line["url"].as_str().unwrap();
    if url == "/v1/messages" {
        let u = fake_openai::respond_message(key.as_str(), &line["body"])["usage"].clone();
        let n = |f: &str| u[f].as_u64().unwrap_or(0) as i128;
        (
            n("input_tokens"),
            n("cache_read_input_tokens"),
            n("cache_creation_input_tokens"),
            n("output_tokens"),
        )
    } else {
        let u = fake_openai::respond(url, key.as_str(), &line["body"])["usage"].clone();
        let cached = u["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0) as i128;
        let prompt = u["prompt_tokens"].as_u64().unwrap() as i128;
        (
            prompt - cached,
            cached,
            0,
            u["completion_tokens"].as_u64().unwrap() as i128,
        )
    }
}

#[tokio::test]
async fn three_providers_in_one_run_each_request_goes_to_its_provider_once_and_savings_per_provider_are_exact() {
    let p = Pipeline::start(FakeConfig::default(), |_| {}).await;
    let api = api_of(&p);
    let lines = three_provider_workload();
    let body: Vec<String> = lines.iter().map(Value::to_string).collect();
    let c = call(
        &api,
        &post_event("/v1/requests/bulk", "application/x-ndjson", &body.join("\n")),
    )
    .await;
    assert_eq!(c.status, 200, "{}", c.body);
    assert_eq!(c.body["summary"]["created"], 180, "{}", c.body["summary"]);

    let tenant = TenantId::parse(api_support::TENANT).unwrap();
    let keys: Vec<RequestKey> = lines
        .iter()
        .map(|l| RequestKey::derive(&tenant, &CustomId::parse(l["custom_id"].as_str().unwrap()).unwrap()))
        .collect();
    let (submitter, poller, ingester) = (p.submitter(), p.poller(), p.ingester());
    let mut rounds = 0;
    while !p.all_terminal(&keys).await {
        rounds += 1;
        assert!(rounds <= 5, "not finished after {rounds} rounds");
        p.submit_via_handler(&submitter).await.expect("submit handler");
        p.poll_via_handler(&poller).await.expect("poll handler");
        for ev in p.new_result_events().await {
            let out = p.ingest_via_handler(&ingester, ev).await.expect("ingest handler");
            assert!(out["skipped"].as_array().unwrap().is_empty(), "{out}");
        }
    }

    // Each request went to its own provider, once, and holds that provider's answer.
    let counts = p.fake.submitted_counts();
    assert_eq!(counts.len(), 180);
    assert!(counts.values().all(|n| *n == 1), "a request reached a provider twice");
    let endpoint_of: HashMap<String, String> = p
        .fake
        .submissions()
        .into_iter()
        .flat_map(|s| s.custom_ids.into_iter().map(move |id| (id, s.endpoint.clone())))
        .collect();
    for (line, key) in lines.iter().zip(&keys) {
        let id = line["custom_id"].as_str().unwrap();
        let c = call(&api, &event("GET", &format!("/v1/requests/{id}"), None, None, false)).await;
        assert_eq!(c.status, 200, "{}", c.body);
        assert_eq!(c.body["status"], "completed", "{id}: {}", c.body);
        let (provider, expected) = match &id[..2] {
            "an" => ("claude", fake_openai::respond_message(key.as_str(), &line["body"])),
            "gq" => (
                "groq",
                fake_openai::respond(line["url"].as_str().unwrap(), key.as_str(), &line["body"]),
            ),
            _ => (
                "openai",
                fake_openai::respond(line["url"].as_str().unwrap(), key.as_str(), &line["body"]),
            ),
        };
        assert_eq!(c.body["provider"], provider, "{id}");
        let expected: Value = serde_json::from_str(&expected.to_string()).unwrap();
        assert_eq!(c.body["result"]["response"], expected, "{id} got another answer");
        let sent_as = &endpoint_of[key.as_str()];
        assert_eq!(
            sent_as == "/v1/messages",
            provider == "claude",
            "{id} was sent as {sent_as}"
        );
    }
    // Groq's batches were made on Groq's routes, OpenAI's on OpenAI's.
    assert_eq!(
        p.fake
            .calls("create")
            .iter()
            .filter(|c| c.path.starts_with("/openai/v1/"))
            .count(),
        1
    );

    // One job per provider, each closed and naming its provider.
    let jobs = call(&api, &event("GET", "/v1/jobs", None, None, false)).await;
    let mut providers: Vec<(String, String)> = jobs.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            assert_eq!(j["status"], "done", "{j}");
            (
                j["provider"].as_str().unwrap().to_owned(),
                j["provider_kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    providers.sort();
    assert_eq!(
        providers,
        [("claude", "anthropic"), ("groq", "groq"), ("openai", "openai")].map(|(a, b)| (a.to_owned(), b.to_owned()))
    );

    // Savings per provider equal the fake's usage priced from the price file.
    let prices: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/prices.json")).unwrap(),
    )
    .unwrap();
    let mut expected: HashMap<&str, (i128, i128)> = HashMap::new();
    let mut saw_cache = (false, false);
    for (line, key) in lines.iter().zip(&keys) {
        let model = line["body"]["model"].as_str().unwrap();
        let (provider, table) = match &line["custom_id"].as_str().unwrap()[..2] {
            "an" => ("claude", "anthropic"),
            "gq" => ("groq", "groq"),
            _ => ("openai", "openai"),
        };
        let (plain, read, written, output) = fake_usage(line, key);
        saw_cache.0 |= read > 0;
        saw_cache.1 |= written > 0;
        let price = &prices["providers"][table]["models"][model];
        let cost = |tier: &str| {
            let t = &price[tier];
            let input = pico_per_token(t["input"].as_str().unwrap());
            let cached = t["cached_input"].as_str().map(pico_per_token).unwrap_or(input);
            let write = t["cache_write"].as_str().map(pico_per_token).unwrap_or(input);
            plain * input + read * cached + written * write + output * pico_per_token(t["output"].as_str().unwrap())
        };
        let e = expected.entry(provider).or_default();
        e.0 += cost("batch");
        e.1 += cost("realtime");
    }
    assert!(
        saw_cache.0 && saw_cache.1,
        "the workload reads and writes the prompt cache"
    );
    let report = call(&api, &event("GET", "/v1/savings?group_by=provider", None, None, false)).await;
    assert_eq!(report.status, 200, "{}", report.body);
    let money = |v: &Value| {
        batchq_core::money::Money::parse_decimal(v.as_str().unwrap())
            .unwrap()
            .picodollars()
    };
    let groups = report.body["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3, "{}", report.body);
    for g in groups {
        let provider = g["provider"].as_str().unwrap();
        let (batch, realtime) = expected[provider];
        assert_eq!(money(&g["batch_cost_usd"]), batch, "{provider} batch cost");
        assert_eq!(money(&g["realtime_cost_usd"]), realtime, "{provider} real-time cost");
        assert_eq!(money(&g["saved_usd"]), realtime - batch, "{provider} saving");
        assert_eq!(g["requests"], 60, "{provider}");
        assert_eq!(g["unpriced_requests"], 0, "{provider}");
    }
}
