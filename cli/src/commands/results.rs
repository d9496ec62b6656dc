//! `batchq wait` and `batchq results`: waiting for the queue to drain, and
//! downloading the answers, by job or from the results feed
//! (`GET /v1/results`, with `--follow`).

use crate::exit::Exit;
use crate::output::{emit, progress_allowed, text};
use crate::Failure;
use batchq_core::api::ApiRequest;
use batchq_core::ids::JobId;
use batchq_core::request::RequestStatus;
use batchq_core::store::placed::payload_text;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

use super::Ctx;

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
            })?;
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(Failure::new(
                Exit::TimedOut,
                format!(
                    "timed out after {}s: {} still queued, {} in flight, {} jobs open (wait longer with \
                     --timeout, e.g. --timeout 2h; `batchq stats` shows the queue)",
                    timeout.as_secs(),
                    n("queued"),
                    n("claimed"),
                    open_jobs
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn results(ctx: &Ctx, out: Option<&Path>, job: Option<&str>) -> Result<(), Failure> {
    let app = ctx.app()?;
    let jobs: Vec<JobId> = match job {
        Some(j) => vec![JobId::parse(j).map_err(|e| e.message)?],
        None => {
            let mut ids = Vec::new();
            let mut cursor = None;
            loop {
                let page = app
                    .ports
                    .jobs
                    .list_jobs(None, cursor, 100)
                    .await
                    .map_err(|e| ctx.store_failure(e))?;
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
    let mut sink = Sink::open(out).await?;
    let mut written = 0u64;
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    for job_id in &jobs {
        let mut cursor = None;
        loop {
            let page = app
                .ports
                .requests
                .by_job(job_id, cursor, 500)
                .await
                .map_err(|e| ctx.store_failure(e))?;
            for req in page.items {
                if !matches!(req.status, RequestStatus::Completed | RequestStatus::Failed) {
                    continue;
                }
                let Some((req, Some(result))) = app
                    .ports
                    .requests
                    .get_with_result(&req.key)
                    .await
                    .map_err(|e| ctx.store_failure(e))?
                else {
                    continue;
                };
                if &result.job_id != job_id {
                    continue;
                }
                let body = match &result.response {
                    Some(payload) => {
                        let text = payload_text(app.ports.objects.as_ref(), payload)
                            .await
                            .map_err(|e| ctx.store_failure(e))?
                            .ok_or_else(|| {
                                format!("the response of {} is missing from the object store", req.custom_id)
                            })?;
                        Some(serde_json::from_str::<Value>(&text)?)
                    }
                    None => None,
                };
                // The provider's own result line shape, with the caller's own custom_id.
                let line = super::result_line::export_line(&req, &result, body);
                sink.line(&line).await?;
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
        None if ctx.json => Ok(()), // stdout holds the JSONL itself
        None => {
            eprintln!("wrote {written} results");
            Ok(())
        }
    }
}

/// Where `batchq results` writes its JSON lines: `--out FILE` or stdout,
/// buffered. A closed stdout (`batchq results | head -1`) ends the run
/// quietly; a file's error names the file.
struct Sink<'a> {
    writer: Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
    out: Option<&'a Path>,
}

impl<'a> Sink<'a> {
    async fn open(out: Option<&'a Path>) -> Result<Sink<'a>, Failure> {
        let writer: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match out {
            Some(p) => Box::new(tokio::io::BufWriter::new(
                tokio::fs::File::create(p)
                    .await
                    .map_err(|e| format!("{}: {e}", p.display()))?,
            )),
            None => Box::new(tokio::io::BufWriter::new(tokio::io::stdout())),
        };
        Ok(Sink { writer, out })
    }

    fn failed(&self, e: std::io::Error) -> Failure {
        match self.out {
            Some(p) => Failure::from(format!("{}: {e}", p.display())),
            None => crate::output::stdout_error(e),
        }
    }

    /// Writes `value` as one JSON line.
    async fn line(&mut self, value: &Value) -> Result<(), Failure> {
        let mut text = value.to_string();
        text.push('\n');
        match self.writer.write_all(text.as_bytes()).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.failed(e)),
        }
    }

    async fn flush(&mut self) -> Result<(), Failure> {
        match self.writer.flush().await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.failed(e)),
        }
    }
}

/// How `batchq results` reads the results feed.
pub struct FeedOptions {
    /// Keep asking once every result is read, until stopped.
    pub follow: bool,
    pub after: Option<String>,
    /// Where the cursor is kept between runs.
    pub cursor_file: Option<PathBuf>,
    pub poll_every: Duration,
}

/// Feed entries asked for per call.
const FEED_PAGE: u32 = 1000;

/// Writes `cursor` to `path` whole or not at all (a new file renamed over the old).
fn store_cursor(path: &Path, cursor: &str) -> Result<(), Failure> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{cursor}\n")).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

/// `batchq results --follow | --after CURSOR | --cursor-file FILE`: the
/// results feed as JSON lines (each `GET /v1/results` entry: its cursor,
/// event, custom_id, and the request with its result), page after page.
/// The cursor is stored (with `--cursor-file`) only after the page it ends
/// is written and flushed, so a run stopped anywhere resumes without losing
/// a result; a line may be written again only if the run stopped between
/// writing a page and storing its cursor. Without `--follow` it stops at
/// the end of the feed; with it, it waits `poll_every` and asks again until
/// Ctrl-C or SIGTERM, which end it normally.
pub async fn follow_results(ctx: &Ctx, out: Option<&Path>, feed: FeedOptions) -> Result<(), Failure> {
    let mut cursor = match (&feed.after, &feed.cursor_file) {
        (Some(a), _) => Some(a.trim().to_owned()),
        (None, Some(f)) => match std::fs::read_to_string(f) {
            Ok(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("{}: {e}", f.display()).into()),
        },
        (None, None) => None,
    };
    let mut sink = Sink::open(out).await?;
    // Ctrl-C and SIGTERM end the feed between pages (a page is written
    // whole); handlers are in place from the first call on.
    let stop = crate::signal::stop();
    tokio::pin!(stop);
    let mut written = 0u64;
    let mut stopped = false;
    loop {
        let mut query = format!("limit={FEED_PAGE}");
        if let Some(c) = &cursor {
            query.push_str(&format!("&after={}", batchq_core::api::query::percent_encode(c)));
        }
        // A stop while asking drops the call; nothing of its page was written.
        let page = tokio::select! {
            biased;
            () = &mut stop => {
                stopped = true;
                break;
            }
            page = ctx.call(ApiRequest::get("/v1/results").with_query(query)) => page?,
        };
        let results = page["results"].as_array().cloned().unwrap_or_default();
        for r in &results {
            sink.line(r).await?;
            written += 1;
        }
        sink.flush().await?;
        if let Some(next) = page["next"].as_str() {
            cursor = Some(next.to_owned());
            if let Some(f) = &feed.cursor_file {
                store_cursor(f, next)?;
            }
        }
        if !results.is_empty() {
            continue;
        }
        if !feed.follow {
            break;
        }
        tokio::select! {
            biased;
            () = &mut stop => {
                stopped = true;
                break;
            }
            () = tokio::time::sleep(feed.poll_every) => {}
        }
    }
    drop(sink);
    let v = json!({"written": written, "next": cursor, "stopped": stopped,
                   "out": out.map(|p| p.display().to_string())});
    let resume = match &cursor {
        Some(c) => format!("; resume with --after {c}"),
        None => String::new(),
    };
    match out {
        Some(p) => emit(ctx.json, &v, || {
            format!("wrote {written} results to {}{resume}", p.display())
        }),
        None => {
            // stdout holds the JSON lines themselves: the summary goes to stderr.
            eprintln!("wrote {written} results{resume}");
            Ok(())
        }
    }
}
