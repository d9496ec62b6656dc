//! Issue #17, acceptance 1: a receiver behind `batchq serve` (embedded
//! store, fake provider) gets every event of a 2,000-request run, each
//! verified by an independent Standard Webhooks implementation (the
//! `standardwebhooks` package from PyPI, in `webhook_receiver.py`), despite
//! answers of 500, attempts that hang past the timeout, and the receiver
//! being down (its port closed) for a while; and no event id is answered
//! 2xx twice (a repeat comes only after a failed attempt).
//!
//! The receiver runs on the Python of the Makefile's virtualenv
//! (`.venv/bin/python`, or `BATCHQ_TEST_PYTHON`). Retries are configured
//! short (100 ms to 1 s, timeout 500 ms) so the run takes seconds; nothing
//! here measures time, the deadline only stops a run that would hang.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use fake_openai::{FakeConfig, FakeServer};
use serde_json::{json, Value};
use support::Serve;

const REQUESTS: usize = 2000;
const SECRET_BYTES: &[u8; 32] = b"batchq-webhook-acceptance-secret";
/// How long a fault-injected attempt hangs: past BATCHQ_WEBHOOK_TIMEOUT_MS.
const HANG_SECONDS: &str = "0.9";
const DEADLINE: Duration = Duration::from_secs(300);

fn python() -> PathBuf {
    match std::env::var_os("BATCHQ_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"),
    }
}

/// The receiver process on `port`, logging to `log`.
struct Receiver {
    child: Child,
}

