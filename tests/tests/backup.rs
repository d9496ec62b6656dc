//! `export` / `import` (`batchq_core::backup`): a store holding every kind
//! of request, job, budget and savings total is exported and imported into
//! a fresh store of the same kind, which then reads back the same and runs
//! on without sending anything to the provider twice.

use std::collections::BTreeMap;
use std::path::PathBuf;

use batchq_core::backup::{self, BackupError, MANIFEST_FILE};
use batchq_core::budget::TokenBudget;
use batchq_core::config::Config;
use batchq_core::ids::{JobId, ModelName, RequestKey, TenantId};
use batchq_core::job::JobStatus;
use batchq_core::pipeline::{Poller, SubmitOptions, Submitter};
use batchq_core::request::{NewRequest, Payload, RequestError, RequestStatus};
use batchq_core::time::Clock;
use batchq_core::transition::RequestUpdate;
use batchq_tests::pipeline::{chat, embedding, keys, new_request, Pipeline};
use fake_openai::{FakeConfig, Faults};

const MODEL: &str = "gpt-4o-mini";

/// Small inline limits, so some bodies and responses are objects.
fn tweak(c: &mut Config) {
    c.policy.max_attempts = 2;
    c.limits.inline_body_max_bytes = 400;
    c.limits.inline_result_max_bytes = 300;
}

fn export_dir() -> PathBuf {
    std::env::temp_dir().join(format!("batchq-export-{}", uuid::Uuid::new_v4().simple()))
}

/// A chat request whose body is larger than the inline limit.
fn big_chat(i: usize) -> NewRequest {
    let body = serde_json::json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": format!("Summarise #{i}: {}", "lorem ipsum ".repeat(60))}],
        "max_tokens": 5
    });
    new_request(
        &format!("big-{i}"),
        batchq_core::request::Endpoint::ChatCompletions,
        MODEL,
        body,
    )
}

/// The source store: completed requests (inline and object responses, a
/// large body), one failed after a retry, one claimed in a submitted job
/// with its input file, queued ones (one with an attempt behind it), a
/// cancelled one, a budget and the savings ingest counted.
struct Source {
    p: Pipeline,
    finished: Vec<NewRequest>,
    in_flight: Vec<NewRequest>,
    queued: Vec<NewRequest>,
    cancelled: NewRequest,
    job: JobId,
}

async fn source() -> Source {
    let p = Pipeline::start(FakeConfig::default(), tweak).await;
    let flaky = chat(900, MODEL);
    p.fake.set_faults(Faults {
        fail_prefix: Some(flaky.key.as_str().to_owned()),
        fail_status: Some(500),
        ..Faults::default()
    });
    let mut finished: Vec<NewRequest> = (0..3).map(|i| chat(i, MODEL)).collect();
    finished.extend((0..2).map(|i| embedding(i, "text-embedding-3-small")));
    finished.push(big_chat(0));
    finished.push(flaky.clone());
    p.enqueue(&finished).await;
    p.settle(&keys(&finished), 4).await;
    assert!(p.all_terminal(&keys(&finished)).await);
    p.fake.set_faults(Faults::default());

    let in_flight: Vec<NewRequest> = (100..103).map(|i| chat(i, MODEL)).collect();
    p.enqueue(&in_flight).await;
    let submitted = p.submitter().run(SubmitOptions::default()).await.unwrap();
    assert_eq!(submitted.jobs.len(), 1);
    let job = p
        .all_jobs()
        .await
        .into_iter()
        .find(|j| !j.status.is_terminal())
        .unwrap()
        .id;

    let queued: Vec<NewRequest> = (200..203).map(|i| chat(i, MODEL)).collect();
    let cancelled = chat(300, MODEL);
    p.enqueue(&queued).await;
    p.enqueue(std::slice::from_ref(&cancelled)).await;
    let now = p.clock.now();
    // One queued request has an attempt behind it (a retryable outcome).
    let r = p.store.get(&queued[0].key).await.unwrap().unwrap();
    let other = JobId::generate();
    p.store.apply(RequestUpdate::claim(&r, &other, now)).await.unwrap();
    let r = p.store.get(&queued[0].key).await.unwrap().unwrap();
    let error = RequestError {
        code: "server_error".into(),
        message: "try again".into(),
        status_code: Some(500),
    };
    p.store
        .apply(RequestUpdate::requeue(&r, &other, Some(error), now))
        .await
        .unwrap();
    let c = p.store.get(&cancelled.key).await.unwrap().unwrap();
    p.store.apply(RequestUpdate::cancel(&c, now)).await.unwrap();
    let budget = TokenBudget::initial(ModelName::parse(MODEL).unwrap(), Some(90_000), now);
    p.store.save_token_budget(&budget).await.unwrap();
    Source {
        p,
        finished,
        in_flight,
        queued,
        cancelled,
        job,
    }
}

