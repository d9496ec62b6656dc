//! `batchq enqueue --api` against a stand-in for API Gateway's IAM
//! authorization: a tiny HTTP server in this test that checks each call's
//! SigV4 signature the way API Gateway does (credential scope, signed
//! headers, the signature recomputed from the secret with its own HMAC
//! code, not the CLI's signer), refuses a bad one with 403, and answers a
//! good bulk call with one outcome per line. Needs no emulator: `--api`
//! never touches the store.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const AKID: &str = "AKIDTESTBATCHQ000001";
const SECRET: &str = "batchq/test+secret/0123456789abcdefghij";
const TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLE-session-token/+=";

// ------------------------------------------------------------------ an independent SigV4 check

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA256 (RFC 2104), written out so the check shares no code with
/// the signer under test.
fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().to_vec()
}

/// One received request, as the check sees it.
#[derive(Clone, Debug)]
struct Received {
    method: String,
    /// Path and query as sent (origin form, or taken from the absolute
    /// form a proxied request carries).
    target: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// What the check found.
#[derive(Clone, Debug)]
struct Verdict {
    ok: bool,
    why: String,
    region: Option<String>,
    signed_headers: Vec<String>,
}

/// The signature of `req` under `secret` for the scope its Authorization
/// header names (`AKID/DATE/REGION/SERVICE/aws4_request`), and that header's fields.
fn expected_signature(req: &Received, secret: &str) -> Result<(String, BTreeMap<&'static str, String>), String> {
    let auth = req.header("authorization").ok_or("no Authorization header")?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| format!("not AWS4-HMAC-SHA256: {auth}"))?;
    let mut fields = BTreeMap::new();
    for part in rest.split(", ") {
        let (k, v) = part.split_once('=').ok_or_else(|| format!("bad part {part:?}"))?;
        let k = match k {
            "Credential" => "credential",
            "SignedHeaders" => "signed_headers",
            "Signature" => "signature",
            other => return Err(format!("unknown field {other}")),
        };
        fields.insert(k, v.to_owned());
    }
    let credential = fields.get("credential").ok_or("no Credential")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [_akid, date, region, service, term] = scope[..] else {
        return Err(format!("bad credential scope {credential}"));
    };
    if term != "aws4_request" {
        return Err(format!("scope ends in {term}"));
    }
    let amz_date = req.header("x-amz-date").ok_or("no x-amz-date")?;
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let signed = fields.get("signed_headers").ok_or("no SignedHeaders")?;
    let mut canonical = format!("{}\n{path}\n{query}\n", req.method);
    for name in signed.split(';') {
        let value = req
            .header(name)
            .ok_or_else(|| format!("signed header {name} missing"))?;
        canonical.push_str(&format!("{name}:{}\n", value.trim()));
    }
    canonical.push_str(&format!("\n{signed}\n{}", sha256_hex(&req.body)));
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    Ok((hex(&hmac(&k_signing, string_to_sign.as_bytes())), fields))
}

/// API Gateway's checks, for access key AKID with SECRET.
fn verify(req: &Received) -> Verdict {
    let fail = |why: String| Verdict {
        ok: false,
        why,
        region: None,
        signed_headers: vec![],
    };
    let (expected, fields) = match expected_signature(req, SECRET) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let scope: Vec<String> = fields["credential"].split('/').map(str::to_owned).collect();
    let amz_date = req.header("x-amz-date").unwrap_or_default();
    let signed: Vec<String> = fields["signed_headers"].split(';').map(str::to_owned).collect();
    let mut problems = Vec::new();
    if scope[0] != AKID {
        problems.push(format!("access key {}", scope[0]));
    }
    if !amz_date.starts_with(&scope[1]) {
        problems.push(format!("scope date {} is not the date of {amz_date}", scope[1]));
    }
    if scope[3] != "execute-api" {
        problems.push(format!("service {}", scope[3]));
    }
    // The signing time must be now (API Gateway allows a few minutes).
    match parse_amz_date(amz_date) {
        Some(t) => {
            let skew = SystemTime::now().duration_since(t).unwrap_or_else(|e| e.duration());
            if skew > Duration::from_secs(300) {
                problems.push(format!("x-amz-date {amz_date} is {skew:?} away"));
            }
        }
        None => problems.push(format!("x-amz-date {amz_date:?}")),
    }
    for must in ["host", "x-amz-date", "content-type"] {
        if !signed.iter().any(|s| s == must) {
            problems.push(format!("{must} is not signed"));
        }
    }
    if req.header("x-amz-security-token").is_some() && !signed.iter().any(|s| s == "x-amz-security-token") {
        problems.push("the session token is not signed".into());
    }
    if let Some(given) = req.header("x-amz-content-sha256") {
        if given != sha256_hex(&req.body) {
            problems.push("x-amz-content-sha256 is not the body's hash".into());
        }
    }
    if fields["signature"] != expected {
        problems.push("The request signature we calculated does not match the signature you provided".into());
    }
    Verdict {
        ok: problems.is_empty(),
        why: problems.join("; "),
        region: Some(scope[2].clone()),
        signed_headers: signed,
    }
}

