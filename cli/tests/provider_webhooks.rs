//! Issue #17, acceptance 3: an OpenAI-style `batch.completed` event, signed
//! by an independent Standard Webhooks implementation (the `standardwebhooks`
//! package from PyPI, on the Python of the Makefile's virtualenv,
//! `.venv/bin/python`, or `BATCHQ_TEST_PYTHON`), posted to `batchq serve`'s
//! `/v1/provider-webhooks/openai`, makes the finished batch's results arrive
//! although the scheduled poll does not run again (poll every hour: its one
//! run is at start, before anything is submitted). A tampered body, a wrong
//! secret and an old timestamp are each refused with 400 naming the header
//! and change nothing (the jobs, stats and a request compared before and
//! after); a redelivery and an event of another type change nothing either.
//!
//! Then the fake sends the event itself, as OpenAI does for a project with a
//! webhook endpoint: started with the endpoint's URL and secret, it signs
//! `batch.completed` when the batch ends (on its own clock, unpolled), and
//! retries an answer that is not 2xx; the results arrive on that event
//! alone, polling scheduled hourly.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::{Arc, Mutex, OnceLock};

use fake_openai::{FakeConfig, FakeServer, WebhookConfig};
use serde_json::{json, Value};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const REQUESTS: usize = 3;
const DEADLINE: Duration = Duration::from_secs(120);

fn python() -> PathBuf {
    match std::env::var_os("BATCHQ_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"),
    }
}

/// The `webhook-signature` the `standardwebhooks` package makes.
fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &str) -> String {
    let out = Command::new(python())
        .args([
            "-c",
            "import sys, datetime\n\
             from standardwebhooks.webhooks import Webhook\n\
             ts = datetime.datetime.fromtimestamp(int(sys.argv[3]), tz=datetime.timezone.utc)\n\
             print(Webhook(sys.argv[1]).sign(sys.argv[2], ts, sys.argv[4]))",
            secret,
            msg_id,
            &timestamp.to_string(),
            body,
        ])
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e} (run `make venv`)", python().display()));
    assert!(
        out.status.success(),
        "standardwebhooks could not sign (is it installed?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn json_out(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn event(id: &str, event_type: &str, batch: &str) -> String {
    json!({"id": id, "object": "event", "type": event_type, "created_at": now_secs(), "data": {"id": batch}})
        .to_string()
}