impl Receiver {
    /// Starts it; with `down_after` > 0 it closes its port and exits after
    /// answering that many 200s.
    fn start(port: u16, secret: &str, log: &Path, down_after: usize) -> Receiver {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhook_receiver.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .arg(secret)
            .arg(log)
            .arg(HANG_SECONDS)
            .arg(down_after.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start the receiver with {}: {e} (run `make venv`)", python().display()));
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
        assert_eq!(
            line.trim(),
            "listening",
            "the receiver did not start (is standardwebhooks installed?)"
        );
        Receiver { child }
    }

    /// Whether it has exited (cleanly: an unclean exit fails the test).
    fn exited(&mut self) -> bool {
        match self.child.try_wait().unwrap() {
            Some(status) => {
                assert!(status.success(), "receiver exit: {status:?}");
                true
            }
            None => false,
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn log_lines(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn answered_ok(lines: &[Value]) -> BTreeMap<String, usize> {
    let mut ok: BTreeMap<String, usize> = BTreeMap::new();
    for l in lines.iter().filter(|l| l["answer"] == 200) {
        *ok.entry(l["id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    ok
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_of_a_2000_request_run_arrives_verified_once_despite_500s_timeouts_and_downtime() {
    let fake = FakeServer::start(FakeConfig::default()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("batchq-webhooks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(SECRET_BYTES)
    );
    let vars: Vec<(&str, String)> = vec![
        ("BATCHQ_STORE", format!("embedded:{}", dir.join("data").display())),
        ("OPENAI_BASE_URL", fake.base_url()),
        ("OPENAI_API_KEY", "sk-fake".into()),
        ("BATCHQ_SUBMIT_MAX_AGE_SECS", "1".into()),
        ("BATCHQ_WEBHOOK_ALLOW_PRIVATE", "true".into()),
        ("BATCHQ_WEBHOOK_TIMEOUT_MS", "500".into()),
        ("BATCHQ_WEBHOOK_RETRY_DELAYS_MS", "100,200,400,800,1000".into()),
        // The last delay repeats until a minute has passed: the receiver's
        // downtime is well inside it, so nothing ends up failed.
        ("BATCHQ_WEBHOOK_MIN_RETRY_SPAN_MS", "60000".into()),
        ("BATCHQ_WEBHOOK_EVERY_MS", "100".into()),
        ("BATCHQ_WEBHOOK_CONCURRENCY", "8".into()),
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
    let log = dir.join("receiver.jsonl");
    let port = free_port();
    let lines: Vec<String> = (0..REQUESTS)
        .map(|i| {
            json!({
                "custom_id": format!("wh-{i}"),
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("Is review {i} positive?")}]}
            })
            .to_string()
        })
        .collect();
    let input = dir.join("in.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();

    tokio::task::block_in_place(|| {
        let serve = Serve::start(batchq);
        let api = serve.url.clone();
        // Down (port closed) once a quarter of the events are in, for 2 s.
        let mut receiver = Receiver::start(port, &secret, &log, REQUESTS / 4);

        let hook = format!("http://127.0.0.1:{port}/hook");
        let added = json_out(
            &batchq(&[
                "webhooks", "add", "--url", &hook, "--secret", &secret, "--api", &api, "--json",
            ])
            .output()
            .unwrap(),
        );
        assert!(added["secret"].is_string(), "{added}");
        let endpoint = added["id"].as_str().unwrap().to_owned();
        let enq = json_out(
            &batchq(&["enqueue", input.to_str().unwrap(), "--api", &api, "--json"])
                .output()
                .unwrap(),
        );
        assert_eq!(enq["created"], REQUESTS as u64, "{enq}");

        let started = Instant::now();
        let mut was_down = false;
        let mut jobs_done: Option<BTreeSet<String>> = None;
        loop {
            assert!(
                started.elapsed() < DEADLINE,
                "not every event arrived before the deadline"
            );
            std::thread::sleep(Duration::from_millis(200));
            if !was_down && receiver.exited() {
                std::thread::sleep(Duration::from_secs(2));
                receiver = Receiver::start(port, &secret, &log, 0);
                was_down = true;
            }
            let got = log_lines(&log);
            if jobs_done.is_none() {
                let stats = json_out(&batchq(&["stats", "--api", &api, "--json"]).output().unwrap());
                let by = &stats["requests"]["by_status"];
                let finished = by["completed"].as_u64().unwrap_or(0) + by["failed"].as_u64().unwrap_or(0);
                if finished == REQUESTS as u64 && stats["jobs"]["open"] == 0 {
                    let jobs = json_out(&batchq(&["jobs", "--api", &api, "--json"]).output().unwrap());
                    jobs_done = Some(
                        jobs["jobs"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|j| j["id"].as_str().unwrap().to_owned())
                            .collect(),
                    );
                }
            }
            let request_ok = got
                .iter()
                .filter(|l| l["answer"] == 200 && l["type"].as_str().is_some_and(|t| t.starts_with("request.")))
                .map(|l| l["id"].as_str().unwrap())
                .collect::<BTreeSet<_>>()
                .len();
            let jobs_ok = got
                .iter()
                .filter(|l| l["answer"] == 200 && l["type"] == "job.finished")
                .count();
            if was_down && request_ok == REQUESTS && jobs_done.as_ref().is_some_and(|j| jobs_ok >= j.len()) {
                break;
            }
        }

        let got = log_lines(&log);
        // Every message verified with the independent implementation.
        let unverified: Vec<&Value> = got.iter().filter(|l| l["verified"] != true).collect();
        assert!(unverified.is_empty(), "messages that did not verify: {unverified:?}");
        // No event id answered 2xx twice.
        let twice: Vec<(String, usize)> = answered_ok(&got).into_iter().filter(|(_, n)| *n > 1).collect();
        assert!(twice.is_empty(), "event ids delivered twice: {twice:?}");
        // Every request has exactly one event id, and it arrived.
        let mut ids_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for l in got
            .iter()
            .filter(|l| l["type"].as_str().is_some_and(|t| t.starts_with("request.")))
        {
            ids_of
                .entry(l["custom_id"].as_str().unwrap().to_owned())
                .or_default()
                .insert(l["id"].as_str().unwrap().to_owned());
        }
        assert_eq!(ids_of.len(), REQUESTS, "requests with an event");
        for i in 0..REQUESTS {
            let ids = &ids_of[&format!("wh-{i}")];
            assert_eq!(ids.len(), 1, "wh-{i} has event ids {ids:?}");
        }
        // One job.finished per job.
        let job_events: BTreeSet<String> = got
            .iter()
            .filter(|l| l["type"] == "job.finished" && l["answer"] == 200)
            .map(|l| l["job_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(Some(&job_events), jobs_done.as_ref(), "job.finished events");
        // The faults happened: 500s, hangs, and attempts while the port was closed.
        assert!(got.iter().any(|l| l["answer"] == 500), "no 500 was injected");
        assert!(got.iter().any(|l| l["answer"] == "hang"), "no hang was injected");
        let mut after: Option<String> = None;
        let mut all = Vec::new();
        loop {
            let mut path = format!("{api}/v1/webhooks/deliveries?limit=1000&endpoint={endpoint}");
            if let Some(a) = &after {
                path.push_str(&format!("&after={a}"));
            }
            let page: Value = tokio::runtime::Handle::current()
                .block_on(async { reqwest::get(&path).await.unwrap().json().await.unwrap() });
            let items = page["deliveries"].as_array().unwrap().clone();
            all.extend(items);
            match page["next_after"].as_str() {
                Some(a) => after = Some(a.to_owned()),
                None => break,
            }
        }
        assert_eq!(all.len(), ok_count(&got), "deliveries listed");
        assert!(
            all.iter().all(|d| d["status"] == "delivered"),
            "a delivery not delivered"
        );
        assert!(
            all.iter()
                .any(|d| d["last_error"].as_str().is_some_and(|e| e.contains("connect"))),
            "no attempt found the receiver down"
        );
        assert!(
            all.iter().any(|d| d["last_error"] == "timed out"),
            "no attempt timed out"
        );
        eprintln!(
            "attempts logged {}, event ids delivered {}, answered 500 {}, hung {}, deliveries retried {}, \
             of which found the receiver down {}",
            got.len(),
            ok_count(&got),
            got.iter().filter(|l| l["answer"] == 500).count(),
            got.iter().filter(|l| l["answer"] == "hang").count(),
            all.iter().filter(|d| d["attempts"].as_u64() > Some(1)).count(),
            all.iter()
                .filter(|d| d["last_error"].as_str().is_some_and(|e| e.contains("connect")))
                .count(),
        );
        drop(receiver);
        drop(serve);
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn ok_count(lines: &[Value]) -> usize {
    answered_ok(lines).len()
}
