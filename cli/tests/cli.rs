//! `batchq` as a subprocess against the emulator (from `make test`) and the
//! fake provider: enqueue → wait → results through `batchq serve`, the
//! one-shot steps, and `--json` on every command.

use std::io::{BufRead, BufReader};
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
            .stderr(Stdio::null())
            .spawn()
            .expect("start batchq serve");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = match line.trim().strip_prefix("batchq serving ") {
            Some(url) => url.to_owned(),
            None => {
                let v: Value = serde_json::from_str(line.trim())
                    .unwrap_or_else(|e| panic!("first line is neither text nor JSON ({e}): {line:?}"));
                v["serving"].as_str().expect("serving URL").to_owned()
            }
        };
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
        assert_eq!(enq.status.code(), Some(2), "a rejected line makes a non-zero exit");
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
        assert_eq!(timeout.status.code(), Some(1), "nothing submits: the wait times out");
        assert!(String::from_utf8_lossy(&timeout.stderr).contains("timed out"));
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

mod http {
    use serde_json::Value;

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
