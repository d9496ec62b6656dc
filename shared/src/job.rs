//! Jobs: one batchq job owns at most one provider batch, and the claimed
//! requests inside it. Its status machine follows the protocol in
//! `docs/lifecycle.md`: the row is written before anything leaves AWS, and
//! each step records how far it got so a crashed run can be resumed.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::{JobId, ModelName, ProviderBatchId, ProviderFileId, ProviderName, TenantId};
use crate::money::Money;
use crate::request::{Endpoint, QueueGroup, Usage};
use crate::status::TransitionError;
use crate::time::Timestamp;

crate::status_machine! {
    /// batchq's own view of a job.
    pub enum JobStatus for "job" {
        /// Row written, requests being claimed; nothing has left AWS yet.
        Preparing = "preparing",
        /// Input JSONL written to S3.
        Staged = "staged",
        /// Input file uploaded to the provider (file id recorded).
        Uploaded = "uploaded",
        /// Provider batch exists; mirrors the provider's in-flight statuses.
        Validating = "validating",
        InProgress = "in_progress",
        Finalizing = "finalizing",
        Cancelling = "cancelling",
        /// The provider batch ended (completed, expired or cancelled); result
        /// files are being copied to S3 and ingested.
        Ingesting = "ingesting",
        /// Terminal: every request of the job reached a terminal state or went
        /// back to the queue, and totals are final.
        Done = "done",
        /// Terminal: the job could not run (provider validation failure, input
        /// rejected, batch lost); its requests were failed or re-queued first.
        Failed = "failed",
    }
    // Every allowed transition, and only those. A status write that is not
    // listed is refused before it reaches the store; every write that is
    // listed is conditioned on the `from` status in the store.
    //
    // The provider can jump states between two polls (a fast batch goes from
    // validating to completed unseen), so in-flight states may move to any
    // later in-flight state, to `Ingesting` when the batch ended, or to
    // `Failed`.
    moves {
        Preparing -> Staged,
        Preparing -> Done, // nothing could be claimed: an empty job closes at once
        Preparing -> Failed,
        Staged -> Uploaded,
        Staged -> Failed,
        // After create (or after finding a batch created by a crashed run).
        Uploaded -> Validating,
        Uploaded -> InProgress,
        Uploaded -> Finalizing,
        Uploaded -> Cancelling,
        Uploaded -> Ingesting,
        Uploaded -> Failed,
        Validating -> InProgress,
        Validating -> Finalizing,
        Validating -> Cancelling,
        Validating -> Ingesting,
        Validating -> Failed,
        InProgress -> Finalizing,
        InProgress -> Cancelling,
        InProgress -> Ingesting,
        InProgress -> Failed,
        Finalizing -> Cancelling,
        Finalizing -> Ingesting,
        Finalizing -> Failed,
        Cancelling -> Ingesting,
        Cancelling -> Failed,
        Ingesting -> Done,
    }
}

use JobStatus as J;

/// Why a job cannot be saved as another (see [`Job::succeeded_by`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaveRefused {
    #[error("job {prev} cannot be saved as job {next}")]
    DifferentJobs { prev: JobId, next: JobId },
    #[error(transparent)]
    Transition(#[from] TransitionError),
}

impl JobStatus {
    /// Before the provider batch exists: a submit run owns the job (lease).
    pub fn is_pre_submit(self) -> bool {
        matches!(self, J::Preparing | J::Staged | J::Uploaded)
    }

    /// The provider batch exists and has not ended: poll watches it.
    pub fn is_in_flight(self) -> bool {
        matches!(self, J::Validating | J::InProgress | J::Finalizing | J::Cancelling)
    }

    /// The job's tokens count against its model's enqueued-token limit: it
    /// is about to be submitted, or the provider is validating or running
    /// it (a finalizing batch has run; the provider releases its tokens).
    pub fn holds_enqueued_tokens(self) -> bool {
        matches!(
            self,
            J::Preparing | J::Staged | J::Uploaded | J::Validating | J::InProgress
        )
    }

