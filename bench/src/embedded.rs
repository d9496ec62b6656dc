//! The embedded store's figures (`BATCHQ_BENCH_ONLY=embedded`): batchq as
//! `batchq serve` runs it, on SQLite and files in a temporary data
//! directory, with the fake provider in this process. No emulator.
//!
//! 1. bulk enqueue through the API core (`Api::handle`, `POST
//!    /v1/requests/bulk`, 1,000-line calls): requests per second;
//! 2. single enqueue (`POST /v1/requests`), one call after another: the
//!    latency of each call, p50 and p99;
//! 3. requests end to end: bulk enqueue, then submit, poll and ingest
//!    (the fake finishes a batch at its first retrieve) until every request
//!    is completed: the wall time, phase by phase (the enqueue phase is
//!    figure 1);
//! 4. ingesting a 200 MB result file in a fresh process (this binary, run
//!    as `batchq-bench --embedded-ingest DIR KEY`): its peak resident set
//!    (`VmHWM`, as the peak-memory runs read it).
//!
//! The targets are printed beside the figures; nothing fails on time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use batchq_bench::data;
use batchq_bench::lambda::proc_status;
use batchq_core::api::{ApiRequest, Method};
use batchq_core::app::App;
use batchq_core::config::Config;
use batchq_core::ids::TenantId;
use batchq_core::pipeline::SubmitOptions;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::end_to_end::line_of;
use crate::report::{Bulk, Embedded, EndToEnd, PeakMemory, Single};
use crate::{Sizes, RSS_GOAL_BYTES};

/// Lines per bulk call.
pub(crate) const BULK_LINES: usize = 1_000;
pub(crate) const BULK_TARGET_PER_S: f64 = 20_000.0;
pub(crate) const SINGLE_P99_TARGET_MS: f64 = 5.0;
pub(crate) const END_TO_END_TARGET_S: f64 = 60.0;
/// The flag that runs this binary as the ingest child.
pub(crate) const INGEST_CHILD_FLAG: &str = "--embedded-ingest";

/// A fresh data directory under the system's temporary directory, removed
/// (with everything in it) on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "batchq-bench-{tag}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        ));
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The configuration `batchq serve` would read for `dir` and the fake.
fn config(dir: &Path, fake_url: &str) -> Result<Config, String> {
    let vars: BTreeMap<&str, String> = [
        ("BATCHQ_STORE", format!("embedded:{}", dir.display())),
        ("BATCHQ_PROVIDER", "openai".to_owned()),
        ("OPENAI_BASE_URL", fake_url.to_owned()),
        ("OPENAI_API_KEY", "sk-fake".to_owned()),
        ("BATCHQ_SUBMIT_MIN_REQUESTS", "1".to_owned()),
    ]
    .into_iter()
    .collect();
    Config::from_lookup(&|name| vars.get(name).cloned()).map_err(|e| e.to_string())
}

async fn open(dir: &Path, fake_url: &str) -> Result<App, String> {
    App::open(config(dir, fake_url)?, true)
        .await
        .map_err(|e| format!("open {}: {e}", dir.display()))
}

fn post(path: &str, content_type: &str, body: Bytes) -> ApiRequest {
    ApiRequest {
        method: Method::Post,
        path: path.to_owned(),
        query: String::new(),
        content_type: Some(content_type.to_owned()),
        webhook_headers: Default::default(),
        body,
    }
}

