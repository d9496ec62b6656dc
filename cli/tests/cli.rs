//! `batchq` as a subprocess against the emulator (from `make test`) and the
//! fake provider: enqueue → wait → results through `batchq serve`, the
//! one-shot steps, and `--json` on every command.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fake_openai::{FakeConfig, FakeHandle, FakeServer};
use serde_json::{json, Value};

struct Env {
    fake: FakeHandle,
    vars: Vec<(String, String)>,
    dir: PathBuf,
}

impl Env {
    async fn new() -> Self {
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .expect("AWS_ENDPOINT_URL is not set: run these tests with `make test`, which starts the emulator");
        let fake = FakeServer::start(FakeConfig::default()).await.unwrap();
        let id = uuid_like();
        let dir = std::env::temp_dir().join(format!("batchq-cli-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let vars = vec![
            ("AWS_ENDPOINT_URL".into(), endpoint),
            ("AWS_ACCESS_KEY_ID".into(), "test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("OPENAI_BASE_URL".into(), fake.base_url()),
            ("OPENAI_API_KEY".into(), "sk-fake".into()),
            ("BATCHQ_REQUESTS_TABLE".into(), format!("cli-requests-{id}")),
            ("BATCHQ_JOBS_TABLE".into(), format!("cli-jobs-{id}")),
            ("BATCHQ_BUCKET".into(), format!("cli-bucket-{id}")),
            ("BATCHQ_SUBMIT_MAX_AGE_SECS".into(), "0".into()),
        ];
        let env = Self { fake, vars, dir };
        let init = env.run(&["init", "--json"]);
        assert!(init.status.success(), "init: {}", String::from_utf8_lossy(&init.stderr));
        json_of(&init);
        env
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_batchq"));
        c.args(args).env_clear().envs(self.vars.iter().map(|(k, v)| (k, v)));
        if let Ok(path) = std::env::var("PATH") {
            c.env("PATH", path);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run batchq")
    }

    fn bucket(&self) -> &str {
        &self.vars.iter().find(|(k, _)| k == "BATCHQ_BUCKET").unwrap().1
    }

    fn write(&self, name: &str, lines: &[String]) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        p
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn uuid_like() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:04x}", t, std::process::id() % 0xffff)
}

/// The one JSON document a `--json` command prints.
fn json_of(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not one JSON document ({e}): {text}"))
}

fn request_line(custom_id: &str, i: usize) -> Value {
    json!({
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("Is review {i} positive?")}]}
    })
}

