//! The request rows: inserting queued rows, conditional status changes
//! with their results and counters, and the reads. Payloads arrive placed
//! (`store::placed`); the rules come from `transition` and `counters`.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update};

use super::counters::{
    activity_pk, job_part, queue_counter_pk, status_attr, tenant_counter_pk, COMMITTED_NANOS_ATTR, PENDING_BYTES_ATTR,
    TENANT_COUNTER_SK, TENANT_QUEUED_PREFIX,
};
use super::item::{expiry_secs, n, s, Reader};
use super::query::QuerySpec;
use super::request_item::{
    body_to_item, payload_attrs, payload_from, queue_order, request_from_item, request_to_item, result_from_item,
    result_to_item,
};
use super::schema::*;
use super::transact::{Charge, TxnUnit, UnitOutcome};
use super::{DynamoStore, Item, BODY_HORIZON};
use crate::activity::{ActivityCount, ActivityRows, Hour};
use crate::counters;
use crate::feed::{FeedCursor, FeedDraft, FeedPage};
use crate::ids::{JobId, ModelName, RequestKey, TenantId};
use crate::placement::QueuedRow;
use crate::request::{Payload, QueueGroup, Request, RequestResult, RequestStatus};
use crate::store::{Applied, Page, QueueGroupStats, RequestRows, RowInsert, StatusCounts, StoreError};
use crate::transition::RequestUpdate;

