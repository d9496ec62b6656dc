//! Together AI's variant, under `/together/v1/...`: upload at
//! `/files/upload` (or `/files`) with `purpose=batch-api` and `file_name`;
//! input lines `{custom_id, body}` without method or url (custom_id up to
//! 64 characters); create answers `{job, warning}` (201) and takes no
//! metadata and a `completion_window` of `24h` only; retrieve, cancel and
//! list (a bare array, newest first, no paging) answer Together's job shape
//! (`shape::job`). The lifecycle, results and injected faults are the
//! OpenAI batch's underneath: create rewrites the input into OpenAI lines
//! (a hidden file) and creates an OpenAI batch from it.

mod shape;

use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::io::Write;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

use crate::api_error::api_error;
use crate::batches::{cancel_batch, create_batch, lookup, no_batch, retrieve_batch};
use crate::files::{delete_file, file_content, listed, new_file};
use crate::lifecycle::read_lines;
use crate::routes::guard;
use crate::state::{Flavor, Inner, Shared};

/// Marks files and batches made through the Together routes.
const FLAVOR: &str = "_flavor";
const INPUT: &str = "_together_input";
const MAX_CUSTOM_ID: usize = 64;

async fn upload(State(shared): State<Arc<Shared>>, mut form: Multipart) -> Response {
    let (mut purpose, mut name, mut stored) = (None, None, None);
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
            Some("file_name") => name = field.text().await.ok(),
            Some("file") => {
                let filename = field.file_name().unwrap_or("upload.jsonl").to_owned();
                let path = shared.dir.join(format!("upload-{}", uuid::Uuid::new_v4().simple()));
                let Ok(mut out) = tokio::fs::File::create(&path).await else {
                    return api_error(StatusCode::INTERNAL_SERVER_ERROR, "disk full", None, None);
                };
                let (mut field, mut n, mut lines) = (field, 0u64, 0u64);
                loop {
                    match field.chunk().await {
                        Ok(Some(chunk)) => {
                            n += chunk.len() as u64;
                            lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
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
                stored = Some((filename, path, n, lines));
            }
            _ => {}
        }
    }
    let purpose = purpose.unwrap_or_default();
    if !["batch-api", "fine-tune", "eval"].contains(&purpose.as_str()) {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!("Invalid purpose '{purpose}': expected batch-api, fine-tune or eval."),
            None,
            Some("purpose"),
        );
    }
    let Some((filename, path, bytes, lines)) = stored else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "Missing required field: 'file'.",
            None,
            Some("file"),
        );
    };
    let mut inner = shared.inner.lock().expect("lock");
    let mut meta = new_file(&mut inner, name.as_deref().unwrap_or(&filename), &purpose, path, bytes);
    meta[FLAVOR] = "together".into();
    meta["line_count"] = lines.into();
    let id = meta["id"].as_str().unwrap_or("").to_owned();
    if let Some(f) = inner.files.get_mut(&id) {
        f.meta = meta.clone();
    }
    Json(shape::file(&meta)).into_response()
}

