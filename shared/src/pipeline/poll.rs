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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::ingest::{FileKind, Ingester};
use super::{Claims, Core, CrashPoint, LateReport, PipelineError};
use crate::budget::TokenBudget;
use crate::ids::{ProviderFileId, RequestKey};
use crate::job::{Job, JobError, JobStatus, ProviderBatchStatus};
use crate::jsonl::{Line, LineReader};
use crate::provider::{Batch, Provider, ProviderError};
use crate::request::RequestError;
use crate::store::{keys, RequestUpdate};

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

/// How long poll keeps watching a given-up batch for answers it still
/// delivers (the provider keeps output files 30 days; a cancelled batch
/// ends within minutes, a stuck one may take longer).
const LATE_WATCH: Duration = Duration::from_secs(3 * 86_400);

/// Pages of the provider's batch listing one poll run reads looking for
/// duplicate batches (100 batches a page, newest first).
const DUPLICATE_SCAN_PAGES: usize = 20;

/// After the deadline a cancelled batch gets this long to reach a final
/// state before batchq stops waiting for it.
pub const CANCEL_GRACE: Duration = Duration::from_secs(6 * 3600);

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
    /// batch, cancelled in this run: (job, batch).
    pub duplicates_cancelled: Vec<(String, String)>,
    /// Given-up batches that ended after all, and what their answers did.
    pub late: Vec<LateReport>,
    /// Jobs that could not be handled this time (they are retried next run).
    pub errors: Vec<String>,
    /// How long the oldest queued request has waited (none queued: `None`).
    pub oldest_queued_age_seconds: Option<u64>,
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
    provider: Arc<dyn Provider>,
    ingester: Ingester,
}

impl Poller {
    pub fn new(core: Core, provider: Arc<dyn Provider>, ingester: Ingester) -> Self {
        Self {
            core,
            provider,
            ingester,
        }
    }

