//! The provider port: what batchq needs from a batch API, and its adapters.
//! A provider owns its whole batch file format ([`format::BatchFormat`]);
//! [`openai::OpenAiClient`] speaks the OpenAI Files + Batch API and Azure
//! OpenAI's variant of it. Only the wiring names an adapter.

pub mod anthropic;
pub mod format;
pub(crate) mod http;
pub mod input_rules;
pub mod openai;
pub mod registry;
pub mod tally;
pub mod together;
pub mod types;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

pub use crate::completion_window::{check_completion_window, supports_endpoint};
use crate::ids::{JobId, ProviderBatchId, ProviderFileId};
use crate::job::ProviderKind;
use crate::request::Endpoint;
use crate::store::{ByteStream, ObjectStore, StoreError};
pub use format::{BatchFormat, FileLimits, MalformedLine, Outcome, ResultLine};
pub use registry::{Formats, Providers};
pub use types::{Batch, BatchPage, FileObject, FilePage};

#[derive(Debug, Error)]
pub enum ProviderError {
    /// The API answered with an error status that retrying will not fix.
    #[error("{op}: HTTP {status}{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Api {
        op: &'static str,
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// The file or batch does not exist (any more).
    #[error("{op}: {what} {id} not found")]
    NotFound {
        op: &'static str,
        what: &'static str,
        id: String,
    },
    /// The key was refused (401/403). Never includes the key.
    #[error("{op}: authentication failed: {message}")]
    Unauthorized { op: &'static str, message: String },
    /// Every allowed attempt failed with a retryable error.
    #[error("{op}: gave up after {attempts} attempts; last error: {last}")]
    RetriesExhausted {
        op: &'static str,
        attempts: u32,
        last: Box<ProviderError>,
    },
    /// Rate limited (429) or a server error (5xx); retryable.
    #[error("{op}: HTTP {status} (retryable): {message}")]
    Retryable {
        op: &'static str,
        status: u16,
        message: String,
        /// What the provider asked us to wait, from `retry-after-ms` / `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Connection refused/reset, timeout, or a response cut off; retryable.
    #[error("{op}: transport error: {message}")]
    Transport { op: &'static str, message: String },
    /// The response was not what the API documents.
    #[error("{op}: unexpected response: {message}")]
    Decode { op: &'static str, message: String },
    /// Reading the input from S3 failed.
    #[error(transparent)]
    Source(#[from] StoreError),
    /// The provider key could not be loaded (the message says which key
    /// and what to set).
    #[error("{0}")]
    Key(String),
}

impl ProviderError {
    /// Every [`ProviderError::kind`].
    pub const KINDS: &'static [&'static str] = &[
        "api",
        "not_found",
        "unauthorized",
        "retries_exhausted",
        "retryable",
        "transport",
        "decode",
        "storage",
        "key",
    ];

    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. } | Self::Transport { .. })
    }

    /// The error's kind, as the `ProviderErrors` metric names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Api { .. } => "api",
            Self::NotFound { .. } => "not_found",
            Self::Unauthorized { .. } => "unauthorized",
            Self::RetriesExhausted { .. } => "retries_exhausted",
            Self::Retryable { .. } => "retryable",
            Self::Transport { .. } => "transport",
            Self::Decode { .. } => "decode",
            Self::Source(_) => "storage",
            Self::Key(_) => "key",
        }
    }
}

/// A file to upload, reopened from the start for every attempt (a stream
/// cannot be replayed).
#[async_trait]
pub trait UploadSource: Send + Sync {
    fn filename(&self) -> &str;
    /// Size in bytes and a fresh stream of the content.
    async fn open(&self) -> Result<(u64, ByteStream), StoreError>;
}

/// An S3 object as upload source: streamed, never held in memory.
pub struct ObjectSource {
    pub objects: Arc<dyn ObjectStore>,
    pub key: String,
    pub filename: String,
}

#[async_trait]
impl UploadSource for ObjectSource {
    fn filename(&self) -> &str {
        &self.filename
    }

    async fn open(&self) -> Result<(u64, ByteStream), StoreError> {
        let (info, stream) = self.objects.open(&self.key).await?;
        Ok((info.bytes, stream))
    }
}

/// What an upload sent, for memory accounting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadStats {
    pub bytes_sent: u64,
    pub chunks: u64,
    /// Largest single chunk handed to the HTTP client.
    pub max_chunk: u64,
    pub attempts: u32,
}

