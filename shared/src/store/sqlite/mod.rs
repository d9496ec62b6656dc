//! Embedded adapter of the row ports: [`SqliteStore`] implements
//! [`RequestRows`](super::RequestRows), [`JobStore`](super::JobStore) and
//! [`SavingsStore`](super::SavingsStore) on one SQLite database file, so
//! `batchq serve` runs from one binary and one data directory
//! ([`super::data_dir::DataDir`]). The tables are described in
//! `docs/storage.md` ("Embedded store").
//!
//! As the in-memory adapter it mirrors, it only maps and persists: the
//! rules (the queued state, which counters a change moves, when a write is
//! refused and how the refusal is judged, job saves) are the domain's.
//! Each port call is one SQLite transaction (`BEGIN IMMEDIATE` for writes),
//! so it is atomic exactly as a DynamoDB transaction or the memory store's
//! mutex is. Every row is also kept whole as JSON (the domain types' serde
//! form, which `batchq export` will share); the other columns are what the
//! queries select and order on.
//!
//! rusqlite is blocking: the one connection sits behind a mutex and every
//! call runs on tokio's blocking pool. Reads are consistent (no index lag).

mod checkpoint;
mod jobs;
mod requests;
mod schema;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::dir_lock::{DataDirError, LockGuard};
use super::placed::PlacedStore;
use super::{ObjectStore, Page, StoreError};
use crate::ids::JobId;
use crate::placement::InlineLimits;
use crate::time::Timestamp;

pub use schema::SCHEMA_VERSION;

/// When a committed transaction is on disk (SQLite's `synchronous` in WAL mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: every commit syncs the WAL, so an acknowledged
    /// write (an enqueue answered 202) survives a power loss. The default.
    #[default]
    Full,
    /// `synchronous=NORMAL`: commits are durable against a crash of the
    /// process but the last ones may be lost with the machine's power; the
    /// database stays consistent either way. Faster single writes.
    Normal,
}

/// How a [`SqliteStore`] is opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SqliteOptions {
    pub durability: Durability,
    /// Finished requests and jobs get an `expires_at` this long after they
    /// finish, and [`SqliteStore::purge_expired`] deletes them after it;
    /// `None` keeps them for good (a job's own `expires_at` is kept as given).
    pub retention: Option<Duration>,
}

/// The SQLite row store. Cheap to clone: clones share the connection (and
/// the data directory's lock, when opened through one).
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    retention: Option<Duration>,
    /// About how many keys `recent_keys` holds (see schema version 5).
    recent_keys: Arc<std::sync::atomic::AtomicI64>,
    /// Runs the WAL checkpoints beside the writer (dropped before the lock).
    checkpointer: Arc<checkpoint::Checkpointer>,
    /// The data directory's lock, held as long as any clone lives.
    _lock: Option<Arc<LockGuard>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// SQLite's page cache (KiB), a bound on the writer's memory: it fills up
/// to this over a long run (an ingest of a 200 MB result file held 64 MB of
/// it). The default 2 MB spills to disk within one bulk insert of 1,000
/// requests' rows, bodies and index entries (about 6 MB).
const CACHE_KIB: u32 = 32 * 1024;

