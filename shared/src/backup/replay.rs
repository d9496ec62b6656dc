//! How import rebuilds one request's life on the target: the path of
//! states the domain's own transitions lead through from `queued` to the
//! exported row, and where on that path a row the target already holds
//! stands (a re-run continues from there; a row off the path is left alone).
//!
//! The path keeps the exported attempts: each earlier attempt is a claim
//! for the import's cycle job followed by a re-queue (an attempt counted
//! and kept), the last one the claim for the request's own job. A last
//! error with no attempt to carry it comes from a claim and a free re-queue
//! (the attempt taken back).

use crate::ids::JobId;
use crate::request::{NewRequest, Request, RequestError, RequestResult, RequestStatus};
use crate::transition::{self, RequestUpdate};

/// Why a request's exported row cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("a claimed request without a job")]
    ClaimedWithoutJob,
    #[error("a {0} request without a job")]
    FinishedWithoutJob(RequestStatus),
    #[error("a completed request without a result")]
    CompletedWithoutResult,
    #[error("a result of job {result} for a request of job {request}")]
    ResultOfAnotherJob { result: JobId, request: JobId },
    #[error("the replay ends {got}, not {want} as exported")]
    EndsElsewhere { got: String, want: String },
}

/// The steps from a fresh queued row to `exported`, each with the state
/// it leads to.
#[derive(Debug, Clone)]
pub struct Path {
    /// The state the request is inserted in.
    pub start: Request,
    pub steps: Vec<(RequestUpdate, Request)>,
}

/// Where a stored row stands on a [`Path`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// The row is the path's state after `done` steps: the rest remain.
    At { done: usize },
    /// The row is in no state of the path (the target moved it on, or holds
    /// another history): nothing is applied.
    Off,
}

/// Compares what replay can rebuild: the status, the job, the attempts
/// and the last error (timestamps follow the updates; expiry is the store's).
fn same_place(a: &Request, b: &Request) -> bool {
    a.status == b.status && a.job_id == b.job_id && a.attempts == b.attempts && a.last_error == b.last_error
}

