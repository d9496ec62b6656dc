//! Storage ports: what the core needs from its stores, as small traits. The
//! AWS adapters ([`dynamo`], [`s3`]) implement them; tests run the adapters
//! against a local emulator through the real SDK. The embedded adapters
//! (`sqlite`, `fs`, opened together by `data_dir`; built with the
//! `embedded` feature, which the Lambda functions leave off) keep everything
//! in one local directory; [`memory`] keeps it in the process.
//!
//! A row store implements [`RequestRows`] (rows with bodies and responses
//! already placed) and [`placed::PlacedStore`] turns it, with an
//! [`ObjectStore`], into the [`RequestStore`] the core uses.

#[cfg(feature = "embedded")]
pub mod data_dir;
#[cfg(feature = "embedded")]
pub mod dir_lock;
pub mod dynamo;
#[cfg(feature = "embedded")]
pub mod fs;
pub mod memory;
pub mod placed;
pub mod s3;
#[cfg(feature = "embedded")]
pub mod sqlite;
pub mod usage;
pub mod webhooks;

use std::collections::HashMap;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use thiserror::Error;

use crate::activity::{ActivityRows, Hour};
use crate::budget::TokenBudget;
use crate::error::TransitionError;
use crate::feed::{FeedCursor, FeedPage};
use crate::ids::{JobId, ModelName, ProviderName, RequestKey, TenantId};
use crate::job::{Job, SaveRefused};
use crate::money::Money;
use crate::placement::QueuedRow;
use crate::request::{InsertOutcome, NewRequest, Payload, QueueGroup, Request, RequestResult, RequestStatus, Usage};
use crate::time::Timestamp;
use crate::transition::{Refusal, RequestUpdate};

#[derive(Debug, Error)]
pub enum StoreError {
    /// A conditional write found the row in another state; nothing was written.
    #[error("{entity} {id}: expected {expected}, found {}", actual.as_deref().unwrap_or("no row"))]
    ConditionFailed {
        entity: &'static str,
        id: String,
        expected: String,
        /// The stored status (or version) that made the condition fail, when known.
        actual: Option<String>,
    },
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },
    #[error(transparent)]
    IllegalTransition(#[from] TransitionError),
    /// A stored item could not be read back into the domain type.
    #[error("{entity} {id} is corrupt: {reason}")]
    Corrupt {
        entity: &'static str,
        id: String,
        reason: String,
    },
    /// The request is too large for what the store can hold.
    #[error("{what} is too large: {bytes} bytes (limit {limit})")]
    TooLarge { what: &'static str, bytes: u64, limit: u64 },
    /// A feed cursor that is not one of this tenant's.
    #[error("not a results cursor of this tenant: {0}")]
    BadCursor(String),
    /// The backend failed (network, throttling after retries, service error).
    #[error("{op} failed: {message}")]
    Backend { op: &'static str, message: String },
}

impl From<SaveRefused> for StoreError {
    fn from(e: SaveRefused) -> Self {
        match e {
            SaveRefused::Transition(t) => Self::IllegalTransition(t),
            other => Self::backend("save_job", other),
        }
    }
}

impl StoreError {
    pub fn backend(op: &'static str, err: impl std::fmt::Display) -> Self {
        Self::Backend {
            op,
            message: err.to_string(),
        }
    }

    pub fn is_condition_failed(&self) -> bool {
        matches!(self, Self::ConditionFailed { .. })
    }

    /// What a refused conditional write of `u` means to its caller: a
    /// replay is [`Applied::Already`], anything else an error.
    pub fn from_refusal(u: &RequestUpdate, refusal: Refusal) -> Result<Applied, StoreError> {
        match refusal {
            Refusal::AlreadyApplied => Ok(Applied::Already),
            Refusal::NoRow => Err(StoreError::NotFound {
                entity: "request",
                id: u.key.to_string(),
            }),
            Refusal::Elsewhere { expected, actual } => Err(StoreError::ConditionFailed {
                entity: "request",
                id: u.key.to_string(),
                expected,
                actual: Some(actual),
            }),
        }
    }
}

/// One page of a listing, with the cursor for the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Opaque; `None` when this was the last page.
    pub next: Option<String>,
}

/// A queue group with waiting requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueGroupStats {
    pub group: QueueGroup,
    pub queued: u64,
}

