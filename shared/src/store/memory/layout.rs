//! How the in-memory adapter lays out what the domain asks of it: running
//! counters as maps (the domain's [`crate::counters`] say what moves), and
//! the queue's sort key.

use std::collections::{BTreeMap, HashMap};

use crate::activity::{Hour, HourCounts};
use crate::counters::{Counter, Delta};
use crate::ids::{ModelName, RequestKey, TenantId};
use crate::request::QueueGroup;
use crate::store::StatusCounts;
use crate::time::Timestamp;

// ---------------------------------------------------------------- counters

/// The running counters, changed only together with what they count
/// (the domain's [`crate::counters`] rules say by how much).
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub tenants: HashMap<TenantId, StatusCounts>,
    pub queues: HashMap<QueueGroup, i64>,
    /// Each tenant's queued requests per model.
    pub tenant_queued: HashMap<TenantId, BTreeMap<ModelName, i64>>,
    /// Each tenant's activity counters by hour.
    pub activity: HashMap<TenantId, BTreeMap<Hour, HourCounts>>,
}

impl Counters {
    pub fn apply(&mut self, deltas: Vec<Delta>) {
        for (counter, n) in deltas {
            match counter {
                Counter::TenantStatus(t, st) => {
                    *self.tenants.entry(t).or_default().by_status.entry(st).or_default() += n;
                }
                Counter::PendingBytes(t) => self.tenants.entry(t).or_default().pending_bytes += n,
                Counter::Queued(g) => *self.queues.entry(g).or_default() += n,
                Counter::Committed(t) => self.tenants.entry(t).or_default().committed_nanos += n,
                Counter::TenantQueued(t, m) => *self.tenant_queued.entry(t).or_default().entry(m).or_default() += n,
                Counter::Activity(t, h, c) => self.activity.entry(t).or_default().entry(h).or_default().add(&c, n),
            }
        }
    }
}

// ---------------------------------------------------------------- queue order

/// Sort key of the queue: creation time first, so a requeued request keeps
/// its place at the front; the request key breaks ties (dynamo's `queue_order`).
pub(super) fn queue_order(created_at: Timestamp, key: &RequestKey) -> String {
    format!("{:015}#{}", created_at.millis().max(0), key)
}
