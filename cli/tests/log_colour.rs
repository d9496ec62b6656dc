//! Log lines carry no ANSI colour codes when stderr is not a terminal: a
//! `batchq serve` log redirected to a pipe (as scripts and service managers
//! do) is plain text. The rule lives in `batchq_core::telemetry`, which the
//! Lambda functions share.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

#[test]
fn serve_logs_on_a_redirected_stderr_carry_no_colour_codes() {
    let dir = std::env::temp_dir().join(format!("batchq-log-colour-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_batchq"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        // Nothing of the test's environment: no AWS_* variable may flip the
        // store to AWS, and no NO_COLOR may hide a colour the fix should.
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BATCHQ_STORE", format!("embedded:{}", dir.join("data").display()))
        .env("OPENAI_API_KEY", "sk-unused")
        .env("BATCHQ_API_KEYS", "colour:0123456789abcdef0123456789abcdef")
        .env("BATCHQ_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = support::serving_url(&mut child);
    let addr = url.strip_prefix("http://").expect("an http URL").to_owned();

    // A call without a key: serve logs a warning for it.
    let mut conn = TcpStream::connect(&addr).unwrap();
    write!(
        conn,
        "GET /v1/stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    let status = child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "{status:?}: {log}");
    assert!(log.contains("not authenticated"), "the warning was logged: {log:?}");
    assert!(!log.contains("\x1b["), "colour codes in a redirected log: {log:?}");
}
