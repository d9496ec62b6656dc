//! `fake-openai --port 0 --api-key KEY` starts, prints its address, serves
//! the API with bearer auth and the admin routes, and stops on SIGINT or
//! SIGTERM, removing its temporary data directory. Bad flags exit 2 with
//! clap's message; log lines carry no colour codes when stderr is not a
//! terminal.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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

/// Reads the `listening on http://…` line and returns the base URL.
fn base_url(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("no address line: {line:?}"))
        .to_owned()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// A fresh, empty directory for `TMPDIR`, so the test sees exactly what the
/// fake made there.
fn private_tmpdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fake-openai-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect()
}

fn files_under(dir: &Path) -> usize {
    entries(dir)
        .iter()
        .map(|p| if p.is_dir() { files_under(p) } else { 1 })
        .sum()
}

#[tokio::test]
async fn sigterm_stops_it_with_status_0_and_removes_its_temporary_data_directory() {
    let tmp = private_tmpdir("sigterm");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-openai"))
        .args(["--port", "0", "--api-key", "sk-term"])
        .env("TMPDIR", &tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = base_url(&mut child);

    // A stored file, so the data directory holds something to remove.
    let form = reqwest::multipart::Form::new().text("purpose", "batch").part(
        "file",
        reqwest::multipart::Part::bytes(b"{}\n".to_vec()).file_name("in.jsonl"),
    );
    let up = reqwest::Client::new()
        .post(format!("{base}/v1/files"))
        .bearer_auth("sk-term")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 200);
    let made = entries(&tmp);
    assert_eq!(made.len(), 1, "one data directory in TMPDIR: {made:?}");
    assert!(files_under(&made[0]) >= 1, "the upload is on disk");

    signal(&child, "-TERM");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(entries(&tmp), Vec::<PathBuf>::new(), "left behind in TMPDIR");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[tokio::test]
async fn a_given_data_directory_is_kept_after_sigterm() {
    let tmp = private_tmpdir("keep");
    let data = tmp.join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-openai"))
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _ = base_url(&mut child);
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(data.is_dir(), "the caller's directory is the caller's");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn log_lines_on_a_redirected_stderr_carry_no_colour_codes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-openai"))
        .args(["--port", "0"])
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = base_url(&mut child);
    signal(&child, "-TERM");
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(err.contains("stopping"), "it logged its stop: {err:?}");
    assert!(!err.contains("\x1b["), "colour codes in a redirected log: {err:?}");
}

#[test]
fn a_port_out_of_range_is_refused_not_wrapped() {
    let out = Command::new(env!("CARGO_BIN_EXE_fake-openai"))
        .args(["--port", "70000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--port") && err.contains("70000") && err.contains("65535"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "it never listened: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn port_given_with_an_equals_sign_is_used() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-openai"))
        .arg(format!("--port={port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = base_url(&mut child);
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
    assert_eq!(base, format!("http://127.0.0.1:{port}"));
}

#[test]
fn bad_flags_and_values_exit_2_naming_them() {
    for (args, named) in [
        (&["--port", "x"][..], "--port"),
        (&["--max-embedding-inputs", "many"][..], "--max-embedding-inputs"),
        (&["--faults", "{not json"][..], "--faults"),
        (&["--prot", "8089"][..], "--prot"),
        (&["--port"][..], "--port"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_fake-openai"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{args:?}: {err}");
        assert!(err.contains("--help"), "{args:?}: {err}");
    }
}

#[test]
fn help_documents_every_flag_and_the_environment_it_reads() {
    let out = Command::new(env!("CARGO_BIN_EXE_fake-openai"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--host",
        "--port",
        "--api-key",
        "--step-ms",
        "--max-lines",
        "--max-bytes",
        "--max-embedding-inputs",
        "--data-dir",
        "--faults",
        "--help",
        "--version",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
    for var in ["RUST_LOG", "NO_COLOR", "TMPDIR"] {
        assert!(help.contains(var), "{var} missing from --help:\n{help}");
    }
    assert!(help.contains("SIGTERM"), "{help}");
}
