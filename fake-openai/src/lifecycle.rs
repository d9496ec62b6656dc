//! A batch's progression: validation, in progress, finishing with output
//! and error files, expiry and cancellation.

use crate::limits;
use crate::responses;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use crate::config::FakeConfig;
use crate::files::new_file;
use crate::state::{now_s, BatchRec, FileRec, Inner, Line};

/// Every line of a file, parsed (or the parse error); blank lines skipped.
pub(crate) fn read_lines(path: &std::path::Path) -> Vec<Result<Value, String>> {
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    BufReader::new(f)
        .split(b'\n')
        .map_while(Result::ok)
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(|l| serde_json::from_slice::<Value>(&l).map_err(|e| e.to_string()))
        .collect()
}

pub(crate) fn present(rec: &BatchRec) -> Value {
    let mut obj = rec.obj.clone();
    if rec.faults.empty_string_file_ids {
        for k in ["output_file_id", "error_file_id"] {
            if obj[k].is_null() {
                obj[k] = json!("");
            }
        }
    }
    obj
}

pub(crate) fn elapsed(rec: &BatchRec, step_ms: u64, steps: u32) -> bool {
    step_ms == 0 || rec.created.elapsed() >= Duration::from_millis(step_ms * steps as u64)
}

pub(crate) fn validate(
    path: &std::path::Path,
    bytes: u64,
    endpoint: &str,
    cfg: &FakeConfig,
) -> Result<Vec<Line>, Vec<Value>> {
    let mut errors = Vec::new();
    let err = |code: &str, message: String, line: Option<usize>, param: Option<&str>| json!({"code": code, "message": message, "param": param, "line": line});
    if bytes > cfg.max_bytes {
        return Err(vec![err(
            "file_too_large",
            format!("The input file is {bytes} bytes; the maximum is {}.", cfg.max_bytes),
            None,
            None,
        )]);
    }
    let lines = read_lines(path);
    if lines.len() as u64 > cfg.max_lines {
        return Err(vec![err(
            "too_many_requests",
            format!(
                "The input file has {} requests; the maximum is {}.",
                lines.len(),
                cfg.max_lines
            ),
            None,
            None,
        )]);
    }
    if lines.is_empty() {
        return Err(vec![err("empty_file", "The input file is empty.".into(), None, None)]);
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut model: Option<String> = None;
    for (i, l) in lines.into_iter().enumerate() {
        let n = Some(i + 1);
        let v = match l {
            Ok(v) if v.is_object() => v,
            _ => {
                errors.push(err(
                    "invalid_json_line",
                    "This line is not parseable as valid JSON.".into(),
                    n,
                    None,
                ));
                continue;
            }
        };
        let Some(custom_id) = v.get("custom_id").and_then(Value::as_str).filter(|s| !s.is_empty()) else {
            errors.push(err(
                "missing_required_parameter",
                "Missing required parameter: 'custom_id'.".into(),
                n,
                Some("custom_id"),
            ));
            continue;
        };
        if v.get("method").and_then(Value::as_str) != Some("POST") {
            errors.push(err(
                "invalid_method",
                "The method must be 'POST'.".into(),
                n,
                Some("method"),
            ));
            continue;
        }
        let url = v.get("url").and_then(Value::as_str).unwrap_or("");
        let url_v1 = if url.starts_with("/v1/") {
            url.to_owned()
        } else {
            format!("/v1{url}")
        };
        if url_v1 != endpoint {
            errors.push(err(
                "invalid_url",
                format!("The url '{url}' does not match the batch endpoint."),
                n,
                Some("url"),
            ));
            continue;
        }
        let Some(body) = v.get("body").filter(|b| b.is_object()) else {
            errors.push(err(
                "missing_required_parameter",
                "Missing required parameter: 'body'.".into(),
                n,
                Some("body"),
            ));
            continue;
        };
        let m = body.get("model").and_then(Value::as_str).unwrap_or("").to_owned();
        match &model {
            None => model = Some(m),
            Some(first) if *first != m => {
                errors.push(err(
                    "mismatched_model",
                    "Each input file may only include requests to a single model.".into(),
                    n,
                    Some("body.model"),
                ));
                continue;
            }
            _ => {}
        }
        if !seen.insert(custom_id.to_owned()) {
            errors.push(err(
                "duplicate_custom_id",
                format!("The custom_id '{custom_id}' is duplicated; custom_ids must be unique."),
                n,
                Some("custom_id"),
            ));
            continue;
        }
        out.push(Line {
            custom_id: custom_id.to_owned(),
            body: body.clone(),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if endpoint == "/v1/embeddings" {
        let inputs: u64 = out.iter().map(|l| responses::embedding_inputs(&l.body)).sum();
        if inputs > cfg.max_embedding_inputs {
            // The cap is documented; its error code is not: `too_many_inputs` is our guess.
            return Err(vec![err(
                "too_many_inputs",
                format!(
                    "The batch has {inputs} embedding inputs across its requests; the maximum is {}.",
                    cfg.max_embedding_inputs
                ),
                None,
                None,
            )]);
        }
    }
    Ok(out)
}

/// What moves a batch: a client's retrieve (counted by the `stay_*_polls`
/// faults) or the clock alone (the webhook ticker, see `webhooks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    Retrieve,
    Clock,
}

/// Moves a batch as far as its clock and faults allow. Called on retrieve.
pub(crate) fn advance(inner: &mut Inner, id: &str) {
    advance_by(inner, id, Cause::Retrieve)
}

/// Whether a phase that lasts `stay` retrieves holds the batch: a retrieve
/// counts itself first; the clock moves it once `stay` retrieves were seen.
fn stays(count: &mut u32, stay: u32, cause: Cause) -> bool {
    match cause {
        Cause::Retrieve => {
            *count += 1;
            *count <= stay
        }
        Cause::Clock => *count < stay,
    }
}

/// [`advance`], moved by a retrieve or by the clock alone.
pub(crate) fn advance_by(inner: &mut Inner, id: &str, cause: Cause) {
    let cfg = inner.config.clone();
    let queued = match inner.by_id.get(id) {
        Some(r) if r.obj["status"] == "validating" => limits::queued_ahead(inner, id),
        _ => 0,
    };
    {
        let Some(rec) = inner.by_id.get_mut(id) else { return };
        if cause == Cause::Retrieve {
            rec.polls += 1;
            if rec.faults.vanish_after_polls.is_some_and(|n| rec.polls > n) {
                rec.vanished = true;
                return;
            }
        }
        let input = inner
            .files
            .get(rec.obj["input_file_id"].as_str().unwrap_or(""))
            .cloned();
        let now = now_s();
        loop {
            let status = rec.obj["status"].as_str().unwrap_or("").to_owned();
            match status.as_str() {
                "validating" => {
                    let held = match cause {
                        Cause::Retrieve => rec.polls <= rec.faults.stay_validating_polls,
                        Cause::Clock => rec.polls < rec.faults.stay_validating_polls,
                    };
                    if held || !elapsed(rec, cfg.step_ms, 1) {
                        break;
                    }
                    run_validation(rec, input.as_ref(), &cfg, queued);
                }
                "in_progress" => {
                    if rec.cancel_requested {
                        rec.obj["status"] = json!("cancelling");
                        rec.obj["cancelling_at"] = json!(now);
                        continue;
                    }
                    if stays(&mut rec.in_progress_polls, rec.faults.stay_in_progress_polls, cause)
                        || !elapsed(rec, cfg.step_ms, 2)
                    {
                        let half = rec.lines.len() / 2;
                        rec.obj["request_counts"]["completed"] = json!(half);
                        break;
                    }
                    rec.obj["status"] = json!("finalizing");
                    rec.obj["finalizing_at"] = json!(now);
                }
                "finalizing" => {
                    if stays(&mut rec.finalizing_polls, rec.faults.stay_finalizing_polls, cause)
                        || !elapsed(rec, cfg.step_ms, 3)
                    {
                        break;
                    }
                    finish(rec, &|_| true, "completed", None);
                }
                "cancelling" => {
                    if stays(&mut rec.cancelling_polls, rec.faults.stay_cancelling_polls, cause) {
                        break;
                    }
                    cancel(rec, id);
                }
                _ => break,
            }
        }
    }
    write_result_files(inner, id);
}

/// cancelling -> cancelled: the lines done by then are answered, the rest
/// `batch_cancelled`.
pub(crate) fn cancel(rec: &mut BatchRec, id: &str) {
    finish(
        rec,
        &half_done(id.to_owned()),
        "cancelled",
        Some((
            "batch_cancelled",
            "This request was cancelled before it could be processed.",
        )),
    );
}

/// Validates a `validating` batch now, whatever its clock and faults say.
pub(crate) fn validate_now(inner: &mut Inner, id: &str) {
    let cfg = inner.config.clone();
    let queued = limits::queued_ahead(inner, id);
    let Some(rec) = inner.by_id.get_mut(id) else { return };
    let input = inner
        .files
        .get(rec.obj["input_file_id"].as_str().unwrap_or(""))
        .cloned();
    run_validation(rec, input.as_ref(), &cfg, queued);
}

/// validating -> failed (errors with line numbers, or a full token queue) or
/// in_progress. `queued`: the tokens ahead of it in its model's queue.
pub(crate) fn run_validation(rec: &mut BatchRec, input: Option<&FileRec>, cfg: &FakeConfig, queued: u64) {
    let now = now_s();
    let endpoint = rec.obj["endpoint"].as_str().unwrap_or("").to_owned();
    let endpoint = if endpoint.starts_with("/v1/") {
        endpoint
    } else {
        format!("/v1{endpoint}")
    };
    let result = match input {
        Some(f) => validate(&f.path, f.bytes, &endpoint, cfg),
        None => Err(vec![
            json!({"code": "file_not_found", "message": "The input file was deleted.", "param": null, "line": null}),
        ]),
    };
    match result {
        Err(errors) => {
            rec.obj["status"] = json!("failed");
            rec.obj["failed_at"] = json!(now);
            rec.obj["errors"] = json!({"object": "list", "data": errors});
        }
        Ok(lines) => {
            // Validation passed, so every line names the model read at create.
            let limit = limits::limit(&cfg.faults, &rec.model);
            let over = limit.is_some_and(|l| queued + rec.tokens > l);
            if rec.faults.token_limit_exceeded || over {
                rec.obj["status"] = json!("failed");
                rec.obj["failed_at"] = json!(now);
                // The forced fault names gpt-4o-mini's tier-1 limit when none is set.
                let error = limits::exceeded(&rec.model, limit.unwrap_or(2_000_000));
                rec.obj["errors"] = json!({"object": "list", "data": [error]});
            } else {
                rec.obj["model"] = json!(rec.model);
                rec.obj["request_counts"]["total"] = json!(lines.len());
                rec.obj["status"] = json!("in_progress");
                rec.obj["in_progress_at"] = json!(now);
                rec.lines = lines;
            }
        }
    }
}

/// About half the lines of a batch, chosen by hash: those that finished
/// before an expiry or a cancellation.
pub(crate) fn half_done(batch_id: String) -> impl Fn(&str) -> bool {
    move |cid| responses::hash64(&[batch_id.as_bytes(), cid.as_bytes()]).is_multiple_of(2)
}

/// Ends a batch: lines for which `done` holds are answered (or fail per the
/// faults); the rest get `not_done` in the error file.
pub(crate) fn finish(rec: &mut BatchRec, done: &dyn Fn(&str) -> bool, status: &str, not_done: Option<(&str, &str)>) {
    let now = now_s();
    rec.obj["status"] = json!(status);
    rec.obj[format!("{status}_at")] = json!(now);
    rec.obj["pending_results"] = json!(true);
    let f = &rec.faults;
    let endpoint = rec.obj["endpoint"].as_str().unwrap_or("").to_owned();
    let endpoint = if endpoint.starts_with("/v1/") {
        endpoint
    } else {
        format!("/v1{endpoint}")
    };
    let batch_id = rec.obj["id"].as_str().unwrap_or("").to_owned();
    let mut output: Vec<(u64, String)> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let (mut inp, mut cached, mut out, mut reasoning) = (0u64, 0u64, 0u64, 0u64);
    for (i, line) in rec.lines.iter().enumerate() {
        if f.lose_custom_ids.contains(&line.custom_id) {
            continue;
        }
        let req_id = format!(
            "batch_req_{:016x}",
            responses::hash64(&[batch_id.as_bytes(), line.custom_id.as_bytes()])
        );
        if !done(&line.custom_id) {
            let (code, message) = not_done.unwrap_or((
                "batch_expired",
                "This request could not be executed before the completion window expired.",
            ));
            errors.push(
                json!({"id": req_id, "custom_id": line.custom_id, "response": null,
                               "error": {"code": code, "message": message}})
                .to_string(),
            );
            continue;
        }
        let h = responses::hash64(&[line.custom_id.as_bytes()]);
        let fails = f.all_lines_fail
            || f.fail_prefix.as_deref().is_some_and(|p| line.custom_id.starts_with(p))
            || (f.fail_percent > 0 && h % 100 < f.fail_percent as u64);
        if fails {
            let st = f.fail_status.unwrap_or(500);
            let (kind, msg) = match st {
                400 => (
                    "invalid_request_error",
                    "Invalid request: the model rejected this input.",
                ),
                429 => (
                    "rate_limit_exceeded",
                    "Rate limit reached while processing this request.",
                ),
                _ => ("server_error", "The server had an error while processing your request."),
            };
            errors.push(
                json!({"id": req_id, "custom_id": line.custom_id,
                "response": {"status_code": st, "request_id": format!("req_{h:016x}"),
                             "body": {"error": {"message": msg, "type": kind, "param": null, "code": null}}},
                "error": null})
                .to_string(),
            );
            continue;
        }
        let body = responses::respond(&endpoint, &line.custom_id, &line.body);
        let u = &body["usage"];
        inp += u["prompt_tokens"].as_u64().or(u["input_tokens"].as_u64()).unwrap_or(0);
        out += u["completion_tokens"]
            .as_u64()
            .or(u["output_tokens"].as_u64())
            .unwrap_or(0);
        cached += u
            .pointer("/prompt_tokens_details/cached_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        reasoning += u
            .pointer("/completion_tokens_details/reasoning_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let shuffle = responses::hash64(&[batch_id.as_bytes(), &(i as u64).to_le_bytes()]);
        output.push((
            shuffle,
            json!({"id": req_id, "custom_id": line.custom_id,
                   "response": {"status_code": 200, "request_id": format!("req_{h:016x}"), "body": body},
                   "error": null})
            .to_string(),
        ));
    }
    output.sort();
    rec.obj["request_counts"]["completed"] = json!(output.len());
    rec.obj["request_counts"]["failed"] = json!(errors.len());
    rec.obj["usage"] = json!({"input_tokens": inp, "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": out, "output_tokens_details": {"reasoning_tokens": reasoning}, "total_tokens": inp + out});
    rec.obj["_output_lines"] = json!(output.into_iter().map(|(_, l)| l).collect::<Vec<_>>());
    rec.obj["_error_lines"] = json!(errors);
}

/// Materialises the result lines `finish` left on the batch as files.
pub(crate) fn write_result_files(inner: &mut Inner, id: &str) {
    let Some(rec) = inner.by_id.get_mut(id) else { return };
    if rec.obj.get("pending_results").is_none() {
        return;
    }
    let obj = rec.obj.as_object_mut().expect("object");
    obj.remove("pending_results");
    let outputs = obj.remove("_output_lines").unwrap_or(json!([]));
    let errors = obj.remove("_error_lines").unwrap_or(json!([]));
    let mut ids = Vec::new();
    for (key, lines) in [("output_file_id", outputs), ("error_file_id", errors)] {
        let lines: Vec<String> = serde_json::from_value(lines).unwrap_or_default();
        if lines.is_empty() {
            continue;
        }
        ids.push((key, lines));
    }
    for (key, lines) in ids {
        let name = format!(
            "{id}_{}.jsonl",
            if key == "output_file_id" { "output" } else { "error" }
        );
        let path = inner.dir.join(format!("{name}-{}", uuid::Uuid::new_v4().simple()));
        let mut f = std::fs::File::create(&path).expect("create result file");
        let mut n = 0u64;
        for l in &lines {
            f.write_all(l.as_bytes()).expect("write");
            f.write_all(b"\n").expect("write");
            n += l.len() as u64 + 1;
        }
        let meta = new_file(inner, &name, "batch_output", path, n);
        let rec = inner.by_id.get_mut(id).expect("exists");
        rec.obj[key] = meta["id"].clone();
    }
}
