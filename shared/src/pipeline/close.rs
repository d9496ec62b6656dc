//! Closing a job once its result files are in: requests the provider
//! returned nothing for go back to the queue, then the job is `done`.

use tracing::Instrument;

use super::{Claims, Core, CrashPoint, PipelineError};
use crate::job::{Job, JobStatus};
use crate::request::RequestError;
use crate::telemetry;

impl Core {
    /// Closes `job` if every result file it expects is copied and counted.
    /// Returns the closed job, or `None` when it is not ready (or another
    /// runner changed it first). Safe to call any number of times.
    pub async fn try_close(&self, job: &Job) -> Result<Option<Job>, PipelineError> {
        if job.status != JobStatus::Ingesting || job.copied_at.is_none() {
            return Ok(None);
        }
        let output_pending = job.output_file_id.is_some() && !job.ingested_output;
        let errors_pending = job.error_file_id.is_some() && !job.ingested_errors;
        if output_pending || errors_pending {
            return Ok(None);
        }
        self.close(job).instrument(telemetry::job_span("close", job)).await
    }

    /// Closes a job whose result files are all counted.
    async fn close(&self, job: &Job) -> Result<Option<Job>, PipelineError> {
        // Every input line had a result line applied to its request: none
        // can be left. Otherwise the input file names every request sent
        // (the job index might not, so soon after the claims).
        if job.result_lines < job.input_lines {
            let error = RequestError {
                code: "missing_result".into(),
                message: "the provider's result files had no line for this request".into(),
                status_code: None,
            };
            let released = self.release_claims(job, Claims::InputFile, error).await?;
            if released > 0 {
                tracing::warn!(job = %job.id, count = released, "the provider returned no result for some requests; retrying them");
            }
        }
        self.crash(CrashPoint::CloseAfterLeftovers)?;
        let now = self.now();
        let mut next = job.clone();
        next.finish(JobStatus::Done, now)?;
        next.lease_until = None;
        let closed = self.save_job(job, next).await?;
        if let Some(j) = &closed {
            tracing::info!(
                job = %j.id,
                input_tokens = j.totals.usage.input_tokens,
                output_tokens = j.totals.usage.output_tokens,
                batch_cost = %j.totals.batch_cost,
                saved = %j.totals.saved(),
                "job done"
            );
        }
        Ok(closed)
    }
}
