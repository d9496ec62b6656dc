//! `batchq-bench`: what `make bench` runs (see README.md, Performance).
//!
//! Needs the emulator with its meter (`BATCHQ_MOTO_METER=1
//! scripts/with-emulator.sh`, which `make bench` does) and the four function
//! binaries next to this one (`cargo build --profile perf`). Starts the fake
//! provider itself. Prints a table and writes `bench/results.json`.
//!
//! `--quick` runs everything at a tenth of the size (for working on the bench).
//! `--rss-requests N` sets how many requests carry the 150 MB input and
//! 200 MB output files of the peak-memory runs (default 50,000: 3 KB bodies,
//! 4 KB responses, as the issue asks; fewer, larger ones run faster).
//! `BATCHQ_BENCH_ONLY=peak-memory` runs only those (prints them, writes nothing).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use batchq_bench::cost::{self, Counts, Overhead};
use batchq_bench::lambda::{Function, Usage};
use batchq_bench::meter::Meter;
use batchq_bench::{data, hot};
use batchq_core::app::App;
use batchq_core::config::Config;
use batchq_core::store::RequestStore;
use fake_openai::{FakeConfig, FakeHandle, FakeServer};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};

const FUNCTIONS: [(&str, u32); 4] = [
    ("batchq-enqueue", 256),
    ("batchq-submit", 512),
    ("batchq-poll", 512),
    ("batchq-ingest", 512),
];
const RSS_GOAL_BYTES: u64 = 64 * 1024 * 1024;

struct Sizes {
    requests: usize,
    single: usize,
    big_requests: usize,
    big_input_bytes: usize,
    output_bytes: usize,
    hot_mb: usize,
    hot_reps: usize,
    starts: usize,
}

