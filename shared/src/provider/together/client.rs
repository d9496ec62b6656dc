//! HTTP client for Together AI's Files + Batch API, on the transport the
//! OpenAI client uses (timeouts, retries of 429, 5xx and transport errors
//! honouring `Retry-After`, never a blind create retry).
//!
//! Paths under the base (`https://api.together.xyz/v1`): `POST
//! /files/upload` (multipart `file`, `file_name`, `purpose=batch-api`,
//! `file_type=jsonl`), `GET /files`, `GET /files/{id}/content`, `DELETE
//! /files/{id}`, `POST /batches` (`input_file_id`, `endpoint`,
//! `completion_window`; answers `{job, warning}`), `GET /batches` (a bare
//! array), `GET /batches/{id}`, `POST /batches/{id}/cancel`. Together's
//! lists do not page: this client pages them itself, newest first.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serde_json::json;

use super::wire::{BatchList, CreateAnswer, FileList, TogetherBatch, TogetherFile};
use super::TogetherFormat;
use crate::config::ProviderConfig;
use crate::ids::{ProviderBatchId, ProviderFileId};
use crate::job::ProviderKind;
use crate::provider::http::{not_found, refuse_unsupported, secret_header, Transport};
use crate::provider::openai::resolve_api_key;
use crate::provider::types::{Batch, BatchPage, FileObject, FilePage};
use crate::provider::{BatchFormat, CreateBatch, Provider, ProviderError, UploadSource, UploadStats};
use crate::request::Endpoint;
use crate::store::ByteStream;

/// The purpose Together's batch input files are uploaded with.
pub const FILE_PURPOSE: &str = "batch-api";

#[derive(Clone)]
pub struct TogetherClient {
    t: Transport,
    /// The `/v1` base.
    base: String,
    completion_window: String,
    /// How long the listing may lag a create (see `Transport::create_once`).
    list_lag: Duration,
}

impl std::fmt::Debug for TogetherClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TogetherClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl TogetherClient {
    /// Builds a client for `cfg` (reads `kind`, `base_url`,
    /// `completion_window`, `connect_timeout`, `read_timeout`,
    /// `max_retries`, `list_lag`) with an already-resolved key.
    pub fn new(cfg: &ProviderConfig, api_key: &str) -> Result<Self, ProviderError> {
        if cfg.kind != ProviderKind::Together {
            return Err(ProviderError::Key(format!(
                "the Together client does not speak {}'s batch API",
                cfg.kind.as_str()
            )));
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            secret_header(&format!("Bearer {api_key}"))?,
        );
        Ok(Self {
            t: Transport::for_config(cfg, headers)?,
            base: cfg.base_url.trim_end_matches('/').to_owned(),
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
        format!("{}{path}", self.base)
    }

    async fn job(&self, op: &'static str, resp: reqwest::Response) -> Result<Batch, ProviderError> {
        Ok(Transport::json::<TogetherBatch>(op, resp).await?.into())
    }
}

/// One page of `items` (newest first by `created`), after the item `after`
/// names, as the OpenAI-shaped lists page.
fn page<T>(
    mut items: Vec<T>,
    id: impl Fn(&T) -> &str,
    created: impl Fn(&T) -> Option<i64>,
    after: Option<&str>,
    limit: u32,
) -> (Vec<T>, bool) {
    items.sort_by_key(|i| std::cmp::Reverse(created(i).unwrap_or(i64::MIN)));
    if let Some(a) = after {
        match items.iter().position(|i| id(i) == a) {
            Some(p) => {
                items.drain(..=p);
            }
            None => items.clear(),
        }
    }
    let limit = limit.max(1) as usize;
    let has_more = items.len() > limit;
    items.truncate(limit);
    (items, has_more)
}

#[async_trait]
impl Provider for TogetherClient {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Together
    }

    fn format(&self) -> &dyn BatchFormat {
        &TogetherFormat
    }

    fn endpoint_url(&self, endpoint: Endpoint) -> &'static str {
        endpoint.as_str()
    }

    async fn upload_file(&self, source: &dyn UploadSource) -> Result<(FileObject, UploadStats), ProviderError> {
        let fields = [
            ("purpose", FILE_PURPOSE.to_owned()),
            ("file_name", source.filename().to_owned()),
            ("file_type", "jsonl".to_owned()),
        ];
        let (file, stats) = self
            .t
            .upload::<TogetherFile>(&self.url("/files/upload"), source, &fields)
            .await?;
        Ok((file.into(), stats))
    }

