//! HTTP client for the OpenAI Files + Batch API and Azure OpenAI's variant.
//!
//! Resilience: connect and read timeouts; retries on 429, 5xx and transport
//! errors through the shared [`RetryPolicy`] (exponential backoff, full
//! jitter), honouring `retry-after-ms` / `Retry-After` up to a minute; a
//! bounded number of attempts ending in [`ProviderError::RetriesExhausted`]. Batch creation is never retried
//! blind: before each retry the client looks for the batch the lost attempt
//! may have created.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::OpenAiFormat;
use crate::config::{ApiKeySource, ProviderConfig};
use crate::ids::{ProviderBatchId, ProviderFileId};
use crate::job::ProviderKind;
use crate::provider::types::{ApiErrorBody, Batch, BatchPage, FileObject, FilePage, METADATA_JOB_ID};
use crate::provider::{BatchFormat, CreateBatch, Provider, ProviderError, UploadSource, UploadStats};
use crate::request::Endpoint;
use crate::retry::{GaveUp, RetryPolicy, Verdict};
use crate::store::{ByteStream, StoreError};

/// Longest wait batchq accepts from a `Retry-After` header.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct OpenAiClient {
    http: reqwest::Client,
    kind: ProviderKind,
    /// OpenAI: the `/v1` base. Azure: `{endpoint}/openai`.
    base: String,
    api_version: Option<String>,
    completion_window: String,
    /// Retries of 429, 5xx and transport errors (the shared policy).
    retry: RetryPolicy,
    /// How long the provider's listings may lag its creates: after a create
    /// whose answer was lost, the batch is looked for this long before a
    /// second create.
    list_lag: Duration,
    /// Every wait before a retry, when recording is on (tests).
    waits: Option<Arc<std::sync::Mutex<Vec<Duration>>>>,
}

impl std::fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("kind", &self.kind)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Reads the provider key: from the environment, or once from Secrets
/// Manager (a plain string, or JSON with `OPENAI_API_KEY` / `api_key`).
pub async fn resolve_api_key(cfg: &ProviderConfig, sdk: &aws_config::SdkConfig) -> Result<String, ProviderError> {
    match &cfg.api_key {
        ApiKeySource::Literal(k) => Ok(k.clone()),
        ApiKeySource::None => Err(ProviderError::Key(
            "no provider key configured: set OPENAI_API_KEY or BATCHQ_OPENAI_API_KEY_SECRET_ARN".into(),
        )),
        ApiKeySource::SecretArn(arn) => {
            let client = aws_sdk_secretsmanager::Client::new(sdk);
            let out = client.get_secret_value().secret_id(arn).send().await.map_err(|e| {
                ProviderError::Key(format!(
                    "reading secret {arn}: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(e)
                ))
            })?;
            let raw = out
                .secret_string()
                .ok_or_else(|| ProviderError::Key(format!("secret {arn} has no string value")))?;
            parse_secret(raw).ok_or_else(|| ProviderError::Key(format!("secret {arn} holds no usable key")))
        }
    }
}

fn parse_secret(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(raw).ok()?;
        ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "api_key", "apiKey", "key"]
            .iter()
            .find_map(|k| v.get(*k).and_then(|x| x.as_str()))
            .map(str::to_owned)
            .filter(|k| !k.is_empty())
    } else if raw.is_empty() {
        None
    } else {
        Some(raw.to_owned())
    }
}

impl OpenAiClient {
    /// Builds a client for `cfg` with an already-resolved key.
    pub fn new(cfg: &ProviderConfig, api_key: &str) -> Result<Self, ProviderError> {
        let mut headers = HeaderMap::new();
        let key_err = |_| ProviderError::Key("the key contains characters not allowed in a header".into());
        match cfg.kind {
            ProviderKind::OpenAi | ProviderKind::Groq | ProviderKind::Together => {
                let mut v = HeaderValue::from_str(&format!("Bearer {api_key}")).map_err(key_err)?;
                v.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, v);
                if let Some(org) = &cfg.organization {
                    if let Ok(v) = HeaderValue::from_str(org) {
                        headers.insert("OpenAI-Organization", v);
                    }
                }
                if let Some(project) = &cfg.project {
                    if let Ok(v) = HeaderValue::from_str(project) {
                        headers.insert("OpenAI-Project", v);
                    }
                }
            }
            ProviderKind::AzureOpenAi => {
                let mut v = HeaderValue::from_str(api_key).map_err(key_err)?;
                v.set_sensitive(true);
                headers.insert("api-key", v);
            }
            ProviderKind::Anthropic => {
                return Err(ProviderError::Key(
                    "the OpenAI client does not speak Anthropic's API".into(),
                ))
            }
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            .user_agent(concat!("batchq/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Transport {
                op: "client",
                message: e.to_string(),
            })?;
        let (base, api_version) = match cfg.kind {
            ProviderKind::AzureOpenAi => (
                format!("{}/openai", cfg.base_url.trim_end_matches('/')),
                Some(cfg.api_version.clone()),
            ),
            _ => (cfg.base_url.trim_end_matches('/').to_owned(), None),
        };
        Ok(Self {
            http,
            kind: cfg.kind,
            base,
            api_version,
            completion_window: cfg.completion_window.clone(),
            retry: RetryPolicy::new(cfg.max_retries, Duration::from_millis(500), Duration::from_secs(30))
                .with_max_asked_wait(MAX_RETRY_AFTER),
            list_lag: cfg.list_lag,
            waits: None,
        })
    }

