//! Second batches at a provider whose batches cannot carry their job id
//! (Anthropic): a create whose answer was lost and that `find_batch` did not
//! recognise leaves a second batch of a job's requests running. Poll finds
//! it by size, time and its results' requests: cancelled while it runs, or
//! counted as paid twice once it has ended; recorded on the job and
//! reported once; never applied to a request.

use batchq_core::job::{Job, ProviderBatchStatus};
use batchq_core::money::Money;
use batchq_core::pipeline::poll::UNTAGGED_MIN_AGE;
use batchq_core::pipeline::SubmitOptions;
use batchq_core::provider::{Batch, CreateBatch, ProviderError};
use batchq_core::request::{NewRequest, RequestStatus, Usage};
use batchq_core::time::Clock as _;
use batchq_tests::pipeline::{keys, message, Pipeline};
use fake_openai::FakeConfig;

const MODEL: &str = "claude-haiku-4-5";

/// A pipeline with `n` Messages requests submitted in one `claude` job.
async fn submitted(n: usize) -> (Pipeline, Vec<NewRequest>, Job) {
    let p = Pipeline::start(FakeConfig::default(), |_| {}).await;
    let reqs: Vec<_> = (0..n).map(|i| message(i, MODEL)).collect();
    p.enqueue(&reqs).await;
    p.submitter().run(SubmitOptions::default()).await.unwrap();
    let jobs = p.all_jobs().await;
    assert_eq!(jobs.len(), 1);
    let job = jobs.into_iter().next().unwrap();
    assert_eq!(job.provider_name.as_str(), "claude");
    assert!(job.provider_batch_id.is_some());
    (p, reqs, job)
}

/// What a create whose answer was lost and whose batch the listing did not
/// show in time leaves behind: a second message batch of the job's staged
/// input (or of another staged object, `input_key`).
async fn create_directly(p: &Pipeline, job: &Job, input_key: &str, lines: u64) -> Batch {
    p.anthropic
        .create_batch(
            &CreateBatch {
                job_id: job.id.clone(),
                input_file_id: job.provider_file_id.clone().unwrap(),
                input_key: input_key.to_owned(),
                lines,
                taken: Vec::new(),
                endpoint: job.endpoint,
                not_before: 0,
            },
            false,
        )
        .await
        .unwrap()
}

/// Moves the manual clock past the age an unfinished suspect must reach
/// before poll judges it. The fake stamps batches with the wall clock, which
/// has moved on since the pipeline's clock was set (more so on a loaded
/// machine), so the clock goes to the newest batch's time plus that age.
fn past_min_age(p: &Pipeline, batches: &[&Batch]) {
    let newest = batches
        .iter()
        .filter_map(|b| b.created_at)
        .max()
        .expect("batches with times");
    let due = newest + UNTAGGED_MIN_AGE.as_secs() as i64 + 1;
    let now = p.clock.now().unix_seconds();
    p.clock
        .advance(std::time::Duration::from_secs(due.saturating_sub(now).max(0) as u64));
    assert!(p.clock.now().unix_seconds() >= due);
}

/// A batch's status as the listing shows it (a retrieve moves the fake's
/// batches along).
async fn listed_status(p: &Pipeline, id: &str) -> ProviderBatchStatus {
    let page = p.anthropic.list_batches(None, 100).await.unwrap();
    page.data.iter().find(|b| b.id == id).expect("listed").status.clone()
}

