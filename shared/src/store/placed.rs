//! The object-store side of request storage, around any row store: large
//! bodies are written before their rows, large responses before the
//! updates that refer to them, bodies kept as objects are read back on
//! [`RequestStore::bodies`], and a finished request's body object is
//! deleted (best effort). Row stores ([`RequestRows`]) receive payloads
//! already placed and never call the object store.

use crate::activity::{ActivityRows, Hour};
use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::{
    Applied, JobStore, ObjectStore, Page, QueueGroupStats, RequestRows, RequestStore, RowInsert, SavingsRow,
    SavingsStore, StatusCounts, StoreError,
};
use crate::budget::TokenBudget;
use crate::feed::{FeedCursor, FeedPage};
use crate::ids::{JobId, ModelName, RequestKey, TenantId};
use crate::job::Job;
use crate::keys;
use crate::placement::{InlineLimits, QueuedRow};
use crate::request::{InsertOutcome, NewRequest, Payload, QueueGroup, Request, RequestResult};
use crate::time::Timestamp;
use crate::transition::RequestUpdate;

/// Objects written at once: large responses by one `apply_many`, bodies and
/// chunks by one `insert`. One at a time, a file of 50,000 answers of 20 KB
/// took longer than a Lambda may run.
const PUTS_IN_FLIGHT: usize = 16;

/// Objects deleted at once.
const DELETES_IN_FLIGHT: usize = 16;

/// A row store with its large payloads placed in an object store: the
/// [`RequestStore`] the core uses. Job and savings calls pass through, and
/// so (by `Deref`) do the row store's own methods.
#[derive(Clone)]
pub struct PlacedStore<S> {
    rows: S,
    objects: Arc<dyn ObjectStore>,
    limits: InlineLimits,
}

impl<S> std::fmt::Debug for PlacedStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlacedStore").field("limits", &self.limits).finish()
    }
}

impl<S> PlacedStore<S> {
    pub fn new(rows: S, objects: Arc<dyn ObjectStore>, limits: InlineLimits) -> Self {
        Self { rows, objects, limits }
    }

    pub fn rows(&self) -> &S {
        &self.rows
    }

    pub fn limits(&self) -> InlineLimits {
        self.limits
    }

    /// Deletes objects nothing refers to any more, several at a time; a
    /// failure only leaves an object behind (the bucket's lifecycle rule
    /// for `bodies/` takes it later), which is logged.
    async fn delete_objects(&self, keys: Vec<String>, what: &'static str) {
        let deletes = futures::stream::iter(keys)
            .map(|key| async move { (self.objects.delete(&key).await, key) })
            .buffer_unordered(DELETES_IN_FLIGHT);
        futures::pin_mut!(deletes);
        while let Some((res, key)) = deletes.next().await {
            if let Err(e) = res {
                tracing::warn!(key, error = %e, what, "could not delete an object nothing refers to; it stays in S3");
            }
        }
    }

    /// The updates with every response over the inline limit written to
    /// the object store first (under a key fixed by request and job, so a
    /// replay rewrites the same object) and referred to instead.
    async fn place_responses(&self, mut updates: Vec<RequestUpdate>) -> Result<Vec<RequestUpdate>, StoreError> {
        let large: Vec<(usize, crate::placement::Object)> = updates
            .iter()
            .enumerate()
            .filter_map(|(i, u)| {
                u.result
                    .as_ref()
                    .and_then(|r| self.limits.response_object(r))
                    .map(|o| (i, o))
            })
            .collect();
        let puts = futures::stream::iter(large)
            .map(|(i, object)| async move {
                let bytes = object.json.len() as u64;
                self.objects
                    .put(&object.key, Bytes::from(object.json), "application/json")
                    .await?;
                Ok::<_, StoreError>((i, Payload::S3 { key: object.key, bytes }))
            })
            .buffer_unordered(PUTS_IN_FLIGHT);
        futures::pin_mut!(puts);
        while let Some(done) = puts.next().await {
            let (i, payload) = done?;
            if let Some(r) = updates[i].result.as_mut() {
                r.response = Some(payload);
            }
        }
        Ok(updates)
    }
}

