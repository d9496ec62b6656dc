//! The read-only routes about the system: jobs (provider batches) and stats.

use std::collections::BTreeMap;

use futures::future::try_join_all;
use serde_json::json;

use super::error::ApiError;
use super::query::{self, Query};
use super::views;
use super::{Api, ApiRequest, ApiResponse, JOBS_PAGE_DEFAULT, JOBS_PAGE_MAX};
use crate::ids::{JobId, TenantId};
use crate::request::RequestStatus;
use crate::store::StoreError;

impl Api {
    /// `GET /v1/jobs?limit=&cursor=`: newest first.
    pub(super) async fn list_jobs(&self, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
        let q = Query::parse(&req.query, &["limit", "cursor"])?;
        let limit = q.number("limit", JOBS_PAGE_DEFAULT, 1, JOBS_PAGE_MAX)?;
        let cursor = q.get("cursor").map(query::decode_cursor).transpose()?;
        let page = match self.jobs.list_jobs(cursor, limit).await {
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
                "jobs": page.items.iter().map(views::job).collect::<Vec<_>>(),
                "next_cursor": page.next.as_deref().map(query::encode_cursor),
            }),
        ))
    }

    /// `GET /v1/jobs/{id}`.
    pub(super) async fn get_job(&self, raw_id: &str, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
        Query::parse(&req.query, &[])?;
        let id = JobId::parse(raw_id)?;
        let job = self
            .jobs
            .get_job(&id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no job with id {id:?}")))?;
        Ok(ApiResponse::json(200, views::job(&job)))
    }

    /// `GET /v1/stats`: the tenant's requests by status, the queue's age
    /// (all tenants: batches are shared), and the open jobs.
    pub(super) async fn stats(&self, tenant: &TenantId, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
        Query::parse(&req.query, &[])?;
        let now = self.clock.now();
        let counts = self.requests.counts(tenant).await?;
        let groups = self.requests.queue_groups().await?;
        let oldest = try_join_all(groups.iter().map(|g| self.requests.queued(&g.group, None, 1))).await?;
        let open = self.jobs.open_jobs().await?;
        let savings = self.savings_total(tenant).await?;

        let mut queue_groups = Vec::with_capacity(groups.len());
        let mut oldest_age: Option<u64> = None;
        for (g, page) in groups.iter().zip(&oldest) {
            let first = page.items.first();
            let age = first.map(|r| now.since(r.created_at).as_secs());
            if let Some(a) = age {
                oldest_age = Some(oldest_age.map_or(a, |o| o.max(a)));
            }
            queue_groups.push(json!({
                "url": g.group.endpoint.as_str(),
                "model": g.group.model,
                "queued": g.queued,
                "oldest_queued_at": views::opt_time(first.map(|r| r.created_at)),
                "oldest_age_seconds": age,
            }));
        }

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
                "queue": {
                    "oldest_queued_age_seconds": oldest_age,
                    "groups": queue_groups,
                },
                "jobs": {
                    "open": open.len(),
                    "by_status": by_status,
                },
                "savings": super::savings::totals_view(&savings),
                "generated_at": views::time(now),
            }),
        ))
    }
}
