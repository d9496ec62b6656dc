//! Request transitions as data: a [`RequestUpdate`] names one conditional
//! status change of one request (from which status, for which job, to
//! what), built by the constructors below for each move the pipeline makes.
//! Every store applies them the same way: [`RequestUpdate::check`] before
//! writing, the write conditioned on `from` (and the job), and a refused
//! write judged by [`RequestUpdate::judge_refusal`] against the row as it
//! was. The state a new request enters the queue with is [`queued`].

use crate::error::TransitionError;
use crate::ids::{ContentHash, CustomId, JobId, RequestKey, TenantId};
use crate::request::{NewRequest, QueueGroup, Request, RequestError, RequestResult, RequestStatus};
use crate::time::Timestamp;

/// The state row of a request entering the queue at `now`.
pub fn queued(r: &NewRequest, now: Timestamp) -> Request {
    Request {
        key: r.key.clone(),
        tenant: r.tenant.clone(),
        custom_id: r.custom_id.clone(),
        provider: r.provider.clone(),
        endpoint: r.endpoint,
        model: r.model.clone(),
        status: RequestStatus::Queued,
        attempts: 0,
        job_id: None,
        content_hash: r.content_hash.clone(),
        body_bytes: r.body_bytes(),
        weight: r.weight,
        estimated_cost_nanos: r.estimated_cost_nanos,
        created_at: now,
        updated_at: now,
        last_error: None,
        expires_at: None,
    }
}

/// A status change of one request, conditioned on its current state.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestUpdate {
    pub key: RequestKey,
    /// Counters are kept per tenant and per queue group.
    pub tenant: TenantId,
    /// The caller's id of the request: a terminal change's feed entry names it.
    pub custom_id: CustomId,
    pub group: QueueGroup,
    /// The status the row must have (the write is conditioned on it).
    pub from: RequestStatus,
    pub to: RequestStatus,
    /// The job the row must belong to (for changes of a claimed request).
    pub expected_job: Option<JobId>,
    /// The job to claim the request for (`queued -> claimed`).
    pub claim_for: Option<JobId>,
    /// Count one more attempt (set when a request is claimed).
    pub count_attempt: bool,
    /// Take back the attempt counted at claim time: the provider refused the
    /// whole batch for reasons that are not the request's (a full queue).
    pub refund_attempt: bool,
    pub last_error: Option<RequestError>,
    /// Size of the request's body: its tenant's unfinished bytes shrink by
    /// this much when it finishes.
    pub body_bytes: u64,
    /// The request's estimated cost: its tenant's committed spend shrinks
    /// by this much when it finishes.
    pub estimated_cost_nanos: u64,
    /// The body's hash: with `body_bytes` it locates a large body in S3,
    /// which is deleted once the request has finished.
    pub content_hash: ContentHash,
    /// The result to store, in the same atomic write (ingest).
    pub result: Option<RequestResult>,
    /// The request's creation time: a re-queued request keeps its place.
    pub created_at: Timestamp,
    pub now: Timestamp,
}

impl RequestUpdate {
    fn base(req: &Request, to: RequestStatus, now: Timestamp) -> Self {
        Self {
            key: req.key.clone(),
            tenant: req.tenant.clone(),
            custom_id: req.custom_id.clone(),
            group: req.queue_group(),
            from: req.status,
            to,
            expected_job: None,
            claim_for: None,
            count_attempt: false,
            refund_attempt: false,
            last_error: None,
            body_bytes: req.body_bytes,
            estimated_cost_nanos: req.estimated_cost_nanos,
            content_hash: req.content_hash.clone(),
            result: None,
            created_at: req.created_at,
            now,
        }
    }

    /// `queued -> claimed` for `job`, counting an attempt.
    pub fn claim(req: &Request, job: &JobId, now: Timestamp) -> Self {
        Self {
            claim_for: Some(job.clone()),
            count_attempt: true,
            ..Self::base(req, RequestStatus::Claimed, now)
        }
    }

    /// `queued -> completed` with the stored result: the late answer of a
    /// batch `job` gave up on, for a request not sent again yet. The request
    /// records `job` as the one that finished it.
    pub fn finish_late(req: &Request, job: &JobId, result: RequestResult, now: Timestamp) -> Self {
        Self {
            claim_for: Some(job.clone()),
            last_error: None,
            result: Some(result),
            ..Self::base(req, RequestStatus::Completed, now)
        }
    }

    /// `queued -> cancelled`.
    pub fn cancel(req: &Request, now: Timestamp) -> Self {
        Self::base(req, RequestStatus::Cancelled, now)
    }

    /// `claimed(job) -> completed | failed` with the stored result.
    pub fn finish(req: &Request, job: &JobId, to: RequestStatus, result: RequestResult, now: Timestamp) -> Self {
        Self {
            expected_job: Some(job.clone()),
            last_error: result.error.clone(),
            result: Some(result),
            ..Self::base(req, to, now)
        }
    }

    /// `claimed(job) -> failed` without a result line (e.g. the batch failed validation).
    pub fn fail(req: &Request, job: &JobId, error: RequestError, now: Timestamp) -> Self {
        Self {
            expected_job: Some(job.clone()),
            last_error: Some(error),
            ..Self::base(req, RequestStatus::Failed, now)
        }
    }