/// Requests per status for one tenant, kept exact by updating counters in
/// the same transaction as the status change they count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub by_status: HashMap<RequestStatus, i64>,
    /// Bytes of the bodies of requests not yet finished.
    pub pending_bytes: i64,
    /// Estimated batch cost of the requests not yet finished, in
    /// nanodollars ([`crate::counters::Counter::Committed`]).
    pub committed_nanos: i64,
}

impl StatusCounts {
    pub fn get(&self, s: RequestStatus) -> i64 {
        self.by_status.get(&s).copied().unwrap_or(0)
    }

    /// Requests not yet finished (queued, claimed or at the provider).
    pub fn pending(&self) -> i64 {
        self.by_status
            .iter()
            .filter(|(s, _)| !s.is_terminal())
            .map(|(_, n)| *n)
            .sum()
    }
}

/// How a conditional change ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// This call made the change.
    Now,
    /// The row already was in the target state (a replay); nothing written.
    Already,
}

/// The queue and request rows.
#[async_trait]
pub trait RequestStore: Send + Sync {
    /// Stores each request unless a row with its key exists. Atomic per
    /// request: a request's state and body are written together or not at all.
    async fn insert(&self, requests: Vec<NewRequest>, now: Timestamp) -> Result<Vec<InsertOutcome>, StoreError>;

    /// Reads a request's state (strongly consistent).
    async fn get(&self, key: &RequestKey) -> Result<Option<Request>, StoreError>;

    /// Reads the states of many requests (strongly consistent); unknown keys
    /// are absent from the map.
    async fn get_many(&self, keys: &[RequestKey]) -> Result<HashMap<RequestKey, Request>, StoreError>;

    /// Reads a request's state and, when stored, its result.
    async fn get_with_result(&self, key: &RequestKey) -> Result<Option<(Request, Option<RequestResult>)>, StoreError>;

    /// The serialized bodies of these requests (large ones fetched from S3).
    async fn bodies(&self, keys: &[RequestKey]) -> Result<HashMap<RequestKey, String>, StoreError>;

    /// Queued requests of one group, oldest first. The index behind this is
    /// eventually consistent: a listed request may already be taken, which
    /// the conditional claim detects.
    async fn queued(&self, group: &QueueGroup, cursor: Option<String>, limit: u32)
        -> Result<Page<Request>, StoreError>;

    /// Queue groups holding queued requests, with their counts.
    async fn queue_groups(&self) -> Result<Vec<QueueGroupStats>, StoreError>;

    /// Requests whose latest job is `job`, any status.
    async fn by_job(&self, job: &JobId, cursor: Option<String>, limit: u32) -> Result<Page<Request>, StoreError>;

    /// Applies one conditional status change (and its counters and result) atomically.
    async fn apply(&self, update: RequestUpdate) -> Result<Applied, StoreError>;

    /// Applies many changes; each succeeds or fails on its own condition.
    /// Results come back in input order.
    async fn apply_many(&self, updates: Vec<RequestUpdate>) -> Result<Vec<Result<Applied, StoreError>>, StoreError>;

    /// Per-status counts for a tenant.
    async fn counts(&self, tenant: &TenantId) -> Result<StatusCounts, StoreError>;

    /// A tenant's hourly activity counters of hours `from..=to` (hours with
    /// none are absent) and its queued requests per model now.
    async fn activity(&self, tenant: &TenantId, from: Hour, to: Hour) -> Result<ActivityRows, StoreError>;

