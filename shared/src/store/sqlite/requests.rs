//! [`RequestRows`] on SQLite: rows arrive with their bodies and responses
//! already placed, and the rules (the queued state, the counters, how a
//! refused write is judged) are the domain's, applied inside one
//! transaction per call.

use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::{params, Transaction};

use super::schema::{
    tenant_queued_counter, BODY_INLINE, BODY_PAYLOAD_JSON, COMMITTED_NANOS, PENDING_BYTES, TENANT_QUEUED_PREFIX,
};
use super::{after, db, from_json, one, order_key, page_limit, page_of, to_json, SqliteStore};
use crate::activity::{ActivityCount, ActivityRows, Hour};
use crate::counters::{self, Counter, Delta};
use crate::feed::{self, FeedCursor, FeedDraft, FeedEntry, FeedEvent, FeedPage};
use crate::ids::{CustomId, JobId, ModelName, ProviderName, RequestKey, TenantId};
use crate::placement::QueuedRow;
use crate::request::{Payload, QueueGroup, Request, RequestResult, RequestStatus};
use crate::store::{Applied, Page, QueueGroupStats, RequestRows, RowInsert, StatusCounts, StoreError};
use crate::time::Timestamp;
use crate::transition::RequestUpdate;

/// Counter deltas summed over one transaction, written once each at its end.
#[derive(Default)]
struct Deltas(HashMap<Counter, i64>);

impl Deltas {
    fn add(&mut self, deltas: Vec<Delta>) {
        for (c, n) in deltas {
            *self.0.entry(c).or_default() += n;
        }
    }

    fn write(self, tx: &Transaction<'_>, op: &'static str) -> Result<(), StoreError> {
        let mut tenant = tx
            .prepare_cached(
                "INSERT INTO tenant_counts (tenant, counter, n) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (tenant, counter) DO UPDATE SET n = n + excluded.n",
            )
            .map_err(db(op))?;
        let mut queue = tx
            .prepare_cached(
                "INSERT INTO queue_counts (queue, n) VALUES (?1, ?2) \
                 ON CONFLICT (queue) DO UPDATE SET n = n + excluded.n",
            )
            .map_err(db(op))?;
        let mut activity = tx
            .prepare_cached(
                "INSERT INTO activity (tenant, hour, counter, n) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (tenant, hour, counter) DO UPDATE SET n = n + excluded.n",
            )
            .map_err(db(op))?;
        for (c, n) in self.0 {
            if n == 0 {
                continue;
            }
            match c {
                Counter::TenantStatus(t, st) => tenant.execute(params![t.as_str(), st.as_str(), n]),
                Counter::PendingBytes(t) => tenant.execute(params![t.as_str(), PENDING_BYTES, n]),
                Counter::Queued(g) => queue.execute(params![g.key(), n]),
                Counter::Committed(t) => tenant.execute(params![t.as_str(), COMMITTED_NANOS, n]),
                Counter::TenantQueued(t, m) => tenant.execute(params![t.as_str(), tenant_queued_counter(&m), n]),
                Counter::Activity(t, h, a) => activity.execute(params![t.as_str(), h.to_string(), a.name(), n]),
            }
            .map_err(db(op))?;
        }
        Ok(())
    }
}

/// The queue columns of a request: its group and place while queued.
fn queue_columns(r: &Request) -> (Option<String>, Option<String>) {
    if r.status == RequestStatus::Queued {
        (
            Some(r.queue_group().key()),
            Some(order_key(r.created_at, r.key.as_str())),
        )
    } else {
        (None, None)
    }
}

/// The `requests.id` of the request whose key is `?1` (NULL when none):
/// a key is in `recent_keys` or in `request_keys` (schema version 5).
pub(super) const ROW_OF_KEY: &str = "coalesce((SELECT request_row FROM recent_keys WHERE key = ?1), \
     (SELECT request_row FROM request_keys WHERE key = ?1))";

