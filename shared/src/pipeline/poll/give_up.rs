//! poll: giving up on a provider batch — one the provider no longer knows
//! (a 404 believed only at the deadline), or one that did not end within the
//! deadline even after cancelling — and watching a given-up batch for the
//! answers it still delivers (see `late`).

use std::time::Duration;

use tracing::Instrument;

use super::{PollReport, Poller};
use crate::job::{Job, JobError, JobStatus, ProviderBatchStatus};
use crate::pipeline::{Claims, CrashPoint, PipelineError};
use crate::provider::ProviderError;
use crate::request::RequestError;
use crate::telemetry;

/// How long poll keeps watching a given-up batch for answers it still
/// delivers (the provider keeps output files 30 days; a cancelled batch
/// ends within minutes, a stuck one may take longer).
const LATE_WATCH: Duration = Duration::from_secs(3 * 86_400);

/// After the deadline a cancelled batch gets this long to reach a final
/// state before batchq stops waiting for it.
pub const CANCEL_GRACE: Duration = Duration::from_secs(6 * 3600);

impl Poller {
    /// The provider answers 404 for the job's batch. That is what a lost
    /// batch looks like, but also what a wrong key, organization or project
    /// looks like, and giving up then would send every request of every open
    /// batch again while the originals run on: paid twice. So a 404 is only
    /// believed at the batch's deadline (plus the cancel grace), when the
    /// batch would be given up anyway; until then each poll logs it as an
    /// error (the ERROR-line alarm fires within minutes of a misconfiguration)
    /// and records `not_found` as the provider's status.
    pub(super) async fn vanished(&self, job: Job, report: &mut PollReport) -> Result<(), PipelineError> {
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
    pub(super) async fn give_up(
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
    pub(super) async fn watch_late(&self, job: Job, report: &mut PollReport) -> Result<(), PipelineError> {
        let (Some(batch_id), Some(until)) = (job.provider_batch_id.clone(), job.watch_until) else {
            return Ok(());
        };
        let now = self.core.now();
        let batch = match self.provider(&job)?.retrieve_batch(&batch_id).await {
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
            Some(id) => Some(self.provider(&job)?.file_content(id).await?),
            None => None,
        };
        let late = self
            .ingester
            .ingest_late(&job, stream)
            .instrument(telemetry::job_span("late", &job))
            .await?;
        if late.counted {
            if let Some(b) = &batch {
                self.delete_provider_files(&job, &[b.output_file_id.clone(), b.error_file_id.clone()])
                    .await;
            }
        }
        report.late.push(late);
        Ok(())
    }
}
