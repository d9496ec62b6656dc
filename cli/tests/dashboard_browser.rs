//! The dashboard in a real browser (Debian's Chromium, headless, driven over
//! the DevTools protocol on a pipe): `batchq serve` on the embedded store with
//! the fake provider and a bearer key; the page loads without the key, asks
//! for it, then shows the figures the API returns for the same tenant; it
//! follows a second wave of requests through the run without being
//! reloaded; a PNG screenshot of the finished run is kept under
//! `target/tmp/dashboard-browser/`.
//!
//! Chromium is found as `$BATCHQ_CHROMIUM`, else `chromium` on the PATH
//! (`make test` installs it first, see `make browser`). When it is missing the
//! test fails and says so: it is never skipped.
//!
//! The DevTools protocol is spoken over `--remote-debugging-pipe` (JSON
//! messages ended by a NUL byte on the browser's descriptors 3 and 4), which
//! needs no WebDriver, no websocket crate and no open port: a small client
//! below does it with serde_json, which the workspace has anyway.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use base64::Engine;
use fake_openai::{FakeConfig, FakeHandle, FakeServer, Faults};
use serde_json::{json, Value};
use support::Serve;

const KEY: &str = "dashboard-test-key-0123456789abcdef";
const TENANT: &str = "dash";
/// Requests of the first wave (all finish before the page opens) and of the
/// second (enqueued while the page is open).
const FIRST_WAVE: usize = 120;
const SECOND_WAVE: usize = 80;
/// Share of lines (in percent, by the provider's line id) that fail at the
/// provider with HTTP 400, which fails the request at once.
const FAILING_PERCENT: u32 = 8;
/// The longest any one wait may take before the test gives up (a hang, not
/// a measurement).
const PATIENCE: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------ Chromium

/// Chromium: `$BATCHQ_CHROMIUM`, else `chromium` (or `chromium-browser`) on the PATH.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("BATCHQ_CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "Chromium is not installed, and the dashboard's browser test needs it: run `make browser` \
         (as root: apt-get install -y --no-install-recommends chromium), which `make test` does first, \
         or set BATCHQ_CHROMIUM to a Chromium binary"
    );
}

/// A headless Chromium and one page of it, spoken to over the DevTools pipe.
struct Browser {
    child: Child,
    commands: ChildStdin,
    messages: Receiver<Value>,
    next_id: u64,
    session: Option<String>,
    /// Script exceptions and console errors the page reported (CSP refusals among them).
    page_errors: Vec<String>,
}

