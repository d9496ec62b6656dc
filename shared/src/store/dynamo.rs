//! DynamoDB adapter of [`RequestStore`] and [`JobStore`]. The table design is
//! documented in `docs/storage.md`; the short version:
//!
//! * requests table, key (`pk` = request key, `sk` = `state` | `body` | `result`).
//!   `queue-index` (sparse: `queue`, `queue_order`) lists queued requests of a
//!   group oldest first; `job-index` (`job_id`, `pk`) lists a job's requests.
//! * jobs table, key (`pk`, `sk`): job rows (`job#{id}` / `job`), sharded
//!   counters (`counter#tenant#{t}` and `counter#queue`). `jobs-index`
//!   (`kind`, `created_at`) lists all jobs; `open-index` (sparse `open`,
//!   `created_at`) the unfinished ones.
//!
//! Every status write is conditioned on the previous status (and, for a
//! claimed request, its job; for a job, its version). Counters change in the
//! same transaction as the status they count, so they are exact under
//! retries and crashes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CancellationReason, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, KeysAndAttributes, Projection, ProjectionType, Put, ReturnValuesOnConditionCheckFailure,
    ScalarAttributeType, TransactWriteItem, Update,
};
use bytes::Bytes;
use futures::StreamExt;

use super::{
    keys, Applied, JobStore, ObjectStore, Page, QueueGroupStats, RequestStore, RequestUpdate, SavingsRow, SavingsStore,
    SavingsTotals, StatusCounts, StoreError,
};
use crate::budget::TokenBudget;
use crate::ids::{ContentHash, CustomId, JobId, ModelName, ProviderBatchId, ProviderFileId, RequestKey, TenantId};
use crate::job::{CostTotals, Job, JobError, JobStatus, ProviderBatchStatus, ProviderKind, RequestCounts};
use crate::money::Money;
use crate::request::{
    Endpoint, InsertOutcome, NewRequest, Payload, QueueGroup, Request, RequestResult, RequestStatus, Usage,
};
use crate::time::Timestamp;
use crate::tokens::Weight;

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
use schema::*;

/// Most actions DynamoDB accepts in one TransactWriteItems call.
const TXN_MAX_ACTIONS: usize = 100;
/// Keep each transaction well below DynamoDB's 4 MB request limit.
const TXN_MAX_BYTES: usize = 3 * 1024 * 1024;
const TXN_CONFLICT_RETRIES: u32 = 8;
/// The body item's expiry is set when it is written, `retention` plus this
/// after enqueue, so finishing a request never rewrites it: an update of
/// the (up to 16 KB) body item costs as many write units as writing it, and
/// inside a transaction twice that. A request still unfinished this long
/// after enqueue (far beyond any batch window and its retries) would lose
/// its body and end failed.
pub const BODY_HORIZON: Duration = Duration::from_secs(30 * 86_400);

/// Large responses written to S3 at once by one `apply_many`.
const RESPONSE_PUTS_IN_FLIGHT: usize = 16;

/// How long after its job's creation a tenant's job item is kept, on top
/// of the retention: longer than any job stays open (its deadline, the
/// cancel grace and the watch of a given-up batch).
const JOB_TENANT_HORIZON: Duration = Duration::from_secs(7 * 86_400);

#[derive(Clone)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    requests_table: String,
    jobs_table: String,
    objects: Arc<dyn ObjectStore>,
    inline_body_max: u64,
    inline_result_max: u64,
    /// How long finished rows are kept before DynamoDB's TTL deletes them.
    retention: Option<Duration>,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("requests_table", &self.requests_table)
            .field("jobs_table", &self.jobs_table)
            .finish()
    }
}

// ---------------------------------------------------------------- attribute helpers

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

struct Reader<'a> {
    item: &'a Item,
    entity: &'static str,
}

impl<'a> Reader<'a> {
    fn new(item: &'a Item, entity: &'static str) -> Self {
        Self { item, entity }
    }

    fn id(&self) -> String {
        self.item
            .get(PK)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_else(|| "?".into())
    }

    fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Corrupt {
            entity: self.entity,
            id: self.id(),
            reason,
        }
    }

    fn opt_s(&self, name: &str) -> Result<Option<&'a str>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v.as_str())),
            Some(_) => Err(self.corrupt(format!("{name} is not a string"))),
        }
    }

    fn flag(&self, name: &str) -> bool {
        self.item
            .get(name)
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false)
    }

    fn req_s(&self, name: &str) -> Result<&'a str, StoreError> {
        self.opt_s(name)?
            .ok_or_else(|| self.corrupt(format!("{name} is missing")))
    }

    fn opt_n<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => v
                .parse::<T>()
                .map(Some)
                .map_err(|_| self.corrupt(format!("{name}={v} is not a valid number"))),
            Some(_) => Err(self.corrupt(format!("{name} is not a number"))),
        }
    }

    fn req_n<T: std::str::FromStr>(&self, name: &str) -> Result<T, StoreError> {
        self.opt_n(name)?
            .ok_or_else(|| self.corrupt(format!("{name} is missing")))
    }

    fn parse<T>(&self, name: &str, f: impl FnOnce(&str) -> Result<T, String>) -> Result<T, StoreError> {
        let raw = self.req_s(name)?;
        f(raw).map_err(|e| self.corrupt(format!("{name}: {e}")))
    }

    fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match self.opt_s(name)? {
            None => Ok(None),
            Some(raw) => serde_json::from_str(raw)
                .map(Some)
                .map_err(|e| self.corrupt(format!("{name}: {e}"))),
        }
    }
}

fn err_msg<E: std::error::Error + 'static, R: std::fmt::Debug>(e: SdkError<E, R>) -> String {
    aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()
}

// ---------------------------------------------------------------- request items

/// Epoch seconds (DynamoDB TTL's unit) `retention` after `at`.
fn expiry_secs(at: Timestamp, retention: Duration) -> i64 {
    at.millis().div_euclid(1000) + retention.as_secs() as i64
}

fn expires_from(r: &Reader<'_>) -> Result<Option<Timestamp>, StoreError> {
    Ok(r.opt_n::<i64>(EXPIRES_AT)?
        .map(|s| Timestamp::from_millis(s.saturating_mul(1000))))
}

fn request_to_item(r: &Request) -> Item {
    let mut item = Item::new();
    item.insert(PK.into(), s(r.key.as_str()));
    item.insert(SK.into(), s(SK_STATE));
    item.insert("tenant".into(), s(r.tenant.as_str()));
    item.insert("custom_id".into(), s(r.custom_id.as_str()));
    item.insert("endpoint".into(), s(r.endpoint.as_str()));
    item.insert("model".into(), s(r.model.as_str()));
    item.insert("status".into(), s(r.status.as_str()));
    item.insert("attempts".into(), n(r.attempts));
    item.insert("content_hash".into(), s(r.content_hash.as_str()));
    item.insert("body_bytes".into(), n(r.body_bytes));
    item.insert("est_tokens".into(), n(r.weight.tokens));
    if r.weight.inputs != 1 {
        item.insert("inputs".into(), n(r.weight.inputs));
    }
    item.insert("created_at".into(), n(r.created_at.millis()));
    item.insert("updated_at".into(), n(r.updated_at.millis()));
    if let Some(job) = &r.job_id {
        item.insert("job_id".into(), s(job.as_str()));
        item.insert("job_part".into(), s(job_part(job, &r.key)));
    }
    if let Some(e) = &r.last_error {
        item.insert("last_error".into(), s(serde_json::to_string(e).unwrap_or_default()));
    }
    if let Some(e) = r.expires_at {
        item.insert(EXPIRES_AT.into(), n(e.millis().div_euclid(1000)));
    }
    if r.status == RequestStatus::Queued {
        item.insert("queue".into(), s(r.queue_group().key()));
        item.insert("queue_order".into(), s(queue_order(r.created_at, &r.key)));
    }
    item
}

/// Sort key of the queue index: creation time first, so retried requests keep
/// their place at the front; the request key breaks ties.
fn queue_order(created_at: Timestamp, key: &RequestKey) -> String {
    format!("{:015}#{}", created_at.millis().max(0), key)
}

fn request_from_item(item: &Item) -> Result<Request, StoreError> {
    let r = Reader::new(item, "request");
    let body_bytes = r.req_n("body_bytes")?;
    Ok(Request {
        key: r.parse(PK, |v| RequestKey::parse(v).map_err(|e| e.message))?,
        tenant: r.parse("tenant", |v| TenantId::parse(v).map_err(|e| e.message))?,
        custom_id: r.parse("custom_id", |v| CustomId::parse(v).map_err(|e| e.message))?,
        endpoint: r.parse("endpoint", |v| Endpoint::parse(v).map_err(|e| e.message))?,
        model: r.parse("model", |v| ModelName::parse(v).map_err(|e| e.message))?,
        status: r.parse("status", |v| v.parse::<RequestStatus>())?,
        attempts: r.req_n("attempts")?,
        job_id: r
            .opt_s("job_id")?
            .map(|v| JobId::parse(v).map_err(|e| r.corrupt(e.message)))
            .transpose()?,
        content_hash: ContentHash::from_stored(r.req_s("content_hash")?.to_owned()),
        body_bytes,
        weight: match r.opt_n("est_tokens")? {
            Some(tokens) => Weight {
                tokens,
                inputs: r.opt_n("inputs")?.unwrap_or(1),
            },
            // Written before weights were kept.
            None => Weight::from_body_bytes(body_bytes),
        },
        created_at: Timestamp::from_millis(r.req_n("created_at")?),
        updated_at: Timestamp::from_millis(r.req_n("updated_at")?),
        last_error: r.json("last_error")?,
        expires_at: expires_from(&r)?,
    })
}

