//! HTTP client for the OpenAI Files + Batch API and Azure OpenAI's variant.
//!
//! Resilience: connect and read timeouts; retries on 429, 5xx and transport
//! errors through the shared [`RetryPolicy`] (exponential backoff, full
//! jitter), honouring `retry-after-ms` / `Retry-After` up to a minute; a
//! bounded number of attempts ending in [`ProviderError::RetriesExhausted`]. Batch creation is never retried
//! blind: before each retry the client looks for the batch the lost attempt
//! may have created.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::Method;
use serde_json::json;

use super::{GroqFormat, OpenAiFormat};
use crate::config::{ApiKeySource, ProviderConfig};
use crate::ids::{ProviderBatchId, ProviderFileId};
use crate::job::ProviderKind;
use crate::provider::http::{not_found, refuse_unsupported, secret_header, Transport};
use crate::provider::types::{Batch, BatchPage, FileObject, FilePage, METADATA_JOB_ID};
use crate::provider::{BatchFormat, CreateBatch, Provider, ProviderError, UploadSource, UploadStats};
use crate::request::Endpoint;
use crate::store::ByteStream;

#[derive(Clone)]
pub struct OpenAiClient {
    t: Transport,
    kind: ProviderKind,
    /// OpenAI: the `/v1` base. Azure: `{endpoint}/openai`.
    base: String,
    api_version: Option<String>,
    completion_window: String,
    /// How long the provider's listings may lag its creates: after a create
    /// whose answer was lost, the batch is looked for this long before a
    /// second create.
    list_lag: Duration,
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
/// Manager (a plain string, or JSON holding it under the kind's own name —
/// `OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, `GROQ_API_KEY`, … — or `api_key`;
/// one secret can hold the keys of several providers).
pub async fn resolve_api_key(cfg: &ProviderConfig, sdk: &aws_config::SdkConfig) -> Result<String, ProviderError> {
    match &cfg.api_key {
        ApiKeySource::Literal(k) => Ok(k.clone()),
        ApiKeySource::None => Err(ProviderError::Key(match cfg.kind {
            ProviderKind::OpenAi => {
                "no API key configured: set OPENAI_API_KEY or BATCHQ_OPENAI_API_KEY_SECRET_ARN".into()
            }
            kind => format!(
                "no API key configured: set {} (or OPENAI_API_KEY), or BATCHQ_OPENAI_API_KEY_SECRET_ARN",
                kind.default_key_env()
            ),
        })),
        ApiKeySource::SecretArn(arn) => {
            let client = aws_sdk_secretsmanager::Client::new(sdk);
            let out = client.get_secret_value().secret_id(arn).send().await.map_err(|e| {
                ProviderError::Key(format!(
                    "reading the key from secret {arn}: {}",
                    crate::error::chain(&e)
                ))
            })?;
            let raw = out
                .secret_string()
                .ok_or_else(|| ProviderError::Key(format!("secret {arn} has no string value")))?;
            parse_secret(raw, cfg.kind).ok_or_else(|| {
                ProviderError::Key(format!(
                    "secret {arn} holds no usable key (for {}, a plain string or JSON with {} or api_key)",
                    cfg.kind.as_str(),
                    cfg.kind.default_key_env()
                ))
            })
        }
    }
}

fn parse_secret(raw: &str, kind: ProviderKind) -> Option<String> {
    let raw = raw.trim();
    if raw.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(raw).ok()?;
        // The kind's own name first; OpenAI's name also serves the
        // OpenAI-compatible kinds (never Anthropic: it is another account).
        let openai_compatible = kind != ProviderKind::Anthropic;
        [kind.default_key_env(), "api_key", "apiKey", "key"]
            .into_iter()
            .chain(openai_compatible.then_some("OPENAI_API_KEY"))
            .find_map(|k| v.get(k).and_then(|x| x.as_str()))
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
        match cfg.kind {
            ProviderKind::OpenAi | ProviderKind::Groq => {
                headers.insert(
                    reqwest::header::AUTHORIZATION,
                    secret_header(&format!("Bearer {api_key}"))?,
                );
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
                headers.insert("api-key", secret_header(api_key)?);
            }
            ProviderKind::Anthropic | ProviderKind::Together => {
                return Err(ProviderError::Key(format!(
                    "the OpenAI client does not speak {}'s batch API",
                    cfg.kind.as_str()
                )))
            }
        }
        let t = Transport::for_config(cfg, headers)?;
        let (base, api_version) = match cfg.kind {
            ProviderKind::AzureOpenAi => (
                format!("{}/openai", cfg.base_url.trim_end_matches('/')),
                Some(cfg.api_version.clone()),
            ),
            _ => (cfg.base_url.trim_end_matches('/').to_owned(), None),
        };
        Ok(Self {
            t,
            kind: cfg.kind,
            base,
            api_version,
            completion_window: cfg.completion_window.clone(),
            list_lag: cfg.list_lag,
        })
    }

