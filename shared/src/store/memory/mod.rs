//! In-memory adapter of the storage ports: [`MemoryStore`] for
//! [`RequestRows`](super::RequestRows), [`JobStore`](super::JobStore) and
//! [`SavingsStore`](super::SavingsStore), [`MemoryObjects`] for
//! [`ObjectStore`](super::ObjectStore). The rules (the queued state, the
//! counters, when a write is refused and how the refusal is judged) are
//! the domain's, as they are for the DynamoDB adapter, so tests of the
//! core run without an emulator, and the store conformance suite
//! (`tests/src/conformance`) holds both to one contract.
//!
//! Everything sits behind one `std::sync::Mutex`, never held across an
//! await: each port call is atomic, as a DynamoDB transaction is. Rows are
//! kept for good (no retention: `expires_at` stays unset), and so are the
//! feed's entries, numbered per tenant from 1 as they are appended.
//!
//! [`MemoryStore::set_index_lag`] makes the listings DynamoDB answers from
//! its eventually consistent global secondary indexes (`queued`, `by_job`,
//! `open_jobs`, `list_jobs` without a tenant) answer from the rows as they
//! were `lag` ago, as those indexes may.

mod jobs;
mod layout;
mod objects;
mod requests;
mod snapshot;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use objects::MemoryObjects;

use super::placed::PlacedStore;
use super::{ObjectStore, Page, SavingsTotals, StoreError};
use crate::budget::TokenBudget;
use crate::feed::FeedEntry;
use crate::ids::{JobId, ModelName, ProviderName, RequestKey, TenantId};
use crate::job::Job;
use crate::placement::InlineLimits;
use crate::request::{Payload, Request, RequestResult};
use crate::time::Timestamp;
use layout::Counters;

/// The in-memory store of request rows, jobs and savings. Wrap it in a
/// [`PlacedStore`](super::placed::PlacedStore) with an object store for
/// the [`RequestStore`](super::RequestStore) the core uses (see [`MemoryStore::placed`]).
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

/// A row as the consistent reads see it, with the earlier versions the
/// lagging listings may still see: before each instant, the row was the
/// version beside it (`None`: no row yet). Kept only while a lag is set.
struct Versioned<T> {
    current: T,
    history: Vec<(Instant, Option<T>)>,
}

impl<T: Clone> Versioned<T> {
    fn new(current: T, lag: Duration, now: Instant) -> Self {
        let history = if lag.is_zero() { Vec::new() } else { vec![(now, None)] };
        Self { current, history }
    }

    /// Replaces the row, remembering the old one while a listing may lag.
    fn set(&mut self, next: T, lag: Duration, now: Instant) {
        self.history.retain(|(t, _)| now.duration_since(*t) < lag);
        if !lag.is_zero() {
            self.history.push((now, Some(self.current.clone())));
        }
        self.current = next;
    }

    /// The row as a listing sees it: as it was at `cutoff` (`None`: now).
    fn listed(&self, cutoff: Option<Instant>) -> Option<&T> {
        match cutoff.and_then(|c| self.history.iter().find(|(t, _)| *t > c)) {
            Some((_, old)) => old.as_ref(),
            None => Some(&self.current),
        }
    }
}

/// One request: its state, its body and its result, as dynamo's three items.
struct RequestRow {
    state: Versioned<Request>,
    body: Payload,
    result: Option<RequestResult>,
}

/// One savings total and the sources (result files) it has counted.
struct SavingsEntry {
    day: String,
    provider: ProviderName,
    model: ModelName,
    totals: SavingsTotals,
    sources: HashSet<String>,
}

#[derive(Default)]
struct State {
    requests: HashMap<RequestKey, RequestRow>,
    counters: Counters,
    /// Each tenant's feed: entry `n` (from 1) at index `n - 1`.
    feed: HashMap<TenantId, Vec<FeedEntry>>,
    jobs: HashMap<JobId, Versioned<Job>>,
    /// Each tenant's jobs, by (creation time, id).
    tenant_jobs: HashMap<TenantId, BTreeSet<(Timestamp, JobId)>>,
    budgets: HashMap<ModelName, TokenBudget>,
    /// Per tenant, by `{day}#{model}`.
    savings: HashMap<TenantId, BTreeMap<String, SavingsEntry>>,
    index_lag: Duration,
}

impl State {
    /// The instant the lagging listings answer for (`None`: no lag).
    fn listing_cutoff(&self) -> Option<Instant> {
        if self.index_lag.is_zero() {
            return None;
        }
        Instant::now().checked_sub(self.index_lag)
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The store as the core uses it: bodies and responses over `limits`
    /// kept in `objects`.
    pub fn placed(self, objects: Arc<dyn ObjectStore>, limits: InlineLimits) -> PlacedStore<Self> {
        PlacedStore::new(self, objects, limits)
    }

    /// Makes `queued`, `by_job`, `open_jobs` and `list_jobs` (without a
    /// tenant) answer from the rows as they were `lag` ago (zero: as they
    /// are), like DynamoDB's eventually consistent indexes. Writes made
    /// before the lag was set are seen as they are.
    pub fn set_index_lag(&self, lag: Duration) {
        self.lock().index_lag = lag;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind, each
        // write whole or not made: the state is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

// ---------------------------------------------------------------- paging

const CURSOR_PREFIX: &str = "mem1:";

fn bad_cursor(c: &str) -> StoreError {
    StoreError::Corrupt {
        entity: "cursor",
        id: c.chars().take(40).collect(),
        reason: "not a cursor this store issued".into(),
    }
}

/// One page of `items` (each with its sort key) after `cursor`, in
/// ascending or descending order of the keys. The cursor is the last sort
/// key returned; `next` is set only when more items follow.
fn page<T>(
    mut items: Vec<(String, T)>,
    cursor: Option<String>,
    limit: u32,
    descending: bool,
) -> Result<Page<T>, StoreError> {
    let after = match cursor {
        None => None,
        Some(c) => Some(c.strip_prefix(CURSOR_PREFIX).ok_or_else(|| bad_cursor(&c))?.to_owned()),
    };
    items.sort_by(|a, b| a.0.cmp(&b.0));
    if descending {
        items.reverse();
    }
    let limit = limit.clamp(1, 1000) as usize;
    let mut rest = items.into_iter().filter(|(k, _)| match &after {
        None => true,
        Some(a) if descending => k < a,
        Some(a) => k > a,
    });
    let mut taken: Vec<(String, T)> = rest.by_ref().take(limit).collect();
    let more = rest.next().is_some();
    let next = match (more, taken.last_mut()) {
        (true, Some((k, _))) => Some(format!("{CURSOR_PREFIX}{k}")),
        _ => None,
    };
    Ok(Page {
        items: taken.into_iter().map(|(_, v)| v).collect(),
        next,
    })
}

/// The sort key of a job in the listings: creation time, then id.
fn job_order(created_at: Timestamp, id: &JobId) -> String {
    format!("{:015}#{}", created_at.millis().max(0), id)
}