fn payload_attrs(item: &mut Item, prefix: &str, p: &Payload) {
    match p {
        Payload::Inline(json) => {
            item.insert(prefix.to_owned(), s(json.clone()));
        }
        Payload::S3 { key, bytes } => {
            item.insert(format!("{prefix}_s3"), s(key.clone()));
            item.insert(format!("{prefix}_bytes"), n(bytes));
        }
    }
}

fn payload_from(r: &Reader<'_>, prefix: &str) -> Result<Option<Payload>, StoreError> {
    if let Some(json) = r.opt_s(prefix)? {
        return Ok(Some(Payload::Inline(json.to_owned())));
    }
    if let Some(key) = r.opt_s(&format!("{prefix}_s3"))? {
        return Ok(Some(Payload::S3 {
            key: key.to_owned(),
            bytes: r.opt_n(&format!("{prefix}_bytes"))?.unwrap_or(0),
        }));
    }
    Ok(None)
}

fn result_to_item(res: &RequestResult) -> Item {
    let mut item = Item::new();
    item.insert(PK.into(), s(res.key.as_str()));
    item.insert(SK.into(), s(SK_RESULT));
    // Not `job_id`: that name would put result items into job-index.
    item.insert("result_job".into(), s(res.job_id.as_str()));
    item.insert("recorded_at".into(), n(res.recorded_at.millis()));
    if let Some(code) = res.status_code {
        item.insert("status_code".into(), n(code));
    }
    if let Some(p) = &res.response {
        payload_attrs(&mut item, "response", p);
    }
    if let Some(e) = &res.error {
        item.insert("error".into(), s(serde_json::to_string(e).unwrap_or_default()));
    }
    if let Some(u) = &res.usage {
        item.insert("usage".into(), s(serde_json::to_string(u).unwrap_or_default()));
    }
    if let Some(c) = res.batch_cost {
        item.insert("batch_cost".into(), n(c.picodollars()));
    }
    if let Some(c) = res.realtime_cost {
        item.insert("realtime_cost".into(), n(c.picodollars()));
    }
    item
}

fn result_from_item(item: &Item) -> Result<RequestResult, StoreError> {
    let r = Reader::new(item, "result");
    Ok(RequestResult {
        key: r.parse(PK, |v| RequestKey::parse(v).map_err(|e| e.message))?,
        job_id: r.parse("result_job", |v| JobId::parse(v).map_err(|e| e.message))?,
        status_code: r.opt_n("status_code")?,
        response: payload_from(&r, "response")?,
        error: r.json("error")?,
        usage: r.json::<Usage>("usage")?,
        batch_cost: r.opt_n::<i128>("batch_cost")?.map(Money::from_picodollars),
        realtime_cost: r.opt_n::<i128>("realtime_cost")?.map(Money::from_picodollars),
        recorded_at: Timestamp::from_millis(r.req_n("recorded_at")?),
    })
}

// ---------------------------------------------------------------- job items

fn job_to_item(j: &Job, retention: Option<Duration>) -> Item {
    let mut item = Item::new();
    item.insert(PK.into(), s(format!("job#{}", j.id)));
    item.insert(SK.into(), s(SK_JOB));
    item.insert("kind".into(), s("job"));
    // Open: poll and submit list it (a given-up job stays listed while
    // poll watches its batch for late answers).
    if !j.status.is_terminal() || j.watch_until.is_some() {
        item.insert("open".into(), s("1"));
    }
    item.insert("id".into(), s(j.id.as_str()));
    item.insert("provider".into(), s(j.provider.as_str()));
    item.insert("endpoint".into(), s(j.endpoint.as_str()));
    item.insert("model".into(), s(j.model.as_str()));
    item.insert("status".into(), s(j.status.as_str()));
    if let Some(p) = &j.provider_status {
        item.insert("provider_status".into(), s(p.as_str()));
    }
    item.insert("input_key".into(), s(j.input_key.clone()));
    item.insert("input_lines".into(), n(j.input_lines));
    item.insert("input_bytes".into(), n(j.input_bytes));
    item.insert("est_tokens".into(), n(j.tokens));
    item.insert("inputs".into(), n(j.inputs));
    item.insert("tokens_in_flight_before".into(), n(j.tokens_in_flight_before));
    item.insert("budget_refusals_seen".into(), n(j.budget_refusals_seen));
    let ids: [(&str, Option<&str>); 4] = [
        ("provider_file_id", j.provider_file_id.as_ref().map(|v| v.as_str())),
        ("provider_batch_id", j.provider_batch_id.as_ref().map(|v| v.as_str())),
        ("output_file_id", j.output_file_id.as_ref().map(|v| v.as_str())),
        ("error_file_id", j.error_file_id.as_ref().map(|v| v.as_str())),
    ];
    for (name, v) in ids {
        if let Some(v) = v {
            item.insert(name.into(), s(v));
        }
    }
    item.insert("counts_total".into(), n(j.request_counts.total));
    item.insert("counts_completed".into(), n(j.request_counts.completed));
    item.insert("counts_failed".into(), n(j.request_counts.failed));
    if !j.errors.is_empty() {
        item.insert("errors".into(), s(serde_json::to_string(&j.errors).unwrap_or_default()));
    }
    let t = &j.totals;
    item.insert("input_tokens".into(), n(t.usage.input_tokens));
    item.insert("cached_input_tokens".into(), n(t.usage.cached_input_tokens));
    item.insert("output_tokens".into(), n(t.usage.output_tokens));
    item.insert("reasoning_tokens".into(), n(t.usage.reasoning_tokens));
    item.insert("batch_cost".into(), n(t.batch_cost.picodollars()));
    item.insert("realtime_cost".into(), n(t.realtime_cost.picodollars()));
    item.insert("unpriced_requests".into(), n(t.unpriced_requests));
    item.insert("created_at".into(), n(j.created_at.millis()));
    item.insert("updated_at".into(), n(j.updated_at.millis()));
    if j.ingested_output {
        item.insert("ingested_output".into(), AttributeValue::Bool(true));
    }
    if j.ingested_errors {
        item.insert("ingested_errors".into(), AttributeValue::Bool(true));
    }
    item.insert("result_lines".into(), n(j.result_lines));
    if let Some(w) = j.watch_until {
        item.insert("watch_until".into(), n(w.millis()));
    }
    if j.late_used > 0 || j.double_spent > 0 {
        item.insert("late_used".into(), n(j.late_used));
        item.insert("double_spent".into(), n(j.double_spent));
        item.insert("double_spent_cost".into(), n(j.double_spent_cost.picodollars()));
    }
    if !j.duplicate_batches.is_empty() {
        item.insert(
            "duplicate_batches".into(),
            AttributeValue::Ss(j.duplicate_batches.iter().map(|b| b.to_string()).collect()),
        );
    }
    for (name, v) in [
        ("submitted_at", j.submitted_at),
        ("finished_at", j.finished_at),
        ("lease_until", j.lease_until),
        ("copied_at", j.copied_at),
    ] {
        if let Some(v) = v {
            item.insert(name.into(), n(v.millis()));
        }
    }
    item.insert("version".into(), n(j.version));
    if !j.tenants.is_empty() {
        item.insert(
            "tenants".into(),
            AttributeValue::Ss(j.tenants.iter().map(|t| t.to_string()).collect()),
        );
    }
    item.insert("tenant_count".into(), n(j.tenant_count));
    if let (true, None, Some(r)) = (j.status.is_terminal(), j.watch_until, retention) {
        item.insert(
            EXPIRES_AT.into(),
            n(expiry_secs(j.finished_at.unwrap_or(j.updated_at), r)),
        );
    }
    item
}

fn job_from_item(item: &Item) -> Result<Job, StoreError> {
    let r = Reader::new(item, "job");
    let ts = |name: &str| -> Result<Option<Timestamp>, StoreError> { Ok(r.opt_n(name)?.map(Timestamp::from_millis)) };
    let file = |name: &str| -> Result<Option<ProviderFileId>, StoreError> {
        Ok(ProviderFileId::from_wire(r.opt_s(name)?.map(str::to_owned)))
    };
    Ok(Job {
        id: r.parse("id", |v| JobId::parse(v).map_err(|e| e.message))?,
        provider: r.parse("provider", |v| {
            ProviderKind::parse(v).ok_or_else(|| format!("unknown provider {v}"))
        })?,
        endpoint: r.parse("endpoint", |v| Endpoint::parse(v).map_err(|e| e.message))?,
        model: r.parse("model", |v| ModelName::parse(v).map_err(|e| e.message))?,
        status: r.parse("status", |v| v.parse::<JobStatus>())?,
        provider_status: r.opt_s("provider_status")?.map(ProviderBatchStatus::parse),
        input_key: r.req_s("input_key")?.to_owned(),
        input_lines: r.req_n("input_lines")?,
        input_bytes: r.req_n("input_bytes")?,
        tokens: r.opt_n("est_tokens")?.unwrap_or(0),
        inputs: r.opt_n("inputs")?.unwrap_or(0),
        tokens_in_flight_before: r.opt_n("tokens_in_flight_before")?.unwrap_or(0),
        budget_refusals_seen: r.opt_n("budget_refusals_seen")?.unwrap_or(0),
        provider_file_id: file("provider_file_id")?,
        provider_batch_id: r.opt_s("provider_batch_id")?.map(ProviderBatchId::new),
        output_file_id: file("output_file_id")?,
        error_file_id: file("error_file_id")?,
        request_counts: RequestCounts {
            total: r.req_n("counts_total")?,
            completed: r.req_n("counts_completed")?,
            failed: r.req_n("counts_failed")?,
        },
        errors: r.json::<Vec<JobError>>("errors")?.unwrap_or_default(),
        totals: CostTotals {
            usage: usage_of(&r)?,
            batch_cost: Money::from_picodollars(r.req_n("batch_cost")?),
            realtime_cost: Money::from_picodollars(r.req_n("realtime_cost")?),
            unpriced_requests: r.req_n("unpriced_requests")?,
        },
        created_at: Timestamp::from_millis(r.req_n("created_at")?),
        updated_at: Timestamp::from_millis(r.req_n("updated_at")?),
        submitted_at: ts("submitted_at")?,
        finished_at: ts("finished_at")?,
        lease_until: ts("lease_until")?,
        copied_at: ts("copied_at")?,
        ingested_output: r.flag("ingested_output"),
        ingested_errors: r.flag("ingested_errors"),
        result_lines: r.opt_n("result_lines")?.unwrap_or(0),
        watch_until: ts("watch_until")?,
        late_used: r.opt_n("late_used")?.unwrap_or(0),
        double_spent: r.opt_n("double_spent")?.unwrap_or(0),
        double_spent_cost: Money::from_picodollars(r.opt_n("double_spent_cost")?.unwrap_or(0)),
        duplicate_batches: match item.get("duplicate_batches") {
            None => Vec::new(),
            Some(AttributeValue::Ss(v)) => {
                let mut v: Vec<ProviderBatchId> = v.iter().cloned().map(ProviderBatchId::new).collect();
                v.sort();
                v
            }
            Some(_) => return Err(r.corrupt("duplicate_batches is not a string set".into())),
        },
        version: r.req_n("version")?,
        tenants: match item.get("tenants") {
            None => Vec::new(),
            Some(AttributeValue::Ss(v)) => {
                let mut v = v
                    .iter()
                    .map(|t| TenantId::parse(t.clone()).map_err(|e| r.corrupt(e.message)))
                    .collect::<Result<Vec<_>, _>>()?;
                v.sort();
                v
            }
            Some(_) => return Err(r.corrupt("tenants is not a string set".into())),
        },
        tenant_count: r.opt_n("tenant_count")?.unwrap_or(0),
        expires_at: expires_from(&r)?,
    })
}