    /// Up to `limit` (1..=[`crate::feed::MAX_PAGE`]) of `tenant`'s feed
    /// entries after `after` (`None`: from the oldest kept), in the order
    /// their terminal transitions committed. Every entry is in exactly one
    /// page of a reader that follows `next`: none ever appears behind a
    /// cursor already handed out. A cursor of another tenant, or none this
    /// store issued, is refused ([`StoreError::BadCursor`]).
    async fn feed(&self, tenant: &TenantId, after: Option<&FeedCursor>, limit: u32) -> Result<FeedPage, StoreError>;

    /// The cursor of `tenant`'s newest feed entry (`None`: its feed is
    /// empty): following from it gives only entries appended later. A new
    /// webhook endpoint starts here.
    async fn feed_end(&self, tenant: &TenantId) -> Result<Option<FeedCursor>, StoreError>;

    /// Folds what the process's AWS usage tally holds (on AWS) into
    /// `tenant`'s overhead of `hour` now, in a write of its own, instead of
    /// leaving it to the next write that carries the tally. A bulk call ends
    /// with it: its last transaction's own units, and its own time, would
    /// otherwise wait in the tally for the process's next call (and be lost
    /// if there is none). Stores that use no AWS have nothing to fold.
    async fn settle_overhead(&self, _tenant: &TenantId, _hour: Hour) -> Result<(), StoreError> {
        Ok(())
    }
}

/// How inserting one queued row ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowInsert {
    /// The row was written.
    Written,
    /// A row with its key was there already (this one); nothing was written.
    Exists(Box<Request>),
}

/// What a row store (DynamoDB, in memory, …) implements: the request rows
/// with bodies and responses already placed ([`crate::placement`]), so it
/// only maps and persists. [`placed::PlacedStore`] adds the object-store
/// side and makes it a [`RequestStore`].
#[async_trait]
pub trait RequestRows: Send + Sync {
    /// Stores each row unless one with its key exists (keys are distinct).
    /// Atomic per row: a request's state and body are written together or
    /// not at all. One answer per row, in order.
    async fn insert_rows(&self, rows: Vec<QueuedRow>) -> Result<Vec<RowInsert>, StoreError>;

    async fn get(&self, key: &RequestKey) -> Result<Option<Request>, StoreError>;

    async fn get_many(&self, keys: &[RequestKey]) -> Result<HashMap<RequestKey, Request>, StoreError>;

    async fn get_with_result(&self, key: &RequestKey) -> Result<Option<(Request, Option<RequestResult>)>, StoreError>;

    /// The stored bodies of these requests, as placed; unknown keys are absent.
    async fn body_payloads(&self, keys: &[RequestKey]) -> Result<HashMap<RequestKey, Payload>, StoreError>;

    async fn queued(&self, group: &QueueGroup, cursor: Option<String>, limit: u32)
        -> Result<Page<Request>, StoreError>;

    async fn queue_groups(&self) -> Result<Vec<QueueGroupStats>, StoreError>;

    async fn by_job(&self, job: &JobId, cursor: Option<String>, limit: u32) -> Result<Page<Request>, StoreError>;

    /// As [`RequestStore::apply_many`], with every result's response
    /// already placed.
    async fn apply_placed(&self, updates: Vec<RequestUpdate>) -> Result<Vec<Result<Applied, StoreError>>, StoreError>;

    async fn counts(&self, tenant: &TenantId) -> Result<StatusCounts, StoreError>;

    async fn activity(&self, tenant: &TenantId, from: Hour, to: Hour) -> Result<ActivityRows, StoreError>;

    async fn feed(&self, tenant: &TenantId, after: Option<&FeedCursor>, limit: u32) -> Result<FeedPage, StoreError>;

    /// The cursor of `tenant`'s newest feed entry (`None`: its feed is
    /// empty): following from it gives only entries appended later. A new
    /// webhook endpoint starts here.
    async fn feed_end(&self, tenant: &TenantId) -> Result<Option<FeedCursor>, StoreError>;