/// `20260101T000000Z` as a time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let format = time::format_description::parse_borrowed::<2>("[year][month][day]T[hour][minute][second]Z").ok()?;
    let t = time::PrimitiveDateTime::parse(s, &format).ok()?.assume_utc();
    Some(SystemTime::from(t))
}

/// The check itself is right: it reproduces the AWS SigV4 test suite's
/// `post-x-www-form-urlencoded` signature.
#[test]
fn the_check_reproduces_the_aws_test_suite() {
    let req = Received {
        method: "POST".into(),
        target: "/".into(),
        headers: [
            ("content-type", "application/x-www-form-urlencoded"),
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, Signature=x",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        body: b"Param1=value1".to_vec(),
    };
    let (sig, _) = expected_signature(&req, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY").unwrap();
    assert_eq!(sig, "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a");
    assert_eq!(
        parse_amz_date("20150830T123600Z"),
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160))
    );
}

// ------------------------------------------------------------------ the stand-in for API Gateway

struct Gateway {
    url: String,
    seen: Arc<Mutex<Vec<(Received, Verdict)>>>,
}

impl Gateway {
    /// Serves until the test process ends (a thread per test, a few calls each).
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<(Received, Verdict)>>> = Arc::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let log = log.clone();
                std::thread::spawn(move || {
                    let _ = serve_one(stream, &log);
                });
            }
        });
        Self { url, seen }
    }

    fn seen(&self) -> Vec<(Received, Verdict)> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve_one(stream: TcpStream, log: &Mutex<Vec<(Received, Verdict)>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let mut target = parts.next().unwrap_or_default().to_owned();
    // Through a proxy the target is absolute: keep its path and query.
    if let Some(rest) = target.strip_prefix("http://") {
        target = rest
            .find('/')
            .map(|i| rest[i..].to_owned())
            .unwrap_or_else(|| "/".into());
    }
    let mut headers = BTreeMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    let req = Received {
        method,
        target,
        headers,
        body,
    };
    let verdict = verify(&req);
    let (status, answer) = if verdict.ok {
        // One outcome per non-blank line, numbered as the API numbers them.
        let results: Vec<Value> = String::from_utf8_lossy(&req.body)
            .split('\n')
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, _)| json!({"line": i + 1, "custom_id": null, "outcome": "created", "status": "queued", "error": null}))
            .collect();
        (
            "200 OK",
            json!({"summary": {"lines": results.len()}, "results": results}),
        )
    } else if req.header("authorization").is_none() {
        ("403 Forbidden", json!({"message": "Forbidden"}))
    } else {
        ("403 Forbidden", json!({"message": verdict.why}))
    };
    log.lock().unwrap().push((req, verdict));
    let body = answer.to_string();
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

// ------------------------------------------------------------------ the CLI