/// Token counts stored as `input_tokens`, `cached_input_tokens`,
/// `output_tokens` and `reasoning_tokens` (job and savings items).
fn usage_of(r: &Reader<'_>) -> Result<Usage, StoreError> {
    Ok(Usage {
        input_tokens: r.req_n("input_tokens")?,
        cached_input_tokens: r.req_n("cached_input_tokens")?,
        output_tokens: r.req_n("output_tokens")?,
        reasoning_tokens: r.req_n("reasoning_tokens")?,
    })
}

// ---------------------------------------------------------------- counters

fn status_attr(st: RequestStatus) -> &'static str {
    st.as_str()
}

/// The first hex digit of a request key (keys are SHA-256 prefixes, so
/// evenly spread).
fn nibble(key: &RequestKey) -> u8 {
    let b = key.as_str().as_bytes()[0];
    if b.is_ascii_digit() {
        b - b'0'
    } else {
        b - b'a' + 10
    }
}

fn shard_of(key: &RequestKey) -> u8 {
    nibble(key) % COUNTER_SHARDS
}

/// The job-index partition of a request of `job`.
fn job_part(job: &JobId, key: &RequestKey) -> String {
    format!("{job}#{:02}", nibble(key) % JOB_PARTS)
}

const PENDING_BYTES_ATTR: &str = "pending_bytes";

fn tenant_counter_pk(t: &TenantId, shard: u8) -> String {
    format!("counter#tenant#{t}#{shard}")
}

/// The sort key of a tenant's counter item (one per shard partition).
const TENANT_COUNTER_SK: &str = "counts";

fn queue_counter_pk(shard: u8) -> String {
    format!("counter#queue#{shard}")
}

/// A tenant's jobs, newest first: one small item per (tenant, job).
fn tenant_jobs_pk(t: &TenantId) -> String {
    format!("jobs#tenant#{t}")
}

fn tenant_job_sk(job: &Job) -> String {
    format!("{:015}#{}", job.created_at.millis().max(0), job.id)
}
/// Per-model enqueued-token budgets (sort key: the model).
const BUDGET_PK: &str = "budget#tokens";

fn savings_pk(t: &TenantId) -> String {
    format!("savings#{t}")
}

/// Counter deltas of one transaction, merged per counter item.
#[derive(Default)]
struct CounterDeltas {
    /// (pk, sk) -> attribute -> delta
    items: HashMap<(String, String), HashMap<&'static str, i64>>,
}

impl CounterDeltas {
    fn add(&mut self, pk: String, sk: String, attr: &'static str, delta: i64) {
        *self.items.entry((pk, sk)).or_default().entry(attr).or_default() += delta;
    }

    fn tenant(&mut self, t: &TenantId, shard: u8, st: RequestStatus, delta: i64) {
        self.add(
            tenant_counter_pk(t, shard),
            TENANT_COUNTER_SK.into(),
            status_attr(st),
            delta,
        );
    }

    fn queue(&mut self, g: &QueueGroup, shard: u8, delta: i64) {
        self.add(queue_counter_pk(shard), g.key(), "queued", delta);
    }

    /// Bytes of the tenant's unfinished bodies (its byte quota).
    fn pending_bytes(&mut self, t: &TenantId, shard: u8, delta: i64) {
        self.add(
            tenant_counter_pk(t, shard),
            TENANT_COUNTER_SK.into(),
            PENDING_BYTES_ATTR,
            delta,
        );
    }

    fn for_transition(&mut self, u: &RequestUpdate, shard: u8) {
        self.tenant(&u.tenant, shard, u.from, -1);
        self.tenant(&u.tenant, shard, u.to, 1);
        if !u.from.is_terminal() && u.to.is_terminal() {
            self.pending_bytes(&u.tenant, shard, -(u.body_bytes as i64));
        }
        if u.from == RequestStatus::Queued {
            self.queue(&u.group, shard, -1);
        }
        if u.to == RequestStatus::Queued {
            self.queue(&u.group, shard, 1);
        }
    }

    /// Distinct counter items (each is one action in the transaction).
    fn len(&self) -> usize {
        self.items.len()
    }

    fn merge(&mut self, other: CounterDeltas) {
        for (key, attrs) in other.items {
            let mine = self.items.entry(key).or_default();
            for (attr, d) in attrs {
                *mine.entry(attr).or_default() += d;
            }
        }
    }

    /// How many counter items `more` would add that are not here yet.
    fn new_items_in(&self, more: &CounterDeltas) -> usize {
        more.items.keys().filter(|k| !self.items.contains_key(*k)).count()
    }

    fn into_actions(self, table: &str) -> Vec<TransactWriteItem> {
        let mut out = Vec::new();
        for ((pk, sk), attrs) in self.items {
            let attrs: Vec<_> = attrs.into_iter().filter(|(_, d)| *d != 0).collect();
            if attrs.is_empty() {
                continue;
            }
            let mut expr = Vec::new();
            let mut names = HashMap::new();
            let mut values = HashMap::new();
            for (i, (attr, delta)) in attrs.iter().enumerate() {
                expr.push(format!("#a{i} :d{i}"));
                names.insert(format!("#a{i}"), attr.to_string());
                values.insert(format!(":d{i}"), n(delta));
            }
            let update = Update::builder()
                .table_name(table)
                .key(PK, s(pk))
                .key(SK, s(sk))
                .update_expression(format!("ADD {}", expr.join(", ")))
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .build()
                .expect("update has table, key and expression");
            out.push(TransactWriteItem::builder().update(update).build());
        }
        out
    }
}

// ---------------------------------------------------------------- transactions

/// Why one action of a cancelled transaction did not apply.
#[derive(Debug)]
struct CancelReason {
    /// None when the action was fine (another one cancelled the transaction).
    code: Option<String>,
    /// The item as it was, for an action asking for it on a failed condition
    /// (`ALL_OLD`): what a lost condition is judged by, without a read.
    item: Option<Item>,
}

impl CancelReason {
    fn condition_failed(&self) -> bool {
        self.code.as_deref() == Some("ConditionalCheckFailed")
    }
}

/// The outcome of one transaction attempt.
enum TxnOutcome {
    Committed,
    /// Cancelled; one reason per action.
    Cancelled(Vec<CancelReason>),
}

