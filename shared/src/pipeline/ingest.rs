//! ingest: turns a result file copied to S3 into per-request results.
//!
//! The file is read line by line (never whole). Lines are applied in chunks:
//! one batched read of the requests' states, then one conditional write per
//! request, so a line changes a request only while it is still claimed by
//! this job — a replayed line changes nothing, and a line for a request that
//! is not in this job is reported, not applied.
//!
//! Outcomes: a 2xx response completes the request with its body, usage and
//! cost. A retryable outcome (`batch_expired`, `batch_cancelled`, HTTP 408,
//! 429 or 5xx inside the file) puts it back in the queue, or ends it failed
//! with that error once its attempts are used up. Anything else (a 4xx) ends
//! it failed at once.
//!
//! A file's usage and cost totals are computed from the whole file and added
//! to the job in one conditional write that also marks the file as counted,
//! so replaying a file never counts it twice.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Core, CrashPoint, PipelineError};
use crate::ids::TenantId;
use crate::ids::{JobId, RequestKey};
use crate::job::{CostTotals, Job, JobStatus, ProviderBatchStatus};
use crate::jsonl::{Line, LineReader};
use crate::keys::{self, ResultFile};
use crate::pricing::PriceBook;
use crate::request::{Payload, Request, RequestError, RequestResult, RequestStatus, Usage};
use crate::store::{SavingsRow, SavingsTotals};
use crate::transition::RequestUpdate;

/// Longest result line read; longer ones are reported and skipped.
pub const MAX_RESULT_LINE_BYTES: usize = 32 * 1024 * 1024;

/// Largest token count believed in a result line's `usage` (2^32 - 1, far
/// above any model's context). A line claiming more is applied without its
/// usage (unpriced): a hostile or corrupt file must not overflow the job's
/// or the tenant's running totals, which sum many lines.
pub const MAX_USAGE_TOKENS: u64 = u32::MAX as u64;

/// Lines applied per chunk (one batched read, one or more transactions).
const CHUNK_LINES: usize = 100;

/// Which of a job's two result files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Output,
    Errors,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Output => "output",
            Self::Errors => "errors",
        }
    }

    pub fn key(self, job: &JobId) -> String {
        match self {
            Self::Output => keys::job_output(job),
            Self::Errors => keys::job_errors(job),
        }
    }

    fn counted(self, job: &Job) -> bool {
        match self {
            Self::Output => job.ingested_output,
            Self::Errors => job.ingested_errors,
        }
    }

    fn mark(self, job: &mut Job) {
        match self {
            Self::Output => job.ingested_output = true,
            Self::Errors => job.ingested_errors = true,
        }
    }
}

/// What ingesting one file did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestReport {
    pub key: String,
    pub job_id: String,
    /// Non-blank lines read.
    pub lines: u64,
    pub completed: u64,
    pub failed: u64,
    pub requeued: u64,
    /// Lines whose request had already taken them (a replay).
    pub replayed: u64,
    /// Lines naming a request that is not in this job (reported, not applied).
    pub not_in_job: u64,
    /// Lines naming a request of this job (applied now or by an earlier run).
    pub job_lines: u64,
    /// Lines that are not valid result lines.
    pub malformed: u64,
    /// Lines over [`MAX_RESULT_LINE_BYTES`].
    pub too_long: u64,
    /// Second and later lines for the same request in this file (ignored).
    pub duplicates: u64,
    /// This run added the file's totals to the job (false on a replay).
    pub counted: bool,
    /// This run closed the job.
    pub closed: bool,
    /// Why nothing was done, when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub totals: CostTotals,
}

/// Per-tenant savings of one file, added to the running totals once.
pub(super) type TenantTotals = BTreeMap<TenantId, SavingsTotals>;

/// The ingest step, wired to its ports.
#[derive(Clone)]
pub struct Ingester {
    pub(super) core: Core,
    prices: Arc<PriceBook>,
}

/// One parsed result line.
pub(super) struct ResultLine {
    pub(super) number: u64,
    pub(super) key: RequestKey,
    pub(super) outcome: Outcome,
}

pub(super) enum Outcome {
    Success {
        status_code: u16,
        body: String,
        usage: Option<Usage>,
        model: Option<String>,
    },
    Error {
        error: RequestError,
        body: Option<String>,
        retryable: bool,
    },
}

