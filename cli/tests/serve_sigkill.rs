//! `batchq serve` on the embedded store, killed with SIGKILL at random
//! moments while 10,000 requests flow through it (issue #18).
//!
//! Per seed: a fresh data directory, a fake provider started in this process
//! (it outlives every batchq process), and one `batchq serve` after another
//! on that directory. A client enqueues 10,000 requests in bulk calls and
//! follows the server across restarts, re-posting a call the kill cut short
//! (enqueue is idempotent by custom_id). Meanwhile the test SIGKILLs the
//! server after seeded random gaps, during the enqueue and a few times after
//! it (submit, poll and ingest run all along), and restarts it on the same
//! directory. Once no kill is left the server drains, and the test proves:
//!
//! 1. nothing was lost: the stats count 10,000 requests, all `completed`;
//!    every request's row says `completed` when the data directory is
//!    opened again after the last server; a seeded sample of about 1,000
//!    read through `GET /v1/requests/{id}` carry the provider's answer;
//! 2. nothing was sent twice: each request key is in exactly one provider
//!    batch, and each provider batch belongs to exactly one job;
//! 3. savings were counted once: the savings total equals the sum over the
//!    jobs' totals, and both equal the cost of the 10,000 answers priced one
//!    by one.
//!
//! `BATCHQ_SIGKILL_SEEDS` sets how many seeds run (20 by default), two at a
//! time (`BATCHQ_SIGKILL_PARALLEL`); `BATCHQ_SIGKILL_SEED=N` runs that seed
//! alone (each failure names its seed); `BATCHQ_SIGKILL_LOG=FILE` appends
//! every server's log there. The kill schedule follows the seed; what a
//! kill interrupts also depends on timing, which is why many seeds run.
//! Each seed prints what the API showed open at its kills and how many
//! half-submitted jobs the restarts resumed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use batchq_core::app::App;
use batchq_core::config::Config;
use batchq_core::ids::{CustomId, RequestKey, TenantId};
use batchq_core::job::ProviderKind;
use batchq_core::money::Money;
use batchq_core::pricing::PriceBook;
use batchq_core::request::{RequestStatus, Usage};
use fake_openai::{FakeConfig, FakeServer};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::watch;

const REQUESTS: usize = 10_000;
/// Lines per `POST /v1/requests/bulk`.
const BULK_LINES: usize = 250;
const DEFAULT_SEEDS: u64 = 20;
const MODELS: [&str; 2] = ["gpt-4o-mini", "gpt-4.1-nano"];
/// Gaps between kills, in milliseconds.
const GAP_MS: (u64, u64) = (30, 600);
/// Kills after the enqueue has finished (submit, poll and ingest of the last
/// batches), at least and at most.
const KILLS_AFTER_ENQUEUE: (u64, u64) = (1, 3);
/// Safety nets only (a hang fails with what was seen, never a timing claim).
const ENQUEUE_SAFETY: Duration = Duration::from_secs(120);
const DRAIN_SAFETY: Duration = Duration::from_secs(120);
const START_SAFETY: Duration = Duration::from_secs(60);
/// Requests read back through `GET /v1/requests/{id}` per seed, about.
const SAMPLE: usize = 1_000;
/// Lines of the servers' logs kept for a failure message.
const LOG_TAIL: usize = 60;

