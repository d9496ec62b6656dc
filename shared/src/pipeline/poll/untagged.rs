//! poll: duplicate batches at a provider whose batches cannot name their
//! job (Anthropic's message batches take no metadata and no idempotency
//! key). A create whose answer was lost is recovered by count and time
//! (`Provider::find_batch`); where that fails (the listing lagged longer
//! than the configured lag, or two jobs of one size lost their answers at
//! once) a second batch of the same requests runs and is billed.
//!
//! Each run lists the provider's recent batches (newest first, back to the
//! oldest open job of that provider less [`LIST_SKEW`]). A batch no open job
//! records (as its own or as a known duplicate) is a suspect:
//!
//! * **ended**: its results name their requests. The first successful line's
//!   request, claimed or finished by an open job `J` that records another
//!   batch of the same size made around the same time, makes the suspect
//!   `J`'s duplicate (certain: those answers are `J`'s requests, billed a
//!   second time). Its successful answers are priced, counted on `J`
//!   (`double_spent`, `double_spent_cost`) and in the savings as cost without
//!   a saving, the batch is recorded on `J`, reported, logged, and its
//!   results deleted at the provider when `BATCHQ_DELETE_PROVIDER_FILES`.
//!   Nothing of it is applied to a request: each request ends once, by `J`.
//! * **in progress**: nothing of it can be read yet. One of exactly the
//!   size of an open job `J` that records another batch, created between
//!   `J`'s creation and an hour after its submission, at least
//!   [`MIN_AGE`] old, while no open job of that size is still creating its
//!   batch, is most likely `J`'s duplicate: it is cancelled (billing stops
//!   for what has not run), recorded on `J` and reported. This is a
//!   judgement, not a certainty: see [`Poller::in_progress_duplicate_of`].
//!
//! A batch of a job already done is not recognised by its id (the job
//! store cannot be asked by batch id); it is told apart because its
//! requests were finished by that job, which is not open, and because its
//! time precedes the open jobs' (the time window).

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

use super::duplicates::{next_page, Record};
use super::{PollReport, Poller};
use crate::ids::ProviderBatchId;
use crate::job::Job;
use crate::jsonl::{Line, LineReader};
use crate::money::Money;
use crate::pipeline::ingest::TenantTotals;
use crate::pipeline::PipelineError;
use crate::provider::{Batch, Outcome, Provider, ProviderError, ResultLine};
use crate::request::RequestStatus;

/// Pages of the provider's batch listing one run reads (100 batches a page).
const SCAN_PAGES: usize = 20;
/// Margin for clock skew when bounding the listing (as the OpenAI scan).
const LIST_SKEW: i64 = 3600;
/// Margin for clock skew between us and the provider when judging whether
/// a batch was made after a job's row (a job's row is written before its
/// first create).
const DECISION_SKEW: i64 = 300;
/// How long after a job's submission a second batch of it can still be
/// made: the recording run's retries and listing waits take minutes; an
/// hour bounds them with room.
const CREATE_WINDOW: i64 = 3600;
/// An in-progress suspect younger than this is left to a later run: a job
/// created after this run read the open jobs (or not yet in the job index)
/// may be creating it.
pub const MIN_AGE: Duration = Duration::from_secs(120);
/// Result lines read at most looking for a successful one.
const SAMPLE_LINES: u64 = 1000;
/// Lines priced per store read.
const CHUNK_LINES: usize = 100;

/// A duplicate batch found ended: what it cost a second time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DuplicateFound {
    pub job_id: String,
    pub batch_id: String,
    /// Successful answers in it (each paid twice).
    pub answers: u64,
    /// What they cost at batch prices (priced models only).
    pub double_spent_cost: Money,
}