/// Turns a rusqlite error into the port's backend error.
pub(super) fn db(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::backend(op, e)
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `path`: WAL mode, the
    /// durability asked for, the schema created or checked. A database of a
    /// newer schema than this build knows is refused. Prefer
    /// [`DataDir`](super::data_dir::DataDir), which also locks the directory.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<Self, DataDirError> {
        Self::open_locked(path, options, None)
    }

    pub(super) fn open_locked(
        path: &Path,
        options: SqliteOptions,
        lock: Option<Arc<LockGuard>>,
    ) -> Result<Self, DataDirError> {
        let fail = |e: rusqlite::Error| DataDirError::Database {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let mut conn = Connection::open(path).map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(fail)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DataDirError::Database {
                path: path.to_owned(),
                message: format!("could not switch to WAL mode (journal_mode is {mode})"),
            });
        }
        let sync = match options.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA synchronous={sync}; PRAGMA foreign_keys=OFF; PRAGMA cache_size=-{CACHE_KIB}; \
             PRAGMA temp_store=MEMORY; PRAGMA wal_autocheckpoint={};",
            checkpoint::BACKSTOP_PAGES
        ))
        .map_err(fail)?;
        conn.set_prepared_statement_cache_capacity(64);
        schema::migrate(&mut conn, path)?;
        let recent_keys: i64 = conn
            .query_row("SELECT count(*) FROM recent_keys", [], |r| r.get(0))
            .map_err(fail)?;
        let checkpointer = checkpoint::Checkpointer::start(path, sync)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
            retention: options.retention,
            recent_keys: Arc::new(recent_keys.into()),
            checkpointer: Arc::new(checkpointer),
            _lock: lock,
        })
    }

    /// The store as the core uses it: bodies and responses over `limits`
    /// kept in `objects`.
    pub fn placed(self, objects: Arc<dyn ObjectStore>, limits: InlineLimits) -> PlacedStore<Self> {
        PlacedStore::new(self, objects, limits)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one transaction on the blocking pool: `write` takes the
    /// write lock at once (`BEGIN IMMEDIATE`), a read sees one snapshot.
    /// Committed when `f` returns `Ok`, rolled back otherwise.
    pub(super) async fn tx<T, F>(&self, op: &'static str, write: bool, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        let checkpointer = self.checkpointer.clone();
        tokio::task::spawn_blocking(move || {
            // A panic inside a transaction rolled it back (the guard's drop):
            // the connection is still good.
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            let behavior = if write {
                TransactionBehavior::Immediate
            } else {
                TransactionBehavior::Deferred
            };
            let tx = conn.transaction_with_behavior(behavior).map_err(db(op))?;
            let out = f(&tx)?;
            tx.commit().map_err(db(op))?;
            if write {
                checkpointer.committed();
            }
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::backend(op, e))?
    }

    /// When a request or job finishing at `at` expires (`None`: never).
    fn expiry(&self, at: Timestamp) -> Option<Timestamp> {
        self.retention.map(|r| at.plus(r))
    }

    /// Deletes what expired by `now`: finished requests (state, body row and
    /// result) with their feed entries, and jobs (with their per-tenant rows) whose `expires_at` has
    /// passed. Counters are left as they are (they count what happened, as
    /// DynamoDB's, whose TTL deletes rows the same way). Objects expire by
    /// their own rules (`FsObjects::expire`), as in S3. Returns the rows
    /// deleted (requests plus jobs).
    pub async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.tx("purge_expired", true, move |tx| {
            let now = now.millis();
            let op = "purge_expired";
            let terminal = schema::terminal_list();
            let mut n = 0u64;
            for (table, column, of_request) in [
                ("bodies", "request_row", "id"),
                ("results", "key", "key"),
                ("recent_keys", "key", "key"),
                ("request_keys", "key", "key"),
            ] {
                tx.execute(
                    &format!(
                        "DELETE FROM {table} WHERE {column} IN (SELECT {of_request} FROM requests \
                         WHERE expires_at <= ?1 AND status IN ({terminal}))"
                    ),
                    [now],
                )
                .map_err(db(op))?;
            }
            n += tx
                .execute(
                    &format!("DELETE FROM requests WHERE expires_at <= ?1 AND status IN ({terminal})"),
                    [now],
                )
                .map_err(db(op))? as u64;
            tx.execute("DELETE FROM feed WHERE expires_at <= ?1", [now])
                .map_err(db(op))?;
            tx.execute(
                "DELETE FROM tenant_jobs WHERE job_id IN (SELECT id FROM jobs WHERE expires_at <= ?1)",
                [now],
            )
            .map_err(db(op))?;
            n += tx
                .execute("DELETE FROM jobs WHERE expires_at <= ?1", [now])
                .map_err(db(op))? as u64;
            Ok(n)
        })
        .await
    }

    /// Every stored row (request state, body and result; counters; job;
    /// job tenant; budget; savings total with its sources) under a key
    /// naming it, as text: for "nothing changed" comparisons in tests.
    pub async fn snapshot(&self) -> Result<BTreeMap<String, String>, StoreError> {
        self.tx("snapshot", false, |tx| {
            let op = "snapshot";
            let mut out = BTreeMap::new();
            let queries: [(&str, &str); 10] = [
                (
                    "feed",
                    "SELECT tenant, CAST(seq AS TEXT), custom_id || ' ' || event || ' ' || finished_at || ' ' || \
                     coalesce(job_id, '-') || ' ' || model || ' ' || provider FROM feed",
                ),
                ("request", "SELECT key, 'state', row FROM requests"),
                (
                    "request",
                    "SELECT r.key, 'body', b.kind || ' ' || b.payload FROM bodies b \
                     JOIN requests r ON r.rowid = b.request_row",
                ),
                ("request", "SELECT key, 'result', row FROM results"),
                ("counter|tenant", "SELECT tenant, counter, n FROM tenant_counts"),
                ("counter|queue", "SELECT queue, '', n FROM queue_counts"),
                ("job", "SELECT id, '', row FROM jobs"),
                ("tenant_job", "SELECT tenant, job_id, '' FROM tenant_jobs"),
                ("budget", "SELECT model, '', row FROM budgets"),
                (
                    "savings",
                    "SELECT tenant, day || '#' || provider || '#' || model, \
                     totals || ' ' || (SELECT group_concat(source, ',') FROM \
                     (SELECT source FROM savings_sources s WHERE s.tenant = t.tenant AND s.day = t.day \
                     AND s.provider = t.provider AND s.model = t.model ORDER BY source)) FROM savings t",
                ),
            ];
            for (kind, sql) in queries {
                let mut stmt = tx.prepare(sql).map_err(db(op))?;
                let rows = stmt
                    .query_map([], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, rusqlite::types::Value>(2)?,
                        ))
                    })
                    .map_err(db(op))?;
                for row in rows {
                    let (a, b, v) = row.map_err(db(op))?;
                    let text = match v {
                        rusqlite::types::Value::Text(t) => t,
                        other => format!("{other:?}"),
                    };
                    out.insert(format!("{kind}|{a}|{b}"), text);
                }
            }
            Ok(out)
        })
        .await
    }
}

