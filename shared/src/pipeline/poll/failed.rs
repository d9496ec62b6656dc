//! poll: a batch the provider failed (validation, or its enqueued-token
//! queue was full). Requests named by a line error end failed, the others go
//! back to the queue (without using up an attempt when the batch never ran).

use std::collections::HashMap;

use super::{capped, PollReport, Poller};
use crate::ids::RequestKey;
use crate::job::{Job, JobError, JobStatus};
use crate::jsonl::{Line, LineReader};
use crate::pipeline::{Claims, CrashPoint, PipelineError};
use crate::provider::Batch;
use crate::request::RequestError;
use crate::transition::RequestUpdate;

impl Poller {
    /// A batch that failed (validation, or the provider's token queue was full).
    pub(super) async fn batch_failed(
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
            self.delete_provider_files(&job, std::slice::from_ref(&job.provider_file_id))
                .await;
        }
        Ok(())
    }

    /// Maps input line numbers (1-based) to the requests on those lines, by
    /// reading the job's input file back from S3.
    pub(super) async fn keys_of_lines(
        &self,
        job: &Job,
        lines: &HashMap<u64, &JobError>,
    ) -> Result<HashMap<RequestKey, JobError>, PipelineError> {
        let mut out = HashMap::new();
        if lines.is_empty() {
            return Ok(out);
        }
        let (_, stream) = self.core.ports.objects.open(&job.input_key).await?;
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
}
