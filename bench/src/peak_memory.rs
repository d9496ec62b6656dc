//! The peak-memory runs: the largest input and output files through
//! submit and ingest, with each function's resident set measured.

use batchq_bench::data;
use batchq_bench::lambda::Usage;
use futures::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};

use crate::{Env, Sizes, FUNCTIONS, RSS_GOAL_BYTES};

use crate::end_to_end::upload;
use crate::events::{as_json, fresh_app, s3_event, scheduled_event};
use crate::report::{FunctionInfo, PeakMemory};

/// Peak memory: submit building and uploading one big input file, then
/// ingest reading one big output file, each in a fresh function process.
pub(crate) async fn peak_memory(env: &Env, sizes: &Sizes) -> Result<Vec<PeakMemory>, String> {
    let app = fresh_app(&env.endpoint, "rss").await?;
    let n = sizes.big_requests;
    let avg = sizes.big_input_bytes / n;
    let t = Instant::now();
    let mut rng = fastrand::Rng::with_seed(7);
    let requests: Vec<_> = (0..n)
        // Body sizes around the average (and under the 16 KB stored inline).
        .map(|i| data::big_request(&mut rng, i, avg))
        .collect();
    let keys: Vec<_> = requests.iter().map(|r| r.key.clone()).collect();
    let store = app.ports.requests.clone();
    let now = app.ports.clock.now();
    let chunks: Vec<Vec<_>> = requests.chunks(100).map(|c| c.to_vec()).collect();
    drop(requests);
    let results: Vec<Result<_, _>> = futures::stream::iter(chunks)
        .map(|chunk| {
            let store = store.clone();
            async move { store.insert(chunk, now).await }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    for r in results {
        r.map_err(|e| format!("seeding: {e}"))?;
    }
    eprintln!("bench: seeded {n} requests in {:.0} s", t.elapsed().as_secs_f64());

    let mut out = Vec::new();
    let submit = env.start(&app, "batchq-submit", "rss").await?;
    let before = env.meter().await?;
    let t = Instant::now();
    let (resp, _) = submit.invoke(scheduled_event()).await?;
    let wall = t.elapsed().as_secs_f64();
    let meter = env.meter().await?.since(&before);
    let usage: Usage = submit.stop().await;
    let report = as_json(&resp);
    let job = &report["jobs"][0];
    if report["claimed"].as_u64() != Some(n as u64) {
        return Err(format!("big submit: {report}"));
    }
    out.push(PeakMemory {
        what: format!(
            "submit: build + upload a {}-request, {:.0} MB input file",
            n,
            job["bytes"].as_u64().unwrap_or(0) as f64 / 1e6
        ),
        max_rss_bytes: usage.max_rss_bytes,
        goal_bytes: RSS_GOAL_BYTES,
        met: usage.max_rss_bytes < RSS_GOAL_BYTES,
        wall_s: wall,
        detail: json!({"lines": job["requests"], "bytes": job["bytes"], "usage": usage, "meter": meter}),
    });
    let job_id = job["job_id"].as_str().unwrap_or_default().to_owned();

    // Poll copies the fake's output; the bench then replaces it with a
    // generated file of the asked size for the same requests.
    let poll = env.start(&app, "batchq-poll", "rss").await?;
    let mut copied = false;
    for _ in 0..20 {
        let (resp, _) = poll.invoke(scheduled_event()).await?;
        if as_json(&resp)["copied"].as_array().is_some_and(|c| !c.is_empty()) {
            copied = true;
            break;
        }
    }
    poll.stop().await;
    if !copied {
        return Err("big job: poll copied no result file".into());
    }
    let key = format!("results/{job_id}/output.jsonl");
    let per_line = sizes.output_bytes / n;
    let mut file = Vec::with_capacity(sizes.output_bytes + (1 << 20));
    for k in &keys {
        let size = data::size_between(&mut rng, per_line * 4 / 5, per_line * 6 / 5)
            .saturating_sub(data::RESPONSE_OVERHEAD + 150);
        let body = data::response_body(&mut rng, "gpt-4o-mini", size);
        file.extend_from_slice(data::output_line(&mut rng, k.as_str(), &body).as_bytes());
        file.push(b'\n');
    }
    upload(&app, &key, &file).await?;
    let file_bytes = file.len() as u64;
    drop(file);

    let ingest = env.start(&app, "batchq-ingest", "rss").await?;
    let before = env.meter().await?;
    let t = Instant::now();
    let (resp, _) = ingest.invoke(s3_event(&app.config.bucket, &key, file_bytes)).await?;
    let wall = t.elapsed().as_secs_f64();
    let meter = env.meter().await?.since(&before);
    let usage = ingest.stop().await;
    let report = &as_json(&resp)["ingested"][0];
    if report["completed"].as_u64() != Some(n as u64) {
        return Err(format!("big ingest: {report}"));
    }
    out.push(PeakMemory {
        what: format!("ingest: a {n}-line, {:.0} MB output file", file_bytes as f64 / 1e6),
        max_rss_bytes: usage.max_rss_bytes,
        goal_bytes: RSS_GOAL_BYTES,
        met: usage.max_rss_bytes < RSS_GOAL_BYTES,
        wall_s: wall,
        detail: json!({"lines": report["lines"], "bytes": file_bytes, "usage": usage, "meter": meter}),
    });
    Ok(out)
}

pub(crate) async fn function_starts(env: &Env, sizes: &Sizes) -> Result<Vec<FunctionInfo>, String> {
    let app = fresh_app(&env.endpoint, "start").await?;
    let mut out = Vec::new();
    for (name, memory) in FUNCTIONS {
        let path = env.bin_dir.join(name);
        let bytes = std::fs::metadata(&path)
            .map_err(|e| format!("{}: {e} (build with `cargo build --profile perf`)", path.display()))?
            .len();
        let mut times = Vec::new();
        let mut rss = None;
        for i in 0..sizes.starts {
            let f = env.start(&app, name, &format!("start{i}")).await?;
            let mut f = f;
            let took = f.ready(Duration::from_secs(30)).await?;
            times.push(took.as_secs_f64() * 1000.0);
            rss = f.rss_now();
            f.stop().await;
        }
        let mut sorted = times.clone();
        sorted.sort_by(f64::total_cmp);
        out.push(FunctionInfo {
            name: name.to_owned(),
            bytes,
            memory_mb: memory,
            start_to_ready_median_ms: sorted[sorted.len() / 2],
            start_to_ready_ms: times,
            rss_at_ready_bytes: rss,
        });
    }
    Ok(out)
}
