//! Counter items: the domain's counters ([`crate::counters`]) mapped onto
//! sharded items of the jobs table, and the partition a request's
//! job-index entry goes to.
//!
//! * `counter#tenant#{tenant}#{shard}` / `counts`: one attribute per status,
//!   `pending_bytes` and `committed_nanos`;
//! * `counter#queue#{shard}` / `{queue group}`: `queued`;
//! * the tenant's queued requests per model as `queued:{model}` attributes
//!   of its counter item (no item of their own);
//! * `activity#{tenant}#{shard}` / `{YYYY-MM-DDTHH}`: the hour's activity
//!   counters, one attribute each (`enqueued`, …, `failed:{code}`,
//!   `queued:{model}`: [`crate::activity::ActivityCount::name`]).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

use super::item::{n, s};
use super::schema::*;
use crate::counters::{Counter, Delta};
use crate::ids::{JobId, ModelName, RequestKey, TenantId};
use crate::request::RequestStatus;

pub(super) fn status_attr(st: RequestStatus) -> &'static str {
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

/// The counter shard a transaction touching `key` first writes to.
pub(super) fn shard_of(key: &RequestKey) -> u8 {
    nibble(key) % COUNTER_SHARDS
}

/// The job-index partition of a request of `job`.
pub(super) fn job_part(job: &JobId, key: &RequestKey) -> String {
    format!("{job}#{:02}", nibble(key) % JOB_PARTS)
}

pub(super) const PENDING_BYTES_ATTR: &str = "pending_bytes";
/// A tenant's committed spend, in nanodollars ([`Counter::Committed`]).
pub(super) const COMMITTED_NANOS_ATTR: &str = "committed_nanos";

pub(super) fn tenant_counter_pk(t: &TenantId, shard: u8) -> String {
    format!("counter#tenant#{t}#{shard}")
}

/// The sort key of a tenant's counter item (one per shard partition).
pub(super) const TENANT_COUNTER_SK: &str = "counts";

/// The partition of a tenant's activity items in `shard` (sort key: the hour).
pub(super) fn activity_pk(t: &TenantId, shard: u8) -> String {
    format!("activity#{t}#{shard}")
}

/// The attribute of a tenant's counter item holding its queued requests of `model`.
pub(super) fn tenant_queued_attr(model: &ModelName) -> String {
    format!("{TENANT_QUEUED_PREFIX}{model}")
}

pub(super) const TENANT_QUEUED_PREFIX: &str = "queued:";

pub(super) fn queue_counter_pk(shard: u8) -> String {
    format!("counter#queue#{shard}")
}

/// The item (pk, sk) and attribute that hold `c` in `shard`.
fn locate(c: &Counter, shard: u8) -> ((String, String), String) {
    match c {
        Counter::TenantStatus(t, st) => (
            (tenant_counter_pk(t, shard), TENANT_COUNTER_SK.into()),
            status_attr(*st).into(),
        ),
        Counter::PendingBytes(t) => (
            (tenant_counter_pk(t, shard), TENANT_COUNTER_SK.into()),
            PENDING_BYTES_ATTR.into(),
        ),
        Counter::Queued(g) => ((queue_counter_pk(shard), g.key()), "queued".into()),
        Counter::Committed(t) => (
            (tenant_counter_pk(t, shard), TENANT_COUNTER_SK.into()),
            COMMITTED_NANOS_ATTR.into(),
        ),
        Counter::TenantQueued(t, m) => (
            (tenant_counter_pk(t, shard), TENANT_COUNTER_SK.into()),
            tenant_queued_attr(m),
        ),
        Counter::Activity(t, h, a) => ((activity_pk(t, shard), h.to_string()), a.name()),
    }
}

/// Counter deltas of one transaction, merged per counter item.
#[derive(Default)]
pub(super) struct CounterDeltas {
    /// (pk, sk) -> attribute -> delta
    items: HashMap<(String, String), HashMap<String, i64>>,
}

impl CounterDeltas {
    /// The items and attributes `deltas` change in `shard`.
    pub(super) fn of(deltas: &[Delta], shard: u8) -> Self {
        let mut out = Self::default();
        for (c, d) in deltas {
            let (item, attr) = locate(c, shard);
            *out.items.entry(item).or_default().entry(attr).or_default() += d;
        }
        out
    }

    /// Distinct counter items (each is one action in the transaction).
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    pub(super) fn merge(&mut self, other: CounterDeltas) {
        for (key, attrs) in other.items {
            let mine = self.items.entry(key).or_default();
            for (attr, d) in attrs {
                *mine.entry(attr).or_default() += d;
            }
        }
    }

    /// How many counter items `more` would add that are not here yet.
    pub(super) fn new_items_in(&self, more: &CounterDeltas) -> usize {
        more.items.keys().filter(|k| !self.items.contains_key(*k)).count()
    }

    pub(super) fn into_actions(self, table: &str) -> Vec<TransactWriteItem> {
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
                names.insert(format!("#a{i}"), attr.clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::CustomId;
    use std::collections::HashMap;

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