/// Batch-input lines of the end-to-end workload (as `end_to_end.rs`'s:
/// chat bodies of 0.5–8 KB, a quarter on `gpt-4.1-nano`).
fn lines(seed: u64, prefix: &str, n: usize) -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|i| {
            let model = if i % 4 == 3 { "gpt-4.1-nano" } else { "gpt-4o-mini" };
            let size = data::size_between(&mut rng, 512, 8192);
            line_of(&format!("{prefix}-{i}"), &data::chat_body(&mut rng, model, size))
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Every figure of the section. `fake_url`: the fake provider's base URL.
pub(crate) async fn embedded(fake_url: &str, sizes: &Sizes) -> Result<Embedded, String> {
    let started = Instant::now();
    eprintln!("bench: embedded, single enqueue ({} calls)", sizes.embedded_single);
    let single_enqueue = single(fake_url, sizes.embedded_single).await?;
    eprintln!(
        "bench: embedded, {} requests end to end (bulk calls of {BULK_LINES})",
        sizes.embedded_requests
    );
    let (bulk_enqueue, end_to_end) = end_to_end(fake_url, sizes.embedded_requests).await?;
    eprintln!(
        "bench: embedded, ingest peak memory ({} requests, {} MB output)",
        sizes.big_requests,
        sizes.output_bytes / 1_000_000
    );
    let ingest_peak_memory = ingest_peak(fake_url, sizes).await?;
    Ok(Embedded {
        durability: "FULL".into(),
        bulk_enqueue,
        single_enqueue,
        end_to_end,
        ingest_peak_memory,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn single(fake_url: &str, n: usize) -> Result<Single, String> {
    let dir = TempDir::new("single");
    let app = open(&dir.0, fake_url).await?;
    let api = app.api();
    let tenant = TenantId::default_tenant();
    let lines = lines(51, "one", n);
    let mut took = Vec::with_capacity(n);
    let t = Instant::now();
    for line in lines {
        let req = post("/v1/requests", "application/json", Bytes::from(line));
        let t = Instant::now();
        let resp = api.handle(&tenant, req).await;
        took.push(t.elapsed().as_secs_f64() * 1000.0);
        if resp.status != 202 {
            return Err(format!("single enqueue answered {}: {}", resp.status, resp.body));
        }
    }
    let wall_s = t.elapsed().as_secs_f64();
    took.sort_by(f64::total_cmp);
    let p99 = percentile(&took, 0.99);
    Ok(Single {
        calls: n as u64,
        p50_ms: percentile(&took, 0.50),
        p90_ms: percentile(&took, 0.90),
        p99_ms: p99,
        max_ms: took.last().copied().unwrap_or(f64::NAN),
        wall_s,
        target_p99_ms: SINGLE_P99_TARGET_MS,
        met: p99 < SINGLE_P99_TARGET_MS,
    })
}

/// Enqueues `lines` in bulk calls of [`BULK_LINES`]; returns the body bytes sent.
async fn bulk_enqueue(app: &App, lines: &[String]) -> Result<u64, String> {
    let api = app.api();
    let tenant = TenantId::default_tenant();
    let mut bytes = 0;
    for chunk in lines.chunks(BULK_LINES) {
        let body = chunk.join("\n");
        bytes += body.len() as u64;
        let resp = api
            .handle(
                &tenant,
                post("/v1/requests/bulk", "application/x-ndjson", Bytes::from(body)),
            )
            .await;
        let created = resp.body["summary"]["created"].as_u64().unwrap_or(0);
        if resp.status != 200 || created != chunk.len() as u64 {
            return Err(format!(
                "bulk enqueue answered {}: {}",
                resp.status, resp.body["summary"]
            ));
        }
    }
    Ok(bytes)
}

async fn end_to_end(fake_url: &str, n: usize) -> Result<(Bulk, EndToEnd), String> {
    let dir = TempDir::new("e2e");
    let app = open(&dir.0, fake_url).await?;
    let providers = app.providers().await.map_err(|e| e.to_string())?;
    let submitter = app.submitter(providers.clone());
    let poller = app.poller(providers);
    let ingester = app.ingester();
    let lines = lines(52, "e2e", n);
    let mut phases = Vec::new();
    let all = Instant::now();

    let t = Instant::now();
    let body_bytes = bulk_enqueue(&app, &lines).await?;
    let enqueue_s = t.elapsed().as_secs_f64();
    phases.push(("enqueue (bulk)".to_owned(), enqueue_s));
    drop(lines);
    let bulk = Bulk {
        requests: n as u64,
        calls: n.div_ceil(BULK_LINES) as u64,
        lines_per_call: BULK_LINES as u64,
        body_bytes,
        wall_s: enqueue_s,
        requests_per_s: n as f64 / enqueue_s,
        target_per_s: BULK_TARGET_PER_S,
        met: n as f64 / enqueue_s >= BULK_TARGET_PER_S,
    };

    let t = Instant::now();
    let mut claimed = 0;
    let mut jobs = 0;
    for _ in 0..20 {
        let r = submitter
            .run(SubmitOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        if !r.errors.is_empty() {
            return Err(format!("submit: {}", r.errors.join("; ")));
        }
        claimed += r.claimed;
        jobs += r.jobs.len() as u64;
        if r.claimed == 0 || claimed >= n as u64 {
            break;
        }
    }
    if claimed != n as u64 {
        return Err(format!("submit claimed {claimed} of {n} requests"));
    }
    phases.push(("submit".to_owned(), t.elapsed().as_secs_f64()));

    let (mut poll_s, mut ingest_s) = (0.0, 0.0);
    let mut completed = 0;
    for _ in 0..20 {
        let t = Instant::now();
        let r = poller.run().await.map_err(|e| e.to_string())?;
        poll_s += t.elapsed().as_secs_f64();
        if !r.errors.is_empty() {
            return Err(format!("poll: {}", r.errors.join("; ")));
        }
        let t = Instant::now();
        for key in &r.copied {
            let r = ingester
                .ingest_key(key)
                .await
                .map_err(|e| format!("ingest {key}: {e}"))?;
            completed += r.completed;
        }
        ingest_s += t.elapsed().as_secs_f64();
        if completed >= n as u64 || r.checked == 0 {
            break;
        }
    }
    phases.push(("poll".to_owned(), poll_s));
    phases.push(("ingest".to_owned(), ingest_s));
    let wall_s = all.elapsed().as_secs_f64();
    if completed != n as u64 {
        return Err(format!("end to end: {completed} of {n} requests completed"));
    }
    Ok((
        bulk,
        EndToEnd {
            requests: n as u64,
            completed,
            jobs,
            wall_s,
            phases,
            target_s: END_TO_END_TARGET_S,
            met: wall_s < END_TO_END_TARGET_S,
        },
    ))
}

/// Seeds `sizes.big_requests` requests, submits them as one job, lets poll
/// copy the fake's output, replaces it with a generated output file of
/// `sizes.output_bytes`, and ingests that in a fresh process.
async fn ingest_peak(fake_url: &str, sizes: &Sizes) -> Result<PeakMemory, String> {
    let dir = TempDir::new("rss");
    let n = sizes.big_requests;
    let (key, file_bytes) = {
        let app = open(&dir.0, fake_url).await?;
        let avg = sizes.big_input_bytes / n;
        let mut rng = fastrand::Rng::with_seed(8);
        let mut keys = Vec::with_capacity(n);
        let now = app.ports.clock.now();
        for start in (0..n).step_by(BULK_LINES) {
            let chunk: Vec<_> = (start..(start + BULK_LINES).min(n))
                .map(|i| data::big_request(&mut rng, i, avg))
                .collect();
            keys.extend(chunk.iter().map(|r| r.key.clone()));
            app.ports
                .requests
                .insert(chunk, now)
                .await
                .map_err(|e| format!("seeding: {e}"))?;
        }
        let providers = app.providers().await.map_err(|e| e.to_string())?;
        let r = app
            .submitter(providers.clone())
            .run(SubmitOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        if r.claimed != n as u64 || r.jobs.len() != 1 {
            return Err(format!("big submit claimed {} in {} jobs", r.claimed, r.jobs.len()));
        }
        let job_id = r.jobs[0].job_id.clone();
        let poller = app.poller(providers);
        let mut copied = false;
        for _ in 0..20 {
            if !poller.run().await.map_err(|e| e.to_string())?.copied.is_empty() {
                copied = true;
                break;
            }
        }
        if !copied {
            return Err("big job: poll copied no result file".into());
        }
        // The same requests answered with a file of the asked size.
        let key = format!("results/{job_id}/output.jsonl");
        let per_line = sizes.output_bytes / n;
        let mut w = app
            .ports
            .objects
            .writer(&key, "application/jsonl")
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::with_capacity(1 << 20);
        for k in &keys {
            let size = data::size_between(&mut rng, per_line * 4 / 5, per_line * 6 / 5)
                .saturating_sub(data::RESPONSE_OVERHEAD + 150);
            let body = data::response_body(&mut rng, "gpt-4o-mini", size);
            buf.extend_from_slice(data::output_line(&mut rng, k.as_str(), &body).as_bytes());
            buf.push(b'\n');
            if buf.len() >= 1 << 20 {
                w.write(&buf).await.map_err(|e| e.to_string())?;
                buf.clear();
            }
        }
        w.write(&buf).await.map_err(|e| e.to_string())?;
        let info = w.finish().await.map_err(|e| e.to_string())?;
        (key, info.bytes)
        // The app (and the data directory's lock) ends here, for the child.
    };

    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // std's process on a blocking thread: tokio's `process` feature would
    // change tokio's build for the function binaries built alongside.
    let child_dir = dir.0.clone();
    let child_key = key.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .arg(INGEST_CHILD_FLAG)
            .arg(&child_dir)
            .arg(&child_key)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .output()
    })
    .await
    .map_err(|e| format!("ingest child: {e}"))?
    .map_err(|e| format!("ingest child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("ingest child: {} {stdout}", out.status));
    }
    let v: Value = serde_json::from_str(stdout.trim()).map_err(|e| format!("ingest child said {stdout:?}: {e}"))?;
    let report = &v["report"];
    if report["completed"].as_u64() != Some(n as u64) {
        return Err(format!("big ingest: {report}"));
    }
    let rss = v["max_rss_bytes"].as_u64().unwrap_or(0);
    Ok(PeakMemory {
        what: format!("ingest: a {n}-line, {:.0} MB output file", file_bytes as f64 / 1e6),
        max_rss_bytes: rss,
        goal_bytes: RSS_GOAL_BYTES,
        met: rss > 0 && rss < RSS_GOAL_BYTES,
        wall_s: v["ingest_s"].as_f64().unwrap_or(f64::NAN),
        detail: json!({"lines": report["lines"], "bytes": file_bytes, "rss_at_open_bytes": v["rss_at_open_bytes"]}),
    })
}

/// The ingest child: opens the data directory `dir` (no provider is
/// called), ingests `key`, and prints one JSON line: the report, the
/// ingest's wall time and this process's peak resident set (`VmHWM`).
pub(crate) fn ingest_child(dir: &str, key: &str) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let app = open(Path::new(dir), "http://127.0.0.1:9").await?;
        let rss_at_open = proc_status("self", "VmRSS:");
        let t = Instant::now();
        let report = app
            .ingester()
            .ingest_key(key)
            .await
            .map_err(|e| format!("ingest {key}: {e}"))?;
        let ingest_s = t.elapsed().as_secs_f64();
        let hwm = proc_status("self", "VmHWM:").ok_or("no VmHWM in /proc/self/status")?;
        println!(
            "{}",
            json!({"report": report, "ingest_s": ingest_s, "max_rss_bytes": hwm, "rss_at_open_bytes": rss_at_open})
        );
        Ok::<_, String>(())
    })?;
    // Worker threads idle; nothing to wait for.
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
