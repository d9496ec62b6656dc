//! submit: turns queued requests into provider batches.
//!
//! For each queue group (endpoint, model) that is due — enough requests, an
//! old enough request, or `force` — a job row is written first (`preparing`,
//! with a lease), then queued requests are claimed for it oldest first with
//! conditional writes until the provider's line or byte limit, their lines
//! are streamed to `inputs/{job}.jsonl` (`staged`), the file is uploaded
//! (`uploaded`) and the batch created with the job id in its metadata.
//!
//! A run first resumes jobs another run left before the batch was recorded
//! and whose lease has run out, from the state they reached. A resume that
//! reaches batch creation first asks the provider whether the lost attempt
//! created one, so a job never has two provider batches.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use tracing::Instrument;

use super::{Claims, Core, CrashPoint, PipelineError};
use crate::budget::TokenBudget;
use crate::config::Limits;
use crate::ids::{JobId, ModelName, ProviderBatchId, ProviderName, RequestKey, TenantId};
use crate::job::{Job, JobStatus, MAX_JOB_TENANTS};
use crate::provider::input_rules::{InputFileRules, Refusal};
use crate::provider::tally::ErrorTally;
use crate::provider::{CreateBatch, FileLimits, ObjectSource, Provider, ProviderError, Providers};
use crate::request::{Endpoint, QueueGroup, Request, RequestError, RequestStatus};
use crate::store::ObjectWriter;
use crate::telemetry;
use crate::time::Timestamp;
use crate::tokens::Weight;
use crate::transition::RequestUpdate;

/// Queued requests read per claim page. A page's state items are small
/// (about 0.5 KB: no bodies), so 1,000 stay well under a Query's 1 MB page;
/// 200 made five times the round trips (and the emulator sorts the queue
/// once per page: `make bench`'s 50,000-request claim spent a sixth of its
/// time there).
const CLAIM_PAGE: u32 = 1000;

/// What a submit run is asked to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubmitOptions {
    /// Submit every group with queued requests, due or not.
    pub force: bool,
}

/// What a submit run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SubmitReport {
    /// Jobs that reached the provider (or closed empty) in this run.
    pub jobs: Vec<JobSummary>,
    /// Jobs of earlier runs that this run finished submitting.
    pub resumed: Vec<JobSummary>,
    /// Groups with queued requests that are not due yet.
    pub waiting: Vec<GroupNote>,
    /// Groups held back after the provider's token limit was reached.
    pub held: Vec<GroupNote>,
    /// Requests claimed into new jobs.
    pub claimed: u64,
    /// Jobs or groups that could not be handled this time (retried by a later run).
    pub errors: Vec<String>,
    /// Jobs ended `failed` because a permanent error stopped their submission.
    pub abandoned: Vec<String>,
    /// The run's failed provider calls, by kind ([`ProviderError::kind`]).
    pub provider_errors: BTreeMap<String, u64>,
    /// Requests this run failed (a batch it could not submit, attempts used up).
    pub requests_failed: u64,
    /// Requests this run sent back to the queue.
    pub requests_retried: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobSummary {
    pub job_id: String,
    pub group: String,
    pub status: JobStatus,
    pub requests: u64,
    pub bytes: u64,
    pub provider_batch_id: Option<String>,
}