impl<S> Deref for PlacedStore<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.rows
    }
}

#[async_trait]
impl<S: RequestRows> RequestStore for PlacedStore<S> {
    async fn insert(&self, requests: Vec<NewRequest>, now: Timestamp) -> Result<Vec<InsertOutcome>, StoreError> {
        // A key repeated within one call is settled after its first occurrence.
        let mut seen = HashSet::new();
        let mut firsts = Vec::new();
        let mut repeats = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            if seen.insert(r.key.clone()) {
                firsts.push(i);
            } else {
                repeats.push(i);
            }
        }
        let (bodies, objects) = self
            .limits
            .place_bodies(&firsts.iter().map(|i| &requests[*i]).collect::<Vec<_>>());
        // Every object before the rows that refer to it. A large body's key
        // is content-addressed (a conflicting re-post never overwrites an
        // accepted body); a chunk's is new each time.
        let puts = futures::stream::iter(objects)
            .map(|object| async move {
                let content_type = if is_chunk(&object.key) {
                    "application/x-ndjson"
                } else {
                    "application/json"
                };
                self.objects
                    .put(&object.key, Bytes::from(object.json), content_type)
                    .await
            })
            .buffer_unordered(PUTS_IN_FLIGHT);
        futures::pin_mut!(puts);
        while let Some(done) = puts.next().await {
            done?;
        }
        let rows: Vec<QueuedRow> = firsts
            .iter()
            .zip(bodies)
            .map(|(i, body)| QueuedRow::new(&requests[*i], body, now))
            .collect();
        let chunks: Vec<Option<String>> = rows
            .iter()
            .map(|row| match &row.body {
                Payload::Chunk { key, .. } => Some(key.clone()),
                _ => None,
            })
            .collect();
        let states: Vec<Request> = rows.iter().map(|row| row.state.clone()).collect();
        let written = self.rows.insert_rows(rows).await?;

