//! The one-shot commands. Reads go through the same API core the HTTP API
//! uses (`batchq_core::api`), so `batchq status` prints what
//! `GET /v1/requests/{id}` answers.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use batchq_core::api::{Api, ApiRequest, ApiResponse};
use batchq_core::app::App;
use batchq_core::config::Config;
use batchq_core::ids::{JobId, TenantId};
use batchq_core::pipeline::{SubmitOptions, Submitter};
use batchq_core::provider::Provider;
use batchq_core::request::{Payload, RequestStatus};
use batchq_core::store::{JobStore, ObjectStore, RequestStore};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::chunk::{Chunker, Limits, Piece};
use crate::output::{emit, progress_allowed, text, usd};
use crate::remote::{Auth, AuthMode};
use crate::Failure;

pub struct Ctx {
    pub app: App,
    pub api: Api,
    pub tenant: TenantId,
    pub json: bool,
}

impl Ctx {
    pub async fn new(config: Config, json: bool, tenant: TenantId) -> Result<Self, Failure> {
        let app = App::from_config(config).await.with_configured_prices().await?;
        let api = app.api();
        Ok(Self { app, api, tenant, json })
    }

    pub async fn provider(&self) -> Result<Arc<dyn Provider>, Failure> {
        self.app
            .provider()
            .await
            .map_err(|e| format!("provider: {e} (set OPENAI_API_KEY, or BATCHQ_OPENAI_API_KEY_SECRET_ARN)").into())
    }

    pub async fn submitter(&self) -> Result<Submitter, Failure> {
        Ok(self.app.submitter(self.provider().await?))
    }

    /// Calls the API core; a 4xx/5xx becomes a failure with the API's message.
    pub async fn call(&self, req: ApiRequest) -> Result<Value, Failure> {
        let resp: ApiResponse = self.api.handle(&self.tenant, req).await;
        if resp.status >= 400 {
            let msg = resp.body["error"]["message"]
                .as_str()
                .unwrap_or("request failed")
                .to_owned();
            return Err(Failure { message: msg, code: 1 });
        }
        Ok(resp.body)
    }
}

pub async fn init(ctx: &Ctx) -> Result<(), Failure> {
    ctx.app.store.create_tables().await?;
    let bucket = &ctx.app.config.bucket;
    let s3 = ctx.app.objects.client();
    // us-east-1 answers 200 to creating a bucket one already owns, so ask first.
    let exists = s3.head_bucket().bucket(bucket).send().await.is_ok();
    let created_bucket = if exists {
        false
    } else {
        match s3.create_bucket().bucket(bucket).send().await {
            Ok(_) => true,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_bucket_already_owned_by_you()) =>
            {
                false
            }
            Err(e) => {
                return Err(format!("create bucket {bucket}: {}", aws_sdk_s3::error::DisplayErrorContext(e)).into())
            }
        }
    };
    let cfg = &ctx.app.config;
    let v = json!({
        "requests_table": cfg.requests_table,
        "jobs_table": cfg.jobs_table,
        "bucket": bucket,
        "bucket_created": created_bucket,
    });
    emit(ctx.json, &v, || {
        format!(
            "ready: tables {} and {}, bucket {} ({})",
            cfg.requests_table,
            cfg.jobs_table,
            bucket,
            if created_bucket { "created" } else { "already there" }
        )
    });
    Ok(())
}

/// Exit status of a step that ran but could not do all of its work: a
/// submit or poll whose report lists errors (the same status as `enqueue`
/// with rejected lines). 1 stays "the command failed".
pub const EXIT_PARTIAL: u8 = 2;

