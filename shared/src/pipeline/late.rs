//! Late answers: a batch given up at its deadline (its requests were handled
//! as expired: most went back to the queue) may still end and deliver
//! answers the provider bills. Poll keeps watching such a batch for a while
//! (`Job::watch_until`); when it ends, its output file is read here:
//!
//! * an answer for a request still queued (not sent again yet) finishes it:
//!   the late answer is used, and counted as the job's;
//! * an answer for a request sent again and not yet answered finishes it too
//!   (the caller gets it sooner), but the second batch carries it as well:
//!   paid twice;
//! * an answer for a request already finished elsewhere is paid twice and
//!   changes nothing.
//!
//! Twice-paid answers are counted on the job (`double_spent`, and their cost
//! at batch prices in `double_spent_cost`) and in the savings totals as cost
//! without a saving, and logged. Everything is decided from the requests'
//! states, so a re-run after a crash decides alike, and the counts are
//! written once, with the end of the watch.

use std::collections::HashSet;

use serde::Serialize;

use super::ingest::{Ingester, TenantTotals};
use super::PipelineError;
use crate::job::{CostTotals, Job};
use crate::jsonl::{Line, LineReader};
use crate::money::Money;
use crate::provider::{Outcome, ResultLine};
use crate::request::RequestStatus;
use crate::store::ByteStream;
use crate::transition::RequestUpdate;

/// Lines applied per chunk.
const CHUNK_LINES: usize = 100;

/// What the late answers of a given-up batch did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LateReport {
    pub job_id: String,
    /// Answers read (successful lines of the output file).
    pub answers: u64,
    /// Answers that finished their request, or had finished it in an
    /// earlier run.
    pub used: u64,
    /// Answers for requests sent again or finished elsewhere: paid twice.
    pub double_spent: u64,
    /// What those cost at batch prices (priced models only).
    pub double_spent_cost: Money,
    /// Lines that are not result lines, or name no request of batchq.
    pub skipped: u64,
    /// This run wrote the counts (false when another run had).
    pub counted: bool,
}

/// The sums of one file.
#[derive(Default)]
struct Sums {
    used: CostTotals,
    by_tenant: TenantTotals,
}

impl Ingester {
    /// Applies the output of `job`'s batch, which ended after the job was
    /// given up, and ends the watch with the counts.
    pub async fn ingest_late(&self, job: &Job, output: Option<ByteStream>) -> Result<LateReport, PipelineError> {
        let mut report = LateReport {
            job_id: job.id.to_string(),
            ..Default::default()
        };
        let mut sums = Sums::default();
        if let Some(stream) = output {
            let format = self.core.format(job)?;
            let mut reader = LineReader::new(stream, format.max_result_line_bytes());
            let mut seen = HashSet::new();
            let mut chunk = Vec::with_capacity(CHUNK_LINES);
            while let Some(line) = reader.next_line().await? {
                let Line::Data { number, bytes } = line else {
                    report.skipped += 1;
                    continue;
                };
                match format.read_result_line(job.endpoint, number, &bytes) {
                    Ok(l) if matches!(l.outcome, Outcome::Success { .. }) && seen.insert(l.key.clone()) => {
                        chunk.push(l)
                    }
                    Ok(_) => {}
                    Err(_) => report.skipped += 1,
                }
                if chunk.len() >= CHUNK_LINES {
                    self.apply_late_chunk(job, std::mem::take(&mut chunk), &mut sums, &mut report)
                        .await?;
                }
            }
            if !chunk.is_empty() {
                self.apply_late_chunk(job, chunk, &mut sums, &mut report).await?;
            }
        }

        self.add_savings(job, "late", sums.by_tenant).await?;

        // The counts and the end of the watch, once.
        for _ in 0..20 {
            let Some(current) = self.core.ports.jobs.get_job(&job.id).await? else {
                return Ok(report);
            };
            if current.watch_until.is_none() {
                return Ok(report);
            }
            let mut next = current.clone();
            next.totals.add(&sums.used);
            next.late_used = report.used;
            // Added: duplicate batches found by poll count here too.
            next.double_spent += report.double_spent;
            next.double_spent_cost += report.double_spent_cost;
            next.watch_until = None;
            next.updated_at = self.core.now();
            if self.core.save_job(&current, next).await?.is_some() {
                report.counted = true;
                if report.double_spent > 0 {
                    tracing::warn!(
                        job = %job.id,
                        double_spent = report.double_spent,
                        cost = %report.double_spent_cost,
                        "a given-up batch delivered answers for requests already sent again: paid twice"
                    );
                }
                tracing::info!(job = %job.id, answers = report.answers, used = report.used, "late answers applied");
                return Ok(report);
            }
        }
        Err(PipelineError::Rejected(format!(
            "job {}: could not record its late answers after repeated conflicts",
            job.id
        )))
    }

    async fn apply_late_chunk(
        &self,
        job: &Job,
        mut lines: Vec<ResultLine>,
        sums: &mut Sums,
        report: &mut LateReport,
    ) -> Result<(), PipelineError> {
        let keys: Vec<_> = lines.iter().map(|l| l.key.clone()).collect();
        let states = self.core.ports.requests.get_many(&keys).await?;
        let now = self.core.now();
        let mut updates = Vec::new();
        for line in &mut lines {
            let Some(req) = states.get(&line.key) else {
                report.skipped += 1;
                continue;
            };
            report.answers += 1;
            let result = self.take_result(job, req, line, now);
            let ours = req.job_id.as_ref() == Some(&job.id);
            // Used: the request waits in the queue, is still (or again) this
            // job's, or was finished by this answer in an earlier run.
            let used = match req.status {
                RequestStatus::Queued => {
                    updates.push(RequestUpdate::finish_late(req, &job.id, result.clone(), now));
                    true
                }
                RequestStatus::Claimed if ours => {
                    updates.push(RequestUpdate::finish(
                        req,
                        &job.id,
                        RequestStatus::Completed,
                        result.clone(),
                        now,
                    ));
                    true
                }
                // Sent again and not answered yet: this answer finishes it
                // sooner, and that batch pays for it too.
                RequestStatus::Claimed => {
                    let other = req.job_id.clone().expect("a claimed request names its job");
                    updates.push(RequestUpdate::finish(
                        req,
                        &other,
                        RequestStatus::Completed,
                        result.clone(),
                        now,
                    ));
                    false
                }
                _ => ours,
            };
            let tenant = sums.by_tenant.entry(req.tenant.clone()).or_default();
            if used {
                report.used += 1;
                if let Some(u) = result.usage {
                    sums.used.usage.add(&u);
                    tenant.requests += 1;
                    tenant.usage.add(&u);
                }
                match (result.batch_cost, result.realtime_cost) {
                    (Some(b), Some(r)) => {
                        sums.used.batch_cost += b;
                        sums.used.realtime_cost += r;
                        tenant.batch_cost += b;
                        tenant.realtime_cost += r;
                    }
                    _ => {
                        sums.used.unpriced_requests += 1;
                        tenant.unpriced_requests += 1;
                    }
                }
            } else {
                // Paid, with nothing in return: a cost without a saving.
                report.double_spent += 1;
                if let Some(b) = result.batch_cost {
                    report.double_spent_cost += b;
                    tenant.batch_cost += b;
                }
            }
        }
        self.core.apply_all(updates).await?;
        Ok(())
    }
}
