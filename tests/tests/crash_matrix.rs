//! The crash matrix: each step is stopped at each of its named boundaries
//! (as if the function were killed there), then re-run — twice, concurrently,
//! as at-least-once delivery may do — and the run is driven to the end. The
//! lifecycle invariants must hold every time: every request ends in exactly
//! one terminal state, no request reaches the provider twice in one attempt,
//! no job makes two provider batches, usage is counted once, and every
//! request that reached a terminal state has exactly one results-feed entry.
//!
//! Each point runs twice: on the in-memory store with no lag, and on the
//! store `BATCHQ_TEST_STORE` names (in-memory, or the emulator's DynamoDB and
//! S3) with the indexes lagging their writes — the harder of the two, so the
//! emulator's pass of `make test` runs only that one.
//!
//! The matrix runs again for Anthropic's Message Batches (module
//! `anthropic`), whose batches take no metadata, are created inline and
//! answer in one results file, on the store `BATCHQ_TEST_STORE` names.

use std::sync::Arc;
use std::time::Duration;

use batchq_core::pipeline::crash::CrashOnce;
use batchq_core::pipeline::CrashPoint;
use batchq_core::request::NewRequest;
use batchq_tests::pipeline::{assert_invariants, chat, embedding, keys, message, Pipeline};
use batchq_tests::stores::StoreKind;
use fake_openai::Faults;

/// A workload that passes every boundary: two groups, a group split into two
/// files, files longer than one ingest chunk, and an error file with
/// retryable lines (so requests go round more than once).
fn workload(provider: Provider) -> Vec<NewRequest> {
    match provider {
        Provider::OpenAi => {
            let mut reqs: Vec<_> = (0..150).map(|i| chat(i, "gpt-4o-mini")).collect();
            reqs.extend((0..30).map(|i| embedding(i, "text-embedding-3-small")));
            reqs
        }
        Provider::Anthropic => {
            let mut reqs: Vec<_> = (0..150).map(|i| message(i, "claude-haiku-4-5")).collect();
            reqs.extend((150..180).map(|i| message(i, "claude-sonnet-4-5")));
            reqs
        }
    }
}

/// Whose batch API the run goes through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Provider {
    OpenAi,
    Anthropic,
}

fn crashed(result: &Result<serde_json::Value, String>, point: CrashPoint) -> bool {
    match result {
        Ok(_) => false,
        Err(e) if e.contains(&format!("crash injected at {point}")) => true,
        Err(e) => panic!("step failed for another reason: {e}"),
    }
}

/// The global-index lag of the lagged runs: several times a real index's
/// usual lag, far below a lease.
const INDEX_LAG: Duration = Duration::from_millis(400);

async fn crash_then_rerun_twice(point: CrashPoint, index_lag: Option<Duration>) {
    crash_then_rerun_twice_on(Provider::OpenAi, point, index_lag, StoreKind::Memory).await
}

async fn crash_then_rerun_twice_on(
    provider: Provider,
    point: CrashPoint,
    index_lag: Option<Duration>,
    unlagged_store: StoreKind,
) {
    let token_limit_first = point == CrashPoint::PollAfterFailedRequests;
    let faults = Faults {
        fail_percent: 15,
        fail_status: Some(503),
        token_limit_exceeded: token_limit_first,
        ..Faults::default()
    };
    let kind = match index_lag {
        Some(_) => StoreKind::from_env(),
        None => unlagged_store,
    };
    let p = Pipeline::with_faults_on(kind, faults, |c| {
        c.limits.max_lines_per_batch = 120;
        c.policy.max_attempts = 3;
    })
    .await;
    let p = match index_lag {
        Some(lag) => p.with_index_lag(lag).await,
        None => p,
    };
    let reqs = workload(provider);
    p.enqueue(&reqs).await;
    // The schedule fires after the enqueue has reached the indexes, so the
    // workload keeps its shape (a group over two files, a file over one
    // ingest chunk) and every boundary is passed.
    if let Some(lag) = index_lag {
        tokio::time::sleep(lag + Duration::from_millis(50)).await;
    }
    let crash = Arc::new(CrashOnce::new(point));
    let submitter = p.submitter_with(crash.clone());
    let poller = p.poller_with(crash.clone());
    let ingester = p.ingester_with(crash.clone());

    // With a lag, a round may find nothing new in the indexes yet (a
    // request enqueued or re-queued a moment ago): more, paced rounds.
    let rounds = if index_lag.is_some() { 40 } else { 12 };
    let mut queue_emptied = false;
    for _ in 0..rounds {
        if let Some(lag) = index_lag {
            tokio::time::sleep(lag / 4).await;
        }
        let (fresh_a, fresh_b) = (p.submitter(), p.submitter());
        let r = p.submit_via_handler(&submitter).await;
        if crashed(&r, point) {
            p.pass_lease().await;
            let (a, b) = tokio::join!(p.submit_via_handler(&fresh_a), p.submit_via_handler(&fresh_b));
            a.expect("re-run after the crash");
            b.expect("concurrent re-run after the crash");
        }

        let (fresh_a, fresh_b) = (p.poller(), p.poller());
        let r = p.poll_via_handler(&poller).await;
        if crashed(&r, point) {
            let (a, b) = tokio::join!(p.poll_via_handler(&fresh_a), p.poll_via_handler(&fresh_b));
            a.expect("re-run after the crash");
            b.expect("concurrent re-run after the crash");
        }

        let (fresh_a, fresh_b) = (p.ingester(), p.ingester());
        for event in p.new_result_events().await {
            let r = p.ingest_via_handler(&ingester, event.clone()).await;
            if crashed(&r, point) {
                // Lambda retries the same event; S3 may deliver it twice more.
                let (a, b) = tokio::join!(
                    p.ingest_via_handler(&fresh_a, event.clone()),
                    p.ingest_via_handler(&fresh_b, event)
                );
                a.expect("redelivery after the crash");
                b.expect("concurrent redelivery after the crash");
            }
        }
        // A closing crash can leave a job whose files are all counted: the
        // next poll closes it. The full token queue empties once a refused
        // batch was handled (and the crash in it fired).
        if token_limit_first && !queue_emptied && crash.fired() {
            queue_emptied = true;
            p.fake.set_faults(Faults {
                fail_percent: 15,
                fail_status: Some(503),
                ..Faults::default()
            });
            p.clock.advance(p.config().policy.token_limit_hold);
        }
        if p.all_terminal(&keys(&reqs)).await && p.all_jobs().await.iter().all(|j| j.status.is_terminal()) {
            break;
        }
    }
    assert!(crash.fired(), "{point} was never reached: this run proves nothing");
    assert_invariants(&p, &reqs).await;
    // Every provider file was deleted once its copy was safe: a crash left
    // no orphan (a second upload of the same input, say) behind.
    assert_eq!(p.fake.file_count(), 0, "{point} left files at the provider");
}

