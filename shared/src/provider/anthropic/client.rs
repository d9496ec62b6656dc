//! HTTP client for Anthropic's Message Batches API, fitted onto the
//! pipeline's file-and-batch protocol:
//! - `upload_file` sends nothing: Anthropic has no files; it answers the
//!   synthetic file `inline:<filename>`;
//! - `create_batch` streams the staged input object from batchq's object
//!   store as the create body `{"requests":[line,line,…]}` (the lines'
//!   newlines become the commas; never held in memory);
//! - a batch's results are the synthetic file `results:<batch id>`,
//!   streamed from its results URL; deleting it deletes the batch.
//!
//! Resilience is the OpenAI client's: timeouts; 429, 5xx (529 overloaded
//! included) and transport errors retried through the shared
//! [`RetryPolicy`], honouring `retry-after` (or, without one, the reset time
//! of an exhausted `anthropic-ratelimit-*` limit) up to a minute. Anthropic
//! takes no metadata and no idempotency key on a create, so a lost answer
//! is recovered by [`Provider::find_batch`]: the oldest batch created since
//! the job's `not_before` with the job's line count that no other job
//! recorded.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::StatusCode;

use super::wire::{ErrorBody, MessageBatch, MessageBatchPage, INLINE_PREFIX, RESULTS_PREFIX};
use super::AnthropicFormat;
use crate::config::ProviderConfig;
use crate::ids::{ProviderBatchId, ProviderFileId};
use crate::job::ProviderKind;
use crate::provider::http::{byte_stream, not_found, retry_after, secret_header, ErrorStyle, Transport};
use crate::provider::openai::client::resolve_api_key;
use crate::provider::types::{Batch, BatchPage, FileObject, FilePage};
use crate::provider::{BatchFormat, CreateBatch, Provider, ProviderError, UploadSource, UploadStats};
use crate::request::Endpoint;
use crate::store::{ByteStream, ObjectStore, StoreError};

/// How Anthropic's failed answers read: `{"error": {"type", "message"}}`;
/// a retryable one waits its `retry-after` or, without one, the reset of
/// an exhausted `anthropic-ratelimit-*` limit; 429 and 529 (overloaded)
/// refuse before any work.
const ANTHROPIC_ERRORS: ErrorStyle = ErrorStyle {
    message: error_message,
    asked_wait,
    refused: |status| matches!(status, 429 | 529),
};

/// Batches per page when looking for a lost create's batch.
const FIND_PAGE: u32 = 100;
/// Pages read at most when looking for it (newest first, stopping at `not_before`).
const FIND_MAX_PAGES: usize = 50;

#[derive(Clone)]
pub struct AnthropicClient {
    t: Transport,
    /// The `/v1` base, e.g. `https://api.anthropic.com/v1`.
    base: String,
    objects: Arc<dyn ObjectStore>,
    /// How long the listing may lag a create (see `Transport::create_once`).
    list_lag: Duration,
}

impl std::fmt::Debug for AnthropicClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl AnthropicClient {
    /// Builds a client for `cfg` with an already-resolved key; the staged
    /// input objects are read from `objects`.
    pub fn new(cfg: &ProviderConfig, api_key: &str, objects: Arc<dyn ObjectStore>) -> Result<Self, ProviderError> {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", secret_header(api_key)?);
        let version = HeaderValue::from_str(&cfg.api_version).map_err(|_| ProviderError::Decode {
            op: "client",
            message: "the API version is not a valid header value".into(),
        })?;
        headers.insert("anthropic-version", version);
        Ok(Self {
            t: Transport::for_config(cfg, headers)?.with_errors(ANTHROPIC_ERRORS),
            base: cfg.base_url.trim_end_matches('/').to_owned(),
            objects,
            list_lag: cfg.list_lag,
        })
    }

    /// Resolves the key (Secrets Manager if configured) and builds the client.
    pub async fn from_config(
        cfg: &ProviderConfig,
        sdk: &aws_config::SdkConfig,
        objects: Arc<dyn ObjectStore>,
    ) -> Result<Self, ProviderError> {
        let key = resolve_api_key(cfg, sdk).await?;
        Self::new(cfg, &key, objects)
    }

