//! The pipeline's behaviour against the emulator and the fake provider:
//! grouping and limits, retries, expired and failed batches, replays.

use std::collections::HashSet;
use std::sync::Arc;

use batchq_core::job::JobStatus;
use batchq_core::pipeline::crash::CrashOnce;
use batchq_core::pipeline::{CrashPoint, NoCrashes, SubmitOptions};
use batchq_core::request::RequestStatus;
use batchq_tests::pipeline::{assert_invariants, chat, embedding, keys, Pipeline};
use fake_openai::{FakeConfig, Faults};

#[tokio::test]
async fn queued_requests_end_completed_with_the_providers_exact_answer() {
    let p = Pipeline::start(FakeConfig::default(), |_| {}).await;
    let mut reqs: Vec<_> = (0..60).map(|i| chat(i, "gpt-4o-mini")).collect();
    reqs.extend((0..40).map(|i| embedding(i, "text-embedding-3-small")));
    p.enqueue(&reqs).await;

    p.settle(&keys(&reqs), 4).await;

    assert_invariants(&p, &reqs).await;
    let states = p.states(&keys(&reqs)).await;
    assert!(states
        .values()
        .all(|r| r.status == RequestStatus::Completed && r.attempts == 1));
    let jobs = p.all_jobs().await;
    assert_eq!(jobs.len(), 2, "one job per (endpoint, model)");
    for job in &jobs {
        assert_eq!(job.status, JobStatus::Done);
        assert!(job.totals.usage.input_tokens > 0);
        assert!(job.totals.batch_cost.picodollars() > 0, "both models are priced");
        assert_eq!(
            job.totals.realtime_cost.picodollars(),
            2 * job.totals.batch_cost.picodollars(),
            "the Batch API is half price for these models"
        );
        assert!(job.ingested_output && job.copied_at.is_some());
    }
    assert_eq!(p.fake.file_count(), 0, "provider files are deleted once copied to S3");
}

#[tokio::test]
async fn a_group_larger_than_the_line_limit_is_split_into_several_batches() {
    let p = Pipeline::start(FakeConfig::default(), |c| c.limits.max_lines_per_batch = 40).await;
    let reqs: Vec<_> = (0..100).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;

    let report = p.submitter().run(SubmitOptions::default()).await.unwrap();

    let sizes: Vec<u64> = report.jobs.iter().map(|j| j.requests).collect();
    assert_eq!(sizes, vec![40, 40, 20]);
    let subs = p.fake.submissions();
    assert_eq!(subs.len(), 3);
    let all: HashSet<&String> = subs.iter().flat_map(|s| &s.custom_ids).collect();
    assert_eq!(all.len(), 100, "every request in exactly one batch");
    p.settle(&keys(&reqs), 3).await;
    assert_invariants(&p, &reqs).await;
}

#[tokio::test]
async fn a_group_waits_until_it_is_big_enough_or_old_enough() {
    let p = Pipeline::start(FakeConfig::default(), |c| c.policy.submit_min_requests = 50).await;
    let reqs: Vec<_> = (0..10).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;

    let report = p.submitter().run(SubmitOptions::default()).await.unwrap();
    assert!(report.jobs.is_empty());
    assert_eq!(report.waiting.len(), 1);
    assert!(p.fake.submissions().is_empty());

    p.clock.advance(p.config().policy.submit_max_age);
    let polled = p.poller().run().await.unwrap();
    assert_eq!(
        polled.oldest_queued_age_seconds,
        Some(p.config().policy.submit_max_age.as_secs()),
        "poll reports the queue's age (the queue-age alarm reads it)"
    );
    let report = p.submitter().run(SubmitOptions::default()).await.unwrap();
    assert_eq!(report.jobs.len(), 1, "the oldest request has waited long enough");
    assert_eq!(report.jobs[0].requests, 10);
}

#[tokio::test]
async fn force_submits_a_group_that_is_not_due() {
    let p = Pipeline::start(FakeConfig::default(), |c| c.policy.submit_min_requests = 50).await;
    let reqs: Vec<_> = (0..5).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    let report = p.submitter().run(SubmitOptions { force: true }).await.unwrap();
    assert_eq!(report.jobs.len(), 1);
}

#[tokio::test]
async fn failing_lines_are_retried_up_to_max_attempts_then_fail_with_the_providers_error() {
    let faults = Faults {
        fail_prefix: None,
        fail_percent: 30,
        fail_status: Some(500),
        ..Faults::default()
    };
    let p = Pipeline::with_faults(faults, |c| c.policy.max_attempts = 3).await;
    let reqs: Vec<_> = (0..80).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;

    p.settle(&keys(&reqs), 6).await;

    assert_invariants(&p, &reqs).await;
    let states = p.states(&keys(&reqs)).await;
    let failed: Vec<_> = states.values().filter(|r| r.status == RequestStatus::Failed).collect();
    assert!(!failed.is_empty(), "the fake fails the same ids every time");
    for r in &failed {
        assert_eq!(r.attempts, 3, "{} failed before its attempts were used up", r.custom_id);
        let err = r.last_error.as_ref().unwrap();
        assert_eq!(err.status_code, Some(500));
        assert_eq!(err.code, "server_error");
    }
    assert!(states.values().any(|r| r.status == RequestStatus::Completed));
}

