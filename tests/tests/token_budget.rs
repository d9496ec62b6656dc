//! The provider's enqueued-token limit (issue 14): a model's waiting and
//! running batches may hold only so many input tokens at once; a batch over
//! it is accepted, then fails validation with `token_limit_exceeded`. batchq
//! learns the limit from that refusal and drip-feeds a large queue through
//! it, batch after batch, without being refused twice in a row.

use std::collections::HashMap;

use batchq_core::ids::ProviderBatchId;
use batchq_core::job::ProviderBatchStatus;
use batchq_core::request::{Endpoint, NewRequest, RequestStatus};
use batchq_tests::pipeline::{assert_invariants, keys, new_request, Pipeline};
use fake_openai::Faults;
use serde_json::{json, Value};

const MODEL: &str = "gpt-4o-mini";
const LIMIT: u64 = 200_000;

/// A chat request of about `tokens` prompt tokens (by the fake's count).
fn long_chat(i: usize, tokens: usize) -> NewRequest {
    let words = "the quarterly report shows steady growth in every region and ";
    let text: String = words.repeat(tokens * 4 / words.len() + 1);
    new_request(
        &format!("long-{i}"),
        Endpoint::ChatCompletions,
        MODEL,
        json!({"model": MODEL, "messages": [
            {"role": "system", "content": "Summarise the report in one sentence."},
            {"role": "user", "content": format!("Report {i}: {text}")}
        ], "max_tokens": 40}),
    )
}

fn fake_tokens(r: &NewRequest) -> u64 {
    let body: Value = serde_json::from_str(&r.body_json).unwrap();
    fake_openai::responses::prompt_tokens(r.endpoint.as_str(), &body)
}

/// A pipeline whose fake provider holds `MODEL` to `LIMIT` enqueued tokens;
/// `configured`: batchq is told the limit, else it learns it.
async fn limited(configured: bool) -> Pipeline {
    Pipeline::with_faults(
        Faults {
            enqueued_token_limits: HashMap::from([(MODEL.to_owned(), LIMIT)]),
            // Batches hold their tokens across polls, as real ones do for hours.
            stay_in_progress_polls: 2,
            ..Faults::default()
        },
        |c| {
            if configured {
                c.limits.enqueued_token_limits = [(MODEL.to_owned(), LIMIT)].into();
            }
        },
    )
    .await
}

#[tokio::test]
async fn two_million_tokens_queued_under_a_200k_limit_all_complete_without_two_refusals_in_a_row() {
    let p = limited(false).await;
    let reqs: Vec<_> = (0..1000).map(|i| long_chat(i, 2000)).collect();
    let queued: u64 = reqs.iter().map(fake_tokens).sum();
    assert!(
        queued >= 2_000_000,
        "the workload is 2M tokens by the provider's count: {queued}"
    );

    // How far batchq's estimate is from the provider's count on these bodies.
    let estimated: u64 = reqs.iter().map(|r| r.weight.tokens).sum();
    let ratio = estimated as f64 / queued as f64;
    eprintln!("estimate / provider count = {estimated} / {queued} = {ratio:.3}");
    assert!(
        (1.0..1.2).contains(&ratio),
        "the estimate over-counts a little: {ratio:.3}"
    );

    p.enqueue(&reqs).await;
    p.settle(&keys(&reqs), 120).await;
    let states = p.states(&keys(&reqs)).await;
    assert!(
        states
            .values()
            .all(|r| r.status == RequestStatus::Completed && r.attempts == 1),
        "every request completed in its first batch that ran"
    );

    // In the order they were created: refused for the limit or accepted.
    let mut refused_in_row = 0;
    let mut refusals = 0;
    let mut accepted = 0;
    for sub in p.fake.submissions() {
        let batch = p
            .provider
            .retrieve_batch(&ProviderBatchId::new(sub.batch_id.clone()))
            .await
            .unwrap();
        if batch.is_token_limit_exceeded() {
            refusals += 1;
            refused_in_row += 1;
            assert!(refused_in_row < 2, "two batches in a row were refused for the limit");
        } else {
            assert_eq!(batch.status, ProviderBatchStatus::Completed);
            assert!(sub.tokens <= LIMIT, "a batch of {} tokens was accepted", sub.tokens);
            refused_in_row = 0;
            accepted += 1;
        }
    }
    eprintln!("{accepted} batches accepted, {refusals} refused");
    assert_eq!(
        refusals, 1,
        "only the first batch, sent before the limit was known, is refused"
    );
    assert!(accepted >= 10, "2M tokens went out in many batches: {accepted}");
    assert_invariants(&p, &reqs).await;
}

#[tokio::test]
async fn a_configured_limit_is_never_exceeded_at_all() {
    let p = limited(true).await;
    let reqs: Vec<_> = (0..300).map(|i| long_chat(i, 2000)).collect();
    p.enqueue(&reqs).await;
    p.settle(&keys(&reqs), 60).await;
    assert!(p.all_terminal(&keys(&reqs)).await);
    for sub in p.fake.submissions() {
        let batch = p
            .provider
            .retrieve_batch(&ProviderBatchId::new(sub.batch_id.clone()))
            .await
            .unwrap();
        assert!(!batch.is_token_limit_exceeded(), "a batch was refused for the limit");
    }
    assert!(p.fake.peak_enqueued_tokens(MODEL) <= LIMIT);
    assert_invariants(&p, &reqs).await;
}
