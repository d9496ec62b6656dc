//! ingest: turns a result file copied to S3 into per-request results.
//!
//! The file is read line by line (never whole). Lines are applied in chunks:
//! one batched read of the requests' states, then one conditional write per
//! request, so a line changes a request only while it is still claimed by
//! this job — a replayed line changes nothing, and a line for a request that
//! is not in this job is reported, not applied.
//!
//! Outcomes: a 2xx response completes the request with its body, usage and
//! cost. A retryable outcome (`batch_expired`, `batch_cancelled`, HTTP 408,
//! 429 or 5xx inside the file) puts it back in the queue, or ends it failed
//! with that error once its attempts are used up. Anything else (a 4xx) ends
//! it failed at once.
//!
//! A file's usage and cost totals are computed from the whole file and added
//! to the job in one conditional write that also marks the file as counted,
//! so replaying a file never counts it twice.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use super::{Core, CrashPoint, PipelineError};
use crate::ids::TenantId;
use crate::ids::{JobId, RequestKey};
use crate::job::{CostTotals, Job, JobStatus, ProviderBatchStatus};
use crate::jsonl::{Line, LineReader};
use crate::keys::{self, ResultFile};
use crate::money::Money;
use crate::overhead::AWS_LIST;
use crate::placement::InlineLimits;
use crate::pricing::PriceBook;
use crate::provider::{Outcome, ResultLine};
use crate::request::{Payload, Request, RequestResult, RequestStatus};
use crate::store::{SavingsRow, SavingsTotals};
use crate::transition::RequestUpdate;

/// Lines applied per chunk (one batched read, one or more transactions).
const CHUNK_LINES: usize = 100;

/// Which of a job's two result files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Output,
    Errors,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Output => "output",
            Self::Errors => "errors",
        }
    }

    pub fn key(self, job: &JobId) -> String {
        match self {
            Self::Output => keys::job_output(job),
            Self::Errors => keys::job_errors(job),
        }
    }

    fn counted(self, job: &Job) -> bool {
        match self {
            Self::Output => job.ingested_output,
            Self::Errors => job.ingested_errors,
        }
    }

    /// The file whose savings carry the overhead of the job's submit and
    /// poll runs: its output file, or its error file when it has none.
    fn carrying_job_overhead(job: &Job) -> Self {
        if job.output_file_id.is_some() {
            Self::Output
        } else {
            Self::Errors
        }
    }

    fn mark(self, job: &mut Job) {
        match self {
            Self::Output => job.ingested_output = true,
            Self::Errors => job.ingested_errors = true,
        }
    }
}

/// What ingesting one file did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestReport {
    pub key: String,
    pub job_id: String,
    /// Non-blank lines read.
    pub lines: u64,
    pub completed: u64,
    pub failed: u64,
    pub requeued: u64,
    /// Lines whose request had already taken them (a replay).
    pub replayed: u64,
    /// Lines naming a request that is not in this job (reported, not applied).
    pub not_in_job: u64,
    /// Lines naming a request of this job (applied now or by an earlier run).
    pub job_lines: u64,
    /// Lines that are not valid result lines.
    pub malformed: u64,
    /// Lines over the format's longest result line.
    pub too_long: u64,
    /// Second and later lines for the same request in this file (ignored).
    pub duplicates: u64,
    /// This run added the file's totals to the job (false on a replay).
    pub counted: bool,
    /// This run closed the job.
    pub closed: bool,
    /// Why nothing was done, when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub totals: CostTotals,
}

/// Per-tenant savings of one file, added to the running totals once.
pub(super) type TenantTotals = BTreeMap<TenantId, SavingsTotals>;

/// The ingest step, wired to its ports.
#[derive(Clone)]
pub struct Ingester {
    pub(super) core: Core,
    prices: Arc<PriceBook>,
}

impl Ingester {
    pub fn new(core: Core, prices: Arc<PriceBook>) -> Self {
        Self { core, prices }
    }