    /// Resolves the key (Secrets Manager if configured) and builds the client.
    pub async fn from_config(cfg: &ProviderConfig, sdk: &aws_config::SdkConfig) -> Result<Self, ProviderError> {
        let key = resolve_api_key(cfg, sdk).await?;
        Self::new(cfg, &key)
    }

    /// Changes the backoff (tests use milliseconds).
    pub fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.retry = RetryPolicy::new(self.retry.max_retries, base, cap).with_max_asked_wait(MAX_RETRY_AFTER);
        self
    }

    /// Records every wait before a retry into `log` (tests check that
    /// `Retry-After` was honoured without timing anything).
    pub fn record_waits(mut self, log: Arc<std::sync::Mutex<Vec<Duration>>>) -> Self {
        self.waits = Some(log);
        self
    }

    async fn pause(&self, d: Duration) {
        if let Some(log) = &self.waits {
            log.lock().expect("wait log").push(d);
        }
        tokio::time::sleep(d).await;
    }

    fn url(&self, path: &str) -> String {
        match &self.api_version {
            None => format!("{}{path}", self.base),
            Some(v) => {
                let sep = if path.contains('?') { '&' } else { '?' };
                format!("{}{path}{sep}api-version={v}", self.base)
            }
        }
    }

    /// The wait before a retry: logged, recorded when recording is on,
    /// then slept (by [`RetryPolicy::run`]).
    fn wait_before_retry(
        &self,
        op: &'static str,
        attempt: u32,
        wait: Duration,
        e: &ProviderError,
    ) -> impl std::future::Future<Output = ()> + '_ {
        tracing::warn!(op, attempt, wait_ms = wait.as_millis() as u64, error = %e, "provider call failed; retrying");
        self.pause(wait)
    }

    /// Sends one request and classifies the answer. No retries.
    async fn send_once(&self, op: &'static str, req: RequestBuilder) -> Result<Response, ProviderError> {
        let resp = req.send().await.map_err(|e| ProviderError::Transport {
            op,
            message: describe_transport(&e),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = retry_after(resp.headers());
        let body = resp.text().await.unwrap_or_default();
        let parsed: ApiErrorBody = serde_json::from_str(&body).unwrap_or_default();
        let err = parsed.error.unwrap_or_default();
        let message = err
            .message
            .unwrap_or_else(|| body.chars().take(300).collect::<String>());
        let code = err.code.map(|c| match c {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        });
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ProviderError::Unauthorized { op, message },
            StatusCode::NOT_FOUND => ProviderError::NotFound {
                op,
                what: "resource",
                id: message,
            },
            s if s == StatusCode::TOO_MANY_REQUESTS || s == StatusCode::REQUEST_TIMEOUT || s.is_server_error() => {
                ProviderError::Retryable {
                    op,
                    status: s.as_u16(),
                    message,
                    retry_after,
                }
            }
            s => ProviderError::Api {
                op,
                status: s.as_u16(),
                code,
                message,
            },
        })
    }

    /// Sends with retries; `build` makes a fresh request for every attempt.
    async fn send(&self, op: &'static str, build: impl Fn() -> RequestBuilder) -> Result<Response, ProviderError> {
        self.retry
            .run(
                |_| self.send_once(op, build()),
                judge,
                |n, wait, e| self.wait_before_retry(op, n, wait, e),
            )
            .await
            .map_err(|g| give_up(op, g))
    }

    async fn json<T: DeserializeOwned>(op: &'static str, resp: Response) -> Result<T, ProviderError> {
        let bytes = resp.bytes().await.map_err(|e| ProviderError::Transport {
            op,
            message: describe_transport(&e),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ProviderError::Decode {
            op,
            message: e.to_string(),
        })
    }

    fn not_found(e: ProviderError, what: &'static str, id: &str) -> ProviderError {
        match e {
            ProviderError::NotFound { op, .. } => ProviderError::NotFound {
                op,
                what,
                id: id.to_owned(),
            },
            other => other,
        }
    }

    async fn upload_once(
        &self,
        source: &dyn UploadSource,
        stats: &Arc<[AtomicU64; 3]>,
    ) -> Result<FileObject, ProviderError> {
        let (len, stream) = source.open().await?;
        let counters = stats.clone();
        let counted = stream.inspect_ok(move |chunk| {
            let n = chunk.len() as u64;
            counters[0].fetch_add(n, Ordering::Relaxed);
            counters[1].fetch_add(1, Ordering::Relaxed);
            counters[2].fetch_max(n, Ordering::Relaxed);
        });
        let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(counted), len)
            .file_name(source.filename().to_owned())
            .mime_str("application/jsonl")
            .map_err(|e| ProviderError::Decode {
                op: "upload file",
                message: e.to_string(),
            })?;
        let form = reqwest::multipart::Form::new()
            .text("purpose", "batch")
            .part("file", part);
        let resp = self
            .send_once("upload file", self.http.post(self.url("/files")).multipart(form))
            .await?;
        Self::json("upload file", resp).await
    }
}