/// The fewest keys `recent_keys` holds before they move to `request_keys`.
const RECENT_KEYS_MIN: i64 = 1_024;

/// How many keys `recent_keys` may hold over a table of `rows` requests
/// before they move: about `sqrt(1000 * rows)` (10,000 at 100,000 rows),
/// where a bulk insert's commits rewrite about as many bytes of the small
/// table as the moves do of the large one.
pub(super) fn recent_keys_limit(rows: i64) -> i64 {
    // `f64` is exact far beyond any table's row count.
    (((rows.max(0) as f64) * 1000.0).sqrt() as i64).max(RECENT_KEYS_MIN)
}

/// Moves every key of `recent_keys` into `request_keys`, in key order.
/// Inside the caller's transaction: a key is in one table or the other at
/// every commit.
pub(super) fn merge_recent_keys(tx: &Transaction<'_>, op: &'static str) -> Result<(), StoreError> {
    tx.execute_batch(
        "INSERT INTO request_keys (key, request_row) SELECT key, request_row FROM recent_keys ORDER BY key; \
         DELETE FROM recent_keys;",
    )
    .map_err(db(op))
}

/// Moves the recent keys when they have grown past [`recent_keys_limit`]
/// (`added`: the keys this transaction added to them).
fn merge_recent_keys_if_due(
    tx: &Transaction<'_>,
    recent: &std::sync::atomic::AtomicI64,
    added: i64,
    op: &'static str,
) -> Result<(), StoreError> {
    use std::sync::atomic::Ordering;
    if added == 0 {
        return Ok(());
    }
    let held = recent.fetch_add(added, Ordering::Relaxed) + added;
    if held < RECENT_KEYS_MIN {
        return Ok(());
    }
    let rows: i64 = tx
        .query_row("SELECT coalesce(max(id), 0) FROM requests", [], |r| r.get(0))
        .map_err(db(op))?;
    if held >= recent_keys_limit(rows) {
        merge_recent_keys(tx, op)?;
        // A rollback after this leaves the count low: the keys move later,
        // which costs bytes, never a lookup.
        recent.store(0, Ordering::Relaxed);
    }
    Ok(())
}

fn read_request(tx: &Transaction<'_>, key: &RequestKey, op: &'static str) -> Result<Option<Request>, StoreError> {
    let mut stmt = tx
        .prepare_cached(&format!("SELECT row FROM requests WHERE id = {ROW_OF_KEY}"))
        .map_err(db(op))?;
    match one(stmt.query_row([key.as_str()], |r| r.get::<_, String>(0)), op)? {
        Some(json) => from_json("request", key.as_str(), &json).map(Some),
        None => Ok(None),
    }
}

/// Writes a request's state row (insert or replace).
fn write_request(tx: &Transaction<'_>, r: &Request, op: &'static str) -> Result<(), StoreError> {
    let (queue, queue_order) = queue_columns(r);
    let mut stmt = tx
        .prepare_cached(&format!(
            "UPDATE requests SET status = ?2, queue = ?3, queue_order = ?4, job_id = ?5, \
             expires_at = ?6, row = ?7 WHERE id = {ROW_OF_KEY}"
        ))
        .map_err(db(op))?;
    stmt.execute(params![
        r.key.as_str(),
        r.status.as_str(),
        queue,
        queue_order,
        r.job_id.as_ref().map(|j| j.as_str()),
        r.expires_at.map(Timestamp::millis),
        to_json("request", r)?,
    ])
    .map_err(db(op))?;
    Ok(())
}