impl Sizes {
    fn full() -> Self {
        Self {
            requests: 20_000,
            single: 2_000,
            big_requests: 50_000,
            big_input_bytes: 150_000_000,
            output_bytes: 200_000_000,
            hot_mb: 64,
            hot_reps: 5,
            starts: 5,
        }
    }
    fn quick() -> Self {
        Self {
            requests: 2_000,
            single: 200,
            big_requests: 5_000,
            big_input_bytes: 15_000_000,
            output_bytes: 20_000_000,
            hot_mb: 16,
            hot_reps: 3,
            starts: 3,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct FunctionInfo {
    name: String,
    bytes: u64,
    memory_mb: u32,
    start_to_ready_ms: Vec<f64>,
    start_to_ready_median_ms: f64,
    rss_at_ready_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
struct Phase {
    name: String,
    requests: u64,
    wall_s: f64,
    invocations: u64,
    /// Σ of invocation times, ms.
    lambda_ms: f64,
    lambda_mb_ms: f64,
    api_gateway_units: u64,
    provider_calls: u64,
    meter: Meter,
}

impl Phase {
    fn per_1000(&self, n: f64) -> f64 {
        n * 1000.0 / self.requests.max(1) as f64
    }
}

#[derive(Debug, Clone, Serialize)]
struct PeakMemory {
    what: String,
    max_rss_bytes: u64,
    goal_bytes: u64,
    met: bool,
    wall_s: f64,
    detail: Value,
}

#[derive(Debug, Clone, Serialize)]
struct Results {
    generated_at: String,
    quick: bool,
    profile: String,
    machine: Value,
    hot_paths: hot::HotPaths,
    functions: Vec<FunctionInfo>,
    end_to_end: Vec<Phase>,
    end_to_end_requests: u64,
    end_to_end_completed: u64,
    peak_memory: Vec<PeakMemory>,
    cost_counts: Counts,
    overhead_per_1000_usd: Overhead,
    saving_per_1000_usd: f64,
    overhead_to_saving: f64,
    seconds: f64,
}

struct Env {
    endpoint: String,
    http: reqwest::Client,
    bin_dir: PathBuf,
    log_dir: PathBuf,
    fake: FakeHandle,
}

impl Env {
    fn function_env(&self, app: &App) -> Vec<(String, String)> {
        let c = &app.config;
        [
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("BATCHQ_REQUESTS_TABLE", c.requests_table.clone()),
            ("BATCHQ_JOBS_TABLE", c.jobs_table.clone()),
            ("BATCHQ_BUCKET", c.bucket.clone()),
            ("BATCHQ_PROVIDER", "openai".into()),
            ("OPENAI_BASE_URL", self.fake.base_url()),
            ("OPENAI_API_KEY", "sk-fake".into()),
            ("BATCHQ_SUBMIT_MIN_REQUESTS", "1".into()),
            ("BATCHQ_LOG", "warn".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        // Extra variables for experiments: BENCH_FUNCTION_ENV="K=V K2=V2".
        .chain(
            std::env::var("BENCH_FUNCTION_ENV")
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
                .collect::<Vec<_>>(),
        )
        .collect()
    }

    async fn start(&self, app: &App, name: &str, tag: &str) -> Result<Function, String> {
        let memory = FUNCTIONS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, m)| *m)
            .unwrap_or(512);
        let log = self.log_dir.join(format!("{name}-{tag}.log"));
        let mut f = Function::start(name, &self.bin_dir.join(name), memory, &self.function_env(app), &log).await?;
        f.ready(Duration::from_secs(30)).await?;
        Ok(f)
    }

    async fn meter(&self) -> Result<Meter, String> {
        Meter::read(&self.http, &self.endpoint).await
    }
}

fn fixture_event() -> Value {
    json!({
        "version": "2.0",
        "routeKey": "POST /v1/requests",
        "rawPath": "/v1/requests",
        "rawQueryString": "",
        "headers": {"accept": "application/json", "content-type": "application/json",
                    "host": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com", "user-agent": "batchq-bench"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "a1b2c3d4e5",
            // The identity API Gateway's IAM authorizer adds for a SigV4 caller.
            "authorizer": {"iam": {
                "accessKey": "ASIAXAMPLEKEY1234567", "accountId": "123456789012",
                "callerId": "AROAEXAMPLEID1234567:bench", "cognitoIdentity": null, "principalOrgId": null,
                "userArn": "arn:aws:sts::123456789012:assumed-role/batch-worker/bench",
                "userId": "AROAEXAMPLEID1234567:bench"}},
            "domainName": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com", "domainPrefix": "a1b2c3d4e5",
            "http": {"method": "POST", "path": "/v1/requests", "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.7", "userAgent": "batchq-bench"},
            "requestId": "bench", "routeKey": "POST /v1/requests", "stage": "$default",
            "time": "25/Nov/2026:12:00:00 +0000", "timeEpoch": 1795608000000u64
        },
        "body": "",
        "isBase64Encoded": false
    })
}

/// An API Gateway HTTP API (payload 2.0) event for POST `path`.
fn api_event(path: &str, content_type: &str, body: &str) -> Vec<u8> {
    let mut e = fixture_event();
    e["routeKey"] = json!(format!("POST {path}"));
    e["rawPath"] = json!(path);
    e["headers"]["content-type"] = json!(content_type);
    e["headers"]["content-length"] = json!(body.len().to_string());
    e["requestContext"]["http"]["path"] = json!(path);
    e["requestContext"]["routeKey"] = json!(format!("POST {path}"));
    e["body"] = json!(body);
    serde_json::to_vec(&e).expect("event serializes")
}

fn scheduled_event() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": "2026-11-25T12:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/batchq-schedule"], "detail": {}
    }))
    .expect("event serializes")
}

fn s3_event(bucket: &str, key: &str, size: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-25T12:00:00.000Z", "eventName": "ObjectCreated:CompleteMultipartUpload",
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"}, "requestParameters": {"sourceIPAddress": "203.0.113.10"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "bench"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "batchq-results",
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": key, "size": size, "eTag": "0123456789abcdef0123456789abcdef", "sequencer": "0055AED6DCD90281E5"}}
    }]}))
    .expect("event serializes")
}

