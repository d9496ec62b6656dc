//! The pipeline behind the scheduled and event-driven functions: submit
//! (queue → provider batch), poll (provider batch → result files in S3) and
//! ingest (result files → per-request results).
//!
//! Every step is written for at-least-once delivery: it may run twice for
//! one event, concurrently with itself, or stop between any two calls. Each
//! write is conditioned on the state the step read, so a re-run finishes the
//! work instead of repeating it (see docs/lifecycle.md):
//!
//! * submit writes the job row before anything leaves AWS, claims requests
//!   with conditional writes, and resumes a job left half-way (after its
//!   lease) from the state it reached; before creating a provider batch on a
//!   resume it looks for one the lost attempt already created.
//! * poll mirrors the provider's status; on a finished batch it first records
//!   `ingesting`, then copies the result files to S3, which fires ingest.
//! * ingest applies each line only to a request still claimed by that job and
//!   adds a file's totals to the job once, marking the file as counted in the
//!   same conditional write.
//!
//! [`CrashPoint`] names the step boundaries; tests abort a step at each of
//! them and re-run it.

mod close;
pub mod crash;
pub mod dispatch;
pub mod ingest;
mod late;
pub mod poll;
pub mod queue;
pub mod submit;

use std::sync::Arc;

use thiserror::Error;

use crate::config::Config;
use crate::ids::{JobId, RequestKey};
use crate::job::Job;
use crate::jsonl::{Line, LineReader};
use crate::overhead::AWS_LIST;
use crate::ports::Ports;
use crate::provider::{BatchFormat, Formats, ProviderError};
use crate::request::{Request, RequestError, RequestStatus};
use crate::store::{Page, StoreError};
use crate::time::Timestamp;
use crate::transition::RequestUpdate;

pub use crash::{CrashPoint, CrashPoints, NoCrashes};
pub use ingest::{IngestReport, Ingester};
pub use late::LateReport;
pub use poll::{BatchPoll, BatchPollError, PollAsked, PollNow, PollReport, Poller};
pub use submit::{SubmitOptions, SubmitReport, Submitter};

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A test stopped the step here (see [`CrashPoints`]).
    #[error("crash injected at {0}")]
    Crashed(CrashPoint),
    /// A step tried a job or request move its status machine does not
    /// allow: a bug, not a race (races fail the store's conditional save).
    #[error(transparent)]
    Transition(#[from] crate::status::TransitionError),
    /// The event cannot be handled (not one of ours); retrying will not help.
    #[error("{0}")]
    Rejected(String),
    /// A job names a provider instance or kind this deployment has not
    /// configured (the provider table lost an entry the job still needs).
    #[error("provider {0} is not configured")]
    UnknownProvider(String),
}

/// What every step works with: the ports, the configuration, each
/// provider kind's file format and (in tests) crash injection.
#[derive(Clone)]
pub struct Core {
    pub ports: Ports,
    pub config: Arc<Config>,
    pub crash: Arc<dyn CrashPoints>,
    /// Each provider kind's batch file format (input lines, result lines).
    pub formats: Formats,
    /// Requests this core's step failed or re-queued (for its run report).
    pub moves: Arc<MoveTally>,
}

impl Core {
    /// The same ports with crash injection (tests).
    pub fn with_crashes(mut self, crash: Arc<dyn CrashPoints>) -> Self {
        self.crash = crash;
        self
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.ports.clock.now()
    }

    /// The batch file format of the job's provider.
    pub(crate) fn format(&self, job: &Job) -> Result<&dyn BatchFormat, PipelineError> {
        self.formats
            .get(job.provider)
            .ok_or_else(|| PipelineError::UnknownProvider(job.provider.as_str().to_owned()))
    }

    pub(crate) fn crash(&self, point: CrashPoint) -> Result<(), PipelineError> {
        if self.crash.should_crash(point) {
            tracing::warn!(%point, "injected crash");
            return Err(PipelineError::Crashed(point));
        }
        Ok(())
    }