impl DynamoStore {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        requests_table: impl Into<String>,
        jobs_table: impl Into<String>,
        objects: Arc<dyn ObjectStore>,
        inline_body_max: u64,
        inline_result_max: u64,
    ) -> Self {
        Self {
            client,
            requests_table: requests_table.into(),
            jobs_table: jobs_table.into(),
            objects,
            inline_body_max,
            inline_result_max,
            retention: None,
        }
    }

    /// Finished requests and jobs get an `expires_at` (epoch seconds, the
    /// table's TTL attribute) `retention` after they finish; `None` keeps
    /// them for good.
    pub fn with_retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// The expiry of a row finishing at `now`.
    fn expiry(&self, now: Timestamp) -> Option<i64> {
        self.retention.map(|r| expiry_secs(now, r))
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

    /// Largest response stored inline; larger ones go to S3.
    pub fn inline_result_max(&self) -> u64 {
        self.inline_result_max
    }

    /// Runs one transaction, retrying transaction conflicts (another
    /// transaction touching the same counter item) with backoff.
    async fn transact(&self, actions: Vec<TransactWriteItem>) -> Result<TxnOutcome, StoreError> {
        let mut attempt = 0;
        loop {
            let res = self
                .client
                .transact_write_items()
                .set_transact_items(Some(actions.clone()))
                .send()
                .await;
            match res {
                Ok(_) => return Ok(TxnOutcome::Committed),
                Err(e) => {
                    let reasons: Option<Vec<CancellationReason>> = e
                        .as_service_error()
                        .and_then(|se| match se {
                            aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => {
                                Some(c.cancellation_reasons().to_vec())
                            }
                            _ => None,
                        });
                    let conflict = e
                        .as_service_error()
                        .is_some_and(|se| se.is_transaction_in_progress_exception());
                    match reasons {
                        Some(reasons) => {
                            let reasons: Vec<CancelReason> = reasons
                                .into_iter()
                                .map(|r| CancelReason {
                                    code: r.code().filter(|c| *c != "None").map(str::to_owned),
                                    item: r.item,
                                })
                                .collect();
                            // Contention and throughput: the same transaction
                            // again, after a pause, may well pass.
                            let only_retryable = reasons.iter().filter_map(|r| r.code.as_deref()).all(|c| {
                                matches!(
                                    c,
                                    "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
                                )
                            });
                            if only_retryable && attempt < TXN_CONFLICT_RETRIES {
                                attempt += 1;
                                tokio::time::sleep(backoff(attempt)).await;
                                continue;
                            }
                            return Ok(TxnOutcome::Cancelled(reasons));
                        }
                        None if conflict && attempt < TXN_CONFLICT_RETRIES => {
                            attempt += 1;
                            tokio::time::sleep(backoff(attempt)).await;
                        }
                        None => return Err(StoreError::backend("dynamodb TransactWriteItems", err_msg(e))),
                    }
                }
            }
        }
    }

    async fn get_item(&self, table: &str, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::backend("dynamodb GetItem", err_msg(e)))?;
        Ok(out.item)
    }

    /// Reads the `sk` item of each request (strongly consistent), 100 keys a
    /// call, retrying unprocessed keys with backoff. Missing items are absent.
    async fn batch_get(&self, keys: &[RequestKey], sk: &str) -> Result<Vec<Item>, StoreError> {
        let unique: Vec<&RequestKey> = keys.iter().collect::<HashSet<_>>().into_iter().collect();
        let mut out = Vec::with_capacity(unique.len());
        for chunk in unique.chunks(100) {
            let mut pending: Vec<Item> = chunk
                .iter()
                .map(|k| HashMap::from([(PK.to_owned(), s(k.as_str())), (SK.to_owned(), s(sk))]))
                .collect();
            let mut attempt = 0;
            while !pending.is_empty() {
                let ka = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .expect("keys set");
                let res = self
                    .client
                    .batch_get_item()
                    .request_items(&self.requests_table, ka)
                    .send()
                    .await
                    .map_err(|e| StoreError::backend("dynamodb BatchGetItem", err_msg(e)))?;
                out.extend(
                    res.responses
                        .unwrap_or_default()
                        .remove(&self.requests_table)
                        .unwrap_or_default(),
                );
                if let Some(ka) = res.unprocessed_keys.and_then(|mut u| u.remove(&self.requests_table)) {
                    pending = ka.keys;
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
        Ok(out)
    }

    async fn body_payload(&self, r: &NewRequest) -> Result<Payload, StoreError> {
        if r.body_bytes() <= self.inline_body_max {
            return Ok(Payload::Inline(r.body_json.clone()));
        }
        // Content-addressed: a conflicting re-post never overwrites an accepted body.
        let key = keys::body(&r.key, &r.content_hash);
        self.objects
            .put(&key, Bytes::from(r.body_json.clone()), "application/json")
            .await?;
        Ok(Payload::S3 {
            key,
            bytes: r.body_bytes(),
        })
    }

    fn state_update_action(&self, u: &RequestUpdate) -> Result<TransactWriteItem, StoreError> {
        u.from.check_transition(u.to)?;
        let mut set = vec!["#status = :to", "updated_at = :now"];
        let mut remove = Vec::new();
        let names = HashMap::from([("#status".to_owned(), "status".to_owned())]);
        let mut values = HashMap::from([
            (":from".to_owned(), s(u.from.as_str())),
            (":to".to_owned(), s(u.to.as_str())),
            (":now".to_owned(), n(u.now.millis())),
        ]);
        let mut cond = "#status = :from".to_owned();
        if let Some(job) = &u.expected_job {
            cond.push_str(" AND job_id = :expected_job");
            values.insert(":expected_job".into(), s(job.as_str()));
        }
        if let Some(job) = &u.claim_for {
            set.push("job_id = :claim_for");
            set.push("job_part = :job_part");
            values.insert(":claim_for".into(), s(job.as_str()));
            values.insert(":job_part".into(), s(job_part(job, &u.key)));
        }
        if u.count_attempt {
            set.push("attempts = attempts + :one");
            values.insert(":one".into(), n(1));
        } else if u.refund_attempt {
            set.push("attempts = attempts - :one");
            values.insert(":one".into(), n(1));
        }
        if let (true, Some(exp)) = (u.to.is_terminal(), self.expiry(u.now)) {
            set.push("expires_at = :exp");
            values.insert(":exp".into(), n(exp));
        }
        if let Some(e) = &u.last_error {
            set.push("last_error = :err");
            values.insert(":err".into(), s(serde_json::to_string(e).unwrap_or_default()));
        }
        if u.from == RequestStatus::Queued {
            remove.push("queue");
            remove.push("queue_order");
        }
        if u.to == RequestStatus::Queued {
            // Back in the queue: visible to submit again, no longer tied to a job.
            set.push("queue = :queue");
            set.push("queue_order = :queue_order");
            values.insert(":queue".into(), s(u.group.key()));
            // The original creation time keeps its place at the front of the queue.
            values.insert(":queue_order".into(), s(queue_order(u.created_at, &u.key)));
            remove.push("job_id");
            remove.push("job_part");
        }
        let mut expr = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let update = Update::builder()
            .table_name(&self.requests_table)
            .key(PK, s(u.key.as_str()))
            .key(SK, s(SK_STATE))
            .update_expression(expr)
            .condition_expression(cond)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .expect("update has table, key and expression");
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The results of `updates` as they are to be stored: responses over
    /// the inline limit are written to S3 first (under a key fixed by
    /// request and job, so a replay rewrites the same object), several at a
    /// time — one at a time, a file of 50,000 answers of 20 KB took longer
    /// than a Lambda may run.
    async fn offload_large_responses(
        &self,
        updates: &[RequestUpdate],
    ) -> Result<Vec<Option<RequestResult>>, StoreError> {
        let mut stored: Vec<Option<RequestResult>> = updates.iter().map(|u| u.result.clone()).collect();
        let large: Vec<(usize, String, String)> = stored
            .iter()
            .enumerate()
            .filter_map(
                |(i, r)| match r.as_ref().and_then(|r| r.response.as_ref().map(|p| (r, p))) {
                    Some((r, Payload::Inline(json))) if json.len() as u64 > self.inline_result_max => {
                        Some((i, keys::response(&r.key, &r.job_id), json.clone()))
                    }
                    _ => None,
                },
            )
            .collect();
        let puts = futures::stream::iter(large)
            .map(|(i, key, json)| async move {
                let bytes = json.len() as u64;
                self.objects.put(&key, Bytes::from(json), "application/json").await?;
                Ok::<_, StoreError>((i, Payload::S3 { key, bytes }))
            })
            .buffer_unordered(RESPONSE_PUTS_IN_FLIGHT);
        futures::pin_mut!(puts);
        while let Some(done) = puts.next().await {
            let (i, payload) = done?;
            if let Some(r) = stored[i].as_mut() {
                r.response = Some(payload);
            }
        }
        Ok(stored)
    }

    fn result_put_action(&self, res: &RequestResult, expires_at: Option<i64>) -> TransactWriteItem {
        let mut item = result_to_item(res);
        if let Some(exp) = expires_at {
            item.insert(EXPIRES_AT.into(), n(exp));
        }
        let put = Put::builder()
            .table_name(&self.requests_table)
            .set_item(Some(item))
            .build()
            .expect("put has table and item");
        TransactWriteItem::builder().put(put).build()
    }

    /// Applies the updates `round` names (distinct keys) in transactions of
    /// up to 100 actions, each update settled on its own condition.
    async fn apply_round(
        &self,
        updates: &[RequestUpdate],
        stored: &[Option<RequestResult>],
        round: &[usize],
        results: &mut [Option<Result<Applied, StoreError>>],
    ) -> Result<(), StoreError> {
        // Build each update's actions once; illegal transitions fail alone.
        let mut units: Vec<(usize, Vec<TransactWriteItem>)> = Vec::new();
        for &i in round {
            let u = &updates[i];
            match self.state_update_action(u) {
                Err(e) => results[i] = Some(Err(e)),
                Ok(a) => {
                    let mut actions = vec![a];
                    let expires_at = self.expiry(u.now).filter(|_| u.to.is_terminal());
                    if let Some(res) = &stored[i] {
                        actions.push(self.result_put_action(res, expires_at));
                    }
                    units.push((i, actions));
                }
            }
        }
        // A generous size estimate per update: its inline result plus keys and attributes.
        let unit_bytes = |i: usize| -> usize {
            let result = match stored[i].as_ref().and_then(|r| r.response.as_ref()) {
                Some(Payload::Inline(json)) => json.len(),
                _ => 0,
            };
            2048 + result
        };
        let mut pending: VecDeque<(usize, Vec<TransactWriteItem>)> = units.into();
        while !pending.is_empty() {
            let shard = shard_of(&updates[pending[0].0].key);
            let mut chunk = Vec::new();
            let mut deltas = CounterDeltas::default();
            let mut count = 0;
            let mut bytes = 0;
            while let Some((i, actions)) = pending.front() {
                let mut more = CounterDeltas::default();
                more.for_transition(&updates[*i], shard);
                let too_many = count + actions.len() + deltas.len() + deltas.new_items_in(&more) > TXN_MAX_ACTIONS;
                if !chunk.is_empty() && (too_many || bytes + unit_bytes(*i) > TXN_MAX_BYTES) {
                    break;
                }
                bytes += unit_bytes(*i);
                count += actions.len();
                deltas.merge(more);
                chunk.push(pending.pop_front().expect("front exists"));
            }
            let mut txn = Vec::new();
            for (_, actions) in &chunk {
                txn.extend(actions.iter().cloned());
            }
            txn.extend(deltas.into_actions(&self.jobs_table));
            match self.transact(txn).await? {
                TxnOutcome::Committed => {
                    for (i, _) in chunk {
                        results[i] = Some(Ok(Applied::Now));
                    }
                }
                TxnOutcome::Cancelled(reasons) => {
                    let mut pos = 0;
                    let mut retry = Vec::new();
                    let mut any_failed = false;
                    for (i, actions) in chunk {
                        let reason = reasons.get(pos);
                        pos += actions.len();
                        match reason {
                            Some(r) if r.condition_failed() => {
                                any_failed = true;
                                results[i] = Some(classify_failed(&updates[i], r.item.as_ref()));
                            }
                            _ => retry.push((i, actions)),
                        }
                    }
                    if !any_failed {
                        return Err(StoreError::backend(
                            "dynamodb TransactWriteItems",
                            format!("transaction cancelled: {reasons:?}"),
                        ));
                    }
                    retry.extend(pending);
                    pending = retry.into();
                }
            }
        }
        Ok(())
    }

    /// Deletes the S3 bodies (over the inline limit) of requests that have
    /// finished, now or in an earlier run: nothing reads a finished
    /// request's body again. Best effort and idempotent: a replayed update
    /// (`Applied::Already`, as after a crash right here) deletes again, and a
    /// failure only leaves an object behind, which is logged.
    async fn delete_finished_bodies(&self, updates: &[RequestUpdate], results: &[Result<Applied, StoreError>]) {
        let keys: Vec<String> = updates
            .iter()
            .zip(results)
            .filter(|(u, r)| r.is_ok() && u.to.is_terminal() && u.body_bytes > self.inline_body_max)
            .map(|(u, _)| keys::body(&u.key, &u.content_hash))
            .collect();
        self.delete_objects(keys, "a finished request's body").await;
    }

    /// Deletes objects nothing refers to any more, 16 at a time; a failure
    /// only leaves an object behind (the bucket's lifecycle rule for
    /// `bodies/` takes it later), which is logged.
    async fn delete_objects(&self, keys: Vec<String>, what: &'static str) {
        let deletes = futures::stream::iter(keys)
            .map(|key| async move { (self.objects.delete(&key).await, key) })
            .buffer_unordered(16);
        futures::pin_mut!(deletes);
        while let Some((res, key)) = deletes.next().await {
            if let Err(e) = res {
                tracing::warn!(key, error = %e, what, "could not delete an object nothing refers to; it stays in S3");
            }
        }
    }

    async fn query_page(&self, q: QuerySpec<'_>) -> Result<(Vec<Item>, Option<String>), StoreError> {
        let start = q.cursor.as_deref().map(decode_cursor).transpose()?;
        let out = self
            .client
            .query()
            .table_name(q.table)
            .set_index_name(q.index.map(str::to_owned))
            .key_condition_expression(q.key_cond)
            .set_expression_attribute_values(Some(q.values))
            .set_expression_attribute_names(q.names)
            .scan_index_forward(q.forward)
            .set_exclusive_start_key(start)
            .set_limit(q.limit.map(|l| l.clamp(1, 1000) as i32))
            .set_filter_expression(q.filter.map(str::to_owned))
            .consistent_read(q.index.is_none())
            .send()
            .await
            .map_err(|e| StoreError::backend("dynamodb Query", err_msg(e)))?;
        let next = out.last_evaluated_key.as_ref().map(encode_cursor);
        Ok((out.items.unwrap_or_default(), next))
    }

    /// Every page of a query (for small, bounded result sets: counters, open jobs).
    async fn query_all(&self, q: QuerySpec<'_>) -> Result<Vec<Item>, StoreError> {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let page = QuerySpec {
                cursor,
                values: q.values.clone(),
                names: q.names.clone(),
                ..q
            };
            let (items, next) = self.query_page(page).await?;
            all.extend(items);
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok(all),
            }
        }
    }

    /// Creates both tables with their indexes (on demand billing). Idempotent.
    pub async fn create_tables(&self) -> Result<(), StoreError> {
        let key = |name: &str, t: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(t).build();
        let attr = |name: &str, t: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(t)
                .build()
        };
        let gsi = |name: &str, hash: &str, range: &str| {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(hash, KeyType::Hash).expect("key"))
                .key_schema(key(range, KeyType::Range).expect("key"))
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()
        };
        let tables = [
            (
                &self.requests_table,
                vec![
                    attr(PK, ScalarAttributeType::S),
                    attr(SK, ScalarAttributeType::S),
                    attr("queue", ScalarAttributeType::S),
                    attr("queue_order", ScalarAttributeType::S),
                    attr("job_part", ScalarAttributeType::S),
                ],
                vec![gsi(QUEUE_INDEX, "queue", "queue_order"), gsi(JOB_INDEX, "job_part", PK)],
            ),
            (
                &self.jobs_table,
                vec![
                    attr(PK, ScalarAttributeType::S),
                    attr(SK, ScalarAttributeType::S),
                    attr("kind", ScalarAttributeType::S),
                    attr("open", ScalarAttributeType::S),
                    attr("created_at", ScalarAttributeType::N),
                ],
                vec![
                    gsi(JOBS_INDEX, "kind", "created_at"),
                    gsi(OPEN_INDEX, "open", "created_at"),
                ],
            ),
        ];
        for (name, attrs, gsis) in tables {
            let mut req = self
                .client
                .create_table()
                .table_name(name.as_str())
                .billing_mode(BillingMode::PayPerRequest)
                .key_schema(key(PK, KeyType::Hash).expect("key"))
                .key_schema(key(SK, KeyType::Range).expect("key"));
            for a in attrs {
                req = req.attribute_definitions(a.expect("attribute"));
            }
            for g in gsis {
                req = req.global_secondary_indexes(g.expect("index"));
            }
            match req.send().await {
                Ok(_) => {}
                Err(e) if e.as_service_error().is_some_and(|se| se.is_resource_in_use_exception()) => {}
                Err(e) => return Err(StoreError::backend("dynamodb CreateTable", err_msg(e))),
            }
        }
        for name in [&self.requests_table, &self.jobs_table] {
            self.wait_active(name).await?;
            self.enable_ttl(name).await?;
        }
        Ok(())
    }

    /// Turns on the table's TTL on [`EXPIRES_AT`] unless it is on already
    /// (enabling it twice is an error in DynamoDB).
    async fn enable_ttl(&self, table: &str) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{TimeToLiveSpecification, TimeToLiveStatus};
        let current = self
            .client
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .map_err(|e| StoreError::backend("dynamodb DescribeTimeToLive", err_msg(e)))?;
        let status = current
            .time_to_live_description()
            .and_then(|d| d.time_to_live_status().cloned());
        if matches!(status, Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)) {
            return Ok(());
        }
        let spec = TimeToLiveSpecification::builder()
            .attribute_name(EXPIRES_AT)
            .enabled(true)
            .build()
            .expect("spec has name and flag");
        self.client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(spec)
            .send()
            .await
            .map_err(|e| StoreError::backend("dynamodb UpdateTimeToLive", err_msg(e)))?;
        Ok(())
    }

    async fn wait_active(&self, table: &str) -> Result<(), StoreError> {
        for _ in 0..120 {
            let out = self
                .client
                .describe_table()
                .table_name(table)
                .send()
                .await
                .map_err(|e| StoreError::backend("dynamodb DescribeTable", err_msg(e)))?;
            let active = out
                .table()
                .and_then(|t| t.table_status())
                .is_some_and(|s| s.as_str() == "ACTIVE");
            if active {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(StoreError::backend(
            "dynamodb DescribeTable",
            format!("table {table} did not become ACTIVE"),
        ))
    }
}

/// One Query call's parameters.
struct QuerySpec<'a> {
    table: &'a str,
    index: Option<&'a str>,
    key_cond: &'a str,
    values: HashMap<String, AttributeValue>,
    names: Option<HashMap<String, String>>,
    forward: bool,
    cursor: Option<String>,
    limit: Option<u32>,
    filter: Option<&'a str>,
}

