//! The `/_admin` routes tests and the bench use to read the log and steer
//! batches (expire, complete, config).

use crate::limits;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api_error::api_error;
use crate::config::Faults;
use crate::lifecycle::{cancel, finish, half_done, present, validate_now, write_result_files};
use crate::state::{now_s, Inner, Shared, Submission};

pub(crate) async fn admin_log(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.inner.lock().expect("lock").log.clone()).into_response()
}

pub(crate) fn submitted_summary(ledger: &[Submission]) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for s in ledger {
        for c in &s.custom_ids {
            *counts.entry(c.clone()).or_insert(0) += 1;
        }
    }
    counts
}

pub(crate) async fn admin_submitted(State(shared): State<Arc<Shared>>) -> Response {
    let inner = shared.inner.lock().expect("lock");
    Json(json!({"batches": inner.ledger, "custom_ids": submitted_summary(&inner.ledger)})).into_response()
}

pub(crate) async fn admin_config(State(shared): State<Arc<Shared>>, Json(patch): Json<Value>) -> Response {
    let mut inner = shared.inner.lock().expect("lock");
    let mut current = serde_json::to_value(&inner.config.faults).expect("faults serialize");
    if let (Some(cur), Some(p)) = (current.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            cur.insert(k.clone(), v.clone());
        }
    }
    match serde_json::from_value::<Faults>(current) {
        Ok(f) => {
            inner.config.faults = f.clone();
            Json(f).into_response()
        }
        Err(e) => api_error(StatusCode::BAD_REQUEST, format!("bad fault config: {e}"), None, None),
    }
}

/// The batch an admin route moved, as its API shows it.
fn admin_view(inner: &Inner, id: &str) -> Response {
    if crate::anthropic::owns(id) {
        return Json(crate::anthropic::view(inner, id, "")).into_response();
    }
    Json(present(&inner.by_id[id])).into_response()
}

pub(crate) async fn admin_expire(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut inner = shared.inner.lock().expect("lock");
    if !expire(&mut inner, &id) {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!("batch {id} is not in progress"),
            None,
            None,
        );
    }
    admin_view(&inner, &id)
}

/// Expires a running batch: about half its lines are done, the rest `batch_expired`.
pub(crate) fn expire(inner: &mut Inner, id: &str) -> bool {
    if crate::anthropic::owns(id) {
        return crate::anthropic::expire(inner, id);
    }
    if inner.by_id.get(id).is_some_and(|r| r.obj["status"] == "validating") {
        validate_now(inner, id);
    }
    let Some(rec) = inner.by_id.get_mut(id) else {
        return false;
    };
    if !matches!(rec.obj["status"].as_str(), Some("in_progress" | "finalizing")) {
        return false;
    }
    let batch_id = id.to_owned();
    finish(rec, &half_done(batch_id), "expired", None);
    write_result_files(inner, id);
    true
}

pub(crate) async fn admin_complete(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut inner = shared.inner.lock().expect("lock");
    if !complete(&mut inner, &id) {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!("batch {id} is finished or unknown"),
            None,
            None,
        );
    }
    admin_view(&inner, &id)
}

/// Ends an unfinished batch now, whatever its clock and the `stay_*` faults:
/// a validating one is validated first (and may fail there), a running or
/// finalizing one completes with every line answered, a cancelling one is
/// cancelled with partial results. False if it is finished, vanished or unknown.
pub(crate) fn complete(inner: &mut Inner, id: &str) -> bool {
    if crate::anthropic::owns(id) {
        return crate::anthropic::complete(inner, id);
    }
    let Some(status) = inner
        .by_id
        .get(id)
        .filter(|r| !r.vanished)
        .map(|r| r.obj["status"].as_str().unwrap_or("").to_owned())
    else {
        return false;
    };
    if ["completed", "failed", "expired", "cancelled"].contains(&status.as_str()) {
        return false;
    }
    if status == "validating" {
        validate_now(inner, id);
    }
    let rec = inner.by_id.get_mut(id).expect("exists");
    match rec.obj["status"].as_str() {
        Some("in_progress" | "finalizing") => {
            if rec.obj["finalizing_at"].is_null() {
                rec.obj["finalizing_at"] = json!(now_s());
            }
            finish(rec, &|_| true, "completed", None);
        }
        Some("cancelling") => cancel(rec, id),
        // Failed validation: ended, with its errors.
        _ => {}
    }
    write_result_files(inner, id);
    true
}

/// Model → tokens enqueued now and the peak, for every model a batch was created for.
pub(crate) async fn admin_enqueued(State(shared): State<Arc<Shared>>) -> Response {
    let inner = shared.inner.lock().expect("lock");
    let models: BTreeMap<&String, Value> = inner
        .peak_enqueued
        .iter()
        .map(|(m, peak)| (m, json!({"enqueued": limits::enqueued(&inner, m), "peak": peak})))
        .collect();
    Json(models).into_response()
}

// ---------------------------------------------------------------- server
