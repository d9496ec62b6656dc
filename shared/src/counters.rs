//! The counter rules: which running counts a request's insert or status
//! change moves, and by how much. A store keeps them exact by changing them
//! in the same atomic write as the row they count; how it lays them out
//! (DynamoDB shards them over several items) is its own business.

use crate::ids::TenantId;
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
}

/// A change of one counter.
pub type Delta = (Counter, i64);

/// What storing `queued` (a new request, as [`crate::transition::queued`]
/// builds it) adds to the counters.
pub fn for_insert(queued: &Request) -> Vec<Delta> {
    vec![
        (Counter::TenantStatus(queued.tenant.clone(), RequestStatus::Queued), 1),
        (Counter::PendingBytes(queued.tenant.clone()), queued.body_bytes as i64),
        (Counter::Queued(queued.queue_group()), 1),
        (
            Counter::Committed(queued.tenant.clone()),
            queued.estimated_cost_nanos as i64,
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
    if u.from == RequestStatus::Queued {
        out.push((Counter::Queued(u.group.clone()), -1));
    }
    if u.to == RequestStatus::Queued {
        out.push((Counter::Queued(u.group.clone()), 1));
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
}