    /// What this step works with.
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// Ingests the object under `key` (as named by an S3 event). Keys that
    /// are not result files of a known job are rejected.
    pub async fn ingest_key(&self, key: &str) -> Result<IngestReport, PipelineError> {
        let Some(file) = keys::parse_result_key(key) else {
            return Err(PipelineError::Rejected(format!("{key} is not a result file")));
        };
        let (job_id, kind) = match file {
            ResultFile::Output(j) => (j, FileKind::Output),
            ResultFile::Errors(j) => (j, FileKind::Errors),
        };
        let Some(job) = self.core.ports.jobs.get_job(&job_id).await? else {
            return Err(PipelineError::Rejected(format!("{key}: no job {job_id}")));
        };
        self.ingest_file(job, kind).await
    }

    /// The result files copied to the object store and not yet counted:
    /// what S3 notifications would still have to deliver. A process that
    /// stands in for them (`batchq serve`) ingests these after a restart,
    /// instead of waiting a lease for poll to find them stale.
    pub async fn pending_files(&self) -> Result<Vec<String>, PipelineError> {
        let mut keys = Vec::new();
        for job in self.core.ports.jobs.open_jobs().await? {
            if job.status != JobStatus::Ingesting {
                continue;
            }
            for kind in [FileKind::Output, FileKind::Errors] {
                let has_file = match kind {
                    FileKind::Output => job.output_file_id.is_some(),
                    FileKind::Errors => job.error_file_id.is_some(),
                };
                if !has_file || kind.counted(&job) {
                    continue;
                }
                let key = kind.key(&job.id);
                if self.core.ports.objects.head(&key).await?.is_some() {
                    keys.push(key);
                }
            }
        }
        Ok(keys)
    }