#[tokio::test]
async fn a_400_inside_the_result_file_fails_the_request_at_once() {
    let faults = Faults {
        fail_prefix: Some(String::new()),
        fail_status: Some(400),
        ..Faults::default()
    };
    let p = Pipeline::with_faults(faults, |_| {}).await;
    let reqs: Vec<_> = (0..5).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    p.settle(&keys(&reqs), 3).await;
    for r in p.states(&keys(&reqs)).await.values() {
        assert_eq!(r.status, RequestStatus::Failed);
        assert_eq!(r.attempts, 1, "a 400 is not retried");
        assert_eq!(r.last_error.as_ref().unwrap().status_code, Some(400));
    }
    let (_, result) = p.result(&reqs[0].key).await;
    let result = result.unwrap();
    assert!(result.response.is_some(), "the provider's error body is kept");
    assert_eq!(result.usage, None);
}

#[tokio::test]
async fn an_expired_batch_keeps_its_finished_part_and_requeues_the_rest_which_completes_later() {
    let p = Pipeline::with_faults(
        Faults {
            stay_validating_polls: 1,
            ..Faults::default()
        },
        |_| {},
    )
    .await;
    let reqs: Vec<_> = (0..40).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    p.submitter().run(SubmitOptions::default()).await.unwrap();
    p.poller().run().await.unwrap(); // validating
    let batch = p.fake.submissions()[0].batch_id.clone();
    assert!(p.fake.expire(&batch));
    p.fake.set_faults(Faults::default());
    p.poller().run().await.unwrap();
    p.deliver(&p.ingester()).await.unwrap();

    let states = p.states(&keys(&reqs)).await;
    let done = states.values().filter(|r| r.status == RequestStatus::Completed).count();
    let requeued: Vec<_> = states.values().filter(|r| r.status == RequestStatus::Queued).collect();
    assert!(
        done > 0 && !requeued.is_empty(),
        "about half finished before the expiry"
    );
    assert_eq!(done + requeued.len(), 40);
    for r in &requeued {
        assert_eq!(r.attempts, 1);
        assert_eq!(r.last_error.as_ref().unwrap().code, "batch_expired");
    }
    let first_job = p
        .all_jobs()
        .await
        .into_iter()
        .find(|j| j.status == JobStatus::Done)
        .unwrap();
    assert_eq!(first_job.provider_status.as_ref().unwrap().as_str(), "expired");

    p.settle(&keys(&reqs), 3).await;
    assert_invariants(&p, &reqs).await;
    let states = p.states(&keys(&reqs)).await;
    assert!(states.values().all(|r| r.status == RequestStatus::Completed));
    for r in &requeued {
        assert_eq!(states[&r.key].attempts, 2, "completed in the second batch");
    }
}

#[tokio::test]
async fn requests_that_expire_in_every_attempt_end_failed_with_batch_expired() {
    let p = Pipeline::with_faults(
        Faults {
            stay_validating_polls: 1,
            ..Faults::default()
        },
        |c| c.policy.max_attempts = 2,
    )
    .await;
    let reqs: Vec<_> = (0..40).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    for _ in 0..2 {
        p.submitter().run(SubmitOptions::default()).await.unwrap();
        p.poller().run().await.unwrap();
        let batch = p.fake.submissions().last().unwrap().batch_id.clone();
        assert!(p.fake.expire(&batch));
        p.poller().run().await.unwrap();
        p.deliver(&p.ingester()).await.unwrap();
    }
    assert!(p.all_terminal(&keys(&reqs)).await);
    assert_invariants(&p, &reqs).await;
    let states = p.states(&keys(&reqs)).await;
    let failed: Vec<_> = states.values().filter(|r| r.status == RequestStatus::Failed).collect();
    assert!(!failed.is_empty());
    for r in failed {
        assert_eq!(r.attempts, 2);
        assert_eq!(r.last_error.as_ref().unwrap().code, "batch_expired");
        let (_, result) = p.result(&r.key).await;
        assert_eq!(result.unwrap().error.unwrap().code, "batch_expired");
    }
}