macro_rules! crash_tests {
    ($($name:ident => $point:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                crash_then_rerun_twice(CrashPoint::$point, None).await;
            }
        )*
        /// The same crashes with the tables' global indexes lagging writes.
        mod with_index_lag {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    crash_then_rerun_twice(CrashPoint::$point, Some(INDEX_LAG)).await;
                }
            )*
        }
    };
}

/// The crashes a Message Batches run passes, on the store
/// `BATCHQ_TEST_STORE` names. A message batch never fails as a whole (a
/// full queue or a bad line ends as per-request results), so the failed-
/// batch point has no Anthropic run.
macro_rules! anthropic_crash_tests {
    ($($name:ident => $point:ident),* $(,)?) => {
        mod anthropic {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    crash_then_rerun_twice_on(Provider::Anthropic, CrashPoint::$point, None, StoreKind::from_env()).await;
                }
            )*
        }
    };
}

anthropic_crash_tests! {
    crash_after_the_job_row_is_written_loses_nothing => SubmitAfterJobCreated,
    crash_after_claiming_requests_submits_them_once => SubmitAfterClaim,
    crash_while_streaming_the_input_file_submits_it_once => SubmitMidInputWrite,
    crash_after_the_input_file_is_written_submits_it_once => SubmitAfterInputWritten,
    crash_after_staging_submits_once => SubmitAfterStaged,
    crash_after_the_inline_upload_submits_once => SubmitAfterUpload,
    crash_after_create_before_recording_the_batch_creates_one_message_batch => SubmitAfterCreate,
    crash_after_marking_ingesting_still_copies_the_results => PollAfterMarkIngesting,
    crash_after_copying_the_results_still_ingests_them => PollAfterCopyOutput,
    crash_after_the_copy_before_recording_it_closes_the_job => PollAfterCopies,
    crash_in_the_middle_of_a_result_file_applies_every_line_once => IngestMidFile,
    crash_before_adding_a_files_totals_counts_them_once => IngestBeforeTotals,
    crash_after_adding_totals_closes_the_job_without_counting_again => IngestAfterTotals,
    crash_while_closing_a_job_closes_it_once => CloseAfterLeftovers,
}

crash_tests! {
    crash_after_the_job_row_is_written_loses_nothing => SubmitAfterJobCreated,
    crash_after_claiming_requests_submits_them_once => SubmitAfterClaim,
    crash_while_streaming_the_input_file_submits_it_once => SubmitMidInputWrite,
    crash_after_the_input_file_is_written_submits_it_once => SubmitAfterInputWritten,
    crash_after_staging_uploads_and_submits_once => SubmitAfterStaged,
    crash_after_upload_before_recording_the_file_submits_once => SubmitAfterUpload,
    crash_after_create_before_recording_the_batch_creates_one_provider_batch => SubmitAfterCreate,
    crash_after_marking_ingesting_still_copies_the_results => PollAfterMarkIngesting,
    crash_between_the_two_result_copies_still_ingests_both => PollAfterCopyOutput,
    crash_after_the_copies_before_recording_them_closes_the_job => PollAfterCopies,
    crash_after_handling_a_failed_batchs_requests_fails_the_job_once => PollAfterFailedRequests,
    crash_in_the_middle_of_a_result_file_applies_every_line_once => IngestMidFile,
    crash_before_adding_a_files_totals_counts_them_once => IngestBeforeTotals,
    crash_after_adding_totals_closes_the_job_without_counting_again => IngestAfterTotals,
    crash_while_closing_a_job_closes_it_once => CloseAfterLeftovers,
}

#[test]
fn every_crash_point_has_a_test() {
    let source = include_str!("crash_matrix.rs");
    let block = |start: &str| {
        let rest = source.split_once(start).expect("the matrix is listed").1;
        rest.split_once("\n}").expect("the list ends").0
    };
    let (openai, anthropic) = (block("\ncrash_tests! {"), block("\nanthropic_crash_tests! {"));
    for point in CrashPoint::ALL {
        let name = format!("{point:?}");
        let entry = format!("=> {name},");
        assert_eq!(
            openai.matches(&entry).count(),
            1,
            "crash point {name} has no OpenAI test"
        );
        let anthropic_runs = point != CrashPoint::PollAfterFailedRequests;
        assert_eq!(
            anthropic.matches(&entry).count(),
            usize::from(anthropic_runs),
            "crash point {name} has no Anthropic test"
        );
    }
}