/// SplitMix64: small, deterministic, good enough to spread kills.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn seeds() -> Vec<u64> {
    if let Ok(one) = std::env::var("BATCHQ_SIGKILL_SEED") {
        return vec![one.trim().parse().expect("BATCHQ_SIGKILL_SEED is a number")];
    }
    let n = std::env::var("BATCHQ_SIGKILL_SEEDS")
        .map(|v| v.trim().parse().expect("BATCHQ_SIGKILL_SEEDS is a number"))
        .unwrap_or(DEFAULT_SEEDS);
    (1..=n).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_killed_at_random_moments_loses_nothing_sends_nothing_twice_and_counts_savings_once() {
    let started = Instant::now();
    let mut total = Coverage::default();
    // Seeds run two at a time: a server spends much of its time waiting
    // for its commits to reach the disk, which the other one's work fills.
    let parallel = std::env::var("BATCHQ_SIGKILL_PARALLEL")
        .map(|v| v.trim().parse().expect("BATCHQ_SIGKILL_PARALLEL is a number"))
        .unwrap_or(2usize)
        .max(1);
    let mut runs = futures::stream::iter(seeds().into_iter().map(|seed| async move {
        let t = Instant::now();
        let coverage = run_seed(seed).await;
        (seed, t.elapsed(), coverage)
    }))
    .buffer_unordered(parallel);
    while let Some((seed, took, coverage)) = runs.next().await {
        eprintln!("seed {seed}: ok in {:.1}s: {}", took.as_secs_f64(), coverage.summary());
        total.add(&coverage);
    }
    eprintln!(
        "all seeds ok in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        total.summary()
    );
}

/// What the kills of a run interrupted, as far as the API said just before
/// each one (informative: the guarantees are asserted, not this).
#[derive(Default)]
struct Coverage {
    kills: u64,
    during_enqueue: u64,
    /// Open jobs by status at the moment of a kill, summed over kills.
    open_jobs: BTreeMap<String, u64>,
    /// Restarted servers that resumed a job left half-way.
    resumes: u64,
}

impl Coverage {
    fn add(&mut self, o: &Coverage) {
        self.kills += o.kills;
        self.during_enqueue += o.during_enqueue;
        for (k, v) in &o.open_jobs {
            *self.open_jobs.entry(k.clone()).or_default() += v;
        }
        self.resumes += o.resumes;
    }

    fn summary(&self) -> String {
        format!(
            "{} kills ({} during enqueue), open jobs at kills {:?}, {} submit resumes",
            self.kills, self.during_enqueue, self.open_jobs, self.resumes
        )
    }
}

/// One request line and what the provider answers for it.
struct Line {
    custom_id: String,
    key: String,
    model: &'static str,
    body: Value,
}

fn lines() -> Vec<Line> {
    (0..REQUESTS)
        .map(|i| {
            let custom_id = format!("review-{i:05}");
            let model = MODELS[i % MODELS.len()];
            let key = RequestKey::derive(
                &TenantId::default_tenant(),
                &CustomId::parse(custom_id.as_str()).unwrap(),
            )
            .to_string();
            // One completion token: the fake's usage is then fixed by the prompt.
            let body = json!({"model": model, "max_tokens": 1,
                              "messages": [{"role": "user", "content": format!("Is review {i} positive?")}]});
            Line {
                custom_id,
                key,
                model,
                body,
            }
        })
        .collect()
}

impl Line {
    fn ndjson(&self) -> String {
        json!({"custom_id": self.custom_id, "method": "POST", "url": "/v1/chat/completions", "body": self.body})
            .to_string()
    }

    /// The provider's answer: the same function the fake answers with.
    fn response(&self) -> Value {
        fake_openai::respond("/v1/chat/completions", &self.key, &self.body)
    }

