//! An offline fake of the OpenAI Files + Batch API, and Azure OpenAI's variant
//! (`/openai/...`, `api-key` header, `api-version` query). It follows the
//! documented behaviour, failures included: validation failures with line
//! numbers, expiry and cancellation with partial results, per-line errors in
//! the error file, shuffled output, `""` file ids, vanishing batches,
//! per-model enqueued-token limits (`token_limit_exceeded`), the embeddings
//! input cap, lists that lag behind creation, rate limiting with
//! `Retry-After`, lost responses, results lost for some lines, and downloads
//! cut short. Used in-process by tests (`FakeServer::start`) and standalone
//! (`fake-openai --port N`).
//!
//! Error codes: `token_limit_exceeded` and `batch_expired` / `batch_cancelled`
//! are documented; the validation codes (`invalid_json_line`,
//! `duplicate_custom_id`, `mismatched_model`, …) are our best reading and
//! could not all be confirmed against the live service.

mod limits;
pub mod responses;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Multipart, Path, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use responses::respond;

/// Endpoints a batch may target.
pub const ENDPOINTS: &[&str] = &[
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
];

/// Fault knobs. Route names: `upload`, `list_files`, `file`, `content`,
/// `delete`, `create`, `list`, `retrieve`, `cancel`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// The next N calls to a route answer 429 with `Retry-After`.
    pub http_429: HashMap<String, u32>,
    /// The next N calls to a route answer 500.
    pub http_500: HashMap<String, u32>,
    /// The next N calls to a route answer 400 `invalid_request_error` (a
    /// refusal that retrying does not fix).
    pub http_400: HashMap<String, u32>,
    /// A steady rate: every k-th call to a route answers 429 (k = 2 is 50%).
    pub http_429_every: HashMap<String, u32>,
    /// Every k-th call to a route answers 500.
    pub http_500_every: HashMap<String, u32>,
    /// `retry-after-ms` sent with 429s (`Retry-After` gets it rounded up to seconds).
    pub retry_after_ms: u64,
    /// Delay before answering, per route.
    pub delay_ms: HashMap<String, u64>,
    /// New batches stay `validating` for this many retrieves.
    pub stay_validating_polls: u32,
    /// New batches stay `in_progress` for this many retrieves after
    /// validation (their tokens stay enqueued meanwhile).
    pub stay_in_progress_polls: u32,
    /// New batches stay `finalizing` for this many retrieves.
    pub stay_finalizing_polls: u32,
    /// New batches, once cancelled, stay `cancelling` for this many retrieves.
    pub stay_cancelling_polls: u32,
    /// New batches fail with `token_limit_exceeded` (the queue is full),
    /// whatever the limits below.
    pub token_limit_exceeded: bool,
    /// Enqueued-token limit per model: a batch whose prompt tokens, added to
    /// those of its model's batches in progress or validating ahead of it,
    /// exceed this fails validation with `token_limit_exceeded`. Read when a
    /// batch is validated, so a change applies to batches already created.
    pub enqueued_token_limits: HashMap<String, u64>,
    /// The limit of models absent from `enqueued_token_limits` (None: unlimited).
    pub default_enqueued_token_limit: Option<u64>,
    /// `GET /files` and `GET /batches` list only what was created at least
    /// this long ago, as the real, eventually consistent lists do; retrieving
    /// by id sees everything at once.
    pub list_lag_ms: u64,
    /// Every line of new batches fails: completed with no output file.
    pub all_lines_fail: bool,
    /// Absent file ids are sent as `""` instead of null.
    pub empty_string_file_ids: bool,
    /// New batches answer 404 after this many retrieves.
    pub vanish_after_polls: Option<u32>,
    /// Create records the batch, then holds the response this long (a client
    /// with a shorter read timeout sees a transport error, no response).
    pub hang_after_create_ms: Option<u64>,
    /// Share (0–100) of lines failing with `fail_status`, chosen by hashing the custom_id.
    pub fail_percent: u32,
    /// Lines whose custom_id starts with this fail with `fail_status`.
    pub fail_prefix: Option<String>,
    /// HTTP status of failing lines (default 500).
    pub fail_status: Option<u16>,
    /// Retrieve reports this status (one a client does not know yet, as a
    /// future API version might add) while the batch is unfinished.
    pub unknown_status: Option<String>,
    /// Lines of new batches whose custom_id is listed get no result line
    /// at all, in neither file: the provider ends the batch without a
    /// result for them.
    pub lose_custom_ids: Vec<String>,
    /// The next N downloads (`content`) of a file larger than
    /// `cut_content_at_bytes` break off there: the connection closes short
    /// of the declared length, as a transfer dropped mid-way.
    pub cut_content: u32,
    pub cut_content_at_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct FakeConfig {
    pub api_key: String,
    pub host: String,
    pub port: u16,
    /// Duration of each phase; 0 = a retrieve after create sees the batch finished.
    pub step_ms: u64,
    pub max_lines: u64,
    pub max_bytes: u64,
    /// Embedding inputs an `/v1/embeddings` batch may carry across all its
    /// requests (a string input is one, an array one per element).
    pub max_embedding_inputs: u64,
    pub data_dir: Option<PathBuf>,
    pub faults: Faults,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            api_key: "sk-fake".into(),
            host: "127.0.0.1".into(),
            port: 0,
            step_ms: 0,
            max_lines: 50_000,
            max_bytes: 200_000_000,
            max_embedding_inputs: 50_000,
            data_dir: None,
            faults: Faults::default(),
        }
    }
}