#[tokio::test]
async fn a_full_token_queue_requeues_for_free_lowers_the_budget_and_backs_off_when_refused_again() {
    let p = Pipeline::with_faults(
        Faults {
            token_limit_exceeded: true,
            ..Faults::default()
        },
        |_| {},
    )
    .await;
    let reqs: Vec<_> = (0..10).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    p.submitter().run(SubmitOptions::default()).await.unwrap();
    p.poller().run().await.unwrap();

    let states = p.states(&keys(&reqs)).await;
    for r in states.values() {
        assert_eq!(r.status, RequestStatus::Queued);
        assert_eq!(r.attempts, 0, "the batch never ran");
        assert_eq!(r.last_error.as_ref().unwrap().code, "token_limit_exceeded");
    }
    let job = &p.all_jobs().await[0];
    assert_eq!(job.status, JobStatus::Failed);
    let model = batchq_core::ids::ModelName::parse("gpt-4o-mini").unwrap();
    let budget = p
        .store
        .token_budgets()
        .await
        .unwrap()
        .remove(&model)
        .expect("a budget was learnt");
    // The fake states a 2,000,000 limit that these few tokens should have
    // fitted: something else holds it, so half of what was tried (floored).
    assert_eq!(budget.limit, Some(batchq_core::budget::FLOOR));
    assert_eq!(budget.stated_limit, Some(2_000_000));

    // One refusal: the next batch goes at once, under the new budget.
    let report = p.submitter().run(SubmitOptions { force: true }).await.unwrap();
    assert_eq!(report.jobs.len(), 1, "{report:?}");
    p.poller().run().await.unwrap();
    // Two in a row: the model backs off before the third try.
    let report = p.submitter().run(SubmitOptions { force: true }).await.unwrap();
    assert!(report.jobs.is_empty(), "the model is held back: {report:?}");
    assert_eq!(report.held.len(), 1);
    assert!(report.held[0].note.contains("2 batches"), "{}", report.held[0].note);

    p.fake.set_faults(Faults::default());
    p.clock.advance(batchq_core::budget::FIRST_BACKOFF);
    p.settle(&keys(&reqs), 3).await;
    let states = p.states(&keys(&reqs)).await;
    assert!(states
        .values()
        .all(|r| r.status == RequestStatus::Completed && r.attempts == 1));
    let budget = p.store.token_budgets().await.unwrap().remove(&model).unwrap();
    assert_eq!(budget.refusals_in_row, 0, "an accepted batch ends the run of refusals");
}

#[tokio::test]
async fn a_batch_that_fails_validation_fails_the_named_line_and_requeues_the_rest_for_free() {
    let p = Pipeline::start(FakeConfig::default(), |_| {}).await;
    let reqs: Vec<_> = (0..8).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    // Stop once the input file is staged, and spoil line 3 (another model)
    // the way a provider-side rule we do not check would refuse it.
    let crash = Arc::new(CrashOnce::new(CrashPoint::SubmitAfterStaged));
    assert!(p
        .submitter_with(crash.clone())
        .run(SubmitOptions::default())
        .await
        .is_err());
    let job = p.all_jobs().await.remove(0);
    let input = p.objects().get(&job.input_key).await.unwrap().unwrap();
    let text = String::from_utf8(input.to_vec()).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let spoiled_key = lines[2][14..46].to_owned();
    lines[2] = lines[2].replace("\"model\":\"gpt-4o-mini\"", "\"model\":\"gpt-4o\"");
    p.objects()
        .put(
            &job.input_key,
            format!("{}\n", lines.join("\n")).into(),
            "application/jsonl",
        )
        .await
        .unwrap();
    p.pass_lease().await;
    p.submitter().run(SubmitOptions::default()).await.unwrap();
    p.poller().run().await.unwrap();

    let job = p.job(&job.id).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.errors[0].line, Some(3));
    for r in p.states(&keys(&reqs)).await.values() {
        if r.key.as_str() == spoiled_key {
            assert_eq!(r.status, RequestStatus::Failed, "the line the provider named");
            assert_eq!(r.last_error.as_ref().unwrap().code, job.errors[0].code);
        } else {
            assert_eq!(r.status, RequestStatus::Queued);
            assert_eq!(r.attempts, 0, "not their fault: the attempt is given back");
        }
    }
    p.settle(&keys(&reqs), 3).await;
    let done = p
        .states(&keys(&reqs))
        .await
        .values()
        .filter(|r| r.status == RequestStatus::Completed)
        .count();
    assert_eq!(done, 7);
}

