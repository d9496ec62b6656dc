//! Anthropic's Message Batches API, served by the same fake process at
//! `/v1/messages/batches`: create (`{"requests":[{custom_id, params}]}`),
//! retrieve, list (`before_id` / `after_id` / `limit` 1–1000, newest
//! first), cancel, delete (ended batches only) and results (JSONL).
//!
//! Every call needs `x-api-key` (401 `authentication_error` otherwise) and
//! `anthropic-version` (400 `invalid_request_error`); errors have
//! Anthropic's shape `{"type":"error","error":{"type","message"}}`.
//!
//! A batch is `in_progress` from its creation (its `processing` count is
//! the total, the others 0), then `ended` once its clock allows (three
//! `step_ms`, as an OpenAI batch's whole run) with every count set and a
//! `results_url`; a cancel makes it `canceling`, then `ended` with about
//! half its requests answered and the rest `canceled`; the admin expiry
//! ends it with the rest `expired`. Results come out in an order unlike the
//! input's. A request's `params` are checked when it runs, as Anthropic
//! does: one without `model`, `messages` or a positive `max_tokens` ends
//! `errored` (`invalid_request_error`). Answers are deterministic
//! ([`respond_message`]), with cache usage when the request marks
//! `cache_control`.
//!
//! The fault knobs apply under the route names `create`, `list`,
//! `retrieve`, `cancel`, `results` and `delete_batch`: 429 (with
//! `retry-after` in seconds and an exhausted `anthropic-ratelimit-requests`
//! limit), 529 `overloaded_error`, 500 `api_error`, 400, delays, a held
//! create answer (`hang_after_create_ms`: the batch exists, the answer is
//! lost), listing lag, `stay_in_progress_polls`, `stay_cancelling_polls`,
//! `vanish_after_polls`, `unknown_status`, per-line failures
//! (`fail_percent`, `fail_prefix`, `fail_status` → `errored` with the
//! matching error type), `lose_custom_ids` (no result line; counted as
//! errored) and `cut_content` (a results download cut short).

mod batches;
mod lifecycle;
pub mod messages;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

use crate::routes::{injected_fault, log_arrival, Injected};
use crate::state::{Inner, Shared};

pub(crate) use lifecycle::{complete, expire};
pub use messages::respond_message;

/// Prefix of every message batch id.
pub(crate) const ID_PREFIX: &str = "msgbatch_";

pub(crate) use crate::state::{MsgBatch, Phase};

/// Whether `id` names a message batch.
pub(crate) fn owns(id: &str) -> bool {
    id.starts_with(ID_PREFIX)
}

/// Unix milliseconds as RFC 3339 in UTC, e.g. `2024-09-24T18:37:24.100Z`.
pub(crate) fn rfc3339(ms: i64) -> String {
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The batch as the API shows it; `base` (`http://host`) prefixes its
/// results URL.
pub(crate) fn present(b: &MsgBatch, base: &str) -> Value {
    let ended = b.phase == Phase::Ended;
    let processing = if ended { 0 } else { b.requests.len() as u64 };
    let status = match b.phase {
        Phase::InProgress => "in_progress",
        Phase::Canceling => "canceling",
        Phase::Ended => "ended",
    };
    json!({
        "id": b.id, "type": "message_batch", "processing_status": status,
        "request_counts": {"processing": processing, "succeeded": b.counts[0], "errored": b.counts[1],
                           "canceled": b.counts[2], "expired": b.counts[3]},
        "ended_at": b.ended_ms.map(rfc3339),
        "created_at": rfc3339(b.created_ms),
        "expires_at": rfc3339(b.created_ms + 86_400_000),
        "archived_at": null,
        "cancel_initiated_at": b.cancel_initiated_ms.map(rfc3339),
        "results_url": ended.then(|| format!("{base}/v1/messages/batches/{}/results", b.id)),
    })
}

/// The batch `id` as the admin routes show it (results URL without host).
pub(crate) fn view(inner: &Inner, id: &str, base: &str) -> Value {
    inner
        .anthropic
        .by_id
        .get(id)
        .map(|b| present(b, base))
        .unwrap_or(Value::Null)
}

/// An error in Anthropic's shape.
pub(crate) fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"type": "error", "error": {"type": kind, "message": message.into()}})),
    )
        .into_response()
}

fn route_name(method: &Method, path: &str) -> &'static str {
    match (method.as_str(), path) {
        ("POST", "/v1/messages/batches") => "create",
        ("GET", "/v1/messages/batches") => "list",
        ("GET", "/v1/messages/batches/{id}") => "retrieve",
        ("DELETE", "/v1/messages/batches/{id}") => "delete_batch",
        ("POST", "/v1/messages/batches/{id}/cancel") => "cancel",
        ("GET", "/v1/messages/batches/{id}/results") => "results",
        _ => "other",
    }
}

/// Auth (`x-api-key`), `anthropic-version`, injected faults and the
/// request log, for every Anthropic route.
async fn guard(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| path.clone());
    let route = route_name(&method, &matched);
    let (key, faults, slot) = {
        let mut inner = shared.inner.lock().expect("lock");
        let slot = log_arrival(&mut inner, &method, path, query, route);
        (inner.config.api_key.clone(), inner.config.faults.clone(), slot)
    };
    let headers = req.headers();
    let early = if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(key.as_str()) {
        Some(error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid x-api-key",
        ))
    } else if headers.get("anthropic-version").is_none() {
        Some(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required",
        ))
    } else {
        None
    };
    if let Some(d) = faults.delay_ms.get(route) {
        tokio::time::sleep(Duration::from_millis(*d)).await;
    }
    let injected = early.or_else(|| {
        let fault = injected_fault(&mut shared.inner.lock().expect("lock"), route)?;
        Some(match fault {
            Injected::RateLimited { retry_after_ms } => {
                let secs = retry_after_ms.div_ceil(1000);
                let reset = rfc3339(crate::state::now_s() * 1000 + secs as i64 * 1000);
                let mut r = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "Number of request tokens has exceeded your per-minute rate limit.",
                );
                let h = r.headers_mut();
                h.insert("retry-after", secs.to_string().parse().expect("header"));
                h.insert("anthropic-ratelimit-requests-limit", "50".parse().expect("header"));
                h.insert("anthropic-ratelimit-requests-remaining", "0".parse().expect("header"));
                h.insert("anthropic-ratelimit-requests-reset", reset.parse().expect("header"));
                r
            }
            Injected::Refused => error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "Invalid request: the server refused this call.",
            ),
            Injected::Overloaded => error(
                StatusCode::from_u16(529).expect("529"),
                "overloaded_error",
                "Overloaded",
            ),
            Injected::ServerError => error(StatusCode::INTERNAL_SERVER_ERROR, "api_error", "Internal server error"),
        })
    });
    let resp = match injected {
        Some(r) => {
            crate::routes::drain(req).await;
            r
        }
        None => next.run(req).await,
    };
    shared.inner.lock().expect("lock").log[slot].status = resp.status().as_u16();
    resp
}

/// The Anthropic routes, at their full paths (merged into the fake's app).
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/messages/batches", post(batches::create).get(batches::list))
        .route(
            "/v1/messages/batches/{id}",
            get(batches::retrieve).delete(batches::delete),
        )
        .route("/v1/messages/batches/{id}/cancel", post(batches::cancel))
        .route("/v1/messages/batches/{id}/results", get(batches::results))
        .route_layer(middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_prints_utc_calendar_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_727_203_044_100), "2024-09-24T18:37:24.100Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