    crate::provider::http::transport_settings!();

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn retrieve_wire(&self, id: &ProviderBatchId) -> Result<MessageBatch, ProviderError> {
        let url = self.url(&format!("/messages/batches/{id}"));
        let resp = self
            .t
            .send("retrieve batch", || self.t.http.get(&url))
            .await
            .map_err(|e| not_found(e, "batch", id.as_str()))?;
        Transport::json("retrieve batch", resp).await
    }

    /// The batch a `results:<id>` file names.
    fn results_batch(id: &ProviderFileId) -> Option<ProviderBatchId> {
        id.as_str()
            .strip_prefix(RESULTS_PREFIX)
            .filter(|b| !b.is_empty())
            .map(ProviderBatchId::new)
    }

    /// One attempt at the create: the staged object, reopened, streamed as the body.
    async fn post_create(&self, op: &'static str, req: &CreateBatch) -> Result<Batch, ProviderError> {
        let (_, stream) = self.objects.open(&req.input_key).await?;
        let body = reqwest::Body::wrap_stream(requests_body(stream));
        let resp = self
            .t
            .send_once(
                op,
                self.t
                    .http
                    .post(self.url("/messages/batches"))
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body),
            )
            .await?;
        Ok(Transport::json::<MessageBatch>(op, resp).await?.to_batch())
    }
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The message and type of an error body, else the body's first 300 characters.
fn error_message(body: &str) -> (String, Option<String>) {
    let err = serde_json::from_str::<ErrorBody>(body)
        .unwrap_or_default()
        .error
        .unwrap_or_default();
    let message = err
        .message
        .unwrap_or_else(|| body.chars().take(300).collect::<String>());
    (message, err.kind)
}

/// The wait a retryable answer asks for (529, overloaded, is a server
/// error too); a 429's limits are logged.
fn asked_wait(op: &'static str, status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    let asked = retry_after(headers).or_else(|| ratelimit_reset_wait(headers, time_now()));
    if status == StatusCode::TOO_MANY_REQUESTS {
        log_ratelimit(op, headers);
    }
    asked
}

/// The limits Anthropic reports in `anthropic-ratelimit-<name>-{remaining,reset}`.
const RATE_LIMITS: [&str; 4] = ["requests", "tokens", "input-tokens", "output-tokens"];

/// Without a `retry-after`: the wait until the latest reset of a limit
/// whose remaining count is 0 (`now` in unix seconds).
fn ratelimit_reset_wait(headers: &HeaderMap, now: i64) -> Option<Duration> {
    let get = |name: String| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    RATE_LIMITS
        .iter()
        .filter(|l| get(format!("anthropic-ratelimit-{l}-remaining")) == Some("0"))
        .filter_map(|l| super::wire::unix_seconds(get(format!("anthropic-ratelimit-{l}-reset"))))
        .map(|reset| Duration::from_secs(reset.saturating_sub(now).max(0) as u64))
        .max()
}

/// Logs which limits a 429 ran into (counts only).
fn log_ratelimit(op: &'static str, headers: &HeaderMap) {
    let get = |name: String| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_owned()
    };
    for l in RATE_LIMITS {
        let remaining = get(format!("anthropic-ratelimit-{l}-remaining"));
        if remaining != "?" {
            tracing::warn!(
                op,
                limit = l,
                remaining = %remaining,
                of = %get(format!("anthropic-ratelimit-{l}-limit")),
                reset = %get(format!("anthropic-ratelimit-{l}-reset")),
                "rate limited"
            );
        }
    }
}

/// The create body around a stream of staged input lines: `{"requests":[`,
/// the lines with each newline turned into the comma before the next line
/// (blank lines and a missing or extra final newline are harmless), `]}`.
/// Each chunk is rewritten as it passes; nothing is held back but a flag.
pub fn requests_body(lines: ByteStream) -> impl Stream<Item = Result<Bytes, StoreError>> + Send + 'static {
    let head = futures::stream::once(async { Ok(Bytes::from_static(b"{\"requests\":[")) });
    let tail = futures::stream::once(async { Ok(Bytes::from_static(b"]}")) });
    // (a line was written, a newline follows it unanswered)
    let mut state = (false, false);
    let body = lines.map_ok(move |chunk| {
        let (started, pending) = &mut state;
        let mut out = BytesMut::with_capacity(chunk.len() + 1);
        for (i, part) in chunk.split(|b| *b == b'\n').enumerate() {
            if i > 0 && *started {
                *pending = true;
            }
            if !part.is_empty() {
                if *pending {
                    out.extend_from_slice(b",");
                    *pending = false;
                }
                out.extend_from_slice(part);
                *started = true;
            }
        }
        out.freeze()
    });
    head.chain(body).chain(tail)
}

