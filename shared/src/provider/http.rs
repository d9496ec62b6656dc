//! The HTTP transport the provider clients share: one request sent and its
//! answer classified into [`ProviderError`], retries of 429, 5xx and
//! transport errors through the shared [`RetryPolicy`] (honouring
//! `retry-after-ms` / `Retry-After` up to a minute), JSON answers, and a
//! streamed multipart upload that reopens its source for every attempt.
//! What differs between providers (paths, bodies, wire objects) stays in
//! their clients.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::config::ProviderConfig;
use crate::ids::ProviderFileId;
use crate::job::ProviderKind;
use crate::provider::types::{ApiErrorBody, Batch};
use crate::provider::{supports_endpoint, CreateBatch, Provider, ProviderError, UploadSource, UploadStats};
use crate::request::Endpoint;
use crate::retry::{GaveUp, RetryPolicy, Verdict};
use crate::store::{ByteStream, StoreError};

/// Longest wait batchq accepts from a `Retry-After` header.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How a provider's failed answers read: what differs between the
/// OpenAI-shaped APIs and Anthropic's.
#[derive(Clone, Copy)]
pub(crate) struct ErrorStyle {
    /// The message and code of an error body.
    pub(crate) message: fn(&str) -> (String, Option<String>),
    /// The wait a retryable answer (429, 408, 5xx) asks for, from its headers.
    pub(crate) asked_wait: fn(&'static str, StatusCode, &HeaderMap) -> Option<Duration>,
    /// Retryable statuses refused before any work (a create answered so
    /// made no batch).
    pub(crate) refused: fn(u16) -> bool,
}

/// The OpenAI-shaped APIs' errors (OpenAI, Azure, Groq, Together).
pub(crate) const OPENAI_ERRORS: ErrorStyle = ErrorStyle {
    message: error_message,
    asked_wait: |_, _, headers| retry_after(headers),
    refused: |status| status == 429,
};

/// The builder settings every client on a [`Transport`] (its field `t`)
/// offers: `with_backoff` and `record_waits`.
macro_rules! transport_settings {
    () => {
        /// Changes the backoff (tests use milliseconds).
        pub fn with_backoff(mut self, base: std::time::Duration, cap: std::time::Duration) -> Self {
            self.t.set_backoff(base, cap);
            self
        }

        /// Records every wait before a retry into `log` (tests check that
        /// `Retry-After` was honoured without timing anything).
        pub fn record_waits(mut self, log: std::sync::Arc<std::sync::Mutex<Vec<std::time::Duration>>>) -> Self {
            self.t.waits = Some(log);
            self
        }
    };
}
pub(crate) use transport_settings;

/// An HTTP client with its retry policy.
#[derive(Clone)]
pub(crate) struct Transport {
    pub(crate) http: reqwest::Client,
    /// Retries of 429, 5xx and transport errors (the shared policy).
    pub(crate) retry: RetryPolicy,
    /// Every wait before a retry, when recording is on (tests).
    pub(crate) waits: Option<Arc<std::sync::Mutex<Vec<Duration>>>>,
    errors: ErrorStyle,
}

/// A key as a header value, kept out of logs.
pub(crate) fn secret_header(value: &str) -> Result<HeaderValue, ProviderError> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| ProviderError::Key("the provider key contains characters not allowed in a header".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

/// The refusal of a create for an endpoint `kind`'s batches do not run.
pub(crate) fn refuse_unsupported(
    kind: ProviderKind,
    endpoint: Endpoint,
    op: &'static str,
) -> Result<(), ProviderError> {
    if supports_endpoint(kind, endpoint) {
        return Ok(());
    }
    Err(ProviderError::Api {
        op,
        status: 400,
        code: Some("unsupported_endpoint".into()),
        message: format!("{} batches do not run {}", kind.as_str(), endpoint.as_str()),
    })
}

/// A response body as a byte stream (`what` names it in errors).
pub(crate) fn byte_stream(resp: Response, what: &'static str) -> ByteStream {
    resp.bytes_stream()
        .map_err(move |e| StoreError::backend(what, describe_transport(&e)))
        .boxed()
}

impl Transport {
    pub(crate) fn new(http: reqwest::Client, max_retries: u32) -> Self {
        Self {
            http,
            retry: RetryPolicy::new(max_retries, Duration::from_millis(500), Duration::from_secs(30))
                .with_max_asked_wait(MAX_RETRY_AFTER),
            waits: None,
            errors: OPENAI_ERRORS,
        }
    }

    /// The transport for `cfg` (timeouts, retries, user agent) sending
    /// `headers` with every request.
    pub(crate) fn for_config(cfg: &ProviderConfig, headers: HeaderMap) -> Result<Self, ProviderError> {
        let http = crate::tls::http_client_builder()
            .default_headers(headers)
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            .user_agent(concat!("batchq/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Transport {
                op: "client",
                message: e.to_string(),
            })?;
        Ok(Self::new(http, cfg.max_retries))
    }

    /// Reads failed answers in `errors`' way.
    pub(crate) fn with_errors(mut self, errors: ErrorStyle) -> Self {
        self.errors = errors;
        self
    }

    /// Streams a file's content (`NotFound` names the file `id`).
    pub(crate) async fn download(&self, url: &str, id: &ProviderFileId) -> Result<ByteStream, ProviderError> {
        let resp = self
            .send("download file", || self.http.get(url))
            .await
            .map_err(|e| not_found(e, "file", id.as_str()))?;
        Ok(byte_stream(resp, "provider file content"))
    }

    /// Deletes what `url` names (`NotFound` names it `what` `id`).
    pub(crate) async fn delete(
        &self,
        op: &'static str,
        url: &str,
        what: &'static str,
        id: &str,
    ) -> Result<(), ProviderError> {
        self.send(op, || self.http.delete(url))
            .await
            .map_err(|e| not_found(e, what, id))?;
        Ok(())
    }

    /// Changes the backoff (tests use milliseconds).
    pub(crate) fn set_backoff(&mut self, base: Duration, cap: Duration) {
        self.retry = RetryPolicy::new(self.retry.max_retries, base, cap).with_max_asked_wait(MAX_RETRY_AFTER);
    }

    pub(crate) async fn pause(&self, d: Duration) {
        if let Some(log) = &self.waits {
            log.lock().expect("wait log").push(d);
        }
        tokio::time::sleep(d).await;
    }

    /// The wait before a retry: logged, recorded when recording is on,
    /// then slept (by [`RetryPolicy::run`]).
    pub(crate) fn wait_before_retry(
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
    pub(crate) async fn send_once(&self, op: &'static str, req: RequestBuilder) -> Result<Response, ProviderError> {
        let resp = req.send().await.map_err(|e| ProviderError::Transport {
            op,
            message: describe_transport(&e),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        let (message, code) = (self.errors.message)(&body);
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
                    retry_after: (self.errors.asked_wait)(op, s, &headers),
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
    pub(crate) async fn send(
        &self,
        op: &'static str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, ProviderError> {
        self.retry
            .run(
                |_| self.send_once(op, build()),
                judge,
                |n, wait, e| self.wait_before_retry(op, n, wait, e),
            )
            .await
            .map_err(|g| give_up(op, g))
    }

    pub(crate) async fn json<T: DeserializeOwned>(op: &'static str, resp: Response) -> Result<T, ProviderError> {
        let bytes = resp.bytes().await.map_err(|e| ProviderError::Transport {
            op,
            message: describe_transport(&e),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ProviderError::Decode {
            op,
            message: e.to_string(),
        })
    }

    /// Uploads `source` as the multipart part `file` next to the text
    /// `fields`, streaming it, with retries (each attempt reopens the
    /// source). A lost upload response can leave an unused file at the
    /// provider; it costs storage, not money, and expires.
    pub(crate) async fn upload<T: DeserializeOwned>(
        &self,
        url: &str,
        source: &dyn UploadSource,
        fields: &[(&'static str, String)],
    ) -> Result<(T, UploadStats), ProviderError> {
        let op = "upload file";
        self.retry
            .run(
                |n| async move {
                    let counters = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
                    let file = self.upload_once(url, source, fields, &counters).await?;
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

    async fn upload_once<T: DeserializeOwned>(
        &self,
        url: &str,
        source: &dyn UploadSource,
        fields: &[(&'static str, String)],
        stats: &Arc<[AtomicU64; 3]>,
    ) -> Result<T, ProviderError> {
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
        let mut form = reqwest::multipart::Form::new();
        for (name, value) in fields {
            form = form.text(*name, value.clone());
        }
        let form = form.part("file", part);
        let resp = self
            .send_once("upload file", self.http.post(url).multipart(form))
            .await?;
        Self::json("upload file", resp).await
    }
}

impl Transport {
    /// Creates a job's batch without ever making two: before any retry,
    /// and before the first try when `check_first`, it asks `provider`
    /// for a batch this job already created ([`Provider::find_batch`]);
    /// after an answer lost past the point of no return (a 5xx, a timeout,
    /// a cut body; not a 429) it looks again until the listing's lag
    /// (`list_lag`) has passed. `post` sends one create and reads its answer.
    pub(crate) async fn create_once<F, Fut>(
        &self,
        op: &'static str,
        provider: &dyn Provider,
        req: &CreateBatch,
        check_first: bool,
        list_lag: Duration,
        post: F,
    ) -> Result<Batch, ProviderError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Batch, ProviderError>>,
    {
        let post = &post;
        let attempt = |n: u32| async move {
            if check_first || n > 0 {
                if let Some(existing) = provider.find_batch(req).await? {
                    tracing::info!(job_id = %req.job_id, batch_id = %existing.id, "found the batch an earlier attempt created");
                    return Ok(existing);
                }
            }
            match post().await {
                Err(e) if e.is_retryable() => {
                    // A 429 is refused before any work; a 5xx, a timeout or a
                    // cut answer may come after the batch was made, and the
                    // listing may not show it yet: look for it until the
                    // listing has caught up before creating again.
                    let ambiguous =
                        !matches!(e, ProviderError::Retryable { status, .. } if (self.errors.refused)(status));
                    if ambiguous {
                        if let Some(existing) = self.confirm_created(provider, req, list_lag).await? {
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
            Err(g) if g.exhausted => match provider.find_batch(req).await? {
                Some(existing) => Ok(existing),
                None => Err(give_up(op, g)),
            },
            Err(g) => Err(g.last),
        }
    }

    /// After a create whose answer was lost: lists the batches again with
    /// backoff (1 s, 2 s, 4 s, …) until the listing's lag has passed, and
    /// answers the job's batch if it shows up.
    async fn confirm_created(
        &self,
        provider: &dyn Provider,
        req: &CreateBatch,
        list_lag: Duration,
    ) -> Result<Option<Batch>, ProviderError> {
        let mut waited = Duration::ZERO;
        let mut wait = Duration::from_secs(1).min(list_lag);
        loop {
            if let Some(b) = provider.find_batch(req).await? {
                return Ok(Some(b));
            }
            if waited >= list_lag {
                return Ok(None);
            }
            let step = wait.min(list_lag - waited);
            tracing::info!(job_id = %req.job_id, wait_ms = step.as_millis() as u64, "the batch create's answer was lost; looking for the batch again");
            self.pause(step).await;
            waited += step;
            wait = wait.saturating_mul(2);
        }
    }
}

/// A `NotFound` named after what was looked for.
pub(crate) fn not_found(e: ProviderError, what: &'static str, id: &str) -> ProviderError {
    match e {
        ProviderError::NotFound { op, .. } => ProviderError::NotFound {
            op,
            what,
            id: id.to_owned(),
        },
        other => other,
    }
}

/// The message and code of an error body: OpenAI's `{"error": {...}}`
/// (also Groq's), `{"error": "text"}` or `{"message": "text"}` (Together's
/// gateway answers either), else the body's first 300 characters.
fn error_message(body: &str) -> (String, Option<String>) {
    #[derive(Deserialize, Default)]
    struct Flat {
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        code: Option<serde_json::Value>,
    }
    let code_of = |c: serde_json::Value| match c {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    if let Ok(ApiErrorBody { error: Some(err) }) = serde_json::from_str::<ApiErrorBody>(body) {
        let message = err
            .message
            .unwrap_or_else(|| body.chars().take(300).collect::<String>());
        return (message, err.code.map(code_of));
    }
    let flat: Flat = serde_json::from_str(body).unwrap_or_default();
    let message = flat
        .error
        .or(flat.message)
        .unwrap_or_else(|| body.chars().take(300).collect::<String>());
    (message, flat.code.filter(|c| !c.is_null()).map(code_of))
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

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

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
    fn error_bodies_of_every_shape_give_their_message_and_code() {
        assert_eq!(
            error_message(r#"{"error":{"message":"bad key","type":"invalid_request_error","code":"invalid_api_key"}}"#),
            ("bad key".into(), Some("invalid_api_key".into()))
        );
        assert_eq!(error_message(r#"{"error":"quota"}"#), ("quota".into(), None));
        assert_eq!(
            error_message(r#"{"message":"no such job","code":404}"#),
            ("no such job".into(), Some("404".into()))
        );
        assert_eq!(error_message("gateway timeout"), ("gateway timeout".into(), None));
    }

    #[tokio::test]
    async fn retryable_failures_end_in_retries_exhausted_after_the_allowed_attempts() {
        let t = Transport::new(crate::tls::http_client_builder().build().unwrap(), 2);
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
                |n, wait, e| t.wait_before_retry("list batches", n, wait, e),
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