    /// Every request the job index lists as claimed by `job`, page by page.
    /// The index is eventually consistent: a request claimed a moment ago
    /// may be missing (see [`Claims`]).
    pub(crate) async fn claimed_by(&self, job: &JobId) -> Result<Vec<Request>, StoreError> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let Page { items, next } = self.ports.requests.by_job(job, cursor, 1000).await?;
            out.extend(
                items
                    .into_iter()
                    .filter(|r| r.status == RequestStatus::Claimed && r.job_id.as_ref() == Some(job)),
            );
            match next {
                Some(n) => cursor = Some(n),
                None => return Ok(out),
            }
        }
    }

    /// The requests still claimed by `job`, as `source` names them, read
    /// with strongly consistent reads (the index's copies are taken as they
    /// are: it serves only where its lag is long past).
    pub(crate) async fn claimed_requests(&self, job: &Job, source: Claims<'_>) -> Result<Vec<Request>, PipelineError> {
        let keys = match source {
            Claims::Held(keys) => keys.to_vec(),
            Claims::InputFile => self.input_keys(job).await?,
            Claims::Index => return Ok(self.claimed_by(&job.id).await?),
        };
        let mut out: Vec<Request> = Vec::new();
        for chunk in keys.chunks(100) {
            let mut states: Vec<Request> = self
                .ports
                .requests
                .get_many(chunk)
                .await?
                .into_values()
                .filter(|r| r.status == RequestStatus::Claimed && r.job_id.as_ref() == Some(&job.id))
                .collect();
            states.sort_by(|a, b| a.key.cmp(&b.key));
            out.extend(states);
        }
        Ok(out)
    }

    /// The request keys of the job's input file, in file order (none before
    /// the file is staged).
    pub(crate) async fn input_keys(&self, job: &Job) -> Result<Vec<RequestKey>, PipelineError> {
        if job.input_lines == 0 {
            return Ok(Vec::new());
        }
        let format = self.format(job)?;
        let (_, stream) = self.ports.objects.open(&job.input_key).await?;
        let mut reader = LineReader::new(stream, usize::MAX);
        let mut keys = Vec::with_capacity(job.input_lines as usize);
        while let Some(line) = reader.next_line().await? {
            if let Line::Data { bytes, number } = line {
                match format.input_line_key(&bytes) {
                    Some(k) => keys.push(k),
                    None => tracing::warn!(job = %job.id, line = number, "input line without a readable custom_id"),
                }
            }
        }
        Ok(keys)
    }

    /// The update for a retryable outcome of `req` in `job`: back to the
    /// queue, or, once its attempts are used up, failed with `error`.
    pub(crate) fn retry_or_fail(
        &self,
        req: &Request,
        job: &JobId,
        error: RequestError,
        now: Timestamp,
    ) -> RequestUpdate {
        if req.attempts >= self.config.policy.max_attempts {
            RequestUpdate::fail(req, job, error, now)
        } else {
            RequestUpdate::requeue(req, job, Some(error), now)
        }
    }

    /// Releases every request still claimed by `job` (found through
    /// `source`) after a retryable failure of the whole batch: back to the
    /// queue, or failed with `error` once their attempts are used up.
    /// Returns how many were released.
    pub(crate) async fn release_claims(
        &self,
        job: &Job,
        source: Claims<'_>,
        error: RequestError,
    ) -> Result<usize, PipelineError> {
        let now = self.now();
        let claimed = self.claimed_requests(job, source).await?;
        let n = claimed.len();
        let updates = claimed
            .iter()
            .map(|r| self.retry_or_fail(r, &job.id, error.clone(), now))
            .collect();
        self.apply_all(updates).await?;
        Ok(n)
    }

    /// Applies updates in chunks; a condition that fails (another runner got
    /// there first) is logged and skipped, anything else is an error.
    pub(crate) async fn apply_all(&self, updates: Vec<RequestUpdate>) -> Result<AppliedCounts, StoreError> {
        let mut counts = AppliedCounts::default();
        for chunk in chunks(updates, 100) {
            let targets: Vec<RequestStatus> = chunk.iter().map(|u| u.to).collect();
            for (r, to) in self.ports.requests.apply_many(chunk).await?.into_iter().zip(targets) {
                match r {
                    Ok(crate::store::Applied::Now) => {
                        counts.now += 1;
                        self.moves.note(to);
                    }
                    Ok(crate::store::Applied::Already) => counts.already += 1,
                    Err(e) if e.is_condition_failed() => {
                        tracing::info!(error = %e, "request moved on meanwhile; skipped");
                        counts.skipped += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(counts)
    }

    /// Saves `next` over `prev`; `None` when another runner changed the job
    /// first (the caller stops: the other runner owns it now).
    pub(crate) async fn save_job(&self, prev: &Job, mut next: Job) -> Result<Option<Job>, StoreError> {
        // The AWS this process used since the last fold is the job's: its
        // run is about it (crate::overhead). Put back if the save fails.
        let used = self.ports.usage.take();
        next.aws_overhead += used.cost(&AWS_LIST);
        match self.ports.jobs.save_job(prev, next).await {
            Ok(j) => Ok(Some(j)),
            Err(e) if e.is_condition_failed() => {
                self.ports.usage.give_back(&used);
                tracing::info!(job = %prev.id, error = %e, "job changed by another runner; leaving it to them");
                Ok(None)
            }
            Err(e) => {
                self.ports.usage.give_back(&used);
                Err(e)
            }
        }
    }
}

/// Where to find the requests a job may still hold.
///
/// The job index (a DynamoDB global secondary index) is eventually
/// consistent: a request claimed a moment ago may not be listed yet, and one
/// finished a moment ago may still be listed as claimed. A step that
/// releases claims right after making them (a submit that gives up on its
/// job), or soon after (a batch refused at validation, a job closing), names
/// the requests from a strongly consistent source; the index serves where
/// the claims are a lease (16 minutes) or more in the past and no such
/// source exists (a job resumed before its input file was written).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Claims<'a> {
    /// The keys this run claimed.
    Held(&'a [RequestKey]),
    /// The job's input file in S3: every request it sent.
    InputFile,
    /// The job index.
    Index,
}

/// Requests a step failed or sent back to the queue since the last
/// [`MoveTally::take`] (its run report's share of the request metrics).
#[derive(Debug, Default)]
pub struct MoveTally {
    failed: std::sync::atomic::AtomicU64,
    requeued: std::sync::atomic::AtomicU64,
}

impl MoveTally {
    fn note(&self, to: RequestStatus) {
        use std::sync::atomic::Ordering::Relaxed;
        match to {
            RequestStatus::Failed => self.failed.fetch_add(1, Relaxed),
            RequestStatus::Queued => self.requeued.fetch_add(1, Relaxed),
            _ => 0,
        };
    }

    /// (failed, requeued) so far, leaving both at zero.
    pub fn take(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.failed.swap(0, Relaxed), self.requeued.swap(0, Relaxed))
    }
}

/// How a batch of conditional updates went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppliedCounts {
    pub now: u64,
    pub already: u64,
    pub skipped: u64,
}

pub(crate) fn chunks<T>(items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut out = Vec::with_capacity(items.len().div_ceil(size));
    let mut it = items.into_iter().peekable();
    while it.peek().is_some() {
        out.push(it.by_ref().take(size).collect());
    }
    out
}