    /// Ingests one result file of `job`.
    pub async fn ingest_file(&self, job: Job, kind: FileKind) -> Result<IngestReport, PipelineError> {
        let key = kind.key(&job.id);
        let mut report = IngestReport {
            key: key.clone(),
            job_id: job.id.to_string(),
            ..Default::default()
        };
        match job.status {
            JobStatus::Ingesting => {}
            JobStatus::Done | JobStatus::Failed => {
                report.note = Some(format!("job is {}; nothing to do", job.status));
                return Ok(report);
            }
            other => {
                return Err(PipelineError::Rejected(format!(
                    "{key}: job {} is {other}, not ingesting",
                    job.id
                )))
            }
        }
        if kind.counted(&job) {
            report.note = Some("file already ingested".into());
            report.closed = self.core.try_close(&job).await?.is_some();
            return Ok(report);
        }

        let (info, stream) = self.core.ports.objects.open(&key).await?;
        // Storage is estimated, not metered: the result copy is kept in S3,
        // and the results point into it (crate::overhead).
        self.core.ports.usage.record(|u| {
            u.s3_result_bytes += info.bytes;
        });
        let format = self.core.format(&job)?;
        let mut reader = LineReader::new(stream, format.max_result_line_bytes());
        let mut totals = CostTotals::default();
        let mut by_tenant = TenantTotals::new();
        let mut chunk = Vec::with_capacity(CHUNK_LINES);
        let mut chunks_applied = 0u64;
        let mut seen = HashSet::new();
        while let Some(line) = reader.next_line().await? {
            report.lines += 1;
            match line {
                Line::Data { number, bytes } => match format.read_result_line(job.endpoint, number, &bytes) {
                    Ok(l) if !seen.insert(l.key.clone()) => {
                        report.duplicates += 1;
                        tracing::warn!(key, line = number, request = %l.key, "second result line for one request ignored");
                    }
                    Ok(l) => chunk.push((reader.last_line_offset(), l)),
                    Err(reason) => {
                        report.malformed += 1;
                        tracing::warn!(key, line = number, %reason, "malformed result line skipped");
                    }
                },
                Line::TooLong { number, bytes, head } => {
                    report.too_long += 1;
                    match format.read_too_long_line(number, bytes, &head) {
                        // Its request ends failed: sent again, it would be
                        // answered (and billed) alike.
                        Some(l) if seen.insert(l.key.clone()) => {
                            tracing::warn!(key, line = number, bytes, request = %l.key, "result line over the size limit; its request fails");
                            chunk.push((0, l));
                        }
                        Some(_) => report.duplicates += 1,
                        None => {
                            tracing::warn!(
                                key,
                                line = number,
                                bytes,
                                "result line over the size limit names no request in its head; skipped"
                            );
                        }
                    }
                }
            }
            if chunk.len() >= CHUNK_LINES {
                self.apply_chunk(
                    &job,
                    &key,
                    std::mem::take(&mut chunk),
                    &mut totals,
                    &mut by_tenant,
                    &mut report,
                )
                .await?;
                chunks_applied += 1;
                if chunks_applied == 1 {
                    self.core.crash(CrashPoint::IngestMidFile)?;
                }
            }
        }
        if !chunk.is_empty() {
            self.apply_chunk(&job, &key, chunk, &mut totals, &mut by_tenant, &mut report)
                .await?;
        }
        report.totals = totals;
        // The running per-tenant, per-day totals first: each counts this file
        // once by itself, so a crash before the job's totals re-adds nothing.
        // What this run used so far, and (with the job's first counted
        // file) what its submit and poll runs used, go with the savings.
        let used = self.core.ports.usage.take().cost(&AWS_LIST);
        let handed = if kind == FileKind::carrying_job_overhead(&job) {
            job.aws_overhead - job.aws_overhead_ingest
        } else {
            Money::ZERO
        };
        self.add_savings_with(&job, kind.as_str(), by_tenant, used + handed)
            .await?;
        self.core.crash(CrashPoint::IngestBeforeTotals)?;

        let Some(job) = self.add_totals(&job.id, kind, &totals, used, &mut report).await? else {
            return Ok(report);
        };
        self.core.crash(CrashPoint::IngestAfterTotals)?;
        report.closed = self.core.try_close(&job).await?.is_some();
        tracing::info!(
            key,
            lines = report.lines,
            completed = report.completed,
            failed = report.failed,
            requeued = report.requeued,
            replayed = report.replayed,
            not_in_job = report.not_in_job,
            malformed = report.malformed,
            "result file ingested"
        );
        Ok(report)
    }

    /// Adds one file's per-tenant totals to the running savings, once per
    /// (job, `source`); a job's savings count on its UTC submission day.
    pub(super) async fn add_savings(
        &self,
        job: &Job,
        source: &str,
        by_tenant: TenantTotals,
    ) -> Result<(), PipelineError> {
        self.add_savings_with(job, source, by_tenant, Money::ZERO).await
    }

    /// [`Ingester::add_savings`], `overhead` shared among the tenants' rows
    /// by their completed requests (lost when there is no row: a file with
    /// no completed request).
    async fn add_savings_with(
        &self,
        job: &Job,
        source: &str,
        mut by_tenant: TenantTotals,
        overhead: Money,
    ) -> Result<(), PipelineError> {
        share_overhead(&mut by_tenant, overhead);
        let day = job.submitted_at.unwrap_or(job.created_at).utc_date();
        let rows = by_tenant
            .into_iter()
            .map(|(tenant, totals)| SavingsRow {
                tenant,
                day: day.clone(),
                provider: job.provider_name.clone(),
                model: job.model.clone(),
                totals,
            })
            .collect();
        self.core
            .ports
            .savings
            .add_savings(&format!("{}/{source}", job.id), rows)
            .await?;
        Ok(())
    }