/// A running `batchq serve`, stopped with Ctrl-C (SIGINT) on drop.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(env: &Env) -> Self {
        Self::start_with(env, &[])
    }

    fn start_with(env: &Env, extra: &[&str]) -> Self {
        Self::start_logging(env, extra, Stdio::null())
    }

    /// Starts `batchq serve` with its log (stderr) going to `stderr`.
    fn start_logging(env: &Env, extra: &[&str], stderr: Stdio) -> Self {
        let mut args = vec![
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--submit-every",
            "300ms",
            "--poll-every",
            "300ms",
        ];
        args.extend_from_slice(extra);
        let mut child = env
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start batchq serve");
        let url = support::serving_url(&mut child);
        Self { child, url }
    }

    fn interrupt(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "batchq serve did not stop on Ctrl-C");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_wait_and_results_through_serve_give_openai_batch_output_lines() {
    let env = Env::new().await;
    let lines: Vec<Value> = (0..25).map(|i| request_line(&format!("review-{i}"), i)).collect();
    let mut text: Vec<String> = lines.iter().map(Value::to_string).collect();
    text.insert(
        10,
        r#"{"custom_id":"bad-1","url":"/v1/images/generations","body":{"model":"dall-e-3"}}"#.into(),
    );
    let file = env.write("in.jsonl", &text);

    let env = tokio::task::spawn_blocking(move || {
        let mut server = Server::start(&env);

        let enq = env.run(&["enqueue", file.to_str().unwrap(), "--api", &server.url, "--json"]);
        assert_eq!(
            enq.status.code(),
            Some(3),
            "a rejected line: exit 3, part of the work failed"
        );
        let summary = json_of(&enq);
        assert_eq!(summary["created"], 25);
        assert_eq!(summary["rejected"], 1);
        assert_eq!(summary["rejections"][0]["line"], 11, "{summary}");
        assert_eq!(summary["rejections"][0]["error"]["field"], "url");

        let wait = env.run(&["wait", "--timeout", "60s", "--json"]);
        assert!(wait.status.success(), "wait: {}", String::from_utf8_lossy(&wait.stderr));
        assert_eq!(json_of(&wait)["stats"]["requests"]["by_status"]["completed"], 25);

        let out = env.dir.join("results.jsonl");
        let res = env.run(&["results", "--out", out.to_str().unwrap(), "--json"]);
        assert!(res.status.success());
        assert_eq!(json_of(&res)["written"], 25);

        let status = server.interrupt();
        assert!(status.success(), "serve exits cleanly on Ctrl-C: {status:?}");
        (env, out)
    })
    .await
    .unwrap();
    let (env, out) = env;

    // Each exported line is an OpenAI batch output line for the caller's own id.
    let exported = std::fs::read_to_string(out).unwrap();
    let mut seen = 0;
    for line in exported.lines() {
        let v: Value = serde_json::from_str(line).expect("each line is JSON");
        let obj = v.as_object().unwrap();
        for field in ["id", "custom_id", "response", "error"] {
            assert!(obj.contains_key(field), "missing {field}: {line}");
        }
        let custom_id = v["custom_id"].as_str().unwrap();
        let i: usize = custom_id.strip_prefix("review-").unwrap().parse().unwrap();
        assert_eq!(v["response"]["status_code"], 200);
        assert!(v["error"].is_null());
        let key = batchq_key(custom_id);
        let expected = fake_openai::respond("/v1/chat/completions", &key, &lines[i]["body"]);
        let expected: Value = serde_json::from_str(&expected.to_string()).unwrap();
        assert_eq!(v["response"]["body"], expected, "{custom_id}");
        seen += 1;
    }
    assert_eq!(seen, 25);
    assert!(env.fake.submitted_counts().values().all(|n| *n == 1));
}