impl Browser {
    fn launch(binary: &Path, profile: &Path) -> Browser {
        // The pipe is the browser's descriptors 3 (commands in) and 4
        // (messages out): the shell moves our stdin and stdout there.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec 3<&0 4>&1 </dev/null >/dev/null; exec "$@""#)
            .arg("sh")
            .arg(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--window-size=1280,1900",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let commands = child.stdin.take().expect("piped");
        let out = child.stdout.take().expect("piped");
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(out);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if buf.last() == Some(&0) {
                            buf.pop();
                        }
                        match serde_json::from_slice::<Value>(&buf) {
                            Ok(v) => {
                                if tx.send(v).is_err() {
                                    return;
                                }
                            }
                            Err(e) => eprintln!("devtools: unreadable message ({e})"),
                        }
                    }
                }
            }
        });
        Browser {
            child,
            commands,
            messages,
            next_id: 0,
            session: None,
            page_errors: Vec::new(),
        }
    }

    /// Sends one command (to the attached page, once there is one) and
    /// returns its result; events met on the way are kept when they report
    /// a page error.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .and_then(|()| self.commands.flush())
            .unwrap_or_else(|e| panic!("the browser stopped reading commands ({e}) at {method}"));
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = match self.messages.recv_timeout(left) {
                Ok(v) => v,
                Err(RecvTimeoutError::Timeout) => panic!("the browser did not answer {method}"),
                Err(RecvTimeoutError::Disconnected) => panic!("the browser exited during {method}"),
            };
            if v["id"] == json!(id) {
                if let Some(e) = v.get("error") {
                    panic!("{method} failed: {e}");
                }
                return v["result"].clone();
            }
            self.note_event(&v);
        }
    }

    fn note_event(&mut self, v: &Value) {
        match v["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let d = &v["params"]["exceptionDetails"];
                self.page_errors
                    .push(format!("exception: {} {}", d["text"], d["exception"]["description"]));
            }
            // Failed fetches (a 404 of a route this build lacks) are the
            // page's business; anything else at error level is a fault.
            Some("Log.entryAdded")
                if v["params"]["entry"]["level"] == "error" && v["params"]["entry"]["source"] != "network" =>
            {
                self.page_errors
                    .push(format!("console: {}", v["params"]["entry"]["text"]));
            }
            _ => {}
        }
    }

    /// Attaches to the browser's page and opens `url` in it.
    fn open(&mut self, url: &str) {
        let targets = self.call("Target.getTargets", json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .unwrap_or_else(|| panic!("the browser has no page: {targets}"))["targetId"]
            .clone();
        let attached = self.call("Target.attachToTarget", json!({"targetId": page, "flatten": true}));
        self.session = Some(attached["sessionId"].as_str().expect("a session id").to_owned());
        self.call("Runtime.enable", json!({}));
        self.call("Log.enable", json!({}));
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 1900, "deviceScaleFactor": 1, "mobile": false}),
        );
        let nav = self.call("Page.navigate", json!({"url": url}));
        assert!(nav.get("errorText").is_none(), "opening {url}: {nav}");
    }

    /// Evaluates `expr` in the page and returns its value, or what it threw
    /// (the page may still be loading).
    fn eval(&mut self, expr: &str) -> Result<Value, String> {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        match r.get("exceptionDetails") {
            Some(e) => Err(format!("{}", e["exception"]["description"])),
            None => Ok(r["result"]["value"].clone()),
        }
    }

    fn screenshot(&mut self, to: &Path) {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("image data"))
            .expect("base64 PNG");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::create_dir_all(to.parent().expect("a directory")).unwrap();
        std::fs::write(to, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ the stack

/// Calls the API as the test's tenant.
struct Client {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn get(&self, path: &str) -> (u16, Value) {
        self.rt.block_on(async {
            let resp = self
                .http
                .get(format!("{}{path}", self.base))
                .bearer_auth(KEY)
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {path}: {e}"));
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
        })
    }

    fn enqueue(&self, lines: &str) {
        self.rt.block_on(async {
            let resp = self
                .http
                .post(format!("{}/v1/requests/bulk", self.base))
                .bearer_auth(KEY)
                .header("Content-Type", "application/x-ndjson")
                .body(lines.to_owned())
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let v: Value = resp.json().await.unwrap();
            assert_eq!(status, 200, "{v}");
            assert_eq!(v["summary"]["rejected"], 0, "{v}");
        });
    }

    /// Plain GET without a key: what a browser opening the page sends.
    fn get_anonymous(&self, path: &str) -> (u16, Option<String>) {
        self.rt.block_on(async {
            let resp = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
            let ct = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (resp.status().as_u16(), ct)
        })
    }
}

/// `n` chat requests over two models.
fn workload(wave: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            let model = if i % 3 == 0 { "gpt-4.1-nano" } else { "gpt-4o-mini" };
            json!({"custom_id": format!("{wave}-{i}"), "url": "/v1/chat/completions",
                   "body": {"model": model, "messages": [{"role": "user", "content": format!("review {i}: fine")}]}})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until `check` gives a value, or fails with what it said last.
fn until<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => panic!("gave up waiting for {what}: {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

// ------------------------------------------------------------------ the page vs the API

/// What the page shows, read from its elements' ids and data attributes.
const READ_PAGE: &str = r#"JSON.stringify((() => {
  const $ = (id) => document.getElementById(id);
  const v = (id) => $(id).dataset.value;
  const rows = (id) => [...document.querySelectorAll('#' + id + ' tr')].map((tr) => ({ ...tr.dataset }));
  const stats = {};
  for (const k of ['queued', 'claimed', 'completed', 'failed', 'cancelled', 'total', 'oldest-age', 'open-jobs', 'batch-cost', 'realtime-cost', 'saved']) stats[k] = v('stat-' + k);
  const hours = {};
  for (const k of ['enqueued', 'completed', 'failed', 'cancelled', 'retried']) hours[k] = v('hours-' + k);
  const points = {};
  for (const c of ['queue-live', 'queue', 'hours', 'savings', 'failures']) points[c] = Number($('chart-' + c).dataset.points);
  return {
    refreshes: Number(document.body.dataset.refreshes),
    marker: window.dashboardTestMarker === true,
    auth_shown: !$('auth').hidden,
    tenant: $('tenant').textContent,
    states: Object.fromEntries(['stats', 'budget', 'queue', 'hours', 'savings', 'failures', 'jobs'].map((p) => [p, $(p).dataset.state])),
    stats: stats,
    budget: { daily: { ...$('budget-daily').dataset }, monthly: { ...$('budget-monthly').dataset } },
    jobs: rows('job-rows'),
    jobs_source: $('jobs').dataset.source,
    savings_source: $('savings').dataset.source,
    savings_total: $('savings').dataset.total,
    savings: rows('savings-rows'),
    hours: hours,
    failures: rows('failure-rows'),
    points: points,
  };
})())"#;

