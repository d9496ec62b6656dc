//! poll: follows every open job's provider batch.
//!
//! * in flight: mirror the provider's status and counts; past the batch
//!   deadline, cancel it (its finished part is still delivered).
//! * completed, expired or cancelled: record `ingesting` with the result file
//!   ids, then copy the files to `results/{job}/…` in S3 (which fires ingest),
//!   delete them at the provider when configured, and record `copied_at`.
//! * failed: record the provider's errors; requests named by a line error end
//!   failed, the others go back to the queue (without using up an attempt
//!   when the batch never ran: a full enqueued-token queue, which also holds
//!   the model's submissions back for a while).
//! * past the deadline even after cancelling, or still answering 404 at the
//!   deadline (a 404 before it is logged as an error and waited out: a wrong
//!   key or project looks the same as a lost batch): the requests are
//!   handled as expired and the job fails.
//!
//! Jobs in `ingesting` are looked at too: copies are finished, ready jobs are
//! closed, and a file whose ingest never finished (a lost event, a function
//! that gave up) is ingested here.

mod budget;
mod duplicates;
mod failed;
mod give_up;
mod results;
mod untagged;

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::Instrument;

use serde::Serialize;

use super::ingest::Ingester;
use super::queue::{queue_levels, QueueLevel};
use super::{Core, CrashPoint, LateReport, PipelineError};
use crate::ids::{ProviderBatchId, ProviderName};
use crate::job::{Job, JobError, JobStatus, ProviderBatchStatus, ProviderKind};
use crate::provider::tally::ErrorTally;
use crate::provider::{Provider, ProviderError, Providers};
use crate::telemetry;

pub use give_up::CANCEL_GRACE;
pub use untagged::{DuplicateFound, MIN_AGE as UNTAGGED_MIN_AGE};

/// Most provider errors kept on a job row (a 50,000-line file can fail with
/// one error per line; DynamoDB items hold 400 KB).
const MAX_JOB_ERRORS: usize = 100;

/// The first errors, and one saying how many more there were.
fn capped(mut errors: Vec<JobError>) -> Vec<JobError> {
    if errors.len() > MAX_JOB_ERRORS {
        let more = errors.len() - MAX_JOB_ERRORS;
        errors.truncate(MAX_JOB_ERRORS);
        errors.push(JobError {
            code: "more_errors".into(),
            message: format!("{more} more errors not kept"),
            line: None,
        });
    }
    errors
}

/// What a poll run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PollReport {
    /// Open jobs looked at.
    pub checked: u64,
    /// Jobs whose status changed: (job, from, to).
    pub changed: Vec<StatusChange>,
    /// Result files copied to S3 (keys).
    pub copied: Vec<String>,
    /// Jobs closed in this run.
    pub closed: Vec<String>,
    /// Result files ingested by poll itself (their ingest never finished).
    pub ingested_late: Vec<String>,
    /// Provider batches carrying the id of a job that records another
    /// batch (or, at a provider whose batches carry no id, judged a job's
    /// second by size and time), cancelled in this run: (job, batch).
    pub duplicates_cancelled: Vec<(String, String)>,
    /// Ended provider batches that ran an open job's requests a second time
    /// (a provider whose batches cannot carry their job id), with what that
    /// cost; recorded on the job in this run.
    pub duplicates_ended: Vec<DuplicateFound>,
    /// Given-up batches that ended after all, and what their answers did.
    pub late: Vec<LateReport>,
    /// Jobs that could not be handled this time (they are retried next run).
    pub errors: Vec<String>,
    /// How long the oldest queued request has waited (none queued: `None`).
    pub oldest_queued_age_seconds: Option<u64>,
    /// The queue per group, as the run read it for the queue age.
    pub queue: Vec<QueueLevel>,
    /// Unfinished jobs by status as the run left them.
    pub open_jobs: BTreeMap<String, u64>,
    /// Requests this run failed (failed or expired batches).
    pub requests_failed: u64,
    /// Requests this run sent back to the queue.
    pub requests_retried: u64,
    /// The run's failed provider calls, by kind ([`ProviderError::kind`]).
    pub provider_errors: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusChange {
    pub job_id: String,
    pub from: JobStatus,
    pub to: JobStatus,
    pub provider_status: Option<String>,
}

/// The poll step, wired to its ports.
#[derive(Clone)]
pub struct Poller {
    core: Core,
    providers: Providers,
    ingester: Ingester,
    /// The failed provider calls of the running run (one run at a time).
    tally: Arc<ErrorTally>,
}