    /// The job status that mirrors a provider batch status. Terminal provider
    /// outcomes that carry results map to `Ingesting`; `failed` maps to
    /// `Failed`, which poll only writes after releasing the job's requests.
    /// An unknown provider status maps to `None`: keep the current status.
    pub fn mirroring(provider: &ProviderBatchStatus) -> Option<JobStatus> {
        Some(match provider {
            ProviderBatchStatus::Validating => J::Validating,
            ProviderBatchStatus::InProgress => J::InProgress,
            ProviderBatchStatus::Finalizing => J::Finalizing,
            ProviderBatchStatus::Cancelling => J::Cancelling,
            ProviderBatchStatus::Completed | ProviderBatchStatus::Expired | ProviderBatchStatus::Cancelled => {
                J::Ingesting
            }
            ProviderBatchStatus::Failed => J::Failed,
            ProviderBatchStatus::Unknown(_) => return None,
        })
    }
}

/// A provider batch's status as the provider reports it. Values we do not
/// know are kept, not rejected: providers add statuses over time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ProviderBatchStatus {
    Validating,
    InProgress,
    Finalizing,
    Completed,
    Failed,
    Expired,
    Cancelling,
    Cancelled,
    Unknown(String),
}

impl ProviderBatchStatus {
    pub const KNOWN: [ProviderBatchStatus; 8] = [
        Self::Validating,
        Self::InProgress,
        Self::Finalizing,
        Self::Completed,
        Self::Failed,
        Self::Expired,
        Self::Cancelling,
        Self::Cancelled,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            Self::Validating => "validating",
            Self::InProgress => "in_progress",
            Self::Finalizing => "finalizing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
            Self::Unknown(s) => s,
        }
    }

    pub fn parse(s: &str) -> Self {
        Self::KNOWN
            .into_iter()
            .find(|k| k.as_str() == s)
            .unwrap_or_else(|| Self::Unknown(s.to_owned()))
    }

    /// The provider will not change this batch any more.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Expired | Self::Cancelled)
    }
}

impl fmt::Display for ProviderBatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ProviderBatchStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ProviderBatchStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Self::parse(&s))
    }
}

/// Which provider API a job was submitted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    #[serde(rename = "openai")]
    OpenAi,
    #[serde(rename = "azure_openai")]
    AzureOpenAi,
    /// Anthropic Message Batches.
    #[serde(rename = "anthropic")]
    Anthropic,
    /// Groq's OpenAI-compatible Batch API (`/openai/v1`).
    #[serde(rename = "groq")]
    Groq,
    /// Together AI's batch API (OpenAI-like, with its own line and status shapes).
    #[serde(rename = "together")]
    Together,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 5] = [
        Self::OpenAi,
        Self::AzureOpenAi,
        Self::Anthropic,
        Self::Groq,
        Self::Together,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::AzureOpenAi => "azure_openai",
            Self::Anthropic => "anthropic",
            Self::Groq => "groq",
            Self::Together => "together",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "azure" => Some(Self::AzureOpenAi),
            _ => Self::ALL.into_iter().find(|k| k.as_str() == s),
        }
    }
}

/// The provider's `request_counts`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

/// Usage and money of a job, accumulated at ingest (each result file counted once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostTotals {
    pub usage: Usage,
    pub batch_cost: Money,
    pub realtime_cost: Money,
    /// Results whose model had no known price (their cost is not in the sums).
    pub unpriced_requests: u64,
}

impl CostTotals {
    /// Adds `other` (the totals of one more file).
    pub fn add(&mut self, other: &CostTotals) {
        self.usage.add(&other.usage);
        self.batch_cost += other.batch_cost;
        self.realtime_cost += other.realtime_cost;
        self.unpriced_requests += other.unpriced_requests;
    }

    pub fn saved(&self) -> Money {
        self.realtime_cost - self.batch_cost
    }
}

/// One batch-level error reported by the provider (validation failures).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    pub code: String,
    pub message: String,
    /// 1-based line in the input file, when the error is about one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
}

/// Tenants kept on a job row; a job holding requests of more records the
/// count and finds the rest through the store's per-tenant items.
pub const MAX_JOB_TENANTS: usize = 100;