    /// As [`RequestStore::settle_overhead`].
    async fn settle_overhead(&self, _tenant: &TenantId, _hour: Hour) -> Result<(), StoreError> {
        Ok(())
    }
}

/// What webhook delivery reads of requests and jobs: the three reads of
/// [`RequestStore`] and [`JobStore`] the dispatcher makes, as its own port.
/// Built over the whole ports ([`crate::ports::Ports`]) by every caller
/// that has them, and over the DynamoDB row store alone by the deliver
/// function, which so links neither the request and job writes nor S3
/// (issue #20, binary sizes). Each method is the same as the one it names.
#[async_trait]
pub trait DeliveryReads: Send + Sync {
    /// [`RequestStore::feed`].
    async fn feed(&self, tenant: &TenantId, after: Option<&FeedCursor>, limit: u32) -> Result<FeedPage, StoreError>;

    /// [`RequestStore::get_with_result`].
    async fn get_with_result(&self, key: &RequestKey) -> Result<Option<(Request, Option<RequestResult>)>, StoreError>;

    /// [`JobStore::list_jobs`].
    async fn list_jobs(
        &self,
        tenant: Option<&TenantId>,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Job>, StoreError>;
}

/// A store of both requests and jobs reads for delivery through them.
#[async_trait]
impl<T: RequestStore + JobStore + ?Sized> DeliveryReads for T {
    async fn feed(&self, tenant: &TenantId, after: Option<&FeedCursor>, limit: u32) -> Result<FeedPage, StoreError> {
        RequestStore::feed(self, tenant, after, limit).await
    }

    async fn get_with_result(&self, key: &RequestKey) -> Result<Option<(Request, Option<RequestResult>)>, StoreError> {
        RequestStore::get_with_result(self, key).await
    }

    async fn list_jobs(
        &self,
        tenant: Option<&TenantId>,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Job>, StoreError> {
        JobStore::list_jobs(self, tenant, cursor, limit).await
    }
}

/// The job rows.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Writes a new job; fails with `ConditionFailed` if the id exists.
    async fn create_job(&self, job: &Job) -> Result<(), StoreError>;

    async fn get_job(&self, id: &JobId) -> Result<Option<Job>, StoreError>;

    /// Saves `next` in place of `prev`, conditioned on the stored row still
    /// having `prev`'s status and version. A status change must be an allowed
    /// transition. Returns the saved job (version + 1).
    async fn save_job(&self, prev: &Job, next: Job) -> Result<Job, StoreError>;

    /// Jobs that are not terminal, oldest first.
    async fn open_jobs(&self) -> Result<Vec<Job>, StoreError>;

    /// Records that `job` holds requests of each of `tenants` (idempotent),
    /// so each finds the job (`list_jobs`) and may read it (`job_has_tenant`)
    /// however many tenants one job holds.
    async fn add_job_tenants(&self, job: &Job, tenants: &[TenantId]) -> Result<(), StoreError>;

    /// Whether `job` holds requests of `tenant` (`add_job_tenants`).
    async fn job_has_tenant(&self, job: &Job, tenant: &TenantId) -> Result<bool, StoreError>;

    /// Jobs newest first; with `tenant`, only the jobs holding its requests.
    async fn list_jobs(
        &self,
        tenant: Option<&TenantId>,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Job>, StoreError>;

    /// The enqueued-token budgets learnt so far, per model.
    async fn token_budgets(&self) -> Result<HashMap<ModelName, TokenBudget>, StoreError>;

    /// Saves a model's budget. The last writer wins: a budget is an
    /// estimate, and poll (the only step that learns) handles jobs one by one.
    async fn save_token_budget(&self, budget: &TokenBudget) -> Result<(), StoreError>;
}

/// Money and tokens of completed requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavingsTotals {
    /// Completed requests counted (priced or not).
    pub requests: u64,
    pub usage: Usage,
    pub batch_cost: Money,
    pub realtime_cost: Money,
    /// Completed requests whose model has no price: in `requests` and
    /// `usage`, not in the costs.
    pub unpriced_requests: u64,
    /// AWS the runs about these results used ([`crate::overhead`]): the
    /// ingest runs that counted them, and the submit and poll runs of their
    /// jobs (carried by each job's output file, else its error file).
    #[serde(default)]
    pub aws_overhead: Money,
}

impl SavingsTotals {
    pub fn add(&mut self, other: &SavingsTotals) {
        self.requests += other.requests;
        self.usage.add(&other.usage);
        self.batch_cost += other.batch_cost;
        self.realtime_cost += other.realtime_cost;
        self.unpriced_requests += other.unpriced_requests;
        self.aws_overhead += other.aws_overhead;
    }

