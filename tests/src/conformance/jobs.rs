//! The job rows: create, read, conditional save, the open and listed jobs,
//! job tenants and token budgets.

use batchq_core::budget::TokenBudget;
use batchq_core::ids::{JobId, ModelName};
use batchq_core::job::{Job, JobStatus};
use batchq_core::store::StoreError;

use super::*;

fn model(m: &str) -> ModelName {
    ModelName::parse(m).unwrap()
}

pub async fn a_created_job_reads_back_whole_and_cannot_be_created_twice(s: StoreUnderTest) {
    let mut job = new_job(ts(0));
    job.input_lines = 12;
    job.tokens = 3_400;
    job.tenants = vec![tenant("acme"), tenant("beta")];
    job.tenant_count = 2;
    s.jobs.create_job(&job).await.unwrap();
    assert_eq!(
        s.jobs.get_job(&job.id).await.unwrap().map(norm),
        Some(norm(job.clone()))
    );
    let again = s.jobs.create_job(&job).await;
    assert!(matches!(again, Err(StoreError::ConditionFailed { .. })), "{again:?}");
    assert_eq!(s.jobs.get_job(&JobId::generate()).await.unwrap(), None);
}

pub async fn save_job_bumps_the_version_and_is_conditioned_on_status_and_version(s: StoreUnderTest) {
    let job = new_job(ts(0));
    s.jobs.create_job(&job).await.unwrap();
    let mut next = job.clone();
    next.status = JobStatus::Staged;
    next.input_lines = 5;
    let saved = s.jobs.save_job(&job, next).await.unwrap();
    assert_eq!(
        (saved.version, saved.status, saved.input_lines),
        (1, JobStatus::Staged, 5)
    );
    assert_eq!(
        s.jobs.get_job(&job.id).await.unwrap().map(norm),
        Some(norm(saved.clone()))
    );

    // A stale copy (version 0) loses, whatever it would write, and names what it found.
    let mut stale = job.clone();
    stale.input_lines = 99;
    match s.jobs.save_job(&job, stale).await {
        Err(StoreError::ConditionFailed { actual, .. }) => assert_eq!(actual.as_deref(), Some("staged v1")),
        other => panic!("expected ConditionFailed, got {other:?}"),
    }
    // The same version with another status on record loses too.
    let mut wrong_status = saved.clone();
    wrong_status.status = JobStatus::Preparing;
    let mut to = wrong_status.clone();
    to.status = JobStatus::Failed;
    let res = s.jobs.save_job(&wrong_status, to).await;
    assert!(matches!(res, Err(StoreError::ConditionFailed { .. })), "{res:?}");
    // Without a status change, the version alone is the condition.
    let mut same = saved.clone();
    same.tokens = 7;
    let saved2 = s.jobs.save_job(&saved, same).await.unwrap();
    assert_eq!((saved2.version, saved2.tokens), (2, 7));
    // A copy with the stored status but an older version loses.
    let mut late = saved.clone();
    late.tokens = 8;
    match s.jobs.save_job(&saved, late).await {
        Err(StoreError::ConditionFailed { actual, .. }) => assert_eq!(actual.as_deref(), Some("staged v2")),
        other => panic!("expected ConditionFailed, got {other:?}"),
    }
    // A move the job's status machine forbids is refused before any write.
    let mut back = saved2.clone();
    back.status = JobStatus::Preparing;
    let res = s.jobs.save_job(&saved2, back).await;
    assert!(matches!(res, Err(StoreError::IllegalTransition(_))), "{res:?}");
    // Two different jobs are no save at all.
    let res = s.jobs.save_job(&saved2, new_job(ts(1))).await;
    assert!(res.is_err(), "{res:?}");
    assert_eq!(s.jobs.get_job(&job.id).await.unwrap().map(norm), Some(norm(saved2)));
    // A job that was never created cannot be saved.
    let ghost = new_job(ts(2));
    match s.jobs.save_job(&ghost, ghost.clone()).await {
        Err(StoreError::ConditionFailed { actual, .. }) => assert_eq!(actual, None),
        other => panic!("expected ConditionFailed, got {other:?}"),
    }
    assert_eq!(s.jobs.get_job(&ghost.id).await.unwrap(), None);
}

/// Saves `job` through the allowed moves to `Done`.
async fn finish(s: &StoreUnderTest, job: &Job) -> Job {
    let mut next = job.clone();
    next.status = JobStatus::Done;
    next.finished_at = Some(job.created_at);
    s.jobs.save_job(job, next).await.unwrap()
}