#[tokio::test]
async fn a_batch_the_provider_forgot_is_handled_as_expired_once_its_deadline_is_reached() {
    let p = Pipeline::with_faults(
        Faults {
            vanish_after_polls: Some(0),
            stay_validating_polls: 5,
            ..Faults::default()
        },
        |_| {},
    )
    .await;
    let reqs: Vec<_> = (0..6).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    p.submitter().run(SubmitOptions::default()).await.unwrap();
    p.poller().run().await.unwrap();

    // A 404 alone is not believed before the deadline: a wrong key or
    // project answers the same, and re-sending would pay twice.
    let job = &p.all_jobs().await[0];
    assert!(job.status.is_in_flight(), "{:?}", job.status);
    assert_eq!(job.provider_status.as_ref().map(|s| s.as_str()), Some("not_found"));
    for r in p.states(&keys(&reqs)).await.values() {
        assert_eq!(r.status, RequestStatus::Claimed);
    }
    p.clock.advance(p.config().policy.batch_deadline);
    p.poller().run().await.unwrap();
    assert!(
        p.all_jobs().await[0].status.is_in_flight(),
        "the cancel grace is waited out too"
    );
    p.clock.advance(std::time::Duration::from_secs(6 * 3600));
    p.poller().run().await.unwrap();

    let job = &p.all_jobs().await[0];
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.errors.last().unwrap().code, "batch_not_found");
    for r in p.states(&keys(&reqs)).await.values() {
        assert_eq!(r.status, RequestStatus::Queued);
        assert_eq!(r.last_error.as_ref().unwrap().code, "batch_not_found");
    }
    p.fake.set_faults(Faults::default());
    p.settle(&keys(&reqs), 3).await;
    assert!(p.all_terminal(&keys(&reqs)).await);
}

#[tokio::test]
async fn a_batch_in_a_status_this_code_does_not_know_still_meets_its_deadline() {
    let p = Pipeline::with_faults(
        Faults {
            unknown_status: Some("paused".into()),
            stay_validating_polls: 1_000,
            ..Faults::default()
        },
        |_| {},
    )
    .await;
    let reqs: Vec<_> = (0..4).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    p.submitter().run(SubmitOptions::default()).await.unwrap();
    p.poller().run().await.unwrap();
    let job = &p.all_jobs().await[0];
    assert!(job.status.is_in_flight());
    assert_eq!(job.provider_status.as_ref().map(|s| s.as_str()), Some("paused"));

    // At the deadline it is cancelled like any unfinished batch ...
    p.clock.advance(p.config().policy.batch_deadline);
    p.poller().run().await.unwrap();
    let job = &p.all_jobs().await[0];
    assert!(
        job.errors.iter().any(|e| e.code == "batch_deadline_exceeded"),
        "{:?}",
        job.errors
    );
    // ... and the requests end once the provider behaves again.
    p.fake.set_faults(Faults::default());
    p.settle(&keys(&reqs), 4).await;
    assert!(p.all_terminal(&keys(&reqs)).await);
}

#[tokio::test]
async fn a_batch_past_its_deadline_is_cancelled_and_its_finished_part_kept() {
    let p = Pipeline::start(
        FakeConfig {
            step_ms: 3_600_000,
            ..FakeConfig::default()
        },
        |_| {},
    )
    .await;
    let reqs: Vec<_> = (0..30).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    p.submitter().run(SubmitOptions::default()).await.unwrap();
    p.poller().run().await.unwrap();
    assert!(p.all_jobs().await[0].status.is_in_flight());

    p.clock.advance(p.config().policy.batch_deadline);
    p.poller().run().await.unwrap();
    assert_eq!(p.fake.calls("cancel").len(), 1);
    p.poller().run().await.unwrap();
    p.deliver(&p.ingester()).await.unwrap();

    let job = &p.all_jobs().await[0];
    assert_eq!(job.status, JobStatus::Done, "{job:?}");
    assert!(job.errors.iter().any(|e| e.code == "batch_deadline_exceeded"));
    let states = p.states(&keys(&reqs)).await;
    assert!(states.values().all(|r| r.status != RequestStatus::Claimed));
}

#[tokio::test]
async fn replaying_a_result_file_while_its_job_is_still_ingesting_changes_nothing() {
    // Some lines fail retryably, so the job has an output and an error file:
    // after the output file is ingested the job waits for the other one.
    let faults = Faults {
        fail_percent: 30,
        fail_status: Some(500),
        ..Faults::default()
    };
    let p = Pipeline::with_faults(faults, |_| {}).await;
    let reqs: Vec<_> = (0..40).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    p.submitter().run(SubmitOptions::default()).await.unwrap();
    p.poller().run().await.unwrap();
    let job = p.all_jobs().await.remove(0);
    assert!(job.output_file_id.is_some() && job.error_file_id.is_some());
    let output = batchq_core::keys::job_output(&job.id);
    let first = p
        .ingest_via_handler(&p.ingester(), p.s3_event(&output, 1, "a"))
        .await
        .unwrap();
    assert!(first["ingested"][0]["counted"].as_bool().unwrap());
    let counted = p.job(&job.id).await;
    assert_eq!(counted.status, JobStatus::Ingesting, "the error file is still to come");
    let before = p.snapshot().await;

    let again = p
        .ingest_via_handler(&p.ingester(), p.s3_event(&output, 1, "a"))
        .await
        .unwrap();
    let forced = p
        .ingester_with(Arc::new(NoCrashes))
        .ingest_file(counted.clone(), batchq_core::pipeline::ingest::FileKind::Output)
        .await
        .unwrap();

    assert_eq!(again["ingested"][0]["counted"], false);
    assert!(!forced.counted);
    assert_eq!(p.snapshot().await, before, "a replay wrote something");
    assert_eq!(p.job(&job.id).await.totals, counted.totals);

    // Re-reading a counted file line by line (as a crashed first run would
    // have) applies nothing either.
    let mut uncounted = counted.clone();
    uncounted.ingested_output = false;
    let reread = p
        .ingester()
        .ingest_file(uncounted, batchq_core::pipeline::ingest::FileKind::Output)
        .await
        .unwrap();
    assert_eq!(reread.completed + reread.failed + reread.requeued, 0, "{reread:?}");
    assert!(reread.replayed > 0);
    assert!(!reread.counted, "the job row says the file is counted");
    assert_eq!(p.snapshot().await, before);
}

