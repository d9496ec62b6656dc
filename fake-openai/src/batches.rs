//! The Batch API's routes: create, retrieve, cancel, list.

use crate::limits;
use crate::responses;
use crate::ENDPOINTS;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api_error::api_error;
use crate::files::{limit_param, listed};
use crate::lifecycle::{advance, present, read_lines};
use crate::state::{now_s, BatchRec, Inner, Shared, Submission};

#[derive(Deserialize)]
pub(crate) struct CreateBody {
    pub(crate) input_file_id: Option<Value>,
    pub(crate) endpoint: Option<Value>,
    pub(crate) completion_window: Option<Value>,
    pub(crate) metadata: Option<Value>,
}

pub(crate) async fn create_batch(State(shared): State<Arc<Shared>>, body: Option<Json<Value>>) -> Response {
    let Some(Json(raw)) = body else {
        return api_error(StatusCode::BAD_REQUEST, "The body must be a JSON object.", None, None);
    };
    let b: CreateBody = match serde_json::from_value(raw) {
        Ok(b) => b,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, e.to_string(), None, None),
    };
    let Some(input_file_id) = b.input_file_id.as_ref().and_then(Value::as_str).map(str::to_owned) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "Missing required parameter: 'input_file_id'.",
            None,
            Some("input_file_id"),
        );
    };
    let Some(endpoint) = b.endpoint.as_ref().and_then(Value::as_str).map(str::to_owned) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "Missing required parameter: 'endpoint'.",
            None,
            Some("endpoint"),
        );
    };
    // Azure names endpoints without the /v1 prefix; normalise.
    let endpoint_v1 = if endpoint.starts_with("/v1/") {
        endpoint.clone()
    } else {
        format!("/v1{endpoint}")
    };
    if !ENDPOINTS.contains(&endpoint_v1.as_str()) {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!("Invalid endpoint: '{endpoint}'."),
            None,
            Some("endpoint"),
        );
    }
    if b.completion_window.as_ref().and_then(Value::as_str) != Some("24h") {
        return api_error(
            StatusCode::BAD_REQUEST,
            "completion_window must be '24h'.",
            None,
            Some("completion_window"),
        );
    }
    let metadata = match &b.metadata {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => {
            if m.len() > 16
                || m.iter()
                    .any(|(k, v)| k.len() > 64 || v.as_str().is_none_or(|s| s.len() > 512))
            {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "metadata: at most 16 pairs, keys up to 64 and string values up to 512 characters.",
                    None,
                    Some("metadata"),
                );
            }
            Some(Value::Object(m.clone()))
        }
        Some(_) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "metadata must be an object.",
                None,
                Some("metadata"),
            )
        }
    };
    let (hang, id) = {
        let mut inner = shared.inner.lock().expect("lock");
        let Some(file) = inner.files.get(&input_file_id).cloned() else {
            return api_error(
                StatusCode::BAD_REQUEST,
                format!("Invalid file id: '{input_file_id}'."),
                None,
                Some("input_file_id"),
            );
        };
        if file.meta["purpose"] != "batch" {
            return api_error(
                StatusCode::BAD_REQUEST,
                "The input file must have purpose 'batch'.",
                None,
                Some("input_file_id"),
            );
        }
        inner.next += 1;
        let seq = inner.next;
        let id = format!("batch_{:024x}", seq as u128 * 0x2545_f491_4f6c_dd1du128 % (1u128 << 96));
        let created = now_s();
        let lines = read_lines(&file.path);
        let custom_ids: Vec<String> = lines
            .iter()
            .filter_map(|l| l.as_ref().ok())
            .filter_map(|v| v.get("custom_id").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let model = lines
            .iter()
            .filter_map(|l| l.as_ref().ok())
            .find_map(|v| v.pointer("/body/model").and_then(Value::as_str).map(str::to_owned));
        // Lines without a body fail validation, and then the count is moot.
        let tokens = lines
            .iter()
            .filter_map(|l| l.as_ref().ok())
            .filter_map(|v| v.get("body").filter(|b| b.is_object()))
            .map(|b| responses::prompt_tokens(&endpoint_v1, b))
            .sum();
        inner.ledger.push(Submission {
            batch_id: id.clone(),
            input_file_id: input_file_id.clone(),
            endpoint: endpoint_v1.clone(),
            model: model.clone(),
            custom_ids,
            tokens,
        });
        let model = model.unwrap_or_default();
        let obj = json!({
            "id": id, "object": "batch", "endpoint": endpoint, "model": null, "errors": null,
            "input_file_id": input_file_id, "completion_window": "24h", "status": "validating",
            "output_file_id": null, "error_file_id": null, "created_at": created, "in_progress_at": null,
            "expires_at": created + 86_400, "finalizing_at": null, "completed_at": null, "failed_at": null,
            "expired_at": null, "cancelling_at": null, "cancelled_at": null,
            "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": metadata, "usage": null
        });
        let faults = inner.config.faults.clone();
        inner.by_id.insert(
            id.clone(),
            BatchRec {
                obj,
                seq,
                created: Instant::now(),
                model: model.clone(),
                tokens,
                polls: 0,
                in_progress_polls: 0,
                finalizing_polls: 0,
                cancelling_polls: 0,
                faults: faults.clone(),
                lines: Vec::new(),
                cancel_requested: false,
                vanished: false,
                notified: false,
            },
        );
        inner.batches.insert(seq, id.clone());
        limits::note_peak(&mut inner, &model);
        (faults.hang_after_create_ms, id)
    };
    if let Some(ms) = hang {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let obj = present(&shared.inner.lock().expect("lock").by_id[&id]);
    Json(obj).into_response()
}

pub(crate) fn lookup(inner: &Inner, id: &str) -> Option<Value> {
    inner.by_id.get(id).filter(|r| !r.vanished).map(present)
}

pub(crate) fn no_batch(id: &str) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        format!("No batch found with id '{id}'."),
        None,
        Some("batch_id"),
    )
}

