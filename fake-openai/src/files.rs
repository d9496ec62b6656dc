//! The Files API: upload, list, retrieve, delete, download.

use axum::body::Body;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api_error::api_error;
use crate::config::Faults;
use crate::state::{now_s, FileRec, Inner, Shared};

pub(crate) async fn upload(State(shared): State<Arc<Shared>>, mut form: Multipart) -> Response {
    let mut purpose = None;
    let mut stored: Option<(String, PathBuf, u64)> = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    format!("malformed multipart body: {e}"),
                    None,
                    None,
                )
            }
        };
        match field.name() {
            Some("purpose") => purpose = field.text().await.ok(),
            Some("file") => {
                let filename = field.file_name().unwrap_or("upload.jsonl").to_owned();
                let path = shared.dir.join(format!("upload-{}", uuid::Uuid::new_v4().simple()));
                let mut out = match tokio::fs::File::create(&path).await {
                    Ok(f) => f,
                    Err(e) => return api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None, None),
                };
                let mut field = field;
                let mut n = 0u64;
                loop {
                    match field.chunk().await {
                        Ok(Some(chunk)) => {
                            n += chunk.len() as u64;
                            if out.write_all(&chunk).await.is_err() {
                                return api_error(StatusCode::INTERNAL_SERVER_ERROR, "disk write failed", None, None);
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            return api_error(StatusCode::BAD_REQUEST, format!("upload interrupted: {e}"), None, None)
                        }
                    }
                }
                let _ = out.flush().await;
                stored = Some((filename, path, n));
            }
            _ => {}
        }
    }
    let Some(purpose) = purpose else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "Missing required parameter: 'purpose'.",
            None,
            Some("purpose"),
        );
    };
    const PURPOSES: &[&str] = &["assistants", "batch", "fine-tune", "vision", "user_data", "evals"];
    if !PURPOSES.contains(&purpose.as_str()) {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!("Invalid purpose: '{purpose}'."),
            None,
            Some("purpose"),
        );
    }
    let Some((filename, path, bytes)) = stored else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "Missing required parameter: 'file'.",
            None,
            Some("file"),
        );
    };
    if bytes > 512 * 1024 * 1024 {
        let _ = std::fs::remove_file(&path);
        return api_error(
            StatusCode::BAD_REQUEST,
            "File is larger than 512 MB.",
            None,
            Some("file"),
        );
    }
    let mut inner = shared.inner.lock().expect("lock");
    let meta = new_file(&mut inner, &filename, &purpose, path, bytes);
    Json(meta).into_response()
}

pub(crate) fn new_file(inner: &mut Inner, filename: &str, purpose: &str, path: PathBuf, bytes: u64) -> Value {
    inner.next += 1;
    let id = format!(
        "file-{:024x}",
        inner.next as u128 * 0x9e37_79b9_7f4a_7c15u128 % (1u128 << 96)
    );
    let created = now_s();
    let expires_at = if purpose == "batch" {
        Some(created + 30 * 86_400)
    } else {
        None
    };
    let meta = json!({"id": id, "object": "file", "bytes": bytes, "created_at": created, "filename": filename,
                      "purpose": purpose, "status": "processed", "expires_at": expires_at, "status_details": null});
    inner.files.insert(
        id.clone(),
        FileRec {
            meta: meta.clone(),
            path,
            bytes,
            created: Instant::now(),
        },
    );
    inner.file_order.push(id);
    meta
}