async fn post(url: &str, id: &str, timestamp: i64, signature: &str, body: String) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/provider-webhooks/openai"))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_batch_event_polls_the_batch_at_once_and_bad_signatures_change_nothing() {
    let fake = FakeServer::start(FakeConfig::default()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("batchq-provider-webhooks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let vars: Vec<(&str, String)> = vec![
        ("BATCHQ_STORE", format!("embedded:{}", dir.join("data").display())),
        ("OPENAI_BASE_URL", fake.base_url()),
        ("OPENAI_API_KEY", "sk-fake".into()),
        ("OPENAI_WEBHOOK_SECRET", SECRET.into()),
        ("BATCHQ_SUBMIT_MAX_AGE_SECS", "1".into()),
        ("BATCHQ_LOG", "warn".into()),
    ];
    let batchq = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_batchq"));
        c.args(args)
            .env_clear()
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())));
        if let Ok(path) = std::env::var("PATH") {
            c.env("PATH", path);
        }
        c
    };
    // Submit every second; poll every hour: its one run is at start.
    let serve = support::Serve::start_polling_every(batchq, "1h");
    let api = serve.url.clone();

    let lines: Vec<String> = (0..REQUESTS)
        .map(|i| {
            json!({
                "custom_id": format!("pw-{i}"),
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("Question {i}")}]}
            })
            .to_string()
        })
        .collect();
    let input = dir.join("in.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let enq = json_out(
        &batchq(&["enqueue", input.to_str().unwrap(), "--api", &api, "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(enq["created"], REQUESTS as u64, "{enq}");

    // Wait for the submitted batch (the fake finishes it at its first retrieve).
    let started = Instant::now();
    let batch = loop {
        assert!(started.elapsed() < DEADLINE, "the job was never submitted");
        let jobs = json_out(&batchq(&["jobs", "--api", &api, "--json"]).output().unwrap());
        if let Some(b) = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|j| j["provider_batch_id"].as_str())
        {
            break b.to_owned();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let snapshot = || {
        let jobs = json_out(&batchq(&["jobs", "--api", &api, "--json"]).output().unwrap());
        let stats = json_out(&batchq(&["stats", "--api", &api, "--json"]).output().unwrap());
        (jobs, stats["requests"].clone())
    };
    let before = snapshot();
    assert_eq!(
        before.1["by_status"]["completed"].as_u64().unwrap_or(0),
        0,
        "results arrived before any event: {}",
        before.1
    );

    let body = event("evt_pw_1", "batch.completed", &batch);
    let ts = now_secs();
    let good = sign(SECRET, "evt_pw_1", ts, &body);

    // A tampered body: the signature no longer matches.
    let tampered = body.replace("batch.completed", "batch.cancelled");
    let (status, answer) = post(&api, "evt_pw_1", ts, &good, tampered).await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (400, Some("webhook-signature")),
        "{answer}"
    );
    // Signed with another secret.
    let wrong = sign(OTHER_SECRET, "evt_pw_1", ts, &body);
    let (status, answer) = post(&api, "evt_pw_1", ts, &wrong, body.clone()).await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (400, Some("webhook-signature")),
        "{answer}"
    );
    // Correctly signed, but ten minutes old (the tolerance is five).
    let old_ts = ts - 600;
    let old = sign(SECRET, "evt_pw_1", old_ts, &body);
    let (status, answer) = post(&api, "evt_pw_1", old_ts, &old, body.clone()).await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (400, Some("webhook-timestamp")),
        "{answer}"
    );
    assert_eq!(snapshot(), before, "a refused event changed the store");

    // An event of another type: answered, ignored.
    let other = event("evt_pw_2", "response.completed", "resp_1");
    let sig = sign(SECRET, "evt_pw_2", ts, &other);
    let (status, answer) = post(&api, "evt_pw_2", ts, &sig, other).await;
    assert_eq!((status, &answer), (200, &json!({"ignored": true})));
    assert_eq!(snapshot(), before, "an ignored event changed the store");

    // The real event: the batch is polled, copied and ingested before the answer.
    let (status, answer) = post(&api, "evt_pw_1", ts, &good, body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["polled"], true, "{answer}");
    let after = snapshot();
    assert_eq!(
        after.1["by_status"]["completed"].as_u64().unwrap_or(0),
        REQUESTS as u64,
        "{}",
        after.1
    );
    let one = json_out(&batchq(&["status", "pw-0", "--api", &api, "--json"]).output().unwrap());
    assert_eq!(one["status"], "completed", "{one}");

    // A redelivery of the same event: the job is closed, nothing changes.
    let (status, answer) = post(&api, "evt_pw_1", ts, &good, body).await;
    assert_eq!((status, answer["polled"].as_bool()), (200, Some(false)), "{answer}");
    assert_eq!(snapshot().1, after.1, "a redelivery changed the counts");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The webhook endpoint the fake is given before `batchq serve` (and so its
/// port) exists: it answers 503 to the first attempt of each event, then
/// passes attempts on to serve's route and answers what serve answered.
struct Relay {
    url: String,
    target: Arc<OnceLock<String>>,
    /// (webhook-id, status answered).
    seen: Arc<Mutex<Vec<(String, u16)>>>,
}

impl Relay {
    async fn start() -> Relay {
        let target: Arc<OnceLock<String>> = Arc::default();
        let seen: Arc<Mutex<Vec<(String, u16)>>> = Arc::default();
        let (t, s) = (target.clone(), seen.clone());
        let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (target, seen) = (t.clone(), s.clone());
            async move {
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let first = !seen.lock().unwrap().iter().any(|(i, _)| *i == id);
                let status = match target.get() {
                    Some(url) if !first => {
                        let mut req = reqwest::Client::new().post(format!("{url}/v1/provider-webhooks/openai"));
                        for name in [
                            "content-type",
                            "webhook-id",
                            "webhook-timestamp",
                            "webhook-signature",
                            "user-agent",
                        ] {
                            if let Some(v) = headers.get(name) {
                                req = req.header(name, v.as_bytes());
                            }
                        }
                        match req.body(body.to_vec()).send().await {
                            Ok(r) => r.status().as_u16(),
                            Err(_) => 502,
                        }
                    }
                    _ => 503,
                };
                seen.lock().unwrap().push((id, status));
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Relay { url, target, seen }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_arrive_on_the_fakes_own_signed_event_with_polling_scheduled_hourly() {
    let relay = Relay::start().await;
    // Each batch phase lasts 300 ms: the batch ends about a second after its
    // create, once batchq has recorded it, without anyone polling it.
    let fake = FakeServer::start(FakeConfig {
        step_ms: 300,
        webhook: Some(WebhookConfig {
            first_retry_ms: 200,
            ..WebhookConfig::new(relay.url.clone(), SECRET)
        }),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("batchq-provider-webhooks-fake-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let vars: Vec<(&str, String)> = vec![
        ("BATCHQ_STORE", format!("embedded:{}", dir.join("data").display())),
        ("OPENAI_BASE_URL", fake.base_url()),
        ("OPENAI_API_KEY", "sk-fake".into()),
        ("OPENAI_WEBHOOK_SECRET", SECRET.into()),
        ("BATCHQ_SUBMIT_MAX_AGE_SECS", "1".into()),
        ("BATCHQ_LOG", "warn".into()),
    ];
    let batchq = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_batchq"));
        c.args(args)
            .env_clear()
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())));
        if let Ok(path) = std::env::var("PATH") {
            c.env("PATH", path);
        }
        c
    };
    let serve = support::Serve::start_polling_every(batchq, "1h");
    let api = serve.url.clone();
    relay.target.set(api.clone()).unwrap();

    let lines: Vec<String> = (0..REQUESTS)
        .map(|i| {
            json!({
                "custom_id": format!("fw-{i}"),
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("Question {i}")}]}
            })
            .to_string()
        })
        .collect();
    let input = dir.join("in.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let enq = json_out(
        &batchq(&["enqueue", input.to_str().unwrap(), "--api", &api, "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(enq["created"], REQUESTS as u64, "{enq}");

    let started = Instant::now();
    let stats = loop {
        let stats = json_out(&batchq(&["stats", "--api", &api, "--json"]).output().unwrap());
        if stats["requests"]["by_status"]["completed"].as_u64() == Some(REQUESTS as u64) {
            break stats;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the results never arrived: {stats}; webhook attempts: {:?}",
            fake.webhook_attempts()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let jobs = json_out(&batchq(&["jobs", "--api", &api, "--json"]).output().unwrap());
    let batch = jobs["jobs"][0]["provider_batch_id"].as_str().unwrap().to_owned();

    // One event, for that batch; refused once by the endpoint, retried with
    // the same webhook-id, and answered 200 by batchq.
    let attempts = fake.webhook_attempts();
    assert!(
        attempts
            .iter()
            .all(|a| a.batch_id == batch && a.event_type == "batch.completed"),
        "{attempts:?}"
    );
    assert!(
        attempts.iter().all(|a| a.webhook_id == attempts[0].webhook_id),
        "{attempts:?}"
    );
    let statuses: Vec<Option<u16>> = attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(503), Some(200)], "{attempts:?}");
    assert_eq!(
        relay.seen.lock().unwrap().iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        [503, 200]
    );
    // Only the poll at serve's start (before the submit) and the one the
    // event asked for retrieved the batch: the scheduled poll did not bring
    // the results.
    assert_eq!(fake.calls("retrieve").len(), 1, "{stats}");
    let one = json_out(&batchq(&["status", "fw-0", "--api", &api, "--json"]).output().unwrap());
    assert_eq!(one["status"], "completed", "{one}");
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}