pub(crate) async fn retrieve_batch(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut inner = shared.inner.lock().expect("lock");
    advance(&mut inner, &id);
    let unknown = inner.by_id.get(&id).and_then(|r| r.faults.unknown_status.clone());
    match lookup(&inner, &id) {
        Some(mut v) => {
            let finished =
                ["completed", "failed", "expired", "cancelled"].contains(&v["status"].as_str().unwrap_or(""));
            if let (Some(s), false) = (unknown, finished) {
                v["status"] = s.into();
            }
            Json(v).into_response()
        }
        None => no_batch(&id),
    }
}

pub(crate) async fn cancel_batch(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut inner = shared.inner.lock().expect("lock");
    let Some(v) = lookup(&inner, &id) else {
        return no_batch(&id);
    };
    let status = v["status"].as_str().unwrap_or("").to_owned();
    if ["completed", "failed", "expired", "cancelled"].contains(&status.as_str()) {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!("Cannot cancel a batch with status '{status}'."),
            None,
            None,
        );
    }
    let rec = inner.by_id.get_mut(&id).expect("exists");
    // Cancelled while validating: it never ran, so it ends with no results.
    rec.cancel_requested = true;
    if status != "cancelling" {
        rec.obj["status"] = json!("cancelling");
        rec.obj["cancelling_at"] = json!(now_s());
    }
    Json(present(rec)).into_response()
}

pub(crate) async fn list_batches(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let limit = match limit_param(&q, 20, 100) {
        Ok(l) => l,
        Err(resp) => return *resp,
    };
    let inner = shared.inner.lock().expect("lock");
    let mut ids: Vec<&String> = inner.batches.values().rev().collect();
    // `after` is placed in the full order: it may name a batch the lag still
    // hides (a client knows the ids it created).
    if let Some(after) = q.get("after") {
        match ids.iter().position(|i| *i == after) {
            Some(p) => ids = ids.split_off(p + 1),
            None => ids.clear(),
        }
    }
    // Hidden batches are left out before paging, so a page is full whenever
    // `has_more` says more follow.
    let mut shown: Vec<&BatchRec> = ids
        .iter()
        .filter_map(|i| inner.by_id.get(*i))
        .filter(|r| !r.vanished && listed(r.created, &inner.config.faults))
        .collect();
    let has_more = shown.len() > limit;
    shown.truncate(limit);
    let data: Vec<Value> = shown.into_iter().map(present).collect();
    Json(json!({"object": "list", "data": data,
                "first_id": data.first().map(|b| b["id"].clone()), "last_id": data.last().map(|b| b["id"].clone()),
                "has_more": has_more}))
    .into_response()
}

// ---------------------------------------------------------------- admin