impl OpenAiClient {
    /// After a create whose answer was lost: lists the batches again with
    /// backoff (1 s, 2 s, 4 s, …) until the listing's lag has passed, and
    /// answers the job's batch if it shows up.
    async fn confirm_created(&self, req: &CreateBatch) -> Result<Option<Batch>, ProviderError> {
        let mut waited = Duration::ZERO;
        let mut wait = Duration::from_secs(1).min(self.list_lag);
        loop {
            if let Some(b) = self.find_batch(req).await? {
                return Ok(Some(b));
            }
            if waited >= self.list_lag {
                return Ok(None);
            }
            let step = wait.min(self.list_lag - waited);
            tracing::info!(job_id = %req.job_id, wait_ms = step.as_millis() as u64, "the batch create's answer was lost; looking for the batch again");
            self.pause(step).await;
            waited += step;
            wait = wait.saturating_mul(2);
        }
    }
}

/// How the retry policy treats a provider error: 429, 5xx and transport
/// errors are retried (after the wait the provider asked for, if any).
pub(crate) fn judge(e: &ProviderError) -> Verdict {
    match e {
        ProviderError::Retryable { retry_after, .. } => Verdict::Retry { asked: *retry_after },
        e if e.is_retryable() => Verdict::Retry { asked: None },
        _ => Verdict::Fatal,
    }
}

/// The error of a run that did not succeed: the typed give-up once every
/// allowed attempt failed, else the fatal error itself.
pub(crate) fn give_up(op: &'static str, g: GaveUp<ProviderError>) -> ProviderError {
    if g.exhausted {
        ProviderError::RetriesExhausted {
            op,
            attempts: g.attempts,
            last: Box::new(g.last),
        }
    } else {
        g.last
    }
}

/// `retry-after-ms` (milliseconds, OpenAI's) wins over `Retry-After` (seconds).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_micros((ms * 1000.0) as u64));
        }
    }
    get("retry-after")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_millis((s * 1000.0) as u64))
}

