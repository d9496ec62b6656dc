//! What `batchq` promises every caller, on the embedded store (no emulator
//! needed): a closed stdout ends a command quietly with status 0; a
//! non-UTF-8 line is rejected alone; conflicts and rejections carry their
//! line numbers; an unreachable store is named with the next step; durations
//! read one way on every flag; each exit status of `batchq --help` is the
//! one the command ends with; SIGTERM stops `serve` cleanly and `wait` like
//! Ctrl-C; exports carry the provider's `request_id`.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use fake_openai::{FakeConfig, FakeHandle, FakeServer};
use serde_json::{json, Value};

/// A data directory of its own and a fake provider for each test.
struct Env {
    dir: PathBuf,
    vars: Vec<(String, String)>,
    _fake: Option<FakeHandle>,
}

impl Env {
    /// An embedded store in a fresh directory; no provider.
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("batchq-contract-{name}-{}", unique()));
        std::fs::create_dir_all(&dir).unwrap();
        let vars = vec![
            (
                "BATCHQ_STORE".into(),
                format!("embedded:{}", dir.join("data").display()),
            ),
            ("BATCHQ_SUBMIT_MAX_AGE_SECS".into(), "0".into()),
            ("HOME".into(), dir.display().to_string()),
        ];
        Self { dir, vars, _fake: None }
    }

    /// The same with a fake provider answering at once.
    async fn with_provider(name: &str) -> Self {
        let fake = FakeServer::start(FakeConfig::default()).await.unwrap();
        let mut env = Self::new(name);
        env.vars.push(("OPENAI_BASE_URL".into(), fake.base_url()));
        env.vars.push(("OPENAI_API_KEY".into(), "sk-fake".into()));
        env._fake = Some(fake);
        env
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_batchq"));
        c.args(args)
            .env_clear()
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        if let Ok(path) = std::env::var("PATH") {
            c.env("PATH", path);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run batchq")
    }

    /// Runs `args` and insists on success.
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "batchq {args:?}: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unique() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{t:x}-{}", std::process::id())
}

fn request(custom_id: &str, content: &str) -> String {
    json!({
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
    })
    .to_string()
}