/// A job row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    /// The API the job's batch goes to.
    pub provider: ProviderKind,
    /// The provider instance (account) the job's batch goes to.
    pub provider_name: ProviderName,
    pub endpoint: Endpoint,
    pub model: ModelName,
    pub status: JobStatus,
    /// The provider's last reported status, once the batch exists.
    pub provider_status: Option<ProviderBatchStatus>,
    /// S3 key of the input JSONL (deterministic from the id).
    pub input_key: String,
    pub input_lines: u64,
    pub input_bytes: u64,
    /// Estimated input tokens of the claimed requests (see `tokens`).
    pub tokens: u64,
    /// Embedding inputs of the claimed requests (one per request elsewhere).
    pub inputs: u64,
    /// Estimated tokens of the model's other batches waiting or running when
    /// this job was planned: with `tokens`, what the provider was asked to
    /// hold at once (to learn from a `token_limit_exceeded` refusal).
    pub tokens_in_flight_before: u64,
    /// The model's budget's `refusals_total` when this job was planned.
    pub budget_refusals_seen: u64,
    pub provider_file_id: Option<ProviderFileId>,
    pub provider_batch_id: Option<ProviderBatchId>,
    pub output_file_id: Option<ProviderFileId>,
    pub error_file_id: Option<ProviderFileId>,
    pub request_counts: RequestCounts,
    pub errors: Vec<JobError>,
    pub totals: CostTotals,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub submitted_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// A submit run that owns a pre-submit job holds it until this time; a
    /// later run may resume the job after it.
    pub lease_until: Option<Timestamp>,
    /// When poll finished copying the provider's result files to S3 (and
    /// deleting them at the provider, when configured).
    pub copied_at: Option<Timestamp>,
    /// The output file's lines are applied and its totals added (once).
    pub ingested_output: bool,
    /// The error file's lines are applied and its totals added (once).
    pub ingested_errors: bool,
    /// Lines of the counted result files that named a request of this job
    /// (added with each file's totals). Fewer than `input_lines`: the
    /// provider left some requests out, which closing the job looks for.
    pub result_lines: u64,
    /// AWS the runs about this job used (its submit, poll and ingest runs;
    /// not the enqueue of its requests), folded into its saves
    /// ([`crate::overhead`]). Zero on the memory and embedded stores.
    #[serde(default)]
    pub aws_overhead: Money,
    /// The part of `aws_overhead` its ingest runs used. The rest (submit's
    /// and poll's) goes to the per-tenant savings totals with the job's
    /// output file (its error file when it has none), once.
    #[serde(default)]
    pub aws_overhead_ingest: Money,
    /// Provider batches found carrying this job's id besides its own (a
    /// second create after a lost answer): cancelled by poll, kept here so
    /// they are reported once.
    pub duplicate_batches: Vec<ProviderBatchId>,
    /// A job given up at its deadline while its batch had not ended: poll
    /// keeps watching the batch until this time, to use answers it still
    /// delivers (see `late`).
    pub watch_until: Option<Timestamp>,
    /// Late answers of the given-up batch that finished their requests.
    pub late_used: u64,
    /// Late answers for requests already sent again (or finished) elsewhere:
    /// paid twice, and what the second payment cost at batch prices.
    pub double_spent: u64,
    pub double_spent_cost: Money,
    /// Optimistic-concurrency version: every save is conditioned on the
    /// stored version (and status) being the ones this copy was read with.
    pub version: u64,
    /// Tenants with requests in this job, recorded once its requests are
    /// claimed, at most [`MAX_JOB_TENANTS`] of them (a DynamoDB item holds
    /// 400 KB); the store keeps one small item per tenant and job besides,
    /// through which every tenant finds and may read the job.
    pub tenants: Vec<TenantId>,
    /// How many tenants the job holds requests of (all of them, also
    /// those past `tenants`).
    pub tenant_count: u64,
    /// When DynamoDB's TTL may delete the finished job (`BATCHQ_RETENTION_DAYS`).
    pub expires_at: Option<Timestamp>,
}