/// Fresh tables and bucket on the emulator, and the in-process adapters.
async fn fresh_app(endpoint: &str, tag: &str) -> Result<App, String> {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let vars: BTreeMap<&str, String> = [
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("BATCHQ_REQUESTS_TABLE", format!("bench-{tag}-requests-{suffix}")),
        ("BATCHQ_JOBS_TABLE", format!("bench-{tag}-jobs-{suffix}")),
        ("BATCHQ_BUCKET", format!("bench-{tag}-{suffix}")),
    ]
    .into_iter()
    .collect();
    let config = Config::from_lookup(&|name| vars.get(name).cloned()).map_err(|e| e.to_string())?;
    let app = App::from_config(config).await;
    app.store.create_tables().await.map_err(|e| e.to_string())?;
    app.objects
        .client()
        .create_bucket()
        .bucket(&app.config.bucket)
        .send()
        .await
        .map_err(|e| format!("create bucket: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
    Ok(app)
}

fn status_of(resp: &[u8]) -> (u16, Value) {
    let v: Value = serde_json::from_slice(resp).unwrap_or(Value::Null);
    let status = v["statusCode"].as_u64().unwrap_or(0) as u16;
    let body = v["body"]
        .as_str()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

fn as_json(resp: &[u8]) -> Value {
    serde_json::from_slice(resp).unwrap_or(Value::Null)
}

/// Runs a phase: `f` does the work and returns (requests, invocations as (ms, memory MB), API units).
struct PhaseClock {
    name: String,
    t: Instant,
    meter: Meter,
    fake_calls: usize,
}

impl PhaseClock {
    async fn start(env: &Env, name: &str) -> Result<Self, String> {
        Ok(Self {
            name: name.to_owned(),
            meter: env.meter().await?,
            fake_calls: env.fake.log().len(),
            t: Instant::now(),
        })
    }

    async fn finish(
        self,
        env: &Env,
        requests: u64,
        invocations: &[(Duration, u32)],
        api_units: u64,
    ) -> Result<Phase, String> {
        let wall_s = self.t.elapsed().as_secs_f64();
        let meter = env.meter().await?.since(&self.meter);
        Ok(Phase {
            name: self.name,
            requests,
            wall_s,
            invocations: invocations.len() as u64,
            lambda_ms: invocations.iter().map(|(d, _)| d.as_secs_f64() * 1000.0).sum(),
            lambda_mb_ms: invocations
                .iter()
                .map(|(d, m)| cost::billed_mb_ms(d.as_secs_f64() * 1000.0, *m))
                .sum(),
            api_gateway_units: api_units,
            provider_calls: (env.fake.log().len() - self.fake_calls) as u64,
            meter,
        })
    }
}

fn line_of(custom_id: &str, body: &str) -> String {
    format!(r#"{{"custom_id":"{custom_id}","method":"POST","url":"/v1/chat/completions","body":{body}}}"#)
}

struct E2e {
    phases: Vec<Phase>,
    completed: u64,
    saved_usd: f64,
    input_bytes: u64,
    result_bytes: u64,
    body_bytes: u64,
}

async fn end_to_end(env: &Env, sizes: &Sizes) -> Result<E2e, String> {
    let app = fresh_app(&env.endpoint, "e2e").await?;
    let enqueue = env.start(&app, "batchq-enqueue", "e2e").await?;
    let submit = env.start(&app, "batchq-submit", "e2e").await?;
    let poll = env.start(&app, "batchq-poll", "e2e").await?;
    let ingest = env.start(&app, "batchq-ingest", "e2e").await?;
    let mut rng = fastrand::Rng::with_seed(42);
    // A small-model workload: review classification on gpt-4o-mini, a quarter on gpt-4.1-nano.
    let lines: Vec<String> = (0..sizes.requests)
        .map(|i| {
            let model = if i % 4 == 3 { "gpt-4.1-nano" } else { "gpt-4o-mini" };
            let size = data::size_between(&mut rng, 512, 8192);
            line_of(&format!("e2e-{i}"), &data::chat_body(&mut rng, model, size))
        })
        .collect();
    let body_bytes: u64 = lines.iter().map(|l| l.len() as u64).sum();
    let mut phases = Vec::new();

    // Enqueue, one request per call.
    let clock = PhaseClock::start(env, "enqueue (single)").await?;
    let mut inv = Vec::new();
    let mut units = 0;
    for line in &lines[..sizes.single] {
        units += cost::api_units(line.len() as u64);
        let (resp, took) = enqueue
            .invoke(api_event("/v1/requests", "application/json", line))
            .await?;
        let (status, body) = status_of(&resp);
        if status != 202 {
            return Err(format!("enqueue answered {status}: {body}"));
        }
        inv.push((took, 256));
    }
    phases.push(clock.finish(env, sizes.single as u64, &inv, units).await?);

    // Enqueue in bulk, in chunks that fit API Gateway's payload limit.
    let clock = PhaseClock::start(env, "enqueue (bulk)").await?;
    let mut inv = Vec::new();
    let mut units = 0;
    let rest = &lines[sizes.single..];
    let mut start = 0;
    while start < rest.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < rest.len() && end - start < 5_000 && bytes + rest[end].len() < 4_500_000 {
            bytes += rest[end].len() + 1;
            end += 1;
        }
        let body = rest[start..end].join("\n");
        units += cost::api_units(body.len() as u64);
        let (resp, took) = enqueue
            .invoke(api_event("/v1/requests/bulk", "application/x-ndjson", &body))
            .await?;
        let (status, out) = status_of(&resp);
        let created = out["summary"]["created"].as_u64().unwrap_or(0);
        if status != 200 || created != (end - start) as u64 {
            return Err(format!("bulk enqueue answered {status}: {}", out["summary"]));
        }
        inv.push((took, 256));
        start = end;
    }
    phases.push(clock.finish(env, rest.len() as u64, &inv, units).await?);

    // Submit: every group is due (BATCHQ_SUBMIT_MIN_REQUESTS=1).
    let clock = PhaseClock::start(env, "submit").await?;
    let mut inv = Vec::new();
    let mut claimed = 0;
    let mut input_bytes = 0;
    for _ in 0..10 {
        let (resp, took) = submit.invoke(scheduled_event()).await?;
        inv.push((took, 512));
        let report = as_json(&resp);
        let n = report["claimed"].as_u64().unwrap_or(0);
        for job in report["jobs"].as_array().into_iter().flatten() {
            input_bytes += job["bytes"].as_u64().unwrap_or(0);
        }
        claimed += n;
        if n == 0 || claimed >= sizes.requests as u64 {
            break;
        }
    }
    if claimed != sizes.requests as u64 {
        return Err(format!("submit claimed {claimed} of {} requests", sizes.requests));
    }
    phases.push(clock.finish(env, sizes.requests as u64, &inv, 0).await?);

    // Poll: the fake finishes a batch at its first retrieve; poll copies the files.
    let clock = PhaseClock::start(env, "poll").await?;
    let mut inv = Vec::new();
    let mut copied = Vec::new();
    for _ in 0..20 {
        let (resp, took) = poll.invoke(scheduled_event()).await?;
        inv.push((took, 512));
        let report = as_json(&resp);
        for k in report["copied"].as_array().into_iter().flatten() {
            copied.push(k.as_str().unwrap_or_default().to_owned());
        }
        if report["checked"].as_u64().unwrap_or(0) == 0 || report["errors"].as_array().is_some_and(|e| !e.is_empty()) {
            break;
        }
    }
    phases.push(clock.finish(env, sizes.requests as u64, &inv, 0).await?);

    // Sizes of the copies, outside any phase (these calls are the bench's own).
    let mut result_bytes = 0;
    let mut objects = Vec::new();
    for key in &copied {
        let head = app
            .objects
            .client()
            .head_object()
            .bucket(&app.config.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| format!("head {key}: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        let size = head.content_length().unwrap_or(0) as u64;
        result_bytes += size;
        objects.push((key.clone(), size));
    }

    // Ingest: one S3 notification per result file.
    let clock = PhaseClock::start(env, "ingest").await?;
    let mut inv = Vec::new();
    let mut completed = 0;
    let mut saved = 0f64;
    for (key, size) in &objects {
        let (resp, took) = ingest.invoke(s3_event(&app.config.bucket, key, *size)).await?;
        inv.push((took, 512));
        for r in as_json(&resp)["ingested"].as_array().into_iter().flatten() {
            completed += r["completed"].as_u64().unwrap_or(0);
            let money = |v: &Value| {
                v.as_f64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .unwrap_or(0.0)
            };
            saved += (money(&r["totals"]["realtime_cost"]) - money(&r["totals"]["batch_cost"])) / 1e12;
        }
    }
    phases.push(clock.finish(env, sizes.requests as u64, &inv, 0).await?);

    for f in [enqueue, submit, poll, ingest] {
        f.stop().await;
    }
    Ok(E2e {
        phases,
        completed,
        saved_usd: saved,
        input_bytes,
        result_bytes,
        body_bytes,
    })
}

async fn upload(app: &App, key: &str, data: &[u8]) -> Result<(), String> {
    let s3 = app.objects.client();
    let err = |e: String| format!("upload {key}: {e}");
    let up = s3
        .create_multipart_upload()
        .bucket(&app.config.bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| err(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
    let id = up.upload_id().unwrap_or_default().to_owned();
    let mut parts = Vec::new();
    for (i, chunk) in data.chunks(16 << 20).enumerate() {
        let n = i as i32 + 1;
        let out = s3
            .upload_part()
            .bucket(&app.config.bucket)
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .body(aws_sdk_s3::primitives::ByteStream::from(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| err(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        parts.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(n)
                .set_e_tag(out.e_tag)
                .build(),
        );
    }
    s3.complete_multipart_upload()
        .bucket(&app.config.bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map_err(|e| err(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
    Ok(())
}

/// Peak memory: submit building and uploading one big input file, then
/// ingest reading one big output file, each in a fresh function process.
async fn peak_memory(env: &Env, sizes: &Sizes) -> Result<Vec<PeakMemory>, String> {
    let app = fresh_app(&env.endpoint, "rss").await?;
    let n = sizes.big_requests;
    let avg = sizes.big_input_bytes / n;
    let t = Instant::now();
    let mut rng = fastrand::Rng::with_seed(7);
    let requests: Vec<_> = (0..n)
        .map(|i| {
            // Body sizes around the average (and under the 16 KB stored inline).
            let size = data::size_between(&mut rng, avg - avg / 10, avg + avg / 20).saturating_sub(100);
            data::new_request(
                &format!("big-{i}"),
                "gpt-4o-mini",
                data::chat_body(&mut rng, "gpt-4o-mini", size),
            )
        })
        .collect();
    let keys: Vec<_> = requests.iter().map(|r| r.key.clone()).collect();
    let store = app.store.clone();
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

async fn function_starts(env: &Env, sizes: &Sizes) -> Result<Vec<FunctionInfo>, String> {
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

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn print_table(r: &Results) {
    let h = &r.hot_paths;
    println!();
    println!(
        "batchq bench ({} profile{})",
        r.profile,
        if r.quick { ", --quick" } else { "" }
    );
    println!();
    println!("1. Hot paths, one core                      MB/s   IgnoredAny floor   ratio");
    for (name, t) in [
        ("build input JSONL", &h.build_input),
        ("parse result JSONL", &h.parse_results),
    ] {
        println!(
            "   {name:<38} {:>7.0}   {:>16.0}   {:>5.2}   ({:.0} MB, {} lines)",
            t.mb_per_s,
            t.floor_mb_per_s,
            t.ratio,
            t.bytes as f64 / 1e6,
            t.lines
        );
    }
    println!();
    println!("2. Peak memory (max RSS of the function process; goal < 64 MiB)");
    for m in &r.peak_memory {
        println!(
            "   {:<58} {:>6.1} MiB  {}  ({:.0} s)",
            m.what,
            mib(m.max_rss_bytes),
            if m.met { "ok" } else { "OVER GOAL" },
            m.wall_s
        );
    }
    println!();
    println!(
        "3. End to end: {} requests ({} completed); per 1,000 requests",
        r.end_to_end_requests, r.end_to_end_completed
    );
    println!("   phase               requests   wall s  invocations  DynamoDB calls      WCU      RCU  S3 calls  provider calls");
    for p in &r.end_to_end {
        println!(
            "   {:<18} {:>9} {:>8.1} {:>12.1} {:>15.1} {:>8.1} {:>8.1} {:>9.2} {:>15.2}",
            p.name,
            p.requests,
            p.wall_s,
            p.per_1000(p.invocations as f64),
            p.per_1000(p.meter.dynamodb_calls() as f64),
            p.per_1000(p.meter.wcu()),
            p.per_1000(p.meter.rcu()),
            p.per_1000(p.meter.s3_calls() as f64),
            p.per_1000(p.provider_calls as f64),
        );
    }
    println!();
    let o = &r.overhead_per_1000_usd;
    println!("4. AWS overhead per 1,000 requests (list prices, us-east-1, arm64; see bench/src/cost.rs)");
    for (name, v) in [
        ("API Gateway", o.api_gateway),
        ("Lambda requests", o.lambda_requests),
        ("Lambda duration", o.lambda_duration),
        ("DynamoDB writes", o.dynamodb_writes),
        ("DynamoDB reads", o.dynamodb_reads),
        ("DynamoDB storage (1 month)", o.dynamodb_storage),
        ("S3 requests", o.s3_requests),
        ("S3 storage", o.s3_storage),
    ] {
        println!("   {name:<28} ${v:>9.5}");
    }
    println!("   {:<28} ${:>9.5}", "total overhead", o.total);
    println!(
        "   {:<28} ${:>9.5}",
        "saving (Batch vs real time)", r.saving_per_1000_usd
    );
    println!("   overhead / saving            {:>9.1}%", r.overhead_to_saving * 100.0);
    println!();
    println!(
        "5. Function binaries          bytes    MiB   start to ready (median of {})   RSS at ready",
        r.functions.first().map_or(0, |f| f.start_to_ready_ms.len())
    );
    for f in &r.functions {
        println!(
            "   {:<20} {:>12} {:>6.1} {:>16.1} ms {:>26.1} MiB",
            f.name,
            f.bytes,
            mib(f.bytes),
            f.start_to_ready_median_ms,
            mib(f.rss_at_ready_bytes.unwrap_or(0))
        );
    }
    println!();
    println!("Took {:.0} s; written to bench/results.json", r.seconds);
}

async fn run(quick: bool, rss_requests: Option<usize>, out_path: &Path) -> Result<Results, String> {
    let started = Instant::now();
    let mut sizes = if quick { Sizes::quick() } else { Sizes::full() };
    if let Some(n) = rss_requests {
        sizes.big_requests = n;
    }
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .map_err(|_| "AWS_ENDPOINT_URL is not set: run `make bench` (it starts the emulator)".to_owned())?;
    let bin_dir = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .ok_or("no exe dir")?
        .to_path_buf();
    let profile = bin_dir.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_owned();
    let log_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tmp/bench");
    std::fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
    let fake = FakeServer::start(FakeConfig::default())
        .await
        .map_err(|e| format!("fake provider: {e}"))?;
    let env = Arc::new(Env {
        endpoint,
        http: reqwest::Client::new(),
        bin_dir,
        log_dir,
        fake,
    });
    env.meter().await?;

    if std::env::var("BATCHQ_BENCH_ONLY").as_deref() == Ok("peak-memory") {
        // For working on the peak-memory runs: only them, printed as JSON.
        let rows = peak_memory(&env, &sizes).await?;
        println!("{}", serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?);
        return Err(format!(
            "BATCHQ_BENCH_ONLY=peak-memory: done in {:.0} s, nothing written",
            started.elapsed().as_secs_f64()
        ));
    }

    eprintln!(
        "bench: hot paths ({} MB each, best of {})",
        sizes.hot_mb, sizes.hot_reps
    );
    let (mb, reps) = (sizes.hot_mb, sizes.hot_reps);
    let hot_paths = tokio::task::spawn_blocking(move || hot::measure(mb, reps))
        .await
        .map_err(|e| e.to_string())?;

    eprintln!("bench: function sizes and start-to-ready times");
    let functions = function_starts(&env, &sizes).await?;

    eprintln!("bench: end to end, {} requests", sizes.requests);
    let e2e = end_to_end(&env, &sizes).await?;

    eprintln!(
        "bench: peak memory ({} requests / {} MB input, {} MB output)",
        sizes.big_requests,
        sizes.big_input_bytes / 1_000_000,
        sizes.output_bytes / 1_000_000
    );
    let peak_memory = peak_memory(&env, &sizes).await?;

    let mut counts = Counts {
        requests: sizes.requests as u64,
        input_bytes: e2e.input_bytes,
        result_bytes: e2e.result_bytes,
        // Body and result items plus about 1 KB of state and keys per request.
        dynamodb_bytes: e2e.body_bytes + e2e.result_bytes + sizes.requests as u64 * 1024,
        ..Default::default()
    };
    for p in &e2e.phases {
        counts.api_gateway_units += p.api_gateway_units;
        counts.lambda_invocations += p.invocations;
        counts.lambda_mb_ms += p.lambda_mb_ms;
        counts.wcu += p.meter.wcu();
        counts.rcu += p.meter.rcu();
        let (put, get) = p.meter.s3_billed();
        counts.s3_put_class += put;
        counts.s3_get_class += get;
    }
    let overhead = Overhead::per_1000(&counts);
    let saving = e2e.saved_usd * 1000.0 / sizes.requests as f64;
    let results = Results {
        generated_at: batchq_core::time::Clock::now(&batchq_core::time::SystemClock).to_rfc3339(),
        quick,
        profile,
        machine: json!({
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
        }),
        hot_paths,
        functions,
        end_to_end_requests: sizes.requests as u64,
        end_to_end_completed: e2e.completed,
        end_to_end: e2e.phases,
        peak_memory,
        overhead_to_saving: if saving > 0.0 {
            overhead.total / saving
        } else {
            f64::NAN
        },
        cost_counts: counts,
        overhead_per_1000_usd: overhead,
        saving_per_1000_usd: saving,
        seconds: started.elapsed().as_secs_f64(),
    };
    let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    std::fs::write(out_path, text + "\n").map_err(|e| format!("{}: {e}", out_path.display()))?;
    Ok(results)
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let rss_requests = args
        .iter()
        .position(|a| a == "--rss-requests")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse::<usize>().ok());
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("results.json"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(quick, rss_requests, &out)) {
        Ok(results) => {
            print_table(&results);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("batchq-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