impl DynamoStore {
    pub(super) fn state_update_action(&self, u: &RequestUpdate) -> Result<TransactWriteItem, StoreError> {
        u.check()?;
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

    /// The action that stores a result (placed), expiring with its request.
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

    /// The action that stores `row`'s state, unless a row with its key
    /// exists; a body in a chunk is pointed at from the state item itself
    /// (see [`body_in_state`]).
    fn state_put_action(&self, row: &QueuedRow) -> TransactWriteItem {
        let mut item = request_to_item(&row.state);
        if body_in_state(&row.body) {
            payload_attrs(&mut item, "body", &row.body);
        }
        let put = Put::builder()
            .table_name(&self.requests_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            // An existing request comes back with the refusal: no read.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .expect("put has table and item");
        TransactWriteItem::builder().put(put).build()
    }

    fn body_put_action(&self, row: &QueuedRow) -> TransactWriteItem {
        let expires_at = self
            .retention
            .map(|r| expiry_secs(row.state.created_at, r + BODY_HORIZON));
        let put = Put::builder()
            .table_name(&self.requests_table)
            .set_item(Some(body_to_item(&row.state, &row.body, expires_at)))
            .build()
            .expect("put has table and item");
        TransactWriteItem::builder().put(put).build()
    }
}

/// Whether a body is kept in the state item rather than a body item of its
/// own: a pointer into a chunk (about 100 bytes). The state item then stays
/// under 1 KB, so its every transition still costs 1 write unit (2 in a
/// transaction), and the enqueue writes one item less: the body item, 2
/// write units in the transaction. Inline bodies (up to the inline limit)
/// and S3 pointers keep their body item (rows written before this read the
/// same way: a state item without a pointer sends the read to the body
/// item).
fn body_in_state(body: &Payload) -> bool {
    matches!(body, Payload::Chunk { .. })
}

/// A refused write's item read back as a request (`None`: there was no row).
fn refused_row(item: Option<&Item>) -> Result<Option<Request>, StoreError> {
    item.map(request_from_item).transpose()
}

#[async_trait]
impl RequestRows for DynamoStore {
    async fn insert_rows(&self, rows: Vec<QueuedRow>) -> Result<Vec<RowInsert>, StoreError> {
        let units = rows
            .iter()
            .map(|row| TxnUnit {
                actions: if body_in_state(&row.body) {
                    vec![self.state_put_action(row)]
                } else {
                    vec![self.state_put_action(row), self.body_put_action(row)]
                },
                bytes: match &row.body {
                    Payload::Inline(j) => j.len(),
                    Payload::S3 { .. } | Payload::Chunk { .. } => 0,
                } + 1024,
                counters: counters::for_insert(&row.state),
                key: row.state.key.clone(),
                feed: None,
            })
            .collect();
        let mut out: Vec<Option<RowInsert>> = vec![None; rows.len()];
        self.commit_units(units, Charge::Overhead, |i, outcome| {
            out[i] = Some(match outcome {
                UnitOutcome::Committed => RowInsert::Written,
                // The request exists already.
                UnitOutcome::Refused(item) => {
                    RowInsert::Exists(Box::new(refused_row(item.as_ref())?.ok_or_else(|| {
                        StoreError::backend("insert", format!("request {} vanished", rows[i].state.key))
                    })?))
                }
            });
            Ok(())
        })
        .await?;
        Ok(out.into_iter().map(|o| o.expect("every row settled")).collect())
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

    async fn body_payloads(&self, keys: &[RequestKey]) -> Result<HashMap<RequestKey, Payload>, StoreError> {
        let mut out = HashMap::with_capacity(keys.len());
        // A chunk pointer is in the state item; the others (and rows
        // written before pointers moved there) have a body item.
        for item in self.batch_get(keys, SK_STATE).await? {
            let r = Reader::new(&item, "request");
            if let Some(payload) = payload_from(&r, "body")? {
                let key = r.parse(PK, |v| RequestKey::parse(v).map_err(|e| e.message))?;
                out.insert(key, payload);
            }
        }
        let rest: Vec<RequestKey> = keys.iter().filter(|k| !out.contains_key(*k)).cloned().collect();
        if rest.is_empty() {
            return Ok(out);
        }
        for item in self.batch_get(&rest, SK_BODY).await? {
            let r = Reader::new(&item, "body");
            let key = r.parse(PK, |v| RequestKey::parse(v).map_err(|e| e.message))?;
            let payload = payload_from(&r, "body")?.ok_or_else(|| r.corrupt("body item has no body".into()))?;
            out.insert(key, payload);
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

    async fn apply_placed(&self, updates: Vec<RequestUpdate>) -> Result<Vec<Result<Applied, StoreError>>, StoreError> {
        let mut results: Vec<Option<Result<Applied, StoreError>>> = (0..updates.len()).map(|_| None).collect();
        // One transaction may touch an item once: a key repeated within the
        // call goes in a later round, after its earlier update settled.
        let mut remaining: Vec<usize> = (0..updates.len()).collect();
        while !remaining.is_empty() {
            let mut seen = HashSet::new();
            let (round, later): (Vec<usize>, Vec<usize>) = remaining
                .into_iter()
                .partition(|i| seen.insert(updates[*i].key.clone()));
            // Each update's actions; illegal transitions fail alone.
            let mut indexes = Vec::new();
            let mut units = Vec::new();
            for i in round {
                let u = &updates[i];
                match self.state_update_action(u) {
                    Err(e) => results[i] = Some(Err(e)),
                    Ok(a) => {
                        let mut actions = vec![a];
                        let expires_at = self.expiry(u.now).filter(|_| u.to.is_terminal());
                        if let Some(res) = &u.result {
                            actions.push(self.result_put_action(res, expires_at));
                        }
                        // A generous size estimate: the inline result plus keys and attributes.
                        let result_bytes = match u.result.as_ref().and_then(|r| r.response.as_ref()) {
                            Some(Payload::Inline(json)) => json.len(),
                            _ => 0,
                        };
                        indexes.push(i);
                        units.push(TxnUnit {
                            actions,
                            bytes: 2048 + result_bytes,
                            counters: counters::for_update(u),
                            key: u.key.clone(),
                            feed: FeedDraft::of(u),
                        });
                    }
                }
            }
            self.commit_units(units, Charge::None, |unit, outcome| {
                let i = indexes[unit];
                results[i] = Some(match outcome {
                    UnitOutcome::Committed => Ok(Applied::Now),
                    // Judged by the row as it was when the condition failed,
                    // which DynamoDB returns with the refusal (`ALL_OLD`).
                    UnitOutcome::Refused(item) => match refused_row(item.as_ref()) {
                        Ok(cur) => StoreError::from_refusal(&updates[i], updates[i].judge_refusal(cur.as_ref())),
                        Err(e) => Err(e),
                    },
                });
                Ok(())
            })
            .await?;
            remaining = later;
        }
        Ok(results.into_iter().map(|r| r.expect("every update settled")).collect())
    }

    async fn activity(&self, tenant: &TenantId, from: Hour, to: Hour) -> Result<ActivityRows, StoreError> {
        let hours = futures::future::try_join_all((0..COUNTER_SHARDS).map(|shard| {
            let values = HashMap::from([
                (":pk".to_owned(), s(activity_pk(tenant, shard))),
                (":from".to_owned(), s(from.to_string())),
                (":to".to_owned(), s(to.to_string())),
            ]);
            self.query_all(QuerySpec::new(
                &self.jobs_table,
                None,
                "pk = :pk AND sk BETWEEN :from AND :to",
                values,
            ))
        }));
        let counters = futures::future::try_join_all((0..COUNTER_SHARDS).map(|shard| async move {
            self.get_item(&self.jobs_table, &tenant_counter_pk(tenant, shard), TENANT_COUNTER_SK)
                .await
        }));
        let (hours, counters) = futures::future::try_join(hours, counters).await?;
        let mut out = ActivityRows::default();
        for item in hours.iter().flatten() {
            let r = Reader::new(item, "activity");
            let hour = r.parse(SK, |v| Hour::parse(v).map_err(|e| e.to_string()))?;
            let counts = out.hours.entry(hour).or_default();
            for name in item.keys() {
                if let Some(c) = ActivityCount::from_name(name) {
                    counts.add(&c, r.req_n::<i64>(name)?);
                }
            }
        }
        for item in counters.iter().flatten() {
            let r = Reader::new(item, "tenant counter");
            for name in item.keys() {
                if let Some(model) = name.strip_prefix(TENANT_QUEUED_PREFIX) {
                    let model = ModelName::parse(model).map_err(|e| r.corrupt(e.message))?;
                    *out.queued_now.entry(model).or_default() += r.req_n::<i64>(name)?;
                }
            }
        }
        Ok(out)
    }

    async fn feed(&self, tenant: &TenantId, after: Option<&FeedCursor>, limit: u32) -> Result<FeedPage, StoreError> {
        self.read_feed(tenant, after, limit).await
    }

    async fn settle_overhead(&self, tenant: &TenantId, hour: Hour) -> Result<(), StoreError> {
        self.settle_overhead_now(tenant, hour).await
    }

    async fn feed_end(&self, tenant: &TenantId) -> Result<Option<FeedCursor>, StoreError> {
        // The sequence item is read consistently: every entry up to it has committed.
        let seq = self.feed_seq(tenant).await?;
        Ok((seq > 0).then(|| FeedCursor::new(tenant, seq)))
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
            counts.committed_nanos += r.opt_n::<i64>(COMMITTED_NANOS_ATTR)?.unwrap_or(0);
        }
        Ok(counts)
    }
}
