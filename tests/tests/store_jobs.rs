//! DynamoDB job store against the emulator, through the real SDK.

use std::time::Duration;

use batchq_core::ids::{JobId, ModelName, ProviderBatchId, ProviderFileId};
use batchq_core::job::{Job, JobStatus, ProviderBatchStatus, ProviderKind};
use batchq_core::request::{Endpoint, QueueGroup};
use batchq_core::store::{JobStore, StoreError};
use batchq_core::time::Timestamp;
use batchq_tests::TestEnv;

fn group() -> QueueGroup {
    QueueGroup::of(Endpoint::ChatCompletions, ModelName::parse("gpt-4o-mini").unwrap())
}

fn new_job(at_ms: i64) -> Job {
    let now = Timestamp::from_millis(at_ms);
    Job::new(
        JobId::generate(),
        ProviderKind::OpenAi,
        &group(),
        now,
        now.plus(Duration::from_secs(960)),
    )
}

#[tokio::test]
async fn job_round_trips_and_cannot_be_created_twice() {
    let env = TestEnv::new().await;
    let job = new_job(1_000);
    env.store.create_job(&job).await.unwrap();
    assert_eq!(env.store.get_job(&job.id).await.unwrap(), Some(job.clone()));
    let err = env.store.create_job(&job).await.unwrap_err();
    assert!(err.is_condition_failed(), "{err:?}");
    assert_eq!(env.store.get_job(&JobId::generate()).await.unwrap(), None);
}

#[tokio::test]
async fn job_save_is_refused_when_stored_status_or_version_differs() {
    let env = TestEnv::new().await;
    let job = new_job(1_000);
    env.store.create_job(&job).await.unwrap();

    let mut staged = job.clone();
    staged.status = JobStatus::Staged;
    staged.input_lines = 10;
    staged.input_bytes = 1234;
    let staged = env.store.save_job(&job, staged).await.unwrap();
    assert_eq!(staged.version, 1);

    // A second runner still holding the `preparing` copy cannot overwrite it.
    let mut stale = job.clone();
    stale.status = JobStatus::Failed;
    let err = env.store.save_job(&job, stale).await.unwrap_err();
    match &err {
        StoreError::ConditionFailed { expected, actual, .. } => {
            assert_eq!(expected, "preparing v0");
            assert_eq!(actual.as_deref(), Some("staged v1"));
        }
        other => panic!("expected ConditionFailed, got {other:?}"),
    }
    assert_eq!(env.store.get_job(&job.id).await.unwrap(), Some(staged.clone()));

    // Same status, newer data (a progress update) is fine with the right version.
    let mut uploaded = staged.clone();
    uploaded.status = JobStatus::Uploaded;
    uploaded.provider_file_id = Some(ProviderFileId::new("file-abc"));
    let uploaded = env.store.save_job(&staged, uploaded).await.unwrap();
    let mut progress = uploaded.clone();
    progress.status = JobStatus::Validating;
    progress.provider_batch_id = Some(ProviderBatchId::new("batch_1"));
    progress.provider_status = Some(ProviderBatchStatus::Unknown("queued_by_vendor".into()));
    let progress = env.store.save_job(&uploaded, progress).await.unwrap();
    assert_eq!(env.store.get_job(&job.id).await.unwrap(), Some(progress));
}

#[tokio::test]
async fn illegal_job_transition_writes_nothing() {
    let env = TestEnv::new().await;
    let job = new_job(1_000);
    env.store.create_job(&job).await.unwrap();
    let mut done = job.clone();
    done.status = JobStatus::Ingesting; // preparing -> ingesting is not allowed
    let err = env.store.save_job(&job, done).await.unwrap_err();
    assert!(matches!(err, StoreError::IllegalTransition(_)), "{err:?}");
    assert_eq!(env.store.get_job(&job.id).await.unwrap(), Some(job));
}

#[tokio::test]
async fn open_jobs_lists_unfinished_jobs_oldest_first_and_list_jobs_newest_first() {
    let env = TestEnv::new().await;
    let a = new_job(1_000);
    let b = new_job(2_000);
    let c = new_job(3_000);
    for j in [&b, &a, &c] {
        env.store.create_job(j).await.unwrap();
    }
    // Close b: preparing -> done (nothing claimed).
    let mut closed = b.clone();
    closed.status = JobStatus::Done;
    env.store.save_job(&b, closed).await.unwrap();

    let open: Vec<JobId> = env.store.open_jobs().await.unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(open, vec![a.id.clone(), c.id.clone()]);

    let first = env.store.list_jobs(None, None, 2).await.unwrap();
    let ids: Vec<JobId> = first.items.iter().map(|j| j.id.clone()).collect();
    assert_eq!(ids, vec![c.id.clone(), b.id.clone()]);
    let rest = env.store.list_jobs(None, first.next, 2).await.unwrap();
    assert_eq!(
        rest.items.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
        vec![a.id.clone()]
    );
}