    async fn file_content(&self, id: &ProviderFileId) -> Result<ByteStream, ProviderError> {
        self.t.download(&self.url(&format!("/files/{id}/content")), id).await
    }

    async fn delete_file(&self, id: &ProviderFileId) -> Result<(), ProviderError> {
        let url = self.url(&format!("/files/{id}"));
        self.t.delete("delete file", &url, "file", id.as_str()).await
    }

    /// Together keeps no metadata on a batch: a batch this job created is
    /// recognised by its input file id (the default `find_batch`).
    async fn create_batch(&self, req: &CreateBatch, check_first: bool) -> Result<Batch, ProviderError> {
        let op = "create batch";
        refuse_unsupported(ProviderKind::Together, req.endpoint, op)?;
        let body = json!({
            "input_file_id": req.input_file_id.as_str(),
            "endpoint": self.endpoint_url(req.endpoint),
            "completion_window": self.completion_window,
        });
        let url = self.url("/batches");
        let post = || async {
            let resp = self.t.send_once(op, self.t.http.post(&url).json(&body)).await?;
            let (job, warning) = Transport::json::<CreateAnswer>(op, resp).await?.into_job();
            if let Some(w) = warning.filter(|w| !w.is_empty()) {
                tracing::warn!(job_id = %req.job_id, batch_id = %job.id, warning = %w, "together created the batch with a warning");
            }
            Ok(Batch::from(job))
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
        self.job("retrieve batch", resp).await
    }

    async fn cancel_batch(&self, id: &ProviderBatchId) -> Result<Batch, ProviderError> {
        let url = self.url(&format!("/batches/{id}/cancel"));
        let resp = self
            .t
            .send("cancel batch", || self.t.http.post(&url))
            .await
            .map_err(|e| not_found(e, "batch", id.as_str()))?;
        self.job("cancel batch", resp).await
    }

    async fn list_batches(&self, after: Option<&str>, limit: u32) -> Result<BatchPage, ProviderError> {
        let url = self.url("/batches");
        let resp = self.t.send("list batches", || self.t.http.get(&url)).await?;
        let all: Vec<Batch> = Transport::json::<BatchList>("list batches", resp)
            .await?
            .into_vec()
            .into_iter()
            .map(Batch::from)
            .collect();
        let (data, has_more) = page(all, |b| b.id.as_str(), |b| b.created_at, after, limit.clamp(1, 100));
        Ok(BatchPage {
            first_id: data.first().map(|b| b.id.clone()),
            last_id: data.last().map(|b| b.id.clone()),
            data,
            has_more,
        })
    }

    async fn list_files(&self, after: Option<&str>, limit: u32) -> Result<FilePage, ProviderError> {
        let url = self.url("/files");
        let resp = self.t.send("list files", || self.t.http.get(&url)).await?;
        let all: Vec<FileObject> = Transport::json::<FileList>("list files", resp)
            .await?
            .data
            .into_iter()
            .map(FileObject::from)
            .filter(|f| f.purpose.as_deref() == Some(FILE_PURPOSE))
            .collect();
        let (data, has_more) = page(all, |f| f.id.as_str(), |f| f.created_at, after, limit);
        Ok(FilePage { data, has_more })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_page_newest_first_after_an_id() {
        let items = vec![("a", 1), ("c", 3), ("b", 2), ("d", 4)];
        let (p, more) = page(items.clone(), |i| i.0, |i| Some(i.1), None, 2);
        assert_eq!(
            (p.iter().map(|i| i.0).collect::<Vec<_>>(), more),
            (vec!["d", "c"], true)
        );
        let (p, more) = page(items.clone(), |i| i.0, |i| Some(i.1), Some("c"), 2);
        assert_eq!(
            (p.iter().map(|i| i.0).collect::<Vec<_>>(), more),
            (vec!["b", "a"], false)
        );
        let (p, _) = page(items, |i| i.0, |i| Some(i.1), Some("gone"), 2);
        assert!(p.is_empty());
    }

    #[test]
    fn the_together_client_refuses_another_kind() {
        let cfg = crate::config::Config::from_lookup(&|_| None).unwrap();
        assert!(TogetherClient::new(&cfg.provider, "k").is_err());
    }
}
