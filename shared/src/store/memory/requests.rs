//! [`RequestStore`] over the in-memory maps.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;

use super::rules::{self, CounterDeltas};
use super::{page, MemoryStore, RequestRow, Versioned};
use crate::ids::{JobId, RequestKey, TenantId};
use crate::request::{InsertOutcome, NewRequest, Payload, QueueGroup, Request, RequestResult, RequestStatus};
use crate::store::{Applied, Page, QueueGroupStats, RequestStore, RequestUpdate, StatusCounts, StoreError};
use crate::time::Timestamp;

/// The queued row of a new request.
fn queued_row(r: &NewRequest, now: Timestamp) -> Request {
    Request {
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
    }
}

fn judge(r: &NewRequest, stored: Request) -> InsertOutcome {
    if stored.content_hash == r.content_hash {
        InsertOutcome::Existing(stored)
    } else {
        InsertOutcome::Conflict(stored)
    }
}

impl MemoryStore {
    /// Deletes objects nothing refers to any more; a failure only leaves an
    /// object behind, which is logged (as dynamo does).
    async fn delete_objects(&self, keys: Vec<String>, what: &'static str) {
        for key in keys {
            if let Err(e) = self.objects.delete(&key).await {
                tracing::warn!(key, error = %e, what, "could not delete an object nothing refers to");
            }
        }
    }

    /// Writes the responses over the inline limit to the object store
    /// first, returning each update's result as it is to be stored.
    async fn offload_large_responses(
        &self,
        updates: &[RequestUpdate],
    ) -> Result<Vec<Option<RequestResult>>, StoreError> {
        let mut stored = Vec::with_capacity(updates.len());
        for u in updates {
            let mut result = u.result.clone();
            if let Some(r) = result.as_mut() {
                let object = r
                    .response
                    .as_ref()
                    .and_then(|p| rules::response_object(p, &r.key, &r.job_id, self.inline_result_max));
                if let (Some(key), Some(Payload::Inline(json))) = (object, r.response.as_ref()) {
                    let bytes = json.len() as u64;
                    self.objects
                        .put(&key, Bytes::from(json.clone()), "application/json")
                        .await?;
                    r.response = Some(Payload::S3 { key, bytes });
                }
            }
            stored.push(result);
        }
        Ok(stored)
    }

    /// Applies one update under the lock: its condition, state, result and counters together.
    fn apply_one(
        state: &mut super::State,
        u: &RequestUpdate,
        result: Option<RequestResult>,
        now: Instant,
    ) -> Result<Applied, StoreError> {
        u.from.check_transition(u.to)?;
        let lag = state.index_lag;
        let Some(row) = state.requests.get_mut(&u.key) else {
            return rules::classify_failed(u, None);
        };
        if !rules::condition_holds(u, &row.state.current) {
            return rules::classify_failed(u, Some(&row.state.current));
        }
        let next = rules::updated(&row.state.current, u);
        row.state.set(next, lag, now);
        if let Some(r) = result {
            row.result = Some(r);
        }
        state.counters.apply(CounterDeltas::for_transition(u));
        Ok(Applied::Now)
    }
}

#[async_trait]
impl RequestStore for MemoryStore {
    async fn insert(&self, requests: Vec<NewRequest>, now: Timestamp) -> Result<Vec<InsertOutcome>, StoreError> {
        // Large bodies are written first, as dynamo writes them before its transaction.
        let mut seen = HashSet::new();
        let mut payloads: Vec<Option<Payload>> = Vec::with_capacity(requests.len());
        for r in &requests {
            if !seen.insert(r.key.clone()) {
                payloads.push(None);
                continue;
            }
            let (payload, object) = rules::body_placement(&r.key, &r.content_hash, &r.body_json, self.inline_body_max);
            if let Some(key) = object {
                self.objects
                    .put(&key, Bytes::from(r.body_json.clone()), "application/json")
                    .await?;
            }
            payloads.push(Some(payload));
        }
        let mut outcomes: Vec<InsertOutcome> = Vec::with_capacity(requests.len());
        let mut orphans = Vec::new();
        {
            let mut state = self.lock();
            let lag = state.index_lag;
            let clock = Instant::now();
            for (i, (r, payload)) in requests.iter().zip(payloads).enumerate() {
                let Some(payload) = payload else {
                    // A repeat within the call: judged against what its first occurrence found or made.
                    let first = requests[..i]
                        .iter()
                        .position(|f| f.key == r.key)
                        .expect("first occurrence");
                    let stored = match &outcomes[first] {
                        InsertOutcome::Created(s) | InsertOutcome::Existing(s) | InsertOutcome::Conflict(s) => {
                            s.clone()
                        }
                    };
                    outcomes.push(judge(r, stored));
                    continue;
                };
                if let Some(row) = state.requests.get(&r.key) {
                    let stored = row.state.current.clone();
                    if stored.content_hash != r.content_hash {
                        if let Payload::S3 { key, .. } = &payload {
                            orphans.push(key.clone());
                        }
                    }
                    outcomes.push(judge(r, stored));
                    continue;
                }
                let row = queued_row(r, now);
                state.counters.apply(CounterDeltas::for_insert(&row));
                state.requests.insert(
                    r.key.clone(),
                    RequestRow {
                        state: Versioned::new(row.clone(), lag, clock),
                        body: payload,
                        result: None,
                    },
                );
                outcomes.push(InsertOutcome::Created(row));
            }
        }
        self.delete_objects(orphans, "a conflicting request's body").await;
        Ok(outcomes)
    }