impl<'a> QuerySpec<'a> {
    fn new(table: &'a str, index: Option<&'a str>, key_cond: &'a str, values: HashMap<String, AttributeValue>) -> Self {
        Self {
            table,
            index,
            key_cond,
            values,
            names: None,
            forward: true,
            cursor: None,
            limit: None,
            filter: None,
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    // 20ms, 40ms, … capped at 1s, with jitter from the clock's sub-ms noise.
    let base = 20u64.saturating_mul(1 << attempt.min(6)).min(1000);
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64 % (base / 2 + 1))
        .unwrap_or(0);
    Duration::from_millis(base / 2 + jitter)
}

fn encode_cursor(key: &Item) -> String {
    let mut map = serde_json::Map::new();
    for (k, v) in key {
        let j = match v {
            AttributeValue::S(x) => serde_json::json!({ "S": x }),
            AttributeValue::N(x) => serde_json::json!({ "N": x }),
            _ => continue,
        };
        map.insert(k.clone(), j);
    }
    serde_json::Value::Object(map).to_string()
}

fn decode_cursor(c: &str) -> Result<Item, StoreError> {
    let bad = || StoreError::Corrupt {
        entity: "cursor",
        id: c.chars().take(40).collect(),
        reason: "not a cursor this store issued".into(),
    };
    let v: serde_json::Value = serde_json::from_str(c).map_err(|_| bad())?;
    let obj = v.as_object().ok_or_else(bad)?;
    let mut item = Item::new();
    for (k, v) in obj {
        let av = if let Some(x) = v.get("S").and_then(|x| x.as_str()) {
            s(x)
        } else if let Some(x) = v.get("N").and_then(|x| x.as_str()) {
            AttributeValue::N(x.to_owned())
        } else {
            return Err(bad());
        };
        item.insert(k.clone(), av);
    }
    Ok(item)
}

/// After a failed condition: did the row already reach the update's target
/// (a replay), or is it somewhere else? Judged by the row as it was when the
/// condition failed, which DynamoDB returns with the refusal (`ALL_OLD`);
/// none means there was no row.
fn classify_failed(u: &RequestUpdate, item: Option<&Item>) -> Result<Applied, StoreError> {
    let Some(cur) = item.map(request_from_item).transpose()? else {
        return Err(StoreError::NotFound {
            entity: "request",
            id: u.key.to_string(),
        });
    };
    let same_job = match (&u.claim_for, &u.expected_job) {
        (Some(j), _) => cur.job_id.as_ref() == Some(j),
        (None, Some(j)) if u.to != RequestStatus::Queued => cur.job_id.as_ref() == Some(j),
        _ => true,
    };
    if cur.status == u.to && same_job {
        return Ok(Applied::Already);
    }
    Err(StoreError::ConditionFailed {
        entity: "request",
        id: u.key.to_string(),
        expected: match &u.expected_job {
            Some(j) => format!("{} in {j}", u.from),
            None => u.from.to_string(),
        },
        actual: Some(match &cur.job_id {
            Some(j) if cur.status == RequestStatus::Claimed => format!("{} in {j}", cur.status),
            _ => cur.status.to_string(),
        }),
    })
}

// ---------------------------------------------------------------- RequestStore

/// One request's actions in an insert transaction.
struct InsertUnit {
    index: usize,
    actions: Vec<TransactWriteItem>,
    bytes: usize,
}

#[async_trait]
impl RequestStore for DynamoStore {
    async fn insert(&self, requests: Vec<NewRequest>, now: Timestamp) -> Result<Vec<InsertOutcome>, StoreError> {
        let mut outcomes: Vec<Option<InsertOutcome>> = vec![None; requests.len()];
        // A key repeated within one call is settled after its first occurrence.
        let mut seen = HashSet::new();
        let mut repeats = Vec::new();
        let mut units = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            if !seen.insert(r.key.clone()) {
                repeats.push(i);
                continue;
            }
            let state = Request {
                key: r.key.clone(),
                tenant: r.tenant.clone(),
                custom_id: r.custom_id.clone(),
                endpoint: r.endpoint,
                model: r.model.clone(),
                status: RequestStatus::Queued,
                attempts: 0,
                job_id: None,
                content_hash: r.content_hash.clone(),
                body_bytes: r.body_bytes(),
                weight: r.weight,
                created_at: now,
                updated_at: now,
                last_error: None,
                expires_at: None,
            };
            let payload = self.body_payload(r).await?;
            let mut body_item = Item::new();
            body_item.insert(PK.into(), s(r.key.as_str()));
            body_item.insert(SK.into(), s(SK_BODY));
            body_item.insert("content_hash".into(), s(r.content_hash.as_str()));
            payload_attrs(&mut body_item, "body", &payload);
            if let Some(r) = self.retention {
                body_item.insert(EXPIRES_AT.into(), n(expiry_secs(now, r + BODY_HORIZON)));
            }
            let bytes = match &payload {
                Payload::Inline(j) => j.len(),
                Payload::S3 { .. } => 0,
            } + 1024;
            let put_state = Put::builder()
                .table_name(&self.requests_table)
                .set_item(Some(request_to_item(&state)))
                .condition_expression("attribute_not_exists(pk)")
                // An existing request comes back with the refusal: no read.
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build()
                .expect("put has table and item");
            let put_body = Put::builder()
                .table_name(&self.requests_table)
                .set_item(Some(body_item))
                .build()
                .expect("put has table and item");
            units.push((
                InsertUnit {
                    index: i,
                    actions: vec![
                        TransactWriteItem::builder().put(put_state).build(),
                        TransactWriteItem::builder().put(put_body).build(),
                    ],
                    bytes,
                },
                state,
            ));
        }