    /// Adds a file's totals to its job once: the write is conditioned on the
    /// job's version and marks the file as counted.
    async fn add_totals(
        &self,
        job_id: &JobId,
        kind: FileKind,
        totals: &CostTotals,
        overhead: Money,
        report: &mut IngestReport,
    ) -> Result<Option<Job>, PipelineError> {
        for _ in 0..20 {
            let Some(job) = self.core.ports.jobs.get_job(job_id).await? else {
                return Ok(None);
            };
            if kind.counted(&job) || job.status != JobStatus::Ingesting {
                return Ok(Some(job));
            }
            let mut next = job.clone();
            next.totals.add(totals);
            next.result_lines += report.job_lines;
            next.aws_overhead += overhead;
            next.aws_overhead_ingest += overhead;
            next.updated_at = self.core.now();
            kind.mark(&mut next);
            match self.core.ports.jobs.save_job(&job, next).await {
                Ok(saved) => {
                    report.counted = true;
                    return Ok(Some(saved));
                }
                Err(e) if e.is_condition_failed() => continue, // another writer; read again
                Err(e) => return Err(e.into()),
            }
        }
        Err(PipelineError::Rejected(format!(
            "job {job_id}: could not add the {} file's totals after repeated conflicts",
            kind.as_str()
        )))
    }

    /// Applies a chunk of `file`'s lines, each with where it starts in
    /// the file.
    async fn apply_chunk(
        &self,
        job: &Job,
        file: &str,
        lines: Vec<(u64, ResultLine)>,
        totals: &mut CostTotals,
        by_tenant: &mut TenantTotals,
        report: &mut IngestReport,
    ) -> Result<(), PipelineError> {
        let keys: Vec<RequestKey> = lines.iter().map(|(_, l)| l.key.clone()).collect();
        let states = self.core.ports.requests.get_many(&keys).await?;
        let now = self.core.now();
        let limits = InlineLimits::configured(&self.core.config.limits);
        let mut updates = Vec::with_capacity(lines.len());
        for (line_at, mut line) in lines {
            let Some(req) = states.get(&line.key) else {
                report.not_in_job += 1;
                tracing::warn!(job = %job.id, line = line.number, request = %line.key, "result line for an unknown request");
                continue;
            };
            if req.job_id.as_ref() != Some(&job.id) {
                report.not_in_job += 1;
                tracing::warn!(job = %job.id, line = line.number, request = %req.key, "result line for a request not in this job");
                continue;
            }
            report.job_lines += 1;
            // Totals come from the file, for every line of this job, whether
            // this run or an earlier one applied it; they are added once.
            let mut result = self.take_result(job, req, &mut line, now);
            // An answer is read from the copy of the file it came in (kept
            // as long as the result), not copied into the row.
            if let (Outcome::Success { .. }, Some(Payload::Inline(_))) = (&line.outcome, &result.response) {
                if let Some(Payload::Inline(body)) = result.response.take() {
                    let at = line.body_offset.map(|o| line_at + o);
                    result.response = Some(limits.place_answer(file, at, body));
                }
            }
            if let (Some(usage), true) = (result.usage, result.error.is_none()) {
                totals.usage.add(&usage);
                let tenant = by_tenant.entry(req.tenant.clone()).or_default();
                tenant.requests += 1;
                tenant.usage.add(&usage);
                match (result.batch_cost, result.realtime_cost) {
                    (Some(b), Some(r)) => {
                        totals.batch_cost += b;
                        totals.realtime_cost += r;
                        tenant.batch_cost += b;
                        tenant.realtime_cost += r;
                    }
                    _ => {
                        totals.unpriced_requests += 1;
                        tenant.unpriced_requests += 1;
                        tracing::debug!(model = billed_model(job, &line), "no price for model");
                    }
                }
            }
            if req.status != RequestStatus::Claimed {
                report.replayed += 1;
                continue;
            }
            let update = match &line.outcome {
                Outcome::Success { .. } => {
                    report.completed += 1;
                    RequestUpdate::finish(req, &job.id, RequestStatus::Completed, result, now)
                }
                Outcome::Error { error, retryable, body } => {
                    let cut_short = body.is_none()
                        && error.status_code.is_none()
                        && matches!(
                            job.provider_status,
                            Some(ProviderBatchStatus::Expired | ProviderBatchStatus::Cancelled)
                        );
                    if (*retryable || cut_short) && req.attempts < self.core.config.policy.max_attempts {
                        report.requeued += 1;
                        RequestUpdate::requeue(req, &job.id, Some(error.clone()), now)
                    } else {
                        report.failed += 1;
                        RequestUpdate::finish(req, &job.id, RequestStatus::Failed, result, now)
                    }
                }
            };
            updates.push(update);
        }
        let applied = self.core.apply_all(updates).await?;
        report.replayed += applied.already;
        Ok(())
    }