        let judge = |r: &NewRequest, stored: Request| {
            if r.is_repeat_of(&stored) {
                InsertOutcome::Existing(stored)
            } else {
                InsertOutcome::Conflict(stored)
            }
        };
        let mut outcomes: Vec<Option<InsertOutcome>> = vec![None; requests.len()];
        // A large body is written before its row; refused as a conflict,
        // nothing refers to that object (content-addressed: the stored
        // request's body has another key).
        let mut orphans = Vec::new();
        // A chunk no written row refers to (every one of its requests
        // existed already) is deleted too.
        let mut chunk_used: HashMap<String, bool> = HashMap::new();
        for (((i, state), done), chunk) in firsts.into_iter().zip(states).zip(written).zip(chunks) {
            let r = &requests[i];
            let created = matches!(done, RowInsert::Written);
            if let Some(chunk) = chunk {
                *chunk_used.entry(chunk).or_default() |= created;
            }
            outcomes[i] = Some(match done {
                RowInsert::Written => InsertOutcome::Created(state),
                RowInsert::Exists(stored) => {
                    if stored.content_hash != r.content_hash && self.limits.body_is_object(r.body_bytes()) {
                        orphans.push(keys::body(&r.key, &r.content_hash));
                    }
                    judge(r, *stored)
                }
            });
        }
        orphans.extend(chunk_used.into_iter().filter(|(_, used)| !used).map(|(key, _)| key));
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
        self.rows.get(key).await
    }

    async fn get_many(&self, keys: &[RequestKey]) -> Result<HashMap<RequestKey, Request>, StoreError> {
        self.rows.get_many(keys).await
    }

    async fn get_with_result(&self, key: &RequestKey) -> Result<Option<(Request, Option<RequestResult>)>, StoreError> {
        self.rows.get_with_result(key).await
    }

    async fn bodies(&self, keys: &[RequestKey]) -> Result<HashMap<RequestKey, String>, StoreError> {
        let payloads = self.rows.body_payloads(keys).await?;
        let mut out = HashMap::with_capacity(payloads.len());
        // Bodies in chunks: each chunk's range that covers the ones asked
        // for is read once (claims follow the queue order, so they are
        // mostly contiguous).
        let mut in_chunks: HashMap<String, Vec<(RequestKey, u64, u64)>> = HashMap::new();
        for (key, payload) in payloads {
            let json = match payload {
                Payload::Inline(j) => j,
                Payload::S3 { key: object, .. } => match self.objects.get(&object).await? {
                    Some(bytes) => utf8_body(&key, bytes.to_vec())?,
                    // Absent from the answer: the caller decides what a lost body means.
                    None => {
                        tracing::error!(request = %key, object = %object, "request body object is missing");
                        continue;
                    }
                },
                Payload::Chunk {
                    key: chunk,
                    offset,
                    len,
                } => {
                    in_chunks.entry(chunk).or_default().push((key, offset, len));
                    continue;
                }
            };
            out.insert(key, json);
        }
        for (chunk, wanted) in in_chunks {
            let start = wanted.iter().map(|(_, o, _)| *o).min().unwrap_or(0);
            let end = wanted.iter().map(|(_, o, l)| o + l).max().unwrap_or(0);
            let Some(bytes) = self.objects.get_range(&chunk, start, end).await? else {
                tracing::error!(object = %chunk, requests = wanted.len(), "request body chunk is missing");
                continue;
            };
            for (key, offset, len) in wanted {
                let (from, to) = ((offset - start) as usize, (offset - start + len) as usize);
                let Some(body) = bytes.get(from..to) else {
                    tracing::error!(request = %key, object = %chunk, "request body chunk is shorter than its rows say");
                    continue;
                };
                out.insert(key.clone(), utf8_body(&key, body.to_vec())?);
            }
        }
        Ok(out)
    }

    async fn queued(
        &self,
        group: &QueueGroup,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Request>, StoreError> {
        self.rows.queued(group, cursor, limit).await
    }

    async fn queue_groups(&self) -> Result<Vec<QueueGroupStats>, StoreError> {
        self.rows.queue_groups().await
    }

    async fn by_job(&self, job: &JobId, cursor: Option<String>, limit: u32) -> Result<Page<Request>, StoreError> {
        self.rows.by_job(job, cursor, limit).await
    }

    async fn apply(&self, update: RequestUpdate) -> Result<Applied, StoreError> {
        self.apply_many(vec![update])
            .await?
            .pop()
            .expect("one result per update")
    }

    async fn apply_many(&self, updates: Vec<RequestUpdate>) -> Result<Vec<Result<Applied, StoreError>>, StoreError> {
        // What a finished request's body object is, should the update apply.
        let body_objects: Vec<Option<String>> = updates
            .iter()
            .map(|u| {
                (u.to.is_terminal() && self.limits.body_is_object(u.body_bytes))
                    .then(|| keys::body(&u.key, &u.content_hash))
            })
            .collect();
        let placed = self.place_responses(updates).await?;
        let results = self.rows.apply_placed(placed).await?;
        // Nothing reads a finished request's body again. Best effort and
        // idempotent: a replayed update (`Applied::Already`, as after a crash
        // right here) deletes again.
        let finished: Vec<String> = body_objects
            .into_iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .filter_map(|(key, _)| key)
            .collect();
        self.delete_objects(finished, "a finished request's body").await;
        Ok(results)
    }

    async fn counts(&self, tenant: &TenantId) -> Result<StatusCounts, StoreError> {
        self.rows.counts(tenant).await
    }

    async fn activity(&self, tenant: &TenantId, from: Hour, to: Hour) -> Result<ActivityRows, StoreError> {
        self.rows.activity(tenant, from, to).await
    }

    async fn feed(&self, tenant: &TenantId, after: Option<&FeedCursor>, limit: u32) -> Result<FeedPage, StoreError> {
        self.rows.feed(tenant, after, limit).await
    }

    async fn feed_end(&self, tenant: &TenantId) -> Result<Option<FeedCursor>, StoreError> {
        self.rows.feed_end(tenant).await
    }

    async fn settle_overhead(&self, tenant: &TenantId, hour: Hour) -> Result<(), StoreError> {
        self.rows.settle_overhead(tenant, hour).await
    }
}