        let mut existing = Vec::new();
        let mut pending: VecDeque<(InsertUnit, Request)> = units.into();
        while !pending.is_empty() {
            // Take a chunk within the action and size limits of a transaction.
            let mut chunk = Vec::new();
            let mut deltas = CounterDeltas::default();
            let mut actions = 0;
            let mut bytes = 0;
            let shard = shard_of(&pending[0].1.key);
            while let Some((unit, state)) = pending.front() {
                let mut more = CounterDeltas::default();
                more.tenant(&state.tenant, shard, RequestStatus::Queued, 1);
                more.pending_bytes(&state.tenant, shard, state.body_bytes as i64);
                more.queue(&state.queue_group(), shard, 1);
                let need = actions + unit.actions.len() + deltas.len() + deltas.new_items_in(&more);
                if !chunk.is_empty() && (need > TXN_MAX_ACTIONS || bytes + unit.bytes > TXN_MAX_BYTES) {
                    break;
                }
                let (unit, state) = pending.pop_front().expect("front exists");
                deltas.merge(more);
                actions += unit.actions.len();
                bytes += unit.bytes;
                chunk.push((unit, state));
            }
            let mut txn: Vec<TransactWriteItem> = Vec::new();
            for (unit, _) in &chunk {
                txn.extend(unit.actions.iter().cloned());
            }
            txn.extend(deltas.into_actions(&self.jobs_table));
            match self.transact(txn).await? {
                TxnOutcome::Committed => {
                    for (unit, state) in chunk {
                        outcomes[unit.index] = Some(InsertOutcome::Created(state));
                    }
                }
                TxnOutcome::Cancelled(reasons) => {
                    // Requests whose state put failed its condition exist already;
                    // the rest go round again without them.
                    let mut pos = 0;
                    let mut retry = Vec::new();
                    let mut any_failed = false;
                    for (unit, state) in chunk {
                        let reason = reasons.get(pos);
                        pos += unit.actions.len();
                        match reason {
                            Some(r) if r.condition_failed() => {
                                any_failed = true;
                                let stored = r.item.as_ref().map(request_from_item).transpose()?.ok_or_else(|| {
                                    StoreError::backend("insert", format!("request {} vanished", state.key))
                                })?;
                                existing.push((unit.index, stored));
                            }
                            _ => retry.push((unit, state)),
                        }
                    }
                    if !any_failed {
                        return Err(StoreError::backend(
                            "dynamodb TransactWriteItems",
                            format!("transaction cancelled: {reasons:?}"),
                        ));
                    }
                    retry.extend(pending);
                    pending = retry.into();
                }
            }
        }

        let judge = |r: &NewRequest, stored: Request| {
            if stored.content_hash == r.content_hash {
                InsertOutcome::Existing(stored)
            } else {
                InsertOutcome::Conflict(stored)
            }
        };
        // A large body is written to S3 before its transaction; refused as
        // a conflict, nothing refers to that object (content-addressed: the
        // stored request's body has another key).
        let mut orphans = Vec::new();
        for (i, stored) in existing {
            let r = &requests[i];
            if stored.content_hash != r.content_hash && r.body_bytes() > self.inline_body_max {
                orphans.push(keys::body(&r.key, &r.content_hash));
            }
            outcomes[i] = Some(judge(r, stored));
        }
        self.delete_objects(orphans, "a conflicting request's body").await;
        // A repeat is judged against what its first occurrence found or made.
        for i in repeats {
            let first = (0..i)
                .find(|f| requests[*f].key == requests[i].key)
                .expect("a repeat follows its first occurrence");
            let stored = match outcomes[first].clone().expect("first occurrences settled") {
                InsertOutcome::Created(s) | InsertOutcome::Existing(s) | InsertOutcome::Conflict(s) => s,
            };
            outcomes[i] = Some(judge(&requests[i], stored));
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every request settled"))
            .collect())
    }

    async fn get(&self, key: &RequestKey) -> Result<Option<Request>, StoreError> {
        self.get_item(&self.requests_table, key.as_str(), SK_STATE)
            .await?
            .map(|i| request_from_item(&i))
            .transpose()
    }

    async fn get_many(&self, keys: &[RequestKey]) -> Result<HashMap<RequestKey, Request>, StoreError> {
        let mut out = HashMap::with_capacity(keys.len());
        for item in self.batch_get(keys, SK_STATE).await? {
            let r = request_from_item(&item)?;
            out.insert(r.key.clone(), r);
        }
        Ok(out)
    }

    async fn get_with_result(&self, key: &RequestKey) -> Result<Option<(Request, Option<RequestResult>)>, StoreError> {
        // `result` < `state` and `body` sorts before both: one query reads the two small items.
        let values = HashMap::from([(":pk".to_owned(), s(key.as_str())), (":r".to_owned(), s(SK_RESULT))]);
        let (items, _) = self
            .query_page(QuerySpec::new(
                &self.requests_table,
                None,
                "pk = :pk AND sk >= :r",
                values,
            ))
            .await?;
        let mut state = None;
        let mut result = None;
        for item in &items {
            match item.get(SK).and_then(|v| v.as_s().ok()).map(String::as_str) {
                Some(SK_STATE) => state = Some(request_from_item(item)?),
                Some(SK_RESULT) => result = Some(result_from_item(item)?),
                _ => {}
            }
        }
        Ok(state.map(|s| (s, result)))
    }