/// One request the fake received.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: String,
    pub route: String,
    pub status: u16,
}

/// One created batch and the custom_ids its input held.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Submission {
    pub batch_id: String,
    pub input_file_id: String,
    pub endpoint: String,
    pub model: Option<String>,
    pub custom_ids: Vec<String>,
    /// Its prompt tokens, as counted against its model's enqueued-token
    /// limit: the sum over its lines of what `respond` reports as prompt
    /// (or input) tokens.
    pub tokens: u64,
}

#[derive(Debug, Clone)]
struct FileRec {
    meta: Value,
    path: PathBuf,
    bytes: u64,
    /// For the listing lag.
    created: Instant,
}

#[derive(Debug, Clone)]
struct Line {
    custom_id: String,
    body: Value,
}

#[derive(Debug, Clone)]
struct BatchRec {
    obj: Value,
    /// Creation order, for who is ahead in a model's token queue.
    seq: u64,
    created: Instant,
    /// The model of its lines ("" when they name none) and their prompt
    /// tokens, read at create for the enqueued-token limits.
    model: String,
    tokens: u64,
    polls: u32,
    in_progress_polls: u32,
    finalizing_polls: u32,
    cancelling_polls: u32,
    faults: Faults,
    lines: Vec<Line>,
    cancel_requested: bool,
    vanished: bool,
}

struct Inner {
    config: FakeConfig,
    dir: PathBuf,
    files: HashMap<String, FileRec>,
    file_order: Vec<String>,
    batches: BTreeMap<u64, String>,
    by_id: HashMap<String, BatchRec>,
    log: Vec<LogEntry>,
    ledger: Vec<Submission>,
    next: u64,
    /// Calls per route so far, for the `*_every` rates.
    route_calls: HashMap<String, u32>,
    /// Model → the most tokens its batches ever held at once.
    peak_enqueued: HashMap<String, u64>,
}

struct Shared {
    inner: Mutex<Inner>,
    dir: PathBuf,
    owns_dir: bool,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    OpenAi,
    Azure,
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn api_error(status: StatusCode, message: impl Into<String>, code: Option<&str>, param: Option<&str>) -> Response {
    (
        status,
        Json(json!({"error": {"message": message.into(), "type": "invalid_request_error", "param": param, "code": code}})),
    )
        .into_response()
}

fn route_name(method: &Method, path: &str) -> &'static str {
    let p = path.trim_start_matches("/v1").trim_start_matches("/openai");
    match (method.as_str(), p) {
        ("POST", "/files") => "upload",
        ("GET", "/files") => "list_files",
        ("GET", "/files/{id}") => "file",
        ("DELETE", "/files/{id}") => "delete",
        ("GET", "/files/{id}/content") => "content",
        ("POST", "/batches") => "create",
        ("GET", "/batches") => "list",
        ("GET", "/batches/{id}") => "retrieve",
        ("POST", "/batches/{id}/cancel") => "cancel",
        _ => "other",
    }
}

