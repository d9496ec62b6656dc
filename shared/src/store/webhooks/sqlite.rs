//! The webhook store on SQLite, in its own database file in the data
//! directory (`webhooks.sqlite3`): endpoints (with their feed position) and
//! deliveries. Its own file and connection, so the delivery loop's writes
//! never wait for, or hold up, the request store's single writer (ingest,
//! enqueue). Each call is one transaction (`BEGIN IMMEDIATE` for writes).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::feed::FeedCursor;
use crate::ids::TenantId;
use crate::store::webhooks::{EndpointState, JobMark, WebhookStore};
use crate::store::StoreError;
use crate::time::Timestamp;
use crate::webhook::delivery::{Delivery, DeliveryId, DeliveryStatus};
use crate::webhook::endpoint::{Endpoint, EndpointId};

/// The file name inside a data directory.
pub const FILE_NAME: &str = "webhooks.sqlite3";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    feed_cursor TEXT,
    json TEXT NOT NULL,
    job_mark TEXT
);
CREATE INDEX IF NOT EXISTS webhook_endpoints_by_tenant ON webhook_endpoints (tenant, created_at, id);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    endpoint TEXT NOT NULL,
    tenant TEXT NOT NULL,
    status TEXT NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (endpoint, status, next_attempt_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_tenant ON webhook_deliveries (tenant, seq);
";

#[derive(Clone)]
pub struct SqliteWebhooks {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteWebhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteWebhooks")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn db(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::backend(op, e)
}

fn corrupt(entity: &'static str, id: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        entity,
        id: id.to_owned(),
        reason: e.to_string(),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::backend("webhook row", e))
}

fn endpoint_of(id: &str, json: &str) -> Result<Endpoint, StoreError> {
    serde_json::from_str(json).map_err(|e| corrupt("webhook endpoint", id, e))
}

fn delivery_of(id: &str, json: &str) -> Result<Delivery, StoreError> {
    serde_json::from_str(json).map_err(|e| corrupt("webhook delivery", id, e))
}

fn cursor_of(id: &str, text: Option<String>) -> Result<Option<FeedCursor>, StoreError> {
    text.map(|t| t.parse::<FeedCursor>().map_err(|e| corrupt("webhook endpoint", id, e)))
        .transpose()
}

/// Inserts each delivery whose id is not stored; returns how many were.
fn insert_new(tx: &rusqlite::Transaction<'_>, rows: &[(Delivery, String)]) -> Result<u32, StoreError> {
    let mut insert = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO webhook_deliveries (id, endpoint, tenant, status, next_attempt_at, json) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(db("materialise webhook deliveries"))?;
    let mut new = 0u32;
    for (d, json) in rows {
        new += insert
            .execute(params![
                d.id.as_str(),
                d.endpoint.as_str(),
                d.tenant.as_str(),
                d.status.as_str(),
                d.next_attempt_at.millis(),
                json
            ])
            .map_err(db("materialise webhook deliveries"))? as u32;
    }
    Ok(new)
}

impl SqliteWebhooks {
    /// Opens (creating when missing) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(db("open webhooks database"))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(db("open webhooks database"))?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0))
            .map_err(db("open webhooks database"))?;
        conn.execute_batch("PRAGMA synchronous=FULL;")
            .map_err(db("open webhooks database"))?;
        conn.execute_batch(SCHEMA).map_err(db("create webhook tables"))?;
        // Files made before the job mark existed get its column (no mark:
        // the next pass looks at all of the tenant's jobs once).
        let has_mark: bool = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('webhook_endpoints') WHERE name = 'job_mark'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(db("open webhooks database"))?
            > 0;
        if !has_mark {
            conn.execute_batch("ALTER TABLE webhook_endpoints ADD COLUMN job_mark TEXT;")
                .map_err(db("add the job mark column"))?;
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    /// Opens the webhook database of a data directory.
    pub fn in_dir(dir: &Path) -> Result<Self, StoreError> {
        Self::open(&dir.join(FILE_NAME))
    }

    async fn tx<T, F>(&self, op: &'static str, write: bool, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            let behavior = if write {
                TransactionBehavior::Immediate
            } else {
                TransactionBehavior::Deferred
            };
            let tx = conn.transaction_with_behavior(behavior).map_err(db(op))?;
            let out = f(&tx)?;
            tx.commit().map_err(db(op))?;
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::backend(op, e))?
    }
}