    pub fn saved(&self) -> Money {
        self.realtime_cost - self.batch_cost
    }
}

/// The totals of one tenant, day (UTC, `YYYY-MM-DD`) and model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavingsRow {
    pub tenant: TenantId,
    pub day: String,
    /// The provider instance that ran the requests.
    pub provider: ProviderName,
    pub model: ModelName,
    pub totals: SavingsTotals,
}

/// Running savings totals, kept at ingest.
#[async_trait]
pub trait SavingsStore: Send + Sync {
    /// Adds each row to its running total, once per `source` (a result
    /// file): a total that already counted `source` is left as it is, so a
    /// replay or a re-run after a crash never counts twice.
    async fn add_savings(&self, source: &str, rows: Vec<SavingsRow>) -> Result<(), StoreError>;

    /// The totals of `tenant` for days `from..=to` (`YYYY-MM-DD`), by day then model.
    async fn savings(&self, tenant: &TenantId, from: &str, to: &str) -> Result<Vec<SavingsRow>, StoreError>;
}

/// Metadata of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub bytes: u64,
}

/// A stream of an object's bytes, in chunks as they arrive.
pub type ByteStream = BoxStream<'static, Result<Bytes, StoreError>>;

/// The object store (S3).
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Writes a small object in one call.
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError>;

    /// Reads a whole (small) object; `None` if it does not exist.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;

    /// Bytes `start..end` of an object (fewer when it is shorter); `None`
    /// if it does not exist. Adapters read only that range; this default
    /// reads the whole object.
    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Option<Bytes>, StoreError> {
        Ok(self.get(key).await?.map(|b| slice_range(&b, start, end)))
    }

    /// Size of an object; `None` if it does not exist.
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError>;

    /// Streams an object's bytes without holding it in memory.
    async fn open(&self, key: &str) -> Result<(ObjectInfo, ByteStream), StoreError>;

    /// Starts a streaming write; nothing is visible under `key` until `finish`.
    async fn writer(&self, key: &str, content_type: &str) -> Result<Box<dyn ObjectWriter>, StoreError>;

    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// A short-lived GET URL for an object.
    async fn presign_get(&self, key: &str, ttl: std::time::Duration) -> Result<String, StoreError>;
}

/// Bytes `start..end` of `data`, clamped to its length.
pub(crate) fn slice_range(data: &Bytes, start: u64, end: u64) -> Bytes {
    let len = data.len() as u64;
    let (start, end) = (start.min(len), end.min(len).max(start.min(len)));
    data.slice(start as usize..end as usize)
}

/// A streaming object writer with a bounded buffer.
#[async_trait]
pub trait ObjectWriter: Send {
    async fn write(&mut self, data: &[u8]) -> Result<(), StoreError>;

    /// Makes the object visible and returns its size.
    async fn finish(self: Box<Self>) -> Result<ObjectInfo, StoreError>;

    /// Discards everything written so far.
    async fn abort(self: Box<Self>) -> Result<(), StoreError>;

    /// Accounting, for tests and benchmarks.
    fn stats(&self) -> WriterStats;
}

/// What a streaming writer did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub bytes_written: u64,
    pub parts_uploaded: u64,
    /// Largest amount of data ever held in the writer's buffer.
    pub max_buffered: u64,
}