    async fn bodies(&self, keys: &[RequestKey]) -> Result<HashMap<RequestKey, String>, StoreError> {
        let mut out = HashMap::with_capacity(keys.len());
        for item in self.batch_get(keys, SK_BODY).await? {
            let r = Reader::new(&item, "body");
            let key = r.parse(PK, |v| RequestKey::parse(v).map_err(|e| e.message))?;
            let json = match payload_from(&r, "body")? {
                Some(Payload::Inline(j)) => j,
                Some(Payload::S3 { key: s3key, .. }) => match self.objects.get(&s3key).await? {
                    Some(bytes) => {
                        String::from_utf8(bytes.to_vec()).map_err(|_| r.corrupt("body is not UTF-8".into()))?
                    }
                    // Absent from the answer: the caller decides what a lost body means.
                    None => {
                        tracing::error!(request = %key, object = %s3key, "request body object is missing");
                        continue;
                    }
                },
                None => return Err(r.corrupt("body item has no body".into())),
            };
            out.insert(key, json);
        }
        Ok(out)
    }

    async fn queued(
        &self,
        group: &QueueGroup,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Request>, StoreError> {
        let values = HashMap::from([(":q".to_owned(), s(group.key()))]);
        let (items, next) = self
            .query_page(QuerySpec {
                cursor,
                limit: Some(limit),
                ..QuerySpec::new(&self.requests_table, Some(QUEUE_INDEX), "queue = :q", values)
            })
            .await?;
        Ok(Page {
            items: items.iter().map(request_from_item).collect::<Result<_, _>>()?,
            next,
        })
    }

    async fn queue_groups(&self) -> Result<Vec<QueueGroupStats>, StoreError> {
        let shards = futures::future::try_join_all((0..COUNTER_SHARDS).map(|shard| {
            let values = HashMap::from([(":pk".to_owned(), s(queue_counter_pk(shard)))]);
            self.query_all(QuerySpec::new(&self.jobs_table, None, "pk = :pk", values))
        }))
        .await?;
        let mut sums: HashMap<String, i64> = HashMap::new();
        for item in shards.iter().flatten() {
            let r = Reader::new(item, "queue counter");
            let group = r.req_s(SK)?;
            *sums.entry(group.to_owned()).or_default() += r.opt_n::<i64>("queued")?.unwrap_or(0);
        }
        let mut out: Vec<QueueGroupStats> = sums
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .filter_map(|(k, v)| {
                QueueGroup::from_key(&k).map(|group| QueueGroupStats {
                    group,
                    queued: v as u64,
                })
            })
            .collect();
        out.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(out)
    }

    async fn by_job(&self, job: &JobId, cursor: Option<String>, limit: u32) -> Result<Page<Request>, StoreError> {
        // The job's partitions one after the other: the cursor names the
        // partition and the position in it (`{part}|{cursor}`).
        let (mut part, mut inner) = match cursor {
            None => (0u8, None),
            Some(c) => {
                let bad = || StoreError::Corrupt {
                    entity: "cursor",
                    id: c.chars().take(40).collect(),
                    reason: "not a cursor this store issued".into(),
                };
                let (p, rest) = c.split_once('|').ok_or_else(bad)?;
                let p: u8 = p.parse().map_err(|_| bad())?;
                (p, (!rest.is_empty()).then(|| rest.to_owned()))
            }
        };
        while part < JOB_PARTS {
            let values = HashMap::from([(":j".to_owned(), s(format!("{job}#{part:02}")))]);
            let (items, next) = self
                .query_page(QuerySpec {
                    cursor: inner.take(),
                    limit: Some(limit),
                    ..QuerySpec::new(&self.requests_table, Some(JOB_INDEX), "job_part = :j", values)
                })
                .await?;
            let next = match next {
                Some(n) => Some(format!("{part}|{n}")),
                None if part + 1 < JOB_PARTS => Some(format!("{}|", part + 1)),
                None => None,
            };
            if !items.is_empty() || next.is_none() {
                return Ok(Page {
                    items: items.iter().map(request_from_item).collect::<Result<_, _>>()?,
                    next,
                });
            }
            part += 1;
        }
        Ok(Page {
            items: Vec::new(),
            next: None,
        })
    }

    async fn apply(&self, update: RequestUpdate) -> Result<Applied, StoreError> {
        self.apply_many(vec![update])
            .await?
            .pop()
            .expect("one result per update")
    }

    async fn apply_many(&self, updates: Vec<RequestUpdate>) -> Result<Vec<Result<Applied, StoreError>>, StoreError> {
        let mut results: Vec<Option<Result<Applied, StoreError>>> = (0..updates.len()).map(|_| None).collect();
        let stored = self.offload_large_responses(&updates).await?;
        // One transaction may touch an item once: a key repeated within the
        // call goes in a later round, after its earlier update settled.
        let mut remaining: Vec<usize> = (0..updates.len()).collect();
        while !remaining.is_empty() {
            let mut seen = HashSet::new();
            let (round, later): (Vec<usize>, Vec<usize>) = remaining
                .into_iter()
                .partition(|i| seen.insert(updates[*i].key.clone()));
            self.apply_round(&updates, &stored, &round, &mut results).await?;
            remaining = later;
        }
        let results: Vec<_> = results.into_iter().map(|r| r.expect("every update settled")).collect();
        self.delete_finished_bodies(&updates, &results).await;
        Ok(results)
    }

    async fn counts(&self, tenant: &TenantId) -> Result<StatusCounts, StoreError> {
        let items = futures::future::try_join_all((0..COUNTER_SHARDS).map(|shard| async move {
            self.get_item(&self.jobs_table, &tenant_counter_pk(tenant, shard), TENANT_COUNTER_SK)
                .await
        }))
        .await?;
        let mut counts = StatusCounts::default();
        for item in items.iter().flatten() {
            let r = Reader::new(item, "tenant counter");
            for st in RequestStatus::ALL {
                if let Some(v) = r.opt_n::<i64>(status_attr(st))? {
                    *counts.by_status.entry(st).or_default() += v;
                }
            }
            counts.pending_bytes += r.opt_n::<i64>(PENDING_BYTES_ATTR)?.unwrap_or(0);
        }
        Ok(counts)
    }
}

// ---------------------------------------------------------------- JobStore

#[async_trait]
impl JobStore for DynamoStore {
    async fn create_job(&self, job: &Job) -> Result<(), StoreError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.jobs_table)
            .set_item(Some(job_to_item(job, self.retention)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::ConditionFailed {
                    entity: "job",
                    id: job.id.to_string(),
                    expected: "no row".into(),
                    actual: Some("exists".into()),
                })
            }
            Err(e) => Err(StoreError::backend("dynamodb PutItem", err_msg(e))),
        }
    }

    async fn get_job(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        self.get_item(&self.jobs_table, &format!("job#{id}"), SK_JOB)
            .await?
            .map(|i| job_from_item(&i))
            .transpose()
    }

    async fn save_job(&self, prev: &Job, mut next: Job) -> Result<Job, StoreError> {
        if prev.id != next.id {
            return Err(StoreError::backend("save_job", "prev and next are different jobs"));
        }
        if prev.status != next.status {
            prev.status.check_transition(next.status)?;
        }
        next.version = prev.version + 1;
        let res = self
            .client
            .put_item()
            .table_name(&self.jobs_table)
            .set_item(Some(job_to_item(&next, self.retention)))
            .condition_expression("#status = :status AND version = :version")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", s(prev.status.as_str()))
            .expression_attribute_values(":version", n(prev.version))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match res {
            Ok(_) => Ok(next),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                let actual = match self.get_job(&prev.id).await? {
                    Some(cur) => Some(format!("{} v{}", cur.status, cur.version)),
                    None => None,
                };
                Err(StoreError::ConditionFailed {
                    entity: "job",
                    id: prev.id.to_string(),
                    expected: format!("{} v{}", prev.status, prev.version),
                    actual,
                })
            }
            Err(e) => Err(StoreError::backend("dynamodb PutItem", err_msg(e))),
        }
    }

    async fn open_jobs(&self) -> Result<Vec<Job>, StoreError> {
        // OPEN is a DynamoDB reserved word, hence the name placeholder.
        let values = HashMap::from([(":o".to_owned(), s("1"))]);
        let names = HashMap::from([("#open".to_owned(), "open".to_owned())]);
        let items = self
            .query_all(QuerySpec {
                names: Some(names),
                ..QuerySpec::new(&self.jobs_table, Some(OPEN_INDEX), "#open = :o", values)
            })
            .await?;
        items.iter().map(job_from_item).collect()
    }

    async fn token_budgets(&self) -> Result<HashMap<ModelName, TokenBudget>, StoreError> {
        let values = HashMap::from([(":pk".to_owned(), s(BUDGET_PK))]);
        let items = self
            .query_all(QuerySpec::new(&self.jobs_table, None, "pk = :pk", values))
            .await?;
        let mut out = HashMap::new();
        for item in &items {
            let r = Reader::new(item, "token budget");
            let ts = |name: &str| -> Result<Option<Timestamp>, StoreError> {
                Ok(r.opt_n(name)?.map(Timestamp::from_millis))
            };
            let budget = TokenBudget {
                model: r.parse(SK, |v| ModelName::parse(v).map_err(|e| e.message))?,
                limit: r.opt_n("limit")?,
                stated_limit: r.opt_n("stated_limit")?,
                stated_at: ts("stated_at")?,
                refusals_in_row: r.opt_n("refusals_in_row")?.unwrap_or(0),
                refusals_total: r.opt_n("refusals_total")?.unwrap_or(0),
                blocked_until: ts("blocked_until")?,
                updated_at: Timestamp::from_millis(r.req_n("updated_at")?),
            };
            out.insert(budget.model.clone(), budget);
        }
        Ok(out)
    }

    async fn save_token_budget(&self, b: &TokenBudget) -> Result<(), StoreError> {
        let mut item = HashMap::from([
            (PK.to_owned(), s(BUDGET_PK)),
            (SK.to_owned(), s(b.model.as_str())),
            ("refusals_in_row".to_owned(), n(b.refusals_in_row)),
            ("updated_at".to_owned(), n(b.updated_at.millis())),
        ]);
        for (name, v) in [("limit", b.limit), ("stated_limit", b.stated_limit)] {
            if let Some(v) = v {
                item.insert(name.to_owned(), n(v));
            }
        }
        item.insert("refusals_total".to_owned(), n(b.refusals_total));
        for (name, v) in [("stated_at", b.stated_at), ("blocked_until", b.blocked_until)] {
            if let Some(v) = v {
                item.insert(name.to_owned(), n(v.millis()));
            }
        }
        self.client
            .put_item()
            .table_name(&self.jobs_table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| StoreError::backend("dynamodb PutItem", err_msg(e)))?;
        Ok(())
    }

    async fn add_job_tenants(&self, job: &Job, tenants: &[TenantId]) -> Result<(), StoreError> {
        // The item lives as long as the job can: created + the longest a
        // job stays open (deadline, grace, watch: days) + the retention.
        let expires = self
            .retention
            .map(|r| expiry_secs(job.created_at, r + JOB_TENANT_HORIZON));
        let puts = futures::stream::iter(tenants.iter().cloned())
            .map(|tenant| {
                let mut item = HashMap::from([
                    (PK.to_owned(), s(tenant_jobs_pk(&tenant))),
                    (SK.to_owned(), s(tenant_job_sk(job))),
                    ("job_id".to_owned(), s(job.id.as_str())),
                ]);
                if let Some(e) = expires {
                    item.insert(EXPIRES_AT.to_owned(), n(e));
                }
                async move {
                    self.client
                        .put_item()
                        .table_name(&self.jobs_table)
                        .set_item(Some(item))
                        .send()
                        .await
                        .map_err(|e| StoreError::backend("dynamodb PutItem", err_msg(e)))
                }
            })
            .buffer_unordered(16);
        futures::pin_mut!(puts);
        while let Some(done) = puts.next().await {
            done?;
        }
        Ok(())
    }

    async fn job_has_tenant(&self, job: &Job, tenant: &TenantId) -> Result<bool, StoreError> {
        if job.tenants.contains(tenant) {
            return Ok(true);
        }
        if job.lists_every_tenant() {
            return Ok(false);
        }
        Ok(self
            .get_item(&self.jobs_table, &tenant_jobs_pk(tenant), &tenant_job_sk(job))
            .await?
            .is_some())
    }

    async fn list_jobs(
        &self,
        tenant: Option<&TenantId>,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Job>, StoreError> {
        if let Some(t) = tenant {
            // The tenant's own partition, newest first, then each job.
            let values = HashMap::from([(":pk".to_owned(), s(tenant_jobs_pk(t)))]);
            let (items, next) = self
                .query_page(QuerySpec {
                    forward: false,
                    cursor,
                    limit: Some(limit),
                    ..QuerySpec::new(&self.jobs_table, None, "pk = :pk", values)
                })
                .await?;
            let ids = items
                .iter()
                .map(|item| Reader::new(item, "tenant job").parse("job_id", |v| JobId::parse(v).map_err(|e| e.message)))
                .collect::<Result<Vec<_>, _>>()?;
            let jobs = futures::future::try_join_all(ids.iter().map(|id| self.get_job(id))).await?;
            return Ok(Page {
                // A job deleted by its TTL before its tenant item: gone.
                items: jobs.into_iter().flatten().collect(),
                next,
            });
        }
        let values = HashMap::from([(":k".to_owned(), s("job"))]);
        let names = HashMap::from([("#kind".to_owned(), "kind".to_owned())]);
        let (items, next) = self
            .query_page(QuerySpec {
                names: Some(names),
                forward: false,
                cursor,
                limit: Some(limit),
                ..QuerySpec::new(&self.jobs_table, Some(JOBS_INDEX), "#kind = :k", values)
            })
            .await?;
        Ok(Page {
            items: items.iter().map(job_from_item).collect::<Result<_, _>>()?,
            next,
        })
    }
}

