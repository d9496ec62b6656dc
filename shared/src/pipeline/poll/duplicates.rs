//! poll: provider batches carrying the id of an open job that records
//! another batch (a second create after the first one's answer was lost)
//! are cancelled, reported and recorded on their job.

use super::{capped, PollReport, Poller};
use crate::job::{Job, JobError};
use crate::money::Money;
use crate::pipeline::PipelineError;
use crate::provider::{Batch, BatchPage, Provider, ProviderError};

/// Pages of the provider's batch listing one poll run reads looking for
/// duplicate batches (100 batches a page, newest first).
const DUPLICATE_SCAN_PAGES: usize = 20;

/// Where a newest-first scan of the batch listing goes on: after the last
/// batch of `page`, unless the listing ended or reached batches made before
/// `not_before` (unix seconds).
pub(super) fn next_page(page: &BatchPage, not_before: i64) -> Option<String> {
    let past = page
        .data
        .last()
        .and_then(|b| b.created_at)
        .is_some_and(|t| t < not_before);
    match page.data.last() {
        Some(last) if page.has_more && !past => Some(last.id.clone()),
        _ => None,
    }
}

/// How a duplicate is recorded on its job.
pub(super) struct Record<'a> {
    pub(super) batch: &'a Batch,
    pub(super) message: String,
    /// Its answers paid twice, and what they cost.
    pub(super) answers: u64,
    pub(super) cost: Money,
}

impl Poller {
    /// Looks through the provider's recent batches for ones carrying the id
    /// of an open job that records another batch: made by a second create
    /// after the first one's answer was lost and the listing had not shown
    /// it yet. Such a batch would run (and be billed) alongside the job's
    /// own; it is cancelled, reported, and recorded on its job.
    pub(super) async fn cancel_duplicates(&self, open: &[Job], report: &mut PollReport) -> Result<(), PipelineError> {
        for (name, provider) in self.providers.iter() {
            let theirs: Vec<Job> = open.iter().filter(|j| &j.provider_name == name).cloned().collect();
            if !provider.tags_batches() {
                // Its batches cannot name their job: told by size, time and
                // their results' requests (`untagged`).
                self.find_untagged_duplicates(provider.as_ref(), &theirs, open, report)
                    .await?;
                continue;
            }
            self.cancel_duplicates_of(provider.as_ref(), &theirs, report).await?;
        }
        Ok(())
    }

    async fn cancel_duplicates_of(
        &self,
        provider: &dyn Provider,
        open: &[Job],
        report: &mut PollReport,
    ) -> Result<(), PipelineError> {
        let Some(oldest) = open.iter().map(|j| j.created_at).min() else {
            return Ok(());
        };
        // Margin for clock skew between us and the provider.
        let not_before = oldest.unix_seconds() - 3600;
        let mut after: Option<String> = None;
        for _ in 0..DUPLICATE_SCAN_PAGES {
            let page = provider.list_batches(after.as_deref(), 100).await?;
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
            match next_page(&page, not_before) {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
        Ok(())
    }

    pub(super) async fn cancel_duplicate(
        &self,
        job: &Job,
        batch: &Batch,
        report: &mut PollReport,
    ) -> Result<(), PipelineError> {
        let id = batch.batch_id();
        if !batch.status.is_terminal() {
            match self.provider(job)?.cancel_batch(&id).await {
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
        // Recorded on the job, so it is reported once.
        let record = Record {
            batch,
            message: format!(
                "provider batch {id} also carried this job's id and was cancelled ({} of its requests had \
                 completed: paid twice)",
                batch.request_counts.completed
            ),
            answers: 0,
            cost: Money::ZERO,
        };
        self.record_duplicate(job, &record, 3).await?;
        Ok(())
    }

    /// Records a duplicate on its job once (with its twice-paid answers),
    /// conditioned on the job's version; another runner may have changed
    /// the job meanwhile: it is read again, up to `tries` times. False when
    /// every try lost to another writer.
    pub(super) async fn record_duplicate(
        &self,
        job: &Job,
        record: &Record<'_>,
        tries: usize,
    ) -> Result<bool, PipelineError> {
        let id = record.batch.batch_id();
        for _ in 0..tries {
            let Some(current) = self.core.ports.jobs.get_job(&job.id).await? else {
                return Ok(true);
            };
            if current.duplicate_batches.contains(&id) {
                return Ok(true);
            }
            let mut next = current.clone();
            next.duplicate_batches.push(id.clone());
            next.double_spent += record.answers;
            next.double_spent_cost += record.cost;
            next.errors.push(JobError {
                code: "duplicate_batch".into(),
                message: record.message.clone(),
                line: None,
            });
            next.errors = capped(next.errors);
            next.updated_at = self.core.now();
            if self.core.save_job(&current, next).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