fn temp_dir() -> PathBuf {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("batchq-sigv4-{t:x}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn request_line(custom_id: &str, content: &str) -> String {
    json!({"custom_id": custom_id, "url": "/v1/chat/completions",
           "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}})
    .to_string()
}

/// `batchq` with only the given environment (no profile, no instance role).
fn batchq(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_batchq"));
    c.args(args)
        .env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/batchq-test-config")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/batchq-test-credentials");
    if let Ok(path) = std::env::var("PATH") {
        c.env("PATH", path);
    }
    c.envs(env.iter().copied());
    c.output().expect("run batchq")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The deployed API's URL form: with no BATCHQ_API_KEY the CLI signs on
/// its own, for the region in the host name (not AWS_REGION), with the
/// session token; every chunk fits API Gateway and a line too long for it
/// is reported, not sent.
#[test]
fn an_execute_api_url_is_signed_with_sigv4_for_its_region() {
    let gw = Gateway::start();
    let dir = temp_dir();
    let big = "x".repeat(1_500_000);
    let mut lines: Vec<String> = (0..3).map(|i| request_line(&format!("small-{i}"), "hi")).collect();
    lines.extend((0..3).map(|i| request_line(&format!("big-{i}"), &big)));
    lines.push(request_line("huge", &"y".repeat(4_700_000)));
    lines.push(request_line("last", "bye"));
    let file = dir.join("in.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();

    // The host name is API Gateway's; the connection goes to the stand-in,
    // as to a proxy (absolute-form request, Host the execute-api name).
    let api = "http://abc123defg.execute-api.eu-west-3.amazonaws.com";
    let out = batchq(
        &["enqueue", file.to_str().unwrap(), "--api", api, "--json"],
        &[
            ("HTTP_PROXY", &gw.url),
            ("AWS_ACCESS_KEY_ID", AKID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_SESSION_TOKEN", TOKEN),
            ("AWS_REGION", "us-east-1"),
        ],
    );
    let seen = gw.seen();
    assert!(!seen.is_empty(), "no call arrived: {}", stderr(&out));
    for (req, verdict) in &seen {
        assert!(verdict.ok, "{}: {:?}", verdict.why, req.headers);
        assert_eq!(req.method, "POST");
        assert_eq!(req.target, "/v1/requests/bulk");
        assert_eq!(
            req.header("host"),
            Some("abc123defg.execute-api.eu-west-3.amazonaws.com")
        );
        assert_eq!(
            verdict.region.as_deref(),
            Some("eu-west-3"),
            "the host's region, not AWS_REGION"
        );
        assert_eq!(
            verdict.signed_headers,
            ["content-type", "host", "x-amz-date", "x-amz-security-token"]
        );
        assert_eq!(req.header("x-amz-security-token"), Some(TOKEN));
        assert_eq!(req.header("content-type"), Some("application/x-ndjson"));
        assert!(
            req.body.len() <= 4_000_000,
            "a call of {} bytes would not fit API Gateway",
            req.body.len()
        );
    }
    assert!(seen.len() >= 3, "1.5 MB lines come in several calls: {}", seen.len());
    // Exit 3: one line was rejected, the others were accepted.
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["created"], 7, "{v}");
    assert_eq!(v["rejections"][0]["line"], 7, "{v}");
    assert_eq!(v["rejections"][0]["error"]["code"], "line_too_large");
    let _ = std::fs::remove_dir_all(dir);
}

/// `--api-auth sigv4` for any host (a custom domain): the region is
/// AWS_REGION's; long-term keys send no session token.
#[test]
fn api_auth_sigv4_signs_for_any_host_with_the_configured_region() {
    let gw = Gateway::start();
    let dir = temp_dir();
    let file = dir.join("one.jsonl");
    std::fs::write(&file, request_line("one", "hi") + "\n").unwrap();
    let out = batchq(
        &[
            "enqueue",
            file.to_str().unwrap(),
            "--api",
            &gw.url,
            "--api-auth",
            "sigv4",
            "--json",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", AKID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_REGION", "ap-southeast-2"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = gw.seen();
    assert_eq!(seen.len(), 1);
    let (req, verdict) = &seen[0];
    assert!(verdict.ok, "{}", verdict.why);
    assert_eq!(verdict.region.as_deref(), Some("ap-southeast-2"));
    assert_eq!(verdict.signed_headers, ["content-type", "host", "x-amz-date"]);
    assert!(req.header("x-amz-security-token").is_none());
    let _ = std::fs::remove_dir_all(dir);
}

/// A wrong secret is refused like API Gateway refuses it, and so is a call
/// with no credentials; the CLI says what it sent and exits 1.
#[test]
fn a_bad_signature_or_none_is_refused_and_explained() {
    let gw = Gateway::start();
    let dir = temp_dir();
    let file = dir.join("one.jsonl");
    std::fs::write(&file, request_line("one", "hi") + "\n").unwrap();
    let f = file.to_str().unwrap();

    let wrong = batchq(
        &["enqueue", f, "--api", &gw.url, "--api-auth", "sigv4"],
        &[
            ("AWS_ACCESS_KEY_ID", AKID),
            ("AWS_SECRET_ACCESS_KEY", "not-the-secret-0123456789"),
            ("AWS_REGION", "us-east-1"),
        ],
    );
    assert_eq!(wrong.status.code(), Some(1));
    let err = stderr(&wrong);
    assert!(err.contains("HTTP 403") && err.contains("signature"), "{err}");
    assert!(err.contains("SigV4") && err.contains(AKID), "{err}");
    assert!(!err.contains("not-the-secret"), "the secret is never printed: {err}");

    // No key and a host that is not execute-api: nothing is sent (a local
    // batchq serve without keys), and the refusal says how to sign.
    let none = batchq(&["enqueue", f, "--api", &gw.url], &[("AWS_REGION", "us-east-1")]);
    assert_eq!(none.status.code(), Some(1));
    let err = stderr(&none);
    assert!(err.contains("HTTP 403") && err.contains("--api-auth sigv4"), "{err}");

    // sigv4 without any credentials: said before anything is sent.
    let before = gw.seen().len();
    let no_creds = batchq(
        &["enqueue", f, "--api", &gw.url, "--api-auth", "sigv4"],
        &[("AWS_REGION", "us-east-1")],
    );
    assert_eq!(no_creds.status.code(), Some(1));
    assert!(
        stderr(&no_creds).contains("no AWS credentials"),
        "{}",
        stderr(&no_creds)
    );
    assert_eq!(gw.seen().len(), before);
    let _ = std::fs::remove_dir_all(dir);
}
