//! The Message Batches routes: create, retrieve, list, cancel, delete, results.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::lifecycle::advance;
use super::messages::prompt_tokens;
use super::{error, present, MsgBatch, Phase, ID_PREFIX};
use crate::files::listed;
use crate::state::{Inner, Shared, Submission};

/// Requests in one batch.
const MAX_REQUESTS: usize = 100_000;
/// Bytes of one create body.
const MAX_BODY_BYTES: usize = 256_000_000;

/// `http://host` of the request, for results URLs.
fn base(headers: &HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

fn bad(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request_error", message)
}

fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found_error",
        format!("No message batch found with id '{id}'."),
    )
}

fn valid_custom_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The requests of a create body, or why it gets a 400. Only the shape is
/// checked here; `params` are checked when the request runs.
fn read_requests(body: &[u8]) -> Result<Vec<(String, Value)>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("The request body is not valid JSON: {e}"))?;
    let Some(requests) = v.get("requests").and_then(Value::as_array) else {
        return Err("requests: Field required".into());
    };
    if requests.is_empty() {
        return Err("requests: List should have at least 1 item after validation, not 0".into());
    }
    if requests.len() > MAX_REQUESTS {
        return Err(format!(
            "requests: List should have at most {MAX_REQUESTS} items after validation, not {}",
            requests.len()
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        let Some(custom_id) = r.get("custom_id").and_then(Value::as_str) else {
            return Err(format!("requests.{i}.custom_id: Field required"));
        };
        if !valid_custom_id(custom_id) {
            return Err(format!(
                "requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
            ));
        }
        let Some(params) = r.get("params").filter(|p| p.is_object()) else {
            return Err(format!("requests.{i}.params: Field required"));
        };
        if !seen.insert(custom_id) {
            return Err(format!(
                "requests.{i}.custom_id: Duplicate custom_id '{custom_id}'; custom_id must be unique within a batch"
            ));
        }
        out.push((custom_id.to_owned(), params.clone()));
    }
    Ok(out)
}

/// `POST /v1/messages/batches`.
pub(crate) async fn create(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if body.len() > MAX_BODY_BYTES {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!("Request exceeds the maximum allowed number of bytes ({MAX_BODY_BYTES})."),
        );
    }
    let requests = match read_requests(&body) {
        Ok(r) => r,
        Err(message) => return bad(message),
    };
    let (hang, id) = {
        let mut inner = shared.inner.lock().expect("lock");
        inner.next += 1;
        let seq = inner.next;
        let id = format!(
            "{ID_PREFIX}01{:022x}",
            seq as u128 * 0x2545_f491_4f6c_dd1du128 % (1u128 << 88)
        );
        let faults = inner.config.faults.clone();
        inner.ledger.push(Submission {
            batch_id: id.clone(),
            input_file_id: String::new(),
            endpoint: "/v1/messages".into(),
            model: requests
                .iter()
                .find_map(|(_, p)| p.get("model").and_then(Value::as_str).map(str::to_owned)),
            custom_ids: requests.iter().map(|(c, _)| c.clone()).collect(),
            tokens: requests.iter().map(|(_, p)| prompt_tokens(p)).sum(),
        });
        let created_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        inner.anthropic.by_id.insert(
            id.clone(),
            MsgBatch {
                id: id.clone(),
                created_ms,
                created: Instant::now(),
                requests,
                phase: Phase::InProgress,
                cancel_initiated_ms: None,
                ended_ms: None,
                counts: [0; 4],
                results: Vec::new(),
                polls: 0,
                in_progress_polls: 0,
                canceling_polls: 0,
                faults: faults.clone(),
                gone: false,
            },
        );
        inner.anthropic.order.insert(seq, id.clone());
        (faults.hang_after_create_ms, id)
    };
    // The batch exists; a held answer is lost to a client that stops waiting.
    if let Some(ms) = hang {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let inner = shared.inner.lock().expect("lock");
    Json(present(&inner.anthropic.by_id[&id], &base(&headers))).into_response()
}

fn lookup<'a>(inner: &'a Inner, id: &str) -> Option<&'a MsgBatch> {
    inner.anthropic.by_id.get(id).filter(|b| !b.gone)
}

/// `GET /v1/messages/batches/{id}`: moves the batch along its clock first.
pub(crate) async fn retrieve(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut inner = shared.inner.lock().expect("lock");
    advance(&mut inner, &id);
    match lookup(&inner, &id) {
        Some(b) => {
            let mut v = present(b, &base(&headers));
            if let (Some(s), false) = (&b.faults.unknown_status, b.phase == Phase::Ended) {
                v["processing_status"] = json!(s);
            }
            Json(v).into_response()
        }
        None => not_found(&id),
    }
}