impl SqliteStore {
    /// Applies one update inside `tx`: its condition, state, result and
    /// counters together.
    fn apply_one(&self, tx: &Transaction<'_>, u: &RequestUpdate, deltas: &mut Deltas) -> Result<Applied, StoreError> {
        let op = "apply";
        u.check()?;
        let current = read_request(tx, &u.key, op)?;
        let cur = match current {
            Some(cur) if u.holds_for(&cur) => cur,
            other => return StoreError::from_refusal(u, u.judge_refusal(other.as_ref())),
        };
        let mut next = u.applied_to(&cur);
        if u.to.is_terminal() {
            if let Some(exp) = self.expiry(u.now) {
                next.expires_at = Some(exp);
            }
        }
        write_request(tx, &next, op)?;
        if let Some(res) = &u.result {
            let mut stmt = tx
                .prepare_cached("INSERT OR REPLACE INTO results (key, job_id, row) VALUES (?1, ?2, ?3)")
                .map_err(db(op))?;
            stmt.execute(params![res.key.as_str(), res.job_id.as_str(), to_json("result", res)?])
                .map_err(db(op))?;
        }
        deltas.add(counters::for_update(u));
        if let Some(d) = FeedDraft::of(u) {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO feed (tenant, custom_id, event, finished_at, job_id, model, provider, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(db(op))?;
            stmt.execute(params![
                d.tenant.as_str(),
                d.custom_id.as_str(),
                d.event.as_str(),
                d.finished_at.millis(),
                d.job.as_ref().map(|j| j.as_str()),
                d.model.as_str(),
                d.provider.as_str(),
                next.expires_at.map(Timestamp::millis),
            ])
            .map_err(db(op))?;
        }
        Ok(Applied::Now)
    }
}

#[async_trait]
impl RequestRows for SqliteStore {
    async fn insert_rows(&self, rows: Vec<QueuedRow>) -> Result<Vec<RowInsert>, StoreError> {
        let recent = self.recent_keys.clone();
        self.tx("insert", true, move |tx| {
            let op = "insert";
            let mut deltas = Deltas::default();
            let mut out = Vec::with_capacity(rows.len());
            let mut found = tx
                .prepare_cached(&format!("SELECT row FROM requests WHERE id = {ROW_OF_KEY}"))
                .map_err(db(op))?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO requests (key, tenant, status, queue, queue_order, job_id, expires_at, row) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(db(op))?;
            let mut key_row = tx
                .prepare_cached("INSERT INTO recent_keys (key, request_row) VALUES (?1, ?2)")
                .map_err(db(op))?;
            let mut added = 0;
            let mut body = tx
                .prepare_cached("INSERT OR REPLACE INTO bodies (request_row, kind, payload) VALUES (?1, ?2, ?3)")
                .map_err(db(op))?;
            for QueuedRow {
                state: row,
                body: payload,
            } in rows
            {
                if let Some(json) = one(found.query_row([row.key.as_str()], |r| r.get::<_, String>(0)), op)? {
                    let existing = from_json("request", row.key.as_str(), &json)?;
                    out.push(RowInsert::Exists(Box::new(existing)));
                    continue;
                }
                let (queue, queue_order) = queue_columns(&row);
                insert
                    .execute(params![
                        row.key.as_str(),
                        row.tenant.as_str(),
                        row.status.as_str(),
                        queue,
                        queue_order,
                        row.job_id.as_ref().map(|j| j.as_str()),
                        row.expires_at.map(Timestamp::millis),
                        to_json("request", &row)?,
                    ])
                    .map_err(db(op))?;
                let request_row = tx.last_insert_rowid();
                key_row
                    .execute(params![row.key.as_str(), request_row])
                    .map_err(db(op))?;
                added += 1;
                match &payload {
                    Payload::Inline(json) => body.execute(params![request_row, BODY_INLINE, json]),
                    other => body.execute(params![request_row, BODY_PAYLOAD_JSON, to_json("body", other)?]),
                }
                .map_err(db(op))?;
                deltas.add(counters::for_insert(&row));
                out.push(RowInsert::Written);
            }
            deltas.write(tx, op)?;
            merge_recent_keys_if_due(tx, &recent, added, op)?;
            Ok(out)
        })
        .await
    }

    async fn get(&self, key: &RequestKey) -> Result<Option<Request>, StoreError> {
        let key = key.clone();
        self.tx("get", false, move |tx| read_request(tx, &key, "get")).await
    }

