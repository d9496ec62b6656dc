//! The store rules the in-memory adapter mirrors from the DynamoDB adapter
//! (`store/dynamo.rs`), each in one small function so they can be swapped
//! for shared domain rules when those exist: counter deltas, where a large
//! body or response goes, how a failed condition is judged, and the order
//! of the queue.

use std::collections::HashMap;

use crate::ids::{JobId, RequestKey, TenantId};
use crate::request::{Payload, QueueGroup, Request, RequestStatus};
use crate::store::{keys, Applied, RequestUpdate, StatusCounts, StoreError};
use crate::time::Timestamp;

// ---------------------------------------------------------------- counters

/// The counter changes of one write: per tenant (status counts and
/// unfinished bytes) and per queue group (queued requests).
#[derive(Debug, Default)]
pub(super) struct CounterDeltas {
    pub tenant: HashMap<TenantId, (HashMap<RequestStatus, i64>, i64)>,
    pub queue: HashMap<QueueGroup, i64>,
}

impl CounterDeltas {
    fn status(&mut self, t: &TenantId, st: RequestStatus, delta: i64) {
        *self.tenant.entry(t.clone()).or_default().0.entry(st).or_default() += delta;
    }

    fn pending_bytes(&mut self, t: &TenantId, delta: i64) {
        self.tenant.entry(t.clone()).or_default().1 += delta;
    }

    fn queue(&mut self, g: &QueueGroup, delta: i64) {
        *self.queue.entry(g.clone()).or_default() += delta;
    }

    /// A new queued request: one more queued for its tenant and group, its
    /// body's bytes unfinished (dynamo's insert).
    pub fn for_insert(req: &Request) -> Self {
        let mut d = Self::default();
        d.status(&req.tenant, RequestStatus::Queued, 1);
        d.pending_bytes(&req.tenant, req.body_bytes as i64);
        d.queue(&req.queue_group(), 1);
        d
    }

    /// A status change, counted with the tenant, group and size the update
    /// names (dynamo's `CounterDeltas::for_transition`).
    pub fn for_transition(u: &RequestUpdate) -> Self {
        let mut d = Self::default();
        d.status(&u.tenant, u.from, -1);
        d.status(&u.tenant, u.to, 1);
        if !u.from.is_terminal() && u.to.is_terminal() {
            d.pending_bytes(&u.tenant, -(u.body_bytes as i64));
        }
        if u.from == RequestStatus::Queued {
            d.queue(&u.group, -1);
        }
        if u.to == RequestStatus::Queued {
            d.queue(&u.group, 1);
        }
        d
    }
}

/// The running counters, changed only together with what they count.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub tenants: HashMap<TenantId, StatusCounts>,
    pub queues: HashMap<QueueGroup, i64>,
}

impl Counters {
    pub fn apply(&mut self, d: CounterDeltas) {
        for (t, (statuses, bytes)) in d.tenant {
            let c = self.tenants.entry(t).or_default();
            for (st, n) in statuses {
                *c.by_status.entry(st).or_default() += n;
            }
            c.pending_bytes += bytes;
        }
        for (g, n) in d.queue {
            *self.queues.entry(g).or_default() += n;
        }
    }
}

// ---------------------------------------------------------------- placement

/// Where a new request's body is kept: inline up to `inline_max` bytes,
/// else in the object store under its content-addressed key (dynamo's
/// `body_payload`). Returns the payload and, for a large body, the object
/// to write.
pub(super) fn body_placement(
    key: &RequestKey,
    hash: &crate::ids::ContentHash,
    json: &str,
    inline_max: u64,
) -> (Payload, Option<String>) {
    let bytes = json.len() as u64;
    if bytes <= inline_max {
        return (Payload::Inline(json.to_owned()), None);
    }
    let object = keys::body(key, hash);
    (
        Payload::S3 {
            key: object.clone(),
            bytes,
        },
        Some(object),
    )
}

/// The object key of a response too large to keep inline, or `None` when
/// it stays inline (dynamo's `offload_large_responses`).
pub(super) fn response_object(payload: &Payload, key: &RequestKey, job: &JobId, inline_max: u64) -> Option<String> {
    match payload {
        Payload::Inline(json) if json.len() as u64 > inline_max => Some(keys::response(key, job)),
        _ => None,
    }
}

/// Whether a finished request's body lives in the object store (and is
/// deleted once the request has finished: dynamo's `delete_finished_bodies`).
pub(super) fn body_is_offloaded(body_bytes: u64, inline_max: u64) -> bool {
    body_bytes > inline_max
}

// ---------------------------------------------------------------- conditions

/// Whether the stored row meets the update's condition: the status it
/// must have and, for a claimed request, its job.
pub(super) fn condition_holds(u: &RequestUpdate, cur: &Request) -> bool {
    cur.status == u.from && u.expected_job.as_ref().is_none_or(|j| cur.job_id.as_ref() == Some(j))
}

/// After a failed condition: a replay (the row already is where the update
/// leads) or a refusal naming the state found (dynamo's `classify_failed`).
pub(super) fn classify_failed(u: &RequestUpdate, cur: Option<&Request>) -> Result<Applied, StoreError> {
    let Some(cur) = cur else {
        return Err(StoreError::NotFound {
            entity: "request",
            id: u.key.to_string(),
        });
    };
    let same_job = match (&u.claim_for, &u.expected_job) {
        (Some(j), _) => cur.job_id.as_ref() == Some(j),
        (None, Some(j)) if u.to != RequestStatus::Queued => cur.job_id.as_ref() == Some(j),
        _ => true,
    };
    if cur.status == u.to && same_job {
        return Ok(Applied::Already);
    }
    Err(StoreError::ConditionFailed {
        entity: "request",
        id: u.key.to_string(),
        expected: match &u.expected_job {
            Some(j) => format!("{} in {j}", u.from),
            None => u.from.to_string(),
        },
        actual: Some(match &cur.job_id {
            Some(j) if cur.status == RequestStatus::Claimed => format!("{} in {j}", cur.status),
            _ => cur.status.to_string(),
        }),
    })
}

/// The row after a successful update (dynamo's `state_update_action`).
pub(super) fn updated(cur: &Request, u: &RequestUpdate) -> Request {
    let mut next = cur.clone();
    next.status = u.to;
    next.updated_at = u.now;
    if let Some(job) = &u.claim_for {
        next.job_id = Some(job.clone());
    }
    if u.count_attempt {
        next.attempts += 1;
    } else if u.refund_attempt {
        next.attempts = next.attempts.saturating_sub(1);
    }
    if let Some(e) = &u.last_error {
        next.last_error = Some(e.clone());
    }
    if u.to == RequestStatus::Queued {
        // Back in the queue: no longer tied to a job.
        next.job_id = None;
    }
    next
}

// ---------------------------------------------------------------- queue order

/// Sort key of the queue: creation time first, so a requeued request keeps
/// its place at the front; the request key breaks ties (dynamo's `queue_order`).
pub(super) fn queue_order(created_at: Timestamp, key: &RequestKey) -> String {
    format!("{:015}#{}", created_at.millis().max(0), key)
}