/// Whether `key` names a chunk of bodies ([`keys::body_chunk`]).
fn is_chunk(key: &str) -> bool {
    key.starts_with("bodies/chunks/")
}

fn utf8_body(key: &RequestKey, bytes: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(bytes).map_err(|_| StoreError::Corrupt {
        entity: "body",
        id: key.to_string(),
        reason: "body is not UTF-8".into(),
    })
}

/// The text a payload stands for, read from `objects` when it is not
/// inline; `None` when its object is gone.
pub async fn payload_text(objects: &dyn ObjectStore, payload: &Payload) -> Result<Option<String>, StoreError> {
    let bytes = match payload {
        Payload::Inline(text) => return Ok(Some(text.clone())),
        Payload::S3 { key, .. } => objects.get(key).await?,
        Payload::Chunk { key, offset, len } => objects.get_range(key, *offset, offset + len).await?,
    };
    bytes
        .map(|b| {
            String::from_utf8(b.to_vec()).map_err(|_| StoreError::Corrupt {
                entity: "payload",
                id: match payload {
                    Payload::S3 { key, .. } | Payload::Chunk { key, .. } => key.clone(),
                    Payload::Inline(_) => String::new(),
                },
                reason: "not UTF-8".into(),
            })
        })
        .transpose()
}

#[async_trait]
impl<S: JobStore> JobStore for PlacedStore<S> {
    async fn create_job(&self, job: &Job) -> Result<(), StoreError> {
        self.rows.create_job(job).await
    }

    async fn get_job(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        self.rows.get_job(id).await
    }

    async fn save_job(&self, prev: &Job, next: Job) -> Result<Job, StoreError> {
        self.rows.save_job(prev, next).await
    }

    async fn open_jobs(&self) -> Result<Vec<Job>, StoreError> {
        self.rows.open_jobs().await
    }

    async fn add_job_tenants(&self, job: &Job, tenants: &[TenantId]) -> Result<(), StoreError> {
        self.rows.add_job_tenants(job, tenants).await
    }

    async fn job_has_tenant(&self, job: &Job, tenant: &TenantId) -> Result<bool, StoreError> {
        self.rows.job_has_tenant(job, tenant).await
    }

    async fn list_jobs(
        &self,
        tenant: Option<&TenantId>,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Job>, StoreError> {
        self.rows.list_jobs(tenant, cursor, limit).await
    }

    async fn token_budgets(&self) -> Result<HashMap<ModelName, TokenBudget>, StoreError> {
        self.rows.token_budgets().await
    }

    async fn save_token_budget(&self, budget: &TokenBudget) -> Result<(), StoreError> {
        self.rows.save_token_budget(budget).await
    }
}

#[async_trait]
impl<S: SavingsStore> SavingsStore for PlacedStore<S> {
    async fn add_savings(&self, source: &str, rows: Vec<SavingsRow>) -> Result<(), StoreError> {
        self.rows.add_savings(source, rows).await
    }

    async fn savings(&self, tenant: &TenantId, from: &str, to: &str) -> Result<Vec<SavingsRow>, StoreError> {
        self.rows.savings(tenant, from, to).await
    }
}

#[cfg(test)]
mod tests;
