//! Running savings totals: counted once per source, read by day range.

use batchq_core::ids::{ModelName, ProviderName};
use batchq_core::money::Money;
use batchq_core::request::Usage;
use batchq_core::store::{SavingsRow, SavingsTotals};

use super::*;

fn row(t: &str, day: &str, model: &str, requests: u64) -> SavingsRow {
    SavingsRow {
        tenant: tenant(t),
        day: day.into(),
        provider: ProviderName::default_name(),
        model: ModelName::parse(model).unwrap(),
        totals: SavingsTotals {
            requests,
            usage: Usage {
                input_tokens: 100 * requests,
                cached_input_tokens: 10 * requests,
                output_tokens: 50 * requests,
                reasoning_tokens: requests,
                cache_write_tokens: 0,
            },
            batch_cost: Money::from_picodollars(1_000 * requests as i128),
            realtime_cost: Money::from_picodollars(2_000 * requests as i128),
            unpriced_requests: requests / 2,
            // AWS overhead is kept and summed with the rest, once per source.
            aws_overhead: Money::from_picodollars(7 * requests as i128),
        },
    }
}

pub async fn savings_are_counted_once_per_source_and_read_by_day_then_model(s: StoreUnderTest) {
    let file_a = "results/job_a/output.jsonl";
    let file_b = "results/job_b/output.jsonl";
    let first = vec![
        row("acme", "2026-11-02", "gpt-4o-mini", 2),
        row("acme", "2026-11-01", "gpt-4o-mini", 3),
        row("acme", "2026-11-01", "gpt-4o", 1),
        row("beta", "2026-11-01", "gpt-4o", 4),
    ];
    s.savings.add_savings(file_a, first.clone()).await.unwrap();
    // A replay of the same file counts nothing.
    s.savings.add_savings(file_a, first).await.unwrap();
    s.savings
        .add_savings(file_b, vec![row("acme", "2026-11-01", "gpt-4o-mini", 5)])
        .await
        .unwrap();

    let got = s
        .savings
        .savings(&tenant("acme"), "2026-11-01", "2026-11-02")
        .await
        .unwrap();
    let mut mini = row("acme", "2026-11-01", "gpt-4o-mini", 3).totals;
    mini.add(&row("acme", "2026-11-01", "gpt-4o-mini", 5).totals);
    let want = vec![
        SavingsRow {
            totals: row("acme", "2026-11-01", "gpt-4o", 1).totals,
            ..row("acme", "2026-11-01", "gpt-4o", 0)
        },
        SavingsRow {
            totals: mini,
            ..row("acme", "2026-11-01", "gpt-4o-mini", 0)
        },
        row("acme", "2026-11-02", "gpt-4o-mini", 2),
    ];
    assert_eq!(got, want);
    assert_eq!(got[1].totals.saved(), Money::from_picodollars(8_000));

    let one_day = s
        .savings
        .savings(&tenant("acme"), "2026-11-02", "2026-11-02")
        .await
        .unwrap();
    assert_eq!(one_day, vec![row("acme", "2026-11-02", "gpt-4o-mini", 2)]);
    let beta = s
        .savings
        .savings(&tenant("beta"), "2026-10-01", "2026-12-31")
        .await
        .unwrap();
    assert_eq!(beta, vec![row("beta", "2026-11-01", "gpt-4o", 4)]);
    assert!(s
        .savings
        .savings(&tenant("acme"), "2026-11-03", "2026-11-30")
        .await
        .unwrap()
        .is_empty());
}

pub async fn savings_of_two_providers_for_one_model_and_day_are_kept_apart(s: StoreUnderTest) {
    let via = |provider: &str, requests: u64| SavingsRow {
        provider: ProviderName::parse(provider).unwrap(),
        ..row("acme", "2026-11-01", "shared-model", requests)
    };
    s.savings
        .add_savings("results/job_a/output.jsonl", vec![via("openai", 3)])
        .await
        .unwrap();
    s.savings
        .add_savings("results/job_b/output.jsonl", vec![via("groq", 5)])
        .await
        .unwrap();
    let got = s
        .savings
        .savings(&tenant("acme"), "2026-11-01", "2026-11-01")
        .await
        .unwrap();
    // Sorted by day, then provider, then model.
    assert_eq!(got, vec![via("groq", 5), via("openai", 3)]);
}
