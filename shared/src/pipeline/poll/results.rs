//! poll: a finished batch's result files — copied to `results/{job}/…` in
//! S3 (which fires ingest), deleted at the provider when configured — and
//! jobs in `ingesting` closed when everything is counted, or their files
//! ingested here when their ingest never finished.

use tracing::Instrument;

use super::{PollReport, Poller, StatusChange};
use crate::ids::ProviderFileId;
use crate::job::{Job, JobStatus};
use crate::keys;
use crate::pipeline::ingest::FileKind;
use crate::pipeline::{CrashPoint, PipelineError};
use crate::provider::ProviderError;
use crate::telemetry;

impl Poller {
    /// Copies missing result files, records the copies, closes the job when
    /// everything is counted, and ingests files whose ingest never finished.
    pub(super) async fn continue_ingesting(&self, mut job: Job, report: &mut PollReport) -> Result<(), PipelineError> {
        if job.copied_at.is_none() {
            let files = [
                (job.output_file_id.clone(), keys::job_output(&job.id), FileKind::Output),
                (job.error_file_id.clone(), keys::job_errors(&job.id), FileKind::Errors),
            ];
            for (id, key, kind) in files {
                let Some(id) = id else { continue };
                if self.core.ports.objects.head(&key).await?.is_none() {
                    self.copy_file(&job, &id, &key).await?;
                    report.copied.push(key);
                }
                if kind == FileKind::Output {
                    self.core.crash(CrashPoint::PollAfterCopyOutput)?;
                }
            }
            self.delete_provider_files(
                &job,
                &[
                    job.provider_file_id.clone(),
                    job.output_file_id.clone(),
                    job.error_file_id.clone(),
                ],
            )
            .await;
            self.core.crash(CrashPoint::PollAfterCopies)?;
            let now = self.core.now();
            let mut next = job.clone();
            next.copied_at = Some(now);
            next.updated_at = now;
            match self.save(&job, next, report).await? {
                Some(saved) => job = saved,
                // Ingest counted a file meanwhile: read the job again.
                None => match self.core.ports.jobs.get_job(&job.id).await? {
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
                    let r = self
                        .ingester
                        .ingest_file(job.clone(), kind)
                        .instrument(telemetry::job_span("ingest", &job))
                        .await?;
                    report.ingested_late.push(r.key.clone());
                    if r.closed {
                        report.closed.push(job.id.to_string());
                    }
                    match self.core.ports.jobs.get_job(&job.id).await? {
                        Some(fresh) => job = fresh,
                        None => return Ok(()),
                    }
                }
            }
        }
        Ok(())
    }

    /// Streams a provider file into S3 without holding it in memory.
    pub(super) async fn copy_file(&self, job: &Job, id: &ProviderFileId, key: &str) -> Result<(), PipelineError> {
        let mut stream = self.provider(job)?.file_content(id).await?;
        let mut writer = self.core.ports.objects.writer(key, "application/jsonl").await?;
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
    pub(super) async fn delete_provider_files(&self, job: &Job, ids: &[Option<ProviderFileId>]) {
        if !self.core.config.policy.delete_provider_files {
            return;
        }
        let provider = match self.provider(job) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "cannot delete the provider files; they stay there");
                return;
            }
        };
        for id in ids.iter().flatten() {
            match provider.delete_file(id).await {
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