/// Every request completed once, by `job`, with usage counted once on the
/// job and in the savings (the duplicate adds cost only).
async fn completed_once(p: &Pipeline, reqs: &[NewRequest], job: &Job) {
    p.settle(&keys(reqs), 4).await;
    let states = p.states(&keys(reqs)).await;
    let mut usage = Usage::default();
    for r in reqs {
        let st = &states[&r.key];
        assert_eq!(st.status, RequestStatus::Completed, "{}", r.custom_id);
        assert_eq!(st.attempts, 1, "{}", r.custom_id);
        assert_eq!(st.job_id.as_ref(), Some(&job.id));
        let (_, result) = p.result(&r.key).await;
        let result = result.expect("a result");
        assert_eq!(result.job_id, job.id);
        usage.add(&result.usage.expect("usage"));
    }
    let done = p.job(&job.id).await;
    assert_eq!(done.totals.usage, usage, "the job counted each answer once");
    let savings = p.default_tenant_savings().await;
    let requests: u64 = savings.iter().map(|s| s.totals.requests).sum();
    let input: u64 = savings.iter().map(|s| s.totals.usage.input_tokens).sum();
    let batch: Money = savings
        .iter()
        .map(|s| s.totals.batch_cost)
        .fold(Money::ZERO, |a, b| a + b);
    let realtime: Money = savings
        .iter()
        .map(|s| s.totals.realtime_cost)
        .fold(Money::ZERO, |a, b| a + b);
    assert_eq!(requests, reqs.len() as u64, "each request counted once in the savings");
    assert_eq!(input, usage.input_tokens);
    assert_eq!(
        realtime, done.totals.realtime_cost,
        "no saving counted for the duplicate"
    );
    assert_eq!(
        batch,
        done.totals.batch_cost + done.double_spent_cost,
        "the duplicate's cost is in the savings once"
    );
}

#[tokio::test]
async fn a_running_second_message_batch_of_a_jobs_size_is_cancelled_recorded_and_reported_once() {
    let (p, reqs, job) = submitted(6).await;
    let duplicate = create_directly(&p, &job, &job.input_key, job.input_lines).await;
    assert_eq!(p.fake.submissions().len(), 2);

    // Too young: a job this run does not know yet may be creating it.
    let first = p.poller().run().await.unwrap();
    assert!(first.duplicates_cancelled.is_empty(), "{first:?}");
    assert_eq!(listed_status(&p, &duplicate.id).await, ProviderBatchStatus::InProgress);

    past_min_age(&p, &[&duplicate]);
    let report = p.poller().run().await.unwrap();
    assert_eq!(
        report.duplicates_cancelled,
        vec![(job.id.to_string(), duplicate.id.clone())],
        "{report:?}"
    );
    assert!(report.errors.is_empty(), "{report:?}");
    assert!(matches!(
        listed_status(&p, &duplicate.id).await,
        ProviderBatchStatus::Cancelling | ProviderBatchStatus::Cancelled
    ));
    let recorded = p.job(&job.id).await;
    assert_eq!(recorded.duplicate_batches, vec![duplicate.batch_id()]);
    assert_eq!(
        recorded.errors.iter().filter(|e| e.code == "duplicate_batch").count(),
        1
    );
    assert_eq!(
        recorded.provider_batch_id, job.provider_batch_id,
        "the job keeps its own batch"
    );

    let again = p.poller().run().await.unwrap();
    assert!(again.duplicates_cancelled.is_empty(), "{again:?}");
    assert!(again.duplicates_ended.is_empty(), "{again:?}");
    completed_once(&p, &reqs, &job).await;
    assert_eq!(p.job(&job.id).await.duplicate_batches, vec![duplicate.batch_id()]);
}

