//! `fake-openai --port 0 --api-key KEY` starts, prints its address, serves
//! the API with bearer auth and the admin routes, and stops on SIGINT.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn binary_starts_standalone_and_requires_the_key() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-openai"))
        .args(["--port", "0", "--api-key", "sk-standalone"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .expect("address line")
        .to_owned();

    let http = reqwest::Client::new();
    let health = http.get(format!("{base}/_fake/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let no_key = http.get(format!("{base}/v1/batches")).send().await.unwrap();
    assert_eq!(no_key.status(), 401);
    let body: serde_json::Value = no_key.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let ok = http
        .get(format!("{base}/v1/batches"))
        .bearer_auth("sk-standalone")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let page: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(page["object"], "list");
    let log: serde_json::Value = http
        .get(format!("{base}/_fake/log"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log.as_array().unwrap().len(), 2);

    // SIGINT stops it cleanly.
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn bad_flags_exit_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_fake-openai"))
        .args(["--port", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--port"));

    // A known flag with a bad value, not an unknown flag.
    let out = Command::new(env!("CARGO_BIN_EXE_fake-openai"))
        .args(["--max-embedding-inputs", "many"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--max-embedding-inputs: \"many\" is not a number"),
        "{err}"
    );
}
