//! Spend budgets (`BATCHQ_TENANT_DAILY_BUDGET_USD` / `_MONTHLY_`): spent +
//! committed against each limit, the 429 `budget_exceeded` refusal that
//! writes nothing, the 80% warning, and `budget` in `GET /v1/stats`. Runs on
//! the store `BATCHQ_TEST_STORE` names (memory, emulator, embedded).

mod api_support;

use std::sync::Arc;

use api_support::{ApiEnv, TENANT};
use batchq_core::api::ApiRequest;
use batchq_core::ids::{ModelName, ProviderName, TenantId};
use batchq_core::job::ProviderKind;
use batchq_core::metrics::{Collected, MetricsSink, Sample, BUDGET_WARNINGS};
use batchq_core::money::Money;
use batchq_core::pricing::PriceBook;
use batchq_core::request::Endpoint;
use batchq_core::spend::{self, PeriodSetting};
use batchq_core::store::{SavingsRow, SavingsTotals};
use batchq_core::time::Clock;
use serde_json::{json, Value};

const MODEL: &str = "gpt-4o-mini";
const MAX_TOKENS: u64 = 200;

fn body(i: usize) -> Value {
    json!({"model": MODEL, "max_tokens": MAX_TOKENS,
           "messages": [{"role": "user", "content": format!("Summarise ticket {i:04}.")}]})
}

fn line(i: usize) -> String {
    json!({"custom_id": format!("b-{i}"), "url": "/v1/chat/completions", "body": body(i)}).to_string()
}

/// What the price table and the token estimate make of request `i`.
fn estimate(i: usize) -> Money {
    let weight = batchq_core::tokens::estimate(Endpoint::ChatCompletions, &body(i));
    let price = PriceBook::bundled();
    let nanos = spend::estimate(price.lookup(ProviderKind::OpenAi, MODEL), weight, Some(MAX_TOKENS))
        .expect("gpt-4o-mini is priced");
    spend::nanos(nanos as i64)
}

fn post(i: usize) -> ApiRequest {
    ApiRequest::post("/v1/requests", "application/json", line(i))
}

fn bulk(range: std::ops::Range<usize>) -> ApiRequest {
    let text: Vec<String> = range.map(line).collect();
    ApiRequest::post("/v1/requests/bulk", "application/x-ndjson", text.join("\n"))
}

fn money(v: &Value) -> Money {
    Money::parse_decimal(v.as_str().unwrap_or_else(|| panic!("{v} is not a decimal string"))).unwrap()
}

/// An API whose every tenant has `daily` (and no monthly) limit, its budget
/// warnings collected.
async fn env_with_daily(daily: Money) -> (ApiEnv, Arc<Collected>) {
    let mut env = ApiEnv::with(|c| {
        c.limits.budgets.daily = PeriodSetting::parse(&daily.to_decimal_string()).unwrap();
    })
    .await;
    let warnings = Arc::new(Collected::default());
    env.api = env.api.clone().with_metrics(warnings.clone() as Arc<dyn MetricsSink>);
    (env, warnings)
}

fn warnings(sink: &Collected, seen: &mut Vec<Sample>) -> usize {
    seen.extend(sink.take().into_iter().filter(|s| s.metric == &BUDGET_WARNINGS));
    seen.len()
}

#[tokio::test]
async fn spend_up_to_the_limit_passes_and_the_next_enqueue_is_refused_writing_nothing() {
    // Every body has the same length, so the same estimate.
    let e = estimate(0);
    assert_eq!(estimate(3), e);
    let (env, _) = env_with_daily(Money::from_picodollars(e.picodollars() * 3)).await;

    for i in 0..3 {
        let a = env.call(post(i)).await;
        assert_eq!(a.status, 202, "request {i} fits: {}", a.body);
    }
    let stats = env.call(ApiRequest::get("/v1/stats")).await.body;
    let daily = &stats["budget"]["daily"];
    assert_eq!(
        money(&daily["committed_usd"]),
        Money::from_picodollars(e.picodollars() * 3)
    );
    assert_eq!(money(&daily["spent_usd"]), Money::ZERO);
    assert_eq!(daily["used_fraction"], 1.0);

    let before = env.snapshot().await;
    let refused = env.call(post(3)).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.header("retry-after"), Some("60"));
    let (_, code, message) = refused.error();
    assert_eq!(code, "budget_exceeded");
    for part in [TENANT, "daily"] {
        assert!(message.contains(part), "{message}");
    }
    let budget = &refused.body["error"]["budget"];
    assert_eq!(budget["tenant"], TENANT);
    assert_eq!(budget["period"], "daily");
    assert_eq!(
        money(&budget["limit_usd"]),
        Money::from_picodollars(e.picodollars() * 3)
    );
    assert_eq!(money(&budget["spent_usd"]), Money::ZERO);
    assert_eq!(
        money(&budget["committed_usd"]),
        Money::from_picodollars(e.picodollars() * 3)
    );
    assert_eq!(money(&budget["adding_usd"]), e);

    let refused = env.call(bulk(3..5)).await;
    assert_eq!(refused.status, 429, "a bulk file is refused whole: {}", refused.body);
    assert_eq!(refused.error().1, "budget_exceeded");
    assert_eq!(env.snapshot().await, before, "a refused enqueue writes nothing");
}

