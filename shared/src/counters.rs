//! The counter rules: which running counts a request's insert or status
//! change moves, and by how much. A store keeps them exact by changing them
//! in the same atomic write as the row they count; how it lays them out
//! (DynamoDB shards them over several items) is its own business.

use crate::activity::{ActivityCount, Hour};
use crate::ids::{ModelName, TenantId};
use crate::request::{QueueGroup, Request, RequestStatus};
use crate::transition::RequestUpdate;

/// One running count.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Counter {
    /// A tenant's requests in one status.
    TenantStatus(TenantId, RequestStatus),
    /// Bytes of a tenant's unfinished bodies (its byte quota).
    PendingBytes(TenantId),
    /// Queued requests of a queue group (what submit looks at).
    Queued(QueueGroup),
    /// Estimated batch cost, in nanodollars, of a tenant's unfinished
    /// requests (what they commit of its spend budgets, [`crate::spend`]).
    Committed(TenantId),
    /// A tenant's queued requests of one model (the activity's queue now).
    TenantQueued(TenantId, ModelName),
    /// One of a tenant's hourly activity counts ([`crate::activity`]).
    Activity(TenantId, Hour, ActivityCount),
}

/// A change of one counter.
pub type Delta = (Counter, i64);

/// What storing `queued` (a new request, as [`crate::transition::queued`]
/// builds it) adds to the counters.
pub fn for_insert(queued: &Request) -> Vec<Delta> {
    let t = &queued.tenant;
    let hour = Hour::of(queued.created_at);
    vec![
        (Counter::TenantStatus(t.clone(), RequestStatus::Queued), 1),
        (Counter::PendingBytes(t.clone()), queued.body_bytes as i64),
        (Counter::Queued(queued.queue_group()), 1),
        (Counter::Committed(t.clone()), queued.estimated_cost_nanos as i64),
        (Counter::TenantQueued(t.clone(), queued.model.clone()), 1),
        (Counter::Activity(t.clone(), hour, ActivityCount::Enqueued), 1),
        (
            Counter::Activity(t.clone(), hour, ActivityCount::QueuedChange(queued.model.clone())),
            1,
        ),
    ]
}