/// Auth, api-version, injected faults and the request log, for every API route.
async fn guard(State((shared, flavor)): State<(Arc<Shared>, Flavor)>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let uri = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.0.clone())
        .unwrap_or_else(|| req.uri().clone());
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or("").to_owned();
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| path.clone());
    let route = route_name(&method, &matched);
    let headers = req.headers().clone();

    // Logged on arrival (status 0 until answered), so a request whose answer
    // is held back is visible while it hangs.
    let (key, faults, slot) = {
        let mut inner = shared.inner.lock().expect("lock");
        let seq = inner.log.len() as u64 + 1;
        inner.log.push(LogEntry {
            seq,
            method: method.to_string(),
            path,
            query: query.clone(),
            route: route.into(),
            status: 0,
        });
        (
            inner.config.api_key.clone(),
            inner.config.faults.clone(),
            seq as usize - 1,
        )
    };
    let early = {
        let authed = match flavor {
            Flavor::OpenAi => headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == format!("Bearer {key}")),
            Flavor::Azure => headers.get("api-key").and_then(|v| v.to_str().ok()) == Some(key.as_str()),
        };
        if !authed {
            Some(api_error(
                StatusCode::UNAUTHORIZED,
                "Incorrect API key provided. You can find your API key in your account settings.",
                Some("invalid_api_key"),
                None,
            ))
        } else if flavor == Flavor::Azure && !query.split('&').any(|kv| kv.starts_with("api-version=")) {
            Some(api_error(
                StatusCode::BAD_REQUEST,
                "Missing required query parameter: api-version",
                Some("missing_api_version"),
                Some("api-version"),
            ))
        } else {
            None
        }
    };
    if let Some(d) = faults.delay_ms.get(route) {
        tokio::time::sleep(Duration::from_millis(*d)).await;
    }
    let injected = if early.is_some() {
        early
    } else {
        let mut inner = shared.inner.lock().expect("lock");
        let calls = {
            let c = inner.route_calls.entry(route.to_owned()).or_insert(0);
            *c += 1;
            *c
        };
        let f = &mut inner.config.faults;
        let every = |m: &HashMap<String, u32>| m.get(route).is_some_and(|k| *k > 0 && calls.is_multiple_of(*k));
        let rate_429 = every(&f.http_429_every);
        let rate_500 = every(&f.http_500_every);
        let next_429 = f.http_429.get_mut(route).filter(|n| **n > 0).map(|n| *n -= 1).is_some();
        if next_429 || rate_429 {
            let ms = f.retry_after_ms;
            let mut r = api_error(
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit reached for requests. Please try again later.",
                Some("rate_limit_exceeded"),
                None,
            );
            r.headers_mut()
                .insert("retry-after-ms", ms.to_string().parse().expect("header"));
            r.headers_mut()
                .insert("retry-after", ms.div_ceil(1000).to_string().parse().expect("header"));
            Some(r)
        } else if f.http_400.get_mut(route).filter(|n| **n > 0).map(|n| *n -= 1).is_some() {
            Some(api_error(
                StatusCode::BAD_REQUEST,
                "Invalid request: the server refused this call.",
                Some("invalid_request_error"),
                None,
            ))
        } else if f.http_500.get_mut(route).filter(|n| **n > 0).map(|n| *n -= 1).is_some() || rate_500 {
            Some(api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The server had an error while processing your request. Sorry about that!",
                None,
                None,
            ))
        } else {
            None
        }
    };
    let resp = match injected {
        Some(r) => r,
        None => next.run(req).await,
    };
    shared.inner.lock().expect("lock").log[slot].status = resp.status().as_u16();
    resp
}

fn api_router(shared: Arc<Shared>, flavor: Flavor) -> Router {
    Router::new()
        .route("/files", post(upload).get(list_files))
        .route("/files/{id}", get(get_file).delete(delete_file))
        .route("/files/{id}/content", get(file_content))
        .route("/batches", post(create_batch).get(list_batches))
        .route("/batches/{id}", get(retrieve_batch))
        .route("/batches/{id}/cancel", post(cancel_batch))
        .route_layer(middleware::from_fn_with_state((shared.clone(), flavor), guard))
        .with_state(shared)
}

