//! The store conformance suite: what every store adapter must do, written
//! once against the ports and run against each adapter
//! (`tests/tests/store_conformance.rs`: the in-memory store, the
//! DynamoDB + S3 adapters on the emulator and the embedded SQLite + files
//! store). A new store passes these before the pipeline runs on it.
//!
//! Each case is a `pub async fn` taking a fresh [`StoreUnderTest`]; its
//! name says the behaviour it pins.

mod activity;
mod concurrency;
mod feed;
mod jobs;
mod lag;
mod objects;
mod requests;
mod savings;
mod transitions;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use batchq_core::ids::{CustomId, JobId, ModelName, TenantId};
use batchq_core::job::{Job, ProviderKind};
use batchq_core::placement::InlineLimits;
use batchq_core::request::{
    Endpoint, InsertOutcome, NewRequest, Payload, QueueGroup, Request, RequestResult, RequestStatus, Usage,
};
use batchq_core::store::memory::{MemoryObjects, MemoryStore};
use batchq_core::store::{Applied, JobStore, ObjectStore, RequestStore, SavingsStore, StoreError};
use batchq_core::time::Timestamp;

pub use activity::*;
pub use concurrency::*;
pub use feed::*;
pub use jobs::*;
pub use lag::*;
pub use objects::*;
pub use requests::*;
pub use savings::*;
pub use transitions::*;

/// The ports of one store, fresh and empty, with the inline limits it was
/// built with (larger bodies and responses go to `objects`).
#[derive(Clone)]
pub struct StoreUnderTest {
    pub requests: Arc<dyn RequestStore>,
    pub jobs: Arc<dyn JobStore>,
    pub savings: Arc<dyn SavingsStore>,
    pub objects: Arc<dyn ObjectStore>,
    pub inline_body_max: u64,
    pub inline_result_max: u64,
    /// Makes the store's eventually consistent listings lag its writes by
    /// the given time (zero: no lag).
    pub set_index_lag: IndexLag,
}

/// How a test makes a store's listings lag (see [`StoreUnderTest::set_index_lag`]).
pub type IndexLag = Arc<dyn Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync>;

/// Inline limits of the stores under test: the configuration's defaults.
pub const INLINE_MAX: u64 = 16 * 1024;

/// A fresh in-memory store.
pub fn memory_store() -> StoreUnderTest {
    let objects: Arc<dyn ObjectStore> = Arc::new(MemoryObjects::default());
    let store = Arc::new(MemoryStore::new().placed(
        objects.clone(),
        InlineLimits {
            body_max: INLINE_MAX,
            result_max: INLINE_MAX,
        },
    ));
    let lagging = store.clone();
    StoreUnderTest {
        set_index_lag: Arc::new(move |lag| {
            lagging.set_index_lag(lag);
            Box::pin(async {})
        }),
        requests: store.clone(),
        jobs: store.clone(),
        savings: store,
        objects,
        inline_body_max: INLINE_MAX,
        inline_result_max: INLINE_MAX,
    }
}

/// A fresh embedded store: SQLite and files in a temporary data directory,
/// removed when the last handle goes. Its listings never lag (SQLite reads
/// are consistent), so `set_index_lag` does nothing and the lag case is not
/// run on it.
pub fn embedded_store() -> StoreUnderTest {
    let dir = Arc::new(crate::stores::TempDataDir::new());
    let data = batchq_core::store::data_dir::DataDir::open_with(&dir.path, true, Default::default(), 5 * 1024 * 1024)
        .expect("open a fresh data directory");
    let objects: Arc<dyn ObjectStore> = data.objects();
    let store = Arc::new(data.store(InlineLimits {
        body_max: INLINE_MAX,
        result_max: INLINE_MAX,
    }));
    StoreUnderTest {
        set_index_lag: Arc::new(move |_| {
            // Keeps the directory as long as the store under test.
            let _dir = dir.clone();
            Box::pin(async {})
        }),
        requests: store.clone(),
        jobs: store.clone(),
        savings: store,
        objects,
        inline_body_max: INLINE_MAX,
        inline_result_max: INLINE_MAX,
    }
}

/// Fresh DynamoDB tables and an S3 bucket on the emulator.
pub async fn dynamo_store() -> StoreUnderTest {
    let env = crate::TestEnv::with(|c| {
        c.limits.inline_body_max_bytes = INLINE_MAX;
        c.limits.inline_result_max_bytes = INLINE_MAX;
    })
    .await;
    let store = Arc::new(env.store.clone());
    let tables = [env.config.requests_table.clone(), env.config.jobs_table.clone()];
    StoreUnderTest {
        set_index_lag: Arc::new(move |lag| {
            let tables = tables.clone();
            Box::pin(async move {
                for t in &tables {
                    crate::set_table_index_lag(t, lag).await;
                }
            })
        }),
        requests: store.clone(),
        jobs: store.clone(),
        savings: store,
        objects: env.s3.clone(),
        inline_body_max: INLINE_MAX,
        inline_result_max: INLINE_MAX,
    }
}

// ---------------------------------------------------------------- helpers

const T0: i64 = 1_790_000_000_000;