/// What applying `u` changes in the counters: the tenant's count moves
/// from `from` to `to`; a request finishing frees its body's bytes; leaving
/// or entering the queue moves its group's count.
pub fn for_update(u: &RequestUpdate) -> Vec<Delta> {
    let mut out = vec![
        (Counter::TenantStatus(u.tenant.clone(), u.from), -1),
        (Counter::TenantStatus(u.tenant.clone(), u.to), 1),
    ];
    if !u.from.is_terminal() && u.to.is_terminal() {
        out.push((Counter::PendingBytes(u.tenant.clone()), -(u.body_bytes as i64)));
        out.push((Counter::Committed(u.tenant.clone()), -(u.estimated_cost_nanos as i64)));
    }
    let t = &u.tenant;
    let hour = Hour::of(u.now);
    let model = &u.group.model;
    let activity = |c: ActivityCount, n: i64| (Counter::Activity(t.clone(), hour, c), n);
    if u.from == RequestStatus::Queued {
        out.push((Counter::Queued(u.group.clone()), -1));
        out.push((Counter::TenantQueued(t.clone(), model.clone()), -1));
        out.push(activity(ActivityCount::QueuedChange(model.clone()), -1));
    }
    if u.to == RequestStatus::Queued {
        out.push((Counter::Queued(u.group.clone()), 1));
        out.push((Counter::TenantQueued(t.clone(), model.clone()), 1));
        out.push(activity(ActivityCount::QueuedChange(model.clone()), 1));
    }
    match u.to {
        RequestStatus::Completed => out.push(activity(ActivityCount::Completed, 1)),
        RequestStatus::Failed => {
            out.push(activity(ActivityCount::Failed, 1));
            let code = u.last_error.as_ref().map(|e| e.code.as_str());
            out.push(activity(ActivityCount::failed_with(code), 1));
        }
        RequestStatus::Cancelled => out.push(activity(ActivityCount::Cancelled, 1)),
        // Sent back for another attempt (with or without using one up).
        RequestStatus::Queued if u.from == RequestStatus::Claimed => out.push(activity(ActivityCount::Retried, 1)),
        RequestStatus::Queued | RequestStatus::Claimed => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{CustomId, JobId, ModelName};
    use crate::request::{Endpoint, NewRequest};
    use crate::time::Timestamp;

    fn queued_request() -> Request {
        let new = NewRequest::new(
            TenantId::parse("acme").unwrap(),
            CustomId::parse("r-1").unwrap(),
            Endpoint::ChatCompletions,
            ModelName::parse("gpt-4o-mini").unwrap(),
            r#"{"model":"gpt-4o-mini"}"#.into(),
        );
        crate::transition::queued(&new, Timestamp::from_millis(1))
    }

    fn sum(deltas: &[Delta], c: &Counter) -> i64 {
        deltas.iter().filter(|(k, _)| k == c).map(|(_, d)| d).sum()
    }

    #[test]
    fn an_insert_counts_one_queued_request_and_its_body_bytes() {
        let r = queued_request();
        let d = for_insert(&r);
        assert_eq!(
            sum(&d, &Counter::TenantStatus(r.tenant.clone(), RequestStatus::Queued)),
            1
        );
        assert_eq!(sum(&d, &Counter::PendingBytes(r.tenant.clone())), r.body_bytes as i64);
        assert_eq!(sum(&d, &Counter::Queued(r.queue_group())), 1);
    }

    #[test]
    fn a_claim_leaves_the_queue_and_a_finish_frees_the_body_bytes() {
        let r = queued_request();
        let job = JobId::generate();
        let now = Timestamp::from_millis(2);
        let claim = RequestUpdate::claim(&r, &job, now);
        let d = for_update(&claim);
        assert_eq!(sum(&d, &Counter::Queued(r.queue_group())), -1);
        assert_eq!(sum(&d, &Counter::PendingBytes(r.tenant.clone())), 0);
        assert_eq!(
            sum(&d, &Counter::TenantStatus(r.tenant.clone(), RequestStatus::Claimed)),
            1
        );

        let claimed = Request {
            status: RequestStatus::Claimed,
            job_id: Some(job.clone()),
            ..r.clone()
        };
        let requeue = RequestUpdate::requeue(&claimed, &job, None, now);
        assert_eq!(sum(&for_update(&requeue), &Counter::Queued(r.queue_group())), 1);
        let fail = RequestUpdate::fail(
            &claimed,
            &job,
            crate::request::RequestError {
                code: "x".into(),
                message: "y".into(),
                status_code: None,
            },
            now,
        );
        let d = for_update(&fail);
        assert_eq!(
            sum(&d, &Counter::PendingBytes(r.tenant.clone())),
            -(r.body_bytes as i64)
        );
        assert_eq!(sum(&d, &Counter::Queued(r.queue_group())), 0);
    }

    #[test]
    fn activity_counts_each_move_in_the_hour_it_is_made() {
        use crate::activity::{ActivityCount as A, Hour};
        let r = queued_request();
        let t = r.tenant.clone();
        let m = r.model.clone();
        let act = |d: &[Delta], h: Hour, c: A| sum(d, &Counter::Activity(t.clone(), h, c));
        let enq = for_insert(&r);
        let h0 = Hour::of(r.created_at);
        assert_eq!(act(&enq, h0, A::Enqueued), 1);
        assert_eq!(act(&enq, h0, A::QueuedChange(m.clone())), 1);
        assert_eq!(sum(&enq, &Counter::TenantQueued(t.clone(), m.clone())), 1);

        let job = JobId::generate();
        let later = Timestamp::from_millis(3 * 3_600_000 + 5);
        let h3 = Hour::of(later);
        let claim = for_update(&RequestUpdate::claim(&r, &job, later));
        assert_eq!(act(&claim, h3, A::QueuedChange(m.clone())), -1);
        assert_eq!(sum(&claim, &Counter::TenantQueued(t.clone(), m.clone())), -1);
        assert_eq!(
            act(&claim, h0, A::QueuedChange(m.clone())),
            0,
            "counted when made, not when enqueued"
        );

        let claimed = Request {
            status: RequestStatus::Claimed,
            job_id: Some(job.clone()),
            ..r.clone()
        };
        let back = for_update(&RequestUpdate::requeue_free(&claimed, &job, None, later));
        assert_eq!(act(&back, h3, A::Retried), 1);
        assert_eq!(act(&back, h3, A::QueuedChange(m.clone())), 1);
        let err = crate::request::RequestError {
            code: "rate_limit_exceeded".into(),
            message: "slow down".into(),
            status_code: Some(429),
        };
        let fail = for_update(&RequestUpdate::fail(&claimed, &job, err, later));
        assert_eq!(act(&fail, h3, A::Failed), 1);
        assert_eq!(act(&fail, h3, A::failed_with(Some("rate_limit_exceeded"))), 1);
        assert_eq!(act(&fail, h3, A::Retried), 0);
        let cancel = for_update(&RequestUpdate::cancel(&r, later));
        assert_eq!(act(&cancel, h3, A::Cancelled), 1);
        assert_eq!(act(&cancel, h3, A::QueuedChange(m.clone())), -1);
    }
}