#[tokio::test]
async fn a_job_the_provider_refuses_to_create_fails_and_releases_its_requests() {
    let faults = Faults {
        http_400: [("create".to_owned(), 1)].into(),
        ..Faults::default()
    };
    let p = Pipeline::with_faults(faults, |_| {}).await;
    let mut reqs: Vec<_> = (0..10).map(|i| chat(i, "gpt-4o-mini")).collect();
    reqs.extend((0..5).map(|i| embedding(i, "text-embedding-3-small")));
    p.enqueue(&reqs).await;

    let report = p.submitter().run(SubmitOptions::default()).await.unwrap();

    assert_eq!(report.abandoned.len(), 1, "{report:?}");
    assert_eq!(report.jobs.len(), 1, "the other group is still submitted");
    let failed_job = p
        .all_jobs()
        .await
        .into_iter()
        .find(|j| j.status == JobStatus::Failed)
        .unwrap();
    assert_eq!(failed_job.errors[0].code, "submit_failed");
    for r in p.states(&keys(&reqs[..10])).await.values() {
        assert_eq!(r.status, RequestStatus::Queued);
        assert_eq!(r.last_error.as_ref().unwrap().code, "submit_failed");
    }
    p.settle(&keys(&reqs), 3).await;
    assert_invariants(&p, &reqs).await;
}

#[tokio::test]
async fn a_job_given_up_right_after_its_claims_releases_them_though_the_job_index_lags() {
    // The provider refuses the upload: the run gives the job up a moment
    // after claiming, before the job index lists the claims.
    let faults = Faults {
        http_400: [("upload".to_owned(), 1)].into(),
        ..Faults::default()
    };
    let p = Pipeline::with_faults(faults, |_| {})
        .await
        .with_index_lag(std::time::Duration::from_secs(1))
        .await;
    let reqs: Vec<_> = (0..20).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // the queue index has them

    let report = p.submitter().run(SubmitOptions::default()).await.unwrap();
    assert_eq!(report.abandoned.len(), 1, "{report:?}");
    for r in p.states(&keys(&reqs)).await.values() {
        assert_eq!(
            r.status,
            RequestStatus::Queued,
            "{} is left claimed by a failed job",
            r.custom_id
        );
        assert_eq!(r.last_error.as_ref().unwrap().code, "submit_failed");
    }
    p.settle(&keys(&reqs), 5).await;
    assert_invariants(&p, &reqs).await;
}

#[tokio::test]
async fn a_provider_key_refused_gives_the_claims_back_at_once_with_their_attempt() {
    let p = Pipeline::start(FakeConfig::default(), |_| {}).await;
    let reqs: Vec<_> = (0..10).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    let mut cfg = p.config().provider.clone();
    cfg.base_url = p.fake.base_url();
    let wrong = batchq_core::provider::openai::OpenAiClient::new(&cfg, "sk-wrong-key").unwrap();
    let submitter =
        batchq_core::pipeline::Submitter::new(p.core(), Arc::new(wrong) as Arc<dyn batchq_core::provider::Provider>);

    let report = submitter.run(SubmitOptions::default()).await.unwrap();
    assert!(
        report.errors.iter().any(|e| e.contains("authentication failed")),
        "{report:?}"
    );
    assert!(report.jobs.is_empty());
    for r in p.states(&keys(&reqs)).await.values() {
        assert_eq!(r.status, RequestStatus::Queued, "not left claimed for a lease");
        assert_eq!(r.attempts, 0, "nothing was sent");
    }
    assert!(p.fake.submissions().is_empty());
    let job = p.all_jobs().await.remove(0);
    assert_eq!(job.status, JobStatus::Failed);

    // With the right key the same requests go out at once.
    p.settle(&keys(&reqs), 3).await;
    assert_invariants(&p, &reqs).await;
}