/// The path from `new` (inserted at the exported creation time) to
/// `exported`, finishing with `result` where the request has one. Every
/// step is stamped with the exported `updated_at`, so the rebuilt row
/// reads back with the exported times.
pub fn plan(
    new: &NewRequest,
    exported: &Request,
    result: Option<&RequestResult>,
    cycle_job: &JobId,
) -> Result<Path, ReplayError> {
    let start = transition::queued(new, exported.created_at);
    let now = exported.updated_at;
    let error = exported.last_error.clone();
    let own_job = || exported.job_id.clone();
    // Attempts counted by the last step's claim (none for a cancelled or
    // queued request, or one finished late from the queue).
    let (final_claim, late) = match exported.status {
        RequestStatus::Queued | RequestStatus::Cancelled => (false, false),
        RequestStatus::Claimed | RequestStatus::Failed => (true, false),
        // A completed request with no attempt counted was finished from the
        // queue by a batch given up on (`finish_late`).
        RequestStatus::Completed => (exported.attempts > 0, exported.attempts == 0),
    };
    let cycles = exported.attempts.saturating_sub(u32::from(final_claim));

    let build = |free_cycle: bool| -> Result<Path, ReplayError> {
        let mut steps: Vec<(RequestUpdate, Request)> = Vec::new();
        let mut cur = start.clone();
        let mut push = |u: RequestUpdate, cur: &mut Request| {
            let next = u.applied_to(cur);
            steps.push((u, next.clone()));
            *cur = next;
        };
        if free_cycle {
            let u = RequestUpdate::claim(&cur, cycle_job, now);
            push(u, &mut cur);
            let u = RequestUpdate::requeue_free(&cur, cycle_job, error.clone(), now);
            push(u, &mut cur);
        }
        for _ in 0..cycles {
            let u = RequestUpdate::claim(&cur, cycle_job, now);
            push(u, &mut cur);
            let u = RequestUpdate::requeue(&cur, cycle_job, error.clone(), now);
            push(u, &mut cur);
        }
        match exported.status {
            RequestStatus::Queued => {}
            RequestStatus::Cancelled => {
                let u = RequestUpdate::cancel(&cur, now);
                push(u, &mut cur);
            }
            RequestStatus::Claimed => {
                let job = own_job().ok_or(ReplayError::ClaimedWithoutJob)?;
                let u = RequestUpdate::claim(&cur, &job, now);
                push(u, &mut cur);
            }
            status @ (RequestStatus::Completed | RequestStatus::Failed) => {
                let job = own_job().ok_or(ReplayError::FinishedWithoutJob(status))?;
                if let Some(r) = result {
                    if r.job_id != job {
                        return Err(ReplayError::ResultOfAnotherJob {
                            result: r.job_id.clone(),
                            request: job,
                        });
                    }
                }
                if late {
                    let r = result.cloned().ok_or(ReplayError::CompletedWithoutResult)?;
                    let u = RequestUpdate::finish_late(&cur, &job, r, now);
                    push(u, &mut cur);
                } else {
                    let u = RequestUpdate::claim(&cur, &job, now);
                    push(u, &mut cur);
                    let u = match (status, result) {
                        (_, Some(r)) => RequestUpdate::finish(&cur, &job, status, r.clone(), now),
                        (RequestStatus::Failed, None) => {
                            let e = error.clone().unwrap_or_else(|| RequestError {
                                code: "imported".into(),
                                message: "failed before the export; no error was recorded".into(),
                                status_code: None,
                            });
                            RequestUpdate::fail(&cur, &job, e, now)
                        }
                        _ => return Err(ReplayError::CompletedWithoutResult),
                    };
                    push(u, &mut cur);
                }
            }
        }
        Ok(Path {
            start: start.clone(),
            steps,
        })
    };

    let path = build(false)?;
    let end = path.end();
    if same_place(end, exported) {
        return Ok(path);
    }
    // The last error is carried by no step of the plain path: a free
    // re-queue first sets it without counting an attempt.
    if exported.last_error.is_some() && end.last_error != exported.last_error {
        let path = build(true)?;
        if same_place(path.end(), exported) {
            return Ok(path);
        }
    }
    let show = |r: &Request| {
        format!(
            "{} (job {}, attempts {}, last error {})",
            r.status,
            r.job_id.as_ref().map_or("none", |j| j.as_str()),
            r.attempts,
            r.last_error.as_ref().map_or("none", |e| e.code.as_str())
        )
    };
    Err(ReplayError::EndsElsewhere {
        got: show(path.end()),
        want: show(exported),
    })
}

impl Path {
    /// The state the last step leads to.
    pub fn end(&self) -> &Request {
        self.steps.last().map_or(&self.start, |(_, s)| s)
    }

