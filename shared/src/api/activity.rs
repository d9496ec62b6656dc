//! `GET /v1/activity?from=YYYY-MM-DDTHH&to=YYYY-MM-DDTHH`: the tenant's
//! requests enqueued, completed, failed, cancelled and retried per UTC hour,
//! its queued requests per model at the end of each hour, and its failures
//! by error code. Every hour of the range is listed, zeros included, oldest
//! first; both ends are inclusive. The counts are the running counters of
//! [`crate::activity`], kept in the same write as the request rows.

use serde_json::{json, Value};

use super::error::ApiError;
use super::query::Query;
use super::{Api, ApiRequest, ApiResponse};
use crate::activity::{self, Activity, ActivityTotals, Hour};
use crate::ids::TenantId;

/// Hours listed when no range is given: the last 48, the current one included.
pub const DEFAULT_HOURS: i64 = 48;
/// The longest range one call may ask for: 31 days.
pub const MAX_HOURS: i64 = 31 * 24;

fn hour(q: &Query, name: &str) -> Result<Option<Hour>, ApiError> {
    let Some(raw) = q.get(name) else { return Ok(None) };
    Hour::parse(raw).map(Some).map_err(|_| {
        ApiError::bad_request(
            Some(name),
            "invalid_date",
            format!(
                "{name} must be a UTC hour as YYYY-MM-DDTHH, not {:?}",
                raw.chars().take(40).collect::<String>()
            ),
        )
    })
}

/// The JSON of the five counts.
pub fn totals_view(t: &ActivityTotals) -> Value {
    json!({
        "enqueued": t.enqueued,
        "completed": t.completed,
        "failed": t.failed,
        "cancelled": t.cancelled,
        "retried": t.retried,
    })
}

/// The answer's JSON.
pub fn activity_view(tenant: &TenantId, a: &Activity) -> Value {
    let hours: Vec<Value> = a
        .hours
        .iter()
        .map(|h| {
            let mut v = totals_view(&h.totals);
            v["hour"] = json!(h.hour.to_string());
            v["queued_by_model"] = json!(h.queued_by_model);
            v
        })
        .collect();
    let failures: Vec<Value> = a
        .failures
        .iter()
        .map(|(code, count)| json!({"code": code, "count": count}))
        .collect();
    json!({
        "tenant": tenant,
        "from": a.from.to_string(),
        "to": a.to.to_string(),
        "hours": hours,
        "failures": failures,
        "total": totals_view(&a.total),
    })
}

impl Api {
    /// `GET /v1/activity`.
    pub(super) async fn activity(&self, tenant: &TenantId, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
        let q = Query::parse(&req.query, &["from", "to"])?;
        let from = hour(&q, "from")?;
        let to = hour(&q, "to")?;
        let now = self.ports.clock.now();
        let to = to.unwrap_or(Hour::of(now));
        let from = from.unwrap_or(to.plus(-(DEFAULT_HOURS - 1)));
        if from > to {
            return Err(ApiError::bad_request(
                Some("from"),
                "invalid_range",
                format!("from ({from}) is after to ({to})"),
            ));
        }
        if from.hours_until(to) >= MAX_HOURS {
            return Err(ApiError::bad_request(
                Some("from"),
                "invalid_range",
                format!("from ({from}) to ({to}) is more than 31 days; ask for at most {MAX_HOURS} hours"),
            ));
        }
        let rows = self
            .ports
            .requests
            .activity(tenant, from, activity::read_until(to, now))
            .await?;
        Ok(ApiResponse::json(
            200,
            activity_view(tenant, &activity::summarize(&rows, from, to)),
        ))
    }
}