#[tokio::test]
async fn a_claimed_request_whose_stored_body_is_lost_fails_and_the_rest_are_submitted() {
    let p = Pipeline::start(FakeConfig::default(), |_| {}).await;
    let mut reqs: Vec<_> = (0..5).map(|i| chat(i, "gpt-4o-mini")).collect();
    let big = batchq_tests::pipeline::new_request(
        "big-1",
        batchq_core::request::Endpoint::ChatCompletions,
        "gpt-4o-mini",
        serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x".repeat(40_000)}]}),
    );
    reqs.push(big.clone());
    p.enqueue(&reqs).await;
    let body_key = batchq_core::keys::body(&big.key, &big.content_hash);
    assert!(
        p.objects().head(&body_key).await.unwrap().is_some(),
        "a 40 KB body lives in S3"
    );
    p.objects().delete(&body_key).await.unwrap();

    p.settle(&keys(&reqs), 3).await;

    let states = p.states(&keys(&reqs)).await;
    let lost = &states[&big.key];
    assert_eq!(lost.status, RequestStatus::Failed);
    assert_eq!(lost.last_error.as_ref().unwrap().code, "body_missing");
    assert_eq!(
        states.values().filter(|r| r.status == RequestStatus::Completed).count(),
        5
    );
    assert_eq!(p.fake.submissions()[0].custom_ids.len(), 5);
}

#[tokio::test]
async fn a_result_line_for_a_request_of_another_job_is_reported_not_applied() {
    let p = Pipeline::start(FakeConfig::default(), |c| c.limits.max_lines_per_batch = 10).await;
    let reqs: Vec<_> = (0..20).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    p.submitter().run(SubmitOptions::default()).await.unwrap();
    p.poller().run().await.unwrap();
    let jobs = p.all_jobs().await;
    assert_eq!(jobs.len(), 2);
    // Put job A's output file under job B's key before B's own copy lands.
    let (a, b) = (&jobs[0], &jobs[1]);
    let a_out = p
        .objects()
        .get(&batchq_core::keys::job_output(&a.id))
        .await
        .unwrap()
        .unwrap();
    let b_state = p.job(&b.id).await;
    assert_eq!(b_state.status, JobStatus::Ingesting);
    p.objects()
        .put(&batchq_core::keys::job_output(&b.id), a_out, "application/jsonl")
        .await
        .unwrap();
    let report = p
        .ingester()
        .ingest_file(b_state, batchq_core::pipeline::ingest::FileKind::Output)
        .await
        .unwrap();
    assert_eq!(report.not_in_job, 10);
    assert_eq!(report.completed, 0);
    let b_after = p.job(&b.id).await;
    assert_eq!(b_after.totals.usage.input_tokens, 0, "nothing of A's was counted for B");
}