// ---- wire shapes of a result line: {"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}

#[derive(Deserialize)]
struct WireLine<'a> {
    #[serde(borrow, default)]
    custom_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    response: Option<WireResponse<'a>>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireResponse<'a> {
    #[serde(default)]
    status_code: Option<u16>,
    #[serde(borrow, default)]
    body: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
}

/// The parts of a response body batchq reads; the rest is stored as is.
#[derive(Deserialize, Default)]
struct BodyMeta {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<BodyError>,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    // chat completions, completions, embeddings
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<CachedDetails>,
    completion_tokens_details: Option<ReasoningDetails>,
    // responses
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    input_tokens_details: Option<CachedDetails>,
    output_tokens_details: Option<ReasoningDetails>,
}

#[derive(Deserialize, Default)]
struct CachedDetails {
    cached_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct ReasoningDetails {
    reasoning_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct BodyError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

impl WireUsage {
    /// The usage, or `None` when a count is over [`MAX_USAGE_TOKENS`].
    fn to_usage(&self) -> Option<Usage> {
        let cached = |d: &Option<CachedDetails>| d.as_ref().and_then(|d| d.cached_tokens);
        let reasoning = |d: &Option<ReasoningDetails>| d.as_ref().and_then(|d| d.reasoning_tokens);
        let usage = Usage {
            input_tokens: self.prompt_tokens.or(self.input_tokens).unwrap_or(0),
            cached_input_tokens: cached(&self.prompt_tokens_details)
                .or(cached(&self.input_tokens_details))
                .unwrap_or(0),
            output_tokens: self.completion_tokens.or(self.output_tokens).unwrap_or(0),
            reasoning_tokens: reasoning(&self.completion_tokens_details)
                .or(reasoning(&self.output_tokens_details))
                .unwrap_or(0),
        };
        let counts = [
            usage.input_tokens,
            usage.cached_input_tokens,
            usage.output_tokens,
            usage.reasoning_tokens,
        ];
        counts.iter().all(|n| *n <= MAX_USAGE_TOKENS).then_some(usage)
    }
}

fn code_string(v: &Option<serde_json::Value>) -> Option<String> {
    match v {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// Error codes in the error file that mean "not run, try again". Any other
/// code from an expired or cancelled batch is retried too (the request did
/// not get its chance); see `Ingester::apply_chunk`.
const RETRYABLE_CODES: [&str; 5] = [
    "batch_expired",
    "batch_cancelled",
    "request_timeout",
    "server_error",
    "rate_limit_exceeded",
];

/// The parts of a response body batchq reads (`model`, `usage`, `error`),
/// as `serde_json::from_str::<BodyMeta>(raw).unwrap_or_default()` would
/// read them (a wrong type or a repeated field gives the default), but
/// without parsing the rest: `raw` was checked as JSON by the line's parse,
/// so other members are skipped by their bytes (strings with memchr). The
/// answer text is most of a body; parsing it a second time held ingest to
/// half the speed of merely reading the file (`make bench`).
fn body_meta(raw: &str) -> BodyMeta {
    fn ws(b: &[u8], mut i: usize) -> usize {
        while b.get(i).is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        i
    }
    // `i` at an opening quote; the index after the closing one: the next
    // quote not escaped, i.e. after an even run of backslashes (answer text
    // is full of `\n`; stopping at each backslash cost a tenth of ingest).
    fn string_end(b: &[u8], i: usize) -> Option<usize> {
        let mut j = i + 1;
        loop {
            let k = j + memchr::memchr(b'"', b.get(j..)?)?;
            // b[i] is a quote, so the run stops there at the latest.
            let run = b[..k].iter().rev().take_while(|c| **c == b'\\').count();
            if run % 2 == 0 {
                return Some(k + 1);
            }
            j = k + 1;
        }
    }
    // `i` at a value; the index after it.
    fn value_end(b: &[u8], i: usize) -> Option<usize> {
        match b.get(i)? {
            b'"' => string_end(b, i),
            b'{' | b'[' => {
                let mut depth = 0usize;
                let mut j = i;
                loop {
                    match b.get(j)? {
                        b'"' => {
                            j = string_end(b, j)?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return Some(j + 1);
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
            }
            _ => {
                let mut j = i;
                while b
                    .get(j)
                    .is_some_and(|c| !matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                {
                    j += 1;
                }
                Some(j)
            }
        }
    }
    fn read(raw: &str) -> Option<BodyMeta> {
        let b = raw.as_bytes();
        let mut meta = BodyMeta::default();
        let (mut model, mut usage, mut error) = (false, false, false);
        let mut i = ws(b, 0);
        if b.get(i) != Some(&b'{') {
            return None;
        }
        i += 1;
        loop {
            i = ws(b, i);
            match b.get(i)? {
                b'}' => return Some(meta),
                b',' => {
                    i += 1;
                    continue;
                }
                b'"' => {}
                _ => return None,
            }
            let key_end = string_end(b, i)?;
            let key = &raw[i + 1..key_end - 1];
            if key.contains('\\') {
                return None; // an escaped name: let serde decide
            }
            i = ws(b, key_end);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i = ws(b, i + 1);
            let end = value_end(b, i)?;
            let value = &raw[i..end];
            let seen = match key {
                "model" => {
                    meta.model = serde_json::from_str(value).ok()?;
                    std::mem::replace(&mut model, true)
                }
                "usage" => {
                    meta.usage = serde_json::from_str(value).ok()?;
                    std::mem::replace(&mut usage, true)
                }
                "error" => {
                    meta.error = serde_json::from_str(value).ok()?;
                    std::mem::replace(&mut error, true)
                }
                _ => false,
            };
            if seen {
                return None; // serde refuses a repeated field
            }
            i = end;
        }
    }
    match read(raw) {
        Some(meta) => meta,
        // Anything unusual: exactly what serde makes of it.
        None => serde_json::from_str(raw).unwrap_or_default(),
    }
}

/// Parses one result line; `Err` carries a reason (never the line's content).
pub(super) fn parse_line(number: u64, bytes: &[u8]) -> Result<ResultLine, String> {
    // UTF-8 checked once, with SIMD, for the whole line: `from_slice` would
    // check the body again as it borrows it (`RawValue`), byte by byte, at a
    // fifth of ingest's time on text with accents (`make bench`).
    let text = simdutf8::basic::from_utf8(bytes).map_err(|_| "not a result line: not UTF-8".to_owned())?;
    let wire: WireLine<'_> = serde_json::from_str(text).map_err(|e| format!("not a result line: {e}"))?;
    let custom_id = wire.custom_id.ok_or("no custom_id")?;
    let key = RequestKey::parse(custom_id.as_ref()).map_err(|_| "custom_id is not one of batchq's".to_owned())?;
    let response = wire.response.filter(|r| r.status_code.is_some());
    let outcome = match (response, wire.error) {
        (Some(resp), _) => {
            let status_code = resp.status_code.unwrap_or(0);
            let body = resp.body.map(|b| b.get().to_owned());
            let meta = resp.body.map(|b| body_meta(b.get())).unwrap_or_default();
            if (200..300).contains(&status_code) {
                let usage = meta.usage.as_ref().and_then(WireUsage::to_usage);
                if meta.usage.is_some() && usage.is_none() {
                    tracing::warn!(
                        line = number,
                        "result line claims over {MAX_USAGE_TOKENS} tokens; its usage is not counted"
                    );
                }
                Outcome::Success {
                    status_code,
                    body: body.unwrap_or_else(|| "null".to_owned()),
                    usage,
                    model: meta.model,
                }
            } else {
                let err = meta.error.unwrap_or_default();
                let code = code_string(&err.code)
                    .or(err.kind)
                    .unwrap_or_else(|| format!("http_{status_code}"));
                Outcome::Error {
                    error: RequestError {
                        code,
                        message: err.message.unwrap_or_else(|| format!("HTTP {status_code}")),
                        status_code: Some(status_code),
                    },
                    body,
                    retryable: matches!(status_code, 408 | 429) || status_code >= 500,
                }
            }
        }
        (None, Some(err)) => {
            let code = code_string(&err.code).unwrap_or_else(|| "unknown".to_owned());
            Outcome::Error {
                retryable: RETRYABLE_CODES.contains(&code.as_str()),
                error: RequestError {
                    code,
                    message: err.message.unwrap_or_default(),
                    status_code: None,
                },
                body: None,
            }
        }
        (None, None) => return Err("line has neither a response nor an error".into()),
    };
    Ok(ResultLine { number, key, outcome })
}

/// A result line over [`MAX_RESULT_LINE_BYTES`], from its first bytes: the
/// request it answers and its HTTP status, read where OpenAI writes them
/// (`{"id":…,"custom_id":"KEY","response":{"status_code":N,…`). The line
/// itself is not kept (holding it would hold up to the whole file in
/// memory): its request ends failed with `result_too_large`, and is never
/// sent again. `None` when the head names no request.
fn too_long_line(number: u64, bytes: u64, head: &[u8]) -> Option<ResultLine> {
    fn after<'a>(hay: &'a [u8], needle: &[u8]) -> Option<&'a [u8]> {
        memchr::memmem::find(hay, needle).map(|i| &hay[i + needle.len()..])
    }
    fn skip_ws(s: &[u8]) -> &[u8] {
        let n = s.iter().take_while(|c| c.is_ascii_whitespace()).count();
        &s[n..]
    }
    let rest = skip_ws(after(head, b"\"custom_id\"")?);
    let rest = skip_ws(rest.strip_prefix(b":")?);
    let value = rest.strip_prefix(b"\"")?;
    let end = memchr::memchr(b'"', value)?;
    let key = RequestKey::parse(std::str::from_utf8(&value[..end]).ok()?).ok()?;
    let status_code = after(head, b"\"status_code\"").and_then(|s| {
        let s = skip_ws(skip_ws(s).strip_prefix(b":")?);
        let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
        std::str::from_utf8(&s[..digits]).ok()?.parse::<u16>().ok()
    });
    Some(ResultLine {
        number,
        key,
        outcome: Outcome::Error {
            error: RequestError {
                code: "result_too_large".into(),
                message: format!(
                    "the provider's answer is {bytes} bytes, over batchq's limit of {MAX_RESULT_LINE_BYTES} bytes \
                     for one result line; it was not kept (the provider billed it), and the request is not sent \
                     again"
                ),
                status_code,
            },
            body: None,
            retryable: false,
        },
    })
}

/// How ingest reads one result line, without a store: for tests and tools
/// that check untrusted result files (`tests/tests/fuzz_parsers.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultLineView {
    pub key: RequestKey,
    /// The HTTP status inside the line, when it has a response.
    pub status_code: Option<u16>,
    /// `None` for a 2xx response; the error code otherwise.
    pub error_code: Option<String>,
    /// Whether the request would go back to the queue (attempts permitting).
    pub retryable: bool,
    /// The usage ingest would record and count (2xx only).
    pub usage: Option<Usage>,
}

/// Reads one result line as ingest does. `Err` is the reason ingest would
/// skip it as malformed (never the line's content).
pub fn read_result_line(bytes: &[u8]) -> Result<ResultLineView, String> {
    let line = parse_line(0, bytes)?;
    Ok(match line.outcome {
        Outcome::Success { status_code, usage, .. } => ResultLineView {
            key: line.key,
            status_code: Some(status_code),
            error_code: None,
            retryable: false,
            usage,
        },
        Outcome::Error { error, retryable, .. } => ResultLineView {
            key: line.key,
            status_code: error.status_code,
            error_code: Some(error.code),
            retryable,
            usage: None,
        },
    })
}

impl Ingester {
    pub fn new(core: Core, prices: Arc<PriceBook>) -> Self {
        Self { core, prices }
    }

    /// Ingests the object under `key` (as named by an S3 event). Keys that
    /// are not result files of a known job are rejected.
    pub async fn ingest_key(&self, key: &str) -> Result<IngestReport, PipelineError> {
        let Some(file) = keys::parse_result_key(key) else {
            return Err(PipelineError::Rejected(format!("{key} is not a result file")));
        };
        let (job_id, kind) = match file {
            ResultFile::Output(j) => (j, FileKind::Output),
            ResultFile::Errors(j) => (j, FileKind::Errors),
        };
        let Some(job) = self.core.jobs.get_job(&job_id).await? else {
            return Err(PipelineError::Rejected(format!("{key}: no job {job_id}")));
        };
        self.ingest_file(job, kind).await
    }

    /// Ingests one result file of `job`.
    pub async fn ingest_file(&self, job: Job, kind: FileKind) -> Result<IngestReport, PipelineError> {
        let key = kind.key(&job.id);
        let mut report = IngestReport {
            key: key.clone(),
            job_id: job.id.to_string(),
            ..Default::default()
        };
        match job.status {
            JobStatus::Ingesting => {}
            JobStatus::Done | JobStatus::Failed => {
                report.note = Some(format!("job is {}; nothing to do", job.status));
                return Ok(report);
            }
            other => {
                return Err(PipelineError::Rejected(format!(
                    "{key}: job {} is {other}, not ingesting",
                    job.id
                )))
            }
        }
        if kind.counted(&job) {
            report.note = Some("file already ingested".into());
            report.closed = self.core.try_close(&job).await?.is_some();
            return Ok(report);
        }

        let (_, stream) = self.core.objects.open(&key).await?;
        let mut reader = LineReader::new(stream, MAX_RESULT_LINE_BYTES);
        let mut totals = CostTotals::default();
        let mut by_tenant = TenantTotals::new();
        let mut chunk = Vec::with_capacity(CHUNK_LINES);
        let mut chunks_applied = 0u64;
        let mut seen = HashSet::new();
        while let Some(line) = reader.next_line().await? {
            report.lines += 1;
            match line {
                Line::Data { number, bytes } => match parse_line(number, &bytes) {
                    Ok(l) if !seen.insert(l.key.clone()) => {
                        report.duplicates += 1;
                        tracing::warn!(key, line = number, request = %l.key, "second result line for one request ignored");
                    }
                    Ok(l) => chunk.push(l),
                    Err(reason) => {
                        report.malformed += 1;
                        tracing::warn!(key, line = number, reason, "malformed result line skipped");
                    }
                },
                Line::TooLong { number, bytes, head } => {
                    report.too_long += 1;
                    match too_long_line(number, bytes, &head) {
                        // Its request ends failed: sent again, it would be
                        // answered (and billed) alike.
                        Some(l) if seen.insert(l.key.clone()) => {
                            tracing::warn!(key, line = number, bytes, request = %l.key, "result line over the size limit; its request fails");
                            chunk.push(l);
                        }
                        Some(_) => report.duplicates += 1,
                        None => {
                            tracing::warn!(
                                key,
                                line = number,
                                bytes,
                                "result line over the size limit names no request in its head; skipped"
                            );
                        }
                    }
                }
            }
            if chunk.len() >= CHUNK_LINES {
                self.apply_chunk(
                    &job,
                    std::mem::take(&mut chunk),
                    &mut totals,
                    &mut by_tenant,
                    &mut report,
                )
                .await?;
                chunks_applied += 1;
                if chunks_applied == 1 {
                    self.core.crash(CrashPoint::IngestMidFile)?;
                }
            }
        }
        if !chunk.is_empty() {
            self.apply_chunk(&job, chunk, &mut totals, &mut by_tenant, &mut report)
                .await?;
        }
        report.totals = totals;
        // The running per-tenant, per-day totals first: each counts this file
        // once by itself, so a crash before the job's totals re-adds nothing.
        self.add_savings(&job, kind.as_str(), by_tenant).await?;
        self.core.crash(CrashPoint::IngestBeforeTotals)?;

        let Some(job) = self.add_totals(&job.id, kind, &totals, &mut report).await? else {
            return Ok(report);
        };
        self.core.crash(CrashPoint::IngestAfterTotals)?;
        report.closed = self.core.try_close(&job).await?.is_some();
        tracing::info!(
            key,
            lines = report.lines,
            completed = report.completed,
            failed = report.failed,
            requeued = report.requeued,
            replayed = report.replayed,
            not_in_job = report.not_in_job,
            malformed = report.malformed,
            "result file ingested"
        );
        Ok(report)
    }

    /// Adds one file's per-tenant totals to the running savings, once per
    /// (job, `source`); a job's savings count on its UTC submission day.
    pub(super) async fn add_savings(
        &self,
        job: &Job,
        source: &str,
        by_tenant: TenantTotals,
    ) -> Result<(), PipelineError> {
        let day = job.submitted_at.unwrap_or(job.created_at).utc_date();
        let rows = by_tenant
            .into_iter()
            .map(|(tenant, totals)| SavingsRow {
                tenant,
                day: day.clone(),
                model: job.model.clone(),
                totals,
            })
            .collect();
        self.core
            .savings
            .add_savings(&format!("{}/{source}", job.id), rows)
            .await?;
        Ok(())
    }

    /// Adds a file's totals to its job once: the write is conditioned on the
    /// job's version and marks the file as counted.
    async fn add_totals(
        &self,
        job_id: &JobId,
        kind: FileKind,
        totals: &CostTotals,
        report: &mut IngestReport,
    ) -> Result<Option<Job>, PipelineError> {
        for _ in 0..20 {
            let Some(job) = self.core.jobs.get_job(job_id).await? else {
                return Ok(None);
            };
            if kind.counted(&job) || job.status != JobStatus::Ingesting {
                return Ok(Some(job));
            }
            let mut next = job.clone();
            next.totals.add(totals);
            next.result_lines += report.job_lines;
            next.updated_at = self.core.now();
            kind.mark(&mut next);
            match self.core.jobs.save_job(&job, next).await {
                Ok(saved) => {
                    report.counted = true;
                    return Ok(Some(saved));
                }
                Err(e) if e.is_condition_failed() => continue, // another writer; read again
                Err(e) => return Err(e.into()),
            }
        }
        Err(PipelineError::Rejected(format!(
            "job {job_id}: could not add the {} file's totals after repeated conflicts",
            kind.as_str()
        )))
    }

    async fn apply_chunk(
        &self,
        job: &Job,
        lines: Vec<ResultLine>,
        totals: &mut CostTotals,
        by_tenant: &mut TenantTotals,
        report: &mut IngestReport,
    ) -> Result<(), PipelineError> {
        let keys: Vec<RequestKey> = lines.iter().map(|l| l.key.clone()).collect();
        let states = self.core.requests.get_many(&keys).await?;
        let now = self.core.now();
        let mut updates = Vec::with_capacity(lines.len());
        for line in lines {
            let Some(req) = states.get(&line.key) else {
                report.not_in_job += 1;
                tracing::warn!(job = %job.id, line = line.number, request = %line.key, "result line for an unknown request");
                continue;
            };
            if req.job_id.as_ref() != Some(&job.id) {
                report.not_in_job += 1;
                tracing::warn!(job = %job.id, line = line.number, request = %req.key, "result line for a request not in this job");
                continue;
            }
            report.job_lines += 1;
            // Totals come from the file, for every line of this job, whether
            // this run or an earlier one applied it; they are added once.
            let (result, cost_model) = self.result_of(job, req, &line, now);
            if let (Some(usage), true) = (result.usage, result.error.is_none()) {
                totals.usage.add(&usage);
                let tenant = by_tenant.entry(req.tenant.clone()).or_default();
                tenant.requests += 1;
                tenant.usage.add(&usage);
                match (result.batch_cost, result.realtime_cost) {
                    (Some(b), Some(r)) => {
                        totals.batch_cost += b;
                        totals.realtime_cost += r;
                        tenant.batch_cost += b;
                        tenant.realtime_cost += r;
                    }
                    _ => {
                        totals.unpriced_requests += 1;
                        tenant.unpriced_requests += 1;
                        tracing::debug!(model = cost_model, "no price for model");
                    }
                }
            }
            if req.status != RequestStatus::Claimed {
                report.replayed += 1;
                continue;
            }
            let update = match &line.outcome {
                Outcome::Success { .. } => {
                    report.completed += 1;
                    RequestUpdate::finish(req, &job.id, RequestStatus::Completed, result, now)
                }
                Outcome::Error { error, retryable, body } => {
                    let cut_short = body.is_none()
                        && error.status_code.is_none()
                        && matches!(
                            job.provider_status,
                            Some(ProviderBatchStatus::Expired | ProviderBatchStatus::Cancelled)
                        );
                    if (*retryable || cut_short) && req.attempts < self.core.config.policy.max_attempts {
                        report.requeued += 1;
                        RequestUpdate::requeue(req, &job.id, Some(error.clone()), now)
                    } else {
                        report.failed += 1;
                        RequestUpdate::finish(req, &job.id, RequestStatus::Failed, result, now)
                    }
                }
            };
            updates.push(update);
        }
        let applied = self.core.apply_all(updates).await?;
        report.replayed += applied.already;
        Ok(())
    }

    /// The stored result of a line, with its cost when the model is priced.
    pub(super) fn result_of<'a>(
        &self,
        job: &'a Job,
        req: &Request,
        line: &'a ResultLine,
        now: crate::time::Timestamp,
    ) -> (RequestResult, &'a str) {
        let mut result = RequestResult {
            key: req.key.clone(),
            job_id: job.id.clone(),
            status_code: None,
            response: None,
            error: None,
            usage: None,
            batch_cost: None,
            realtime_cost: None,
            recorded_at: now,
        };
        let mut model = job.model.as_str();
        match &line.outcome {
            Outcome::Success {
                status_code,
                body,
                usage,
                model: billed,
            } => {
                result.status_code = Some(*status_code);
                result.response = Some(Payload::Inline(body.clone()));
                result.usage = *usage;
                if let Some(m) = billed.as_deref() {
                    model = m;
                }
                if let Some(u) = usage {
                    if let Some(cost) = self.prices.cost(job.provider, model, u) {
                        result.batch_cost = Some(cost.batch);
                        result.realtime_cost = Some(cost.realtime);
                    }
                }
            }
            Outcome::Error { error, body, .. } => {
                result.status_code = error.status_code;
                result.error = Some(error.clone());
                result.response = body.clone().map(Payload::Inline);
            }
        }
        (result, model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn line(json: &str) -> Result<ResultLine, String> {
        parse_line(1, json.as_bytes())
    }

    #[test]
    fn body_meta_reads_what_a_full_parse_reads() {
        fn seen(m: &BodyMeta) -> String {
            let e = m.error.as_ref().map(|e| (&e.message, &e.kind, &e.code));
            format!("{:?} {:?} {e:?}", m.model, m.usage.as_ref().map(WireUsage::to_usage))
        }
        let usage = r#"{"prompt_tokens":12,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":1}}"#;
        for body in [
            format!(
                r#"{{"id":"x","model":"gpt-4o-mini","choices":[{{"message":{{"content":"a \"}}\" ] {{ b\\"}}}}],"usage":{usage}}}"#
            ),
            format!(r#" {{ "usage" : {usage} , "model" : "m" , "n" : [1, 2.5e3, true, null, {{"k": "}}"}}] }} "#),
            r#"{"error":{"message":"bad","type":"invalid_request_error","code":"invalid_value"}}"#.to_owned(),
            r#"{"model":7,"usage":{"prompt_tokens":1}}"#.to_owned(),
            r#"{"model":"a","model":"b"}"#.to_owned(),
            // backslash runs before a quote: odd escapes it, even does not
            r#"{"x":"a\\","model":"even","y":"b\\\"c\\\\","usage":{"prompt_tokens":2}}"#.to_owned(),
            r#"{"x":"\\\"model\":\"fake\"","model":"real"}"#.to_owned(),
            r#"{"usage":{"prompt_tokens":-1}}"#.to_owned(),
            r#"{"mod\u0065l":"escaped","usage":null}"#.to_owned(),
            r#"{"error":{"code":429},"usage":{"input_tokens":5,"output_tokens":2}}"#.to_owned(),
            r#"[1,2]"#.to_owned(),
            r#""text""#.to_owned(),
            "{}".to_owned(),
        ] {
            let full: BodyMeta = serde_json::from_str(&body).unwrap_or_default();
            assert_eq!(seen(&body_meta(&body)), seen(&full), "{body}");
        }
    }

    #[test]
    fn a_2xx_line_keeps_its_body_verbatim_and_reads_chat_usage() {
        let l = line(&format!(
            r#"{{"id":"b1","custom_id":"{KEY}","response":{{"status_code":200,"request_id":"r","body":{{"model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{{"prompt_tokens":12,"completion_tokens":5,"prompt_tokens_details":{{"cached_tokens":4}},"completion_tokens_details":{{"reasoning_tokens":2}}}}}}}},"error":null}}"#
        ))
        .unwrap();
        let Outcome::Success {
            status_code,
            body,
            usage,
            model,
        } = l.outcome
        else {
            panic!("expected success")
        };
        assert_eq!(status_code, 200);
        assert!(body.starts_with(r#"{"model":"gpt-4o-mini-2024-07-18","choices":[]"#));
        assert_eq!(
            usage.unwrap(),
            Usage {
                input_tokens: 12,
                cached_input_tokens: 4,
                output_tokens: 5,
                reasoning_tokens: 2
            }
        );
        assert_eq!(model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    }

    #[test]
    fn responses_api_usage_is_read_from_its_own_field_names() {
        let l = line(&format!(
            r#"{{"custom_id":"{KEY}","response":{{"status_code":200,"body":{{"usage":{{"input_tokens":7,"output_tokens":3,"input_tokens_details":{{"cached_tokens":1}},"output_tokens_details":{{"reasoning_tokens":2}}}}}}}}}}"#
        ))
        .unwrap();
        let Outcome::Success { usage, .. } = l.outcome else {
            panic!()
        };
        assert_eq!(
            usage.unwrap(),
            Usage {
                input_tokens: 7,
                cached_input_tokens: 1,
                output_tokens: 3,
                reasoning_tokens: 2
            }
        );
    }

    #[test]
    fn expired_and_server_errors_are_retryable_but_a_400_is_not() {
        let expired = line(&format!(
            r#"{{"custom_id":"{KEY}","response":null,"error":{{"code":"batch_expired","message":"late"}}}}"#
        ))
        .unwrap();
        assert!(
            matches!(expired.outcome, Outcome::Error { retryable: true, ref error, .. } if error.code == "batch_expired")
        );
        let e500 = line(&format!(
            r#"{{"custom_id":"{KEY}","response":{{"status_code":500,"body":{{"error":{{"message":"oops","type":"server_error"}}}}}},"error":null}}"#
        ))
        .unwrap();
        assert!(
            matches!(e500.outcome, Outcome::Error { retryable: true, ref error, .. } if error.status_code == Some(500) && error.code == "server_error")
        );
        let e400 = line(&format!(
            r#"{{"custom_id":"{KEY}","response":{{"status_code":400,"body":{{"error":{{"message":"bad","type":"invalid_request_error","code":"invalid_value"}}}}}},"error":null}}"#
        ))
        .unwrap();
        assert!(
            matches!(e400.outcome, Outcome::Error { retryable: false, ref error, .. } if error.code == "invalid_value" && error.message == "bad")
        );
    }

    #[test]
    fn an_over_long_line_is_known_by_the_custom_id_and_status_in_its_head() {
        let head = format!(
            r#"{{"id": "batch_req_1", "custom_id" : "{KEY}", "response": {{"status_code": 200, "body": {{"data": [0.1"#
        );
        let l = too_long_line(7, 40_000_000, head.as_bytes()).expect("known");
        assert_eq!((l.number, l.key.as_str()), (7, KEY));
        let Outcome::Error { error, retryable, .. } = l.outcome else {
            panic!("a failure")
        };
        assert_eq!(
            (error.code.as_str(), error.status_code, retryable),
            ("result_too_large", Some(200), false)
        );
        assert!(error.message.contains("40000000 bytes"), "{}", error.message);
        assert!(too_long_line(1, 1, b"{\"id\":\"x\",\"response\":{").is_none());
        assert!(too_long_line(1, 1, br#"{"custom_id":"someone-else"}"#).is_none());
    }

    #[test]
    fn lines_that_are_not_result_lines_are_refused_without_echoing_content() {
        for bad in [
            "not json",
            "{}",
            r#"{"custom_id":"someone-elses-id","response":{"status_code":200,"body":{}}}"#,
            &format!(r#"{{"custom_id":"{KEY}"}}"#),
            &format!(r#"{{"custom_id":"{KEY}","response":{{"status_code":"200"}}}}"#),
        ] {
            let err = line(bad).err().unwrap_or_else(|| panic!("{bad} should be refused"));
            assert!(!err.contains("someone-elses-id"), "{err}");
        }
    }

    #[test]
    fn a_line_that_is_not_utf8_is_refused_even_where_the_text_is_not_read() {
        let good =
            format!(r#"{{"id":"b1","custom_id":"{KEY}","response":{{"status_code":200,"body":{{"x":"caf\u00e9"}}}}}}"#);
        assert!(parse_line(1, good.as_bytes()).is_ok());
        for field in [r#""id":"b1""#, r#""x":"caf\u00e9""#] {
            let mut bytes = good.clone().into_bytes();
            let at = good.find(field).unwrap() + field.len() - 2;
            bytes[at] = 0xff;
            let err = parse_line(1, &bytes)
                .err()
                .unwrap_or_else(|| panic!("{field}: 0xff accepted"));
            assert!(err.contains("UTF-8"), "{err}");
        }
    }
}