// ---------------------------------------------------------------- SavingsStore

#[async_trait]
impl SavingsStore for DynamoStore {
    async fn add_savings(&self, source: &str, rows: Vec<SavingsRow>) -> Result<(), StoreError> {
        for row in rows {
            let t = &row.totals;
            let values = HashMap::from([
                (":requests".to_owned(), n(t.requests)),
                (":input".to_owned(), n(t.usage.input_tokens)),
                (":cached".to_owned(), n(t.usage.cached_input_tokens)),
                (":output".to_owned(), n(t.usage.output_tokens)),
                (":reasoning".to_owned(), n(t.usage.reasoning_tokens)),
                (":batch".to_owned(), n(t.batch_cost.picodollars())),
                (":realtime".to_owned(), n(t.realtime_cost.picodollars())),
                (":unpriced".to_owned(), n(t.unpriced_requests)),
                (":sources".to_owned(), AttributeValue::Ss(vec![source.to_owned()])),
                (":source".to_owned(), s(source)),
                (":day".to_owned(), s(row.day.clone())),
                (":model".to_owned(), s(row.model.as_str())),
            ]);
            let res = self
                .client
                .update_item()
                .table_name(&self.jobs_table)
                .key(PK, s(savings_pk(&row.tenant)))
                .key(SK, s(format!("{}#{}", row.day, row.model)))
                // Every attribute through a name placeholder: none can clash with a reserved word.
                .update_expression(
                    "SET #day = :day, #model = :model \
                     ADD #requests :requests, #input :input, #cached :cached, #output :output, \
                     #reasoning :reasoning, #batch :batch, #realtime :realtime, #unpriced :unpriced, \
                     #sources :sources",
                )
                .condition_expression("attribute_not_exists(#sources) OR NOT contains(#sources, :source)")
                .set_expression_attribute_names(Some(HashMap::from(
                    [
                        ("#day", "day"),
                        ("#model", "model"),
                        ("#requests", "requests"),
                        ("#input", "input_tokens"),
                        ("#cached", "cached_input_tokens"),
                        ("#output", "output_tokens"),
                        ("#reasoning", "reasoning_tokens"),
                        ("#batch", "batch_cost"),
                        ("#realtime", "realtime_cost"),
                        ("#unpriced", "unpriced_requests"),
                        ("#sources", "sources"),
                    ]
                    .map(|(k, v)| (k.to_owned(), v.to_owned())),
                )))
                .set_expression_attribute_values(Some(values))
                .send()
                .await;
            match res {
                Ok(_) => {}
                // Already counted: a replay.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(StoreError::backend("dynamodb UpdateItem", err_msg(e))),
            }
        }
        Ok(())
    }

    async fn savings(&self, tenant: &TenantId, from: &str, to: &str) -> Result<Vec<SavingsRow>, StoreError> {
        let values = HashMap::from([
            (":pk".to_owned(), s(savings_pk(tenant))),
            (":from".to_owned(), s(from)),
            // Every `{to}#{model}` sorts below `{to}#` followed by U+FFFF.
            (":to".to_owned(), s(format!("{to}#\u{ffff}"))),
        ]);
        let items = self
            .query_all(QuerySpec::new(
                &self.jobs_table,
                None,
                "pk = :pk AND sk BETWEEN :from AND :to",
                values,
            ))
            .await?;
        items
            .iter()
            .map(|item| {
                let r = Reader::new(item, "savings");
                Ok(SavingsRow {
                    tenant: tenant.clone(),
                    day: r.req_s("day")?.to_owned(),
                    model: r.parse("model", |v| ModelName::parse(v).map_err(|e| e.message))?,
                    totals: SavingsTotals {
                        requests: r.req_n("requests")?,
                        usage: usage_of(&r)?,
                        batch_cost: Money::from_picodollars(r.req_n("batch_cost")?),
                        realtime_cost: Money::from_picodollars(r.req_n("realtime_cost")?),
                        unpriced_requests: r.req_n("unpriced_requests")?,
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::CustomId;

    /// What one 50,000-request job's writes look like by partition key: the
    /// job index spread over `JOB_PARTS`, the counters over `COUNTER_SHARDS`.
    #[test]
    fn a_large_jobs_writes_spread_evenly_over_index_parts_and_counter_shards() {
        let tenant = TenantId::parse("acme").unwrap();
        let job = JobId::generate();
        let keys: Vec<RequestKey> = (0..50_000)
            .map(|i| RequestKey::derive(&tenant, &CustomId::parse(format!("req-{i}")).unwrap()))
            .collect();
        let mut parts: HashMap<String, u32> = HashMap::new();
        let mut shards: HashMap<u8, u32> = HashMap::new();
        for k in &keys {
            *parts.entry(job_part(&job, k)).or_default() += 1;
            *shards.entry(shard_of(k)).or_default() += 1;
        }
        assert_eq!(parts.len(), JOB_PARTS as usize);
        assert_eq!(shards.len(), COUNTER_SHARDS as usize);
        let busiest = |m: Vec<u32>| m.into_iter().max().unwrap() as f64 / keys.len() as f64;
        let part_share = busiest(parts.into_values().collect());
        let shard_share = busiest(shards.into_values().collect());
        eprintln!("busiest index part {part_share:.4}, busiest counter shard {shard_share:.4}");
        assert!(
            part_share < 1.1 / JOB_PARTS as f64,
            "busiest index part: {part_share:.4}"
        );
        assert!(
            shard_share < 1.1 / COUNTER_SHARDS as f64,
            "busiest counter shard: {shard_share:.4}"
        );
    }
}