async fn upload(State(shared): State<Arc<Shared>>, mut form: Multipart) -> Response {
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

fn new_file(inner: &mut Inner, filename: &str, purpose: &str, path: PathBuf, bytes: u64) -> Value {
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
fn limit_param(q: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, Box<Response>> {
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
fn listed(created: Instant, faults: &Faults) -> bool {
    created.elapsed() >= Duration::from_millis(faults.list_lag_ms)
}

/// `GET /files`: `purpose` filter, `order` (`desc`, the default, or
/// `asc` by creation), `limit` (1–10,000, default 10,000) and `after` (a
/// file id) as documented. Files younger than `list_lag_ms` are left out;
/// `after` may name one of them (a client knows the ids it uploaded).
async fn list_files(State(shared): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
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

async fn get_file(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
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

async fn delete_file(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
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

async fn file_content(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
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

#[derive(Deserialize)]
struct CreateBody {
    input_file_id: Option<Value>,
    endpoint: Option<Value>,
    completion_window: Option<Value>,
    metadata: Option<Value>,
}

async fn create_batch(State(shared): State<Arc<Shared>>, body: Option<Json<Value>>) -> Response {
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

/// Every line of a file, parsed (or the parse error); blank lines skipped.
fn read_lines(path: &std::path::Path) -> Vec<Result<Value, String>> {
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    BufReader::new(f)
        .split(b'\n')
        .map_while(Result::ok)
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(|l| serde_json::from_slice::<Value>(&l).map_err(|e| e.to_string()))
        .collect()
}

fn present(rec: &BatchRec) -> Value {
    let mut obj = rec.obj.clone();
    if rec.faults.empty_string_file_ids {
        for k in ["output_file_id", "error_file_id"] {
            if obj[k].is_null() {
                obj[k] = json!("");
            }
        }
    }
    obj
}

fn elapsed(rec: &BatchRec, step_ms: u64, steps: u32) -> bool {
    step_ms == 0 || rec.created.elapsed() >= Duration::from_millis(step_ms * steps as u64)
}

fn validate(path: &std::path::Path, bytes: u64, endpoint: &str, cfg: &FakeConfig) -> Result<Vec<Line>, Vec<Value>> {
    let mut errors = Vec::new();
    let err = |code: &str, message: String, line: Option<usize>, param: Option<&str>| json!({"code": code, "message": message, "param": param, "line": line});
    if bytes > cfg.max_bytes {
        return Err(vec![err(
            "file_too_large",
            format!("The input file is {bytes} bytes; the maximum is {}.", cfg.max_bytes),
            None,
            None,
        )]);
    }
    let lines = read_lines(path);
    if lines.len() as u64 > cfg.max_lines {
        return Err(vec![err(
            "too_many_requests",
            format!(
                "The input file has {} requests; the maximum is {}.",
                lines.len(),
                cfg.max_lines
            ),
            None,
            None,
        )]);
    }
    if lines.is_empty() {
        return Err(vec![err("empty_file", "The input file is empty.".into(), None, None)]);
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut model: Option<String> = None;
    for (i, l) in lines.into_iter().enumerate() {
        let n = Some(i + 1);
        let v = match l {
            Ok(v) if v.is_object() => v,
            _ => {
                errors.push(err(
                    "invalid_json_line",
                    "This line is not parseable as valid JSON.".into(),
                    n,
                    None,
                ));
                continue;
            }
        };
        let Some(custom_id) = v.get("custom_id").and_then(Value::as_str).filter(|s| !s.is_empty()) else {
            errors.push(err(
                "missing_required_parameter",
                "Missing required parameter: 'custom_id'.".into(),
                n,
                Some("custom_id"),
            ));
            continue;
        };
        if v.get("method").and_then(Value::as_str) != Some("POST") {
            errors.push(err(
                "invalid_method",
                "The method must be 'POST'.".into(),
                n,
                Some("method"),
            ));
            continue;
        }
        let url = v.get("url").and_then(Value::as_str).unwrap_or("");
        let url_v1 = if url.starts_with("/v1/") {
            url.to_owned()
        } else {
            format!("/v1{url}")
        };
        if url_v1 != endpoint {
            errors.push(err(
                "invalid_url",
                format!("The url '{url}' does not match the batch endpoint."),
                n,
                Some("url"),
            ));
            continue;
        }
        let Some(body) = v.get("body").filter(|b| b.is_object()) else {
            errors.push(err(
                "missing_required_parameter",
                "Missing required parameter: 'body'.".into(),
                n,
                Some("body"),
            ));
            continue;
        };
        let m = body.get("model").and_then(Value::as_str).unwrap_or("").to_owned();
        match &model {
            None => model = Some(m),
            Some(first) if *first != m => {
                errors.push(err(
                    "mismatched_model",
                    "Each input file may only include requests to a single model.".into(),
                    n,
                    Some("body.model"),
                ));
                continue;
            }
            _ => {}
        }
        if !seen.insert(custom_id.to_owned()) {
            errors.push(err(
                "duplicate_custom_id",
                format!("The custom_id '{custom_id}' is duplicated; custom_ids must be unique."),
                n,
                Some("custom_id"),
            ));
            continue;
        }
        out.push(Line {
            custom_id: custom_id.to_owned(),
            body: body.clone(),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if endpoint == "/v1/embeddings" {
        let inputs: u64 = out.iter().map(|l| responses::embedding_inputs(&l.body)).sum();
        if inputs > cfg.max_embedding_inputs {
            // The cap is documented; its error code is not: `too_many_inputs` is our guess.
            return Err(vec![err(
                "too_many_inputs",
                format!(
                    "The batch has {inputs} embedding inputs across its requests; the maximum is {}.",
                    cfg.max_embedding_inputs
                ),
                None,
                None,
            )]);
        }
    }
    Ok(out)
}

/// Moves a batch as far as its clock and faults allow. Called on retrieve.
fn advance(inner: &mut Inner, id: &str) {
    let cfg = inner.config.clone();
    let queued = match inner.by_id.get(id) {
        Some(r) if r.obj["status"] == "validating" => limits::queued_ahead(inner, id),
        _ => 0,
    };
    {
        let Some(rec) = inner.by_id.get_mut(id) else { return };
        rec.polls += 1;
        if rec.faults.vanish_after_polls.is_some_and(|n| rec.polls > n) {
            rec.vanished = true;
            return;
        }
        let input = inner
            .files
            .get(rec.obj["input_file_id"].as_str().unwrap_or(""))
            .cloned();
        let now = now_s();
        loop {
            let status = rec.obj["status"].as_str().unwrap_or("").to_owned();
            match status.as_str() {
                "validating" => {
                    if rec.polls <= rec.faults.stay_validating_polls || !elapsed(rec, cfg.step_ms, 1) {
                        break;
                    }
                    run_validation(rec, input.as_ref(), &cfg, queued);
                }
                "in_progress" => {
                    if rec.cancel_requested {
                        rec.obj["status"] = json!("cancelling");
                        rec.obj["cancelling_at"] = json!(now);
                        continue;
                    }
                    rec.in_progress_polls += 1;
                    if rec.in_progress_polls <= rec.faults.stay_in_progress_polls || !elapsed(rec, cfg.step_ms, 2) {
                        let half = rec.lines.len() / 2;
                        rec.obj["request_counts"]["completed"] = json!(half);
                        break;
                    }
                    rec.obj["status"] = json!("finalizing");
                    rec.obj["finalizing_at"] = json!(now);
                }
                "finalizing" => {
                    rec.finalizing_polls += 1;
                    if rec.finalizing_polls <= rec.faults.stay_finalizing_polls || !elapsed(rec, cfg.step_ms, 3) {
                        break;
                    }
                    finish(rec, &|_| true, "completed", None);
                }
                "cancelling" => {
                    rec.cancelling_polls += 1;
                    if rec.cancelling_polls <= rec.faults.stay_cancelling_polls {
                        break;
                    }
                    cancel(rec, id);
                }
                _ => break,
            }
        }
    }
    write_result_files(inner, id);
}

/// cancelling -> cancelled: the lines done by then are answered, the rest
/// `batch_cancelled`.
fn cancel(rec: &mut BatchRec, id: &str) {
    finish(
        rec,
        &half_done(id.to_owned()),
        "cancelled",
        Some((
            "batch_cancelled",
            "This request was cancelled before it could be processed.",
        )),
    );
}

/// Validates a `validating` batch now, whatever its clock and faults say.
fn validate_now(inner: &mut Inner, id: &str) {
    let cfg = inner.config.clone();
    let queued = limits::queued_ahead(inner, id);
    let Some(rec) = inner.by_id.get_mut(id) else { return };
    let input = inner
        .files
        .get(rec.obj["input_file_id"].as_str().unwrap_or(""))
        .cloned();
    run_validation(rec, input.as_ref(), &cfg, queued);
}

/// validating -> failed (errors with line numbers, or a full token queue) or
/// in_progress. `queued`: the tokens ahead of it in its model's queue.
fn run_validation(rec: &mut BatchRec, input: Option<&FileRec>, cfg: &FakeConfig, queued: u64) {
    let now = now_s();
    let endpoint = rec.obj["endpoint"].as_str().unwrap_or("").to_owned();
    let endpoint = if endpoint.starts_with("/v1/") {
        endpoint
    } else {
        format!("/v1{endpoint}")
    };
    let result = match input {
        Some(f) => validate(&f.path, f.bytes, &endpoint, cfg),
        None => Err(vec![
            json!({"code": "file_not_found", "message": "The input file was deleted.", "param": null, "line": null}),
        ]),
    };
    match result {
        Err(errors) => {
            rec.obj["status"] = json!("failed");
            rec.obj["failed_at"] = json!(now);
            rec.obj["errors"] = json!({"object": "list", "data": errors});
        }
        Ok(lines) => {
            // Validation passed, so every line names the model read at create.
            let limit = limits::limit(&cfg.faults, &rec.model);
            let over = limit.is_some_and(|l| queued + rec.tokens > l);
            if rec.faults.token_limit_exceeded || over {
                rec.obj["status"] = json!("failed");
                rec.obj["failed_at"] = json!(now);
                // The forced fault names gpt-4o-mini's tier-1 limit when none is set.
                let error = limits::exceeded(&rec.model, limit.unwrap_or(2_000_000));
                rec.obj["errors"] = json!({"object": "list", "data": [error]});
            } else {
                rec.obj["model"] = json!(rec.model);
                rec.obj["request_counts"]["total"] = json!(lines.len());
                rec.obj["status"] = json!("in_progress");
                rec.obj["in_progress_at"] = json!(now);
                rec.lines = lines;
            }
        }
    }
}

/// About half the lines of a batch, chosen by hash: those that finished
/// before an expiry or a cancellation.
fn half_done(batch_id: String) -> impl Fn(&str) -> bool {
    move |cid| responses::hash64(&[batch_id.as_bytes(), cid.as_bytes()]).is_multiple_of(2)
}

/// Ends a batch: lines for which `done` holds are answered (or fail per the
/// faults); the rest get `not_done` in the error file.
fn finish(rec: &mut BatchRec, done: &dyn Fn(&str) -> bool, status: &str, not_done: Option<(&str, &str)>) {
    let now = now_s();
    rec.obj["status"] = json!(status);
    rec.obj[format!("{status}_at")] = json!(now);
    rec.obj["pending_results"] = json!(true);
    let f = &rec.faults;
    let endpoint = rec.obj["endpoint"].as_str().unwrap_or("").to_owned();
    let endpoint = if endpoint.starts_with("/v1/") {
        endpoint
    } else {
        format!("/v1{endpoint}")
    };
    let batch_id = rec.obj["id"].as_str().unwrap_or("").to_owned();
    let mut output: Vec<(u64, String)> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let (mut inp, mut cached, mut out, mut reasoning) = (0u64, 0u64, 0u64, 0u64);
    for (i, line) in rec.lines.iter().enumerate() {
        if f.lose_custom_ids.contains(&line.custom_id) {
            continue;
        }
        let req_id = format!(
            "batch_req_{:016x}",
            responses::hash64(&[batch_id.as_bytes(), line.custom_id.as_bytes()])
        );
        if !done(&line.custom_id) {
            let (code, message) = not_done.unwrap_or((
                "batch_expired",
                "This request could not be executed before the completion window expired.",
            ));
            errors.push(
                json!({"id": req_id, "custom_id": line.custom_id, "response": null,
                               "error": {"code": code, "message": message}})
                .to_string(),
            );
            continue;
        }
        let h = responses::hash64(&[line.custom_id.as_bytes()]);
        let fails = f.all_lines_fail
            || f.fail_prefix.as_deref().is_some_and(|p| line.custom_id.starts_with(p))
            || (f.fail_percent > 0 && h % 100 < f.fail_percent as u64);
        if fails {
            let st = f.fail_status.unwrap_or(500);
            let (kind, msg) = match st {
                400 => (
                    "invalid_request_error",
                    "Invalid request: the model rejected this input.",
                ),
                429 => (
                    "rate_limit_exceeded",
                    "Rate limit reached while processing this request.",
                ),
                _ => ("server_error", "The server had an error while processing your request."),
            };
            errors.push(
                json!({"id": req_id, "custom_id": line.custom_id,
                "response": {"status_code": st, "request_id": format!("req_{h:016x}"),
                             "body": {"error": {"message": msg, "type": kind, "param": null, "code": null}}},
                "error": null})
                .to_string(),
            );
            continue;
        }
        let body = responses::respond(&endpoint, &line.custom_id, &line.body);
        let u = &body["usage"];
        inp += u["prompt_tokens"].as_u64().or(u["input_tokens"].as_u64()).unwrap_or(0);
        out += u["completion_tokens"]
            .as_u64()
            .or(u["output_tokens"].as_u64())
            .unwrap_or(0);
        cached += u
            .pointer("/prompt_tokens_details/cached_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        reasoning += u
            .pointer("/completion_tokens_details/reasoning_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let shuffle = responses::hash64(&[batch_id.as_bytes(), &(i as u64).to_le_bytes()]);
        output.push((
            shuffle,
            json!({"id": req_id, "custom_id": line.custom_id,
                   "response": {"status_code": 200, "request_id": format!("req_{h:016x}"), "body": body},
                   "error": null})
            .to_string(),
        ));
    }
    output.sort();
    rec.obj["request_counts"]["completed"] = json!(output.len());
    rec.obj["request_counts"]["failed"] = json!(errors.len());
    rec.obj["usage"] = json!({"input_tokens": inp, "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": out, "output_tokens_details": {"reasoning_tokens": reasoning}, "total_tokens": inp + out});
    rec.obj["_output_lines"] = json!(output.into_iter().map(|(_, l)| l).collect::<Vec<_>>());
    rec.obj["_error_lines"] = json!(errors);
}

/// Materialises the result lines `finish` left on the batch as files.
fn write_result_files(inner: &mut Inner, id: &str) {
    let Some(rec) = inner.by_id.get_mut(id) else { return };
    if rec.obj.get("pending_results").is_none() {
        return;
    }
    let obj = rec.obj.as_object_mut().expect("object");
    obj.remove("pending_results");
    let outputs = obj.remove("_output_lines").unwrap_or(json!([]));
    let errors = obj.remove("_error_lines").unwrap_or(json!([]));
    let mut ids = Vec::new();
    for (key, lines) in [("output_file_id", outputs), ("error_file_id", errors)] {
        let lines: Vec<String> = serde_json::from_value(lines).unwrap_or_default();
        if lines.is_empty() {
            continue;
        }
        ids.push((key, lines));
    }
    for (key, lines) in ids {
        let name = format!(
            "{id}_{}.jsonl",
            if key == "output_file_id" { "output" } else { "error" }
        );
        let path = inner.dir.join(format!("{name}-{}", uuid::Uuid::new_v4().simple()));
        let mut f = std::fs::File::create(&path).expect("create result file");
        let mut n = 0u64;
        for l in &lines {
            f.write_all(l.as_bytes()).expect("write");
            f.write_all(b"\n").expect("write");
            n += l.len() as u64 + 1;
        }
        let meta = new_file(inner, &name, "batch_output", path, n);
        let rec = inner.by_id.get_mut(id).expect("exists");
        rec.obj[key] = meta["id"].clone();
    }
}

fn lookup(inner: &Inner, id: &str) -> Option<Value> {
    inner.by_id.get(id).filter(|r| !r.vanished).map(present)
}

fn no_batch(id: &str) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        format!("No batch found with id '{id}'."),
        None,
        Some("batch_id"),
    )
}

async fn retrieve_batch(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
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

async fn cancel_batch(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
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

async fn list_batches(State(shared): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
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

async fn admin_log(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.inner.lock().expect("lock").log.clone()).into_response()
}

fn submitted_summary(ledger: &[Submission]) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for s in ledger {
        for c in &s.custom_ids {
            *counts.entry(c.clone()).or_insert(0) += 1;
        }
    }
    counts
}

async fn admin_submitted(State(shared): State<Arc<Shared>>) -> Response {
    let inner = shared.inner.lock().expect("lock");
    Json(json!({"batches": inner.ledger, "custom_ids": submitted_summary(&inner.ledger)})).into_response()
}

async fn admin_config(State(shared): State<Arc<Shared>>, Json(patch): Json<Value>) -> Response {
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

async fn admin_expire(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut inner = shared.inner.lock().expect("lock");
    if !expire(&mut inner, &id) {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!("batch {id} is not in progress"),
            None,
            None,
        );
    }
    Json(present(&inner.by_id[&id])).into_response()
}

/// Expires a running batch: about half its lines are done, the rest `batch_expired`.
fn expire(inner: &mut Inner, id: &str) -> bool {
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

async fn admin_complete(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut inner = shared.inner.lock().expect("lock");
    if !complete(&mut inner, &id) {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!("batch {id} is finished or unknown"),
            None,
            None,
        );
    }
    Json(present(&inner.by_id[&id])).into_response()
}

/// Ends an unfinished batch now, whatever its clock and the `stay_*` faults:
/// a validating one is validated first (and may fail there), a running or
/// finalizing one completes with every line answered, a cancelling one is
/// cancelled with partial results. False if it is finished, vanished or unknown.
fn complete(inner: &mut Inner, id: &str) -> bool {
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
async fn admin_enqueued(State(shared): State<Arc<Shared>>) -> Response {
    let inner = shared.inner.lock().expect("lock");
    let models: BTreeMap<&String, Value> = inner
        .peak_enqueued
        .iter()
        .map(|(m, peak)| (m, json!({"enqueued": limits::enqueued(&inner, m), "peak": peak})))
        .collect();
    Json(models).into_response()
}

// ---------------------------------------------------------------- server

/// A running fake.
pub struct FakeHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub struct FakeServer;

impl FakeServer {
    /// Binds and serves on the current tokio runtime.
    pub async fn start(config: FakeConfig) -> std::io::Result<FakeHandle> {
        let (dir, owns_dir) = match &config.data_dir {
            Some(d) => (d.clone(), false),
            None => (
                std::env::temp_dir().join(format!("fake-openai-{}", uuid::Uuid::new_v4().simple())),
                true,
            ),
        };
        std::fs::create_dir_all(&dir)?;
        let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                config,
                dir: dir.clone(),
                files: HashMap::new(),
                file_order: Vec::new(),
                batches: BTreeMap::new(),
                by_id: HashMap::new(),
                log: Vec::new(),
                ledger: Vec::new(),
                next: 0,
                route_calls: HashMap::new(),
                peak_enqueued: HashMap::new(),
            }),
            dir,
            owns_dir,
        });
        let app = Router::new()
            .route("/_fake/health", get(|| async { "ok" }))
            .route("/_fake/log", get(admin_log))
            .route("/_fake/submitted", get(admin_submitted))
            .route("/_fake/config", post(admin_config))
            .route("/_fake/batches/{id}/expire", post(admin_expire))
            .route("/_fake/batches/{id}/complete", post(admin_complete))
            .route("/_fake/enqueued", get(admin_enqueued))
            .with_state(shared.clone())
            .nest("/v1", api_router(shared.clone(), Flavor::OpenAi))
            .nest("/openai", api_router(shared.clone(), Flavor::Azure))
            .layer(DefaultBodyLimit::disable());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(FakeHandle {
            addr,
            shared,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

impl FakeHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`, the value for `OPENAI_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT`, the value for `AZURE_OPENAI_ENDPOINT`.
    pub fn azure_endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> Vec<LogEntry> {
        self.shared.inner.lock().expect("lock").log.clone()
    }

    /// Calls answered on a route (e.g. `create`), any status.
    pub fn calls(&self, route: &str) -> Vec<LogEntry> {
        self.log().into_iter().filter(|e| e.route == route).collect()
    }

    pub fn submissions(&self) -> Vec<Submission> {
        self.shared.inner.lock().expect("lock").ledger.clone()
    }

    /// custom_id → number of created batches whose input held it.
    pub fn submitted_counts(&self) -> BTreeMap<String, u32> {
        submitted_summary(&self.shared.inner.lock().expect("lock").ledger)
    }

    /// Replaces the fault configuration (applies to calls and batches created
    /// from now on; the enqueued-token limits also to batches created before
    /// and not yet validated).
    pub fn set_faults(&self, faults: Faults) {
        self.shared.inner.lock().expect("lock").config.faults = faults;
    }

    pub fn faults(&self) -> Faults {
        self.shared.inner.lock().expect("lock").config.faults.clone()
    }

    /// Expires a batch now with partial results. False if it is not running.
    pub fn expire(&self, batch_id: &str) -> bool {
        expire(&mut self.shared.inner.lock().expect("lock"), batch_id)
    }

    /// Ends an unfinished batch now (see `POST /_fake/batches/{id}/complete`),
    /// e.g. one a client gave up on that still delivers. False if it is
    /// finished, vanished or unknown.
    pub fn complete(&self, batch_id: &str) -> bool {
        complete(&mut self.shared.inner.lock().expect("lock"), batch_id)
    }

    /// Prompt tokens of the model's batches now `validating` or
    /// `in_progress`: what counts against its enqueued-token limit. Models
    /// are named as the input lines' `body.model` ("" for none).
    pub fn enqueued_tokens(&self, model: &str) -> u64 {
        limits::enqueued(&self.shared.inner.lock().expect("lock"), model)
    }

    /// The most `enqueued_tokens(model)` has ever been (it includes batches
    /// that were then refused for the limit, so a client that never
    /// overfills the queue keeps it at or below the limit).
    pub fn peak_enqueued_tokens(&self, model: &str) -> u64 {
        let inner = self.shared.inner.lock().expect("lock");
        inner.peak_enqueued.get(model).copied().unwrap_or(0)
    }

    /// Number of stored files (inputs and results).
    pub fn file_count(&self) -> usize {
        self.shared.inner.lock().expect("lock").files.len()
    }

    /// Size and SHA-256 (hex) of a stored file, read from disk.
    pub fn file_digest(&self, id: &str) -> Option<(u64, String)> {
        use sha2::{Digest, Sha256};
        let path = self.shared.inner.lock().expect("lock").files.get(id)?.path.clone();
        let mut f = std::fs::File::open(path).ok()?;
        let mut h = Sha256::new();
        let n = std::io::copy(&mut f, &mut h).ok()?;
        Some((n, h.finalize().iter().map(|b| format!("{b:02x}")).collect()))
    }

    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for FakeHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