fn all_keys(s: &Source) -> Vec<RequestKey> {
    keys(&[s.finished.clone(), s.in_flight.clone(), s.queued.clone()].concat())
}

#[tokio::test]
async fn an_imported_store_reads_back_as_exported_and_runs_on_sending_nothing_twice() {
    let s = source().await;
    let dir = export_dir();
    let exported = backup::export(&s.p.ports(), &dir).await.unwrap();
    assert!(exported.skipped.is_empty(), "{:?}", exported.skipped);
    let c = &exported.manifest.counts;
    assert_eq!(c.requests, 13, "every request but the cancelled one: {c:?}");
    assert_eq!(
        c.requests_by_status,
        BTreeMap::from([
            ("claimed".into(), 3),
            ("completed".into(), 6),
            ("failed".into(), 1),
            ("queued".into(), 3)
        ])
    );
    assert_eq!(exported.bodies_gone, 1, "the finished large body's object was deleted");
    let input = format!("inputs/{}.jsonl", s.job);
    assert!(exported.manifest.objects.iter().any(|o| o.key == input));

    let t = Pipeline::start(FakeConfig::default(), tweak).await;
    let report = backup::import(&t.ports(), &dir).await.unwrap();
    assert!(report.off_path.is_empty(), "{:?}", report.off_path);
    assert_eq!(report.requests_created, 13);
    assert_eq!(report.requests_by_status, c.requests_by_status);
    assert_eq!(report.objects_copied, c.objects);

    // Every request reads back as it was: state, body, result.
    let all = all_keys(&s);
    let big = s.finished.iter().find(|r| r.custom_id.as_str() == "big-0").unwrap();
    let (mut inline, mut objects) = (0, 0);
    for key in &all {
        let (want, want_result) = s.p.result(key).await;
        let (got, got_result) = t.result(key).await;
        if *key == big.key {
            assert_eq!(got.body_bytes, 0, "a finished request whose body was gone has none");
            assert_eq!(got.content_hash, want.content_hash);
            assert_eq!(
                batchq_core::request::Request {
                    body_bytes: want.body_bytes,
                    ..got
                },
                want
            );
        } else {
            assert_eq!(got, want, "{}", want.custom_id);
        }
        assert_eq!(got_result.is_some(), want_result.is_some(), "{}", want.custom_id);
        if let (Some(g), Some(w)) = (got_result, want_result) {
            match &w.response {
                Some(Payload::Inline(_)) => inline += 1,
                Some(Payload::S3 { .. } | Payload::Chunk { .. }) => objects += 1,
                None => {}
            }
            let (gr, wr) = (g.response.clone(), w.response.clone());
            assert_eq!(
                batchq_core::request::RequestResult { response: None, ..g },
                batchq_core::request::RequestResult { response: None, ..w }
            );
            if let (Some(gr), Some(wr)) = (gr, wr) {
                assert_eq!(t.response_json(&gr).await, s.p.response_json(&wr).await);
            }
        }
    }
    assert!(
        inline > 0 && objects > 0,
        "responses inline ({inline}) and as objects ({objects})"
    );
    let unfinished = keys(&[s.in_flight.clone(), s.queued.clone()].concat());
    assert_eq!(
        t.store.bodies(&unfinished).await.unwrap(),
        s.p.store.bodies(&unfinished).await.unwrap()
    );
    assert_eq!(
        t.store.get(&s.cancelled.key).await.unwrap(),
        None,
        "a cancelled request is history only"
    );

    // Counters, queues, jobs, budgets, savings.
    let tenant = TenantId::default_tenant();
    let mut want = s.p.store.counts(&tenant).await.unwrap();
    *want.by_status.get_mut(&RequestStatus::Cancelled).unwrap() -= 1;
    want.by_status.retain(|_, n| *n != 0);
    let mut got = t.store.counts(&tenant).await.unwrap();
    got.by_status.retain(|_, n| *n != 0);
    assert_eq!(got, want);
    assert_eq!(
        t.store.queue_groups().await.unwrap(),
        s.p.store.queue_groups().await.unwrap()
    );
    let jobs = s.p.all_jobs().await;
    assert_eq!(t.all_jobs().await.len(), jobs.len());
    for job in &jobs {
        assert_eq!(&t.job(&job.id).await, job);
        assert!(t.store.job_has_tenant(job, &tenant).await.unwrap());
    }
    assert_eq!(
        t.store.token_budgets().await.unwrap(),
        s.p.store.token_budgets().await.unwrap()
    );
    let savings = s.p.default_tenant_savings().await;
    assert!(!savings.is_empty());
    assert_eq!(t.default_tenant_savings().await, savings);
    assert_eq!(
        t.objects().get(&input).await.unwrap(),
        s.p.objects().get(&input).await.unwrap()
    );

    // A second import changes nothing.
    let before = (t.snapshot().await, t.stores.object_keys().await);
    let again = backup::import(&t.ports(), &dir).await.unwrap();
    assert_eq!(
        (again.requests_created, again.requests_present, again.steps),
        (0, 13, 0)
    );
    assert_eq!((again.jobs_created, again.objects_copied), (0, 0));
    assert_eq!((t.snapshot().await, t.stores.object_keys().await), before);

    // The target runs on, with the source's provider: the job in flight is
    // polled and ingested, the queued requests go out once, nothing twice.
    let submitter = Submitter::new(t.core(), s.p.providers.clone());
    let poller = Poller::new(t.core(), s.p.providers.clone(), t.ingester());
    for _ in 0..6 {
        if t.all_terminal(&all).await {
            break;
        }
        submitter.run(SubmitOptions::default()).await.unwrap();
        poller.run().await.unwrap();
        t.deliver(&t.ingester()).await.unwrap();
    }
    assert!(t.all_terminal(&all).await);
    assert_eq!(t.job(&s.job).await.status, JobStatus::Done);
    let sent = s.p.fake.submitted_counts();
    for r in s.in_flight.iter().chain(&s.queued) {
        assert_eq!(sent.get(r.key.as_str()), Some(&1), "{} sent once", r.custom_id);
        let (state, result) = t.result(&r.key).await;
        assert_eq!(state.status, RequestStatus::Completed, "{}", r.custom_id);
        assert!(result.is_some());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_export_of_another_format_version_is_refused_with_nothing_written() {
    let s = source().await;
    let dir = export_dir();
    backup::export(&s.p.ports(), &dir).await.unwrap();
    let path = dir.join(MANIFEST_FILE);
    let mut manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest["version"] = 2.into();
    std::fs::write(&path, manifest.to_string()).unwrap();

    let t = Pipeline::start(FakeConfig::default(), tweak).await;
    let before = (t.snapshot().await, t.stores.object_keys().await);
    let e = backup::import(&t.ports(), &dir).await.unwrap_err();
    assert!(matches!(e, BackupError::UnsupportedVersion { found: 2, .. }), "{e}");
    assert!(e.to_string().contains("version 2"), "{e}");
    assert_eq!((t.snapshot().await, t.stores.object_keys().await), before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_import_over_a_request_of_other_content_is_refused_with_nothing_written() {
    let s = source().await;
    let dir = export_dir();
    backup::export(&s.p.ports(), &dir).await.unwrap();

    let t = Pipeline::start(FakeConfig::default(), tweak).await;
    // Same tenant and custom id as a queued request, another body.
    let clash = new_request(
        s.queued[1].custom_id.as_str(),
        batchq_core::request::Endpoint::ChatCompletions,
        MODEL,
        serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": "other"}]}),
    );
    t.enqueue(std::slice::from_ref(&clash)).await;
    let before = (t.snapshot().await, t.stores.object_keys().await);
    let e = backup::import(&t.ports(), &dir).await.unwrap_err();
    assert!(matches!(e, BackupError::Conflicts { count: 1, .. }), "{e}");
    assert!(e.to_string().contains(s.queued[1].custom_id.as_str()), "{e}");
    assert_eq!((t.snapshot().await, t.stores.object_keys().await), before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_export_cut_short_is_refused_before_anything_is_written() {
    let s = source().await;
    let dir = export_dir();
    backup::export(&s.p.ports(), &dir).await.unwrap();
    let rows = dir.join(backup::ROWS_FILE);
    let text = std::fs::read_to_string(&rows).unwrap();
    let kept: Vec<&str> = text.lines().skip(1).collect();
    std::fs::write(&rows, kept.join("\n") + "\n").unwrap();

    let t = Pipeline::start(FakeConfig::default(), tweak).await;
    let before = (t.snapshot().await, t.stores.object_keys().await);
    let e = backup::import(&t.ports(), &dir).await.unwrap_err();
    assert!(matches!(e, BackupError::Incomplete(_)), "{e}");
    assert_eq!((t.snapshot().await, t.stores.object_keys().await), before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn export_refuses_a_directory_that_holds_files() {
    let s = source().await;
    let dir = export_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "keep me").unwrap();
    let e = backup::export(&s.p.ports(), &dir).await.unwrap_err();
    assert!(matches!(e, BackupError::NotEmpty { .. }), "{e}");
    assert_eq!(std::fs::read_to_string(dir.join("notes.txt")).unwrap(), "keep me");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_import_continues_a_request_part_way_on_its_path_and_leaves_one_the_target_moved_on() {
    let s = source().await;
    let dir = export_dir();
    let exported = backup::export(&s.p.ports(), &dir).await.unwrap();
    let cycle = JobId::parse(format!("job_{}", exported.manifest.export_id)).unwrap();

    let t = Pipeline::start(FakeConfig::default(), tweak).await;
    // As an import stopped after the first claim of the request that failed
    // after two attempts: it stands claimed for the import's cycle job.
    let flaky = s.finished.last().unwrap();
    let want = s.p.store.get(&flaky.key).await.unwrap().unwrap();
    assert_eq!((want.status, want.attempts), (RequestStatus::Failed, 2));
    t.store.insert(vec![flaky.clone()], want.created_at).await.unwrap();
    let r = t.store.get(&flaky.key).await.unwrap().unwrap();
    t.store
        .apply(RequestUpdate::claim(&r, &cycle, t.clock.now()))
        .await
        .unwrap();
    // The target moved this one on by itself: claimed for a job of its own.
    let moved = &s.queued[2];
    t.enqueue(std::slice::from_ref(moved)).await;
    let r = t.store.get(&moved.key).await.unwrap().unwrap();
    let own = JobId::generate();
    t.store
        .apply(RequestUpdate::claim(&r, &own, t.clock.now()))
        .await
        .unwrap();

    let report = backup::import(&t.ports(), &dir).await.unwrap();
    assert_eq!(report.requests_continued, 1);
    assert_eq!(t.store.get(&flaky.key).await.unwrap().unwrap(), want);
    assert_eq!(report.off_path.len(), 1, "{:?}", report.off_path);
    assert!(
        report.off_path[0].contains(moved.custom_id.as_str()),
        "{:?}",
        report.off_path
    );
    let held = t.store.get(&moved.key).await.unwrap().unwrap();
    assert_eq!((held.status, held.job_id), (RequestStatus::Claimed, Some(own)));
    assert_eq!(report.requests_created, 11);
    let _ = std::fs::remove_dir_all(&dir);
}
