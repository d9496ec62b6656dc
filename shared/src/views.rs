//! The JSON the API answers with, and webhook payloads carry. One function
//! per view, so every route and every event shows a request or a job the
//! same way. Money is an exact decimal string in
//! dollars (`"0.0015"`), or `null` when unknown; times are RFC 3339 UTC.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::ids::TenantId;
use crate::job::{CostTotals, Job, JobError};
use crate::money::Money;
use crate::request::{Request, RequestError, RequestResult, Usage};
use crate::time::Timestamp;

pub fn time(t: Timestamp) -> Value {
    Value::String(t.to_rfc3339())
}

pub fn opt_time(t: Option<Timestamp>) -> Value {
    t.map(time).unwrap_or(Value::Null)
}

pub fn money(m: Option<Money>) -> Value {
    m.map(|m| Value::String(m.to_decimal_string())).unwrap_or(Value::Null)
}

pub fn usage(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "cached_input_tokens": u.cached_input_tokens,
        "output_tokens": u.output_tokens,
        "reasoning_tokens": u.reasoning_tokens,
        "cache_write_tokens": u.cache_write_tokens,
    })
}

pub fn request_error(e: &RequestError) -> Value {
    json!({
        "code": e.code,
        "message": e.message,
        "status_code": e.status_code,
    })
}

/// A request as stored: what `POST` answers with, and the base of `GET`.
pub fn request(r: &Request) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("custom_id".into(), json!(r.custom_id));
    m.insert("status".into(), json!(r.status.as_str()));
    m.insert("provider".into(), json!(r.provider));
    m.insert("url".into(), json!(r.endpoint.as_str()));
    m.insert("model".into(), json!(r.model));
    m.insert("attempts".into(), json!(r.attempts));
    m.insert("job_id".into(), json!(r.job_id));
    m.insert("body_bytes".into(), json!(r.body_bytes));
    m.insert("created_at".into(), time(r.created_at));
    m.insert("updated_at".into(), time(r.updated_at));
    m.insert("expires_at".into(), opt_time(r.expires_at));
    m.insert(
        "last_error".into(),
        r.last_error.as_ref().map(request_error).unwrap_or(Value::Null),
    );
    m
}

/// Where a stored response body can be read.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseBody {
    /// The provider's `response.body`, embedded as JSON.
    Inline(Value),
    /// Too large to embed: a short-lived GET URL for the stored JSON.
    Url {
        url: String,
        bytes: u64,
        expires_at: Timestamp,
    },
    None,
}

/// The result of a finished request.
pub fn result(r: &RequestResult, body: ResponseBody) -> Value {
    let (response, response_url) = match body {
        ResponseBody::Inline(v) => (v, Value::Null),
        ResponseBody::Url { url, bytes, expires_at } => (
            Value::Null,
            json!({"url": url, "bytes": bytes, "expires_at": time(expires_at)}),
        ),
        ResponseBody::None => (Value::Null, Value::Null),
    };
    let saved = match (r.batch_cost, r.realtime_cost) {
        (Some(b), Some(rt)) => Some(rt - b),
        _ => None,
    };
    json!({
        "job_id": r.job_id,
        "status_code": r.status_code,
        "response": response,
        "response_url": response_url,
        "error": r.error.as_ref().map(request_error),
        "usage": r.usage.as_ref().map(usage),
        "cost": {
            "batch": money(r.batch_cost),
            "realtime": money(r.realtime_cost),
            "saved": money(saved),
        },
        "recorded_at": time(r.recorded_at),
    })
}

fn job_error(e: &JobError) -> Value {
    json!({"code": e.code, "message": e.message, "line": e.line})
}

fn totals(t: &CostTotals) -> Value {
    json!({
        "usage": usage(&t.usage),
        "batch_cost": money(Some(t.batch_cost)),
        "realtime_cost": money(Some(t.realtime_cost)),
        "saved": money(Some(t.saved())),
        "unpriced_requests": t.unpriced_requests,
    })
}

