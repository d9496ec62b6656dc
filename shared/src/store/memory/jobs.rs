//! [`JobStore`] and [`SavingsStore`] over the in-memory maps.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use async_trait::async_trait;

use super::{job_order, page, MemoryStore, SavingsEntry, Versioned};
use crate::budget::TokenBudget;
use crate::ids::{JobId, ModelName, TenantId};
use crate::job::Job;
use crate::store::{JobStore, Page, SavingsRow, SavingsStore, StoreError};

/// A job as stored: no retention here, so nothing expires.
fn stored(job: &Job) -> Job {
    Job {
        expires_at: None,
        ..job.clone()
    }
}

/// Open: submit and poll list it (a given-up job stays listed while poll
/// watches its batch for late answers), as dynamo's `open` attribute.
fn is_open(job: &Job) -> bool {
    !job.status.is_terminal() || job.watch_until.is_some()
}

#[async_trait]
impl JobStore for MemoryStore {
    async fn create_job(&self, job: &Job) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.jobs.contains_key(&job.id) {
            return Err(StoreError::ConditionFailed {
                entity: "job",
                id: job.id.to_string(),
                expected: "no row".into(),
                actual: Some("exists".into()),
            });
        }
        let lag = state.index_lag;
        state
            .jobs
            .insert(job.id.clone(), Versioned::new(stored(job), lag, Instant::now()));
        Ok(())
    }

    async fn get_job(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        Ok(self.lock().jobs.get(id).map(|j| j.current.clone()))
    }

    async fn save_job(&self, prev: &Job, next: Job) -> Result<Job, StoreError> {
        let next = prev.succeeded_by(next)?;
        let mut state = self.lock();
        let lag = state.index_lag;
        match state.jobs.get_mut(&prev.id) {
            Some(row) if row.current.status == prev.status && row.current.version == prev.version => {
                // The saved copy comes back as given (dynamo returns it so too).
                row.set(stored(&next), lag, Instant::now());
                Ok(next)
            }
            row => {
                let cur = row.map(|r| &r.current);
                Err(StoreError::ConditionFailed {
                    entity: "job",
                    id: prev.id.to_string(),
                    expected: format!("{} v{}", prev.status, prev.version),
                    actual: cur.map(|c| format!("{} v{}", c.status, c.version)),
                })
            }
        }
    }

    async fn open_jobs(&self) -> Result<Vec<Job>, StoreError> {
        let state = self.lock();
        let cutoff = state.listing_cutoff();
        let mut open: Vec<Job> = state
            .jobs
            .values()
            .filter_map(|j| j.listed(cutoff))
            .filter(|j| is_open(j))
            .cloned()
            .collect();
        open.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(open)
    }

    async fn add_job_tenants(&self, job: &Job, tenants: &[TenantId]) -> Result<(), StoreError> {
        let mut state = self.lock();
        for t in tenants {
            state
                .tenant_jobs
                .entry(t.clone())
                .or_default()
                .insert((job.created_at, job.id.clone()));
        }
        Ok(())
    }

    async fn job_has_tenant(&self, job: &Job, tenant: &TenantId) -> Result<bool, StoreError> {
        if let Some(known) = job.holds_tenant(tenant) {
            return Ok(known);
        }
        Ok(self
            .lock()
            .tenant_jobs
            .get(tenant)
            .is_some_and(|jobs| jobs.contains(&(job.created_at, job.id.clone()))))
    }

    async fn list_jobs(
        &self,
        tenant: Option<&TenantId>,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Job>, StoreError> {
        let state = self.lock();
        let items: Vec<(String, Option<Job>)> = match tenant {
            // The tenant's own list, then each job (gone ones dropped below).
            Some(t) => state
                .tenant_jobs
                .get(t)
                .into_iter()
                .flatten()
                .map(|(at, id)| (job_order(*at, id), state.jobs.get(id).map(|j| j.current.clone())))
                .collect(),
            // The jobs index: lags as DynamoDB's does.
            None => {
                let cutoff = state.listing_cutoff();
                state
                    .jobs
                    .values()
                    .filter_map(|j| j.listed(cutoff))
                    .map(|j| (job_order(j.created_at, &j.id), Some(j.clone())))
                    .collect()
            }
        };
        let p = page(items, cursor, limit, true)?;
        Ok(Page {
            items: p.items.into_iter().flatten().collect(),
            next: p.next,
        })
    }

    async fn token_budgets(&self) -> Result<HashMap<ModelName, TokenBudget>, StoreError> {
        Ok(self.lock().budgets.clone())
    }

    async fn save_token_budget(&self, budget: &TokenBudget) -> Result<(), StoreError> {
        self.lock().budgets.insert(budget.model.clone(), budget.clone());
        Ok(())
    }
}

#[async_trait]
impl SavingsStore for MemoryStore {
    async fn add_savings(&self, source: &str, rows: Vec<SavingsRow>) -> Result<(), StoreError> {
        let mut state = self.lock();
        for row in rows {
            let entry = state
                .savings
                .entry(row.tenant.clone())
                .or_default()
                .entry(format!("{}#{}#{}", row.day, row.provider, row.model))
                .or_insert_with(|| SavingsEntry {
                    day: row.day.clone(),
                    provider: row.provider.clone(),
                    model: row.model.clone(),
                    totals: Default::default(),
                    sources: HashSet::new(),
                });
            // Already counted: a replay (each row is conditioned on its own, as in dynamo).
            if entry.sources.insert(source.to_owned()) {
                entry.totals.add(&row.totals);
            }
        }
        Ok(())
    }

    async fn savings(&self, tenant: &TenantId, from: &str, to: &str) -> Result<Vec<SavingsRow>, StoreError> {
        let state = self.lock();
        // Every `{to}#{provider}#{model}` sorts below `{to}#` followed by U+FFFF.
        let upper = format!("{to}#\u{ffff}");
        Ok(state
            .savings
            .get(tenant)
            .into_iter()
            .flatten()
            .filter(|(sk, _)| sk.as_str() >= from && sk.as_str() <= upper.as_str())
            .map(|(_, e)| SavingsRow {
                tenant: tenant.clone(),
                day: e.day.clone(),
                provider: e.provider.clone(),
                model: e.model.clone(),
                totals: e.totals,
            })
            .collect())
    }
}