/// The key batchq derives for a default-tenant custom_id (what the provider sees).
fn batchq_key(custom_id: &str) -> String {
    use batchq_core::ids::{CustomId, RequestKey, TenantId};
    RequestKey::derive(&TenantId::default_tenant(), &CustomId::parse(custom_id).unwrap()).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_steps_and_every_read_command_print_json() {
    let env = Env::new().await;
    let text: Vec<String> = (0..5).map(|i| request_line(&format!("a-{i}"), i).to_string()).collect();
    let file = env.write("in.jsonl", &text);
    let bucket = env.bucket().to_owned();
    tokio::task::spawn_blocking(move || {
        let enq = env.run(&["enqueue", file.to_str().unwrap(), "--json"]);
        assert!(enq.status.success(), "{}", String::from_utf8_lossy(&enq.stderr));
        assert_eq!(json_of(&enq)["created"], 5);

        let status = json_of(&env.run(&["status", "a-1", "--json"]));
        assert_eq!(status["status"], "queued");

        let submit = json_of(&env.run(&["submit", "--force", "--json"]));
        assert_eq!(submit["jobs"].as_array().unwrap().len(), 1);
        let job_id = submit["jobs"][0]["job_id"].as_str().unwrap().to_owned();

        let poll = json_of(&env.run(&["poll", "--json"]));
        assert_eq!(poll["ingested"][0]["completed"], 5, "{poll}");

        // Ingesting the same file again is a replay: nothing counted twice.
        let url = format!("s3://{bucket}/results/{job_id}/output.jsonl");
        let replay = json_of(&env.run(&["ingest", &url, "--json"]));
        assert_eq!(replay["counted"], false, "{replay}");

        let stats = json_of(&env.run(&["stats", "--json"]));
        assert_eq!(stats["requests"]["by_status"]["completed"], 5);
        let jobs = json_of(&env.run(&["jobs", "--json"]));
        assert_eq!(jobs["jobs"][0]["status"], "done");
        let status = json_of(&env.run(&["status", "a-1", "--json"]));
        assert_eq!(status["status"], "completed");
        assert!(status["result"]["cost"]["saved"].is_string());

        let savings = json_of(&env.run(&["savings", "--json", "--group-by", "model"]));
        assert_eq!(savings["groups"][0]["model"], "gpt-4o-mini");
        assert_eq!(savings["total"]["requests"], 5);
        let table = env.run(&["savings"]);
        assert!(table.status.success());
        let table = String::from_utf8_lossy(&table.stdout);
        assert!(table.contains("saved per day") && table.contains('#'), "{table}");

        // The report of the day the run happened matches what stats and savings say.
        let day = status["created_at"].as_str().unwrap()[..10].to_owned();
        let report = json_of(&env.run(&["report", "--day", &day, "--json"]));
        assert_eq!(report["day"]["day"], day.as_str());
        assert_eq!(report["day"]["requests"]["completed"], 5, "{report}");
        assert_eq!(report["day"]["spend_usd"], savings["total"]["batch_cost_usd"]);
        for (format, mark) in [
            ("text", "requests completed"),
            ("markdown", "| figure |"),
            ("html", "<!doctype html>"),
        ] {
            let out = env.run(&["report", "--day", &day, "--format", format]);
            assert!(out.status.success(), "{format}: {out:?}");
            assert!(String::from_utf8_lossy(&out.stdout).contains(mark), "{format}: {out:?}");
        }
        let bad = env.run(&["report", "--day", "2026-02-30"]);
        assert_eq!(bad.status.code(), Some(2), "a bad day is a usage error: {bad:?}");

        let init_again = env.run(&["init", "--json"]);
        assert_eq!(json_of(&init_again)["bucket_created"], false, "init is idempotent");

        // results to stdout with --json: the JSONL itself.
        let res = env.run(&["results", "--json", "--job", &job_id]);
        assert!(res.status.success());
        let parsed: Vec<Value> = String::from_utf8_lossy(&res.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("JSONL"))
            .collect();
        assert_eq!(parsed.len(), 5);
        assert!(parsed.iter().all(|l| l["response"]["status_code"] == 200));

        let wait = json_of(&env.run(&["wait", "--timeout", "5s", "--json"]));
        assert_eq!(wait["stats"]["requests"]["by_status"]["queued"], 0);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_go_to_stderr_with_a_non_zero_exit() {
    let env = Env::new().await;
    tokio::task::spawn_blocking(move || {
        let missing = env.run(&["status", "no-such-request", "--json"]);
        assert_eq!(missing.status.code(), Some(1));
        assert!(missing.stdout.is_empty());
        assert!(String::from_utf8_lossy(&missing.stderr).contains("no-such-request"));

        let bad_url = env.run(&["ingest", "results/x/output.jsonl"]);
        assert_eq!(bad_url.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&bad_url.stderr).contains("s3://BUCKET/KEY"));

        let missing_file = env.run(&["enqueue", "/nonexistent/file.jsonl"]);
        assert_eq!(missing_file.status.code(), Some(1));

        let timeout = {
            let file = env.write("one.jsonl", &[request_line("slow-1", 1).to_string()]);
            env.run(&["enqueue", file.to_str().unwrap()]);
            env.run(&["wait", "--timeout", "1s", "--json"])
        };
        assert_eq!(timeout.status.code(), Some(5), "nothing submits: the wait times out");
        assert!(String::from_utf8_lossy(&timeout.stderr).contains("timed out"));
    })
    .await
    .unwrap();
}

/// `env`'s command with a provider key the fake provider refuses.
fn with_wrong_key(env: &Env, args: &[&str]) -> Output {
    let mut c = env.command(args);
    c.env("OPENAI_API_KEY", "sk-wrong-key-0123");
    c.output().expect("run batchq")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_with_a_wrong_provider_key_names_the_authentication_failure_and_exits_3() {
    // Two stores: what a failed submit leaves claimed is the pipeline's
    // business (released at once, or resumed once its lease ends); each
    // output form gets a queue of its own.
    let (env, env_json) = (Env::new().await, Env::new().await);
    let text: Vec<String> = (0..3).map(|i| request_line(&format!("k-{i}"), i).to_string()).collect();
    let file = env.write("in.jsonl", &text);
    let file_json = env_json.write("in.jsonl", &text);
    tokio::task::spawn_blocking(move || {
        assert!(env.run(&["enqueue", file.to_str().unwrap()]).status.success());
        assert!(env_json.run(&["enqueue", file_json.to_str().unwrap()]).status.success());

        let out = with_wrong_key(&env, &["submit", "--force"]);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(3), "stdout: {stdout}\nstderr: {stderr}");
        assert!(!stdout.contains("nothing to submit"), "{stdout}");
        assert!(
            stdout.contains("error: ") && stdout.contains("authentication failed"),
            "{stdout}"
        );
        assert!(
            stderr.contains("the provider refused the key") && stderr.contains("authentication failed"),
            "{stderr}"
        );
        assert!(stderr.contains("OPENAI_API_KEY"), "says what to check: {stderr}");
        assert!(
            !stderr.contains("sk-wrong") && !stdout.contains("sk-wrong"),
            "the key is never printed"
        );

        // --json: the report on stdout carries the errors, and the exit says so.
        let out = with_wrong_key(&env_json, &["submit", "--force", "--json"]);
        assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
        let report = json_of(&out);
        let errors: Vec<&str> = report["errors"]
            .as_array()
            .unwrap()
            .iter()
            .chain(report["abandoned"].as_array().unwrap())
            .filter_map(Value::as_str)
            .collect();
        assert!(errors.iter().any(|e| e.contains("authentication failed")), "{report}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("authentication failed"));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_with_a_wrong_provider_key_reports_the_errors_and_exits_3() {
    let env = Env::new().await;
    let text: Vec<String> = (0..2).map(|i| request_line(&format!("p-{i}"), i).to_string()).collect();
    let file = env.write("in.jsonl", &text);
    tokio::task::spawn_blocking(move || {
        assert!(env.run(&["enqueue", file.to_str().unwrap()]).status.success());
        let submit = env.run(&["submit", "--force", "--json"]);
        assert!(submit.status.success(), "{}", String::from_utf8_lossy(&submit.stderr));
        assert_eq!(json_of(&submit)["jobs"].as_array().unwrap().len(), 1);

        let out = with_wrong_key(&env, &["poll", "--json"]);
        assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
        let v = json_of(&out);
        assert!(
            v["poll"]["errors"][0]
                .as_str()
                .unwrap()
                .contains("authentication failed"),
            "{v}"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("poll: the provider refused the key"), "{stderr}");

        let out = with_wrong_key(&env, &["poll"]);
        assert_eq!(out.status.code(), Some(3));
        assert!(String::from_utf8_lossy(&out.stdout).contains("error: "));

        // The right key: the same job finishes and poll exits 0.
        let ok = env.run(&["poll", "--json"]);
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
        assert_eq!(json_of(&ok)["ingested"][0]["completed"], 2);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_json_announces_itself_as_json_and_answers_the_api() {
    let env = Env::new().await;
    tokio::task::spawn_blocking(move || {
        let mut server = Server::start_with(&env, &["--json"]);
        let body: Value = http::blocking_get_json(&format!("{}/v1/stats", server.url));
        assert_eq!(body["requests"]["total"], 0);
        assert!(server.interrupt().success());
    })
    .await
    .unwrap();
}

// ------------------------------------------------------------------ metrics

/// `GET /metrics` as Prometheus text: metric name (with labels) -> value,
/// and the TYPE of each name. Panics on a line that is not the format.
fn prometheus_samples(text: &str) -> (Vec<(String, f64)>, std::collections::BTreeMap<String, String>) {
    let mut samples = Vec::new();
    let mut types = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample line: {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number in {line:?}"));
        samples.push((series.to_owned(), value));
    }
    (samples, types)
}

fn metric_value(samples: &[(String, f64)], series: &str) -> f64 {
    samples
        .iter()
        .find(|(s, _)| s == series)
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exposes_every_metric_at_metrics_in_prometheus_text() {
    let env = Env::new().await;
    let lines: Vec<String> = (0..6).map(|i| request_line(&format!("m-{i}"), i).to_string()).collect();
    let file = env.write("in.jsonl", &lines);
    tokio::task::spawn_blocking(move || {
        let mut server = Server::start(&env);
        let metrics_url = format!("{}/metrics", server.url);
        let (status, content_type, text) = http::get_text(&metrics_url, None);
        assert_eq!(status, 200, "{text}");
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
        let (samples, types) = prometheus_samples(&text);
        for m in batchq_core::metrics::ALL {
            let kind = match m.kind {
                batchq_core::metrics::Kind::Counter => "counter",
                batchq_core::metrics::Kind::Gauge => "gauge",
            };
            assert_eq!(
                types.get(m.prometheus).map(String::as_str),
                Some(kind),
                "TYPE of {}",
                m.prometheus
            );
            assert!(
                samples
                    .iter()
                    .any(|(s, _)| s == m.prometheus || s.starts_with(&format!("{}{{", m.prometheus))),
                "no sample of {} in /metrics:\n{text}",
                m.prometheus
            );
        }
        assert_eq!(metric_value(&samples, "batchq_requests_completed_total"), 0.0);

        let enq = env.run(&["enqueue", file.to_str().unwrap(), "--api", &server.url, "--json"]);
        assert!(enq.status.success(), "{}", String::from_utf8_lossy(&enq.stderr));
        let wait = env.run(&["wait", "--timeout", "60s", "--json"]);
        assert!(wait.status.success(), "wait: {}", String::from_utf8_lossy(&wait.stderr));

        let (_, _, text) = http::get_text(&metrics_url, None);
        let (samples, _) = prometheus_samples(&text);
        assert_eq!(metric_value(&samples, "batchq_requests_completed_total"), 6.0, "{text}");
        assert!(metric_value(&samples, "batchq_batch_spend_usd_total") > 0.0, "{text}");
        assert!(metric_value(&samples, "batchq_saved_usd_total") > 0.0, "{text}");
        // Gauges are read from the store at the scrape: nothing is queued now.
        assert_eq!(metric_value(&samples, "batchq_queue_depth"), 0.0, "{text}");
        assert_eq!(
            metric_value(&samples, "batchq_jobs{status=\"in_progress\"}"),
            0.0,
            "{text}"
        );
        assert!(server.interrupt().success());
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_a_key_when_serve_has_keys() {
    let mut env = Env::new().await;
    env.vars.push(("BATCHQ_API_KEYS".into(), format!("acme:{ACME_KEY}")));
    tokio::task::spawn_blocking(move || {
        let mut server = Server::start(&env);
        let url = format!("{}/metrics", server.url);
        let (status, _, body) = http::get_text(&url, None);
        assert_eq!(status, 401, "{body}");
        let (status, _, _) = http::get_text(&url, Some("not-a-key-at-all-000"));
        assert_eq!(status, 401);
        let (status, _, body) = http::get_text(&url, Some(ACME_KEY));
        assert_eq!(status, 200);
        assert!(body.contains("# TYPE batchq_queue_depth gauge"), "{body}");
        assert!(server.interrupt().success());
    })
    .await
    .unwrap();
}

// ------------------------------------------------------------------ authentication and logs

const ACME_KEY: &str = "acme-key-0123456789abcdef";
const GLOBEX_KEY: &str = "globex-key-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_api_keys_answers_each_tenant_alone_and_refuses_the_rest() {
    let mut env = Env::new().await;
    env.vars
        .push(("BATCHQ_API_KEYS".into(), format!("acme:{ACME_KEY},globex:{GLOBEX_KEY}")));
    let line = request_line("order-1", 1).to_string();
    let file = env.write("one.jsonl", std::slice::from_ref(&line));
    tokio::task::spawn_blocking(move || {
        let mut server = Server::start(&env);
        let url = |p: &str| format!("{}{p}", server.url);

        let (status, body) = http::request("GET", &url("/v1/stats"), None, None);
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "unauthorized");
        let (status, _) = http::request("GET", &url("/v1/stats"), Some("not-a-key-at-all-000"), None);
        assert_eq!(status, 401);
        let (status, _) = http::request("POST", &url("/v1/requests"), None, Some(&line));
        assert_eq!(status, 401);

        // The CLI's --api mode sends BATCHQ_API_KEY as the bearer token.
        let mut enq = env.command(&["enqueue", file.to_str().unwrap(), "--api", &server.url, "--json"]);
        enq.env("BATCHQ_API_KEY", ACME_KEY);
        let out = enq.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(json_of(&out)["created"], 1);
        let no_key = env.run(&["enqueue", file.to_str().unwrap(), "--api", &server.url, "--json"]);
        assert_eq!(no_key.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&no_key.stderr).contains("401"));

        let (status, body) = http::request("GET", &url("/v1/requests/order-1"), Some(ACME_KEY), None);
        assert_eq!(status, 200, "{body}");
        let (status, _) = http::request("GET", &url("/v1/requests/order-1"), Some(GLOBEX_KEY), None);
        assert_eq!(status, 404, "globex must not see acme's request");
        let (status, _) = http::request("DELETE", &url("/v1/requests/order-1"), Some(GLOBEX_KEY), None);
        assert_eq!(status, 404);
        let (_, stats) = http::request("GET", &url("/v1/stats"), Some(GLOBEX_KEY), None);
        assert_eq!(
            (stats["tenant"].as_str(), stats["requests"]["total"].as_i64()),
            (Some("globex"), Some(0))
        );
        let (_, stats) = http::request("GET", &url("/v1/stats"), Some(ACME_KEY), None);
        assert_eq!(stats["requests"]["total"], 1);
        assert!(server.interrupt().success());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn serve_without_api_keys_refuses_to_listen_beyond_loopback() {
    let env = Env::new().await;
    let out = env.run(&["serve", "--addr", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("BATCHQ_API_KEYS"), "{err}");
}

/// The whole pipeline at debug level, through `batchq serve` with keys:
/// no prompt, no completion and no key may appear in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_run_logs_no_prompt_no_completion_and_no_key() {
    let mut env = Env::new().await;
    env.vars.push(("BATCHQ_API_KEYS".into(), format!("acme:{ACME_KEY}")));
    env.vars.push(("BATCHQ_LOG".into(), "debug".into()));
    let prompts: Vec<String> = (0..12).map(|i| format!("PRIVATE-PROMPT-{i}-do-not-log")).collect();
    let lines: Vec<String> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({"custom_id": format!("p-{i}"), "url": "/v1/chat/completions",
                   "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": p}]}})
            .to_string()
        })
        .collect();
    let file = env.write("private.jsonl", &lines);
    let log_path = env.dir.join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let env = tokio::task::spawn_blocking(move || {
        let mut server = Server::start_logging(&env, &[], Stdio::from(log));
        let mut enq = env.command(&["enqueue", file.to_str().unwrap(), "--api", &server.url, "--json"]);
        enq.env("BATCHQ_API_KEY", ACME_KEY);
        assert!(enq.output().unwrap().status.success());
        // A refused line must not echo its content into the log either.
        let bad = json!({"custom_id": "bad", "url": "/v1/chat/completions",
                         "body": {"model": 7, "messages": prompts[0]}})
        .to_string();
        let (status, _) = http::request(
            "POST",
            &format!("{}/v1/requests", server.url),
            Some(ACME_KEY),
            Some(&bad),
        );
        assert_eq!(status, 400);
        let out = env
            .command(&["wait", "--timeout", "60s", "--json", "--tenant", "acme"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(json_of(&out)["stats"]["requests"]["by_status"]["completed"], 12);
        // The completions are there to be read ...
        let (status, body) = http::request("GET", &format!("{}/v1/requests/p-3", server.url), Some(ACME_KEY), None);
        assert_eq!(status, 200);
        assert!(body.to_string().contains("Fake answer"), "{body}");
        assert!(server.interrupt().success());
        (env, prompts)
    })
    .await
    .unwrap();
    let (_env, prompts) = env;

    // ... but not in the log, which did record the run.
    let log = std::fs::read_to_string(&log_path).unwrap();
    for expected in ["request", "provider batch created", "ingested"] {
        assert!(
            log.contains(expected),
            "the log misses {expected:?}; is it captured?\n{log}"
        );
    }
    assert!(log.contains("DEBUG"), "the run logged at debug level");
    for p in &prompts {
        assert!(!log.contains(p.as_str()), "a prompt was logged: {p}");
    }
    assert!(!log.contains("do-not-log"));
    assert!(!log.contains("Fake answer"), "a completion was logged");
    for secret in [ACME_KEY, "sk-fake"] {
        assert!(!log.contains(secret), "a key was logged");
    }
}

mod http {
    use serde_json::Value;

    /// One HTTP/1.1 request over a std TcpStream, with an optional bearer
    /// key and JSON body: the status and the JSON body of the answer.
    pub fn request(method: &str, url: &str, key: Option<&str>, body: Option<&str>) -> (u16, Value) {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let mut s = std::net::TcpStream::connect(host).unwrap();
        let mut head = format!("{method} /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        if let Some(k) = key {
            head.push_str(&format!("Authorization: Bearer {k}\r\n"));
        }
        let body = body.unwrap_or("");
        if method == "POST" {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        write!(s, "{head}\r\n{body}").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status: u16 = resp[9..12].parse().unwrap();
        let text = resp.split("\r\n\r\n").nth(1).unwrap_or("");
        (status, serde_json::from_str(text).unwrap_or(Value::Null))
    }

    /// A GET with an optional bearer key: the status, the Content-Type and
    /// the body as text.
    pub fn get_text(url: &str, key: Option<&str>) -> (u16, String, String) {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let mut s = std::net::TcpStream::connect(host).unwrap();
        let auth = key
            .map(|k| format!("Authorization: Bearer {k}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status: u16 = resp[9..12].parse().unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
        let content_type = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-type:")
                    .map(|v| v.trim().to_owned())
            })
            .unwrap_or_default();
        (status, content_type, body.to_owned())
    }

    /// A minimal HTTP/1.1 GET over a std TcpStream (the test has no blocking HTTP client).
    pub fn blocking_get_json(url: &str) -> Value {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let mut s = std::net::TcpStream::connect(host).unwrap();
        write!(s, "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        let body = resp.split("\r\n\r\n").nth(1).unwrap();
        serde_json::from_str(body).unwrap()
    }
}

/// Lines a child prints on stdout, as they come, through a channel.
fn stdout_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(l) = line else { return };
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    rx
}

fn custom_ids(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|v| v["custom_id"].as_str().unwrap().to_owned())
        .collect()
}

fn jsonl(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_follow_tails_the_feed_and_a_stored_cursor_resumes_it_locally_and_through_the_api() {
    let env = Env::new().await;
    tokio::task::spawn_blocking(move || {
        let server = Server::start(&env);
        let cursor_file = env.dir.join("feed.cursor");
        let cursor_arg = cursor_file.to_str().unwrap().to_owned();
        let mut follower = env
            .command(&[
                "results",
                "--follow",
                "--api",
                &server.url,
                "--cursor-file",
                &cursor_arg,
                "--poll-every",
                "200ms",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start batchq results --follow");
        let lines = stdout_lines(&mut follower);

        let first: Vec<String> = (0..10)
            .map(|i| request_line(&format!("f-{i}"), i).to_string())
            .collect();
        let file = env.write("first.jsonl", &first);
        let enq = env.run(&["enqueue", file.to_str().unwrap(), "--api", &server.url, "--json"]);
        assert!(
            enq.status.success(),
            "enqueue: {}",
            String::from_utf8_lossy(&enq.stderr)
        );
        // Printed as they finish, while the follower keeps running.
        let mut followed = Vec::new();
        while followed.len() < 10 {
            let line = lines
                .recv_timeout(Duration::from_secs(60))
                .expect("a result line within a minute");
            followed.push(serde_json::from_str::<Value>(&line).expect("each line is JSON"));
        }
        let mut ids = custom_ids(&followed);
        ids.sort();
        let mut want: Vec<String> = (0..10).map(|i| format!("f-{i}")).collect();
        want.sort();
        assert_eq!(ids, want, "each result once");
        assert!(followed.iter().all(|v| v["event"] == "completed"
            && v["request"]["result"]["status_code"] == 200
            && v["request"]["custom_id"] == v["custom_id"]));

        // Ctrl-C ends it normally, its cursor stored.
        let pid = follower.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
        let out = follower.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "stopped cleanly: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last = followed.last().unwrap()["cursor"].as_str().unwrap().to_owned();
        assert_eq!(std::fs::read_to_string(&cursor_file).unwrap().trim(), last);
        assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("--after {last}")));

        // More finish while nobody follows; the stored cursor picks up exactly those.
        let second: Vec<String> = (10..15)
            .map(|i| request_line(&format!("f-{i}"), i).to_string())
            .collect();
        let file = env.write("second.jsonl", &second);
        assert!(env
            .run(&["enqueue", file.to_str().unwrap(), "--api", &server.url])
            .status
            .success());
        let wait = env.run(&["wait", "--timeout", "60s", "--api", &server.url]);
        assert!(wait.status.success(), "wait: {}", String::from_utf8_lossy(&wait.stderr));
        let resumed = env.run(&["results", "--api", &server.url, "--cursor-file", &cursor_arg]);
        assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
        let mut ids = custom_ids(&jsonl(&resumed));
        ids.sort();
        assert_eq!(ids, ["f-10", "f-11", "f-12", "f-13", "f-14"]);
        let again = env.run(&["results", "--api", &server.url, "--cursor-file", &cursor_arg]);
        assert!(jsonl(&again).is_empty(), "read to the end: nothing new");

        // `--after` a cursor, on the store itself and through the API, read the same.
        let third = followed[2]["cursor"].as_str().unwrap();
        let local = env.run(&["results", "--after", third]);
        assert!(local.status.success(), "{}", String::from_utf8_lossy(&local.stderr));
        let remote = env.run(&["results", "--after", third, "--api", &server.url]);
        let (local, remote) = (jsonl(&local), jsonl(&remote));
        assert_eq!(local.len(), 12, "everything after the third");
        assert_eq!(custom_ids(&local), custom_ids(&remote));
        let bad = env.run(&["results", "--after", "nonsense", "--api", &server.url]);
        assert!(!bad.status.success());
        assert!(
            String::from_utf8_lossy(&bad.stderr).contains("after"),
            "{}",
            String::from_utf8_lossy(&bad.stderr)
        );
    })
    .await
    .unwrap();
}