/// Parameters of a batch creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateBatch {
    pub job_id: JobId,
    pub input_file_id: ProviderFileId,
    /// The staged input file in batchq's object store (providers that take
    /// their requests inline, such as Anthropic, stream it from there).
    pub input_key: String,
    /// Lines (requests) in the input file.
    pub lines: u64,
    /// Batches other jobs of this provider already recorded: never this
    /// job's (a provider that cannot tag a batch with the job, such as
    /// Anthropic, tells its batch from others by count and time).
    pub taken: Vec<ProviderBatchId>,
    pub endpoint: Endpoint,
    /// Batches created before this (unix seconds) cannot be this job's; bounds
    /// the search for a batch a lost response already created.
    pub not_before: i64,
}

/// Pages of files `find_uploaded_file` reads at most (100 files each).
const FIND_FILE_MAX_PAGES: usize = 20;

/// A provider batch API.
#[async_trait]
pub trait Provider: Send + Sync {
    fn kind(&self) -> ProviderKind;

    /// The provider's batch file format: input lines, file limits, result lines.
    fn format(&self) -> &dyn BatchFormat;

    /// Whether a batch carries the job id it was created for (OpenAI's
    /// metadata). A provider that cannot tag its batches (Anthropic) is
    /// given the batches other jobs recorded, to tell a lost create's
    /// batch from theirs (see [`CreateBatch::taken`]).
    fn tags_batches(&self) -> bool {
        true
    }

    /// The `url` to write in input lines and to send as the batch `endpoint`.
    fn endpoint_url(&self, endpoint: Endpoint) -> &'static str;

    /// Uploads an input file with purpose `batch`, streaming it.
    async fn upload_file(&self, source: &dyn UploadSource) -> Result<(FileObject, UploadStats), ProviderError>;

    /// Streams a file's content.
    async fn file_content(&self, id: &ProviderFileId) -> Result<ByteStream, ProviderError>;

    async fn delete_file(&self, id: &ProviderFileId) -> Result<(), ProviderError>;

    /// Creates the job's batch. Before any retry, and before the first try
    /// when `check_first`, it looks for a batch this job already created (its
    /// metadata or its input file), so a lost response never yields two batches.
    async fn create_batch(&self, req: &CreateBatch, check_first: bool) -> Result<Batch, ProviderError>;

    async fn retrieve_batch(&self, id: &ProviderBatchId) -> Result<Batch, ProviderError>;

    async fn cancel_batch(&self, id: &ProviderBatchId) -> Result<Batch, ProviderError>;

    /// One page of batches, newest first.
    async fn list_batches(&self, after: Option<&str>, limit: u32) -> Result<BatchPage, ProviderError>;

    /// One page of the files with purpose `batch`, newest first.
    async fn list_files(&self, after: Option<&str>, limit: u32) -> Result<FilePage, ProviderError>;

    /// A complete input file uploaded earlier under `filename` with `bytes`
    /// bytes, created at or after `not_before` (Unix seconds): the upload of
    /// a run that crashed before recording it, found again so that a resume
    /// does not upload (and pay storage for) a second copy.
    async fn find_uploaded_file(
        &self,
        filename: &str,
        bytes: u64,
        not_before: i64,
    ) -> Result<Option<FileObject>, ProviderError> {
        let mut after: Option<String> = None;
        for _ in 0..FIND_FILE_MAX_PAGES {
            let page = self.list_files(after.as_deref(), 100).await?;
            if let Some(f) = page.data.iter().find(|f| {
                f.filename.as_deref() == Some(filename)
                    && f.bytes == Some(bytes)
                    && !matches!(f.status.as_deref(), Some("error" | "deleted"))
            }) {
                return Ok(Some(f.clone()));
            }
            // Newest first: once past the job's creation, stop.
            let past = page
                .data
                .last()
                .and_then(|f| f.created_at)
                .is_some_and(|t| t < not_before);
            match page.data.last() {
                Some(last) if page.has_more && !past => after = Some(last.id.clone()),
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The batch created for this job, if any.
    async fn find_batch(&self, req: &CreateBatch) -> Result<Option<Batch>, ProviderError> {
        let mut after: Option<String> = None;
        loop {
            let page = self.list_batches(after.as_deref(), 100).await?;
            for b in &page.data {
                let ours = b.job_id_metadata() == Some(req.job_id.as_str())
                    || b.input_file_id.as_deref() == Some(req.input_file_id.as_str());
                if ours {
                    return Ok(Some(b.clone()));
                }
            }
            // Newest first: once we are past the job's creation, stop.
            let past = page
                .data
                .last()
                .and_then(|b| b.created_at)
                .is_some_and(|t| t < req.not_before);
            match page.data.last() {
                Some(last) if page.has_more && !past => after = Some(last.id.clone()),
                _ => return Ok(None),
            }
        }
    }
}