#[async_trait]
impl Provider for AnthropicClient {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Anthropic
    }

    /// A message batch takes no metadata: a lost create's batch is told
    /// from other jobs' by its count and time (see [`Provider::find_batch`]).
    fn tags_batches(&self) -> bool {
        false
    }

    fn format(&self) -> &dyn BatchFormat {
        &AnthropicFormat
    }

    fn endpoint_url(&self, endpoint: Endpoint) -> &'static str {
        endpoint.as_str()
    }

    /// Anthropic has no files: the staged object is sent at create. Nothing
    /// is sent here; the answer is a synthetic file of the source's size.
    async fn upload_file(&self, source: &dyn UploadSource) -> Result<(FileObject, UploadStats), ProviderError> {
        let (bytes, _) = source.open().await?;
        let file = FileObject {
            id: format!("{INLINE_PREFIX}{}", source.filename()),
            bytes: Some(bytes),
            created_at: Some(time_now()),
            filename: Some(source.filename().to_owned()),
            purpose: Some("batch".into()),
            status: Some("processed".into()),
            expires_at: None,
        };
        Ok((file, UploadStats::default()))
    }

    async fn file_content(&self, id: &ProviderFileId) -> Result<ByteStream, ProviderError> {
        let op = "download results";
        let Some(batch) = Self::results_batch(id) else {
            return Err(ProviderError::NotFound {
                op,
                what: "file",
                id: id.to_string(),
            });
        };
        // The results URL is the batch's; one outside the configured API is
        // not sent the key: the documented path is asked instead.
        let results_url = self.retrieve_wire(&batch).await?.results_url;
        let url = match results_url {
            Some(u) if u.starts_with(&format!("{}/", self.base)) => u,
            Some(_) => {
                tracing::warn!(batch_id = %batch, "the results URL is not under the configured API; using the documented path");
                self.url(&format!("/messages/batches/{batch}/results"))
            }
            None => {
                return Err(ProviderError::NotFound {
                    op,
                    what: "results of unfinished batch",
                    id: batch.to_string(),
                })
            }
        };
        let resp = self
            .t
            .send(op, || self.t.http.get(&url).header("accept", "application/binary"))
            .await
            .map_err(|e| not_found(e, "file", id.as_str()))?;
        Ok(byte_stream(resp, "provider results"))
    }

    /// `inline:…` was never sent: nothing to delete. `results:<id>` deletes
    /// the batch (only an ended batch can be deleted).
    async fn delete_file(&self, id: &ProviderFileId) -> Result<(), ProviderError> {
        if id.as_str().starts_with(INLINE_PREFIX) {
            return Ok(());
        }
        let Some(batch) = Self::results_batch(id) else {
            return Err(ProviderError::NotFound {
                op: "delete batch",
                what: "file",
                id: id.to_string(),
            });
        };
        let url = self.url(&format!("/messages/batches/{batch}"));
        self.t.delete("delete batch", &url, "batch", batch.as_str()).await
    }

    async fn create_batch(&self, req: &CreateBatch, check_first: bool) -> Result<Batch, ProviderError> {
        let op = "create batch";
        self.t
            .create_once(op, self, req, check_first, self.list_lag, || self.post_create(op, req))
            .await
    }

    async fn retrieve_batch(&self, id: &ProviderBatchId) -> Result<Batch, ProviderError> {
        Ok(self.retrieve_wire(id).await?.to_batch())
    }

    async fn cancel_batch(&self, id: &ProviderBatchId) -> Result<Batch, ProviderError> {
        let url = self.url(&format!("/messages/batches/{id}/cancel"));
        let resp = self
            .t
            .send("cancel batch", || self.t.http.post(&url))
            .await
            .map_err(|e| not_found(e, "batch", id.as_str()))?;
        Ok(Transport::json::<MessageBatch>("cancel batch", resp).await?.to_batch())
    }

    async fn list_batches(&self, after: Option<&str>, limit: u32) -> Result<BatchPage, ProviderError> {
        let mut path = format!("/messages/batches?limit={}", limit.clamp(1, 1000));
        if let Some(a) = after {
            path.push_str(&format!("&after_id={a}"));
        }
        let url = self.url(&path);
        let resp = self.t.send("list batches", || self.t.http.get(&url)).await?;
        Ok(Transport::json::<MessageBatchPage>("list batches", resp)
            .await?
            .to_page())
    }

    /// Anthropic has no files.
    async fn list_files(&self, _after: Option<&str>, _limit: u32) -> Result<FilePage, ProviderError> {
        Ok(FilePage {
            data: Vec::new(),
            has_more: false,
        })
    }

    /// A batch carries nothing of its job: the job's batch is the OLDEST one
    /// created at or after `not_before` whose counts sum to the job's line
    /// count and that no other job recorded (`taken`).
    async fn find_batch(&self, req: &CreateBatch) -> Result<Option<Batch>, ProviderError> {
        let mut after: Option<String> = None;
        let mut matches: Vec<Batch> = Vec::new();
        for _ in 0..FIND_MAX_PAGES {
            let page = self.list_batches(after.as_deref(), FIND_PAGE).await?;
            let mut past = false;
            for b in &page.data {
                match b.created_at {
                    Some(t) if t < req.not_before => {
                        past = true;
                        break;
                    }
                    None => continue,
                    Some(_) => {}
                }
                if b.request_counts.total == req.lines && !req.taken.iter().any(|t| t.as_str() == b.id) {
                    matches.push(b.clone());
                }
            }
            match page.data.last() {
                Some(last) if page.has_more && !past => after = Some(last.id.clone()),
                _ => break,
            }
        }
        if matches.len() > 1 {
            tracing::warn!(
                job_id = %req.job_id,
                candidates = matches.len(),
                lines = req.lines,
                "several batches could be this job's; taking the oldest"
            );
        }
        // Newest first: the last match is the oldest.
        Ok(matches.pop())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(chunks: &[&str]) -> String {
        let owned: Vec<Result<Bytes, StoreError>> = chunks
            .iter()
            .map(|c| Ok(Bytes::copy_from_slice(c.as_bytes())))
            .collect();
        let out: Vec<Bytes> = requests_body(futures::stream::iter(owned).boxed())
            .try_collect()
            .await
            .unwrap();
        String::from_utf8(out.concat()).unwrap()
    }

    #[tokio::test]
    async fn the_create_body_joins_lines_across_chunks_with_or_without_a_final_newline() {
        let want = r#"{"requests":[{"a":1},{"b":2},{"c":3}]}"#;
        for chunks in [
            vec!["{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n"],
            vec!["{\"a\":1}\n{\"b\":2}\n{\"c\":3}"],
            vec!["{\"a\":1}", "\n", "{\"b\":2}\n{\"c\"", ":3}\n", "\n"],
            vec!["\n{\"a\":1}\n\n{\"b\":2}\n", "{\"c\":3}\n\n"],
        ] {
            let body = body_of(&chunks).await;
            assert_eq!(body, want, "{chunks:?}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["requests"].as_array().unwrap().len(), 3);
        }
        assert_eq!(body_of(&[]).await, r#"{"requests":[]}"#);
    }

    #[test]
    fn an_exhausted_rate_limit_waits_until_its_reset() {
        let mut h = HeaderMap::new();
        h.insert("anthropic-ratelimit-requests-remaining", HeaderValue::from_static("0"));
        h.insert(
            "anthropic-ratelimit-requests-reset",
            HeaderValue::from_static("2024-09-24T18:00:10Z"),
        );
        h.insert("anthropic-ratelimit-tokens-remaining", HeaderValue::from_static("500"));
        h.insert(
            "anthropic-ratelimit-tokens-reset",
            HeaderValue::from_static("2024-09-24T18:05:00Z"),
        );
        let now = 1_727_200_800; // 2024-09-24T18:00:00Z
        assert_eq!(ratelimit_reset_wait(&h, now), Some(Duration::from_secs(10)));
        assert_eq!(ratelimit_reset_wait(&h, now + 60), Some(Duration::ZERO));
        assert_eq!(ratelimit_reset_wait(&HeaderMap::new(), now), None);
    }

    #[test]
    fn synthetic_file_ids_name_their_batch() {
        assert_eq!(
            AnthropicClient::results_batch(&ProviderFileId::new("results:msgbatch_1")),
            Some(ProviderBatchId::new("msgbatch_1"))
        );
        assert_eq!(AnthropicClient::results_batch(&ProviderFileId::new("results:")), None);
        assert_eq!(AnthropicClient::results_batch(&ProviderFileId::new("inline:x")), None);
    }
}
