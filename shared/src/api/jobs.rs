//! The read-only routes about a tenant's share of the system: the jobs
//! (provider batches) holding its requests, and its stats. A job may hold
//! several tenants' requests; each sees the job, never the others' figures.

use std::collections::BTreeMap;

use futures::future::try_join_all;
use serde_json::json;

use super::error::ApiError;
use super::query::{self, Query};
use super::{Api, ApiRequest, ApiResponse, JOBS_PAGE_DEFAULT, JOBS_PAGE_MAX};
use crate::ids::{JobId, TenantId};
use crate::request::RequestStatus;
use crate::store::StoreError;
use crate::views;

impl Api {
    /// `GET /v1/jobs?limit=&cursor=`: the tenant's jobs, newest first.
    pub(super) async fn list_jobs(&self, tenant: &TenantId, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
        let q = Query::parse(&req.query, &["limit", "cursor"])?;
        let limit = q.number("limit", JOBS_PAGE_DEFAULT, 1, JOBS_PAGE_MAX)?;
        let cursor = q.get("cursor").map(query::decode_cursor).transpose()?;
        let page = match self.ports.jobs.list_jobs(Some(tenant), cursor, limit).await {
            Ok(p) => p,
            // A cursor that passed the check but the store cannot use.
            Err(StoreError::Corrupt { entity: "cursor", .. }) => {
                return Err(ApiError::bad_request(
                    Some("cursor"),
                    "invalid_cursor",
                    "cursor is not one this API issued; pass next_cursor from the previous page unchanged",
                ))
            }
            Err(e) => return Err(e.into()),
        };
        Ok(ApiResponse::json(
            200,
            json!({
                "jobs": page.items.iter().map(|j| views::job_for(tenant, j)).collect::<Vec<_>>(),
                "next_cursor": page.next.as_deref().map(query::encode_cursor),
            }),
        ))
    }

    /// `GET /v1/jobs/{id}`: 404 unless the job holds the tenant's requests.
    pub(super) async fn get_job(
        &self,
        tenant: &TenantId,
        raw_id: &str,
        req: &ApiRequest,
    ) -> Result<ApiResponse, ApiError> {
        Query::parse(&req.query, &[])?;
        let id = JobId::parse(raw_id)?;
        let not_found = || ApiError::not_found(format!("no job with id {:?}", id.as_str()));
        let job = self.ports.jobs.get_job(&id).await?.ok_or_else(not_found)?;
        if !self.ports.jobs.job_has_tenant(&job, tenant).await? {
            return Err(not_found());
        }
        Ok(ApiResponse::json(200, views::job_for(tenant, &job)))
    }

    /// `GET /v1/stats`: the tenant's requests by status, its quota, the age
    /// of the oldest queued request (all tenants': batches are shared, and it
    /// says when the next ones go), the tenant's open jobs and its savings.
    pub(super) async fn stats(&self, tenant: &TenantId, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
        Query::parse(&req.query, &[])?;
        let now = self.ports.clock.now();
        let counts = self.ports.requests.counts(tenant).await?;
        let groups = self.ports.requests.queue_groups().await?;
        let oldest = try_join_all(groups.iter().map(|g| self.ports.requests.queued(&g.group, None, 1))).await?;
        let mut open = Vec::new();
        for j in self.ports.jobs.open_jobs().await? {
            // A given-up job is listed while poll watches its batch.
            if !j.status.is_terminal() && self.ports.jobs.job_has_tenant(&j, tenant).await? {
                open.push(j);
            }
        }
        let savings = self.savings_total(tenant).await?;
        let budget = self.budget_view(tenant, &counts).await?;

        let oldest_age = oldest
            .iter()
            .filter_map(|page| page.items.first())
            .map(|r| now.since(r.created_at).as_secs())
            .max();

        let mut by_status: BTreeMap<&str, i64> = BTreeMap::new();
        for j in &open {
            *by_status.entry(j.status.as_str()).or_default() += 1;
        }
        let total: i64 = RequestStatus::ALL.iter().map(|s| counts.get(*s)).sum();
        Ok(ApiResponse::json(
            200,
            json!({
                "tenant": tenant,
                "requests": {
                    "by_status": views::counts(RequestStatus::ALL.iter().map(|s| (s.as_str(), counts.get(*s)))),
                    "total": total,
                },
                "quota": {
                    "pending": counts.pending(),
                    "max_pending": self.limits.tenant_max_pending,
                    "pending_bytes": counts.pending_bytes,
                    "max_pending_bytes": self.limits.tenant_max_pending_bytes,
                },
                "queue": {
                    "oldest_queued_age_seconds": oldest_age,
                },
                "jobs": {
                    "open": open.len(),
                    "by_status": by_status,
                },
                "savings": super::savings::totals_view(&savings),
                "budget": budget,
                "generated_at": views::time(now),
            }),
        ))
    }
}
