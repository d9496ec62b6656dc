//! The fake's settings: its limits and timings (`FakeConfig`) and the faults
//! a test injects (`Faults`).

use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;

/// Fault knobs. Route names: `upload`, `list_files`, `file`, `content`,
/// `delete`, `create`, `list`, `retrieve`, `cancel`; Anthropic's routes
/// share `create`, `list`, `retrieve` and `cancel`, and add `results` and
/// `delete_batch`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// The next N calls to a route answer 429 with `Retry-After`.
    pub http_429: HashMap<String, u32>,
    /// The next N calls to a route answer 500.
    pub http_500: HashMap<String, u32>,
    /// The next N calls to a route answer 529 (overloaded; Anthropic's
    /// status for a busy API).
    pub http_529: HashMap<String, u32>,
    /// The next N calls to a route answer 400 `invalid_request_error` (a
    /// refusal that retrying does not fix).
    pub http_400: HashMap<String, u32>,
    /// A steady rate: every k-th call to a route answers 429 (k = 2 is 50%).
    pub http_429_every: HashMap<String, u32>,
    /// Every k-th call to a route answers 500.
    pub http_500_every: HashMap<String, u32>,
    /// `retry-after-ms` sent with 429s (`Retry-After` gets it rounded up to seconds).
    pub retry_after_ms: u64,
    /// Delay before answering, per route.
    pub delay_ms: HashMap<String, u64>,
    /// New batches stay `validating` for this many retrieves.
    pub stay_validating_polls: u32,
    /// New batches stay `in_progress` for this many retrieves after
    /// validation (their tokens stay enqueued meanwhile).
    pub stay_in_progress_polls: u32,
    /// New batches stay `finalizing` for this many retrieves.
    pub stay_finalizing_polls: u32,
    /// New batches, once cancelled, stay `cancelling` for this many retrieves.
    pub stay_cancelling_polls: u32,
    /// New batches fail with `token_limit_exceeded` (the queue is full),
    /// whatever the limits below.
    pub token_limit_exceeded: bool,
    /// Enqueued-token limit per model: a batch whose prompt tokens, added to
    /// those of its model's batches in progress or validating ahead of it,
    /// exceed this fails validation with `token_limit_exceeded`. Read when a
    /// batch is validated, so a change applies to batches already created.
    pub enqueued_token_limits: HashMap<String, u64>,
    /// The limit of models absent from `enqueued_token_limits` (None: unlimited).
    pub default_enqueued_token_limit: Option<u64>,
    /// `GET /files` and `GET /batches` list only what was created at least
    /// this long ago, as the real, eventually consistent lists do; retrieving
    /// by id sees everything at once.
    pub list_lag_ms: u64,
    /// Every line of new batches fails: completed with no output file.
    pub all_lines_fail: bool,
    /// Absent file ids are sent as `""` instead of null.
    pub empty_string_file_ids: bool,
    /// New batches answer 404 after this many retrieves.
    pub vanish_after_polls: Option<u32>,
    /// Create records the batch, then holds the response this long (a client
    /// with a shorter read timeout sees a transport error, no response).
    pub hang_after_create_ms: Option<u64>,
    /// Share (0–100) of lines failing with `fail_status`, chosen by hashing the custom_id.
    pub fail_percent: u32,
    /// Lines whose custom_id starts with this fail with `fail_status`.
    pub fail_prefix: Option<String>,
    /// HTTP status of failing lines (default 500).
    pub fail_status: Option<u16>,
    /// Retrieve reports this status (one a client does not know yet, as a
    /// future API version might add) while the batch is unfinished.
    pub unknown_status: Option<String>,
    /// Lines of new batches whose custom_id is listed get no result line
    /// at all, in neither file: the provider ends the batch without a
    /// result for them.
    pub lose_custom_ids: Vec<String>,
    /// The next N downloads (`content`) of a file larger than
    /// `cut_content_at_bytes` break off there: the connection closes short
    /// of the declared length, as a transfer dropped mid-way.
    pub cut_content: u32,
    pub cut_content_at_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct FakeConfig {
    pub api_key: String,
    pub host: String,
    pub port: u16,
    /// Duration of each phase; 0 = a retrieve after create sees the batch finished.
    pub step_ms: u64,
    pub max_lines: u64,
    pub max_bytes: u64,
    /// Embedding inputs an `/v1/embeddings` batch may carry across all its
    /// requests (a string input is one, an array one per element).
    pub max_embedding_inputs: u64,
    pub data_dir: Option<PathBuf>,
    pub faults: Faults,
    /// Send OpenAI's batch events to this endpoint (`None`: no events).
    pub webhook: Option<WebhookConfig>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            api_key: "sk-fake".into(),
            host: "127.0.0.1".into(),
            port: 0,
            step_ms: 0,
            max_lines: 50_000,
            max_bytes: 200_000_000,
            max_embedding_inputs: 50_000,
            data_dir: None,
            faults: Faults::default(),
            webhook: None,
        }
    }
}

/// Where and how the fake sends its events.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The endpoint's URL.
    pub url: String,
    /// The endpoint's signing secret, `whsec_<base64>`.
    pub secret: String,
    /// The wait after the first failed attempt (it doubles each time).
    pub first_retry_ms: u64,
    /// How long an attempt may take before it counts as failed.
    pub timeout_ms: u64,
}

impl WebhookConfig {
    pub const DEFAULT_FIRST_RETRY_MS: u64 = 5_000;
    pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;

    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            secret: secret.into(),
            first_retry_ms: Self::DEFAULT_FIRST_RETRY_MS,
            timeout_ms: Self::DEFAULT_TIMEOUT_MS,
        }
    }

    /// The signing key behind `whsec_<base64>`.
    pub fn key(&self) -> Result<Vec<u8>, String> {
        let b64 = self
            .secret
            .trim()
            .strip_prefix("whsec_")
            .ok_or("the webhook secret must start with whsec_")?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("the webhook secret is not whsec_ and base64: {e}"))?;
        if key.is_empty() {
            return Err("the webhook secret is empty".into());
        }
        Ok(key)
    }
}