#[tokio::test]
async fn money_spent_today_counts_against_the_limit_with_what_is_committed() {
    let e = estimate(0);
    let (env, _) = env_with_daily(Money::from_picodollars(e.picodollars() * 3)).await;
    // Results counted today cost one request and a half.
    let today = env.clock.now().utc_date();
    let spent = Money::from_picodollars(e.picodollars() * 3 / 2);
    env.api
        .ports
        .savings
        .add_savings(
            "results/job_x/output.jsonl",
            vec![SavingsRow {
                tenant: TenantId::parse(TENANT).unwrap(),
                day: today,
                provider: ProviderName::default_name(),
                model: ModelName::parse(MODEL).unwrap(),
                totals: SavingsTotals {
                    requests: 1,
                    batch_cost: spent,
                    realtime_cost: spent + spent,
                    ..SavingsTotals::default()
                },
            }],
        )
        .await
        .unwrap();
    assert_eq!(env.call(post(0)).await.status, 202);
    let refused = env.call(post(1)).await;
    assert_eq!(
        refused.status, 429,
        "1.5 spent + 1 committed + 1 more passes 3: {}",
        refused.body
    );
    assert_eq!(money(&refused.body["error"]["budget"]["spent_usd"]), spent);
    let stats = env.call(ApiRequest::get("/v1/stats")).await.body;
    assert_eq!(money(&stats["budget"]["daily"]["spent_usd"]), spent);
    assert_eq!(stats["budget"]["monthly"], Value::Null, "no monthly limit configured");
}

#[tokio::test]
async fn a_cancelled_request_gives_its_committed_spend_back() {
    let e = estimate(0);
    let (env, _) = env_with_daily(Money::from_picodollars(e.picodollars() * 2)).await;
    assert_eq!(env.call(post(0)).await.status, 202);
    assert_eq!(env.call(post(1)).await.status, 202);
    assert_eq!(env.call(post(2)).await.status, 429);
    let cancelled = env.call(ApiRequest::delete("/v1/requests/b-0")).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    let stats = env.call(ApiRequest::get("/v1/stats")).await.body;
    assert_eq!(money(&stats["budget"]["daily"]["committed_usd"]), e);
    assert_eq!(
        env.call(post(2)).await.status,
        202,
        "the cancelled request's share is free again"
    );
}

#[tokio::test]
async fn the_budget_warning_fires_once_per_crossing_of_eighty_percent() {
    let e = estimate(0);
    let (env, sink) = env_with_daily(Money::from_picodollars(e.picodollars() * 10)).await;
    let mut seen = Vec::new();
    for i in 0..7 {
        assert_eq!(env.call(post(i)).await.status, 202);
    }
    assert_eq!(warnings(&sink, &mut seen), 0, "70% is below the warning");
    assert_eq!(env.call(post(7)).await.status, 202);
    assert_eq!(warnings(&sink, &mut seen), 1, "80% reached: one warning");
    assert_eq!(
        seen[0].dims,
        vec![(batchq_core::metrics::Dim::Period, "daily".to_owned())]
    );
    assert_eq!(env.call(post(8)).await.status, 202);
    assert_eq!(warnings(&sink, &mut seen), 1, "still past 80%: no second warning");

    for id in ["b-0", "b-1"] {
        assert_eq!(
            env.call(ApiRequest::delete(format!("/v1/requests/{id}"))).await.status,
            200
        );
    }
    // 70% again; a bulk file taking it to 90% crosses once more.
    assert_eq!(env.call(bulk(9..11)).await.status, 200);
    assert_eq!(warnings(&sink, &mut seen), 2, "a new crossing warns again");
}

#[tokio::test]
async fn an_unpriced_model_is_refused_under_a_budget_and_accepted_without_one() {
    let unpriced = json!({"custom_id": "u-1", "url": "/v1/chat/completions",
                          "body": {"model": "house-model-7b", "messages": [{"role": "user", "content": "hi"}]}})
    .to_string();
    let (env, _) = env_with_daily(Money::parse_decimal("100").unwrap()).await;
    let before = env.snapshot().await;
    let a = env
        .call(ApiRequest::post("/v1/requests", "application/json", unpriced.clone()))
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.error().0, Some("body.model"));
    assert_eq!(a.error().1, "unpriced_model");
    assert_eq!(env.snapshot().await, before);
    // In a bulk file only that line is rejected.
    let text = format!("{}\n{unpriced}", line(0));
    let a = env
        .call(ApiRequest::post("/v1/requests/bulk", "application/x-ndjson", text))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["summary"]["created"], 1);
    assert_eq!(a.body["results"][1]["error"]["code"], "unpriced_model");

    let free = ApiEnv::new().await;
    let a = free
        .call(ApiRequest::post("/v1/requests", "application/json", unpriced))
        .await;
    assert_eq!(a.status, 202, "no budget: nothing to count it against: {}", a.body);
    let stats = free.call(ApiRequest::get("/v1/stats")).await.body;
    assert_eq!(stats["budget"], json!({"daily": null, "monthly": null}));
}

#[tokio::test]
async fn per_tenant_limits_apply_to_their_tenant_only() {
    let e = estimate(0);
    let env = ApiEnv::with(|c| {
        c.limits.budgets.monthly = PeriodSetting::parse(&format!("{TENANT}={}", e.to_decimal_string())).unwrap();
    })
    .await;
    assert_eq!(env.call(post(0)).await.status, 202);
    let refused = env.call(post(1)).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.body["error"]["budget"]["period"], "monthly");
    for i in 0..3 {
        assert_eq!(env.call_as("other", post(i)).await.status, 202, "other has no budget");
    }
}