impl Poller {
    pub fn new(core: Core, providers: impl Into<Providers>, ingester: Ingester) -> Self {
        let tally = Arc::new(ErrorTally::default());
        Self {
            core,
            providers: providers.into().tallied(&tally),
            ingester,
            tally,
        }
    }

    /// The provider instance the job's batch went to.
    pub(crate) fn provider(&self, job: &Job) -> Result<&Arc<dyn Provider>, PipelineError> {
        self.providers
            .get(&job.provider_name)
            .ok_or_else(|| PipelineError::UnknownProvider(job.provider_name.to_string()))
    }

    /// What this step works with.
    pub fn core(&self) -> &Core {
        &self.core
    }

    pub async fn run(&self) -> Result<PollReport, PipelineError> {
        self.tally.take();
        self.core.moves.take();
        let mut report = self.run_steps().instrument(telemetry::step_span("poll")).await?;
        report.provider_errors = self.tally.take();
        (report.requests_failed, report.requests_retried) = self.core.moves.take();
        Ok(report)
    }

    async fn run_steps(&self) -> Result<PollReport, PipelineError> {
        let mut report = PollReport::default();
        let open = self.core.ports.jobs.open_jobs().await?;
        for job in open.iter().cloned() {
            let Some(res) = self.poll_one(&job, &mut report).await else {
                continue; // before submission: submit's business
            };
            match res {
                Ok(()) => {}
                Err(e @ PipelineError::Crashed(_)) => return Err(e),
                Err(e) => {
                    tracing::error!(job = %job.id, error = %e, "poll could not handle the job; next run retries");
                    report.errors.push(format!("{}: {e}", job.id));
                }
            }
        }
        if let Err(e) = self.cancel_duplicates(&open, &mut report).await {
            if matches!(e, PipelineError::Crashed(_)) {
                return Err(e);
            }
            tracing::error!(error = %e, "could not look for duplicate provider batches; next run retries");
            report.errors.push(format!("duplicate batches: {e}"));
        }
        // The unfinished jobs as this run left them: as it found them, with
        // the moves it made.
        let mut by_status: Vec<(JobStatus, u64)> = Vec::new();
        let mut add = |s: JobStatus, d: i64| match by_status.iter_mut().find(|(k, _)| *k == s) {
            Some((_, n)) => *n = n.saturating_add_signed(d),
            None => by_status.push((s, d.max(0) as u64)),
        };
        for j in &open {
            add(j.status, 1);
        }
        for c in &report.changed {
            add(c.from, -1);
            add(c.to, 1);
        }
        report.open_jobs = by_status
            .into_iter()
            .filter(|(s, n)| !s.is_terminal() && *n > 0)
            .map(|(s, n)| (s.as_str().to_owned(), n))
            .collect();
        report.queue = queue_levels(&self.core.ports).await?;
        report.oldest_queued_age_seconds = report.queue.iter().filter_map(|l| l.oldest_age_seconds).max();
        if let Some(age) = report.oldest_queued_age_seconds {
            // For the log reader; the alarm reads the OldestQueuedAge metric.
            tracing::info!(oldest_queued_age_seconds = age, "queue age");
        }
        Ok(report)
    }

    /// One open job's step: follow its batch, finish copying and ingesting
    /// its results, or watch a given-up batch. `None`: the job is not
    /// submitted yet (submit's business).
    async fn poll_one(&self, job: &Job, report: &mut PollReport) -> Option<Result<(), PipelineError>> {
        let span = telemetry::job_span("poll", job);
        let res = if job.status.is_in_flight() {
            self.check_batch(job.clone(), report).instrument(span).await
        } else if job.status == JobStatus::Ingesting {
            self.continue_ingesting(job.clone(), report).instrument(span).await
        } else if job.watch_until.is_some() {
            self.watch_late(job.clone(), report).instrument(span).await
        } else {
            return None;
        };
        report.checked += 1;
        Some(res)
    }