    /// Resolves the key (Secrets Manager if configured) and builds the client.
    pub async fn from_config(cfg: &ProviderConfig, sdk: &aws_config::SdkConfig) -> Result<Self, ProviderError> {
        let key = resolve_api_key(cfg, sdk).await?;
        Self::new(cfg, &key)
    }

    crate::provider::http::transport_settings!();

    fn url(&self, path: &str) -> String {
        match &self.api_version {
            None => format!("{}{path}", self.base),
            Some(v) => {
                let sep = if path.contains('?') { '&' } else { '?' };
                format!("{}{path}{sep}api-version={v}", self.base)
            }
        }
    }
}

#[async_trait]
impl Provider for OpenAiClient {
    fn kind(&self) -> ProviderKind {
        self.kind
    }

    fn format(&self) -> &dyn BatchFormat {
        match self.kind {
            ProviderKind::Groq => &GroqFormat,
            _ => &OpenAiFormat,
        }
    }

    fn endpoint_url(&self, endpoint: Endpoint) -> &'static str {
        match self.kind {
            // Azure OpenAI's batch API names endpoints without the /v1 prefix.
            ProviderKind::AzureOpenAi => &endpoint.as_str()[3..],
            _ => endpoint.as_str(),
        }
    }

    async fn upload_file(&self, source: &dyn UploadSource) -> Result<(FileObject, UploadStats), ProviderError> {
        let url = self.url("/files");
        self.t.upload(&url, source, &[("purpose", "batch".to_owned())]).await
    }

    async fn file_content(&self, id: &ProviderFileId) -> Result<ByteStream, ProviderError> {
        self.t.download(&self.url(&format!("/files/{id}/content")), id).await
    }

    async fn delete_file(&self, id: &ProviderFileId) -> Result<(), ProviderError> {
        let url = self.url(&format!("/files/{id}"));
        self.t.delete("delete file", &url, "file", id.as_str()).await
    }

    async fn create_batch(&self, req: &CreateBatch, check_first: bool) -> Result<Batch, ProviderError> {
        let op = "create batch";
        refuse_unsupported(self.kind, req.endpoint, op)?;
        let body = json!({
            "input_file_id": req.input_file_id.as_str(),
            "endpoint": self.endpoint_url(req.endpoint),
            "completion_window": self.completion_window,
            "metadata": { METADATA_JOB_ID: req.job_id.as_str() },
        });
        let url = self.url("/batches");
        // A body cut off after the status line is as lost as a dropped
        // connection: the batch may exist, so it takes the retry path.
        let post = || async {
            let resp = self
                .t
                .send_once(op, self.t.http.request(Method::POST, &url).json(&body))
                .await?;
            Transport::json::<Batch>(op, resp).await
        };
        self.t
            .create_once(op, self, req, check_first, self.list_lag, post)
            .await
    }

    async fn retrieve_batch(&self, id: &ProviderBatchId) -> Result<Batch, ProviderError> {
        let url = self.url(&format!("/batches/{id}"));
        let resp = self
            .t
            .send("retrieve batch", || self.t.http.get(&url))
            .await
            .map_err(|e| not_found(e, "batch", id.as_str()))?;
        Transport::json("retrieve batch", resp).await
    }

    async fn cancel_batch(&self, id: &ProviderBatchId) -> Result<Batch, ProviderError> {
        let url = self.url(&format!("/batches/{id}/cancel"));
        let resp = self
            .t
            .send("cancel batch", || self.t.http.post(&url))
            .await
            .map_err(|e| not_found(e, "batch", id.as_str()))?;
        Transport::json("cancel batch", resp).await
    }

    async fn list_files(&self, after: Option<&str>, limit: u32) -> Result<FilePage, ProviderError> {
        // Azure's list takes `purpose` only and Groq's nothing (both answer
        // all files at once).
        let mut path = match self.kind {
            ProviderKind::AzureOpenAi => "/files?purpose=batch".to_owned(),
            ProviderKind::Groq => "/files".to_owned(),
            _ => format!("/files?purpose=batch&order=desc&limit={}", limit.clamp(1, 10_000)),
        };
        if let (Some(a), ProviderKind::OpenAi) = (after, self.kind) {
            path.push_str(&format!("&after={a}"));
        }
        let url = self.url(&path);
        let resp = self.t.send("list files", || self.t.http.get(&url)).await?;
        Transport::json("list files", resp).await
    }

    async fn list_batches(&self, after: Option<&str>, limit: u32) -> Result<BatchPage, ProviderError> {
        // Groq's list takes no paging parameters (it answers every batch).
        if self.kind == ProviderKind::Groq {
            let url = self.url("/batches");
            let resp = self.t.send("list batches", || self.t.http.get(&url)).await?;
            return Transport::json("list batches", resp).await;
        }
        let mut path = format!("/batches?limit={}", limit.clamp(1, 100));
        if let Some(a) = after {
            path.push_str(&format!("&after={a}"));
        }
        let url = self.url(&path);
        let resp = self.t.send("list batches", || self.t.http.get(&url)).await?;
        Transport::json("list batches", resp).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::http::MAX_RETRY_AFTER;

    #[test]
    fn secrets_may_be_plain_or_json() {
        let openai = ProviderKind::OpenAi;
        assert_eq!(parse_secret("sk-abc\n", openai).as_deref(), Some("sk-abc"));
        assert_eq!(
            parse_secret(r#"{"OPENAI_API_KEY":"sk-1"}"#, openai).as_deref(),
            Some("sk-1")
        );
        assert_eq!(parse_secret(r#"{"api_key":"sk-2"}"#, openai).as_deref(), Some("sk-2"));
        assert_eq!(parse_secret(r#"{"other":"x"}"#, openai), None);
        assert_eq!(parse_secret("  ", openai), None);
    }

    #[test]
    fn one_secret_holds_each_providers_key_under_its_own_name() {
        let both = r#"{"OPENAI_API_KEY":"sk-oa","ANTHROPIC_API_KEY":"sk-ant","GROQ_API_KEY":"gsk"}"#;
        assert_eq!(parse_secret(both, ProviderKind::OpenAi).as_deref(), Some("sk-oa"));
        assert_eq!(parse_secret(both, ProviderKind::Anthropic).as_deref(), Some("sk-ant"));
        assert_eq!(parse_secret(both, ProviderKind::Groq).as_deref(), Some("gsk"));
        // Together has no key of its own here: OpenAI-compatible, it takes OpenAI's name.
        assert_eq!(parse_secret(both, ProviderKind::Together).as_deref(), Some("sk-oa"));
        // Anthropic never takes another account's key.
        assert_eq!(
            parse_secret(r#"{"OPENAI_API_KEY":"sk-oa"}"#, ProviderKind::Anthropic),
            None
        );
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
        assert_eq!(c.t.retry.max_retries, cfg.provider.max_retries);
        for attempt in 0..10 {
            let d = c.t.retry.delay(attempt, None);
            let bound = Duration::from_millis((100u64 << attempt.min(16)).min(800));
            assert!(d <= bound, "attempt {attempt}: {d:?} > {bound:?}");
        }
        // Retry-After is honoured up to its own cap, past the backoff's.
        assert_eq!(c.t.retry.delay(0, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(c.t.retry.delay(0, Some(Duration::from_secs(600))), MAX_RETRY_AFTER);
    }
}