    /// What the answer costs at batch and real-time prices.
    fn cost(&self, prices: &PriceBook) -> (Money, Money) {
        let u = &self.response()["usage"];
        let usage = Usage {
            input_tokens: u["prompt_tokens"].as_u64().unwrap(),
            cached_input_tokens: u["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap(),
            output_tokens: u["completion_tokens"].as_u64().unwrap(),
            reasoning_tokens: u["completion_tokens_details"]["reasoning_tokens"].as_u64().unwrap(),
            cache_write_tokens: 0,
        };
        let c = prices
            .cost(ProviderKind::OpenAi, self.model, &usage)
            .unwrap_or_else(|| panic!("{} has no bundled price", self.model));
        (c.batch, c.realtime)
    }
}

/// The log lines of every server of a seed (the tail, for failure
/// messages) and the count of resumed jobs.
#[derive(Default)]
struct Logs {
    tail: VecDeque<String>,
    resumes: u64,
}

type SharedLogs = Arc<Mutex<Logs>>;

fn tail(logs: &SharedLogs) -> String {
    let l = logs.lock().unwrap();
    l.tail.iter().cloned().collect::<Vec<_>>().join("\n")
}

/// One `batchq serve` process.
struct Serve {
    child: Child,
    url: String,
}

impl Serve {
    /// Starts `batchq serve` on `dir` and waits for its address. Checks
    /// that its first line names the embedded store in `dir`.
    fn start(vars: &[(String, String)], dir: &Path, generation: u32, logs: SharedLogs) -> Result<Self, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_batchq"))
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--submit-every",
                "100ms",
                "--poll-every",
                "100ms",
            ])
            // Nothing of the test's environment: no AWS_* variable may flip
            // the store to AWS.
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start batchq serve: {e}"))?;
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        stderr.read_line(&mut first).map_err(|e| e.to_string())?;
        let expected = format!("batchq: store embedded:{} (BATCHQ_STORE)", dir.display());
        // Everything else the server logs goes to the shared tail (and the
        // pipe never fills up).
        let mut copy = std::env::var_os("BATCHQ_SIGKILL_LOG").map(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .expect("open BATCHQ_SIGKILL_LOG")
        });
        std::thread::spawn(move || {
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                if let Some(f) = copy.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "[serve #{generation}] {line}");
                }
                let mut l = logs.lock().unwrap();
                if line.contains("resuming a job left half-way") {
                    l.resumes += 1;
                }
                if l.tail.len() == LOG_TAIL {
                    l.tail.pop_front();
                }
                l.tail.push_back(format!("[serve #{generation}] {line}"));
            }
        });
        if first.trim_end() != expected {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "serve #{generation}: first line {first:?}, expected {expected:?}"
            ));
        }
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        });
        let Some(url) = line.trim().strip_prefix("batchq serving ") else {
            let _ = child.kill();
            let status = child.wait();
            return Err(format!(
                "serve #{generation}: no `batchq serving` line on stdout (got {line:?}; exit {status:?})"
            ));
        };
        Ok(Self {
            url: url.to_owned(),
            child,
        })
    }

    /// SIGKILL (what `Child::kill` sends on unix), then reaps it.
    fn kill(&mut self) -> ExitStatus {
        self.child.kill().expect("SIGKILL batchq serve");
        self.child.wait().expect("reap batchq serve")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_serve(
    vars: &Arc<Vec<(String, String)>>,
    dir: &Path,
    generation: u32,
    logs: &SharedLogs,
) -> Result<Serve, String> {
    let (vars, dir, logs) = (vars.clone(), dir.to_owned(), logs.clone());
    let start = tokio::task::spawn_blocking(move || Serve::start(&vars, &dir, generation, logs));
    match tokio::time::timeout(START_SAFETY, start).await {
        Ok(r) => r.map_err(|e| e.to_string())?,
        Err(_) => Err(format!(
            "serve #{generation} printed no address within {START_SAFETY:?}"
        )),
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let resp = http.get(url).send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("GET {url}: {status}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("GET {url}: not JSON ({e}): {body}"))
}

/// How the enqueue went: per custom_id, the outcome the answered call gave.
type Outcomes = BTreeMap<String, String>;

/// Enqueues every line in bulk calls against whichever server is up,
/// re-posting a call that got no complete answer.
async fn enqueue_all(
    http: reqwest::Client,
    url: watch::Receiver<String>,
    bodies: Vec<Vec<String>>,
) -> Result<Outcomes, String> {
    let mut outcomes = Outcomes::new();
    let deadline = Instant::now() + ENQUEUE_SAFETY;
    for (n, chunk) in bodies.iter().enumerate() {
        let body = chunk.join("\n") + "\n";
        let mut last_error = String::new();
        let answer = loop {
            if Instant::now() > deadline {
                return Err(format!(
                    "bulk call {n} got no answer within the safety net of {ENQUEUE_SAFETY:?}; last error: {last_error}"
                ));
            }
            let base = url.borrow().clone();
            let sent = http
                .post(format!("{base}/v1/requests/bulk"))
                .header("content-type", "application/x-ndjson")
                .body(body.clone())
                .send()
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) => {
                    last_error = e.to_string();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let status = resp.status();
            let text = match resp.text().await {
                Ok(t) => t,
                Err(e) => {
                    last_error = format!("answer cut short: {e}");
                    continue;
                }
            };
            if status.is_server_error() {
                last_error = format!("{status}: {text}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            if !status.is_success() {
                return Err(format!("bulk call {n} refused: {status}: {text}"));
            }
            break serde_json::from_str::<Value>(&text)
                .map_err(|e| format!("bulk call {n}: not JSON ({e}): {text}"))?;
        };
        let results = answer["results"]
            .as_array()
            .ok_or(format!("bulk call {n}: no results: {answer}"))?;
        if results.len() != chunk.len() {
            return Err(format!(
                "bulk call {n}: {} results for {} lines",
                results.len(),
                chunk.len()
            ));
        }
        for r in results {
            let id = r["custom_id"]
                .as_str()
                .ok_or(format!("bulk call {n}: result without custom_id: {r}"))?;
            let outcome = r["outcome"].as_str().unwrap_or("?");
            outcomes.insert(id.to_owned(), outcome.to_owned());
        }
    }
    Ok(outcomes)
}

/// Whether the stats say everything has settled: no request queued or
/// claimed, no job open.
fn settled(stats: &Value) -> bool {
    let by = &stats["requests"]["by_status"];
    let n = |s: &str| by[s].as_i64().unwrap_or(0);
    n("queued") == 0 && n("claimed") == 0 && stats["jobs"]["open"].as_i64() == Some(0)
}

async fn run_seed(seed: u64) -> Coverage {
    let mut rng = Rng(seed);
    let ctx = format!("seed {seed} (rerun alone with BATCHQ_SIGKILL_SEED={seed})");
    // Each provider batch phase takes 0 to 120 ms.
    let step_ms = rng.range((0, 120));
    let fake = FakeServer::start(FakeConfig {
        step_ms,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let dir = temp_dir(seed);
    let vars = Arc::new(vec![
        ("BATCHQ_STORE".to_owned(), format!("embedded:{}", dir.display())),
        ("BATCHQ_PROVIDER".into(), "openai".into()),
        ("OPENAI_BASE_URL".into(), fake.base_url()),
        ("OPENAI_API_KEY".into(), "sk-fake".into()),
        ("BATCHQ_SUBMIT_MIN_REQUESTS".into(), "500".into()),
        ("BATCHQ_SUBMIT_MAX_AGE_SECS".into(), "0".into()),
        // Plain log lines in failure messages.
        ("NO_COLOR".into(), "1".into()),
    ]);
    let logs: SharedLogs = Arc::default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let lines = lines();
    let bodies: Vec<Vec<String>> = lines
        .chunks(BULK_LINES)
        .map(|c| c.iter().map(Line::ndjson).collect())
        .collect();

    let mut generation = 0;
    let mut serve = start_serve(&vars, &dir, generation, &logs)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let (url_tx, url_rx) = watch::channel(serve.url.clone());
    let client = tokio::spawn(enqueue_all(http.clone(), url_rx, bodies));

    // The kills: after seeded gaps while the enqueue runs, then a few more.
    let mut coverage = Coverage::default();
    let kills_after = rng.range(KILLS_AFTER_ENQUEUE);
    let mut after = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(rng.range(GAP_MS))).await;
        let enqueuing = !client.is_finished();
        if !enqueuing {
            if after == kills_after {
                break;
            }
            after += 1;
        }
        // What the kill interrupts, as the API says a moment before.
        if let Ok(stats) = get_json(&http, &format!("{}/v1/stats", serve.url)).await {
            if !enqueuing && settled(&stats) {
                break;
            }
            if let Some(by) = stats["jobs"]["by_status"].as_object() {
                for status in by.keys() {
                    *coverage.open_jobs.entry(status.clone()).or_default() += 1;
                }
            }
        }
        let status = serve.kill();
        assert!(!status.success(), "{ctx}: serve exited {status:?} before the kill");
        coverage.kills += 1;
        coverage.during_enqueue += u64::from(enqueuing);
        generation += 1;
        serve = start_serve(&vars, &dir, generation, &logs)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: restart after kill {generation}: {e}\n{}", tail(&logs)));
        url_tx.send_replace(serve.url.clone());
    }

    let outcomes = client
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{ctx}: enqueue: {e}\n{}", tail(&logs)));
    assert_eq!(outcomes.len(), REQUESTS, "{ctx}: every line answered once");
    let odd: Vec<_> = outcomes
        .iter()
        .filter(|(_, o)| *o != "created" && *o != "existing")
        .take(5)
        .collect();
    assert!(odd.is_empty(), "{ctx}: lines neither created nor existing: {odd:?}");

    // No more kills: the server drains the queue.
    let deadline = Instant::now() + DRAIN_SAFETY;
    let stats = loop {
        let stats = match get_json(&http, &format!("{}/v1/stats", serve.url)).await {
            Ok(s) => s,
            Err(e) => panic!(
                "{ctx}: stats: {e}; serve #{generation} exit status: {:?}\n{}",
                serve.child.try_wait(),
                tail(&logs)
            ),
        };
        if settled(&stats) {
            break stats;
        }
        assert!(
            Instant::now() < deadline,
            "{ctx}: not settled within the safety net of {DRAIN_SAFETY:?}: {stats}\nopen jobs: {}\n{}",
            get_json(&http, &format!("{}/v1/jobs?limit=200", serve.url))
                .await
                .unwrap_or_default(),
            tail(&logs)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // (1) Nothing lost.
    assert_eq!(stats["requests"]["total"], REQUESTS, "{ctx}: {stats}");
    assert_eq!(stats["requests"]["by_status"]["completed"], REQUESTS, "{ctx}: {stats}");
    // Every request's status through the counts above; its answer read
    // back through the API for a seeded sample (all 10,000 would take a
    // debug build's server several seconds per seed).
    let sample: Vec<&Line> = lines
        .iter()
        .filter(|_| rng.range((1, REQUESTS as u64 / SAMPLE as u64)) == 1)
        .collect();
    let read = futures::stream::iter(sample.iter().map(|l| {
        let (http, url) = (http.clone(), format!("{}/v1/requests/{}", serve.url, l.custom_id));
        async move { (l, get_json(&http, &url).await) }
    }))
    .buffer_unordered(8)
    .collect::<Vec<_>>()
    .await;
    for (line, got) in read {
        let got = got.unwrap_or_else(|e| panic!("{ctx}: {}: {e}", line.custom_id));
        assert_eq!(got["status"], "completed", "{ctx}: {}: {got}", line.custom_id);
        assert_eq!(
            got["result"]["response"],
            line.response(),
            "{ctx}: {}: not the provider's answer for it",
            line.custom_id
        );
    }

    // (2) Nothing sent twice: each key in exactly one provider batch, each
    // provider batch one job's.
    let counts = fake.submitted_counts();
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).take(5).collect();
    assert!(twice.is_empty(), "{ctx}: keys sent other than once: {twice:?}");
    let expected: BTreeSet<&str> = lines.iter().map(|l| l.key.as_str()).collect();
    let sent: BTreeSet<&str> = counts.keys().map(String::as_str).collect();
    assert!(
        sent == expected,
        "{ctx}: the provider got {} keys, not the 10,000 enqueued",
        sent.len()
    );
    let jobs = all_jobs(&http, &serve.url, &ctx).await;
    let batches: BTreeSet<String> = fake.submissions().into_iter().map(|s| s.batch_id).collect();
    let job_batches: Vec<String> = jobs
        .iter()
        .filter_map(|j| j["provider_batch_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        job_batches.iter().cloned().collect::<BTreeSet<_>>(),
        batches,
        "{ctx}: provider batches and jobs do not match"
    );
    assert_eq!(job_batches.len(), batches.len(), "{ctx}: two jobs name one batch");
    for j in &jobs {
        assert_eq!(j["duplicate_batches"], json!([]), "{ctx}: {j}");
        assert!(
            j["status"] == "done" || j["input"]["lines"] == 0,
            "{ctx}: a job with requests did not finish done: {j}"
        );
    }

    // (3) Savings counted once.
    let prices = PriceBook::bundled();
    let (mut batch, mut realtime) = (Money::ZERO, Money::ZERO);
    for l in &lines {
        let (b, r) = l.cost(&prices);
        batch += b;
        realtime += r;
    }
    let (mut jobs_batch, mut jobs_realtime) = (Money::ZERO, Money::ZERO);
    for j in &jobs {
        jobs_batch += money(&j["totals"]["batch_cost"], &ctx);
        jobs_realtime += money(&j["totals"]["realtime_cost"], &ctx);
    }
    let savings = get_json(&http, &format!("{}/v1/savings", serve.url))
        .await
        .unwrap_or_else(|e| panic!("{ctx}: savings: {e}"));
    let total = &savings["total"];
    assert_eq!(total["requests"], REQUESTS, "{ctx}: {savings}");
    assert_eq!(total["unpriced_requests"], 0, "{ctx}: {savings}");
    let saved_batch = money(&total["batch_cost_usd"], &ctx);
    let saved_realtime = money(&total["realtime_cost_usd"], &ctx);
    assert_eq!(
        (saved_batch, saved_realtime),
        (jobs_batch, jobs_realtime),
        "{ctx}: savings (batch, real time) differ from the jobs' totals"
    );
    assert_eq!(
        (saved_batch, saved_realtime),
        (batch, realtime),
        "{ctx}: savings (batch, real time) differ from the 10,000 answers priced one by one"
    );

    drop(serve);

    // (1) again, for every request: its row in the data directory, read
    // with the store's own code once the last server is gone.
    let config = Config::from_lookup(&|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        .unwrap_or_else(|e| panic!("{ctx}: config: {e}"));
    let app = App::open(config, false)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: reopen {}: {e}", dir.display()));
    let keys: Vec<RequestKey> = lines
        .iter()
        .map(|l| RequestKey::parse(l.key.as_str()).unwrap())
        .collect();
    for chunk in keys.chunks(500) {
        let rows = app.ports.requests.get_many(chunk).await.unwrap();
        for k in chunk {
            let status = rows.get(k).map(|r| r.status);
            assert_eq!(status, Some(RequestStatus::Completed), "{ctx}: request {k}");
        }
    }
    drop(app);
    coverage.resumes = logs.lock().unwrap().resumes;
    fake.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    coverage
}

fn money(v: &Value, ctx: &str) -> Money {
    v.as_str()
        .and_then(Money::parse_decimal)
        .unwrap_or_else(|| panic!("{ctx}: not an amount: {v}"))
}

/// Every job the default tenant sees, page by page.
async fn all_jobs(http: &reqwest::Client, base: &str, ctx: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{base}/v1/jobs?limit=100&cursor={c}"),
            None => format!("{base}/v1/jobs?limit=100"),
        };
        let page = get_json(http, &url)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: jobs: {e}"));
        out.extend(page["jobs"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

fn temp_dir(seed: u64) -> PathBuf {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("batchq-sigkill-{seed}-{}-{t:x}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