    /// Where `stored` stands: the latest state of the path it is in.
    pub fn position(&self, stored: &Request) -> Position {
        if let Some(done) = (0..=self.steps.len()).rev().find(|&i| {
            let state = if i == 0 { &self.start } else { &self.steps[i - 1].1 };
            same_place(state, stored)
        }) {
            return Position::At { done };
        }
        Position::Off
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{CustomId, ModelName, TenantId};
    use crate::request::Endpoint;
    use crate::time::Timestamp;

    fn new_request() -> NewRequest {
        NewRequest::new(
            TenantId::parse("acme").unwrap(),
            CustomId::parse("r-1").unwrap(),
            Endpoint::ChatCompletions,
            ModelName::parse("gpt-4o-mini").unwrap(),
            r#"{"model":"gpt-4o-mini"}"#.into(),
        )
    }

    fn exported(status: RequestStatus, attempts: u32, job: Option<&JobId>, error: Option<&str>) -> Request {
        let mut r = transition::queued(&new_request(), Timestamp::from_millis(10));
        r.status = status;
        r.attempts = attempts;
        r.job_id = job.cloned();
        r.updated_at = Timestamp::from_millis(20);
        r.last_error = error.map(|c| RequestError {
            code: c.into(),
            message: "m".into(),
            status_code: Some(500),
        });
        r
    }

    fn result_of(job: &JobId, error: Option<RequestError>) -> RequestResult {
        RequestResult {
            key: new_request().key,
            job_id: job.clone(),
            status_code: Some(200),
            response: None,
            error,
            usage: None,
            batch_cost: None,
            realtime_cost: None,
            recorded_at: Timestamp::from_millis(19),
            request_id: None,
        }
    }

    fn moves(p: &Path) -> Vec<String> {
        p.steps.iter().map(|(u, _)| format!("{}->{}", u.from, u.to)).collect()
    }

    #[test]
    fn a_completed_request_retried_once_replays_two_claims_and_ends_with_its_attempts_and_times() {
        let (job, cycle) = (JobId::generate(), JobId::generate());
        let want = exported(RequestStatus::Completed, 2, Some(&job), Some("server_error"));
        let result = result_of(&job, None);
        let p = plan(&new_request(), &want, Some(&result), &cycle).unwrap();
        assert_eq!(
            moves(&p),
            [
                "queued->claimed",
                "claimed->queued",
                "queued->claimed",
                "claimed->completed"
            ]
        );
        let end = p.end();
        assert_eq!((end.attempts, end.job_id.as_ref()), (2, Some(&job)));
        assert_eq!(end.last_error, want.last_error);
        assert_eq!((end.created_at, end.updated_at), (want.created_at, want.updated_at));
        assert_eq!(p.steps[3].0.result.as_ref(), Some(&result));
    }

    #[test]
    fn a_queued_request_keeps_its_attempts_and_last_error_through_cycles_of_the_cycle_job() {
        let cycle = JobId::generate();
        let want = exported(RequestStatus::Queued, 3, None, Some("server_error"));
        let p = plan(&new_request(), &want, None, &cycle).unwrap();
        assert_eq!(p.steps.len(), 6);
        assert!(p
            .steps
            .iter()
            .all(|(u, _)| u.claim_for.as_ref().is_none_or(|j| *j == cycle)));
        assert!(same_place(p.end(), &want));
        assert_eq!(p.end().job_id, None);
    }

    #[test]
    fn a_last_error_without_an_attempt_comes_from_a_free_requeue() {
        let want = exported(RequestStatus::Queued, 0, None, Some("token_limit_exceeded"));
        let p = plan(&new_request(), &want, None, &JobId::generate()).unwrap();
        assert_eq!(moves(&p), ["queued->claimed", "claimed->queued"]);
        assert!(p.steps[1].0.refund_attempt);
        assert_eq!((p.end().attempts, &p.end().last_error), (0, &want.last_error));
    }

    #[test]
    fn a_completed_request_with_no_attempt_finishes_late_from_the_queue() {
        let job = JobId::generate();
        let want = exported(RequestStatus::Completed, 0, Some(&job), None);
        let p = plan(&new_request(), &want, Some(&result_of(&job, None)), &JobId::generate()).unwrap();
        assert_eq!(moves(&p), ["queued->completed"]);
        assert_eq!(p.end().job_id.as_ref(), Some(&job));
    }

    #[test]
    fn failed_without_a_result_is_claimed_then_failed_with_its_error() {
        let job = JobId::generate();
        let want = exported(RequestStatus::Failed, 1, Some(&job), Some("batch_failed"));
        let p = plan(&new_request(), &want, None, &JobId::generate()).unwrap();
        assert_eq!(moves(&p), ["queued->claimed", "claimed->failed"]);
        assert_eq!(p.end().last_error, want.last_error);
    }

    #[test]
    fn a_stored_row_is_placed_at_its_latest_state_on_the_path_or_off_it() {
        let (job, cycle) = (JobId::generate(), JobId::generate());
        let want = exported(RequestStatus::Claimed, 2, Some(&job), Some("server_error"));
        let p = plan(&new_request(), &want, None, &cycle).unwrap();
        assert_eq!(p.position(&p.start), Position::At { done: 0 });
        assert_eq!(p.position(&p.steps[1].1), Position::At { done: 2 });
        assert_eq!(p.position(&want), Position::At { done: p.steps.len() });
        let elsewhere = exported(
            RequestStatus::Claimed,
            3,
            Some(&JobId::generate()),
            Some("server_error"),
        );
        assert_eq!(p.position(&elsewhere), Position::Off);
    }

    #[test]
    fn a_result_of_another_job_than_the_requests_is_refused() {
        let (job, other) = (JobId::generate(), JobId::generate());
        let want = exported(RequestStatus::Completed, 1, Some(&job), None);
        let e = plan(
            &new_request(),
            &want,
            Some(&result_of(&other, None)),
            &JobId::generate(),
        )
        .unwrap_err();
        assert!(matches!(e, ReplayError::ResultOfAnotherJob { .. }));
    }
}