    /// `claimed(job) -> queued`: a retryable outcome; the attempt stays counted.
    pub fn requeue(req: &Request, job: &JobId, error: Option<RequestError>, now: Timestamp) -> Self {
        Self {
            expected_job: Some(job.clone()),
            last_error: error,
            ..Self::base(req, RequestStatus::Queued, now)
        }
    }

    /// `claimed(job) -> queued` without using up an attempt: the batch never
    /// ran (the provider's enqueued-token limit for the model was full).
    pub fn requeue_free(req: &Request, job: &JobId, error: Option<RequestError>, now: Timestamp) -> Self {
        Self {
            refund_attempt: req.attempts > 0,
            ..Self::requeue(req, job, error, now)
        }
    }
}

/// Why a conditional write of a [`RequestUpdate`] was refused, judged by
/// the row as it was when the condition failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The row already is where the update leads (a replay): nothing to do.
    AlreadyApplied,
    /// There is no such request.
    NoRow,
    /// The row is in another state (or belongs to another job).
    Elsewhere { expected: String, actual: String },
}

impl RequestUpdate {
    /// Whether the state machine allows this change at all.
    pub fn check(&self) -> Result<(), TransitionError> {
        self.from.check_transition(self.to)
    }

    /// The condition the write is made on: the row is in `from` and, for
    /// a claimed request, belongs to the expected job.
    pub fn holds_for(&self, current: &Request) -> bool {
        current.status == self.from
            && self
                .expected_job
                .as_ref()
                .is_none_or(|j| current.job_id.as_ref() == Some(j))
    }

    /// The row after this update is applied to `current` (which
    /// [`holds_for`](Self::holds_for) it): the new status, the job claimed
    /// for, the attempt counted or refunded, the last error; back in the
    /// queue, no longer tied to a job. (Expiry is the store's business.)
    pub fn applied_to(&self, current: &Request) -> Request {
        let mut next = current.clone();
        next.status = self.to;
        next.updated_at = self.now;
        if let Some(job) = &self.claim_for {
            next.job_id = Some(job.clone());
        }
        if self.count_attempt {
            next.attempts += 1;
        } else if self.refund_attempt {
            next.attempts = next.attempts.saturating_sub(1);
        }
        if let Some(e) = &self.last_error {
            next.last_error = Some(e.clone());
        }
        if self.to == RequestStatus::Queued {
            next.job_id = None;
        }
        next
    }

    /// After a refused write: did the row already reach this update's
    /// target (a replay), or is it somewhere else? `current` is the row as
    /// it was when the condition failed; `None` means there was none.
    pub fn judge_refusal(&self, current: Option<&Request>) -> Refusal {
        let Some(cur) = current else {
            return Refusal::NoRow;
        };
        let same_job = match (&self.claim_for, &self.expected_job) {
            (Some(j), _) => cur.job_id.as_ref() == Some(j),
            (None, Some(j)) if self.to != RequestStatus::Queued => cur.job_id.as_ref() == Some(j),
            _ => true,
        };
        if cur.status == self.to && same_job {
            return Refusal::AlreadyApplied;
        }
        Refusal::Elsewhere {
            expected: match &self.expected_job {
                Some(j) => format!("{} in {j}", self.from),
                None => self.from.to_string(),
            },
            actual: match &cur.job_id {
                Some(j) if cur.status == RequestStatus::Claimed => format!("{} in {j}", cur.status),
                _ => cur.status.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ModelName;
    use crate::request::Endpoint;

    fn queued_request() -> Request {
        let new = NewRequest::new(
            TenantId::parse("acme").unwrap(),
            CustomId::parse("r-1").unwrap(),
            Endpoint::ChatCompletions,
            ModelName::parse("gpt-4o-mini").unwrap(),
            "{}".into(),
        );
        queued(&new, Timestamp::from_millis(5))
    }

    #[test]
    fn a_new_request_enters_the_queue_unclaimed_with_no_attempt_and_its_body_size() {
        let r = queued_request();
        assert_eq!(
            (r.status, r.attempts, r.job_id.clone()),
            (RequestStatus::Queued, 0, None)
        );
        assert_eq!(
            (r.created_at, r.updated_at),
            (Timestamp::from_millis(5), Timestamp::from_millis(5))
        );
        assert_eq!(r.body_bytes, 2);
    }

    #[test]
    fn a_refused_claim_is_a_replay_only_when_the_row_is_claimed_by_the_same_job() {
        let r = queued_request();
        let (a, b) = (JobId::generate(), JobId::generate());
        let claim = RequestUpdate::claim(&r, &a, Timestamp::from_millis(6));
        let claimed_by = |j: &JobId| Request {
            status: RequestStatus::Claimed,
            job_id: Some(j.clone()),
            ..r.clone()
        };
        assert_eq!(claim.judge_refusal(Some(&claimed_by(&a))), Refusal::AlreadyApplied);
        assert_eq!(
            claim.judge_refusal(Some(&claimed_by(&b))),
            Refusal::Elsewhere {
                expected: "queued".into(),
                actual: format!("claimed in {b}"),
            }
        );
        assert_eq!(claim.judge_refusal(None), Refusal::NoRow);
    }

    #[test]
    fn an_illegal_change_fails_its_check() {
        let r = queued_request();
        let mut bogus = RequestUpdate::cancel(&r, Timestamp::from_millis(6));
        assert!(bogus.check().is_ok());
        bogus.from = RequestStatus::Completed;
        assert!(bogus.check().is_err());
    }
}
