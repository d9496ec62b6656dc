//! Counts a provider's failed calls by kind ([`ProviderError::kind`]): a
//! [`Tallied`] provider passes every call through and notes each error in
//! its [`ErrorTally`], which the submit and poll steps read into their
//! reports (the `ProviderErrors` metric).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{
    Batch, BatchFormat, BatchPage, CreateBatch, FileObject, FilePage, Provider, ProviderError, UploadSource,
    UploadStats,
};
use crate::ids::{ProviderBatchId, ProviderFileId};
use crate::job::ProviderKind;
use crate::request::Endpoint;
use crate::store::ByteStream;

/// Failed provider calls by kind, since the last [`ErrorTally::take`].
#[derive(Debug, Default)]
pub struct ErrorTally(Mutex<BTreeMap<&'static str, u64>>);

impl ErrorTally {
    /// The counts so far, leaving the tally at zero.
    pub fn take(&self) -> BTreeMap<String, u64> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *m)
            .into_iter()
            .map(|(k, n)| (k.to_owned(), n))
            .collect()
    }

    fn note<T>(&self, r: Result<T, ProviderError>) -> Result<T, ProviderError> {
        if let Err(e) = &r {
            *self
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(e.kind())
                .or_default() += 1;
        }
        r
    }
}

/// A provider whose failed calls are counted in a tally.
pub struct Tallied {
    inner: Arc<dyn Provider>,
    tally: Arc<ErrorTally>,
}

impl Tallied {
    pub fn new(inner: Arc<dyn Provider>, tally: Arc<ErrorTally>) -> Self {
        Self { inner, tally }
    }
}

#[async_trait]
impl Provider for Tallied {
    fn kind(&self) -> ProviderKind {
        self.inner.kind()
    }

    fn format(&self) -> &dyn BatchFormat {
        self.inner.format()
    }

    fn tags_batches(&self) -> bool {
        self.inner.tags_batches()
    }

    fn endpoint_url(&self, endpoint: Endpoint) -> &'static str {
        self.inner.endpoint_url(endpoint)
    }

    async fn upload_file(&self, source: &dyn UploadSource) -> Result<(FileObject, UploadStats), ProviderError> {
        self.tally.note(self.inner.upload_file(source).await)
    }

    async fn file_content(&self, id: &ProviderFileId) -> Result<ByteStream, ProviderError> {
        self.tally.note(self.inner.file_content(id).await)
    }

    async fn delete_file(&self, id: &ProviderFileId) -> Result<(), ProviderError> {
        self.tally.note(self.inner.delete_file(id).await)
    }

    async fn create_batch(&self, req: &CreateBatch, check_first: bool) -> Result<Batch, ProviderError> {
        self.tally.note(self.inner.create_batch(req, check_first).await)
    }

    async fn retrieve_batch(&self, id: &ProviderBatchId) -> Result<Batch, ProviderError> {
        self.tally.note(self.inner.retrieve_batch(id).await)
    }

    async fn cancel_batch(&self, id: &ProviderBatchId) -> Result<Batch, ProviderError> {
        self.tally.note(self.inner.cancel_batch(id).await)
    }

    async fn list_batches(&self, after: Option<&str>, limit: u32) -> Result<BatchPage, ProviderError> {
        self.tally.note(self.inner.list_batches(after, limit).await)
    }

    async fn list_files(&self, after: Option<&str>, limit: u32) -> Result<FilePage, ProviderError> {
        self.tally.note(self.inner.list_files(after, limit).await)
    }

    async fn find_uploaded_file(
        &self,
        filename: &str,
        bytes: u64,
        not_before: i64,
    ) -> Result<Option<FileObject>, ProviderError> {
        self.tally
            .note(self.inner.find_uploaded_file(filename, bytes, not_before).await)
    }

    async fn find_batch(&self, req: &CreateBatch) -> Result<Option<Batch>, ProviderError> {
        self.tally.note(self.inner.find_batch(req).await)
    }
}