    async fn get_many(&self, keys: &[RequestKey]) -> Result<HashMap<RequestKey, Request>, StoreError> {
        let keys = keys.to_vec();
        self.tx("get_many", false, move |tx| {
            let mut out = HashMap::with_capacity(keys.len());
            for k in keys {
                if let Some(r) = read_request(tx, &k, "get_many")? {
                    out.insert(k, r);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn get_with_result(&self, key: &RequestKey) -> Result<Option<(Request, Option<RequestResult>)>, StoreError> {
        let key = key.clone();
        self.tx("get_with_result", false, move |tx| {
            let op = "get_with_result";
            let Some(r) = read_request(tx, &key, op)? else {
                return Ok(None);
            };
            let mut stmt = tx
                .prepare_cached("SELECT row FROM results WHERE key = ?1")
                .map_err(db(op))?;
            let result = match one(stmt.query_row([key.as_str()], |r| r.get::<_, String>(0)), op)? {
                Some(json) => Some(from_json("result", key.as_str(), &json)?),
                None => None,
            };
            Ok(Some((r, result)))
        })
        .await
    }

    async fn body_payloads(&self, keys: &[RequestKey]) -> Result<HashMap<RequestKey, Payload>, StoreError> {
        let keys = keys.to_vec();
        self.tx("bodies", false, move |tx| {
            let op = "bodies";
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT kind, payload FROM bodies WHERE request_row = {ROW_OF_KEY}"
                ))
                .map_err(db(op))?;
            let mut out = HashMap::with_capacity(keys.len());
            for k in keys {
                let row = stmt.query_row([k.as_str()], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)));
                let payload = match one(row, op)? {
                    None => continue,
                    Some((BODY_INLINE, json)) => Payload::Inline(json),
                    Some((_, json)) => from_json("body", k.as_str(), &json)?,
                };
                out.insert(k, payload);
            }
            Ok(out)
        })
        .await
    }

    async fn queued(
        &self,
        group: &QueueGroup,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Request>, StoreError> {
        let after = after(cursor)?.unwrap_or_default();
        let queue = group.key();
        let limit = page_limit(limit);
        self.tx("queued", false, move |tx| {
            let op = "queued";
            let mut stmt = tx
                .prepare_cached(
                    "SELECT queue_order, key, row FROM requests WHERE queue = ?1 AND queue_order > ?2 \
                     ORDER BY queue_order LIMIT ?3",
                )
                .map_err(db(op))?;
            let rows = read_listed(&mut stmt, params![queue, after, limit as i64 + 1], op)?;
            Ok(page_of(rows, limit))
        })
        .await
    }

    async fn queue_groups(&self) -> Result<Vec<QueueGroupStats>, StoreError> {
        self.tx("queue_groups", false, |tx| {
            let op = "queue_groups";
            let mut stmt = tx
                .prepare_cached("SELECT queue, n FROM queue_counts WHERE n > 0")
                .map_err(db(op))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(db(op))?;
            let mut out = Vec::new();
            for row in rows {
                let (key, n) = row.map_err(db(op))?;
                let group = QueueGroup::from_key(&key).ok_or_else(|| StoreError::Corrupt {
                    entity: "queue counter",
                    id: key.clone(),
                    reason: "not a queue group key".into(),
                })?;
                out.push(QueueGroupStats {
                    group,
                    queued: n as u64,
                });
            }
            out.sort_by(|a, b| a.group.cmp(&b.group));
            Ok(out)
        })
        .await
    }

    async fn by_job(&self, job: &JobId, cursor: Option<String>, limit: u32) -> Result<Page<Request>, StoreError> {
        let after = after(cursor)?.unwrap_or_default();
        let job = job.clone();
        let limit = page_limit(limit);
        self.tx("by_job", false, move |tx| {
            let op = "by_job";
            let mut stmt = tx
                .prepare_cached(
                    "SELECT key, key, row FROM requests WHERE job_id = ?1 AND key > ?2 ORDER BY key LIMIT ?3",
                )
                .map_err(db(op))?;
            let rows = read_listed(&mut stmt, params![job.as_str(), after, limit as i64 + 1], op)?;
            Ok(page_of(rows, limit))
        })
        .await
    }

    async fn apply_placed(&self, updates: Vec<RequestUpdate>) -> Result<Vec<Result<Applied, StoreError>>, StoreError> {
        let this = self.clone();
        self.tx("apply", true, move |tx| {
            let mut deltas = Deltas::default();
            // In input order: a key repeated in the call sees its earlier update.
            let out: Vec<Result<Applied, StoreError>> = updates
                .iter()
                .map(|u| match this.apply_one(tx, u, &mut deltas) {
                    // A database failure fails the whole call (nothing is kept);
                    // a refusal is this update's own answer.
                    Err(e @ StoreError::Backend { .. }) => Err(e),
                    other => other,
                })
                .collect();
            if let Some(Err(StoreError::Backend { op, message })) =
                out.iter().find(|r| matches!(r, Err(StoreError::Backend { .. })))
            {
                return Err(StoreError::Backend {
                    op,
                    message: message.clone(),
                });
            }
            deltas.write(tx, "apply")?;
            Ok(out)
        })
        .await
    }

    async fn counts(&self, tenant: &TenantId) -> Result<StatusCounts, StoreError> {
        let tenant = tenant.clone();
        self.tx("counts", false, move |tx| {
            let op = "counts";
            let mut stmt = tx
                .prepare_cached("SELECT counter, n FROM tenant_counts WHERE tenant = ?1")
                .map_err(db(op))?;
            let rows = stmt
                .query_map([tenant.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(db(op))?;
            let mut out = StatusCounts::default();
            for row in rows {
                let (counter, n) = row.map_err(db(op))?;
                if counter == PENDING_BYTES {
                    out.pending_bytes = n;
                    continue;
                }
                if counter == COMMITTED_NANOS {
                    out.committed_nanos = n;
                    continue;
                }
                if counter.starts_with(TENANT_QUEUED_PREFIX) {
                    continue;
                }
                let status = counter.parse::<RequestStatus>().map_err(|e| StoreError::Corrupt {
                    entity: "tenant counter",
                    id: format!("{tenant}/{counter}"),
                    reason: e.to_string(),
                })?;
                out.by_status.insert(status, n);
            }
            Ok(out)
        })
        .await
    }

    async fn activity(&self, tenant: &TenantId, from: Hour, to: Hour) -> Result<ActivityRows, StoreError> {
        let tenant = tenant.clone();
        self.tx("activity", false, move |tx| read_activity(tx, &tenant, from, to))
            .await
    }

    async fn feed(&self, tenant: &TenantId, after: Option<&FeedCursor>, limit: u32) -> Result<FeedPage, StoreError> {
        // Writes are serialised and commit in `seq` order, and a read sees
        // one snapshot: no entry can appear below a number read.
        let from = match after {
            None => 0,
            Some(c) => c.seq_for(tenant).map_err(|_| StoreError::BadCursor(c.to_string()))?,
        };
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let (tenant, after) = (tenant.clone(), after.cloned());
        self.tx("feed", false, move |tx| {
            let entries = read_feed(tx, &tenant, from, feed::page_size(limit))?;
            Ok(feed::page_of(entries, after.as_ref()))
        })
        .await
    }

    async fn feed_end(&self, tenant: &TenantId) -> Result<Option<FeedCursor>, StoreError> {
        let owned = tenant.clone();
        let newest: Option<i64> = self
            .tx("feed end", false, move |tx| {
                tx.query_row("SELECT max(seq) FROM feed WHERE tenant = ?1", [owned.as_str()], |r| {
                    r.get(0)
                })
                .map_err(db("feed end"))
            })
            .await?;
        Ok(newest.map(|seq| FeedCursor::new(tenant, seq as u64)))
    }
}

/// Up to `limit` of `tenant`'s feed entries numbered above `from`.
fn read_feed(tx: &Transaction<'_>, tenant: &TenantId, from: i64, limit: usize) -> Result<Vec<FeedEntry>, StoreError> {
    let op = "feed";
    let mut stmt = tx
        .prepare_cached(
            "SELECT seq, custom_id, event, finished_at, job_id, model, provider FROM feed \
             WHERE tenant = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .map_err(db(op))?;
    let rows = stmt
        .query_map(params![tenant.as_str(), from, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
            ))
        })
        .map_err(db(op))?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, custom_id, event, finished_at, job, model, provider) = row.map_err(db(op))?;
        let corrupt = |reason: String| StoreError::Corrupt {
            entity: "feed entry",
            id: format!("{tenant}/{seq}"),
            reason,
        };
        let draft = FeedDraft {
            tenant: tenant.clone(),
            custom_id: CustomId::parse(custom_id).map_err(|e| corrupt(e.message))?,
            event: FeedEvent::parse(&event).ok_or_else(|| corrupt(format!("unknown event {event:?}")))?,
            finished_at: Timestamp::from_millis(finished_at),
            job: job.map(JobId::parse).transpose().map_err(|e| corrupt(e.message))?,
            model: ModelName::parse(model).map_err(|e| corrupt(e.message))?,
            provider: ProviderName::parse(provider).map_err(|e| corrupt(e.message))?,
        };
        out.push(draft.numbered(seq as u64));
    }
    Ok(out)
}

/// A tenant's activity counters of `from..=to` and its queued requests per model.
fn read_activity(tx: &Transaction<'_>, tenant: &TenantId, from: Hour, to: Hour) -> Result<ActivityRows, StoreError> {
    let op = "activity";
    let corrupt = |id: String, reason: String| StoreError::Corrupt {
        entity: "activity counter",
        id,
        reason,
    };
    let mut out = ActivityRows::default();
    let mut stmt = tx
        .prepare_cached("SELECT hour, counter, n FROM activity WHERE tenant = ?1 AND hour BETWEEN ?2 AND ?3")
        .map_err(db(op))?;
    let rows = stmt
        .query_map(params![tenant.as_str(), from.to_string(), to.to_string()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
        })
        .map_err(db(op))?;
    for row in rows {
        let (hour, counter, n) = row.map_err(db(op))?;
        let h = Hour::parse(&hour).map_err(|e| corrupt(format!("{tenant}/{hour}"), e.to_string()))?;
        let c = ActivityCount::from_name(&counter)
            .ok_or_else(|| corrupt(format!("{tenant}/{hour}/{counter}"), "unknown counter".into()))?;
        out.hours.entry(h).or_default().add(&c, n);
    }
    let mut stmt = tx
        .prepare_cached("SELECT counter, n FROM tenant_counts WHERE tenant = ?1 AND counter LIKE 'queued:%'")
        .map_err(db(op))?;
    let rows = stmt
        .query_map([tenant.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .map_err(db(op))?;
    for row in rows {
        let (counter, n) = row.map_err(db(op))?;
        let model = counter
            .strip_prefix(TENANT_QUEUED_PREFIX)
            .and_then(|m| crate::ids::ModelName::parse(m).ok())
            .ok_or_else(|| corrupt(format!("{tenant}/{counter}"), "not a model".into()))?;
        out.queued_now.insert(model, n);
    }
    Ok(out)
}

/// Rows of a listing: (sort key, request key, JSON row) each.
fn read_listed(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
    op: &'static str,
) -> Result<Vec<(String, Request)>, StoreError> {
    let rows = stmt
        .query_map(params, |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
        })
        .map_err(db(op))?;
    let mut out = Vec::new();
    for row in rows {
        let (sort, key, json) = row.map_err(db(op))?;
        out.push((sort, from_json("request", &key, &json)?));
    }
    Ok(out)
}