// ---------------------------------------------------------------- rows as JSON

/// A row's JSON column read back into its domain type.
pub(super) fn from_json<T: serde::de::DeserializeOwned>(
    entity: &'static str,
    id: &str,
    json: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        entity,
        id: id.to_owned(),
        reason: e.to_string(),
    })
}

/// A domain value as its JSON column.
pub(super) fn to_json<T: serde::Serialize>(entity: &'static str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::backend(entity, e))
}

// ---------------------------------------------------------------- paging

const CURSOR_PREFIX: &str = "sql1:";

fn bad_cursor(c: &str) -> StoreError {
    StoreError::Corrupt {
        entity: "cursor",
        id: c.chars().take(40).collect(),
        reason: "not a cursor this store issued".into(),
    }
}

/// The sort key a cursor carries (`None`: the first page). A cursor this
/// store did not issue is refused.
pub(super) fn after(cursor: Option<String>) -> Result<Option<String>, StoreError> {
    cursor
        .map(|c| {
            c.strip_prefix(CURSOR_PREFIX)
                .map(str::to_owned)
                .ok_or_else(|| bad_cursor(&c))
        })
        .transpose()
}

/// A listing's page size, as the memory store clamps it.
pub(super) fn page_limit(limit: u32) -> usize {
    limit.clamp(1, 1000) as usize
}

/// One page from up to `limit + 1` rows read (each with its sort key): the
/// cursor is the last sort key returned, set only when more rows follow.
pub(super) fn page_of<T>(mut rows: Vec<(String, T)>, limit: usize) -> Page<T> {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = match (more, rows.last()) {
        (true, Some((k, _))) => Some(format!("{CURSOR_PREFIX}{k}")),
        _ => None,
    };
    Page {
        items: rows.into_iter().map(|(_, v)| v).collect(),
        next,
    }
}

/// The sort key of the queue and the job listings: time first (zero-padded
/// milliseconds), the key or id breaking ties, as the memory store's.
pub(super) fn order_key(at: Timestamp, id: &str) -> String {
    format!("{:015}#{}", at.millis().max(0), id)
}

pub(super) fn job_order(created_at: Timestamp, id: &JobId) -> String {
    order_key(created_at, id.as_str())
}

/// A single optional row.
pub(super) fn one<T>(r: rusqlite::Result<T>, op: &'static str) -> Result<Option<T>, StoreError> {
    r.optional().map_err(db(op))
}

#[cfg(test)]
mod tests;