/// `POST /v1/messages/batches/{id}/cancel`: in_progress → canceling.
pub(crate) async fn cancel(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let mut inner = shared.inner.lock().expect("lock");
    let Some(b) = inner.anthropic.by_id.get_mut(&id).filter(|b| !b.gone) else {
        return not_found(&id);
    };
    match b.phase {
        Phase::Ended => return bad(format!("Message batch {id} has already ended and cannot be canceled.")),
        Phase::Canceling => {}
        Phase::InProgress => {
            b.phase = Phase::Canceling;
            b.cancel_initiated_ms = Some(crate::state::now_s() * 1000);
        }
    }
    Json(present(b, &base(&headers))).into_response()
}

/// `DELETE /v1/messages/batches/{id}`: ended batches only.
pub(crate) async fn delete(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut inner = shared.inner.lock().expect("lock");
    let Some(b) = inner.anthropic.by_id.get_mut(&id).filter(|b| !b.gone) else {
        return not_found(&id);
    };
    if b.phase != Phase::Ended {
        return bad(format!(
            "Message batch {id} is still processing and cannot be deleted; cancel it first."
        ));
    }
    b.gone = true;
    b.results.clear();
    Json(json!({"id": id, "type": "message_batch_deleted"})).into_response()
}

/// `GET /v1/messages/batches/{id}/results`: the result lines as JSONL.
pub(crate) async fn results(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let (body, cut_at) = {
        let mut inner = shared.inner.lock().expect("lock");
        let Some(b) = lookup(&inner, &id) else {
            return not_found(&id);
        };
        if b.phase != Phase::Ended {
            return bad(format!(
                "Message batch {id} has not ended; its results are not available yet."
            ));
        }
        let mut body = Vec::new();
        for l in &b.results {
            body.extend_from_slice(l.as_bytes());
            body.push(b'\n');
        }
        let f = &mut inner.config.faults;
        let cut_at = (f.cut_content > 0 && body.len() as u64 > f.cut_content_at_bytes).then(|| {
            f.cut_content -= 1;
            f.cut_content_at_bytes as usize
        });
        (Bytes::from(body), cut_at)
    };
    let len = body.len();
    let stream = match cut_at {
        // Cut short of the declared length: the connection drops once the
        // first part (and the status line) went out.
        Some(at) => futures::stream::iter([Ok(body.slice(..at))])
            .chain(futures::stream::once(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "download cut (fault)",
                ))
            }))
            .boxed(),
        None => futures::stream::iter([Ok::<_, std::io::Error>(body)]).boxed(),
    };
    Response::builder()
        .header("content-type", "application/binary")
        .header("content-length", len)
        .body(Body::from_stream(stream))
        .expect("response")
}

/// `GET /v1/messages/batches`: newest first; `after_id` pages to older
/// batches, `before_id` to newer ones; `limit` 1–1000 (default 20). Batches
/// younger than `list_lag_ms` are left out; a cursor may name one of them.
pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 20,
        Some(Ok(l)) if (1..=1000).contains(&l) => l,
        _ => return bad("limit: Input should be greater than or equal to 1 and less than or equal to 1000"),
    };
    let inner = shared.inner.lock().expect("lock");
    let all: Vec<&MsgBatch> = inner
        .anthropic
        .order
        .values()
        .rev()
        .filter_map(|id| lookup(&inner, id))
        .collect();
    let at = |cursor: &str| all.iter().position(|b| b.id == cursor);
    let (mut from, mut to) = (0, all.len());
    if let Some(after) = q.get("after_id") {
        from = at(after).map_or(all.len(), |p| p + 1);
    }
    if let Some(before) = q.get("before_id") {
        to = at(before).unwrap_or(0);
    }
    let shown: Vec<&MsgBatch> = all
        .get(from..to.max(from))
        .unwrap_or_default()
        .iter()
        .copied()
        .filter(|b| listed(b.created, &inner.config.faults))
        .collect();
    let (page, has_more) = if q.contains_key("before_id") && !q.contains_key("after_id") {
        // The newer side: the `limit` batches just before the cursor.
        let skip = shown.len().saturating_sub(limit);
        (&shown[skip..], skip > 0)
    } else {
        (&shown[..shown.len().min(limit)], shown.len() > limit)
    };
    let base = base(&headers);
    let data: Vec<Value> = page.iter().map(|b| present(b, &base)).collect();
    Json(json!({"data": data, "has_more": has_more,
                "first_id": data.first().map(|b| b["id"].clone()), "last_id": data.last().map(|b| b["id"].clone())}))
    .into_response()
}