impl JobSummary {
    fn of(job: &Job) -> Self {
        Self {
            job_id: job.id.to_string(),
            group: job.queue_group().key(),
            status: job.status,
            requests: job.input_lines,
            bytes: job.input_bytes,
            provider_batch_id: job.provider_batch_id.as_ref().map(|b| b.as_str().to_owned()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupNote {
    pub group: String,
    pub queued: u64,
    pub note: String,
}

/// Ends the leases every open job holds, so that the next submit run
/// resumes the jobs at once; returns the jobs whose lease was ended.
///
/// Only for a store one process has to itself (the embedded store, whose
/// data directory lock that process holds), called before it runs any step:
/// a lease found then was taken by a process that is gone (killed, or
/// stopped in the middle of a submit), and waiting it out (16 minutes by
/// default) would hold the job and its claimed requests for nothing.
pub async fn end_leases_of_gone_processes(
    jobs: &dyn crate::store::JobStore,
    now: Timestamp,
) -> Result<Vec<JobId>, crate::store::StoreError> {
    let mut ended = Vec::new();
    for job in jobs.open_jobs().await? {
        if job.lease_until.is_none_or(|l| l <= now) {
            continue;
        }
        let mut next = job.clone();
        next.lease_until = None;
        jobs.save_job(&job, next).await?;
        ended.push(job.id);
    }
    Ok(ended)
}

/// The submit step, wired to its ports.
#[derive(Clone)]
pub struct Submitter {
    core: Core,
    providers: Providers,
    /// The failed provider calls of the running run (one run at a time).
    tally: Arc<ErrorTally>,
}

impl Submitter {
    pub fn new(core: Core, providers: impl Into<Providers>) -> Self {
        let tally = Arc::new(ErrorTally::default());
        Self {
            core,
            providers: providers.into().tallied(&tally),
            tally,
        }
    }

    /// The provider instance a queue group or job names.
    fn provider(&self, name: &ProviderName) -> Result<&Arc<dyn Provider>, PipelineError> {
        self.providers
            .get(name)
            .ok_or_else(|| PipelineError::UnknownProvider(name.to_string()))
    }

    /// What this step works with.
    pub fn core(&self) -> &Core {
        &self.core
    }

    pub async fn run(&self, opts: SubmitOptions) -> Result<SubmitReport, PipelineError> {
        let mut report = SubmitReport::default();
        self.tally.take();
        self.core.moves.take();
        let run = self.run_into(opts, &mut report);
        let outcome = run.instrument(telemetry::step_span("submit")).await;
        report.provider_errors = self.tally.take();
        (report.requests_failed, report.requests_retried) = self.core.moves.take();
        match outcome {
            Ok(()) => Ok(report),
            // Every further call would be refused too: the run stops, with
            // the job it was on failed and its requests back in the queue.
            Err(e) if Self::is_unauthorized(&e) => {
                tracing::error!(error = %e, "the provider refused the API key; submit stops");
                report.errors.push(e.to_string());
                Ok(report)
            }
            Err(e) => Err(e),
        }
    }

    async fn run_into(&self, opts: SubmitOptions, report: &mut SubmitReport) -> Result<(), PipelineError> {
        let open = self.core.ports.jobs.open_jobs().await?;
        // Providers that refused their key this run: every further call to
        // them would be refused too, so their groups wait for a later run.
        let mut refused: HashSet<ProviderName> = HashSet::new();
        self.resume_stalled(&open, &mut refused, report).await?;

        let mut plan = TokenPlan::new(self.core.ports.jobs.token_budgets().await?, &open);
        for stats in self.core.ports.requests.queue_groups().await? {
            if refused.contains(&stats.group.provider) {
                continue;
            }
            if let Err(e) = self
                .submit_group(&stats.group, stats.queued, opts.force, &mut plan, report)
                .await
            {
                if matches!(e, PipelineError::Crashed(_)) {
                    return Err(e);
                }
                if Self::is_unauthorized(&e) {
                    tracing::error!(provider = %stats.group.provider, error = %e, "the provider refused the API key; its groups wait");
                    refused.insert(stats.group.provider.clone());
                } else {
                    tracing::error!(group = %stats.group.key(), error = %e, "could not submit the group; a later run retries");
                }
                report.errors.push(format!("{}: {e}", stats.group.key()));
            }
        }
        Ok(())
    }

    /// Whether an error will repeat on every retry: the job cannot be
    /// submitted as it is, so it is failed and its requests released.
    fn is_permanent(e: &PipelineError) -> bool {
        use crate::provider::ProviderError as P;
        use crate::store::StoreError as S;
        matches!(
            e,
            PipelineError::Rejected(_)
                | PipelineError::Provider(P::Api { .. } | P::NotFound { .. } | P::Decode { .. })
                | PipelineError::Transition(_)
                | PipelineError::Store(S::Corrupt { .. } | S::TooLarge { .. } | S::IllegalTransition(_))
        )
    }

    /// The provider refused the key: every call of this run would fail the
    /// same way until someone fixes it.
    fn is_unauthorized(e: &PipelineError) -> bool {
        matches!(e, PipelineError::Provider(ProviderError::Unauthorized { .. }))
    }

    /// Moves a job forward. A permanent failure fails the job and releases
    /// its requests (back to the queue, or failed once their attempts are
    /// used up); a refused key fails the job and gives its requests back to
    /// the queue at once, with their attempt (nothing was sent), and stops
    /// the run; anything else is left for a later run to resume.
    async fn advance_or_abandon(
        &self,
        job: Job,
        claimed: Option<Vec<Claimed>>,
        resumed: bool,
        report: &mut SubmitReport,
    ) -> Result<Option<Job>, PipelineError> {
        let span = telemetry::job_span("submit", &job);
        self.advance_or_abandon_job(job, claimed, resumed, report)
            .instrument(span)
            .await
    }

    async fn advance_or_abandon_job(
        &self,
        job: Job,
        claimed: Option<Vec<Claimed>>,
        resumed: bool,
        report: &mut SubmitReport,
    ) -> Result<Option<Job>, PipelineError> {
        let id = job.id.clone();
        let held: Option<Vec<RequestKey>> = claimed.as_ref().map(|c| c.iter().map(|c| c.key.clone()).collect());
        match self.advance(job, claimed, resumed).await {
            Ok(j) => Ok(j),
            Err(e) if Self::is_permanent(&e) => {
                tracing::error!(job = %id, error = %e, "the job cannot be submitted; failing it and releasing its requests");
                self.abandon(&id, &e, held.as_deref(), false).await?;
                report.abandoned.push(format!("{id}: {e}"));
                Ok(None)
            }
            Err(e) if Self::is_unauthorized(&e) => {
                tracing::error!(job = %id, error = %e, "the provider refused the API key; giving the job's requests back to the queue");
                self.abandon(&id, &e, held.as_deref(), true).await?;
                report.abandoned.push(format!("{id}: {e}"));
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Fails a job that never reached the provider and releases the
    /// requests it holds: first those this run claimed (`held`; the job
    /// index may not list them yet), then any its input file or the index
    /// names. `free`: back to the queue without using up an attempt.
    async fn abandon(
        &self,
        id: &JobId,
        cause: &PipelineError,
        held: Option<&[RequestKey]>,
        free: bool,
    ) -> Result<(), PipelineError> {
        let Some(job) = self.core.ports.jobs.get_job(id).await? else {
            return Ok(());
        };
        if !job.status.is_pre_submit() {
            return Ok(());
        }
        let error = RequestError {
            code: "submit_failed".into(),
            message: format!("the batch could not be submitted: {cause}"),
            status_code: None,
        };
        let source = match held {
            Some(keys) => Claims::Held(keys),
            None if job.status == JobStatus::Preparing => Claims::Index,
            None => Claims::InputFile,
        };
        if free {
            let now = self.core.now();
            let claimed = self.core.claimed_requests(&job, source).await?;
            let updates = claimed
                .iter()
                .map(|r| RequestUpdate::requeue_free(r, &job.id, Some(error.clone()), now))
                .collect();
            self.core.apply_all(updates).await?;
        } else {
            self.core.release_claims(&job, source, error).await?;
        }
        let now = self.core.now();
        let mut next = job.clone();
        next.finish(JobStatus::Failed, now)?;
        next.errors.push(crate::job::JobError {
            code: "submit_failed".into(),
            message: cause.to_string(),
            line: None,
        });
        next.lease_until = None;
        if self.core.save_job(&job, next).await?.is_some() {
            // The failed-jobs alarm reads this line (infra/template.yaml).
            tracing::warn!(job = %job.id, model = %job.model, "job failed");
        }
        Ok(())
    }

    /// Finishes jobs an earlier run left before their batch was recorded.
    async fn resume_stalled(
        &self,
        open: &[Job],
        refused: &mut HashSet<ProviderName>,
        report: &mut SubmitReport,
    ) -> Result<(), PipelineError> {
        for job in open.iter().cloned() {
            let now = self.core.now();
            if !job.status.is_pre_submit()
                || job.lease_until.is_some_and(|l| l > now)
                || refused.contains(&job.provider_name)
            {
                continue;
            }
            // Take the lease: of two runs resuming the same job, one wins.
            let mut next = job.clone();
            next.lease_until = Some(now.plus(self.core.config.policy.job_lease));
            next.updated_at = now;
            let Some(job) = self.core.save_job(&job, next).await? else {
                continue;
            };
            tracing::info!(job = %job.id, status = %job.status, "resuming a job left half-way");
            let id = job.id.clone();
            let job_provider = job.provider_name.clone();
            match self.advance_or_abandon(job, None, true, report).await {
                Ok(Some(job)) => report.resumed.push(JobSummary::of(&job)),
                Ok(None) => {}
                Err(e) if matches!(e, PipelineError::Crashed(_)) => return Err(e),
                Err(e) if Self::is_unauthorized(&e) => {
                    tracing::error!(provider = %job_provider, error = %e, "the provider refused the API key; its jobs wait");
                    report.errors.push(format!("{id}: {e}"));
                    refused.insert(job_provider);
                }
                Err(e) => {
                    tracing::error!(job = %id, error = %e, "could not resume the job; a later run retries");
                    report.errors.push(format!("{id}: {e}"));
                }
            }
        }
        Ok(())
    }

    async fn submit_group(
        &self,
        group: &QueueGroup,
        queued: u64,
        force: bool,
        plan: &mut TokenPlan,
        report: &mut SubmitReport,
    ) -> Result<(), PipelineError> {
        let policy = &self.core.config.policy;
        let limits = &self.core.config.limits;
        let mut remaining = queued;
        loop {
            let now = self.core.now();
            let oldest = self
                .core
                .ports
                .requests
                .queued(group, None, 1)
                .await?
                .items
                .into_iter()
                .next();
            let Some(oldest) = oldest else { return Ok(()) };
            // The model's enqueued-token budget: wait while the batches out
            // hold it (a request too large for any budget goes alone once
            // nothing else is out).
            let in_flight = plan.in_flight(&group.model);
            let budget = plan.budget(&group.model, limits, now);
            let token_cap = budget.available(in_flight, now);
            if let Some(cap) = token_cap {
                let blocked = budget.blocked_until.is_some_and(|b| b > now);
                if blocked || (in_flight > 0 && oldest.weight.tokens > cap) {
                    report.held.push(GroupNote {
                        group: group.key(),
                        queued: remaining,
                        note: match budget.blocked_until.filter(|_| blocked) {
                            Some(until) => format!(
                                "the provider refused {} batches of this model in a row for its enqueued-token \
                                 limit; next try at {}",
                                budget.refusals_in_row,
                                until.to_rfc3339()
                            ),
                            None => format!(
                                "waiting for the model's batches out to finish: they hold about {in_flight} of \
                                 its {} enqueued tokens",
                                budget.limit.unwrap_or(0)
                            ),
                        },
                    });
                    return Ok(());
                }
            }
            if !force {
                let waited = now.since(oldest.created_at);
                if remaining < policy.submit_min_requests && waited < policy.submit_max_age {
                    report.waiting.push(GroupNote {
                        group: group.key(),
                        queued: remaining,
                        note: format!(
                            "waiting for {} requests or for the oldest to wait {}s (it has waited {}s)",
                            policy.submit_min_requests,
                            policy.submit_max_age.as_secs(),
                            waited.as_secs()
                        ),
                    });
                    return Ok(());
                }
            }

            let mut job = Job::new(
                JobId::generate(),
                self.provider(&group.provider)?.kind(),
                group,
                now,
                now.plus(policy.job_lease),
            );
            job.tokens_in_flight_before = in_flight;
            job.budget_refusals_seen = budget.refusals_total;
            self.core.ports.jobs.create_job(&job).await?;
            self.core.crash(CrashPoint::SubmitAfterJobCreated)?;

            let (claimed, full) = self.claim(&job, token_cap).await?;
            self.core.crash(CrashPoint::SubmitAfterClaim)?;
            plan.add(&group.model, claimed.iter().map(|c| c.weight.tokens).sum());
            report.claimed += claimed.len() as u64;
            remaining = remaining.saturating_sub(claimed.len() as u64);
            let empty = claimed.is_empty();
            if let Some(job) = self.advance_or_abandon(job, Some(claimed), false, report).await? {
                if !empty {
                    report.jobs.push(JobSummary::of(&job));
                }
            }
            if empty || !full {
                return Ok(());
            }
        }
    }

    /// Claims queued requests of the job's group, oldest first, until the
    /// file would break the provider's limits or hold more than `token_cap`
    /// estimated tokens (the first request is taken even when it alone is
    /// over the cap, if nothing else of the model is out). Returns the
    /// claimed requests in file order and whether the file is full (more
    /// may be waiting).
    async fn claim(&self, job: &Job, token_cap: Option<u64>) -> Result<(Vec<Claimed>, bool), PipelineError> {
        let configured = &self.core.config.limits;
        let provider = self.provider(&job.provider_name)?;
        let format = provider.format();
        let url = provider.endpoint_url(job.endpoint);
        let group = job.queue_group();
        // The provider's documented limits, lowered by configuration.
        let limits = format
            .limits(job.endpoint)
            .min(self.providers.file_limits(&job.provider_name))
            .min(FileLimits {
                max_lines: configured.max_lines_per_batch,
                max_bytes: configured.max_bytes_per_batch,
                max_inputs: match job.endpoint {
                    Endpoint::Embeddings => configured.max_embedding_inputs_per_batch,
                    _ => u64::MAX,
                },
            });
        let max_inputs = limits.max_inputs;
        let mut rules = InputFileRules::new(url, limits.max_lines, limits.max_bytes).with_max_inputs(max_inputs);
        let mut claimed: Vec<Claimed> = Vec::new();
        let mut tokens = 0u64;
        let mut cursor = None;
        loop {
            let page = self
                .core
                .ports
                .requests
                .queued(&group, cursor.take(), CLAIM_PAGE)
                .await?;
            let now = self.core.now();
            let (mut lines, mut bytes, mut inputs) = (rules.lines(), rules.bytes(), rules.inputs());
            let mut picked = Vec::new();
            let mut full = false;
            for req in page.items {
                if req.status != RequestStatus::Queued {
                    continue;
                }
                let len = format.input_line_len(url, req.body_bytes);
                if len > limits.max_bytes {
                    tracing::error!(request = %req.key, bytes = len, "request can never fit an input file; left queued");
                    continue;
                }
                let w = req.weight;
                let over_tokens = token_cap
                    .is_some_and(|cap| tokens + w.tokens > cap && (lines > 0 || job.tokens_in_flight_before > 0));
                if lines + 1 > limits.max_lines
                    || bytes + len > limits.max_bytes
                    || inputs + w.inputs > max_inputs
                    || over_tokens
                {
                    full = true;
                    break;
                }
                lines += 1;
                bytes += len;
                inputs += w.inputs;
                tokens += w.tokens;
                picked.push((RequestUpdate::claim(&req, &job.id, now), req, len));
            }
            let updates = picked.iter().map(|(u, _, _)| u.clone()).collect();
            let results = self.core.ports.requests.apply_many(updates).await?;
            let mut refused = Vec::new();
            for ((claim, req, len), res) in picked.into_iter().zip(results) {
                match res {
                    Ok(_) => match rules.admit(&req.key, url, &req.model, len, req.weight.inputs) {
                        Ok(()) => claimed.push(Claimed::of(&req)),
                        Err(Refusal::Full) | Err(Refusal::Invalid(_)) => {
                            // Cannot happen within one group; give the request back untouched.
                            let claimed_req = claim.applied_to(&req);
                            refused.push(RequestUpdate::requeue_free(&claimed_req, &job.id, None, now));
                        }
                    },
                    Err(e) if e.is_condition_failed() => {
                        // Its tokens were counted above; the cap errs low.
                        tracing::debug!(request = %req.key, "taken by another run");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if !refused.is_empty() {
                self.core.apply_all(refused).await?;
            }
            if full {
                return Ok((claimed, true));
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok((claimed, false)),
            }
        }
    }

    /// Moves a pre-submit job forward from whatever state it is in. `claimed`
    /// is the fresh run's list; a resume reads the job's requests instead.
    /// Returns the job as saved, or `None` when another runner took it over.
    async fn advance(
        &self,
        mut job: Job,
        mut claimed: Option<Vec<Claimed>>,
        resumed: bool,
    ) -> Result<Option<Job>, PipelineError> {
        let policy = &self.core.config.policy;
        let provider = self.provider(&job.provider_name)?;
        loop {
            let now = self.core.now();
            let mut next = job.clone();
            next.updated_at = now;
            match job.status {
                JobStatus::Preparing => {
                    let claimed = match claimed.take() {
                        Some(claimed) => claimed,
                        None => {
                            let mut reqs = self.core.claimed_by(&job.id).await?;
                            reqs.sort_by(|a, b| (a.created_at, &a.key).cmp(&(b.created_at, &b.key)));
                            reqs.iter().map(Claimed::of).collect()
                        }
                    };
                    let mut tenants: Vec<TenantId> = claimed.iter().map(|c| c.tenant.clone()).collect();
                    tenants.sort();
                    tenants.dedup();
                    self.core.ports.jobs.add_job_tenants(&job, &tenants).await?;
                    next.tenant_count = tenants.len() as u64;
                    tenants.truncate(MAX_JOB_TENANTS);
                    next.tenants = tenants;
                    telemetry::record_tenants(&tracing::Span::current(), &next);
                    next.tokens = claimed.iter().map(|c| c.weight.tokens).sum();
                    next.inputs = claimed.iter().map(|c| c.weight.inputs).sum();
                    let keys: Vec<RequestKey> = claimed.into_iter().map(|c| c.key).collect();
                    let (lines, bytes) = if keys.is_empty() {
                        (0, 0)
                    } else {
                        self.write_input(&job, &keys).await?
                    };
                    if lines == 0 {
                        next.finish(JobStatus::Done, now)?;
                        next.lease_until = None;
                        return Ok(self.core.save_job(&job, next).await?);
                    }
                    self.core.crash(CrashPoint::SubmitAfterInputWritten)?;
                    next.move_to(JobStatus::Staged)?;
                    next.input_lines = lines;
                    next.input_bytes = bytes;
                    // The input file's storage, estimated (crate::overhead).
                    self.core.ports.usage.record(|u| u.s3_input_bytes += bytes);
                    next.request_counts.total = lines;
                    next.lease_until = Some(now.plus(policy.job_lease));
                }
                JobStatus::Staged => {
                    let filename = format!("{}.jsonl", job.id);
                    // A resumed job may have been uploaded by a run that
                    // crashed before recording the file: use that upload.
                    let earlier = if resumed {
                        provider
                            .find_uploaded_file(&filename, job.input_bytes, job.created_at.unix_seconds() - 3600)
                            .await?
                    } else {
                        None
                    };
                    let file = match earlier {
                        Some(file) => {
                            tracing::info!(job = %job.id, file = %file.id, "input file found uploaded by an earlier run");
                            file
                        }
                        None => {
                            let source = ObjectSource {
                                objects: self.core.ports.objects.clone(),
                                key: job.input_key.clone(),
                                filename,
                            };
                            let (file, stats) = provider.upload_file(&source).await?;
                            tracing::info!(job = %job.id, file = %file.id, bytes = stats.bytes_sent, "input file uploaded");
                            file
                        }
                    };
                    self.core.crash(CrashPoint::SubmitAfterUpload)?;
                    next.move_to(JobStatus::Uploaded)?;
                    next.provider_file_id = Some(file.file_id());
                    next.lease_until = Some(now.plus(policy.job_lease));
                }
                JobStatus::Uploaded => {
                    let Some(file_id) = job.provider_file_id.clone() else {
                        return Err(PipelineError::Rejected(format!(
                            "job {} is uploaded without a file id",
                            job.id
                        )));
                    };
                    let req = CreateBatch {
                        job_id: job.id.clone(),
                        input_file_id: file_id,
                        input_key: job.input_key.clone(),
                        lines: job.input_lines,
                        taken: if provider.tags_batches() {
                            Vec::new()
                        } else {
                            self.batches_of_other_jobs(&job).await?
                        },
                        endpoint: job.endpoint,
                        // Margin for clock skew between us and the provider.
                        not_before: job.created_at.unix_seconds() - 3600,
                    };
                    // Renew the lease first: a run that lost it (it was slower than
                    // the lease) stops here instead of creating a second batch.
                    let mut renewed = job.clone();
                    renewed.lease_until = Some(now.plus(policy.job_lease));
                    renewed.updated_at = now;
                    let Some(renewed) = self.core.save_job(&job, renewed).await? else {
                        return Ok(None);
                    };
                    job = renewed;
                    next = job.clone();
                    let batch = provider.create_batch(&req, resumed).await?;
                    tracing::info!(job = %job.id, batch = %batch.id, status = %batch.status, "provider batch created");
                    self.core.crash(CrashPoint::SubmitAfterCreate)?;
                    // Terminal statuses are left for poll to handle; the job is in flight now.
                    if !next.mirror(&batch.status, JobStatus::is_in_flight) {
                        next.move_to(JobStatus::Validating)?;
                    }
                    next.provider_status = Some(batch.status.clone());
                    next.provider_batch_id = Some(batch.batch_id());
                    next.submitted_at = Some(now);
                    next.lease_until = None;
                    if batch.request_counts.total > 0 {
                        next.request_counts = batch.request_counts;
                    }
                    return Ok(self.core.save_job(&job, next).await?);
                }
                _ => return Ok(Some(job)),
            }
            match self.core.save_job(&job, next).await? {
                Some(saved) => job = saved,
                None => return Ok(None),
            }
            if job.status == JobStatus::Staged {
                self.core.crash(CrashPoint::SubmitAfterStaged)?;
            }
        }
    }

    /// The batches the other open jobs of the job's provider instance have
    /// recorded: a provider that cannot tag a batch with its job tells a
    /// lost create's batch from theirs this way.
    async fn batches_of_other_jobs(&self, job: &Job) -> Result<Vec<ProviderBatchId>, PipelineError> {
        Ok(self
            .core
            .ports
            .jobs
            .open_jobs()
            .await?
            .into_iter()
            .filter(|j| j.id != job.id && j.provider_name == job.provider_name)
            .filter_map(|j| j.provider_batch_id)
            .collect())
    }

    /// Streams the claimed requests' lines to the job's input object.
    /// Requests whose body cannot be found end failed (they could never be
    /// sent) and are left out. Returns (lines, bytes) written.
    async fn write_input(&self, job: &Job, keys: &[RequestKey]) -> Result<(u64, u64), PipelineError> {
        let url = self.provider(&job.provider_name)?.endpoint_url(job.endpoint);
        let mut writer = self
            .core
            .ports
            .objects
            .writer(&job.input_key, "application/jsonl")
            .await?;
        match self.stream_lines(job, url, keys, writer.as_mut()).await {
            Ok(lines) => {
                let info = writer.finish().await?;
                Ok((lines, info.bytes))
            }
            Err(e) => {
                if !matches!(e, PipelineError::Crashed(_)) {
                    if let Err(abort) = writer.abort().await {
                        tracing::warn!(job = %job.id, error = %abort, "could not abort the input upload");
                    }
                }
                Err(e)
            }
        }
    }

    async fn stream_lines(
        &self,
        job: &Job,
        url: &str,
        keys: &[RequestKey],
        writer: &mut dyn ObjectWriter,
    ) -> Result<u64, PipelineError> {
        let format = self.provider(&job.provider_name)?.format();
        let mut buf = Vec::with_capacity(256 * 1024);
        let mut lines = 0u64;
        let mut missing = Vec::new();
        for (i, chunk) in keys.chunks(100).enumerate() {
            let bodies = self.core.ports.requests.bodies(chunk).await?;
            for key in chunk {
                match bodies.get(key) {
                    Some(body) => {
                        format.write_input_line(&mut buf, key, url, body);
                        lines += 1;
                    }
                    None => missing.push(key.clone()),
                }
            }
            writer.write(&buf).await?;
            buf.clear();
            if i == 0 {
                self.core.crash(CrashPoint::SubmitMidInputWrite)?;
            }
        }
        if !missing.is_empty() {
            tracing::error!(job = %job.id, count = missing.len(), "claimed requests without a stored body; failing them");
            let now = self.core.now();
            let reqs = self.core.ports.requests.get_many(&missing).await?;
            let error = RequestError {
                code: "body_missing".into(),
                message: "the request's body could not be read from storage".into(),
                status_code: None,
            };
            let updates = reqs
                .values()
                .map(|r| RequestUpdate::fail(r, &job.id, error.clone(), now))
                .collect();
            self.core.apply_all(updates).await?;
        }
        Ok(lines)
    }
}

/// A request claimed into a job: what the job row records of it.
#[derive(Debug, Clone)]
struct Claimed {
    key: RequestKey,
    tenant: TenantId,
    weight: Weight,
}

impl Claimed {
    fn of(r: &Request) -> Self {
        Self {
            key: r.key.clone(),
            tenant: r.tenant.clone(),
            weight: r.weight,
        }
    }
}

/// One run's view of the enqueued-token budgets: each model's budget and
/// the estimated tokens its batches out hold (from the open jobs read at
/// the start of the run, plus what this run submits).
struct TokenPlan {
    budgets: HashMap<ModelName, TokenBudget>,
    in_flight: HashMap<ModelName, u64>,
}

impl TokenPlan {
    fn new(budgets: HashMap<ModelName, TokenBudget>, open: &[Job]) -> Self {
        let mut in_flight: HashMap<ModelName, u64> = HashMap::new();
        for j in open.iter().filter(|j| j.status.holds_enqueued_tokens()) {
            *in_flight.entry(j.model.clone()).or_default() += j.tokens;
        }
        Self { budgets, in_flight }
    }

    fn in_flight(&self, model: &ModelName) -> u64 {
        self.in_flight.get(model).copied().unwrap_or(0)
    }

    fn budget(&self, model: &ModelName, limits: &Limits, now: Timestamp) -> TokenBudget {
        self.budgets
            .get(model)
            .cloned()
            .unwrap_or_else(|| TokenBudget::initial(model.clone(), limits.enqueued_token_limit(model.as_str()), now))
    }

    fn add(&mut self, model: &ModelName, tokens: u64) {
        *self.in_flight.entry(model.clone()).or_default() += tokens;
    }
}