    pub async fn run(&self) -> Result<PollReport, PipelineError> {
        let mut report = PollReport::default();
        let open = self.core.jobs.open_jobs().await?;
        for job in open.iter().cloned() {
            let res = if job.status.is_in_flight() {
                report.checked += 1;
                self.check_batch(job.clone(), &mut report).await
            } else if job.status == JobStatus::Ingesting {
                report.checked += 1;
                self.continue_ingesting(job.clone(), &mut report).await
            } else if job.watch_until.is_some() {
                report.checked += 1;
                self.watch_late(job.clone(), &mut report).await
            } else {
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
        report.oldest_queued_age_seconds = self.oldest_queued_age().await?;
        if let Some(age) = report.oldest_queued_age_seconds {
            // The queue-age alarm reads this line (infra/template.yaml).
            tracing::info!(oldest_queued_age_seconds = age, "queue age");
        }
        Ok(report)
    }

    /// Looks through the provider's recent batches for ones carrying the id
    /// of an open job that records another batch: made by a second create
    /// after the first one's answer was lost and the listing had not shown
    /// it yet. Such a batch would run (and be billed) alongside the job's
    /// own; it is cancelled, reported, and recorded on its job.
    async fn cancel_duplicates(&self, open: &[Job], report: &mut PollReport) -> Result<(), PipelineError> {
        let Some(oldest) = open.iter().map(|j| j.created_at).min() else {
            return Ok(());
        };
        // Margin for clock skew between us and the provider.
        let not_before = oldest.unix_seconds() - 3600;
        let mut after: Option<String> = None;
        for _ in 0..DUPLICATE_SCAN_PAGES {
            let page = self.provider.list_batches(after.as_deref(), 100).await?;
            for b in &page.data {
                let Some(job) = b
                    .job_id_metadata()
                    .and_then(|id| open.iter().find(|j| j.id.as_str() == id))
                else {
                    continue; // not a batch of an open job of this deployment
                };
                let theirs = job.provider_batch_id.as_ref().is_some_and(|own| own.as_str() != b.id);
                if theirs && !job.duplicate_batches.iter().any(|d| d.as_str() == b.id) {
                    self.cancel_duplicate(job, b, report).await?;
                }
            }
            let past = page
                .data
                .last()
                .and_then(|b| b.created_at)
                .is_some_and(|t| t < not_before);
            match page.data.last() {
                Some(last) if page.has_more && !past => after = Some(last.id.clone()),
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    async fn cancel_duplicate(&self, job: &Job, batch: &Batch, report: &mut PollReport) -> Result<(), PipelineError> {
        let id = batch.batch_id();
        if !batch.status.is_terminal() {
            match self.provider.cancel_batch(&id).await {
                Ok(_) | Err(ProviderError::NotFound { .. }) => {}
                // It ended meanwhile: nothing left to stop.
                Err(ProviderError::Api { status: 400 | 409, .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        tracing::error!(
            job = %job.id,
            batch = %id,
            own_batch = ?job.provider_batch_id,
            status = %batch.status,
            completed = batch.request_counts.completed,
            "a second provider batch carries this job's id (a create whose answer was lost); cancelled"
        );
        report.duplicates_cancelled.push((job.id.to_string(), id.to_string()));
        // Recorded on the job, so it is reported once; another runner may
        // have changed the job meanwhile: read it again.
        for _ in 0..3 {
            let Some(current) = self.core.jobs.get_job(&job.id).await? else {
                return Ok(());
            };
            if current.duplicate_batches.contains(&id) {
                return Ok(());
            }
            let mut next = current.clone();
            next.duplicate_batches.push(id.clone());
            next.errors.push(JobError {
                code: "duplicate_batch".into(),
                message: format!(
                    "provider batch {id} also carried this job's id and was cancelled ({} of its requests had \
                     completed: paid twice)",
                    batch.request_counts.completed
                ),
                line: None,
            });
            next.errors = capped(next.errors);
            next.updated_at = self.core.now();
            if self.core.save_job(&current, next).await?.is_some() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Age of the oldest queued request over all groups.
    async fn oldest_queued_age(&self) -> Result<Option<u64>, PipelineError> {
        let now = self.core.now();
        let mut oldest: Option<u64> = None;
        for g in self.core.requests.queue_groups().await? {
            if let Some(first) = self.core.requests.queued(&g.group, None, 1).await?.items.first() {
                let age = now.since(first.created_at).as_secs();
                oldest = Some(oldest.map_or(age, |o| o.max(age)));
            }
        }
        Ok(oldest)
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
        let batch = match self.provider.retrieve_batch(&batch_id).await {
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
                    let message = match self.provider.cancel_batch(&batch_id).await {
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

    /// A batch that failed (validation, or the provider's token queue was full).
    async fn batch_failed(
        &self,
        job: Job,
        mut next: Job,
        batch: &Batch,
        report: &mut PollReport,
    ) -> Result<(), PipelineError> {
        let now = self.core.now();
        let errors = batch.job_errors();
        let token_limit = batch.is_token_limit_exceeded();
        // Refused alone, with nothing else of the model out: the request may
        // be larger than the limit itself, so the refusal uses an attempt
        // (it ends failed after `max_attempts` instead of going round forever).
        let refused_alone = token_limit && job.input_lines == 1 && job.tokens_in_flight_before == 0;
        let line_errors: HashMap<u64, &JobError> = errors.iter().filter_map(|e| e.line.map(|l| (l, e))).collect();
        let by_key = self.keys_of_lines(&job, &line_errors).await?;
        let summary = errors
            .first()
            .map(|e| RequestError {
                code: e.code.clone(),
                message: e.message.clone(),
                status_code: None,
            })
            .unwrap_or_else(|| RequestError {
                code: "batch_failed".into(),
                message: "the provider failed the batch without saying why".into(),
                status_code: None,
            });
        // Named by the input file: the job index may not list a request
        // claimed a moment before the provider refused the batch.
        let updates: Vec<RequestUpdate> = self
            .core
            .claimed_requests(&job, Claims::InputFile)
            .await?
            .iter()
            .map(|req| match by_key.get(&req.key) {
                // The provider named this line: the request itself is at fault.
                Some(e) => RequestUpdate::fail(
                    req,
                    &job.id,
                    RequestError {
                        code: e.code.clone(),
                        message: e.message.clone(),
                        status_code: None,
                    },
                    now,
                ),
                None if refused_alone => self.core.retry_or_fail(
                    req,
                    &job.id,
                    RequestError {
                        code: "token_limit_exceeded".into(),
                        message: format!(
                            "the provider refused this request alone for the model's enqueued-token limit: \
                             it is larger than the limit (about {} tokens), or other work holds the limit ({})",
                            job.tokens, summary.message
                        ),
                        status_code: None,
                    },
                    now,
                ),
                // The batch never ran, and not because of this request.
                None if token_limit || !by_key.is_empty() => {
                    RequestUpdate::requeue_free(req, &job.id, Some(summary.clone()), now)
                }
                None => self.core.retry_or_fail(req, &job.id, summary.clone(), now),
            })
            .collect();
        self.core.apply_all(updates).await?;
        self.core.crash(CrashPoint::PollAfterFailedRequests)?;
        next.finish(JobStatus::Failed, now)?;
        next.errors = capped(errors);
        if self.save(&job, next, report).await?.is_some() {
            // Learnt once: by the run that failed the job.
            if token_limit {
                let message = summary.message.as_str();
                self.learn_budget(&job, |b, hold| {
                    b.refused(
                        job.tokens,
                        job.tokens_in_flight_before,
                        job.budget_refusals_seen,
                        message,
                        hold,
                        now,
                    )
                })
                .await?;
            }
            self.delete_provider_files(std::slice::from_ref(&job.provider_file_id))
                .await;
        }
        Ok(())
    }

    /// Updates the model's enqueued-token budget with `learn`.
    async fn learn_budget(
        &self,
        job: &Job,
        learn: impl FnOnce(&TokenBudget, Duration) -> TokenBudget,
    ) -> Result<(), PipelineError> {
        let now = self.core.now();
        let config = &self.core.config;
        let configured = config.limits.enqueued_token_limit(job.model.as_str());
        let current = self
            .core
            .jobs
            .token_budgets()
            .await?
            .remove(&job.model)
            .unwrap_or_else(|| TokenBudget::initial(job.model.clone(), configured, now));
        let next = learn(&current, config.policy.token_limit_hold);
        if next != current {
            if next.refusals_in_row > 0 {
                tracing::warn!(
                    job = %job.id,
                    model = %job.model,
                    batch_tokens = job.tokens,
                    in_flight_tokens = job.tokens_in_flight_before,
                    budget = next.limit,
                    stated_limit = next.stated_limit,
                    refusals_in_row = next.refusals_in_row,
                    "the provider refused a batch for the model's enqueued-token limit; budget lowered"
                );
            } else if next.limit != current.limit {
                tracing::info!(model = %job.model, budget = next.limit, "batch accepted; enqueued-token budget raised");
            }
            self.core.jobs.save_token_budget(&next).await?;
        }
        Ok(())
    }

    /// The provider took the job's batch into its queue: the model's budget
    /// may grow (learnt once, by the run that recorded the move).
    async fn learn_accepted(&self, job: &Job) -> Result<(), PipelineError> {
        let now = self.core.now();
        let configured = self.core.config.limits.enqueued_token_limit(job.model.as_str());
        self.learn_budget(job, |b, _| b.accepted(configured, now)).await
    }

    /// Maps input line numbers (1-based) to the requests on those lines, by
    /// reading the job's input file back from S3.
    async fn keys_of_lines(
        &self,
        job: &Job,
        lines: &HashMap<u64, &JobError>,
    ) -> Result<HashMap<RequestKey, JobError>, PipelineError> {
        let mut out = HashMap::new();
        if lines.is_empty() {
            return Ok(out);
        }
        let (_, stream) = self.core.objects.open(&job.input_key).await?;
        let mut reader = LineReader::new(stream, usize::MAX);
        while let Some(line) = reader.next_line().await? {
            let Line::Data { number, bytes } = line else { continue };
            let Some(e) = lines.get(&number) else { continue };
            // Lines are written as {"custom_id":"<key>",…}: the key sits at a fixed offset.
            let key = bytes
                .get(14..46)
                .and_then(|k| std::str::from_utf8(k).ok())
                .and_then(|k| RequestKey::parse(k).ok());
            match key {
                Some(k) => {
                    out.insert(k, (*e).clone());
                }
                None => tracing::warn!(job = %job.id, line = number, "input line without a readable custom_id"),
            }
            if out.len() == lines.len() {
                break;
            }
        }
        Ok(out)
    }

    /// The provider answers 404 for the job's batch. That is what a lost
    /// batch looks like, but also what a wrong key, organization or project
    /// looks like, and giving up then would send every request of every open
    /// batch again while the originals run on: paid twice. So a 404 is only
    /// believed at the batch's deadline (plus the cancel grace), when the
    /// batch would be given up anyway; until then each poll logs it as an
    /// error (the ERROR-line alarm fires within minutes of a misconfiguration)
    /// and records `not_found` as the provider's status.
    async fn vanished(&self, job: Job, report: &mut PollReport) -> Result<(), PipelineError> {
        let batch = job
            .provider_batch_id
            .as_ref()
            .map(|b| b.to_string())
            .unwrap_or_else(|| "?".into());
        let now = self.core.now();
        let deadline = job
            .submitted_at
            .unwrap_or(job.created_at)
            .plus(self.core.config.policy.batch_deadline)
            .plus(CANCEL_GRACE);
        if now < deadline {
            tracing::error!(
                job = %job.id,
                batch = %batch,
                give_up_in_secs = deadline.since(now).as_secs(),
                "the provider answers 404 for this batch: a wrong API key, organization or project, or a lost batch; \
                 it is given up only at its deadline"
            );
            let not_found = Some(ProviderBatchStatus::parse("not_found"));
            if job.provider_status != not_found {
                let mut next = job.clone();
                next.provider_status = not_found;
                next.updated_at = now;
                self.save(&job, next, report).await?;
            }
            return Ok(());
        }
        let message = format!("the provider no longer knows batch {batch}");
        self.give_up(job, "batch_not_found", message, report).await
    }

    /// The provider lost the batch, or it never ended: every request still in
    /// the job is handled as expired, and the job fails.
    async fn give_up(
        &self,
        job: Job,
        code: &str,
        message: String,
        report: &mut PollReport,
    ) -> Result<(), PipelineError> {
        tracing::warn!(job = %job.id, code, "giving up on the provider batch");
        let error = RequestError {
            code: code.to_owned(),
            message: message.clone(),
            status_code: None,
        };
        self.core.release_claims(&job, Claims::InputFile, error).await?;
        self.core.crash(CrashPoint::PollAfterFailedRequests)?;
        let now = self.core.now();
        let mut next = job.clone();
        next.finish(JobStatus::Failed, now)?;
        next.errors.push(JobError {
            code: code.to_owned(),
            message,
            line: None,
        });
        // The batch may still end and deliver answers the provider bills:
        // poll watches it a while longer (see `late`).
        next.watch_until = job.provider_batch_id.as_ref().map(|_| now.plus(LATE_WATCH));
        self.save(&job, next, report).await?;
        Ok(())
    }

    /// A job given up while its batch had not ended: when the batch ends,
    /// its answers are applied (see `late`); past the watch, or when the
    /// provider no longer knows the batch at the watch's end, poll stops
    /// looking.
    async fn watch_late(&self, job: Job, report: &mut PollReport) -> Result<(), PipelineError> {
        let (Some(batch_id), Some(until)) = (job.provider_batch_id.clone(), job.watch_until) else {
            return Ok(());
        };
        let now = self.core.now();
        let batch = match self.provider.retrieve_batch(&batch_id).await {
            Ok(b) => Some(b),
            Err(ProviderError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let output = match &batch {
            Some(b) if b.status.is_terminal() => b.output_file_id.clone(),
            _ if now < until => return Ok(()), // not ended yet: look again next run
            _ => {
                tracing::warn!(job = %job.id, batch = %batch_id, "the given-up batch did not end within the watch; no longer watched");
                None
            }
        };
        let stream = match &output {
            Some(id) => Some(self.provider.file_content(id).await?),
            None => None,
        };
        let late = self.ingester.ingest_late(&job, stream).await?;
        if late.counted {
            if let Some(b) = &batch {
                self.delete_provider_files(&[b.output_file_id.clone(), b.error_file_id.clone()])
                    .await;
            }
        }
        report.late.push(late);
        Ok(())
    }

    /// Copies missing result files, records the copies, closes the job when
    /// everything is counted, and ingests files whose ingest never finished.
    async fn continue_ingesting(&self, mut job: Job, report: &mut PollReport) -> Result<(), PipelineError> {
        if job.copied_at.is_none() {
            let files = [
                (job.output_file_id.clone(), keys::job_output(&job.id), FileKind::Output),
                (job.error_file_id.clone(), keys::job_errors(&job.id), FileKind::Errors),
            ];
            for (id, key, kind) in files {
                let Some(id) = id else { continue };
                if self.core.objects.head(&key).await?.is_none() {
                    self.copy_file(&id, &key).await?;
                    report.copied.push(key);
                }
                if kind == FileKind::Output {
                    self.core.crash(CrashPoint::PollAfterCopyOutput)?;
                }
            }
            self.delete_provider_files(&[
                job.provider_file_id.clone(),
                job.output_file_id.clone(),
                job.error_file_id.clone(),
            ])
            .await;
            self.core.crash(CrashPoint::PollAfterCopies)?;
            let now = self.core.now();
            let mut next = job.clone();
            next.copied_at = Some(now);
            next.updated_at = now;
            match self.save(&job, next, report).await? {
                Some(saved) => job = saved,
                // Ingest counted a file meanwhile: read the job again.
                None => match self.core.jobs.get_job(&job.id).await? {
                    Some(fresh) if fresh.copied_at.is_none() && fresh.status == JobStatus::Ingesting => {
                        let mut next = fresh.clone();
                        next.copied_at = Some(now);
                        next.updated_at = now;
                        match self.save(&fresh, next, report).await? {
                            Some(saved) => job = saved,
                            None => return Ok(()),
                        }
                    }
                    Some(fresh) => job = fresh,
                    None => return Ok(()),
                },
            }
        }
        if let Some(closed) = self.core.try_close(&job).await? {
            report.closed.push(closed.id.to_string());
            report.changed.push(StatusChange {
                job_id: closed.id.to_string(),
                from: job.status,
                to: closed.status,
                provider_status: closed.provider_status.as_ref().map(|s| s.as_str().to_owned()),
            });
            return Ok(());
        }
        // Ingest normally runs from the S3 event within seconds; a file still
        // uncounted a lease later lost its event or its ingest gave up.
        let now = self.core.now();
        let stale = job
            .copied_at
            .is_some_and(|c| now.since(c) >= self.core.config.policy.job_lease);
        if job.status == JobStatus::Ingesting && stale {
            for kind in [FileKind::Output, FileKind::Errors] {
                let expected = match kind {
                    FileKind::Output => job.output_file_id.is_some() && !job.ingested_output,
                    FileKind::Errors => job.error_file_id.is_some() && !job.ingested_errors,
                };
                if expected {
                    tracing::warn!(job = %job.id, file = kind.as_str(), "result file never finished ingesting; ingesting it now");
                    let r = self.ingester.ingest_file(job.clone(), kind).await?;
                    report.ingested_late.push(r.key.clone());
                    if r.closed {
                        report.closed.push(job.id.to_string());
                    }
                    match self.core.jobs.get_job(&job.id).await? {
                        Some(fresh) => job = fresh,
                        None => return Ok(()),
                    }
                }
            }
        }
        Ok(())
    }

    /// Streams a provider file into S3 without holding it in memory.
    async fn copy_file(&self, id: &ProviderFileId, key: &str) -> Result<(), PipelineError> {
        let mut stream = self.provider.file_content(id).await?;
        let mut writer = self.core.objects.writer(key, "application/jsonl").await?;
        let res = pump(&mut stream, writer.as_mut()).await;
        match res {
            Ok(()) => {
                let info = writer.finish().await?;
                tracing::info!(file = %id, key, bytes = info.bytes, "result file copied to S3");
                Ok(())
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(key, error = %abort, "could not abort the result copy");
                }
                Err(e)
            }
        }
    }

    /// Deletes files at the provider when configured; failures are logged,
    /// not fatal (the files are safe in S3 either way).
    async fn delete_provider_files(&self, ids: &[Option<ProviderFileId>]) {
        if !self.core.config.policy.delete_provider_files {
            return;
        }
        for id in ids.iter().flatten() {
            match self.provider.delete_file(id).await {
                Ok(()) | Err(ProviderError::NotFound { .. }) => {}
                Err(e) => tracing::warn!(file = %id, error = %e, "could not delete the provider file; it stays there"),
            }
        }
    }
}

async fn pump(
    stream: &mut crate::store::ByteStream,
    writer: &mut dyn crate::store::ObjectWriter,
) -> Result<(), PipelineError> {
    use futures::StreamExt;
    while let Some(chunk) = stream.next().await {
        writer.write(&chunk?).await?;
    }
    Ok(())
}
