//! The embedded store's tables, created on first open; `PRAGMA
//! user_version` holds the schema version, and a newer one than this build
//! knows is refused (an older binary must not write a newer layout).

use std::path::Path;

use rusqlite::Connection;

use crate::request::RequestStatus;
use crate::store::dir_lock::DataDirError;

/// The schema this build writes and reads.
pub const SCHEMA_VERSION: i64 = 5;

/// Version 1. Each table's `row` (or `payload`, `totals`) column is the
/// whole domain value as JSON; the other columns are what queries select,
/// order and count on.
///
/// Requests, bodies and results are rowid tables with a unique index on
/// the key, not `WITHOUT ROWID` ones: their rows are large (a body is
/// kilobytes) and their keys are hashes, so a table ordered by key would
/// take each insert in a random place of a large B-tree (a page split and a
/// page rewritten per row); a rowid table appends rows and only the small
/// key index is written at random.
pub(super) const SCHEMA_V1: &str = r#"
CREATE TABLE requests (
    key         TEXT NOT NULL UNIQUE,
    tenant      TEXT NOT NULL,
    status      TEXT NOT NULL,
    -- the queue group key and the queue order, only while queued
    queue       TEXT,
    queue_order TEXT,
    job_id      TEXT,
    expires_at  INTEGER,
    row         TEXT NOT NULL
);
CREATE INDEX requests_queue ON requests (queue, queue_order) WHERE queue IS NOT NULL;
CREATE INDEX requests_job ON requests (job_id, key) WHERE job_id IS NOT NULL;
CREATE INDEX requests_expiry ON requests (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE bodies (
    key     TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL
);

CREATE TABLE results (
    key    TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL,
    row    TEXT NOT NULL
);

CREATE TABLE jobs (
    id         TEXT PRIMARY KEY,
    -- created_at (15 digits of ms) '#' id: the listings' order
    ord        TEXT NOT NULL,
    status     TEXT NOT NULL,
    version    INTEGER NOT NULL,
    -- 1 while not terminal or watched (submit and poll list these)
    open       INTEGER NOT NULL,
    expires_at INTEGER,
    row        TEXT NOT NULL
);
CREATE INDEX jobs_order ON jobs (ord);
CREATE INDEX jobs_open ON jobs (ord) WHERE open = 1;
CREATE INDEX jobs_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE tenant_jobs (
    tenant TEXT NOT NULL,
    ord    TEXT NOT NULL,
    job_id TEXT NOT NULL,
    PRIMARY KEY (tenant, ord)
) WITHOUT ROWID;
CREATE INDEX tenant_jobs_job ON tenant_jobs (job_id);

-- counter: a request status name, 'pending_bytes' or 'committed_nanos'
CREATE TABLE tenant_counts (
    tenant  TEXT NOT NULL,
    counter TEXT NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (tenant, counter)
) WITHOUT ROWID;

CREATE TABLE queue_counts (
    queue TEXT PRIMARY KEY,
    n     INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE budgets (
    model TEXT PRIMARY KEY,
    row   TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE savings (
    tenant   TEXT NOT NULL,
    day      TEXT NOT NULL,
    provider TEXT NOT NULL,
    model    TEXT NOT NULL,
    totals   TEXT NOT NULL,
    PRIMARY KEY (tenant, day, provider, model)
) WITHOUT ROWID;

-- the sources (result files) each savings total has counted
CREATE TABLE savings_sources (
    tenant   TEXT NOT NULL,
    day      TEXT NOT NULL,
    provider TEXT NOT NULL,
    model    TEXT NOT NULL,
    source   TEXT NOT NULL,
    PRIMARY KEY (tenant, day, provider, model, source)
) WITHOUT ROWID;
"#;

/// Version 2: bodies are keyed by their request's row, not by the request
/// key, and say how their `payload` is written.
///
/// - `request_row` is the `rowid` of the request in `requests`: a body is
///   appended at the end of its table, and no second index of random hash
///   keys has to be kept. Such an index dirtied a page per body at a random
///   place, so each commit of a bulk insert rewrote most of that index into
///   the WAL: more bytes than the bodies themselves.
/// - `kind` 1: `payload` is the inline body's JSON itself, not wrapped in a
///   JSON string (escaping every quote of a 4 KB body and unescaping it to
///   read it back was a twentieth of a bulk enqueue's time). `kind` 0: the
///   [`Payload`](crate::request::Payload) as JSON (every row a version-1
///   database had, and bodies kept as objects).
///
/// Upgrading a version-1 database copies its bodies once.
pub(super) const SCHEMA_V2: &str = r#"
CREATE TABLE bodies_v2 (
    request_row INTEGER PRIMARY KEY,
    kind        INTEGER NOT NULL,
    payload     TEXT NOT NULL
);
INSERT INTO bodies_v2 (request_row, kind, payload)
    SELECT r.rowid, 0, b.payload FROM bodies b JOIN requests r ON r.key = b.key;
DROP TABLE bodies;
ALTER TABLE bodies_v2 RENAME TO bodies;
"#;

/// Version 3: each tenant's hourly activity counters
/// ([`crate::activity::ActivityCount`] by name, per `YYYY-MM-DDTHH` hour),
/// and its queued requests per model in `tenant_counts` (`queued:{model}`),
/// seeded from the requests queued when an older database is upgraded.
pub(super) const SCHEMA_V3: &str = r#"
CREATE TABLE activity (
    tenant  TEXT NOT NULL,
    hour    TEXT NOT NULL,
    counter TEXT NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (tenant, hour, counter)
) WITHOUT ROWID;
INSERT INTO tenant_counts (tenant, counter, n)
    SELECT tenant, 'queued:' || json_extract(row, '$.model'), count(*)
    FROM requests WHERE status = 'queued' GROUP BY tenant, json_extract(row, '$.model');
"#;

/// Version 4: the results feed ([`crate::feed`]). `seq` numbers every
/// entry once, in commit order (AUTOINCREMENT: a number is never reused,
/// even after the newest entries were purged); a tenant's feed is its rows
/// in `seq` order. An entry expires with its request. Upgrading an older
/// database enters its finished requests, in the order they finished.
pub(super) const SCHEMA_V4: &str = r#"
CREATE TABLE feed (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant      TEXT NOT NULL,
    custom_id   TEXT NOT NULL,
    event       TEXT NOT NULL,
    finished_at INTEGER NOT NULL,
    job_id      TEXT,
    model       TEXT NOT NULL,
    provider    TEXT NOT NULL,
    expires_at  INTEGER
);
CREATE INDEX feed_tenant ON feed (tenant, seq);
CREATE INDEX feed_expiry ON feed (expires_at) WHERE expires_at IS NOT NULL;
INSERT INTO feed (tenant, custom_id, event, finished_at, job_id, model, provider, expires_at)
    SELECT tenant, json_extract(row, '$.custom_id'), status, json_extract(row, '$.updated_at'),
           job_id, json_extract(row, '$.model'), coalesce(json_extract(row, '$.provider'), 'openai'), expires_at
    FROM requests WHERE status IN ('completed', 'failed', 'cancelled')
    ORDER BY json_extract(row, '$.updated_at'), rowid;
"#;

/// Version 5: a request is found by its key through two key tables, not
/// a unique index on `requests.key`.
///
/// Keys are hashes: each insert into one index of every key dirtied a
/// random page of it, so every commit of a bulk insert (500 requests)
/// rewrote most of that index into the WAL, and each checkpoint again:
/// about half the bytes a bulk enqueue wrote at 100,000 rows. Now a new
/// key goes into `recent_keys`, small, so a commit dirties few pages; when
/// it has grown to about the square root of 1,000 times the table's rows,
/// its keys move into `request_keys` in one sorted pass (each of its pages
/// written once per move, not once per commit) inside the inserting
/// transaction ([`super::requests::merge_recent_keys`]). A key is in
/// exactly one of the two, always in the same transaction as its row;
/// every lookup by key reads both ([`super::requests::ROW_OF_KEY`]).
///
/// `requests` is rebuilt without its `UNIQUE` key (SQLite cannot drop the
/// index of a column constraint), with `id` naming the `rowid` that
/// `bodies.request_row` and the key tables refer to (an `INTEGER PRIMARY
/// KEY`, which keeps its values through a `VACUUM`); the rows keep their
/// `rowid`s.
pub(super) const SCHEMA_V5: &str = r#"
CREATE TABLE requests_v5 (
    id          INTEGER PRIMARY KEY,
    key         TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    status      TEXT NOT NULL,
    queue       TEXT,
    queue_order TEXT,
    job_id      TEXT,
    expires_at  INTEGER,
    row         TEXT NOT NULL
);
INSERT INTO requests_v5 (id, key, tenant, status, queue, queue_order, job_id, expires_at, row)
    SELECT rowid, key, tenant, status, queue, queue_order, job_id, expires_at, row FROM requests;
DROP TABLE requests;
ALTER TABLE requests_v5 RENAME TO requests;
CREATE INDEX requests_queue ON requests (queue, queue_order) WHERE queue IS NOT NULL;
CREATE INDEX requests_job ON requests (job_id, key) WHERE job_id IS NOT NULL;
CREATE INDEX requests_expiry ON requests (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE request_keys (
    key         TEXT PRIMARY KEY,
    request_row INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE recent_keys (
    key         TEXT PRIMARY KEY,
    request_row INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO request_keys (key, request_row) SELECT key, id FROM requests ORDER BY key;
"#;

/// The `tenant_counts` name of a tenant's queued requests of `model`.
pub(super) fn tenant_queued_counter(model: &crate::ids::ModelName) -> String {
    format!("{TENANT_QUEUED_PREFIX}{model}")
}

/// The prefix of the `tenant_counts` names of queued requests per model.
pub(super) const TENANT_QUEUED_PREFIX: &str = "queued:";

/// `bodies.kind`: `payload` is the `Payload` as JSON.
pub(super) const BODY_PAYLOAD_JSON: i64 = 0;
/// `bodies.kind`: `payload` is the inline body itself.
pub(super) const BODY_INLINE: i64 = 1;

/// The counter name of a tenant's unfinished body bytes.
pub(super) const PENDING_BYTES: &str = "pending_bytes";
/// The `tenant_counts` counter of a tenant's committed spend (nanodollars).
pub(super) const COMMITTED_NANOS: &str = "committed_nanos";

/// The terminal request statuses as an SQL list (`'completed', ...`).
pub(super) fn terminal_list() -> String {
    RequestStatus::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Creates the schema in a new database, upgrades an older one (each
/// version's steps in order, in one transaction), checks a current one.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), DataDirError> {
    let fail = |e: rusqlite::Error| DataDirError::Database {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(fail)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(fail)?;
    match version {
        0..=4 => {
            if version == 0 {
                tx.execute_batch(SCHEMA_V1).map_err(fail)?;
            }
            if version < 2 {
                tx.execute_batch(SCHEMA_V2).map_err(fail)?;
            }
            if version < 3 {
                tx.execute_batch(SCHEMA_V3).map_err(fail)?;
            }
            if version < 4 {
                tx.execute_batch(SCHEMA_V4).map_err(fail)?;
            }
            tx.execute_batch(SCHEMA_V5).map_err(fail)?;
            tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
                .map_err(fail)?;
        }
        SCHEMA_VERSION => {}
        found if found > SCHEMA_VERSION => {
            return Err(DataDirError::NewerSchema {
                path: path.to_owned(),
                found,
                known: SCHEMA_VERSION,
            })
        }
        found => {
            return Err(DataDirError::Database {
                path: path.to_owned(),
                message: format!("unknown schema version {found}"),
            })
        }
    }
    tx.commit().map_err(fail)
}