pub async fn submit(ctx: &Ctx, force: bool) -> Result<(), Failure> {
    let report = ctx.submitter().await?.run(SubmitOptions { force }).await?;
    let v = serde_json::to_value(&report)?;
    emit(ctx.json, &v, || {
        let mut lines = Vec::new();
        for j in report.resumed.iter().chain(&report.jobs) {
            lines.push(format!(
                "job {}  {}  {} requests  {}  batch {}",
                j.job_id,
                j.group,
                j.requests,
                j.status,
                j.provider_batch_id.as_deref().unwrap_or("-")
            ));
        }
        for g in report.waiting.iter().chain(&report.held) {
            lines.push(format!("{}: {} queued, {}", g.group, g.queued, g.note));
        }
        lines.extend(report.errors.iter().map(|e| format!("error: {e}")));
        lines.extend(
            report
                .abandoned
                .iter()
                .map(|a| format!("abandoned (job failed, requests released): {a}")),
        );
        if lines.is_empty() {
            lines.push("nothing to submit".into());
        }
        lines.join("\n")
    });
    match step_failure("submit", &report.errors, &report.abandoned) {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

pub async fn poll(ctx: &Ctx) -> Result<(), Failure> {
    let provider = ctx.provider().await?;
    let poller = ctx.app.poller(provider);
    let report = poller.run().await?;
    let ingester = ctx.app.ingester();
    let mut ingested = Vec::new();
    // One file that cannot be ingested does not stop the others (the next
    // poll ingests it again); it is reported and fails the run.
    let mut ingest_errors: Vec<String> = Vec::new();
    let mut not_ingested: Vec<&str> = Vec::new();
    for key in &report.copied {
        match ingester.ingest_key(key).await {
            Ok(r) => ingested.push(serde_json::to_value(r)?),
            Err(e) => {
                ingest_errors.push(format!("ingest {key}: {e}"));
                not_ingested.push(key);
            }
        }
    }
    let v = json!({"poll": report, "ingested": ingested, "ingest_errors": ingest_errors});
    emit(ctx.json, &v, || {
        let mut lines: Vec<String> = report
            .changed
            .iter()
            .map(|c| format!("job {}: {} -> {}", c.job_id, c.from, c.to))
            .collect();
        lines.extend(report.copied.iter().map(|k| {
            if not_ingested.contains(&k.as_str()) {
                format!("copied {k} (not ingested, see the error below)")
            } else {
                format!("copied and ingested {k}")
            }
        }));
        lines.extend(
            report
                .errors
                .iter()
                .chain(&ingest_errors)
                .map(|e| format!("error: {e}")),
        );
        if lines.is_empty() {
            lines.push(format!("{} open jobs checked, nothing changed", report.checked));
        }
        lines.join("\n")
    });
    let errors: Vec<String> = report.errors.iter().chain(&ingest_errors).cloned().collect();
    match step_failure("poll", &errors, &[]) {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

/// The failure of a step whose report lists errors or abandoned jobs: what
/// went wrong, named, with the first error in full (the report printed on
/// stdout has them all). `None` when the step did all its work.
fn step_failure(step: &str, errors: &[String], abandoned: &[String]) -> Option<Failure> {
    if errors.is_empty() && abandoned.is_empty() {
        return None;
    }
    let count = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut what = Vec::new();
    if !errors.is_empty() {
        what.push(count(errors.len(), "error", "errors"));
    }
    if !abandoned.is_empty() {
        what.push(count(abandoned.len(), "job abandoned", "jobs abandoned"));
    }
    let what = what.join(", ");
    // Reports carry errors as text; a refused key is the provider error
    // `Unauthorized`, displayed as `<op>: authentication failed: <message>`.
    let message = match errors
        .iter()
        .chain(abandoned)
        .find(|e| e.contains("authentication failed"))
    {
        Some(auth) => format!(
            "{step}: the provider refused the key: {auth} ({what}; check OPENAI_API_KEY, or the secret \
             BATCHQ_OPENAI_API_KEY_SECRET_ARN names)"
        ),
        None => {
            let first = errors
                .first()
                .or(abandoned.first())
                .map(String::as_str)
                .unwrap_or_default();
            format!("{step}: {what}; first: {first}")
        }
    };
    Some(Failure {
        message,
        code: EXIT_PARTIAL,
    })
}

pub async fn ingest(ctx: &Ctx, url: &str) -> Result<(), Failure> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{url:?}: expected s3://BUCKET/KEY"))?;
    let (bucket, key) = rest
        .split_once('/')
        .ok_or_else(|| format!("{url:?}: expected s3://BUCKET/KEY"))?;
    if bucket != ctx.app.config.bucket {
        return Err(format!("bucket {bucket} is not batchq's bucket {}", ctx.app.config.bucket).into());
    }
    let report = ctx.app.ingester().ingest_key(key).await?;
    let v = serde_json::to_value(&report)?;
    emit(ctx.json, &v, || {
        format!(
            "{}: {} lines: {} completed, {} failed, {} re-queued, {} replayed, {} not in the job, {} malformed{}",
            report.key,
            report.lines,
            report.completed,
            report.failed,
            report.requeued,
            report.replayed,
            report.not_in_job,
            report.malformed,
            if report.closed { "; job done" } else { "" }
        )
    });
    Ok(())
}

/// What one bulk call said about its lines, renumbered to the file.
#[derive(Default)]
struct EnqueueSummary {
    lines: u64,
    created: u64,
    existing: u64,
    conflict: u64,
    rejected: Vec<Value>,
}

/// A running API that `enqueue --api` sends to.
struct Remote {
    http: reqwest::Client,
    /// `BASE/v1/requests/bulk`.
    bulk_url: reqwest::Url,
    auth: Auth,
}

pub async fn enqueue(ctx: &Ctx, file: &Path, api_url: Option<&str>, auth: AuthMode) -> Result<(), Failure> {
    // Credentials first: a missing profile or an expired SSO session is
    // reported before the file is read.
    let remote = match api_url {
        None => None,
        Some(base) => {
            let raw = format!("{}/v1/requests/bulk", base.trim_end_matches('/'));
            let bulk_url = reqwest::Url::parse(&raw).map_err(|e| format!("--api {base}: not a URL: {e}"))?;
            let api_key = std::env::var("BATCHQ_API_KEY").ok();
            let auth = Auth::resolve(auth, &bulk_url, api_key).await?;
            Some(Remote {
                http: reqwest::Client::new(),
                bulk_url,
                auth,
            })
        }
    };
    let f = tokio::fs::File::open(file)
        .await
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let total_bytes = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    let bar = if progress_allowed(ctx.json) {
        let b = ProgressBar::new(total_bytes);
        b.set_style(
            ProgressStyle::with_template("enqueue [{bar:40}] {bytes}/{total_bytes} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let mut reader = tokio::io::BufReader::new(f).lines();
    let mut sum = EnqueueSummary::default();
    let limits = if api_url.is_some() { Limits::API } else { Limits::STORE };
    let mut chunker = Chunker::new(limits);
    let mut line_no = 0u64;
    loop {
        let line = reader
            .next_line()
            .await
            .map_err(|e| format!("{}: line {}: {e}", file.display(), line_no + 1))?;
        let done = line.is_none();
        let pieces = match line {
            Some(line) => {
                line_no += 1;
                bar.inc(line.len() as u64 + 1);
                chunker.push(line)
            }
            None => chunker.finish().map(Piece::Send).into_iter().collect(),
        };
        for piece in pieces {
            match piece {
                Piece::Send(chunk) => {
                    let answer = send_bulk(ctx, remote.as_ref(), chunk.body).await?;
                    merge_bulk(&mut sum, &answer, chunk.first_line - 1)?;
                    bar.set_message(format!("{} accepted", sum.created + sum.existing));
                }
                Piece::TooLong { line, bytes } => {
                    sum.lines += 1;
                    sum.rejected.push(too_long(line, bytes, limits, api_url.is_some()));
                }
            }
        }
        if done {
            break;
        }
    }
    bar.finish_and_clear();
    let v = json!({
        "file": file.display().to_string(),
        "lines": sum.lines,
        "created": sum.created,
        "duplicates": sum.existing,
        "conflicts": sum.conflict,
        "rejected": sum.rejected.len(),
        "rejections": sum.rejected,
    });
    emit(ctx.json, &v, || {
        let mut out = vec![format!(
            "{}: {} accepted ({} new, {} already queued), {} conflicts, {} rejected",
            file.display(),
            sum.created + sum.existing,
            sum.created,
            sum.existing,
            sum.conflict,
            sum.rejected.len()
        )];
        for r in sum.rejected.iter().take(50) {
            out.push(format!(
                "  line {}: {}: {}",
                text(&r["line"]),
                text(&r["error"]["field"]),
                text(&r["error"]["message"])
            ));
        }
        if sum.rejected.len() > 50 {
            out.push(format!("  … and {} more (use --json for all)", sum.rejected.len() - 50));
        }
        out.join("\n")
    });
    if !sum.rejected.is_empty() || sum.conflict > 0 {
        return Err(Failure {
            message: format!(
                "{} lines rejected, {} conflicting with stored requests",
                sum.rejected.len(),
                sum.conflict
            ),
            code: EXIT_PARTIAL,
        });
    }
    Ok(())
}

async fn send_bulk(ctx: &Ctx, remote: Option<&Remote>, body: String) -> Result<Value, Failure> {
    let Some(remote) = remote else {
        let resp = ctx
            .api
            .handle(
                &ctx.tenant,
                ApiRequest::post("/v1/requests/bulk", "application/x-ndjson", body),
            )
            .await;
        // Refused as a whole (over quota, storage down): no per-line outcomes.
        if !resp.body["results"].is_array() {
            return Err(format!(
                "enqueue failed: {}",
                answer_message(&resp.body, resp.body_string().as_bytes())
            )
            .into());
        }
        return Ok(resp.body);
    };
    let url = &remote.bulk_url;
    const CONTENT_TYPE: &str = "application/x-ndjson";
    let post = remote.http.post(url.clone()).header("content-type", CONTENT_TYPE);
    let post = remote
        .auth
        .apply(post, "POST", url, CONTENT_TYPE, body.as_bytes())
        .await?;
    let resp = post.body(body).send().await.map_err(|e| format!("POST {url}: {e}"))?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| format!("POST {url}: {e}"))?;
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    // Per-line outcomes come with 200, and with 400 when every line was bad.
    // Anything else refuses the call as a whole (no key, a wrong key or
    // signature, over quota, too large, API Gateway's own answers such as
    // `{"message":"Forbidden"}`): nothing to report per line.
    if !v["results"].is_array() {
        let mut message = format!("POST {url}: HTTP {status}: {}", answer_message(&v, &bytes));
        if matches!(status.as_u16(), 401 | 403) {
            message.push_str(&format!(" ({})", remote.auth.refusal_hint()));
        }
        return Err(message.into());
    }
    Ok(v)
}

/// The message of an error answer: the API's `error.message`, API Gateway's
/// `message`, or the start of whatever text came back.
fn answer_message(v: &Value, raw: &[u8]) -> String {
    if let Some(m) = v["error"]["message"].as_str().or_else(|| v["message"].as_str()) {
        return m.to_owned();
    }
    let text = String::from_utf8_lossy(raw);
    let text = text.trim();
    if text.is_empty() {
        return "(empty answer)".into();
    }
    text.chars().take(300).collect()
}

/// The rejection of a line too long to be sent, shaped like the API's own.
fn too_long(line: u64, bytes: usize, limits: Limits, through_api: bool) -> Value {
    let message = if through_api {
        format!(
            "the line is {bytes} bytes; through --api a line is sent in one call of at most {} bytes \
             (API Gateway hands Lambda at most 6 MB, with the body base64-encoded); make its body smaller \
             or enqueue the file without --api",
            limits.max_line_bytes
        )
    } else {
        format!(
            "the line is {bytes} bytes; the API reads at most {} bytes per call",
            limits.max_line_bytes
        )
    };
    json!({
        "line": line,
        "custom_id": Value::Null,
        "outcome": "rejected",
        "status": Value::Null,
        "error": {"code": "line_too_large", "message": message, "field": Value::Null},
    })
}

fn merge_bulk(sum: &mut EnqueueSummary, answer: &Value, offset: u64) -> Result<(), Failure> {
    let results = answer["results"]
        .as_array()
        .ok_or_else(|| format!("unexpected bulk answer: {answer}"))?;
    for r in results {
        sum.lines += 1;
        match r["outcome"].as_str() {
            Some("created") => sum.created += 1,
            Some("existing") => sum.existing += 1,
            Some("conflict") => sum.conflict += 1,
            _ => {
                let mut r = r.clone();
                if let Some(n) = r["line"].as_u64() {
                    r["line"] = json!(n + offset);
                }
                sum.rejected.push(r);
            }
        }
    }
    Ok(())
}

pub async fn wait(ctx: &Ctx, timeout: Duration) -> Result<(), Failure> {
    let started = Instant::now();
    let show = progress_allowed(ctx.json);
    let multi = MultiProgress::new();
    let overall = if show {
        let b = multi.add(ProgressBar::new(0));
        b.set_style(
            ProgressStyle::with_template("all  [{bar:40}] {pos}/{len} finished  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    loop {
        let stats = ctx.call(ApiRequest::get("/v1/stats")).await?;
        let by = &stats["requests"]["by_status"];
        let n = |k: &str| by[k].as_u64().unwrap_or(0);
        let total = stats["requests"]["total"].as_u64().unwrap_or(0);
        let finished = n("completed") + n("failed") + n("cancelled");
        overall.set_length(total);
        overall.set_position(finished);
        overall.set_message(format!(
            "{} queued, {} in flight, {} jobs open",
            n("queued"),
            n("claimed"),
            stats["jobs"]["open"].as_u64().unwrap_or(0)
        ));
        if show {
            let jobs = ctx.call(ApiRequest::get("/v1/jobs").with_query("limit=20")).await?;
            for j in jobs["jobs"].as_array().into_iter().flatten() {
                let id = text(&j["id"]);
                let bar = bars.entry(id.clone()).or_insert_with(|| {
                    let b = multi.add(ProgressBar::new(0));
                    b.set_style(
                        ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    b.set_prefix(id.chars().skip(4).take(8).collect::<String>());
                    b
                });
                let c = &j["request_counts"];
                bar.set_length(c["total"].as_u64().unwrap_or(0));
                bar.set_position(c["completed"].as_u64().unwrap_or(0) + c["failed"].as_u64().unwrap_or(0));
                bar.set_message(format!("{} {}", text(&j["model"]), text(&j["status"])));
            }
        }
        let open_jobs = stats["jobs"]["open"].as_u64().unwrap_or(0);
        if n("queued") == 0 && n("claimed") == 0 && open_jobs == 0 {
            overall.finish_and_clear();
            for b in bars.values() {
                b.finish_and_clear();
            }
            let v = json!({"waited_seconds": started.elapsed().as_secs(), "stats": stats});
            emit(ctx.json, &v, || {
                format!(
                    "done after {}s: {} completed, {} failed, {} cancelled",
                    started.elapsed().as_secs(),
                    n("completed"),
                    n("failed"),
                    n("cancelled")
                )
            });
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(format!(
                "timed out after {}s: {} still queued, {} in flight, {} jobs open",
                timeout.as_secs(),
                n("queued"),
                n("claimed"),
                open_jobs
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn results(ctx: &Ctx, out: Option<&Path>, job: Option<&str>) -> Result<(), Failure> {
    let jobs: Vec<JobId> = match job {
        Some(j) => vec![JobId::parse(j).map_err(|e| e.message)?],
        None => {
            let mut ids = Vec::new();
            let mut cursor = None;
            loop {
                let page = ctx.app.store.list_jobs(None, cursor, 100).await?;
                ids.extend(page.items.into_iter().map(|j| j.id));
                match page.next {
                    Some(n) => cursor = Some(n),
                    None => break,
                }
            }
            ids.reverse(); // oldest first
            ids
        }
    };
    let mut sink: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match out {
        Some(p) => Box::new(tokio::io::BufWriter::new(
            tokio::fs::File::create(p)
                .await
                .map_err(|e| format!("{}: {e}", p.display()))?,
        )),
        None => Box::new(tokio::io::BufWriter::new(tokio::io::stdout())),
    };
    let mut written = 0u64;
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    for job_id in &jobs {
        let mut cursor = None;
        loop {
            let page = ctx.app.store.by_job(job_id, cursor, 500).await?;
            for req in page.items {
                if !matches!(req.status, RequestStatus::Completed | RequestStatus::Failed) {
                    continue;
                }
                let Some((req, Some(result))) = ctx.app.store.get_with_result(&req.key).await? else {
                    continue;
                };
                if &result.job_id != job_id {
                    continue;
                }
                let body = match &result.response {
                    Some(Payload::Inline(s)) => Some(serde_json::from_str::<Value>(s)?),
                    Some(Payload::S3 { key, .. }) => {
                        let bytes = ctx
                            .app
                            .objects
                            .get(key)
                            .await?
                            .ok_or_else(|| format!("response object {key} is missing"))?;
                        Some(serde_json::from_slice::<Value>(&bytes)?)
                    }
                    None => None,
                };
                // The OpenAI batch output line shape, with the caller's own custom_id.
                let line = json!({
                    "id": format!("batchq_req_{}", req.key),
                    "custom_id": req.custom_id,
                    "response": result.status_code.map(|code| json!({
                        "status_code": code,
                        "request_id": Value::Null,
                        "body": body.clone().unwrap_or(Value::Null),
                    })),
                    "error": match (&result.error, result.status_code) {
                        (Some(e), None) => json!({"code": e.code, "message": e.message}),
                        _ => Value::Null,
                    },
                });
                sink.write_all(line.to_string().as_bytes()).await?;
                sink.write_all(b"\n").await?;
                written += 1;
                *by_status.entry(req.status.as_str().to_owned()).or_default() += 1;
            }
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
    }
    sink.flush().await?;
    drop(sink);
    let v = json!({"written": written, "by_status": by_status, "jobs": jobs.len(),
                   "out": out.map(|p| p.display().to_string())});
    match out {
        Some(p) => emit(ctx.json, &v, || format!("wrote {written} results to {}", p.display())),
        None if ctx.json => {} // stdout holds the JSONL itself
        None => eprintln!("wrote {written} results"),
    }
    Ok(())
}

pub async fn status(ctx: &Ctx, custom_id: &str) -> Result<(), Failure> {
    let path = format!("/v1/requests/{}", percent_encode(custom_id));
    let v = ctx.call(ApiRequest::get(path)).await?;
    emit(ctx.json, &v, || {
        let mut out = vec![
            format!("{}  {}", text(&v["custom_id"]), text(&v["status"])),
            format!(
                "  {} {}  attempts {}  job {}",
                text(&v["url"]),
                text(&v["model"]),
                text(&v["attempts"]),
                text(&v["job_id"])
            ),
            format!(
                "  created {}  updated {}",
                text(&v["created_at"]),
                text(&v["updated_at"])
            ),
        ];
        if !v["last_error"].is_null() {
            out.push(format!(
                "  last error: {}: {}",
                text(&v["last_error"]["code"]),
                text(&v["last_error"]["message"])
            ));
        }
        let r = &v["result"];
        if !r.is_null() {
            out.push(format!(
                "  result: HTTP {}  cost {} (real time {}, saved {})",
                text(&r["status_code"]),
                usd(&r["cost"]["batch"]),
                usd(&r["cost"]["realtime"]),
                usd(&r["cost"]["saved"])
            ));
        }
        out.join("\n")
    });
    Ok(())
}

pub async fn stats(ctx: &Ctx) -> Result<(), Failure> {
    let v = ctx.call(ApiRequest::get("/v1/stats")).await?;
    emit(ctx.json, &v, || {
        let by = &v["requests"]["by_status"];
        let mut out = vec![format!(
            "requests: {} queued, {} in flight, {} completed, {} failed, {} cancelled",
            text(&by["queued"]),
            text(&by["claimed"]),
            text(&by["completed"]),
            text(&by["failed"]),
            text(&by["cancelled"])
        )];
        if let Some(age) = v["queue"]["oldest_queued_age_seconds"].as_u64() {
            out.push(format!("oldest queued request: {age}s"));
        }
        out.push(format!("open jobs: {}", text(&v["jobs"]["open"])));
        out.join("\n")
    });
    Ok(())
}

pub async fn jobs(ctx: &Ctx, limit: u32) -> Result<(), Failure> {
    let v = ctx
        .call(ApiRequest::get("/v1/jobs").with_query(format!("limit={}", limit.clamp(1, 200))))
        .await?;
    emit(ctx.json, &v, || {
        let jobs = v["jobs"].as_array().cloned().unwrap_or_default();
        if jobs.is_empty() {
            return "no jobs yet".into();
        }
        let mut out = vec![format!(
            "{:<40} {:<12} {:<24} {:>7} {:>7} {:>7} {:>12} {:>12}",
            "job", "status", "model", "total", "done", "failed", "batch cost", "saved"
        )];
        for j in &jobs {
            let c = &j["request_counts"];
            out.push(format!(
                "{:<40} {:<12} {:<24} {:>7} {:>7} {:>7} {:>12} {:>12}",
                text(&j["id"]),
                text(&j["status"]),
                text(&j["model"]),
                text(&c["total"]),
                text(&c["completed"]),
                text(&c["failed"]),
                usd(&j["totals"]["batch_cost"]),
                usd(&j["totals"]["saved"])
            ));
        }
        out.join("\n")
    });
    Ok(())
}

pub async fn savings(ctx: &Ctx, from: Option<&str>, to: Option<&str>, group_by: &str) -> Result<(), Failure> {
    let mut query = format!("group_by={group_by}");
    for (name, v) in [("from", from), ("to", to)] {
        if let Some(v) = v {
            query.push_str(&format!("&{name}={}", percent_encode(v)));
        }
    }
    let v = ctx.call(ApiRequest::get("/v1/savings").with_query(query)).await?;
    emit(ctx.json, &v, || savings_table(&v, group_by));
    Ok(())
}

/// A table of the groups, a total line, and (per day) a bar of the saving.
fn savings_table(v: &Value, group_by: &str) -> String {
    let groups = v["groups"].as_array().cloned().unwrap_or_default();
    if groups.is_empty() {
        return "no completed requests in this period".into();
    }
    let saved = |g: &Value| -> i128 {
        g["saved_usd"]
            .as_str()
            .and_then(batchq_core::money::Money::parse_decimal)
            .map(|m| m.picodollars())
            .unwrap_or(0)
    };
    let max = groups.iter().map(saved).max().unwrap_or(0);
    let mut out = vec![format!(
        "{:<24} {:>9} {:>16} {:>16} {:>16}  {}",
        group_by,
        "requests",
        "batch cost",
        "real-time cost",
        "saved",
        if group_by == "day" { "saved per day" } else { "" }
    )];
    for g in &groups {
        let bar = if group_by == "day" && max > 0 {
            "#".repeat((saved(g).max(0) * 30 / max) as usize)
        } else {
            String::new()
        };
        out.push(format!(
            "{:<24} {:>9} {:>16} {:>16} {:>16}  {}",
            text(&g[group_by]),
            text(&g["requests"]),
            usd(&g["batch_cost_usd"]),
            usd(&g["realtime_cost_usd"]),
            usd(&g["saved_usd"]),
            bar
        ));
    }
    let t = &v["total"];
    out.push(format!(
        "{:<24} {:>9} {:>16} {:>16} {:>16}",
        "total",
        text(&t["requests"]),
        usd(&t["batch_cost_usd"]),
        usd(&t["realtime_cost_usd"]),
        usd(&t["saved_usd"])
    ));
    if t["unpriced_requests"].as_u64().unwrap_or(0) > 0 {
        out.push(format!(
            "{} requests used models without a known price; their cost is not included",
            text(&t["unpriced_requests"])
        ));
    }
    out.join("\n")
}

/// Percent-encodes a custom_id for a path segment (`:` and the like).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