async fn list_files(State(shared): State<Arc<Shared>>) -> Response {
    let inner = shared.inner.lock().expect("lock");
    let data: Vec<Value> = inner
        .file_order
        .iter()
        .rev()
        .filter_map(|id| inner.files.get(id))
        .filter(|f| f.meta[FLAVOR] == "together" && listed(f.created, &inner.config.faults))
        .map(|f| shape::file(&f.meta))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

async fn get_file(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let inner = shared.inner.lock().expect("lock");
    match inner.files.get(&id) {
        Some(f) => Json(shape::file(&f.meta)).into_response(),
        None => api_error(StatusCode::NOT_FOUND, format!("File {id} not found"), None, Some("id")),
    }
}

/// The input file's OpenAI lines, written as a hidden `batch` file: its id.
/// Lines that are not Together lines are copied as they are, for the
/// batch's validation to refuse by line number.
fn openai_input(inner: &mut Inner, input_file_id: &str, endpoint: &str) -> Result<String, String> {
    let file = inner
        .files
        .get(input_file_id)
        .cloned()
        .ok_or_else(|| format!("File {input_file_id} not found"))?;
    let path = inner.dir.join(format!("together-{}", uuid::Uuid::new_v4().simple()));
    let mut out = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    let mut n = 0u64;
    for line in read_lines(&file.path) {
        let text = match line {
            Ok(Value::Object(mut m)) if m.contains_key("custom_id") && !m.contains_key("url") => {
                if m["custom_id"].as_str().is_some_and(|c| c.len() > MAX_CUSTOM_ID) {
                    m.remove("custom_id");
                }
                m.insert("method".into(), "POST".into());
                m.insert("url".into(), endpoint.into());
                Value::Object(m).to_string()
            }
            // Method and url are not Together's: the line is refused.
            Ok(Value::Object(mut m)) => {
                m.remove("method");
                Value::Object(m).to_string()
            }
            Ok(other) => other.to_string(),
            Err(_) => "{not json".to_owned(),
        };
        out.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
        out.write_all(b"\n").map_err(|e| e.to_string())?;
        n += text.len() as u64 + 1;
    }
    let name = format!("{input_file_id}.openai.jsonl");
    let mut meta = new_file(inner, &name, "batch", path, n);
    meta[FLAVOR] = "together-internal".into();
    let id = meta["id"].as_str().unwrap_or("").to_owned();
    if let Some(f) = inner.files.get_mut(&id) {
        f.meta = meta;
    }
    Ok(id)
}

/// A Together batch by id, in Together's shape (`None`: not one of them).
fn present(inner: &Inner, id: &str) -> Option<Value> {
    let obj = lookup(inner, id)?;
    let input = inner.by_id.get(id)?.obj["metadata"][INPUT].as_str()?.to_owned();
    let bytes = inner.files.get(&input).map_or(0, |f| f.bytes);
    Some(shape::job(&obj, &input, bytes))
}

fn is_together(inner: &Inner, id: &str) -> bool {
    inner
        .by_id
        .get(id)
        .is_some_and(|r| r.obj["metadata"][INPUT].is_string())
}

async fn create(State(shared): State<Arc<Shared>>, body: Option<Json<Value>>) -> Response {
    let Some(Json(raw)) = body else {
        return api_error(StatusCode::BAD_REQUEST, "The body must be a JSON object.", None, None);
    };
    let Some(input) = raw["input_file_id"].as_str().map(str::to_owned) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "input_file_id is required",
            None,
            Some("input_file_id"),
        );
    };
    let endpoint = raw["endpoint"].as_str().unwrap_or("").to_owned();
    if !["/v1/chat/completions", "/v1/completions"].contains(&endpoint.as_str()) {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!("Unsupported endpoint '{endpoint}'"),
            None,
            Some("endpoint"),
        );
    }
    match raw.get("completion_window").and_then(Value::as_str) {
        None | Some("24h") => {}
        Some(w) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                format!("completion_window '{w}' is not supported: batches complete within 24h"),
                None,
                Some("completion_window"),
            )
        }
    }
    let hidden = {
        let mut inner = shared.inner.lock().expect("lock");
        match inner.files.get(&input) {
            Some(f) if f.meta["purpose"] == "batch-api" => {}
            Some(_) => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "The input file must have purpose 'batch-api'.",
                    None,
                    Some("input_file_id"),
                )
            }
            None => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    format!("File {input} not found"),
                    None,
                    Some("input_file_id"),
                )
            }
        }
        match openai_input(&mut inner, &input, &endpoint) {
            Ok(id) => id,
            Err(e) => return api_error(StatusCode::INTERNAL_SERVER_ERROR, e, None, None),
        }
    };
    // The batch is marked as Together's as soon as it exists (a held
    // answer must not leave it in the OpenAI listing only).
    let body = json!({"input_file_id": hidden, "endpoint": endpoint, "completion_window": "24h",
                      "metadata": {INPUT: input}});
    let resp = create_batch(State(shared.clone()), Some(Json(body))).await;
    if !resp.status().is_success() {
        return resp;
    }
    let Ok(bytes) = axum::body::to_bytes(resp.into_body(), usize::MAX).await else {
        return api_error(StatusCode::INTERNAL_SERVER_ERROR, "create lost its answer", None, None);
    };
    let id = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let inner = shared.inner.lock().expect("lock");
    match present(&inner, &id) {
        Some(job) => (StatusCode::CREATED, Json(json!({"job": job, "warning": null}))).into_response(),
        None => api_error(StatusCode::INTERNAL_SERVER_ERROR, "the batch vanished", None, None),
    }
}

async fn retrieve(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    if !is_together(&shared.inner.lock().expect("lock"), &id) {
        return no_batch(&id);
    }
    let resp = retrieve_batch(State(shared.clone()), Path(id.clone())).await;
    if !resp.status().is_success() {
        return resp;
    }
    let inner = shared.inner.lock().expect("lock");
    // An injected unknown status shows through, upper case.
    let unknown = inner.by_id.get(&id).and_then(|r| r.faults.unknown_status.clone());
    match present(&inner, &id) {
        Some(mut job) => {
            let unfinished = ["VALIDATING", "IN_PROGRESS", "CANCELING"].contains(&job["status"].as_str().unwrap_or(""));
            if let (Some(s), true) = (unknown, unfinished) {
                job["status"] = shape::status(&s).into();
            }
            Json(job).into_response()
        }
        None => no_batch(&id),
    }
}

async fn cancel(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    if !is_together(&shared.inner.lock().expect("lock"), &id) {
        return no_batch(&id);
    }
    let resp = cancel_batch(State(shared.clone()), Path(id.clone())).await;
    if !resp.status().is_success() {
        return resp;
    }
    let inner = shared.inner.lock().expect("lock");
    present(&inner, &id).map_or_else(|| no_batch(&id), |job| Json(job).into_response())
}

async fn list(State(shared): State<Arc<Shared>>) -> Response {
    let inner = shared.inner.lock().expect("lock");
    let data: Vec<Value> = inner
        .batches
        .values()
        .rev()
        .filter(|id| {
            inner
                .by_id
                .get(*id)
                .is_some_and(|r| listed(r.created, &inner.config.faults))
        })
        .filter_map(|id| present(&inner, id))
        .collect();
    Json(data).into_response()
}

/// The Together routes, nested under `/together/v1`.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/files", post(upload).get(list_files))
        .route("/files/upload", post(upload))
        .route("/files/{id}", get(get_file).delete(delete_file))
        .route("/files/{id}/content", get(file_content))
        .route("/batches", post(create).get(list))
        .route("/batches/{id}", get(retrieve))
        .route("/batches/{id}/cancel", post(cancel))
        .route_layer(middleware::from_fn_with_state((shared.clone(), Flavor::OpenAi), guard))
        .with_state(shared)
}
