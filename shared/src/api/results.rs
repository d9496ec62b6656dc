//! `GET /v1/results?after=&limit=`: the tenant's results feed
//! ([`crate::feed`]): finished requests in the order they finished, each
//! with the view `GET /v1/requests/{custom_id}` gives (result or error
//! inline, a large response as a short-lived URL), and the cursor to read
//! on from. A consumer that keeps `next` sees every result exactly once.

use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};

use super::error::ApiError;
use super::query::Query;
use super::{Api, ApiRequest, ApiResponse};
use crate::feed::{FeedCursor, FeedEntry, DEFAULT_PAGE, MAX_PAGE};
use crate::ids::TenantId;
use crate::store::StoreError;
use crate::views;

/// Requests read at once to fill one page.
const READS_IN_FLIGHT: usize = 32;

fn bad_after() -> ApiError {
    ApiError::bad_request(
        Some("after"),
        "invalid_cursor",
        "after is not a results cursor of this tenant; pass `next` (or an entry's `cursor`) from an earlier page unchanged",
    )
}

impl Api {
    pub(super) async fn list_results(&self, tenant: &TenantId, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
        let q = Query::parse(&req.query, &["after", "limit"])?;
        let limit = q.number("limit", DEFAULT_PAGE, 1, MAX_PAGE)?;
        let after = match q.get("after").filter(|a| !a.is_empty()) {
            None => None,
            Some(raw) => {
                let c: FeedCursor = raw.parse().map_err(|_| bad_after())?;
                c.seq_for(tenant).map_err(|_| bad_after())?;
                Some(c)
            }
        };
        let page = match self.ports.requests.feed(tenant, after.as_ref(), limit).await {
            Ok(p) => p,
            Err(StoreError::BadCursor(_)) => return Err(bad_after()),
            Err(e) => return Err(e.into()),
        };
        let results: Vec<Value> = futures::stream::iter(page.entries)
            .map(|e| async move { self.result_entry(tenant, e).await })
            .buffered(READS_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(ApiResponse::json(
            200,
            json!({
                "results": results,
                "next": page.next.as_ref().map(FeedCursor::as_str),
            }),
        ))
    }

    /// One feed entry with its request as `GET /v1/requests/{custom_id}`
    /// shows it (`null` once the request itself has expired).
    async fn result_entry(&self, tenant: &TenantId, e: FeedEntry) -> Result<Value, ApiError> {
        let request = match self.ports.requests.get_with_result(&e.key()).await? {
            Some((r, result)) if r.tenant == *tenant => self.request_view(&r, result).await?,
            _ => Value::Null,
        };
        Ok(json!({
            "cursor": e.cursor.as_str(),
            "event": e.event,
            "custom_id": e.custom_id,
            "finished_at": views::time(e.finished_at),
            "job_id": e.job,
            "model": e.model,
            "provider": e.provider,
            "request": request,
        }))
    }
}