    /// Polls at once the open job whose batch at `provider` is `batch`
    /// (what a provider's webhook event asks for), with the same step the
    /// scheduled run takes, which stays the safety net. Safe to repeat and
    /// to run beside a scheduled run: every job save is conditioned on the
    /// job's version, and a finished job is no longer open. `None`: no open
    /// job has that batch (closed already, or not batchq's): nothing done.
    pub async fn poll_batch(
        &self,
        provider: &ProviderName,
        batch: &ProviderBatchId,
    ) -> Result<Option<PollReport>, PipelineError> {
        self.tally.take();
        self.core.moves.take();
        let open = self.core.ports.jobs.open_jobs().await?;
        let Some(job) = open
            .into_iter()
            .find(|j| j.provider_name == *provider && j.provider_batch_id.as_ref() == Some(batch))
        else {
            return Ok(None);
        };
        let mut report = PollReport::default();
        if let Some(res) = self.poll_one(&job, &mut report).await {
            res?;
        }
        report.provider_errors = self.tally.take();
        (report.requests_failed, report.requests_retried) = self.core.moves.take();
        Ok(Some(report))
    }

    /// [`Poller::poll_batch`] at every provider instance of `kind` (a
    /// webhook names the batch, not batchq's instance), until one has an
    /// open job with that batch.
    pub async fn poll_batch_of_kind(
        &self,
        kind: ProviderKind,
        batch: &ProviderBatchId,
    ) -> Result<Option<PollReport>, PipelineError> {
        let names: Vec<ProviderName> = self
            .providers
            .iter()
            .filter(|(_, p)| p.kind() == kind)
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            if let Some(report) = self.poll_batch(&name, batch).await? {
                return Ok(Some(report));
            }
        }
        Ok(None)
    }

    async fn save(&self, job: &Job, next: Job, report: &mut PollReport) -> Result<Option<Job>, PipelineError> {
        let from = job.status;
        let saved = self.core.save_job(job, next).await?;
        if let Some(j) = &saved {
            if j.status == JobStatus::Failed && from != JobStatus::Failed {
                // The failed-jobs alarm reads this line (infra/template.yaml).
                tracing::warn!(job = %j.id, model = %j.model, "job failed");
            }
            if j.status != from {
                report.changed.push(StatusChange {
                    job_id: j.id.to_string(),
                    from,
                    to: j.status,
                    provider_status: j.provider_status.as_ref().map(|s| s.as_str().to_owned()),
                });
            }
        }
        Ok(saved)
    }

    async fn check_batch(&self, job: Job, report: &mut PollReport) -> Result<(), PipelineError> {
        let Some(batch_id) = job.provider_batch_id.clone() else {
            return Err(PipelineError::Rejected(format!(
                "job {} is in flight without a batch id",
                job.id
            )));
        };
        let batch = match self.provider(&job)?.retrieve_batch(&batch_id).await {
            Ok(b) => b,
            Err(ProviderError::NotFound { .. }) => return self.vanished(job, report).await,
            Err(e) => return Err(e.into()),
        };
        let now = self.core.now();
        let mut next = job.clone();
        next.updated_at = now;
        next.provider_status = Some(batch.status.clone());
        if batch.request_counts.total > 0 {
            next.request_counts = batch.request_counts;
        }
        match &batch.status {
            ProviderBatchStatus::Completed | ProviderBatchStatus::Expired | ProviderBatchStatus::Cancelled => {
                next.move_to(JobStatus::Ingesting)?;
                next.output_file_id = batch.output_file_id.clone();
                next.error_file_id = batch.error_file_id.clone();
                if batch.status == ProviderBatchStatus::Expired {
                    next.errors.push(JobError {
                        code: "batch_expired".into(),
                        message: "the batch did not finish within its completion window".into(),
                        line: None,
                    });
                }
                let ran = batch.status != ProviderBatchStatus::Cancelled;
                let was = job.status;
                let Some(job) = self.save(&job, next, report).await? else {
                    return Ok(());
                };
                if was == JobStatus::Validating && ran {
                    self.learn_accepted(&job).await?;
                }
                self.core.crash(CrashPoint::PollAfterMarkIngesting)?;
                self.continue_ingesting(job, report).await
            }
            ProviderBatchStatus::Failed => self.batch_failed(job, next, &batch, report).await,
            // In flight, or a status this code does not know yet: recorded
            // and, like any unfinished batch, cancelled at the deadline and
            // given up after the grace.
            in_flight => {
                if let ProviderBatchStatus::Unknown(s) = in_flight {
                    tracing::warn!(job = %job.id, status = %s, "unknown provider batch status; handled as still running");
                }
                next.mirror(in_flight, |_| true);
                let deadline = job
                    .submitted_at
                    .unwrap_or(job.created_at)
                    .plus(self.core.config.policy.batch_deadline);
                // Every unfinished status meets the deadline, finalizing and
                // cancelling included (both have been seen to stick): the
                // batch is cancelled at the deadline and given up after the
                // grace, and poll watches it for answers it still delivers.
                if now >= deadline.plus(CANCEL_GRACE) {
                    return self
                        .give_up(
                            job,
                            "batch_deadline_exceeded",
                            format!(
                                "batch {batch_id} did not end within the deadline, even after cancelling (it was {in_flight})"
                            ),
                            report,
                        )
                        .await;
                }
                let cancelled_before = job.errors.iter().any(|e| e.code == "batch_deadline_exceeded");
                if now >= deadline && *in_flight != ProviderBatchStatus::Cancelling && !cancelled_before {
                    tracing::warn!(job = %job.id, batch = %batch_id, status = %in_flight, "batch past its deadline; cancelling");
                    let message = match self.provider(&job)?.cancel_batch(&batch_id).await {
                        Ok(b) => {
                            next.provider_status = Some(b.status.clone());
                            next.mirror(&b.status, JobStatus::is_in_flight);
                            "cancelled: unfinished past the configured deadline".to_owned()
                        }
                        Err(ProviderError::NotFound { .. }) => return self.vanished(job, report).await,
                        // A finalizing batch may refuse it: it is given up
                        // after the grace like any other.
                        Err(e @ ProviderError::Api { .. }) => {
                            tracing::warn!(job = %job.id, batch = %batch_id, error = %e, "the provider refused to cancel the batch");
                            format!("past the configured deadline; the provider refused to cancel it: {e}")
                        }
                        Err(e) => return Err(e.into()),
                    };
                    next.errors.push(JobError {
                        code: "batch_deadline_exceeded".into(),
                        message,
                        line: None,
                    });
                }
                let changed = next.status != job.status
                    || next.provider_status != job.provider_status
                    || next.request_counts != job.request_counts
                    || next.errors != job.errors;
                if changed {
                    let accepted = job.status == JobStatus::Validating
                        && matches!(next.status, JobStatus::InProgress | JobStatus::Finalizing);
                    if let Some(saved) = self.save(&job, next, report).await? {
                        if accepted {
                            self.learn_accepted(&saved).await?;
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

/// What a [`BatchPoll`] did with "poll this batch now".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollAsked {
    /// Polled here and now: an open job had that batch.
    Polled,
    /// No open job has that batch (closed already, or not batchq's).
    NoOpenJob,
    /// Handed to the poll function, which polls it on its own (in AWS: an
    /// asynchronous Lambda invocation, accepted by Lambda).
    Queued,
}

impl PollAsked {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Polled => "polled",
            Self::NoOpenJob => "no_open_job",
            Self::Queued => "queued",
        }
    }
}

/// Why "poll this batch now" did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BatchPollError {
    /// The poll itself failed.
    #[error(transparent)]
    Poll(#[from] PipelineError),
    /// Handing the poll to the poll function failed (a refused or lost
    /// Lambda invocation).
    #[error("asking the poll function failed: {0}")]
    Handoff(String),
}

/// The port the route polls through: "poll the open job whose batch, at a
/// provider of this kind, is this one, now". Wired by the front ends:
/// [`PollNow`] in `batchq serve` (polls in process), the Lambda-invoking
/// adapter in the enqueue function (the poll function polls); the route is
/// `api::provider_webhooks`.
#[async_trait::async_trait]
pub trait BatchPoll: Send + Sync {
    async fn poll_batch_now(&self, kind: ProviderKind, batch: &ProviderBatchId) -> Result<PollAsked, BatchPollError>;
}

/// The poll a provider webhook asks for ([`BatchPoll`]), in process:
/// the batch's job polled at once; with an ingester (`batchq serve`, which
/// has no S3 notification), the result files that poll copies are ingested
/// right away too.
#[derive(Clone)]
pub struct PollNow {
    pub poller: Poller,
    pub ingester: Option<Ingester>,
}

#[async_trait::async_trait]
impl BatchPoll for PollNow {
    async fn poll_batch_now(&self, kind: ProviderKind, batch: &ProviderBatchId) -> Result<PollAsked, BatchPollError> {
        let Some(report) = self.poller.poll_batch_of_kind(kind, batch).await? else {
            return Ok(PollAsked::NoOpenJob);
        };
        if let Some(ingester) = &self.ingester {
            for key in &report.copied {
                ingester.ingest_key(key).await?;
            }
        }
        Ok(PollAsked::Polled)
    }
}