pub(crate) fn describe_transport(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    // reqwest's Display includes the URL, never headers.
    let mut msg = format!("{kind}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

#[async_trait]
impl Provider for OpenAiClient {
    fn kind(&self) -> ProviderKind {
        self.kind
    }

    fn format(&self) -> &dyn BatchFormat {
        &OpenAiFormat
    }

    fn endpoint_url(&self, endpoint: Endpoint) -> &'static str {
        match self.kind {
            // Azure OpenAI's batch API names endpoints without the /v1 prefix.
            ProviderKind::AzureOpenAi => &endpoint.as_str()[3..],
            _ => endpoint.as_str(),
        }
    }

    async fn upload_file(&self, source: &dyn UploadSource) -> Result<(FileObject, UploadStats), ProviderError> {
        let op = "upload file";
        // A lost upload response can leave an unused file at the provider;
        // it costs storage, not money, and expires.
        self.retry
            .run(
                |n| async move {
                    let counters = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
                    let file = self.upload_once(source, &counters).await?;
                    let stats = UploadStats {
                        bytes_sent: counters[0].load(Ordering::Relaxed),
                        chunks: counters[1].load(Ordering::Relaxed),
                        max_chunk: counters[2].load(Ordering::Relaxed),
                        attempts: n + 1,
                    };
                    Ok((file, stats))
                },
                judge,
                |n, wait, e| self.wait_before_retry(op, n, wait, e),
            )
            .await
            .map_err(|g| give_up(op, g))
    }

    async fn file_content(&self, id: &ProviderFileId) -> Result<ByteStream, ProviderError> {
        let url = self.url(&format!("/files/{id}/content"));
        let resp = self
            .send("download file", || self.http.get(&url))
            .await
            .map_err(|e| Self::not_found(e, "file", id.as_str()))?;
        Ok(resp
            .bytes_stream()
            .map_err(|e| StoreError::backend("provider file content", describe_transport(&e)))
            .boxed())
    }

    async fn delete_file(&self, id: &ProviderFileId) -> Result<(), ProviderError> {
        let url = self.url(&format!("/files/{id}"));
        self.send("delete file", || self.http.delete(&url))
            .await
            .map_err(|e| Self::not_found(e, "file", id.as_str()))?;
        Ok(())
    }

    async fn create_batch(&self, req: &CreateBatch, check_first: bool) -> Result<Batch, ProviderError> {
        let op = "create batch";
        let body = json!({
            "input_file_id": req.input_file_id.as_str(),
            "endpoint": self.endpoint_url(req.endpoint),
            "completion_window": self.completion_window,
            "metadata": { METADATA_JOB_ID: req.job_id.as_str() },
        });
        let url = self.url("/batches");
        let (url, body) = (&url, &body);
        let attempt = |n: u32| async move {
            if check_first || n > 0 {
                if let Some(existing) = self.find_batch(req).await? {
                    tracing::info!(job_id = %req.job_id, batch_id = %existing.id, "found the batch an earlier attempt created");
                    return Ok(existing);
                }
            }
            // A body cut off after the status line is as lost as a dropped
            // connection: the batch may exist, so it takes the retry path.
            let result = match self
                .send_once(op, self.http.request(Method::POST, url).json(body))
                .await
            {
                Ok(resp) => Self::json::<Batch>(op, resp).await,
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.is_retryable() => {
                    // A 429 is refused before any work; a 5xx, a timeout or a
                    // cut answer may come after the batch was made, and the
                    // listing may not show it yet: look for it until the
                    // listing has caught up before creating again.
                    let ambiguous = !matches!(e, ProviderError::Retryable { status: 429, .. });
                    if ambiguous {
                        if let Some(existing) = self.confirm_created(req).await? {
                            tracing::info!(job_id = %req.job_id, batch_id = %existing.id, "found the batch a lost create made");
                            return Ok(existing);
                        }
                    }
                    Err(e)
                }
                other => other,
            }
        };
        match self
            .retry
            .run(attempt, judge, |n, wait, e| self.wait_before_retry(op, n, wait, e))
            .await
        {
            Ok(batch) => Ok(batch),
            // One last look: the final attempt may have succeeded.
            Err(g) if g.exhausted => match self.find_batch(req).await? {
                Some(existing) => Ok(existing),
                None => Err(give_up(op, g)),
            },
            Err(g) => Err(g.last),
        }
    }

    async fn retrieve_batch(&self, id: &ProviderBatchId) -> Result<Batch, ProviderError> {
        let url = self.url(&format!("/batches/{id}"));
        let resp = self
            .send("retrieve batch", || self.http.get(&url))
            .await
            .map_err(|e| Self::not_found(e, "batch", id.as_str()))?;
        Self::json("retrieve batch", resp).await
    }

    async fn cancel_batch(&self, id: &ProviderBatchId) -> Result<Batch, ProviderError> {
        let url = self.url(&format!("/batches/{id}/cancel"));
        let resp = self
            .send("cancel batch", || self.http.post(&url))
            .await
            .map_err(|e| Self::not_found(e, "batch", id.as_str()))?;
        Self::json("cancel batch", resp).await
    }

    async fn list_files(&self, after: Option<&str>, limit: u32) -> Result<FilePage, ProviderError> {
        // Azure's list takes `purpose` only (and answers all files at once).
        let mut path = match self.kind {
            ProviderKind::AzureOpenAi => "/files?purpose=batch".to_owned(),
            _ => format!("/files?purpose=batch&order=desc&limit={}", limit.clamp(1, 10_000)),
        };
        if let (Some(a), ProviderKind::OpenAi) = (after, self.kind) {
            path.push_str(&format!("&after={a}"));
        }
        let url = self.url(&path);
        let resp = self.send("list files", || self.http.get(&url)).await?;
        Self::json("list files", resp).await
    }

    async fn list_batches(&self, after: Option<&str>, limit: u32) -> Result<BatchPage, ProviderError> {
        let mut path = format!("/batches?limit={}", limit.clamp(1, 100));
        if let Some(a) = after {
            path.push_str(&format!("&after={a}"));
        }
        let url = self.url(&path);
        let resp = self.send("list batches", || self.http.get(&url)).await?;
        Self::json("list batches", resp).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_ms_wins_and_seconds_are_understood() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("150.5"));
        assert_eq!(retry_after(&h), Some(Duration::from_micros(150_500)));
        let mut bad = HeaderMap::new();
        bad.insert("retry-after", HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&bad), None);
    }

    #[test]
    fn secrets_may_be_plain_or_json() {
        assert_eq!(parse_secret("sk-abc\n").as_deref(), Some("sk-abc"));
        assert_eq!(parse_secret(r#"{"OPENAI_API_KEY":"sk-1"}"#).as_deref(), Some("sk-1"));
        assert_eq!(parse_secret(r#"{"api_key":"sk-2"}"#).as_deref(), Some("sk-2"));
        assert_eq!(parse_secret(r#"{"other":"x"}"#), None);
        assert_eq!(parse_secret("  "), None);
    }

    #[test]
    fn azure_urls_carry_the_api_version_and_short_endpoints() {
        let cfg = crate::config::Config::from_lookup(&|k| match k {
            "BATCHQ_PROVIDER" => Some("azure_openai".into()),
            "AZURE_OPENAI_ENDPOINT" => Some("https://res.openai.azure.com/".into()),
            _ => None,
        })
        .unwrap();
        let c = OpenAiClient::new(&cfg.provider, "k").unwrap();
        assert_eq!(
            c.url("/batches?limit=5"),
            "https://res.openai.azure.com/openai/batches?limit=5&api-version=2024-10-21"
        );
        assert_eq!(c.endpoint_url(Endpoint::ChatCompletions), "/chat/completions");
    }

    #[test]
    fn backoff_grows_with_jitter_and_respects_the_cap_and_retry_after() {
        let cfg = crate::config::Config::from_lookup(&|_| None).unwrap();
        let c = OpenAiClient::new(&cfg.provider, "k")
            .unwrap()
            .with_backoff(Duration::from_millis(100), Duration::from_millis(800));
        assert_eq!(c.retry.max_retries, cfg.provider.max_retries);
        for attempt in 0..10 {
            let d = c.retry.delay(attempt, None);
            let bound = Duration::from_millis((100u64 << attempt.min(16)).min(800));
            assert!(d <= bound, "attempt {attempt}: {d:?} > {bound:?}");
        }
        // Retry-After is honoured up to its own cap, past the backoff's.
        assert_eq!(c.retry.delay(0, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(c.retry.delay(0, Some(Duration::from_secs(600))), MAX_RETRY_AFTER);
    }

    #[tokio::test]
    async fn retryable_failures_end_in_retries_exhausted_after_the_allowed_attempts() {
        let cfg = crate::config::Config::from_lookup(&|_| None).unwrap();
        let c = OpenAiClient::new(&cfg.provider, "k").unwrap();
        let policy = RetryPolicy::new(2, Duration::ZERO, Duration::ZERO);
        let out: Result<(), _> = policy
            .run(
                |_| async {
                    Err(ProviderError::Retryable {
                        op: "list batches",
                        status: 503,
                        message: "busy".into(),
                        retry_after: None,
                    })
                },
                judge,
                |n, wait, e| c.wait_before_retry("list batches", n, wait, e),
            )
            .await;
        let err = give_up("list batches", out.unwrap_err());
        assert!(
            matches!(err, ProviderError::RetriesExhausted { attempts: 3, .. }),
            "{err}"
        );
        let fatal = give_up(
            "x",
            GaveUp {
                attempts: 1,
                last: ProviderError::Unauthorized {
                    op: "x",
                    message: "no".into(),
                },
                exhausted: false,
            },
        );
        assert!(matches!(fatal, ProviderError::Unauthorized { .. }));
    }
}
