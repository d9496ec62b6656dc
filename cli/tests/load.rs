//! `batchq-load` (what `make load` runs), briefly: a few seconds of load
//! from four clients of two tenants through a real `batchq serve` on the
//! emulator lose nothing; a server that forgets what it accepted is caught;
//! anything but a loopback address is refused before a request is sent.

mod support;

use std::process::{Command, Output};

use axum::http::{Method, StatusCode};
use fake_openai::{FakeConfig, FakeServer};
use support::Serve;

const KEY_A: &str = "load-test-key-aaaaaaaaaaaaaaaa";
const KEY_B: &str = "load-test-key-bbbbbbbbbbbbbbbb";

fn load(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_batchq-load"))
        .args(args)
        .env_remove("LOAD_TOKEN")
        .env_remove("LOAD_API")
        .output()
        .expect("run batchq-load")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_load_through_serve_loses_nothing_and_tenants_stay_apart() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL is not set: run these tests with `make test`, which starts the emulator");
    let fake = FakeServer::start(FakeConfig::default()).await.unwrap();
    let id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let vars = [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("OPENAI_BASE_URL", fake.base_url()),
        ("OPENAI_API_KEY", "sk-fake".into()),
        ("BATCHQ_REQUESTS_TABLE", format!("load-requests-{id}")),
        ("BATCHQ_JOBS_TABLE", format!("load-jobs-{id}")),
        ("BATCHQ_BUCKET", format!("load-bucket-{id}")),
        ("BATCHQ_SUBMIT_MAX_AGE_SECS", "1".into()),
        ("BATCHQ_API_KEYS", format!("load-a:{KEY_A},load-b:{KEY_B}")),
        ("BATCHQ_LOG", "warn".into()),
    ];
    let batchq = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_batchq"));
        c.args(args).envs(vars.iter().map(|(k, v)| (*k, v.as_str())));
        c
    };
    let serve = tokio::task::block_in_place(|| Serve::start(batchq));
    let url = serve.url.clone();
    let api = url.as_str();

    let out = tokio::task::block_in_place(|| {
        load(&[
            "--api",
            api,
            "--clients",
            "4",
            "--seconds",
            "2",
            "--max-requests",
            "400",
            "--token",
            &format!("{KEY_A},{KEY_B}"),
            "--json",
        ])
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["lost"], 0, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["tenants"], 2, "{v}");
    let accepted = v["accepted"].as_u64().unwrap();
    assert!(accepted > 0 && accepted <= 400, "{v}");
    assert_eq!(v["verify"]["outcomes"]["found"], accepted, "{v}");
    assert!(v["cross_tenant"]["tried"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["cross_tenant"]["visible"], 0, "{v}");
    assert!(v["latency_ms"]["p99"].as_f64().unwrap() >= v["latency_ms"]["p50"].as_f64().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_forgets_what_it_accepted_is_reported_as_losing_requests() {
    // Accepts every POST, then knows none of them.
    let app = axum::Router::new().fallback(|method: Method| async move {
        if method == Method::POST {
            (StatusCode::ACCEPTED, "{}")
        } else {
            (StatusCode::NOT_FOUND, "{}")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let out = tokio::task::block_in_place(|| {
        load(&[
            "--api",
            &url,
            "--clients",
            "2",
            "--seconds",
            "1",
            "--max-requests",
            "50",
        ])
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("lost: 50"), "{text}");
    assert!(text.contains("not found 50"), "{text}");
}

#[test]
fn only_loopback_addresses_are_loaded() {
    for api in ["http://192.0.2.1:8080", "http://example.com", "not a url"] {
        let out = load(&["--api", api, "--seconds", "1"]);
        assert_eq!(out.status.code(), Some(2), "{api}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("loopback") || err.contains("not a URL"), "{err}");
    }
}