pub(crate) fn ts(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

pub(crate) fn tenant(t: &str) -> TenantId {
    TenantId::parse(t).unwrap()
}

pub(crate) fn group(model: &str) -> QueueGroup {
    QueueGroup::of(Endpoint::ChatCompletions, ModelName::parse(model).unwrap())
}

pub(crate) fn new_request(t: &str, custom_id: &str, model: &str, text: &str) -> NewRequest {
    let body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]});
    NewRequest::new(
        tenant(t),
        CustomId::parse(custom_id).unwrap(),
        Endpoint::ChatCompletions,
        ModelName::parse(model).unwrap(),
        serde_json::to_string(&body).unwrap(),
    )
}

/// A request whose body is over the store's inline limit.
pub(crate) fn large_request(s: &StoreUnderTest, t: &str, custom_id: &str, fill: char) -> NewRequest {
    let text: String = std::iter::repeat_n(fill, s.inline_body_max as usize + 100).collect();
    new_request(t, custom_id, "gpt-4o-mini", &text)
}

pub(crate) async fn insert_one(s: &StoreUnderTest, r: NewRequest, at: Timestamp) -> Request {
    match s.requests.insert(vec![r], at).await.unwrap().remove(0) {
        InsertOutcome::Created(r) => r,
        other => panic!("expected Created, got {other:?}"),
    }
}

/// `n` requests of one tenant and model, created 1 ms apart from `at`.
pub(crate) async fn insert_many(s: &StoreUnderTest, t: &str, model: &str, n: usize, at: i64) -> Vec<Request> {
    let mut out = Vec::new();
    for i in 0..n {
        let r = new_request(t, &format!("{model}-{i}"), model, &format!("text {i}"));
        out.push(insert_one(s, r, ts(at + i as i64)).await);
    }
    out
}

pub(crate) fn result(req: &Request, job: &JobId, text: &str, at: Timestamp) -> RequestResult {
    RequestResult {
        key: req.key.clone(),
        job_id: job.clone(),
        status_code: Some(200),
        response: Some(Payload::Inline(serde_json::json!({"text": text}).to_string())),
        error: None,
        usage: Some(Usage {
            input_tokens: 10,
            cached_input_tokens: 2,
            output_tokens: 5,
            reasoning_tokens: 0,
            cache_write_tokens: 0,
        }),
        batch_cost: Some(batchq_core::money::Money::from_picodollars(1_500)),
        realtime_cost: Some(batchq_core::money::Money::from_picodollars(3_000)),
        recorded_at: at,
        request_id: None,
    }
}

pub(crate) fn new_job(created: Timestamp) -> Job {
    Job::new(
        JobId::generate(),
        ProviderKind::OpenAi,
        &group("gpt-4o-mini"),
        created,
        created,
    )
}

/// A job as every store reads it back: without its expiry (retention is
/// the adapter's business) and with its tenant sets in order.
pub(crate) fn norm(mut j: Job) -> Job {
    j.expires_at = None;
    j.tenants.sort();
    j.duplicate_batches.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    j
}

/// A request as every store reads it back, without its expiry.
pub(crate) fn norm_req(mut r: Request) -> Request {
    r.expires_at = None;
    r
}

/// Every page of the queue of `g`, `limit` at a time.
pub(crate) async fn all_queued(s: &StoreUnderTest, g: &QueueGroup, limit: u32) -> Vec<Request> {
    let mut out = Vec::new();
    let mut cursor = None;
    for _ in 0..1000 {
        let page = s.requests.queued(g, cursor, limit).await.unwrap();
        assert!(page.items.len() <= limit as usize, "a page holds at most its limit");
        out.extend(page.items);
        match page.next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
    panic!("queued pages never end");
}

/// Every page of the requests of `job`, `limit` at a time.
pub(crate) async fn all_by_job(s: &StoreUnderTest, job: &JobId, limit: u32) -> Vec<Request> {
    let mut out = Vec::new();
    let mut cursor = None;
    for _ in 0..1000 {
        let page = s.requests.by_job(job, cursor, limit).await.unwrap();
        assert!(page.items.len() <= limit as usize, "a page holds at most its limit");
        out.extend(page.items);
        match page.next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
    panic!("by_job pages never end");
}

/// Every page of the job listing, `limit` at a time.
pub(crate) async fn all_jobs(s: &StoreUnderTest, t: Option<&TenantId>, limit: u32) -> Vec<Job> {
    let mut out = Vec::new();
    let mut cursor = None;
    for _ in 0..1000 {
        let page = s.jobs.list_jobs(t, cursor, limit).await.unwrap();
        assert!(page.items.len() <= limit as usize, "a page holds at most its limit");
        out.extend(page.items);
        match page.next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
    panic!("job pages never end");
}

pub(crate) async fn get(s: &StoreUnderTest, r: &Request) -> Request {
    s.requests.get(&r.key).await.unwrap().expect("request exists")
}

/// The tenant's count of requests in `st`.
pub(crate) async fn count(s: &StoreUnderTest, t: &str, st: RequestStatus) -> i64 {
    s.requests.counts(&tenant(t)).await.unwrap().get(st)
}

/// Asserts a conditional refusal naming the state the row was found in.
#[track_caller]
pub(crate) fn assert_refused(res: Result<Applied, StoreError>, actual: &str) {
    match res {
        Err(StoreError::ConditionFailed { actual: Some(a), .. }) => {
            assert_eq!(a, actual, "the refusal names the stored state")
        }
        other => panic!("expected ConditionFailed (found {actual}), got {other:?}"),
    }
}