#[tokio::test]
async fn an_ended_second_message_batch_is_counted_as_paid_twice_recorded_reported_and_deleted() {
    let (p, reqs, job) = submitted(6).await;
    let duplicate = create_directly(&p, &job, &job.input_key, job.input_lines).await;
    // It runs to the end before poll sees it (a retrieve moves it along).
    let ended = p.anthropic.retrieve_batch(&duplicate.batch_id()).await.unwrap();
    assert_eq!(ended.status, ProviderBatchStatus::Completed);
    assert_eq!(ended.request_counts.completed, 6);

    let report = p.poller().run().await.unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    assert!(report.duplicates_cancelled.is_empty(), "{report:?}");
    assert_eq!(report.duplicates_ended.len(), 1, "{report:?}");
    let found = &report.duplicates_ended[0];
    assert_eq!(found.job_id, job.id.to_string());
    assert_eq!(found.batch_id, duplicate.id);
    assert_eq!(found.answers, 6);
    assert!(found.double_spent_cost > Money::ZERO, "{MODEL} is priced");

    let recorded = p.job(&job.id).await;
    assert_eq!(recorded.duplicate_batches, vec![duplicate.batch_id()]);
    assert_eq!(recorded.double_spent, 6);
    assert_eq!(recorded.double_spent_cost, found.double_spent_cost);
    assert!(recorded.errors.iter().any(|e| e.code == "duplicate_batch"));
    // Its results are deleted at the provider (BATCHQ_DELETE_PROVIDER_FILES).
    assert!(p.config().policy.delete_provider_files);
    assert!(matches!(
        p.anthropic.retrieve_batch(&duplicate.batch_id()).await,
        Err(ProviderError::NotFound { .. })
    ));

    let again = p.poller().run().await.unwrap();
    assert!(again.duplicates_ended.is_empty(), "{again:?}");
    completed_once(&p, &reqs, &job).await;
    let done = p.job(&job.id).await;
    assert_eq!(done.double_spent, 6, "counted once");
    assert_eq!(done.double_spent_cost, found.double_spent_cost);
    // Each answer's twice-paid cost equals what the job paid for it.
    assert_eq!(done.double_spent_cost, done.totals.batch_cost);
}

#[tokio::test]
async fn batches_of_another_system_in_the_same_workspace_are_left_alone() {
    let (p, reqs, job) = submitted(6).await;
    // Another system's batches: two of the job's very size (ended) whose
    // custom ids are no batchq request keys, or look like keys but name no
    // stored request, and one of another size (running).
    let theirs = |n: usize, key: &str, like_keys: bool| {
        let lines: String = (0..n)
            .map(|i| {
                format!(
                    "{}\n",
                    serde_json::json!({"custom_id": if like_keys { format!("{:032x}", 0xabc000 + i) } else { format!("other-{i}") }, "params": {
                        "model": MODEL, "max_tokens": 8,
                        "messages": [{"role": "user", "content": format!("theirs {i}")}]}})
                )
            })
            .collect();
        (key.to_owned(), bytes::Bytes::from(lines))
    };
    let mut ended = Vec::new();
    for (key, like_keys) in [("others/same.jsonl", false), ("others/keys.jsonl", true)] {
        let (key, body) = theirs(6, key, like_keys);
        p.objects().put(&key, body, "application/jsonl").await.unwrap();
        let same = create_directly(&p, &job, &key, 6).await;
        let done = p.anthropic.retrieve_batch(&same.batch_id()).await.unwrap();
        assert_eq!(done.status, ProviderBatchStatus::Completed);
        assert_eq!(done.request_counts.completed, 6);
        ended.push(same);
    }
    let (other_key, other_body) = theirs(4, "others/other.jsonl", false);
    p.objects()
        .put(&other_key, other_body, "application/jsonl")
        .await
        .unwrap();
    let other = create_directly(&p, &job, &other_key, 4).await;

    past_min_age(&p, &[&ended[0], &ended[1], &other]);
    for _ in 0..2 {
        let report = p.poller().run().await.unwrap();
        assert!(report.duplicates_cancelled.is_empty(), "{report:?}");
        assert!(report.duplicates_ended.is_empty(), "{report:?}");
        assert!(report.errors.is_empty(), "{report:?}");
    }
    assert_eq!(listed_status(&p, &other.id).await, ProviderBatchStatus::InProgress);
    for same in &ended {
        let kept = p.anthropic.retrieve_batch(&same.batch_id()).await.unwrap();
        assert_eq!(kept.status, ProviderBatchStatus::Completed, "not deleted");
    }
    let recorded = p.job(&job.id).await;
    assert!(recorded.duplicate_batches.is_empty());
    assert_eq!(recorded.double_spent, 0);
    completed_once(&p, &reqs, &job).await;
    assert!(p.job(&job.id).await.duplicate_batches.is_empty());
}