fn read_page(b: &mut Browser) -> Result<Value, String> {
    let text = b.eval(READ_PAGE)?;
    serde_json::from_str(text.as_str().ok_or("not a string")?).map_err(|e| format!("the page's figures: {e}"))
}

/// `"0.001500"` → `"0.0015"`, `"2.00"` → `"2"`: the form the page's data attributes use.
fn decimal(v: &Value) -> String {
    let s = v.as_str().unwrap_or_default();
    if !s.contains('.') {
        return s.to_owned();
    }
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn number(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Notes a difference between a figure the page shows and the API's.
fn same(diffs: &mut Vec<String>, what: &str, shown: &Value, expected: String) {
    let shown = shown.as_str().map(str::to_owned).unwrap_or_else(|| number(shown));
    if shown != expected {
        diffs.push(format!("{what}: page {shown:?}, API {expected:?}"));
    }
}

/// Differences between what the page shows and what the API answers now.
fn differences(page: &Value, api: &Client) -> Vec<String> {
    let mut diffs = Vec::new();
    let (status, stats) = api.get("/v1/stats");
    assert_eq!(status, 200, "{stats}");
    for s in ["queued", "claimed", "completed", "failed", "cancelled"] {
        same(
            &mut diffs,
            s,
            &page["stats"][s],
            number(&stats["requests"]["by_status"][s]),
        );
    }
    same(
        &mut diffs,
        "total",
        &page["stats"]["total"],
        number(&stats["requests"]["total"]),
    );
    same(
        &mut diffs,
        "open jobs",
        &page["stats"]["open-jobs"],
        number(&stats["jobs"]["open"]),
    );
    same(
        &mut diffs,
        "oldest queued age",
        &page["stats"]["oldest-age"],
        number(&stats["queue"]["oldest_queued_age_seconds"]),
    );
    same(
        &mut diffs,
        "saved",
        &page["stats"]["saved"],
        decimal(&stats["savings"]["saved_usd"]),
    );
    same(
        &mut diffs,
        "batch spend",
        &page["stats"]["batch-cost"],
        decimal(&stats["savings"]["batch_cost_usd"]),
    );
    same(
        &mut diffs,
        "real-time price",
        &page["stats"]["realtime-cost"],
        decimal(&stats["savings"]["realtime_cost_usd"]),
    );
    same(&mut diffs, "tenant", &page["tenant"], TENANT.into());
    // Budgets (GET /v1/stats `budget`): this server has both periods set.
    match stats.get("budget") {
        None => panic!("/v1/stats has no budget: {stats}"),
        Some(budget) => {
            same(&mut diffs, "budget panel", &page["states"]["budget"], "ok".into());
            for period in ["daily", "monthly"] {
                let shown = &page["budget"][period];
                match &budget[period] {
                    Value::Null => panic!("the {period} budget is set but /v1/stats shows none: {budget}"),
                    b => {
                        same(
                            &mut diffs,
                            &format!("{period} limit"),
                            &shown["limit"],
                            decimal(&b["limit_usd"]),
                        );
                        same(
                            &mut diffs,
                            &format!("{period} spent"),
                            &shown["spent"],
                            decimal(&b["spent_usd"]),
                        );
                        same(
                            &mut diffs,
                            &format!("{period} committed"),
                            &shown["committed"],
                            decimal(&b["committed_usd"]),
                        );
                        same(
                            &mut diffs,
                            &format!("{period} used"),
                            &shown["fraction"],
                            number(&b["used_fraction"]),
                        );
                    }
                }
            }
        }
    }
    // Jobs, newest first, as the page asked for them.
    let source = page["jobs_source"].as_str().unwrap_or("/v1/jobs");
    let (_, jobs) = api.get(source);
    let expected: Vec<Value> = jobs["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| {
            let c = &j["request_counts"];
            json!({"jobId": j["id"], "status": j["status"], "completed": number(&c["completed"]),
                   "failed": number(&c["failed"]), "total": number(&c["total"])})
        })
        .collect();
    if page["jobs"].as_array() != Some(&expected) {
        diffs.push(format!("jobs: page {}, API {}", page["jobs"], Value::from(expected)));
    }
    // Savings per day, from the query the page made.
    let source = page["savings_source"].as_str().unwrap_or_default().to_owned();
    if source.is_empty() {
        diffs.push("savings: the page has not read them".into());
    } else {
        let (_, savings) = api.get(&source);
        let days: Vec<Value> = savings["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| json!({"day": g["day"], "saved": decimal(&g["saved_usd"]), "requests": number(&g["requests"])}))
            .collect();
        let shown: Vec<Value> = page["savings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| json!({"day": r["day"], "saved": r["saved"], "requests": r["requests"]}))
            .collect();
        if shown != days {
            diffs.push(format!("savings per day: page {shown:?}, API {days:?}"));
        }
        same(
            &mut diffs,
            "savings running total",
            &page["savings_total"],
            decimal(&savings["total"]["saved_usd"]),
        );
    }
    // Activity (GET /v1/activity).
    let (status, activity) = api.get("/v1/activity");
    {
        assert_eq!(status, 200, "{activity}");
        for k in ["enqueued", "completed", "failed", "cancelled", "retried"] {
            same(
                &mut diffs,
                &format!("{k} in the range"),
                &page["hours"][k],
                number(&activity["total"][k]),
            );
        }
        let failures: Vec<Value> = activity["failures"]
            .as_array()
            .expect("failures")
            .iter()
            .map(|f| json!({"code": f["code"], "count": number(&f["count"])}))
            .collect();
        if page["failures"].as_array() != Some(&failures) {
            diffs.push(format!(
                "failures: page {}, API {}",
                page["failures"],
                Value::from(failures)
            ));
        }
    }
    diffs
}

/// Waits until the page, refreshed on its own, shows what the API says and
/// `also` holds of it.
fn page_agrees(b: &mut Browser, api: &Client, what: &str, also: impl Fn(&Value) -> Result<(), String>) -> Value {
    until(what, || {
        let page = read_page(b)?;
        also(&page)?;
        let diffs = differences(&page, api);
        if diffs.is_empty() {
            Ok(page)
        } else {
            Err(diffs.join("; "))
        }
    })
}

fn stat(page: &Value, name: &str) -> u64 {
    page["stats"][name].as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn the_dashboard_shows_what_the_api_returns_and_follows_a_run_in_a_real_browser() {
    let chromium = chromium();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fake: FakeHandle = rt
        .block_on(FakeServer::start(FakeConfig {
            faults: Faults {
                fail_percent: FAILING_PERCENT,
                fail_status: Some(400),
                ..Faults::default()
            },
            ..FakeConfig::default()
        }))
        .unwrap();
    let id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("dashboard-{id}"));
    std::fs::create_dir_all(&work).unwrap();
    let vars = [
        ("BATCHQ_STORE", format!("embedded:{}", work.join("data").display())),
        ("OPENAI_BASE_URL", fake.base_url()),
        ("OPENAI_API_KEY", "sk-fake".into()),
        ("BATCHQ_SUBMIT_MAX_AGE_SECS", "3".into()),
        ("BATCHQ_API_KEYS", format!("{TENANT}:{KEY}")),
        // Budgets, so the page shows spend against them (far above the run's).
        ("BATCHQ_TENANT_DAILY_BUDGET_USD", "2".into()),
        ("BATCHQ_TENANT_MONTHLY_BUDGET_USD", "40".into()),
        ("BATCHQ_LOG", "warn".into()),
    ];
    let batchq = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_batchq"));
        c.args(args).envs(vars.iter().map(|(k, v)| (*k, v.as_str())));
        c
    };
    let serve = Serve::start(batchq);
    let url = serve.url.clone();
    let api = Client {
        rt,
        http: reqwest::Client::new(),
        base: url.clone(),
    };

    // The page needs no key; the data does.
    assert_eq!(
        api.get_anonymous("/dashboard"),
        (200, Some("text/html; charset=utf-8".into()))
    );
    assert_eq!(api.get_anonymous("/v1/stats").0, 401);

    // A first run, finished before the page opens.
    api.enqueue(&workload("first", FIRST_WAVE));
    until("the first wave to finish", || {
        let (_, s) = api.get("/v1/stats");
        let by = &s["requests"]["by_status"];
        let done = by["completed"].as_u64().unwrap_or(0) + by["failed"].as_u64().unwrap_or(0);
        if done == FIRST_WAVE as u64 {
            Ok(())
        } else {
            Err(format!("{by}"))
        }
    });

    let mut browser = Browser::launch(&chromium, &work.join("chromium-profile"));
    browser.open(&format!("{url}/dashboard?refresh=1"));
    // Without a key in this tab the page asks for one and shows nothing.
    let asking = until("the page to ask for the key", || {
        let page = read_page(&mut browser)?;
        if page["auth_shown"] == true {
            Ok(page)
        } else {
            Err(format!("{page}"))
        }
    });
    assert_eq!(asking["states"]["stats"], "loading", "{asking}");
    browser
        .eval(&format!(
            "document.getElementById('key').value = {}; document.getElementById('auth').requestSubmit(); window.dashboardTestMarker = true; 1",
            json!(KEY)
        ))
        .expect("enter the key");
    let first = page_agrees(&mut browser, &api, "the page to show the first wave", |page| {
        if stat(page, "total") == FIRST_WAVE as u64 && page["states"]["savings"] == "ok" {
            Ok(())
        } else {
            Err(format!("page shows {}", page["stats"]))
        }
    });
    assert_eq!(first["auth_shown"], false);
    assert!(first["jobs"].as_array().is_some_and(|j| !j.is_empty()), "{first}");
    assert!(stat(&first, "failed") > 0, "some lines fail at the provider: {first}");
    assert!(first["points"]["savings"].as_u64() > Some(0), "{first}");

    // A second wave while the page is open: its batches stay in progress
    // until the test ends them, so the page is seen mid-run.
    fake.set_faults(Faults {
        stay_in_progress_polls: 1_000_000,
        ..fake.faults()
    });
    let before = fake.submissions().len();
    api.enqueue(&workload("second", SECOND_WAVE));
    let total = (FIRST_WAVE + SECOND_WAVE) as u64;
    let mid = page_agrees(
        &mut browser,
        &api,
        "the page to show the second wave in flight",
        |page| {
            if stat(page, "total") == total && stat(page, "claimed") == SECOND_WAVE as u64 {
                Ok(())
            } else {
                Err(format!("page shows {}", page["stats"]))
            }
        },
    );
    assert!(
        mid["jobs"].as_array().unwrap().iter().any(|j| j["status"] != "done"),
        "jobs in flight: {}",
        mid["jobs"]
    );
    let in_flight: Vec<String> = fake.submissions()[before..]
        .iter()
        .map(|s| s.batch_id.clone())
        .collect();
    assert!(!in_flight.is_empty());
    for batch in &in_flight {
        assert!(fake.complete(batch), "{batch} was running");
    }
    let done = page_agrees(&mut browser, &api, "the page to show the finished run", |page| {
        if stat(page, "completed") + stat(page, "failed") == total
            && page["jobs"].as_array().unwrap().iter().all(|j| j["status"] == "done")
        {
            Ok(())
        } else {
            Err(format!("page shows {} and jobs {}", page["stats"], page["jobs"]))
        }
    });
    assert_eq!(done["marker"], true, "the page was not reloaded: it updated itself");
    assert!(done["refreshes"].as_u64() > mid["refreshes"].as_u64(), "{done}");
    assert!(done["points"]["savings"].as_u64() > Some(0), "{done}");
    for chart in ["hours", "failures", "queue-live"] {
        assert!(
            done["points"][chart].as_u64() > Some(0),
            "chart {chart} is empty: {done}"
        );
    }

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("dashboard-browser")
        .join("dashboard.png");
    browser.screenshot(&shot);
    eprintln!("dashboard screenshot: {}", shot.display());
    println!("dashboard screenshot: {}", shot.display());
    assert!(
        browser.page_errors.is_empty(),
        "the page reported errors: {:?}",
        browser.page_errors
    );
    drop(browser);
    let _ = std::fs::remove_dir_all(&work);
}
