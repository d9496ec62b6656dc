//! Profiling aid (not part of `make bench`): bulk enqueue through the API core
//! on the memory store and on the embedded store, to tell the core's share from
//! SQLite's: `cargo run --profile perf -p batchq-bench --example enqueue_probe [memory|sqlite|both] [N]`
//! (`KEEP=1` keeps the data directory to look at).
use std::sync::Arc;
use std::time::Instant;

use batchq_bench::data;
use batchq_core::api::{Api, ApiRequest, Method};
use batchq_core::app::embedded_inline_limits;
use batchq_core::config::Config;
use batchq_core::ids::TenantId;
use batchq_core::ports::Ports;
use batchq_core::store::data_dir::DataDir;
use batchq_core::store::memory::{MemoryObjects, MemoryStore};
use batchq_core::store::ObjectStore;
use batchq_core::time::SystemClock;
use bytes::Bytes;

fn lines(n: usize) -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(52);
    (0..n)
        .map(|i| {
            let model = if i % 4 == 3 { "gpt-4.1-nano" } else { "gpt-4o-mini" };
            let size = data::size_between(&mut rng, 512, 8192);
            let body = data::chat_body(&mut rng, model, size);
            format!(r#"{{"custom_id":"p-{i}","method":"POST","url":"/v1/chat/completions","body":{body}}}"#)
        })
        .collect()
}

/// Bytes this process has caused to be written to storage so far (Linux).
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes: ").and_then(|v| v.trim().parse().ok()))
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) this process has used so far (Linux,
/// `/proc/self/stat` in clock ticks of 10 ms): unlike a rate, stable when
/// other work shares the machine.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(") ")?.1;
            let f: Vec<&str> = rest.split(' ').collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
}

async fn bulk(api: &Api, lines: &[String]) -> f64 {
    let t = Instant::now();
    for chunk in lines.chunks(1000) {
        let resp = api
            .handle(
                &TenantId::default_tenant(),
                ApiRequest {
                    method: Method::Post,
                    path: "/v1/requests/bulk".into(),
                    query: String::new(),
                    content_type: Some("application/x-ndjson".into()),
                    webhook_headers: Default::default(),
                    body: Bytes::from(chunk.join("\n")),
                },
            )
            .await;
        assert_eq!(resp.status, 200, "{}", resp.body);
    }
    lines.len() as f64 / t.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(50_000);
    let what = std::env::args().nth(1).unwrap_or_else(|| "both".into());
    let lines = lines(n);
    let config = Config::from_lookup(&|_| None).unwrap();
    if what != "sqlite" {
        let objects: Arc<dyn ObjectStore> = Arc::new(MemoryObjects::default());
        let store = Arc::new(MemoryStore::new().placed(objects.clone(), embedded_inline_limits()));
        let api = Api::new(Ports::over(store, objects, Arc::new(SystemClock)), &config.limits);
        let cpu = cpu_seconds();
        let rate = bulk(&api, &lines).await;
        eprintln!(
            "memory: {rate:.0} requests/s, {:.1} µs CPU per request",
            (cpu_seconds() - cpu) * 1e6 / lines.len() as f64
        );
    }
    if what != "memory" {
        let dir = std::env::temp_dir().join(format!("probe-{}", std::process::id()));
        let d = DataDir::open(&dir, true).unwrap();
        let objects: Arc<dyn ObjectStore> = d.objects();
        let store = Arc::new(d.store(embedded_inline_limits()));
        let api = Api::new(Ports::over(store, objects, Arc::new(SystemClock)), &config.limits);
        let before = written_bytes();
        let cpu = cpu_seconds();
        let rate = bulk(&api, &lines).await;
        let written = written_bytes() - before;
        eprintln!(
            "sqlite: {rate:.0} requests/s, {:.1} KB written per request (write_bytes), {:.1} µs CPU per request",
            written as f64 / 1000.0 / lines.len() as f64,
            (cpu_seconds() - cpu) * 1e6 / lines.len() as f64
        );
        drop(api);
        drop(d);
        if std::env::var("KEEP").is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            eprintln!("kept {}", dir.display());
        }
    }
}