/// A job as `tenant` sees it: the whole job when all its requests are the
/// tenant's; when it is shared with other tenants, the figures that would
/// tell about their requests (counts, tokens, costs, the provider's file and
/// batch ids) are left out and `shared` is true.
pub fn job_for(tenant: &TenantId, j: &Job) -> Value {
    let mut v = job(j);
    let shared = j.tenant_count > 1 || j.tenants.iter().any(|t| t != tenant);
    if shared {
        if let Some(m) = v.as_object_mut() {
            for field in [
                "request_counts",
                "totals",
                "input",
                "provider_batch_id",
                "errors",
                "late",
                "duplicate_batches",
                "net_saved_usd",
            ] {
                m.insert(field.into(), Value::Null);
            }
        }
    }
    v["shared"] = json!(shared);
    v
}

/// A job (one provider batch) with its progress.
pub fn job(j: &Job) -> Value {
    json!({
        "id": j.id,
        "status": j.status.as_str(),
        "provider": j.provider_name,
        "provider_kind": j.provider.as_str(),
        "provider_status": j.provider_status.as_ref().map(|s| s.as_str()),
        "provider_batch_id": j.provider_batch_id,
        "url": j.endpoint.as_str(),
        "model": j.model,
        "input": {"lines": j.input_lines, "bytes": j.input_bytes},
        "request_counts": {
            "total": j.request_counts.total,
            "completed": j.request_counts.completed,
            "failed": j.request_counts.failed,
        },
        "errors": j.errors.iter().map(job_error).collect::<Vec<_>>(),
        "totals": totals(&j.totals),
        // What the job's submit, poll and ingest runs used of AWS
        // (crate::overhead; 0 off AWS), and the saving less it.
        "aws_overhead_usd": money(Some(j.aws_overhead)),
        "net_saved_usd": money(Some(j.totals.saved() - j.aws_overhead)),
        // A batch given up at its deadline: poll watches it until
        // `watched_until`; answers it still delivers are used or, for
        // requests sent again meanwhile, paid twice.
        "late": {
            "watched_until": opt_time(j.watch_until),
            "used": j.late_used,
            "paid_twice": j.double_spent,
            "paid_twice_cost": money(Some(j.double_spent_cost)),
        },
        "duplicate_batches": j.duplicate_batches,
        "created_at": time(j.created_at),
        "updated_at": time(j.updated_at),
        "submitted_at": opt_time(j.submitted_at),
        "finished_at": opt_time(j.finished_at),
        "expires_at": opt_time(j.expires_at),
    })
}

/// Counts keyed by status name, sorted.
pub fn counts<'a>(pairs: impl IntoIterator<Item = (&'a str, i64)>) -> Value {
    let m: BTreeMap<&str, i64> = pairs.into_iter().collect();
    json!(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::JobId;
    use crate::ids::RequestKey;

    #[test]
    fn result_shows_costs_as_exact_decimals_and_unknown_as_null() {
        let r = RequestResult {
            key: RequestKey::parse("0123456789abcdef0123456789abcdef").unwrap(),
            job_id: JobId::generate(),
            status_code: Some(200),
            response: None,
            error: None,
            usage: Some(Usage {
                input_tokens: 10,
                ..Usage::default()
            }),
            batch_cost: Some(Money::from_picodollars(750_000_000)),
            realtime_cost: Some(Money::from_picodollars(1_500_000_000)),
            recorded_at: Timestamp::from_millis(0),
            request_id: None,
        };
        let v = result(&r, ResponseBody::Inline(json!({"id": "x"})));
        assert_eq!(
            v["cost"],
            json!({"batch": "0.00075", "realtime": "0.0015", "saved": "0.00075"})
        );
        assert_eq!(v["response"], json!({"id": "x"}));
        assert_eq!(v["usage"]["input_tokens"], 10);
        assert_eq!(v["recorded_at"], "1970-01-01T00:00:00.000Z");

        let unpriced = RequestResult { batch_cost: None, ..r };
        let v = result(&unpriced, ResponseBody::None);
        assert_eq!(v["cost"], json!({"batch": null, "realtime": "0.0015", "saved": null}));
        assert_eq!(v["response"], Value::Null);
    }
}
