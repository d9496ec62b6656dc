//! [`RequestRows`] over the in-memory maps: rows arrive with their bodies
//! and responses already placed ([`crate::store::placed::PlacedStore`] does
//! the object-store side), and the rules (the queued state, the counters,
//! how a refused write is judged) are the domain's.

use std::collections::HashMap;
use std::time::Instant;

use async_trait::async_trait;

use super::layout::queue_order;
use super::{page, MemoryStore, RequestRow, State, Versioned};
use crate::activity::{ActivityRows, Hour};
use crate::counters;
use crate::feed::{self, FeedCursor, FeedDraft, FeedPage};
use crate::ids::{JobId, RequestKey, TenantId};
use crate::placement::QueuedRow;
use crate::request::{Payload, QueueGroup, Request, RequestResult, RequestStatus};
use crate::store::{Applied, Page, QueueGroupStats, RequestRows, RowInsert, StatusCounts, StoreError};
use crate::transition::RequestUpdate;

/// Applies one update under the lock: its condition, state, result and counters together.
fn apply_one(state: &mut State, u: &RequestUpdate, now: Instant) -> Result<Applied, StoreError> {
    u.check()?;
    let lag = state.index_lag;
    let current = state.requests.get(&u.key).map(|row| &row.state.current);
    match current {
        Some(cur) if u.holds_for(cur) => {}
        other => return StoreError::from_refusal(u, u.judge_refusal(other)),
    }
    let row = state.requests.get_mut(&u.key).expect("row checked above");
    let next = u.applied_to(&row.state.current);
    row.state.set(next, lag, now);
    if let Some(r) = &u.result {
        row.result = Some(r.clone());
    }
    state.counters.apply(counters::for_update(u));
    if let Some(draft) = FeedDraft::of(u) {
        let feed = state.feed.entry(u.tenant.clone()).or_default();
        let seq = feed.len() as u64 + 1;
        feed.push(draft.numbered(seq));
    }
    Ok(Applied::Now)
}

#[async_trait]
impl RequestRows for MemoryStore {
    async fn insert_rows(&self, rows: Vec<QueuedRow>) -> Result<Vec<RowInsert>, StoreError> {
        let mut state = self.lock();
        let lag = state.index_lag;
        let clock = Instant::now();
        let mut out = Vec::with_capacity(rows.len());
        for QueuedRow { state: row, body } in rows {
            if let Some(existing) = state.requests.get(&row.key) {
                out.push(RowInsert::Exists(Box::new(existing.state.current.clone())));
                continue;
            }
            state.counters.apply(counters::for_insert(&row));
            state.requests.insert(
                row.key.clone(),
                RequestRow {
                    state: Versioned::new(row, lag, clock),
                    body,
                    result: None,
                },
            );
            out.push(RowInsert::Written);
        }
        Ok(out)
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

    async fn body_payloads(&self, keys: &[RequestKey]) -> Result<HashMap<RequestKey, Payload>, StoreError> {
        let state = self.lock();
        Ok(keys
            .iter()
            .filter_map(|k| state.requests.get(k).map(|r| (k.clone(), r.body.clone())))
            .collect())
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
            .map(|r| (queue_order(r.created_at, &r.key), r.clone()))
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

    async fn apply_placed(&self, updates: Vec<RequestUpdate>) -> Result<Vec<Result<Applied, StoreError>>, StoreError> {
        let mut state = self.lock();
        let now = Instant::now();
        // In input order: a key repeated in the call sees its earlier update.
        Ok(updates.iter().map(|u| apply_one(&mut state, u, now)).collect())
    }

    async fn counts(&self, tenant: &TenantId) -> Result<StatusCounts, StoreError> {
        Ok(self.lock().counters.tenants.get(tenant).cloned().unwrap_or_default())
    }

    async fn activity(&self, tenant: &TenantId, from: Hour, to: Hour) -> Result<ActivityRows, StoreError> {
        let state = self.lock();
        let c = &state.counters;
        Ok(ActivityRows {
            hours: c
                .activity
                .get(tenant)
                .map(|hours| hours.range(from..=to).map(|(h, n)| (*h, n.clone())).collect())
                .unwrap_or_default(),
            queued_now: c.tenant_queued.get(tenant).cloned().unwrap_or_default(),
        })
    }

    async fn feed(&self, tenant: &TenantId, after: Option<&FeedCursor>, limit: u32) -> Result<FeedPage, StoreError> {
        let from = match after {
            None => 0,
            Some(c) => c.seq_for(tenant).map_err(|_| StoreError::BadCursor(c.to_string()))?,
        };
        let state = self.lock();
        let entries = state
            .feed
            .get(tenant)
            .map(|all| {
                let from = usize::try_from(from).unwrap_or(usize::MAX).min(all.len());
                all[from..].iter().take(feed::page_size(limit)).cloned().collect()
            })
            .unwrap_or_default();
        Ok(feed::page_of(entries, after))
    }

    async fn feed_end(&self, tenant: &TenantId) -> Result<Option<FeedCursor>, StoreError> {
        // Entries are numbered from 1 per tenant, so the newest is the count.
        let n = self.lock().feed.get(tenant).map_or(0, |all| all.len() as u64);
        Ok((n > 0).then(|| FeedCursor::new(tenant, n)))
    }
}
