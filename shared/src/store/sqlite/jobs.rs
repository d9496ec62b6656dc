//! [`JobStore`] and [`SavingsStore`] on SQLite.

use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::{params, Transaction};

use super::{after, db, from_json, job_order, one, page_limit, page_of, to_json, SqliteStore};
use crate::budget::TokenBudget;
use crate::ids::{JobId, ModelName, TenantId};
use crate::job::Job;
use crate::store::{JobStore, Page, SavingsRow, SavingsStore, SavingsTotals, StoreError};
use crate::time::Timestamp;

/// Open: submit and poll list it (a given-up job stays listed while poll
/// watches its batch for late answers), as the other stores'.
fn is_open(job: &Job) -> bool {
    !job.status.is_terminal() || job.watch_until.is_some()
}

impl SqliteStore {
    /// The job as stored: a finished, unwatched job expires `retention`
    /// after it finished; otherwise its `expires_at` is kept as given.
    fn stored(&self, job: &Job) -> Job {
        let mut j = job.clone();
        if j.status.is_terminal() && j.watch_until.is_none() {
            if let Some(exp) = self.expiry(j.finished_at.unwrap_or(j.updated_at)) {
                j.expires_at = Some(exp);
            }
        }
        j
    }
}

fn read_job(tx: &Transaction<'_>, id: &str, op: &'static str) -> Result<Option<Job>, StoreError> {
    let mut stmt = tx
        .prepare_cached("SELECT row FROM jobs WHERE id = ?1")
        .map_err(db(op))?;
    match one(stmt.query_row([id], |r| r.get::<_, String>(0)), op)? {
        Some(json) => from_json("job", id, &json).map(Some),
        None => Ok(None),
    }
}