impl Job {
    /// A fresh job in `Preparing`, with its input key fixed from its id.
    pub fn new(id: JobId, provider: ProviderKind, group: &QueueGroup, now: Timestamp, lease_until: Timestamp) -> Self {
        let input_key = crate::keys::job_input(&id);
        Self {
            id,
            provider,
            provider_name: group.provider.clone(),
            endpoint: group.endpoint,
            model: group.model.clone(),
            status: JobStatus::Preparing,
            provider_status: None,
            input_key,
            input_lines: 0,
            input_bytes: 0,
            tokens: 0,
            inputs: 0,
            tokens_in_flight_before: 0,
            budget_refusals_seen: 0,
            provider_file_id: None,
            provider_batch_id: None,
            output_file_id: None,
            error_file_id: None,
            request_counts: RequestCounts::default(),
            errors: Vec::new(),
            totals: CostTotals::default(),
            created_at: now,
            updated_at: now,
            submitted_at: None,
            finished_at: None,
            lease_until: Some(lease_until),
            copied_at: None,
            ingested_output: false,
            ingested_errors: false,
            result_lines: 0,
            aws_overhead: Money::ZERO,
            aws_overhead_ingest: Money::ZERO,
            duplicate_batches: Vec::new(),
            watch_until: None,
            late_used: 0,
            double_spent: 0,
            double_spent_cost: Money::default(),
            version: 0,
            tenants: Vec::new(),
            tenant_count: 0,
            expires_at: None,
        }
    }

    pub fn queue_group(&self) -> QueueGroup {
        QueueGroup {
            provider: self.provider_name.clone(),
            endpoint: self.endpoint,
            model: self.model.clone(),
        }
    }

    /// Moves the job to `next`, refusing a move its status machine does not
    /// list. The store's conditional save still guards against races: this
    /// check catches a wrong move where it is made.
    pub fn move_to(&mut self, next: JobStatus) -> Result<(), TransitionError> {
        self.status.check_transition(next)?;
        self.status = next;
        Ok(())
    }

    /// Mirrors the provider's batch status when the job may move there
    /// (see [`JobStatus::mirroring`]); `only` filters the statuses taken.
    /// Returns whether the job moved.
    pub fn mirror(&mut self, provider: &ProviderBatchStatus, only: impl Fn(JobStatus) -> bool) -> bool {
        match JobStatus::mirroring(provider).filter(|s| only(*s) && self.status.can_transition_to(*s)) {
            Some(st) => {
                self.status = st;
                true
            }
            None => false,
        }
    }

    /// Ends the job in a terminal status (`Done` or `Failed`) at `now`:
    /// stamps `finished_at` and `updated_at`.
    pub fn finish(&mut self, end: JobStatus, now: Timestamp) -> Result<(), TransitionError> {
        debug_assert!(end.is_terminal(), "{end} is not a terminal job status");
        self.move_to(end)?;
        self.finished_at = Some(now);
        self.updated_at = now;
        Ok(())
    }

    /// `next` as a store saves it in place of this job (conditioned on
    /// this job's status and version): the same job, a status move the
    /// machine allows, one version on.
    pub fn succeeded_by(&self, mut next: Job) -> Result<Job, SaveRefused> {
        if self.id != next.id {
            return Err(SaveRefused::DifferentJobs {
                prev: self.id.clone(),
                next: next.id,
            });
        }
        if self.status != next.status {
            self.status.check_transition(next.status)?;
        }
        next.version = self.version + 1;
        Ok(next)
    }

    /// Whether `tenants` names every tenant of the job.
    pub fn lists_every_tenant(&self) -> bool {
        self.tenant_count <= self.tenants.len() as u64
    }