impl Poller {
    /// Looks for duplicates among `provider`'s recent batches (a provider
    /// whose batches do not carry their job id). `theirs`: the open jobs of
    /// this provider instance; `open`: every open job.
    pub(super) async fn find_untagged_duplicates(
        &self,
        provider: &dyn Provider,
        theirs: &[Job],
        open: &[Job],
        report: &mut PollReport,
    ) -> Result<(), PipelineError> {
        let Some(oldest) = theirs.iter().map(|j| j.created_at).min() else {
            return Ok(());
        };
        let recorded: HashSet<&str> = open
            .iter()
            .flat_map(|j| j.provider_batch_id.iter().chain(j.duplicate_batches.iter()))
            .map(ProviderBatchId::as_str)
            .collect();
        let not_before = oldest.unix_seconds() - LIST_SKEW;
        let mut after: Option<String> = None;
        for _ in 0..SCAN_PAGES {
            let page = provider.list_batches(after.as_deref(), 100).await?;
            for b in &page.data {
                if recorded.contains(b.id.as_str()) || b.created_at.is_some_and(|t| t < not_before) {
                    continue;
                }
                if b.status.is_terminal() {
                    self.ended_suspect(provider, theirs, b, report).await?;
                } else if let Some(job) = self.in_progress_duplicate_of(theirs, b) {
                    self.cancel_untagged(provider, job, b, report).await?;
                }
            }
            match next_page(&page, not_before) {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// Whether `batch` was made in the window of `job`'s creates: after the
    /// job's row was written (less the skew), at most [`CREATE_WINDOW`]
    /// after its submission was recorded.
    fn in_create_window(job: &Job, batch: &Batch) -> bool {
        let Some(t) = batch.created_at else {
            return false;
        };
        let from = job.created_at.unix_seconds() - DECISION_SKEW;
        let to = job.submitted_at.unwrap_or(job.created_at).unix_seconds() + CREATE_WINDOW;
        (from..=to).contains(&t)
    }

    /// Whether `job` may have made `batch` as a second one: it records
    /// another batch, has the batch's size, and `batch` was made in its
    /// window.
    fn could_be_second_of(job: &Job, batch: &Batch) -> bool {
        job.provider_batch_id
            .as_ref()
            .is_some_and(|own| own.as_str() != batch.id)
            && job.input_lines == batch.request_counts.total
            && Self::in_create_window(job, batch)
    }

    /// The open job an unfinished suspect is most likely a second batch of.
    ///
    /// Safe enough, and bounded: the batch must have exactly the line count
    /// of an open job of this provider instance that already records its own
    /// batch, and have been made between that job's creation and an hour
    /// after its submission. A batch of another system in the same workspace
    /// would have to have that very count within that window to be taken
    /// for one; a batch of ours still being created is excluded (no open job
    /// of that size may be without its batch, and a batch younger than
    /// [`MIN_AGE`] waits for the next run, so a job too new for this run's
    /// list of open jobs cannot be creating it). Cancelling stops only what
    /// has not run; the answers it already gave stay with it.
    fn in_progress_duplicate_of<'a>(&self, theirs: &'a [Job], batch: &Batch) -> Option<&'a Job> {
        let created = batch.created_at?;
        if created > self.core.now().unix_seconds() - MIN_AGE.as_secs() as i64 {
            return None;
        }
        let lines = batch.request_counts.total;
        if lines == 0 {
            return None;
        }
        // A job of this size without its batch yet may be creating this one.
        if theirs
            .iter()
            .any(|j| j.provider_batch_id.is_none() && j.input_lines == lines)
        {
            return None;
        }
        // Of several candidates, the newest made before the batch.
        theirs
            .iter()
            .filter(|j| Self::could_be_second_of(j, batch))
            .max_by_key(|j| j.created_at)
    }

    /// An unfinished batch judged a job's second: cancelled, recorded, reported.
    async fn cancel_untagged(
        &self,
        provider: &dyn Provider,
        job: &Job,
        batch: &Batch,
        report: &mut PollReport,
    ) -> Result<(), PipelineError> {
        let id = batch.batch_id();
        match provider.cancel_batch(&id).await {
            Ok(_) | Err(ProviderError::NotFound { .. }) => {}
            // It ended meanwhile: a later run reads it as an ended suspect
            // (it is not recorded here, so it stays a suspect).
            Err(ProviderError::Api { status: 400 | 409, .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        tracing::error!(
            job = %job.id,
            batch = %id,
            own_batch = ?job.provider_batch_id,
            lines = batch.request_counts.total,
            status = %batch.status,
            "an unrecorded provider batch of this job's size, made while it was created, is most likely a second \
             create after a lost answer; cancelled"
        );
        report.duplicates_cancelled.push((job.id.to_string(), id.to_string()));
        self.record_untagged(
            job,
            Record {
                batch,
                message: format!(
                    "provider batch {id} had this job's {} requests, was made while its batch was created, and \
                     no job recorded it: most likely a second create after a lost answer; cancelled (answers \
                     it gave before stopping were paid twice and are not counted)",
                    batch.request_counts.total
                ),
                answers: 0,
                cost: Money::ZERO,
            },
        )
        .await
    }

    /// An ended suspect: its first successful answer tells whose requests
    /// it ran.
    async fn ended_suspect(
        &self,
        provider: &dyn Provider,
        theirs: &[Job],
        batch: &Batch,
        report: &mut PollReport,
    ) -> Result<(), PipelineError> {
        let Some(file) = batch.output_file_id.clone() else {
            return Ok(()); // no results: nothing ran, or they are gone
        };
        let endpoint = theirs
            .first()
            .map(|j| j.endpoint)
            .unwrap_or(crate::request::Endpoint::Messages);
        let Some(first) = self.first_answer(provider, endpoint, batch).await? else {
            return Ok(()); // no successful answer: nothing billed, or not ours
        };
        let Some(req) = self.core.ports.requests.get(&first.key).await? else {
            return Ok(()); // not a request of this deployment
        };
        let held = matches!(
            req.status,
            RequestStatus::Claimed | RequestStatus::Completed | RequestStatus::Failed
        );
        let Some(job) = req
            .job_id
            .as_ref()
            .filter(|_| held)
            .and_then(|id| theirs.iter().find(|j| &j.id == id))
            .filter(|j| Self::could_be_second_of(j, batch))
        else {
            return Ok(()); // a batch of a job no longer open, or of no job
        };
        let (found, by_tenant) = self.price_duplicate(provider, job, batch, &file).await?;
        // Once per (job, batch): a re-run after a crash adds nothing.
        self.ingester
            .add_savings(job, &format!("duplicate-{}", batch.id), by_tenant)
            .await?;
        tracing::error!(
            job = %job.id,
            batch = %batch.id,
            own_batch = ?job.provider_batch_id,
            answers = found.answers,
            cost = %found.double_spent_cost,
            "a second provider batch ran this job's requests (a create whose answer was lost): paid twice"
        );
        self.record_untagged(
            job,
            Record {
                batch,
                message: format!(
                    "provider batch {} ran this job's requests a second time (a create whose answer was lost): \
                     {} answers paid twice, {} at batch prices",
                    batch.id, found.answers, found.double_spent_cost
                ),
                answers: found.answers,
                cost: found.double_spent_cost,
            },
        )
        .await?;
        report.duplicates_ended.push(found);
        self.delete_provider_files(job, &[Some(file)]).await;
        Ok(())
    }

    /// The first successful result line of an ended batch, reading at most
    /// [`SAMPLE_LINES`] lines; `None` when there is none (or the lines are
    /// not batchq's).
    async fn first_answer(
        &self,
        provider: &dyn Provider,
        endpoint: crate::request::Endpoint,
        batch: &Batch,
    ) -> Result<Option<ResultLine>, PipelineError> {
        let Some(file) = &batch.output_file_id else {
            return Ok(None);
        };
        let stream = match provider.file_content(file).await {
            Ok(s) => s,
            Err(ProviderError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let format = provider.format();
        let mut reader = LineReader::new(stream, format.max_result_line_bytes());
        let mut read = 0;
        while let Some(line) = reader.next_line().await? {
            let Line::Data { number, bytes } = line else {
                continue;
            };
            read += 1;
            if let Ok(l) = format.read_result_line(endpoint, number, &bytes) {
                if matches!(l.outcome, Outcome::Success { .. }) {
                    return Ok(Some(l));
                }
            }
            if read >= SAMPLE_LINES {
                break;
            }
        }
        Ok(None)
    }

    /// Prices every successful answer of `job`'s duplicate (its requests'
    /// tenants, the job's model and prices), as late answers paid twice are.
    async fn price_duplicate(
        &self,
        provider: &dyn Provider,
        job: &Job,
        batch: &Batch,
        file: &crate::ids::ProviderFileId,
    ) -> Result<(DuplicateFound, TenantTotals), PipelineError> {
        let mut found = DuplicateFound {
            job_id: job.id.to_string(),
            batch_id: batch.id.clone(),
            ..Default::default()
        };
        let mut by_tenant = TenantTotals::new();
        let stream = provider.file_content(file).await?;
        let format = provider.format();
        let mut reader = LineReader::new(stream, format.max_result_line_bytes());
        let mut seen = HashSet::new();
        let mut chunk = Vec::with_capacity(CHUNK_LINES);
        loop {
            let line = reader.next_line().await?;
            let done = line.is_none();
            if let Some(Line::Data { number, bytes }) = line {
                if let Ok(l) = format.read_result_line(job.endpoint, number, &bytes) {
                    if matches!(l.outcome, Outcome::Success { .. }) && seen.insert(l.key.clone()) {
                        chunk.push(l);
                    }
                }
            }
            if chunk.len() >= CHUNK_LINES || (done && !chunk.is_empty()) {
                let mut lines = std::mem::take(&mut chunk);
                let keys: Vec<_> = lines.iter().map(|l| l.key.clone()).collect();
                let states = self.core.ports.requests.get_many(&keys).await?;
                let now = self.core.now();
                for l in &mut lines {
                    let Some(req) = states.get(&l.key) else {
                        continue;
                    };
                    found.answers += 1;
                    let result = self.ingester.take_result(job, req, l, now);
                    // Paid, with nothing in return: a cost without a saving.
                    let tenant = by_tenant.entry(req.tenant.clone()).or_default();
                    if let Some(b) = result.batch_cost {
                        found.double_spent_cost += b;
                        tenant.batch_cost += b;
                    }
                }
            }
            if done {
                return Ok((found, by_tenant));
            }
        }
    }

    /// Records a duplicate on its job once (with its twice-paid answers),
    /// conditioned on the job's version; another runner may have changed
    /// the job meanwhile: it is read again.
    async fn record_untagged(&self, job: &Job, record: Record<'_>) -> Result<(), PipelineError> {
        if self.record_duplicate(job, &record, 20).await? {
            return Ok(());
        }
        let id = record.batch.batch_id();
        Err(PipelineError::Rejected(format!(
            "job {}: could not record duplicate batch {id} after repeated conflicts",
            job.id
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::JobId;
    use crate::job::ProviderKind;
    use crate::request::{Endpoint, QueueGroup};
    use crate::time::Timestamp;

    const T0: i64 = 1_790_000_000;

    fn job(lines: u64, own: Option<&str>) -> Job {
        let group = QueueGroup::of(
            Endpoint::Messages,
            crate::ids::ModelName::parse("claude-haiku-4-5").unwrap(),
        );
        let t = Timestamp::from_unix_seconds(T0);
        let mut j = Job::new(JobId::generate(), ProviderKind::Anthropic, &group, t, t);
        j.input_lines = lines;
        j.provider_batch_id = own.map(ProviderBatchId::new);
        j.submitted_at = own.map(|_| Timestamp::from_unix_seconds(T0 + 60));
        j
    }

    fn batch(id: &str, lines: u64, created: i64) -> Batch {
        serde_json::from_value(serde_json::json!({
            "id": id, "status": "in_progress", "created_at": created,
            "request_counts": {"total": lines, "completed": 0, "failed": 0}
        }))
        .unwrap()
    }

    #[test]
    fn a_second_batch_has_the_jobs_size_and_was_made_in_its_create_window() {
        let j = job(6, Some("own"));
        assert!(Poller::could_be_second_of(&j, &batch("b", 6, T0 + 30)));
        // Skew: a little before the job's row, up to an hour after its submission.
        assert!(Poller::could_be_second_of(&j, &batch("b", 6, T0 - DECISION_SKEW)));
        assert!(Poller::could_be_second_of(&j, &batch("b", 6, T0 + 60 + CREATE_WINDOW)));
        assert!(!Poller::could_be_second_of(&j, &batch("b", 6, T0 - DECISION_SKEW - 1)));
        assert!(!Poller::could_be_second_of(&j, &batch("b", 6, T0 + 61 + CREATE_WINDOW)));
        assert!(!Poller::could_be_second_of(&j, &batch("b", 5, T0 + 30)), "another size");
        assert!(
            !Poller::could_be_second_of(&j, &batch("own", 6, T0 + 30)),
            "its own batch"
        );
        assert!(
            !Poller::could_be_second_of(&job(6, None), &batch("b", 6, T0 + 30)),
            "a job without a batch may be creating it"
        );
        let mut unknown_time = batch("b", 6, T0 + 30);
        unknown_time.created_at = None;
        assert!(!Poller::could_be_second_of(&j, &unknown_time));
    }
}