    async fn get(&self, key: &RequestKey) -> Result<Option<Request>, StoreError> {
        Ok(self.lock().requests.get(key).map(|r| r.state.current.clone()))
    }

    async fn get_many(&self, keys: &[RequestKey]) -> Result<HashMap<RequestKey, Request>, StoreError> {
        let state = self.lock();
        Ok(keys
            .iter()
            .filter_map(|k| state.requests.get(k).map(|r| (k.clone(), r.state.current.clone())))
            .collect())
    }

    async fn get_with_result(&self, key: &RequestKey) -> Result<Option<(Request, Option<RequestResult>)>, StoreError> {
        Ok(self
            .lock()
            .requests
            .get(key)
            .map(|r| (r.state.current.clone(), r.result.clone())))
    }

    async fn bodies(&self, keys: &[RequestKey]) -> Result<HashMap<RequestKey, String>, StoreError> {
        let payloads: Vec<(RequestKey, Payload)> = {
            let state = self.lock();
            keys.iter()
                .collect::<HashSet<_>>()
                .into_iter()
                .filter_map(|k| state.requests.get(k).map(|r| (k.clone(), r.body.clone())))
                .collect()
        };
        let mut out = HashMap::with_capacity(payloads.len());
        for (key, payload) in payloads {
            let json = match payload {
                Payload::Inline(j) => j,
                Payload::S3 { key: object, .. } => match self.objects.get(&object).await? {
                    Some(bytes) => String::from_utf8(bytes.to_vec()).map_err(|_| StoreError::Corrupt {
                        entity: "body",
                        id: key.to_string(),
                        reason: "body is not UTF-8".into(),
                    })?,
                    None => {
                        tracing::error!(request = %key, object = %object, "request body object is missing");
                        continue;
                    }
                },
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
        let state = self.lock();
        let cutoff = state.listing_cutoff();
        let items = state
            .requests
            .values()
            .filter_map(|row| row.state.listed(cutoff))
            .filter(|r| r.status == RequestStatus::Queued && r.queue_group() == *group)
            .map(|r| (rules::queue_order(r.created_at, &r.key), r.clone()))
            .collect();
        page(items, cursor, limit, false)
    }

    async fn queue_groups(&self) -> Result<Vec<QueueGroupStats>, StoreError> {
        let state = self.lock();
        let mut out: Vec<QueueGroupStats> = state
            .counters
            .queues
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(g, n)| QueueGroupStats {
                group: g.clone(),
                queued: *n as u64,
            })
            .collect();
        out.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(out)
    }

    async fn by_job(&self, job: &JobId, cursor: Option<String>, limit: u32) -> Result<Page<Request>, StoreError> {
        let state = self.lock();
        let cutoff = state.listing_cutoff();
        let items = state
            .requests
            .values()
            .filter_map(|row| row.state.listed(cutoff))
            .filter(|r| r.job_id.as_ref() == Some(job))
            .map(|r| (r.key.to_string(), r.clone()))
            .collect();
        page(items, cursor, limit, false)
    }

    async fn apply(&self, update: RequestUpdate) -> Result<Applied, StoreError> {
        self.apply_many(vec![update])
            .await?
            .pop()
            .expect("one result per update")
    }

    async fn apply_many(&self, updates: Vec<RequestUpdate>) -> Result<Vec<Result<Applied, StoreError>>, StoreError> {
        let stored = self.offload_large_responses(&updates).await?;
        let results: Vec<Result<Applied, StoreError>> = {
            let mut state = self.lock();
            let now = Instant::now();
            // In input order: a key repeated in the call sees its earlier update.
            updates
                .iter()
                .zip(stored)
                .map(|(u, result)| Self::apply_one(&mut state, u, result, now))
                .collect()
        };
        // Finished now or in an earlier run: nothing reads the body again.
        let finished_bodies = updates
            .iter()
            .zip(&results)
            .filter(|(u, r)| {
                r.is_ok() && u.to.is_terminal() && rules::body_is_offloaded(u.body_bytes, self.inline_body_max)
            })
            .map(|(u, _)| crate::store::keys::body(&u.key, &u.content_hash))
            .collect();
        self.delete_objects(finished_bodies, "a finished request's body").await;
        Ok(results)
    }

    async fn counts(&self, tenant: &TenantId) -> Result<StatusCounts, StoreError> {
        Ok(self.lock().counters.tenants.get(tenant).cloned().unwrap_or_default())
    }
}