#[async_trait]
impl WebhookStore for SqliteWebhooks {
    async fn create_endpoint(&self, endpoint: &Endpoint, cursor: Option<&FeedCursor>) -> Result<(), StoreError> {
        let e = endpoint.clone();
        let json = to_json(&e)?;
        let cursor = cursor.map(|c| c.as_str().to_owned());
        self.tx("create webhook endpoint", true, move |tx| {
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO webhook_endpoints (id, tenant, enabled, created_at, feed_cursor, json) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![e.id.as_str(), e.tenant.as_str(), e.enabled, e.created_at.millis(), cursor, json],
                )
                .map_err(db("create webhook endpoint"))?;
            if n == 0 {
                return Err(StoreError::ConditionFailed {
                    entity: "webhook endpoint",
                    id: e.id.to_string(),
                    expected: "no endpoint".into(),
                    actual: Some("exists".into()),
                });
            }
            Ok(())
        })
        .await
    }

    async fn get_endpoint(&self, tenant: &TenantId, id: &EndpointId) -> Result<Option<Endpoint>, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.tx("get webhook endpoint", false, move |tx| {
            let json: Option<String> = tx
                .query_row(
                    "SELECT json FROM webhook_endpoints WHERE id = ?1 AND tenant = ?2",
                    params![id.as_str(), tenant.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db("get webhook endpoint"))?;
            json.map(|j| endpoint_of(id.as_str(), &j)).transpose()
        })
        .await
    }

    async fn list_endpoints(&self, tenant: &TenantId) -> Result<Vec<Endpoint>, StoreError> {
        let tenant = tenant.clone();
        self.tx("list webhook endpoints", false, move |tx| {
            let mut stmt = tx
                .prepare_cached("SELECT id, json FROM webhook_endpoints WHERE tenant = ?1 ORDER BY created_at, id")
                .map_err(db("list webhook endpoints"))?;
            let rows = stmt
                .query_map(params![tenant.as_str()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(db("list webhook endpoints"))?;
            let mut out = Vec::new();
            for row in rows {
                let (id, json) = row.map_err(db("list webhook endpoints"))?;
                out.push(endpoint_of(&id, &json)?);
            }
            Ok(out)
        })
        .await
    }

    async fn enabled_endpoints(&self) -> Result<Vec<EndpointState>, StoreError> {
        self.tx("list enabled webhook endpoints", false, move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id, json, feed_cursor, job_mark FROM webhook_endpoints WHERE enabled = 1 ORDER BY created_at, id",
                )
                .map_err(db("list enabled webhook endpoints"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })
                .map_err(db("list enabled webhook endpoints"))?;
            let mut out = Vec::new();
            for row in rows {
                let (id, json, cursor, mark) = row.map_err(db("list enabled webhook endpoints"))?;
                out.push(EndpointState {
                    endpoint: endpoint_of(&id, &json)?,
                    cursor: cursor_of(&id, cursor)?,
                    jobs: mark
                        .map(|m| JobMark::decode(&m).map_err(|e| corrupt("webhook endpoint", &id, e)))
                        .transpose()?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        let e = endpoint.clone();
        let json = to_json(&e)?;
        self.tx("update webhook endpoint", true, move |tx| {
            let n = tx
                .execute(
                    "UPDATE webhook_endpoints SET enabled = ?3, json = ?4 WHERE id = ?1 AND tenant = ?2",
                    params![e.id.as_str(), e.tenant.as_str(), e.enabled, json],
                )
                .map_err(db("update webhook endpoint"))?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    entity: "webhook endpoint",
                    id: e.id.to_string(),
                });
            }
            Ok(())
        })
        .await
    }

    async fn delete_endpoint(&self, tenant: &TenantId, id: &EndpointId) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.tx("delete webhook endpoint", true, move |tx| {
            let n = tx
                .execute(
                    "DELETE FROM webhook_endpoints WHERE id = ?1 AND tenant = ?2",
                    params![id.as_str(), tenant.as_str()],
                )
                .map_err(db("delete webhook endpoint"))?;
            if n > 0 {
                tx.execute(
                    "DELETE FROM webhook_deliveries WHERE endpoint = ?1",
                    params![id.as_str()],
                )
                .map_err(db("delete webhook endpoint"))?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn materialise(
        &self,
        endpoint: &EndpointId,
        expected: Option<&FeedCursor>,
        next: Option<&FeedCursor>,
        deliveries: Vec<Delivery>,
    ) -> Result<u32, StoreError> {
        let endpoint = endpoint.clone();
        let expected = expected.map(|c| c.as_str().to_owned());
        let next = next.map(|c| c.as_str().to_owned());
        let rows = deliveries
            .iter()
            .map(|d| Ok((d.clone(), to_json(d)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.tx("materialise webhook deliveries", true, move |tx| {
            let stored: Option<Option<String>> = tx
                .query_row(
                    "SELECT feed_cursor FROM webhook_endpoints WHERE id = ?1",
                    params![endpoint.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db("materialise webhook deliveries"))?;
            let Some(stored) = stored else {
                return Err(StoreError::NotFound {
                    entity: "webhook endpoint",
                    id: endpoint.to_string(),
                });
            };
            if next.is_some() && stored != expected {
                return Err(StoreError::ConditionFailed {
                    entity: "webhook endpoint",
                    id: endpoint.to_string(),
                    expected: format!("feed cursor {}", expected.as_deref().unwrap_or("(none)")),
                    actual: Some(stored.unwrap_or_else(|| "(none)".into())),
                });
            }
            let new = insert_new(tx, &rows)?;
            if let Some(next) = next {
                tx.execute(
                    "UPDATE webhook_endpoints SET feed_cursor = ?2 WHERE id = ?1",
                    params![endpoint.as_str(), next],
                )
                .map_err(db("materialise webhook deliveries"))?;
            }
            Ok(new)
        })
        .await
    }

    async fn materialise_jobs(
        &self,
        endpoint: &EndpointId,
        expected: Option<&JobMark>,
        next: Option<&JobMark>,
        deliveries: Vec<Delivery>,
    ) -> Result<u32, StoreError> {
        let endpoint = endpoint.clone();
        let expected = expected.map(JobMark::encode);
        let next = next.map(JobMark::encode);
        let rows = deliveries
            .iter()
            .map(|d| Ok((d.clone(), to_json(d)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.tx("materialise job deliveries", true, move |tx| {
            let stored: Option<Option<String>> = tx
                .query_row(
                    "SELECT job_mark FROM webhook_endpoints WHERE id = ?1",
                    params![endpoint.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db("materialise job deliveries"))?;
            let Some(stored) = stored else {
                return Err(StoreError::NotFound {
                    entity: "webhook endpoint",
                    id: endpoint.to_string(),
                });
            };
            if stored != expected {
                return Err(StoreError::ConditionFailed {
                    entity: "webhook endpoint",
                    id: endpoint.to_string(),
                    expected: format!("job mark {}", expected.as_deref().unwrap_or("(none)")),
                    actual: Some(stored.unwrap_or_else(|| "(none)".into())),
                });
            }
            let new = insert_new(tx, &rows)?;
            if let Some(next) = next {
                tx.execute(
                    "UPDATE webhook_endpoints SET job_mark = ?2 WHERE id = ?1",
                    params![endpoint.as_str(), next],
                )
                .map_err(db("materialise job deliveries"))?;
            }
            Ok(new)
        })
        .await
    }

    async fn known_deliveries(&self, ids: &[DeliveryId]) -> Result<Vec<DeliveryId>, StoreError> {
        let ids = ids.to_vec();
        self.tx("read webhook deliveries", false, move |tx| {
            let mut stmt = tx
                .prepare_cached("SELECT 1 FROM webhook_deliveries WHERE id = ?1")
                .map_err(db("read webhook deliveries"))?;
            let mut out = Vec::new();
            for id in ids {
                if stmt
                    .exists(params![id.as_str()])
                    .map_err(db("read webhook deliveries"))?
                {
                    out.push(id);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn due(&self, endpoint: &EndpointId, now: Timestamp, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let endpoint = endpoint.clone();
        self.tx("read due webhook deliveries", false, move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id, json FROM webhook_deliveries WHERE endpoint = ?1 AND status = 'pending' AND next_attempt_at <= ?2 ORDER BY next_attempt_at LIMIT ?3",
                )
                .map_err(db("read due webhook deliveries"))?;
            let rows = stmt
                .query_map(params![endpoint.as_str(), now.millis(), limit], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(db("read due webhook deliveries"))?;
            let mut out = Vec::new();
            for row in rows {
                let (id, json) = row.map_err(db("read due webhook deliveries"))?;
                out.push(delivery_of(&id, &json)?);
            }
            Ok(out)
        })
        .await
    }

    async fn oldest_pending(&self, endpoint: &EndpointId) -> Result<Option<Timestamp>, StoreError> {
        let endpoint = endpoint.clone();
        self.tx("read oldest pending webhook delivery", false, move |tx| {
            let mut stmt = tx
                .prepare_cached("SELECT id, json FROM webhook_deliveries WHERE endpoint = ?1 AND status = 'pending'")
                .map_err(db("read oldest pending webhook delivery"))?;
            let rows = stmt
                .query_map(params![endpoint.as_str()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(db("read oldest pending webhook delivery"))?;
            let mut oldest: Option<Timestamp> = None;
            for row in rows {
                let (id, json) = row.map_err(db("read oldest pending webhook delivery"))?;
                let at = delivery_of(&id, &json)?.created_at;
                oldest = Some(oldest.map_or(at, |o| o.min(at)));
            }
            Ok(oldest)
        })
        .await
    }

    async fn save_delivery(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let d = delivery.clone();
        let json = to_json(&d)?;
        self.tx("save webhook delivery", true, move |tx| {
            let n = tx
                .execute(
                    "UPDATE webhook_deliveries SET status = ?2, next_attempt_at = ?3, json = ?4 WHERE id = ?1",
                    params![d.id.as_str(), d.status.as_str(), d.next_attempt_at.millis(), json],
                )
                .map_err(db("save webhook delivery"))?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    entity: "webhook delivery",
                    id: d.id.to_string(),
                });
            }
            Ok(())
        })
        .await
    }

    async fn get_delivery(&self, tenant: &TenantId, id: &DeliveryId) -> Result<Option<Delivery>, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.tx("get webhook delivery", false, move |tx| {
            let json: Option<String> = tx
                .query_row(
                    "SELECT json FROM webhook_deliveries WHERE id = ?1 AND tenant = ?2",
                    params![id.as_str(), tenant.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db("get webhook delivery"))?;
            json.map(|j| delivery_of(id.as_str(), &j)).transpose()
        })
        .await
    }

    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        status: Option<DeliveryStatus>,
        endpoint: Option<&EndpointId>,
        after: Option<&DeliveryId>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let tenant = tenant.clone();
        let status = status.map(|s| s.as_str());
        let endpoint = endpoint.map(|e| e.as_str().to_owned());
        let after = after.map(|a| a.as_str().to_owned());
        self.tx("list webhook deliveries", false, move |tx| {
            let before: i64 = match &after {
                Some(id) => match tx
                    .query_row("SELECT seq FROM webhook_deliveries WHERE id = ?1", params![id], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(db("list webhook deliveries"))?
                {
                    Some(seq) => seq,
                    None => return Ok(Vec::new()),
                },
                None => i64::MAX,
            };
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id, json FROM webhook_deliveries WHERE tenant = ?1 AND seq < ?2 \
                     AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR endpoint = ?4) ORDER BY seq DESC LIMIT ?5",
                )
                .map_err(db("list webhook deliveries"))?;
            let rows = stmt
                .query_map(params![tenant.as_str(), before, status, endpoint, limit], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(db("list webhook deliveries"))?;
            let mut out = Vec::new();
            for row in rows {
                let (id, json) = row.map_err(db("list webhook deliveries"))?;
                out.push(delivery_of(&id, &json)?);
            }
            Ok(out)
        })
        .await
    }
}