/// Reads job rows `(sort key, id, row)` from `stmt`.
fn read_jobs(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
    op: &'static str,
) -> Result<Vec<(String, Option<Job>)>, StoreError> {
    let rows = stmt
        .query_map(params, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })
        .map_err(db(op))?;
    let mut out = Vec::new();
    for row in rows {
        let (sort, id, json) = row.map_err(db(op))?;
        let job = match json {
            Some(j) => Some(from_json("job", &id, &j)?),
            None => None,
        };
        out.push((sort, job));
    }
    Ok(out)
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn create_job(&self, job: &Job) -> Result<(), StoreError> {
        let job = self.stored(job);
        self.tx("create_job", true, move |tx| {
            let op = "create_job";
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO jobs (id, ord, status, version, open, expires_at, row) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING",
                )
                .map_err(db(op))?;
            let written = stmt
                .execute(params![
                    job.id.as_str(),
                    job_order(job.created_at, &job.id),
                    job.status.as_str(),
                    job.version as i64,
                    is_open(&job),
                    job.expires_at.map(Timestamp::millis),
                    to_json("job", &job)?,
                ])
                .map_err(db(op))?;
            if written == 0 {
                return Err(StoreError::ConditionFailed {
                    entity: "job",
                    id: job.id.to_string(),
                    expected: "no row".into(),
                    actual: Some("exists".into()),
                });
            }
            Ok(())
        })
        .await
    }

    async fn get_job(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        let id = id.clone();
        self.tx("get_job", false, move |tx| read_job(tx, id.as_str(), "get_job"))
            .await
    }

    async fn save_job(&self, prev: &Job, next: Job) -> Result<Job, StoreError> {
        let next = prev.succeeded_by(next)?;
        let stored = self.stored(&next);
        let prev = prev.clone();
        self.tx("save_job", true, move |tx| {
            let op = "save_job";
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE jobs SET status = ?4, version = ?5, open = ?6, expires_at = ?7, row = ?8 \
                     WHERE id = ?1 AND status = ?2 AND version = ?3",
                )
                .map_err(db(op))?;
            let written = stmt
                .execute(params![
                    prev.id.as_str(),
                    prev.status.as_str(),
                    prev.version as i64,
                    stored.status.as_str(),
                    stored.version as i64,
                    is_open(&stored),
                    stored.expires_at.map(Timestamp::millis),
                    to_json("job", &stored)?,
                ])
                .map_err(db(op))?;
            if written == 0 {
                let cur = read_job(tx, prev.id.as_str(), op)?;
                return Err(StoreError::ConditionFailed {
                    entity: "job",
                    id: prev.id.to_string(),
                    expected: format!("{} v{}", prev.status, prev.version),
                    actual: cur.map(|c| format!("{} v{}", c.status, c.version)),
                });
            }
            // The saved copy comes back as given (the other stores do so too).
            Ok(next)
        })
        .await
    }

    async fn open_jobs(&self) -> Result<Vec<Job>, StoreError> {
        self.tx("open_jobs", false, |tx| {
            let op = "open_jobs";
            let mut stmt = tx
                .prepare_cached("SELECT ord, id, row FROM jobs WHERE open = 1 ORDER BY ord")
                .map_err(db(op))?;
            Ok(read_jobs(&mut stmt, [], op)?
                .into_iter()
                .filter_map(|(_, j)| j)
                .collect())
        })
        .await
    }

    async fn add_job_tenants(&self, job: &Job, tenants: &[TenantId]) -> Result<(), StoreError> {
        let ord = job_order(job.created_at, &job.id);
        let id = job.id.clone();
        let tenants = tenants.to_vec();
        self.tx("add_job_tenants", true, move |tx| {
            let op = "add_job_tenants";
            let mut stmt = tx
                .prepare_cached("INSERT OR IGNORE INTO tenant_jobs (tenant, ord, job_id) VALUES (?1, ?2, ?3)")
                .map_err(db(op))?;
            for t in &tenants {
                stmt.execute(params![t.as_str(), ord, id.as_str()]).map_err(db(op))?;
            }
            Ok(())
        })
        .await
    }

    async fn job_has_tenant(&self, job: &Job, tenant: &TenantId) -> Result<bool, StoreError> {
        if let Some(known) = job.holds_tenant(tenant) {
            return Ok(known);
        }
        let ord = job_order(job.created_at, &job.id);
        let tenant = tenant.clone();
        self.tx("job_has_tenant", false, move |tx| {
            let op = "job_has_tenant";
            let mut stmt = tx
                .prepare_cached("SELECT 1 FROM tenant_jobs WHERE tenant = ?1 AND ord = ?2")
                .map_err(db(op))?;
            Ok(one(stmt.query_row(params![tenant.as_str(), ord], |_| Ok(())), op)?.is_some())
        })
        .await
    }

    async fn list_jobs(
        &self,
        tenant: Option<&TenantId>,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Job>, StoreError> {
        // Newest first: every sort key sorts below this one.
        let before = after(cursor)?.unwrap_or_else(|| "\u{10ffff}".to_owned());
        let tenant = tenant.cloned();
        let limit = page_limit(limit);
        self.tx("list_jobs", false, move |tx| {
            let op = "list_jobs";
            let rows = match &tenant {
                // The tenant's own list, then each job (gone ones dropped below).
                Some(t) => {
                    let mut stmt = tx
                        .prepare_cached(
                            "SELECT t.ord, t.job_id, j.row FROM tenant_jobs t LEFT JOIN jobs j ON j.id = t.job_id \
                             WHERE t.tenant = ?1 AND t.ord < ?2 ORDER BY t.ord DESC LIMIT ?3",
                        )
                        .map_err(db(op))?;
                    read_jobs(&mut stmt, params![t.as_str(), before, limit as i64 + 1], op)?
                }
                None => {
                    let mut stmt = tx
                        .prepare_cached("SELECT ord, id, row FROM jobs WHERE ord < ?1 ORDER BY ord DESC LIMIT ?2")
                        .map_err(db(op))?;
                    read_jobs(&mut stmt, params![before, limit as i64 + 1], op)?
                }
            };
            let p = page_of(rows, limit);
            Ok(Page {
                items: p.items.into_iter().flatten().collect(),
                next: p.next,
            })
        })
        .await
    }

    async fn token_budgets(&self) -> Result<HashMap<ModelName, TokenBudget>, StoreError> {
        self.tx("token_budgets", false, |tx| {
            let op = "token_budgets";
            let mut stmt = tx.prepare_cached("SELECT model, row FROM budgets").map_err(db(op))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(db(op))?;
            let mut out = HashMap::new();
            for row in rows {
                let (model, json) = row.map_err(db(op))?;
                let b: TokenBudget = from_json("budget", &model, &json)?;
                out.insert(b.model.clone(), b);
            }
            Ok(out)
        })
        .await
    }

    async fn save_token_budget(&self, budget: &TokenBudget) -> Result<(), StoreError> {
        let budget = budget.clone();
        self.tx("save_token_budget", true, move |tx| {
            let op = "save_token_budget";
            let mut stmt = tx
                .prepare_cached("INSERT OR REPLACE INTO budgets (model, row) VALUES (?1, ?2)")
                .map_err(db(op))?;
            stmt.execute(params![budget.model.as_str(), to_json("budget", &budget)?])
                .map_err(db(op))?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl SavingsStore for SqliteStore {
    async fn add_savings(&self, source: &str, rows: Vec<SavingsRow>) -> Result<(), StoreError> {
        let source = source.to_owned();
        self.tx("add_savings", true, move |tx| {
            let op = "add_savings";
            let mut counted = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO savings_sources (tenant, day, provider, model, source) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(db(op))?;
            let mut read = tx
                .prepare_cached(
                    "SELECT totals FROM savings WHERE tenant = ?1 AND day = ?2 AND provider = ?3 AND model = ?4",
                )
                .map_err(db(op))?;
            let mut write = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO savings (tenant, day, provider, model, totals) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(db(op))?;
            for row in rows {
                let key = params![row.tenant.as_str(), row.day, row.provider.as_str(), row.model.as_str()];
                // Already counted: a replay (each row is conditioned on its own).
                let fresh = counted
                    .execute(params![
                        row.tenant.as_str(),
                        row.day,
                        row.provider.as_str(),
                        row.model.as_str(),
                        source
                    ])
                    .map_err(db(op))?;
                if fresh == 0 {
                    continue;
                }
                let id = format!("{}/{}/{}/{}", row.tenant, row.day, row.provider, row.model);
                let mut totals: SavingsTotals = match one(read.query_row(key, |r| r.get::<_, String>(0)), op)? {
                    Some(json) => from_json("savings", &id, &json)?,
                    None => SavingsTotals::default(),
                };
                totals.add(&row.totals);
                write
                    .execute(params![
                        row.tenant.as_str(),
                        row.day,
                        row.provider.as_str(),
                        row.model.as_str(),
                        to_json("savings", &totals)?
                    ])
                    .map_err(db(op))?;
            }
            Ok(())
        })
        .await
    }

    async fn savings(&self, tenant: &TenantId, from: &str, to: &str) -> Result<Vec<SavingsRow>, StoreError> {
        let tenant = tenant.clone();
        let (from, to) = (from.to_owned(), to.to_owned());
        self.tx("savings", false, move |tx| {
            let op = "savings";
            // By day, then model (then provider), as the other stores' `{day}#{provider}#{model}` keys sort.
            let mut stmt = tx
                .prepare_cached(
                    "SELECT day, provider, model, totals FROM savings \
                     WHERE tenant = ?1 AND day >= ?2 AND day <= ?3 ORDER BY day, provider, model",
                )
                .map_err(db(op))?;
            let rows = stmt
                .query_map(params![tenant.as_str(), from, to], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                })
                .map_err(db(op))?;
            let mut out = Vec::new();
            for row in rows {
                let (day, provider, model, json) = row.map_err(db(op))?;
                let id = format!("{tenant}/{day}/{provider}/{model}");
                let corrupt = |reason: String| StoreError::Corrupt {
                    entity: "savings",
                    id: id.clone(),
                    reason,
                };
                out.push(SavingsRow {
                    tenant: tenant.clone(),
                    provider: crate::ids::ProviderName::parse(provider).map_err(|e| corrupt(e.to_string()))?,
                    model: ModelName::parse(model).map_err(|e| corrupt(e.to_string()))?,
                    totals: from_json("savings", &id, &json)?,
                    day,
                });
            }
            Ok(out)
        })
        .await
    }
}