    /// The stored result of a line, with its cost when the model is priced.
    /// A 2xx answer's body is moved out of the line into the result (not
    /// copied: answers are kilobytes each); the rest of the line is left.
    pub(super) fn take_result(
        &self,
        job: &Job,
        req: &Request,
        line: &mut ResultLine,
        now: crate::time::Timestamp,
    ) -> RequestResult {
        let mut result = RequestResult {
            key: req.key.clone(),
            job_id: job.id.clone(),
            status_code: None,
            response: None,
            error: None,
            usage: None,
            batch_cost: None,
            realtime_cost: None,
            recorded_at: now,
            request_id: line.request_id.clone(),
        };
        let model = billed_model(job, line).to_owned();
        match &mut line.outcome {
            Outcome::Success {
                status_code,
                body,
                usage,
                ..
            } => {
                result.status_code = Some(*status_code);
                result.response = Some(Payload::Inline(std::mem::take(body)));
                result.usage = *usage;
                if let Some(u) = usage {
                    if let Some(cost) = self.prices.cost(job.provider, &model, u) {
                        result.batch_cost = Some(cost.batch);
                        result.realtime_cost = Some(cost.realtime);
                    }
                }
            }
            Outcome::Error { error, body, .. } => {
                result.status_code = error.status_code;
                result.error = Some(error.clone());
                result.response = body.clone().map(Payload::Inline);
            }
        }
        result
    }
}

/// The model a line is priced as: the one the provider billed, else the job's.
fn billed_model<'a>(job: &'a Job, line: &'a ResultLine) -> &'a str {
    match &line.outcome {
        Outcome::Success { model: Some(m), .. } => m,
        _ => job.model.as_str(),
    }
}

/// Shares `overhead` among the tenants' totals by their completed requests
/// (to the picodollar; what rounding leaves goes to the first).
fn share_overhead(by_tenant: &mut TenantTotals, overhead: Money) {
    let requests: u64 = by_tenant.values().map(|t| t.requests).sum();
    if overhead == Money::ZERO || requests == 0 {
        return;
    }
    let total = overhead.picodollars();
    let mut given = 0;
    for t in by_tenant.values_mut() {
        let share = total * i128::from(t.requests) / i128::from(requests);
        t.aws_overhead += Money::from_picodollars(share);
        given += share;
    }
    if let Some(first) = by_tenant.values_mut().next() {
        first.aws_overhead += Money::from_picodollars(total - given);
    }
}

#[cfg(test)]
mod overhead_tests {
    use super::*;

    #[test]
    fn overhead_is_shared_by_completed_requests_to_the_picodollar() {
        let mut by = TenantTotals::new();
        for (t, n) in [("a", 1), ("b", 2)] {
            by.insert(
                TenantId::parse(t).unwrap(),
                SavingsTotals {
                    requests: n,
                    ..SavingsTotals::default()
                },
            );
        }
        share_overhead(&mut by, Money::from_picodollars(100));
        let got: Vec<i128> = by.values().map(|t| t.aws_overhead.picodollars()).collect();
        assert_eq!(got, vec![34, 66]);
    }
}
