//! `batchq enqueue`: a JSONL file into the queue, directly or through the
//! deployed API (`--api`), chunked to the API's limits.

use crate::chunk::{Chunker, Limits, Piece};
use crate::output::{emit, progress_allowed, text};
use crate::Failure;
use batchq_core::api::ApiRequest;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::path::Path;
use tokio::io::AsyncBufReadExt;

use super::Ctx;

use crate::exit::Exit;

/// What one bulk call said about its lines, renumbered to the file.
#[derive(Default)]
pub(crate) struct EnqueueSummary {
    pub(crate) lines: u64,
    pub(crate) created: u64,
    pub(crate) existing: u64,
    pub(crate) conflict: u64,
    /// The conflicting lines as the API reported them (`line`, `custom_id`,
    /// `error`), renumbered to the file.
    pub(crate) conflicts: Vec<Value>,
    pub(crate) rejected: Vec<Value>,
}

pub async fn enqueue(ctx: &Ctx, file: &Path) -> Result<(), Failure> {
    let remote = ctx.remote();
    let f = tokio::fs::File::open(file)
        .await
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let total_bytes = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    let bar = if progress_allowed(ctx.json) {
        let b = ProgressBar::new(total_bytes);
        b.set_style(
            ProgressStyle::with_template("enqueue [{bar:40}] {bytes}/{total_bytes} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let mut reader = tokio::io::BufReader::new(f);
    let mut raw: Vec<u8> = Vec::new();
    let mut sum = EnqueueSummary::default();
    let limits = if remote.is_some() { Limits::API } else { Limits::STORE };
    let mut chunker = Chunker::new(limits);
    let mut line_no = 0u64;
    loop {
        raw.clear();
        let read = reader
            .read_until(b'\n', &mut raw)
            .await
            .map_err(|e| format!("{}: line {}: {e}", file.display(), line_no + 1))?;
        let done = read == 0;
        let pieces = if done {
            chunker.finish().map(Piece::Send).into_iter().collect()
        } else {
            line_no += 1;
            bar.inc(read as u64);
            match line_text(&mut raw) {
                Ok(line) => chunker.push(line),
                Err(offset) => {
                    // Rejected alone, as the API rejects such a line; a blank
                    // line takes its place so later lines keep their numbers.
                    sum.lines += 1;
                    sum.rejected.push(not_utf8(line_no, offset));
                    chunker.push(String::new())
                }
            }
        };
        for piece in pieces {
            match piece {
                Piece::Send(chunk) => {
                    let answer = send_bulk(ctx, chunk.body).await?;
                    merge_bulk(&mut sum, &answer, chunk.first_line - 1)?;
                    bar.set_message(format!("{} accepted", sum.created + sum.existing));
                }
                Piece::TooLong { line, bytes } => {
                    sum.lines += 1;
                    sum.rejected.push(too_long(line, bytes, limits, remote.is_some()));
                }
            }
        }
        if done {
            break;
        }
    }
    bar.finish_and_clear();
    let v = json!({
        "file": file.display().to_string(),
        "lines": sum.lines,
        "created": sum.created,
        "duplicates": sum.existing,
        "conflicts": sum.conflict,
        "conflicting": sum.conflicts,
        "rejected": sum.rejected.len(),
        "rejections": sum.rejected,
    });
    emit(ctx.json, &v, || {
        let mut out = vec![format!(
            "{}: {} accepted ({} new, {} already queued), {} conflicts, {} rejected",
            file.display(),
            sum.created + sum.existing,
            sum.created,
            sum.existing,
            sum.conflict,
            sum.rejected.len()
        )];
        let mut listed: Vec<&Value> = sum.rejected.iter().chain(&sum.conflicts).collect();
        listed.sort_by_key(|r| r["line"].as_u64().unwrap_or(0));
        for r in listed.iter().take(50) {
            // A conflict's message names its custom_id; a rejection names the field at fault.
            let field = match (r["outcome"].as_str(), r["error"]["field"].as_str()) {
                (Some("conflict"), _) | (_, None) => String::new(),
                (_, Some(field)) => format!("{field}: "),
            };
            out.push(format!(
                "  line {}: {field}{}",
                text(&r["line"]),
                text(&r["error"]["message"])
            ));
        }
        if listed.len() > 50 {
            out.push(format!("  … and {} more (use --json for all)", listed.len() - 50));
        }
        out.join("\n")
    })?;
    if !sum.rejected.is_empty() || sum.conflict > 0 {
        return Err(Failure::new(
            Exit::Partial,
            format!(
                "{} rejected, {} conflicting with stored requests (stdout lists them with their line numbers)",
                plural(sum.rejected.len() as u64, "line"),
                plural(sum.conflict, "line"),
            ),
        ));
    }
    Ok(())
}

pub(crate) async fn send_bulk(ctx: &Ctx, body: String) -> Result<Value, Failure> {
    let Some(remote) = ctx.remote() else {
        let resp = ctx
            .api()?
            .handle(
                &ctx.tenant,
                ApiRequest::post("/v1/requests/bulk", "application/x-ndjson", body),
            )
            .await;
        // The API core logged the store's own error; this names the store.
        if store_unavailable(resp.status, &resp.body) {
            return Err(ctx.storage_unavailable(None));
        }
        // Refused as a whole (over quota, too large): no per-line outcomes.
        if !resp.body["results"].is_array() {
            return Err(format!(
                "enqueue failed: {}",
                answer_message(&resp.body, resp.body_string().as_bytes())
            )
            .into());
        }
        return Ok(resp.body);
    };
    let url = &remote.url("/v1/requests/bulk", "")?;
    const CONTENT_TYPE: &str = "application/x-ndjson";
    let post = remote.http.post(url.clone()).header("content-type", CONTENT_TYPE);
    let post = remote
        .auth
        .apply(post, "POST", url, CONTENT_TYPE, body.as_bytes())
        .await?;
    let resp = post.body(body).send().await.map_err(|e| format!("POST {url}: {e}"))?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| format!("POST {url}: {e}"))?;
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    // Per-line outcomes come with 200, and with 400 when every line was bad.
    // Anything else refuses the call as a whole (no key, a wrong key or
    // signature, over quota, too large, API Gateway's own answers such as
    // `{"message":"Forbidden"}`): nothing to report per line.
    if store_unavailable(status.as_u16(), &v) {
        return Err(ctx.storage_unavailable(Some(&format!("HTTP 503: {}", answer_message(&v, &bytes)))));
    }
    if !v["results"].is_array() {
        let mut message = format!("POST {url}: HTTP {status}: {}", answer_message(&v, &bytes));
        if matches!(status.as_u16(), 401 | 403) {
            message.push_str(&format!(" ({})", remote.auth.refusal_hint()));
        }
        return Err(message.into());
    }
    Ok(v)
}

/// Whether an answer is batchq's own 503 (its store is down), not a
/// gateway's or a proxy's.
pub(crate) fn store_unavailable(status: u16, v: &Value) -> bool {
    status == 503 && v["error"]["code"] == "unavailable"
}

/// The message of an error answer: the API's `error.message`, API Gateway's
/// `message`, or the start of whatever text came back.
pub(crate) fn answer_message(v: &Value, raw: &[u8]) -> String {
    if let Some(m) = v["error"]["message"].as_str().or_else(|| v["message"].as_str()) {
        return m.to_owned();
    }
    let text = String::from_utf8_lossy(raw);
    let text = text.trim();
    if text.is_empty() {
        return "(empty answer)".into();
    }
    text.chars().take(300).collect()
}

/// `1 line`, `2 lines`.
fn plural(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// A line read with its ending (`\n` or `\r\n`) as text; `Err` holds the
/// offset of the first byte that is not UTF-8.
fn line_text(raw: &mut Vec<u8>) -> Result<String, usize> {
    if raw.last() == Some(&b'\n') {
        raw.pop();
        if raw.last() == Some(&b'\r') {
            raw.pop();
        }
    }
    String::from_utf8(std::mem::take(raw)).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        *raw = e.into_bytes();
        offset
    })
}

/// The rejection of a line that is not UTF-8, shaped like the API's own
/// (`invalid_utf8`, which the bulk API answers for such a line).
pub(crate) fn not_utf8(line: u64, offset: usize) -> Value {
    json!({
        "line": line,
        "custom_id": Value::Null,
        "outcome": "rejected",
        "status": Value::Null,
        "error": {
            "code": "invalid_utf8",
            "message": format!("the line is not valid UTF-8: invalid byte at offset {offset}"),
            "field": Value::Null,
        },
    })
}

/// The rejection of a line too long to be sent, shaped like the API's own.
pub(crate) fn too_long(line: u64, bytes: usize, limits: Limits, through_api: bool) -> Value {
    let message = if through_api {
        format!(
            "the line is {bytes} bytes; through --api a line is sent in one call of at most {} bytes \
             (API Gateway hands Lambda at most 6 MB, with the body base64-encoded); make its body smaller \
             or enqueue the file without --api",
            limits.max_line_bytes
        )
    } else {
        format!(
            "the line is {bytes} bytes; the API reads at most {} bytes per call",
            limits.max_line_bytes
        )
    };
    json!({
        "line": line,
        "custom_id": Value::Null,
        "outcome": "rejected",
        "status": Value::Null,
        "error": {"code": "line_too_large", "message": message, "field": Value::Null},
    })
}

pub(crate) fn merge_bulk(sum: &mut EnqueueSummary, answer: &Value, offset: u64) -> Result<(), Failure> {
    let results = answer["results"]
        .as_array()
        .ok_or_else(|| format!("unexpected bulk answer: {answer}"))?;
    for r in results {
        sum.lines += 1;
        match r["outcome"].as_str() {
            Some("created") => sum.created += 1,
            Some("existing") => sum.existing += 1,
            outcome => {
                let mut r = r.clone();
                if let Some(n) = r["line"].as_u64() {
                    r["line"] = json!(n + offset);
                }
                if outcome == Some("conflict") {
                    sum.conflict += 1;
                    sum.conflicts.push(r);
                } else {
                    sum.rejected.push(r);
                }
            }
        }
    }
    Ok(())
}
