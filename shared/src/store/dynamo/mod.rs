//! DynamoDB adapter of [`RequestStore`] and [`JobStore`]. The table design is
//! documented in `docs/storage.md`; the short version:
//!
//! * requests table, key (`pk` = request key, `sk` = `state` | `body` | `result`).
//!   `queue-index` (sparse: `queue`, `queue_order`) lists queued requests of a
//!   group oldest first; `job-index` (`job_id`, `pk`) lists a job's requests.
//! * jobs table, key (`pk`, `sk`): job rows (`job#{id}` / `job`), sharded
//!   counters (`counter#tenant#{t}` and `counter#queue`), each tenant's
//!   results feed (`feed#{t}`, with its sequence item `feedseq#{t}`). `jobs-index`
//!   (`kind`, `created_at`) lists all jobs; `open-index` (sparse `open`,
//!   `created_at`) the unfinished ones.
//!
//! The adapter only maps and persists: the rules it applies (what a queued
//! row holds, which counters a change moves, which transitions are allowed,
//! where a large body goes) come from the domain (`transition`, `counters`,
//! `placement`), and bodies and responses arrive already placed
//! (`store::placed`).
//!
//! Every status write is conditioned on the previous status (and, for a
//! claimed request, its job; for a job, its version). Counters change in the
//! same transaction as the status they count, so they are exact under
//! retries and crashes.

mod counters;
mod feed;
mod item;
mod job_item;
mod jobs;
mod query;
mod request_item;
mod requests;
mod savings;
pub(crate) mod tables;
mod transact;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::overhead::UsageTally;

type Item = HashMap<String, AttributeValue>;

/// Index and attribute names, shared with `batchq init`, the docs and the SAM template.
pub mod schema {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    pub const QUEUE_INDEX: &str = "queue-index";
    pub const JOB_INDEX: &str = "job-index";
    pub const JOBS_INDEX: &str = "jobs-index";
    pub const OPEN_INDEX: &str = "open-index";
    pub const SK_STATE: &str = "state";
    pub const SK_BODY: &str = "body";
    pub const SK_RESULT: &str = "result";
    pub const SK_JOB: &str = "job";
    /// The TTL attribute of both tables (epoch seconds).
    pub const EXPIRES_AT: &str = "expires_at";
    /// Counter items are spread over this many shards, each its own
    /// partition key, so concurrent transactions rarely touch the same item
    /// and no one partition takes every counter write (DynamoDB gives a
    /// partition key at most 1,000 write units a second).
    pub const COUNTER_SHARDS: u8 = 8;
    /// A job's requests are spread over this many partitions of job-index
    /// (`job_part` = `{job}#{part}`): every claim and every finish of a
    /// 50,000-request job writes its index entry, more than one partition
    /// key takes in a second.
    pub const JOB_PARTS: u8 = 16;
}

/// The body item's expiry is set when it is written, `retention` plus
/// [`BODY_HORIZON`] after enqueue, so finishing a request never rewrites it:
/// an update of the (up to 16 KB) body item costs as many write units as
/// writing it, and inside a transaction twice that.
pub use crate::keys::BODY_HORIZON;

#[derive(Clone)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    requests_table: String,
    jobs_table: String,
    /// How long finished rows are kept before DynamoDB's TTL deletes them.
    retention: Option<Duration>,
    /// The process's AWS usage tally ([`crate::overhead`]): an insert's
    /// transactions fold what it holds into their tenant's activity item.
    usage: Option<Arc<UsageTally>>,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("requests_table", &self.requests_table)
            .field("jobs_table", &self.jobs_table)
            .finish()
    }
}

impl DynamoStore {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        requests_table: impl Into<String>,
        jobs_table: impl Into<String>,
    ) -> Self {
        Self {
            client,
            requests_table: requests_table.into(),
            jobs_table: jobs_table.into(),
            retention: None,
            usage: None,
        }
    }

    /// Insert transactions take `usage` and add its price to the tenant's
    /// hourly `aws_overhead_picos` counter (the activity item they write
    /// anyway), each transaction what was used since the one before.
    pub fn with_usage(mut self, usage: Arc<UsageTally>) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Finished requests and jobs get an `expires_at` (epoch seconds, the
    /// table's TTL attribute) `retention` after they finish; `None` keeps
    /// them for good.
    pub fn with_retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }

    pub fn requests_table(&self) -> &str {
        &self.requests_table
    }

    pub fn jobs_table(&self) -> &str {
        &self.jobs_table
    }
}

/// The deliver function's reads straight from the tables: the same reads
/// `PlacedStore` makes of them (it hands these three to its rows as they
/// are), without S3 or the write paths in that function's binary.
#[async_trait::async_trait]
impl crate::store::DeliveryReads for DynamoStore {
    async fn feed(
        &self,
        tenant: &crate::ids::TenantId,
        after: Option<&crate::feed::FeedCursor>,
        limit: u32,
    ) -> Result<crate::feed::FeedPage, crate::store::StoreError> {
        crate::store::RequestRows::feed(self, tenant, after, limit).await
    }

    async fn get_with_result(
        &self,
        key: &crate::ids::RequestKey,
    ) -> Result<Option<(crate::request::Request, Option<crate::request::RequestResult>)>, crate::store::StoreError>
    {
        crate::store::RequestRows::get_with_result(self, key).await
    }

    async fn list_jobs(
        &self,
        tenant: Option<&crate::ids::TenantId>,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<crate::store::Page<crate::job::Job>, crate::store::StoreError> {
        crate::store::JobStore::list_jobs(self, tenant, cursor, limit).await
    }
}