#[tokio::test]
async fn a_second_provider_batch_carrying_a_jobs_id_is_cancelled_reported_and_recorded_once() {
    let p = Pipeline::start(FakeConfig::default(), |_| {}).await;
    let reqs: Vec<_> = (0..6).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    p.submitter().run(SubmitOptions::default()).await.unwrap();
    let job = p.all_jobs().await.remove(0);
    // What a create whose answer was lost, retried while the listing lagged,
    // leaves behind: a second batch of the same input with the job's id.
    let duplicate = p
        .provider
        .create_batch(
            &batchq_core::provider::CreateBatch {
                job_id: job.id.clone(),
                input_file_id: job.provider_file_id.clone().unwrap(),
                input_key: job.input_key.clone(),
                lines: job.input_lines,
                taken: Vec::new(),
                endpoint: job.endpoint,
                not_before: 0,
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(p.fake.submissions().len(), 2);

    let report = p.poller().run().await.unwrap();
    assert_eq!(
        report.duplicates_cancelled,
        vec![(job.id.to_string(), duplicate.id.clone())],
        "{report:?}"
    );
    let seen = p.provider.retrieve_batch(&duplicate.batch_id()).await.unwrap();
    assert!(
        matches!(
            seen.status,
            batchq_core::job::ProviderBatchStatus::Cancelling | batchq_core::job::ProviderBatchStatus::Cancelled
        ),
        "{:?}",
        seen.status
    );
    let recorded = p.job(&job.id).await;
    assert_eq!(recorded.duplicate_batches, vec![duplicate.batch_id()]);
    assert!(recorded.errors.iter().any(|e| e.code == "duplicate_batch"));

    // Reported once; the job's own batch runs to the end.
    let again = p.poller().run().await.unwrap();
    assert!(again.duplicates_cancelled.is_empty(), "{again:?}");
    p.settle(&keys(&reqs), 3).await;
    let states = p.states(&keys(&reqs)).await;
    assert!(states
        .values()
        .all(|r| r.status == RequestStatus::Completed && r.attempts == 1));
}

/// `n` requests in one batch that reaches finalizing and stays there
/// (with `faults` besides).
async fn batch_stuck_finalizing(
    faults: Faults,
    n: usize,
) -> (Pipeline, Vec<batchq_core::request::NewRequest>, batchq_core::job::Job) {
    let p = Pipeline::with_faults(
        Faults {
            stay_finalizing_polls: 10_000,
            ..faults
        },
        |_| {},
    )
    .await;
    let reqs: Vec<_> = (0..n).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    p.submitter().run(SubmitOptions::default()).await.unwrap();
    p.poller().run().await.unwrap();
    let job = p.all_jobs().await.remove(0);
    assert_eq!(job.status, JobStatus::Finalizing);
    (p, reqs, job)
}

/// A batch that sticks (in finalizing, then in cancelling) past its deadline
/// and its grace: returns the pipeline, the requests and the given-up job.
async fn stuck_batch_given_up() -> (Pipeline, Vec<batchq_core::request::NewRequest>, batchq_core::job::Job) {
    let (p, reqs, job) = batch_stuck_finalizing(
        Faults {
            stay_cancelling_polls: 10_000,
            ..Faults::default()
        },
        10,
    )
    .await;
    p.clock.advance(p.config().policy.batch_deadline);
    p.poller().run().await.unwrap();
    assert_eq!(
        p.job(&job.id).await.status,
        JobStatus::Cancelling,
        "cancelled at the deadline"
    );
    p.clock.advance(batchq_core::pipeline::poll::CANCEL_GRACE);
    p.poller().run().await.unwrap();
    let given_up = p.job(&job.id).await;
    assert_eq!(given_up.status, JobStatus::Failed, "given up after the grace");
    assert!(given_up.watch_until.is_some(), "its batch is still watched");
    for r in p.states(&keys(&reqs)).await.values() {
        assert_eq!(r.status, RequestStatus::Queued, "{}", r.custom_id);
        assert_eq!(r.last_error.as_ref().unwrap().code, "batch_deadline_exceeded");
    }
    (p, reqs, given_up)
}

#[tokio::test]
async fn a_batch_stuck_finalizing_is_given_up_and_its_late_answers_finish_the_requests_still_waiting() {
    let (p, reqs, job) = stuck_batch_given_up().await;
    // The batch ends after all, with part of its answers.
    assert!(p.fake.complete(job.provider_batch_id.as_ref().unwrap().as_str()));
    let report = p.poller().run().await.unwrap();
    assert_eq!(report.late.len(), 1, "{report:?}");
    let late = &report.late[0];
    assert!(late.used > 0 && late.used < 10, "{late:?}");
    assert_eq!(late.double_spent, 0, "nothing had been sent again");

    let states = p.states(&keys(&reqs)).await;
    let done: Vec<_> = states
        .values()
        .filter(|r| r.status == RequestStatus::Completed)
        .collect();
    assert_eq!(done.len() as u64, late.used);
    assert!(
        done.iter().all(|r| r.attempts == 1),
        "answered without being sent again"
    );
    let job = p.job(&job.id).await;
    assert_eq!((job.watch_until, job.late_used), (None, late.used));

    // The rest go out again and complete; every answer counted once.
    p.fake.set_faults(Faults::default());
    p.settle(&keys(&reqs), 3).await;
    assert_invariants(&p, &reqs).await;
    assert!(p.poller().run().await.unwrap().late.is_empty(), "watched once");
}

#[tokio::test]
async fn late_answers_for_requests_already_answered_again_are_counted_as_paid_twice() {
    let (p, reqs, job) = stuck_batch_given_up().await;
    let mut faults = p.fake.faults();
    faults.stay_finalizing_polls = 0;
    faults.stay_cancelling_polls = 0;
    p.fake.set_faults(faults);
    p.settle(&keys(&reqs), 3).await;
    assert!(p.all_terminal(&keys(&reqs)).await);

    assert!(p.fake.complete(job.provider_batch_id.as_ref().unwrap().as_str()));
    let report = p.poller().run().await.unwrap();
    let late = &report.late[0];
    assert_eq!(late.used, 0, "{late:?}");
    assert!(late.double_spent > 0, "{late:?}");
    assert!(late.double_spent_cost > batchq_core::money::Money::default());
    let recorded = p.job(&job.id).await;
    assert_eq!(
        (recorded.double_spent, recorded.double_spent_cost, recorded.watch_until),
        (late.double_spent, late.double_spent_cost, None)
    );
    assert_invariants(&p, &reqs).await;
}

#[tokio::test]
async fn embeddings_batches_hold_at_most_the_providers_inputs_per_batch() {
    // The provider takes at most 100 inputs per embeddings batch here (50,000
    // at OpenAI); 30 requests of 10 inputs each need three batches.
    let p = Pipeline::start(
        FakeConfig {
            max_embedding_inputs: 100,
            ..FakeConfig::default()
        },
        |c| c.limits.max_embedding_inputs_per_batch = 100,
    )
    .await;
    let reqs: Vec<_> = (0..30)
        .map(|i| {
            let inputs: Vec<String> = (0..10).map(|k| format!("Article {i}, part {k}.")).collect();
            batchq_tests::pipeline::new_request(
                &format!("emb-{i}"),
                batchq_core::request::Endpoint::Embeddings,
                "text-embedding-3-small",
                serde_json::json!({"model": "text-embedding-3-small", "input": inputs}),
            )
        })
        .collect();
    p.enqueue(&reqs).await;
    p.settle(&keys(&reqs), 4).await;
    let subs = p.fake.submissions();
    assert_eq!(
        subs.len(),
        3,
        "{:?}",
        subs.iter().map(|s| s.custom_ids.len()).collect::<Vec<_>>()
    );
    assert!(subs.iter().all(|s| s.custom_ids.len() == 10));
    assert_invariants(&p, &reqs).await;
    assert!(p
        .states(&keys(&reqs))
        .await
        .values()
        .all(|r| r.status == RequestStatus::Completed && r.attempts == 1));
}

#[tokio::test]
async fn a_batch_stuck_finalizing_whose_cancel_is_refused_is_still_given_up_after_the_grace() {
    let (p, reqs, job) = batch_stuck_finalizing(
        Faults {
            // The provider will not cancel a finalizing batch.
            http_400: [("cancel".to_owned(), 100)].into(),
            ..Faults::default()
        },
        5,
    )
    .await;
    p.clock.advance(p.config().policy.batch_deadline);
    let report = p.poller().run().await.unwrap();
    assert!(
        report.errors.is_empty(),
        "a refused cancel is recorded, not an error: {report:?}"
    );
    let refused = p.job(&job.id).await;
    assert_eq!(refused.status, JobStatus::Finalizing);
    assert!(refused
        .errors
        .iter()
        .any(|e| e.code == "batch_deadline_exceeded" && e.message.contains("refused to cancel")));
    assert_eq!(p.fake.calls("cancel").len(), 1, "cancelled once, not every run");

    p.clock.advance(batchq_core::pipeline::poll::CANCEL_GRACE);
    p.poller().run().await.unwrap();
    assert_eq!(p.fake.calls("cancel").len(), 1);
    let given_up = p.job(&job.id).await;
    assert_eq!(
        given_up.status,
        JobStatus::Failed,
        "given up though it sat in finalizing"
    );
    for r in p.states(&keys(&reqs)).await.values() {
        assert_eq!(r.status, RequestStatus::Queued, "{}", r.custom_id);
    }
}

/// What a provider's webhook event triggers: the one job whose batch
/// ended is polled at once, and its results arrive without a scheduled
/// poll run; repeating it (a redelivered event) changes nothing more, and
/// a batch no open job has is ignored.
#[tokio::test]
async fn polling_one_batch_at_once_brings_its_results_without_a_scheduled_run() {
    use batchq_core::ids::ProviderBatchId;
    let p = Pipeline::start(FakeConfig::default(), |c| c.limits.max_lines_per_batch = 15).await;
    let reqs: Vec<_> = (0..30).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    p.submitter().run(SubmitOptions::default()).await.unwrap();
    let jobs = p.all_jobs().await;
    assert_eq!(jobs.len(), 2);
    let (job, other) = (&jobs[0], &jobs[1]);
    let batch = job.provider_batch_id.clone().expect("submitted");

    let before = p.snapshot().await;
    let stray = p
        .poller()
        .poll_batch(&job.provider_name, &ProviderBatchId::new("batch_not_ours"))
        .await
        .unwrap();
    assert!(stray.is_none());
    assert_eq!(p.snapshot().await, before, "a batch no job has changes nothing");

    let report = p
        .poller()
        .poll_batch(&job.provider_name, &batch)
        .await
        .unwrap()
        .expect("its job is open");
    assert_eq!(report.checked, 1, "only that job is polled");
    p.deliver(&p.ingester()).await.unwrap();
    let states = p.states(&keys(&reqs)).await;
    let done = |j: &batchq_core::job::Job| {
        states
            .values()
            .filter(|r| r.job_id.as_ref() == Some(&j.id) && r.status == RequestStatus::Completed)
            .count()
    };
    assert_eq!(done(job), 15, "the polled job's results arrived");
    assert_eq!(done(other), 0, "the other job waits for the schedule");
    assert_eq!(p.job(&other.id).await.status, other.status);

    // Redelivered events: the job closes once, then is no longer open.
    for _ in 0..3 {
        let _ = p.poller().poll_batch(&job.provider_name, &batch).await.unwrap();
        p.deliver(&p.ingester()).await.unwrap();
    }
    assert!(p.job(&job.id).await.status.is_terminal());
    assert!(p
        .poller()
        .poll_batch(&job.provider_name, &batch)
        .await
        .unwrap()
        .is_none());
    p.settle(&keys(&reqs), 4).await;
    assert_invariants(&p, &reqs).await;
}
