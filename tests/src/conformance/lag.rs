//! Eventually consistent listings: `queued`, `by_job`, `open_jobs` and
//! `list_jobs` without a tenant may answer from an older view (DynamoDB's
//! global secondary indexes); reads, counters and conditional writes never do.

use std::time::Duration;

use batchq_core::ids::JobId;
use batchq_core::request::RequestStatus;
use batchq_core::transition::RequestUpdate;

use super::*;

/// Far longer than the case runs: the listings stay where they were.
const LONG: Duration = Duration::from_secs(600);

pub async fn listings_may_lag_behind_writes_but_reads_counters_and_conditions_do_not(s: StoreUnderTest) {
    let a = insert_one(&s, new_request("acme", "a", "gpt-4o-mini", "hi"), ts(0)).await;
    let done = new_job(ts(0));
    s.jobs.create_job(&done).await.unwrap();
    (s.set_index_lag)(LONG).await;

    let b = insert_one(&s, new_request("acme", "b", "gpt-4o-mini", "hi"), ts(1)).await;
    let job = JobId::generate();
    s.requests.apply(RequestUpdate::claim(&a, &job, ts(2))).await.unwrap();
    let fresh = new_job(ts(5));
    s.jobs.create_job(&fresh).await.unwrap();
    s.jobs.add_job_tenants(&fresh, &[tenant("acme")]).await.unwrap();

    // The listings still show the rows as they were.
    let listed = all_queued(&s, &group("gpt-4o-mini"), 10).await;
    assert_eq!(listed.iter().map(|r| &r.key).collect::<Vec<_>>(), vec![&a.key]);
    assert_eq!(listed[0].status, RequestStatus::Queued);
    assert!(all_by_job(&s, &job, 10).await.is_empty());
    let open: Vec<JobId> = s.jobs.open_jobs().await.unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(open, vec![done.id.clone()]);
    let all: Vec<JobId> = all_jobs(&s, None, 10).await.into_iter().map(|j| j.id).collect();
    assert_eq!(all, vec![done.id.clone()]);
    // Reads, counters and the tenant's own list are exact.
    assert_eq!(get(&s, &a).await.status, RequestStatus::Claimed);
    assert_eq!(get(&s, &b).await.status, RequestStatus::Queued);
    assert_eq!(count(&s, "acme", RequestStatus::Queued).await, 1);
    assert_eq!(s.requests.queue_groups().await.unwrap()[0].queued, 1);
    assert!(s.jobs.get_job(&fresh.id).await.unwrap().is_some());
    assert_eq!(all_jobs(&s, Some(&tenant("acme")), 10).await.len(), 1);
    // A claim from the stale listing is refused by its condition.
    let stale = RequestUpdate::claim(&listed[0], &JobId::generate(), ts(3));
    assert_refused(s.requests.apply(stale).await, &format!("claimed in {job}"));

    (s.set_index_lag)(Duration::ZERO).await;
    let listed = all_queued(&s, &group("gpt-4o-mini"), 10).await;
    assert_eq!(listed.iter().map(|r| &r.key).collect::<Vec<_>>(), vec![&b.key]);
    assert_eq!(all_by_job(&s, &job, 10).await.len(), 1);
    let open: Vec<JobId> = s.jobs.open_jobs().await.unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(open, vec![done.id.clone(), fresh.id.clone()]);
    assert_eq!(all_jobs(&s, None, 10).await.len(), 2);
}