pub async fn open_jobs_are_the_unfinished_and_watched_ones_oldest_first(s: StoreUnderTest) {
    let jobs: Vec<Job> = (0..4).map(|i| new_job(ts(i * 1000))).collect();
    for j in jobs.iter().rev() {
        s.jobs.create_job(j).await.unwrap();
    }
    finish(&s, &jobs[1]).await;
    // Given up while its batch runs: watched for late answers, still open.
    let mut failed = jobs[2].clone();
    failed.status = JobStatus::Failed;
    failed.watch_until = Some(ts(99_000));
    s.jobs.save_job(&jobs[2], failed).await.unwrap();
    let open: Vec<JobId> = s.jobs.open_jobs().await.unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(open, vec![jobs[0].id.clone(), jobs[2].id.clone(), jobs[3].id.clone()]);
}

pub async fn list_jobs_is_newest_first_across_pages_and_by_tenant(s: StoreUnderTest) {
    let jobs: Vec<Job> = (0..5).map(|i| new_job(ts(i * 1000))).collect();
    for j in &jobs {
        s.jobs.create_job(j).await.unwrap();
    }
    let all: Vec<JobId> = all_jobs(&s, None, 2).await.into_iter().map(|j| j.id).collect();
    let newest_first: Vec<JobId> = jobs.iter().rev().map(|j| j.id.clone()).collect();
    assert_eq!(all, newest_first);
    for i in [0, 2, 3] {
        s.jobs.add_job_tenants(&jobs[i], &[tenant("acme")]).await.unwrap();
    }
    s.jobs
        .add_job_tenants(&jobs[2], &[tenant("acme"), tenant("beta")])
        .await
        .unwrap();
    let acme: Vec<JobId> = all_jobs(&s, Some(&tenant("acme")), 2)
        .await
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(acme, vec![jobs[3].id.clone(), jobs[2].id.clone(), jobs[0].id.clone()]);
    let beta: Vec<Job> = all_jobs(&s, Some(&tenant("beta")), 10).await;
    assert_eq!(
        beta.into_iter().map(norm).collect::<Vec<_>>(),
        vec![norm(jobs[2].clone())]
    );
    assert!(all_jobs(&s, Some(&tenant("nobody")), 10).await.is_empty());
}

pub async fn job_tenants_let_each_tenant_find_a_job_however_many_it_holds(s: StoreUnderTest) {
    let mut job = new_job(ts(0));
    // The row names one tenant of three; the rest are found through the store.
    job.tenants = vec![tenant("acme")];
    job.tenant_count = 3;
    s.jobs.create_job(&job).await.unwrap();
    let all = [tenant("acme"), tenant("beta"), tenant("gamma")];
    s.jobs.add_job_tenants(&job, &all).await.unwrap();
    s.jobs.add_job_tenants(&job, &all[1..]).await.unwrap();
    for t in &all {
        assert!(
            s.jobs.job_has_tenant(&job, t).await.unwrap(),
            "{t} holds requests in the job"
        );
        assert_eq!(all_jobs(&s, Some(t), 10).await.len(), 1, "{t} lists the job once");
    }
    assert!(!s.jobs.job_has_tenant(&job, &tenant("delta")).await.unwrap());
    // A row that names every tenant answers alone.
    let mut small = new_job(ts(1));
    small.tenants = vec![tenant("acme")];
    small.tenant_count = 1;
    s.jobs.create_job(&small).await.unwrap();
    assert!(s.jobs.job_has_tenant(&small, &tenant("acme")).await.unwrap());
    assert!(!s.jobs.job_has_tenant(&small, &tenant("beta")).await.unwrap());
}

pub async fn token_budgets_keep_the_last_saved_budget_of_each_model(s: StoreUnderTest) {
    assert!(s.jobs.token_budgets().await.unwrap().is_empty());
    let mut mini = TokenBudget::initial(model("gpt-4o-mini"), Some(2_000_000), ts(0));
    let full = TokenBudget {
        model: model("gpt-4o"),
        limit: Some(90_000),
        stated_limit: Some(100_000),
        stated_at: Some(ts(5)),
        refusals_in_row: 2,
        refusals_total: 7,
        blocked_until: Some(ts(60_000)),
        updated_at: ts(5),
    };
    s.jobs.save_token_budget(&mini).await.unwrap();
    s.jobs.save_token_budget(&full).await.unwrap();
    mini.limit = Some(1_500_000);
    mini.refusals_total = 1;
    mini.updated_at = ts(9);
    s.jobs.save_token_budget(&mini).await.unwrap();
    let budgets = s.jobs.token_budgets().await.unwrap();
    assert_eq!(budgets.len(), 2);
    assert_eq!(budgets[&model("gpt-4o-mini")], mini);
    assert_eq!(budgets[&model("gpt-4o")], full);
}
