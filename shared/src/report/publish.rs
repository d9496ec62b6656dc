//! The scheduled daily report (the poll function, on an event asking for
//! it): each configured tenant's report of a day written to the object
//! store as `reports/{day}/{tenant}.md`, `.html` and `.json`. The JSON is
//! written last and marks the report done: an event delivered twice (or a
//! run repeated) finds it and writes nothing, so whatever the caller sends
//! on (the webhook) goes once per day and tenant.

use bytes::Bytes;

use super::{build, render, DailyReport, LocalApi, ReportError};
use crate::api::Api;
use crate::ids::TenantId;
use crate::store::ObjectStore;

/// The object key of a tenant's report of `day` in format `ext` (`md`, `html`, `json`).
pub fn report_key(day: &str, tenant: &TenantId, ext: &str) -> String {
    format!("reports/{day}/{tenant}.{ext}")
}

/// What publishing one tenant's report did.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub tenant: TenantId,
    pub day: String,
    /// The keys of its three files.
    pub keys: Vec<String>,
    /// The report, when this run wrote it; `None` when it was there already.
    pub written: Option<DailyReport>,
}

fn store_error(e: crate::store::StoreError) -> ReportError {
    ReportError::Api {
        path: "reports/".into(),
        message: e.to_string(),
    }
}

/// Writes the report of `day` for each of `tenants` not written yet.
pub async fn publish(
    api: &Api,
    objects: &dyn ObjectStore,
    tenants: &[TenantId],
    day: &str,
) -> Result<Vec<Published>, ReportError> {
    let day = super::parse_day(day)?;
    let mut out = Vec::with_capacity(tenants.len());
    for tenant in tenants {
        let keys: Vec<String> = ["md", "html", "json"]
            .iter()
            .map(|ext| report_key(&day, tenant, ext))
            .collect();
        let done = objects.head(&keys[2]).await.map_err(store_error)?.is_some();
        let written = if done {
            None
        } else {
            let report = build(
                &LocalApi {
                    api,
                    tenant: tenant.clone(),
                },
                &day,
            )
            .await?;
            let files = [
                (render::markdown(&report), "text/markdown; charset=utf-8"),
                (render::html(&report), "text/html; charset=utf-8"),
                (render::json(&report), "application/json"),
            ];
            // In this order: the JSON last, once the others are there.
            for (key, (body, content_type)) in keys.iter().zip(files) {
                objects
                    .put(key, Bytes::from(body), content_type)
                    .await
                    .map_err(store_error)?;
            }
            Some(report)
        };
        out.push(Published {
            tenant: tenant.clone(),
            day: day.clone(),
            keys,
            written,
        });
    }
    Ok(out)
}