/// A list route's `limit` (1..=max, `default` when absent), or the API's 400.
pub(crate) fn limit_param(q: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, Box<Response>> {
    match q.get("limit").map(|l| l.parse::<usize>()) {
        None => Ok(default),
        Some(Ok(l)) if (1..=max).contains(&l) => Ok(l),
        _ => Err(Box::new(api_error(
            StatusCode::BAD_REQUEST,
            format!("limit must be between 1 and {max}."),
            None,
            Some("limit"),
        ))),
    }
}

/// Whether a list shows something created at `created` (`list_lag_ms`).
pub(crate) fn listed(created: Instant, faults: &Faults) -> bool {
    created.elapsed() >= Duration::from_millis(faults.list_lag_ms)
}

/// `GET /files`: `purpose` filter, `order` (`desc`, the default, or
/// `asc` by creation), `limit` (1–10,000, default 10,000) and `after` (a
/// file id) as documented. Files younger than `list_lag_ms` are left out;
/// `after` may name one of them (a client knows the ids it uploaded).
pub(crate) async fn list_files(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let limit = match limit_param(&q, 10_000, 10_000) {
        Ok(l) => l,
        Err(resp) => return *resp,
    };
    let inner = shared.inner.lock().expect("lock");
    let mut files: Vec<&FileRec> = inner
        .file_order
        .iter()
        .filter_map(|id| inner.files.get(id))
        .filter(|f| q.get("purpose").is_none_or(|p| f.meta["purpose"] == p.as_str()))
        .collect();
    if q.get("order").map(String::as_str) != Some("asc") {
        files.reverse();
    }
    if let Some(after) = q.get("after") {
        match files.iter().position(|f| f.meta["id"].as_str() == Some(after.as_str())) {
            Some(p) => files = files.split_off(p + 1),
            None => files.clear(),
        }
    }
    // Lagged before paging, so `has_more` speaks of the files this list shows.
    files.retain(|f| listed(f.created, &inner.config.faults));
    let has_more = files.len() > limit;
    files.truncate(limit);
    let data: Vec<Value> = files.into_iter().map(|f| f.meta.clone()).collect();
    Json(json!({"object": "list", "data": data,
                "first_id": data.first().map(|f| f["id"].clone()), "last_id": data.last().map(|f| f["id"].clone()),
                "has_more": has_more}))
    .into_response()
}

pub(crate) async fn get_file(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let inner = shared.inner.lock().expect("lock");
    match inner.files.get(&id) {
        Some(f) => Json(f.meta.clone()).into_response(),
        None => api_error(
            StatusCode::NOT_FOUND,
            format!("No such File object: {id}"),
            None,
            Some("id"),
        ),
    }
}

pub(crate) async fn delete_file(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut inner = shared.inner.lock().expect("lock");
    match inner.files.remove(&id) {
        Some(f) => {
            let _ = std::fs::remove_file(&f.path);
            inner.file_order.retain(|x| x != &id);
            Json(json!({"id": id, "object": "file", "deleted": true})).into_response()
        }
        None => api_error(
            StatusCode::NOT_FOUND,
            format!("No such File object: {id}"),
            None,
            Some("id"),
        ),
    }
}

pub(crate) async fn file_content(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let (rec, cut_at) = {
        let mut inner = shared.inner.lock().expect("lock");
        let rec = inner.files.get(&id).cloned();
        let f = &mut inner.config.faults;
        let cut_at = match &rec {
            Some(r) if f.cut_content > 0 && r.bytes > f.cut_content_at_bytes => {
                f.cut_content -= 1;
                Some(f.cut_content_at_bytes)
            }
            _ => None,
        };
        (rec, cut_at)
    };
    let Some(rec) = rec else {
        return api_error(
            StatusCode::NOT_FOUND,
            format!("No such File object: {id}"),
            None,
            Some("id"),
        );
    };
    let file = match tokio::fs::File::open(&rec.path).await {
        Ok(f) => f,
        Err(e) => return api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None, None),
    };
    // (file, bytes sent so far); a cut download ends with an error, which
    // makes the server drop the connection before the declared length.
    let stream = futures::stream::unfold(Some((file, 0u64)), move |state| async move {
        let (mut f, sent) = state?;
        if cut_at.is_some_and(|at| sent >= at) {
            let e = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "download cut (fault)");
            return Some((Err(e), None));
        }
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                let n = cut_at.map_or(n, |at| n.min((at - sent) as usize));
                buf.truncate(n);
                Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::from(buf)),
                    Some((f, sent + n as u64)),
                ))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Response::builder()
        .header("content-type", "application/octet-stream")
        .header("content-length", rec.bytes)
        .body(Body::from_stream(stream))
        .expect("response")
}