fn jsonl(lines: &[String]) -> Vec<u8> {
    (lines.join("\n") + "\n").into_bytes()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_of(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not one JSON document ({e}): {text}"))
}

/// Waits for `child` to exit (a safety net, not a timing claim).
fn wait_exit(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "{what} did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// A store holding `n` finished requests (one job), for the listing commands.
async fn finished_store(name: &str, n: usize) -> Env {
    let env = Env::with_provider(name).await;
    // Long contents: the export of `n` answers is well over a pipe's buffer.
    let lines: Vec<String> = (0..n)
        .map(|i| request(&format!("r-{i}"), &format!("question {i}")))
        .collect();
    let file = env.write("in.jsonl", &jsonl(&lines));
    tokio::task::spawn_blocking(move || {
        env.ok(&["init"]);
        env.ok(&["enqueue", file.to_str().unwrap()]);
        env.ok(&["submit", "--force"]);
        let poll = json_of(&env.ok(&["poll", "--json"]));
        assert_eq!(poll["ingested"][0]["completed"], n, "{poll}");
        env
    })
    .await
    .unwrap()
}

/// Runs `args` with stdout a pipe whose reader reads `read_lines` lines and
/// then goes away.
fn with_stdout_closed_after(env: &Env, args: &[&str], read_lines: usize) -> (ExitStatus, String, Vec<String>) {
    let mut child = env
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    {
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        for _ in 0..read_lines {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            lines.push(line);
        }
        // Dropped here: the pipe's only reader is gone.
    }
    let status = wait_exit(&mut child, &format!("batchq {args:?}"));
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status, err, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_every_printing_command_quietly_with_status_0() {
    let env = finished_store("pipe", 300).await;
    tokio::task::spawn_blocking(move || {
        // `results | head -1`: 300 answers are far more than a pipe holds, so
        // the writes after the reader left fail with EPIPE.
        let (status, err, lines) = with_stdout_closed_after(&env, &["results"], 1);
        assert!(lines[0].contains("\"custom_id\""), "{lines:?}");
        assert_eq!(status.code(), Some(0), "stderr: {err}");
        assert_eq!(err, "");

        // Every other printing command, its reader gone before it writes at
        // all: the first write fails (the output of a small store would
        // otherwise fit in the pipe and never fail).
        let export = env.dir.join("export");
        for args in [
            vec!["jobs"],
            vec!["jobs", "--json"],
            vec!["stats"],
            vec!["status", "r-1"],
            vec!["savings"],
            vec!["savings", "--group-by", "model"],
            vec!["results", "--json"],
            vec!["export", export.to_str().unwrap()],
            vec!["wait", "--timeout", "10s"],
        ] {
            let (status, err, _) = with_stdout_closed_after(&env, &args, 0);
            assert_eq!(status.code(), Some(0), "batchq {args:?}: stderr: {err}");
            assert_eq!(err, "", "batchq {args:?}");
        }
    })
    .await
    .unwrap();
}

#[test]
fn a_closed_stdout_ends_analyze_and_help_quietly() {
    let env = Env::new("pipe-analyze");
    let log: Vec<String> = (0..200)
        .map(|i| {
            json!({"timestamp": "2026-11-01T00:00:00Z", "provider": "openai", "model": "gpt-4o-mini",
                   "input_tokens": 1000 + i, "output_tokens": 100, "category": format!("c{i}"),
                   "latency_tolerance": "days"})
            .to_string()
        })
        .collect();
    let file = env.write("usage.jsonl", &jsonl(&log));
    for args in [
        vec!["analyze", file.to_str().unwrap()],
        vec!["analyze", file.to_str().unwrap(), "--json"],
    ] {
        let (status, err, _) = with_stdout_closed_after(&env, &args, 0);
        assert_eq!(status.code(), Some(0), "batchq {args:?}: stderr: {err}");
        assert_eq!(err, "", "batchq {args:?}");
    }
}

#[test]
fn a_non_utf8_line_is_rejected_alone_with_its_line_number() {
    let env = Env::new("utf8");
    env.ok(&["init"]);
    let mut bytes = jsonl(&[request("a-1", "one"), request("a-2", "two"), request("a-3", "three")]);
    bytes.extend_from_slice(b"{\"custom_id\":\"a-4\",\"body\":\"caf\xe9\"}\n");
    bytes.extend_from_slice(&jsonl(&[request("a-5", "five")]));
    let file = env.write("mixed.jsonl", &bytes);

    let out = env.run(&["enqueue", file.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v = json_of(&out);
    assert_eq!(v["created"], 4, "the other lines are enqueued: {v}");
    assert_eq!(v["rejected"], 1, "{v}");
    assert_eq!(v["rejections"][0]["line"], 4, "{v}");
    assert_eq!(v["rejections"][0]["error"]["code"], "invalid_utf8", "{v}");
    for id in ["a-1", "a-5"] {
        assert_eq!(json_of(&env.ok(&["status", id, "--json"]))["status"], "queued");
    }
    assert_eq!(env.run(&["status", "a-4"]).status.code(), Some(1));

    // The same file again, in text: line 4 named, nothing new.
    let out = env.run(&["enqueue", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0 new, 4 already queued"), "{text}");
    assert!(text.contains("line 4: the line is not valid UTF-8"), "{text}");
}

#[test]
fn conflicts_are_listed_with_their_line_numbers_in_text_and_json() {
    let env = Env::new("conflict");
    env.ok(&["init"]);
    let first = env.write("first.jsonl", &jsonl(&[request("c-1", "one"), request("c-2", "two")]));
    env.ok(&["enqueue", first.to_str().unwrap()]);
    let second = env.write(
        "second.jsonl",
        &jsonl(&[
            request("c-1", "one"),
            request("c-3", "three"),
            String::new(),
            request("c-2", "not two"),
        ]),
    );

    let out = env.run(&["enqueue", second.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 conflicts"), "{text}");
    assert!(text.contains("line 4: custom_id \"c-2\""), "{text}");
    assert!(stderr(&out).contains("1 line conflicting"), "{}", stderr(&out));

    let out = env.run(&["enqueue", second.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let v = json_of(&out);
    assert_eq!(v["conflicts"], 1, "{v}");
    let conflicting = v["conflicting"].as_array().unwrap();
    assert_eq!(conflicting.len(), 1, "{v}");
    assert_eq!(conflicting[0]["line"], 4, "{v}");
    assert_eq!(conflicting[0]["custom_id"], "c-2", "{v}");
    assert_eq!(conflicting[0]["error"]["code"], "conflict", "{v}");
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn an_unreachable_aws_endpoint_is_named_with_the_next_step_and_exit_4() {
    let mut env = Env::new("unreachable");
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    env.vars.retain(|(k, _)| k != "BATCHQ_STORE");
    env.vars.push(("AWS_ENDPOINT_URL".into(), endpoint.clone()));
    for args in [
        vec!["init"],
        vec!["stats"],
        vec!["jobs"],
        vec!["status", "nope"],
        vec!["results"],
    ] {
        let out = env.run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(4), "batchq {args:?}: {err}");
        assert!(out.stdout.is_empty(), "batchq {args:?}");
        assert!(err.contains(&endpoint), "names the endpoint: {err}");
        assert!(
            err.contains("AWS_ENDPOINT_URL") && err.contains("emulator"),
            "says what to do: {err}"
        );
        assert!(
            !err.contains("DispatchFailure") && !err.contains(" { "),
            "no debug dump: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn a_missing_request_is_named_by_its_id_and_a_missing_key_said_once() {
    let env = Env::new("messages");
    env.ok(&["init"]);
    let out = env.run(&["status", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("\"nope\""), "{err}");
    assert!(!err.contains("CustomId"), "{err}");

    let out = env.run(&["submit"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("OPENAI_API_KEY"), "says what to set: {err}");
    assert_eq!(err.matches("provider").count(), 1, "{err}");
    assert_eq!(err.matches("key").count(), 1, "{err}");
}

#[test]
fn every_duration_flag_reads_one_syntax_and_a_bad_one_names_its_flag() {
    let env = Env::new("durations");
    env.ok(&["init"]);
    // Nothing queued: wait returns at once, whatever the timeout.
    for t in ["1d", "500ms", "30s", "15m", "2h", "90", "1w"] {
        env.ok(&["wait", "--timeout", t]);
    }
    let log = env.write(
        "usage.jsonl",
        &jsonl(&[
            json!({"timestamp": "2026-11-01T00:00:00Z", "provider": "openai", "model": "gpt-4o-mini",
                        "input_tokens": 10, "output_tokens": 1})
            .to_string(),
        ]),
    );
    for w in ["500ms", "1d", "90m", "3600"] {
        let v = json_of(&env.ok(&["analyze", log.to_str().unwrap(), "--min-wait", w, "--json"]));
        assert!(v.is_object(), "{v}");
    }
    for (args, flag) in [
        (vec!["wait", "--timeout", "5y"], "--timeout"),
        (
            vec!["analyze", log.to_str().unwrap(), "--min-wait", "soon"],
            "--min-wait",
        ),
        (vec!["serve", "--submit-every", "1.5s"], "--submit-every"),
        (vec!["serve", "--poll-every", "x"], "--poll-every"),
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains(flag), "names {flag}: {err}");
        assert!(err.contains("500ms, 30s, 15m, 2h, 1d"), "says what is accepted: {err}");
    }
}

#[test]
fn exit_statuses_are_the_ones_help_lists() {
    let env = Env::new("exits");
    let help = String::from_utf8_lossy(&env.ok(&["--help"]).stdout).into_owned();
    for (code, what) in [
        (0, "done"),
        (1, "failed"),
        (2, "command line is wrong"),
        (3, "part of its work failed"),
        (4, "store cannot be reached"),
        (5, "--timeout"),
        (130, "SIGTERM"),
    ] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{code}  ")))
            .unwrap_or_else(|| panic!("no exit status {code} in --help:\n{help}"));
        assert!(line.contains(what), "{line}");
    }

    // 2: usage, from clap and from batchq's own checks.
    assert_eq!(env.run(&["jobs", "--no-such-flag"]).status.code(), Some(2));
    assert_eq!(
        env.run(&["results", "--api", "http://127.0.0.1:9"]).status.code(),
        Some(2)
    );
    // 4: the data directory does not exist yet.
    let out = env.run(&["stats"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("batchq init"), "{}", stderr(&out));
    // 0 and 1.
    env.ok(&["init"]);
    assert_eq!(env.run(&["status", "nope"]).status.code(), Some(1));
    // 3: a rejected line.
    let bad = env.write("bad.jsonl", b"{\"custom_id\":\"x\"}\n");
    assert_eq!(env.run(&["enqueue", bad.to_str().unwrap()]).status.code(), Some(3));
    // 5: queued work nobody submits.
    let one = env.write("one.jsonl", &jsonl(&[request("w-1", "one")]));
    env.ok(&["enqueue", one.to_str().unwrap()]);
    let out = env.run(&["wait", "--timeout", "1s"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("timed out"), "{}", stderr(&out));
}

#[test]
fn sigterm_stops_wait_like_ctrl_c_with_status_130() {
    let env = Env::new("wait-term");
    env.ok(&["init"]);
    let one = env.write("one.jsonl", &jsonl(&[request("t-1", "one")]));
    env.ok(&["enqueue", one.to_str().unwrap()]);
    for sig in ["TERM", "INT"] {
        let mut child = env
            .command(&["wait", "--timeout", "1h"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // It handles signals before it opens the store: once the data
        // directory's lock names it, a signal reaches its handler.
        wait_for_lock(&env.data(), child.id());
        signal(&child, sig);
        let status = wait_exit(&mut child, "batchq wait");
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(status.code(), Some(130), "SIG{sig}: {err}");
        assert!(err.contains("interrupted"), "{err}");
        // The lock went with it: the next command opens the store.
        env.ok(&["stats"]);
    }
}

/// Waits until the lock file of the data directory `dir` names `pid`.
fn wait_for_lock(dir: &Path, pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(dir.join("lock")).unwrap_or_default().trim() != pid.to_string() {
        assert!(
            Instant::now() < deadline,
            "pid {pid} never took the lock of {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The entries of `dir`, recursively, relative to it.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_serve_cleanly_and_leaves_no_temporary_files() {
    let env = Env::with_provider("serve-term").await;
    tokio::task::spawn_blocking(move || {
        let mut child = env
            .command(&[
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--submit-every",
                "200ms",
                "--poll-every",
                "200ms",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = support::serving_url(&mut child);
        // Work flows through it while it runs.
        let file = env.write("in.jsonl", &jsonl(&[request("s-1", "one"), request("s-2", "two")]));
        env.ok(&["enqueue", file.to_str().unwrap(), "--api", &url]);
        let data = env.data();
        assert!(
            tree(&data).iter().any(|e| e == "serve.json"),
            "the running server's note: {:?}",
            tree(&data)
        );
        let waited = env.ok(&["wait", "--api", &url, "--timeout", "60s", "--json"]);
        assert_eq!(json_of(&waited)["stats"]["requests"]["by_status"]["completed"], 2);

        signal(&child, "TERM");
        let status = wait_exit(&mut child, "batchq serve");
        assert_eq!(status.code(), Some(0), "serve exits cleanly on SIGTERM");

        // What is left is the store itself: no note, no SQLite journal, no
        // object half-written in the staging directory.
        let left = tree(&data);
        for gone in [
            "serve.json",
            "batchq.sqlite3-wal",
            "batchq.sqlite3-shm",
            "batchq.sqlite3-journal",
            "webhooks.sqlite3-wal",
            "webhooks.sqlite3-shm",
            "webhooks.sqlite3-journal",
        ] {
            assert!(!left.iter().any(|e| e == gone), "{gone} left behind: {left:?}");
        }
        assert!(
            !left.iter().any(|e| e.starts_with("objects/.tmp/")),
            "temporary objects left behind: {left:?}"
        );
        // And the directory is free: a new process opens it at once.
        let stats = json_of(&env.ok(&["stats", "--json"]));
        assert_eq!(stats["requests"]["by_status"]["completed"], 2);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_carry_the_providers_request_id() {
    let env = finished_store("request-id", 3).await;
    tokio::task::spawn_blocking(move || {
        let out = env.ok(&["results"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let mut seen = 0;
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let custom_id = v["custom_id"].as_str().unwrap();
            // What the fake provider wrote in its output file for this request.
            let key = batchq_core::ids::RequestKey::derive(
                &batchq_core::ids::TenantId::default_tenant(),
                &batchq_core::ids::CustomId::parse(custom_id).unwrap(),
            );
            let expected = format!(
                "req_{:016x}",
                fake_openai::responses::hash64(&[key.as_str().as_bytes()])
            );
            assert_eq!(v["response"]["request_id"], expected.as_str(), "{line}");
            seen += 1;
        }
        assert_eq!(seen, 3);
    })
    .await
    .unwrap();
}

#[test]
fn every_command_help_lists_the_environment_it_reads() {
    let env = Env::new("help");
    for (command, vars) in [
        ("init", &["BATCHQ_STORE", "AWS_ENDPOINT_URL"][..]),
        (
            "serve",
            &[
                "BATCHQ_STORE",
                "OPENAI_API_KEY",
                "BATCHQ_API_KEYS",
                "BATCHQ_SUBMIT_MAX_AGE_SECS",
            ][..],
        ),
        ("enqueue", &["BATCHQ_TENANT", "BATCHQ_API_KEY", "BATCHQ_STORE"][..]),
        ("analyze", &["BATCHQ_PRICING_FILE"][..]),
    ] {
        let out = env.ok(&[command, "--help"]);
        let help = String::from_utf8_lossy(&out.stdout);
        let section = help
            .split("Environment:")
            .nth(1)
            .unwrap_or_else(|| panic!("{command}: no Environment section:\n{help}"));
        for v in vars {
            assert!(section.contains(v), "{command} --help lacks {v}:\n{help}");
        }
    }
}