    /// Whether `tenant` holds requests of this job, when the row alone
    /// tells; `None` when its bounded list is full and the store's
    /// per-tenant records must be asked (`JobStore::add_job_tenants`).
    pub fn holds_tenant(&self, tenant: &TenantId) -> Option<bool> {
        if self.tenants.contains(tenant) {
            Some(true)
        } else if self.lists_every_tenant() {
            Some(false)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed_pairs() -> Vec<(&'static str, &'static str)> {
        let in_flight_after_upload = ["validating", "in_progress", "finalizing", "cancelling"];
        let mut v = vec![
            ("preparing", "staged"),
            ("preparing", "done"),
            ("preparing", "failed"),
            ("staged", "uploaded"),
            ("staged", "failed"),
            ("ingesting", "done"),
        ];
        for to in in_flight_after_upload {
            v.push(("uploaded", to));
        }
        v.push(("uploaded", "ingesting"));
        v.push(("uploaded", "failed"));
        // In-flight states only move forward (validating < in_progress < finalizing < cancelling).
        for (i, from) in in_flight_after_upload.iter().enumerate() {
            for to in &in_flight_after_upload[i + 1..] {
                v.push((from, to));
            }
            v.push((from, "ingesting"));
            v.push((from, "failed"));
        }
        v
    }

    #[test]
    fn every_job_status_pair_is_allowed_exactly_when_listed() {
        let allowed = allowed_pairs();
        assert_eq!(allowed.len(), JobStatus::TRANSITIONS.len());
        for from in JobStatus::ALL {
            for to in JobStatus::ALL {
                let expected = allowed.contains(&(from.as_str(), to.as_str()));
                assert_eq!(
                    from.can_transition_to(to),
                    expected,
                    "{from} -> {to} should be {}",
                    if expected { "allowed" } else { "forbidden" }
                );
                assert_eq!(from.check_transition(to).is_ok(), expected);
            }
        }
    }

    #[test]
    fn done_and_failed_are_the_terminal_job_statuses() {
        let terminal: Vec<_> = JobStatus::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal, [JobStatus::Done, JobStatus::Failed]);
    }

    #[test]
    fn terminal_job_statuses_have_no_way_out() {
        for from in [JobStatus::Done, JobStatus::Failed] {
            assert!(from.is_terminal());
            for to in JobStatus::ALL {
                assert!(!from.can_transition_to(to));
            }
        }
    }

    #[test]
    fn no_job_status_transitions_to_itself() {
        for s in JobStatus::ALL {
            assert!(
                !s.can_transition_to(s),
                "{s} -> {s}: progress updates are not transitions"
            );
        }
    }

    #[test]
    fn job_status_round_trips_through_its_string() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>().unwrap(), s);
        }
    }

    fn job_in(status: JobStatus) -> Job {
        let group = QueueGroup::of(Endpoint::ChatCompletions, ModelName::parse("m").unwrap());
        let t = Timestamp::from_unix_seconds(1_700_000_000);
        let mut job = Job::new(JobId::generate(), ProviderKind::OpenAi, &group, t, t);
        job.status = status;
        job
    }

    #[test]
    fn a_job_moves_only_along_its_status_machine() {
        let mut job = job_in(JobStatus::Preparing);
        job.move_to(JobStatus::Staged).unwrap();
        assert_eq!(job.status, JobStatus::Staged);
        let e = job.move_to(JobStatus::Ingesting).unwrap_err();
        assert_eq!(e.to_string(), "illegal job transition staged -> ingesting");
        assert_eq!(job.status, JobStatus::Staged, "a refused move leaves the job as it was");
    }

    #[test]
    fn finishing_a_job_stamps_when_and_refuses_a_finished_one() {
        let mut job = job_in(JobStatus::Ingesting);
        let later = Timestamp::from_unix_seconds(1_700_000_100);
        job.finish(JobStatus::Done, later).unwrap();
        assert_eq!(
            (job.status, job.finished_at, job.updated_at),
            (JobStatus::Done, Some(later), later)
        );
        assert!(job.finish(JobStatus::Failed, later).is_err());
    }

    #[test]
    fn mirroring_moves_forward_only() {
        let mut job = job_in(JobStatus::InProgress);
        assert!(!job.mirror(&ProviderBatchStatus::Validating, |_| true));
        assert_eq!(job.status, JobStatus::InProgress);
        assert!(!job.mirror(&ProviderBatchStatus::Completed, |s| s.is_in_flight()));
        assert!(job.mirror(&ProviderBatchStatus::Finalizing, |_| true));
        assert_eq!(job.status, JobStatus::Finalizing);
    }

    #[test]
    fn provider_statuses_parse_and_unknown_ones_are_kept() {
        for k in ProviderBatchStatus::KNOWN {
            assert_eq!(ProviderBatchStatus::parse(k.as_str()), k);
        }
        let u: ProviderBatchStatus = serde_json::from_str("\"paused\"").unwrap();
        assert_eq!(u, ProviderBatchStatus::Unknown("paused".into()));
        assert_eq!(serde_json::to_string(&u).unwrap(), "\"paused\"");
        assert!(!u.is_terminal());
        assert_eq!(JobStatus::mirroring(&u), None);
    }

    #[test]
    fn every_provider_status_mirrors_to_a_reachable_job_status() {
        for p in ProviderBatchStatus::KNOWN {
            let j = JobStatus::mirroring(&p).unwrap();
            // Reachable from a freshly created batch.
            assert!(JobStatus::Uploaded.can_transition_to(j), "{p} -> {j}");
            assert_eq!(p.is_terminal(), matches!(j, JobStatus::Ingesting | JobStatus::Failed));
        }
    }
}
