//! Wire types of the OpenAI Files and Batch API (also Azure OpenAI's).
//! Every optional field is `Option` + `default`; unknown fields are ignored;
//! unknown status values are kept as `ProviderBatchStatus::Unknown`.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::ids::{ProviderBatchId, ProviderFileId};
use crate::job::{JobError, ProviderBatchStatus, RequestCounts};

/// A file object (`/v1/files`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FileObject {
    pub id: String,
    #[serde(default)]
    pub bytes: Option<u64>,
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub expires_at: Option<i64>,
}

impl FileObject {
    pub fn file_id(&self) -> ProviderFileId {
        ProviderFileId::new(self.id.clone())
    }
}

/// One batch-level error entry (`errors.data[]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct BatchErrorEntry {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default)]
    pub line: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BatchErrors {
    #[serde(default)]
    pub data: Vec<BatchErrorEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub struct InputTokensDetails {
    #[serde(default)]
    pub cached_tokens: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub struct OutputTokensDetails {
    #[serde(default)]
    pub reasoning_tokens: u64,
}

/// Batch-level usage (only for batches created after 2025-09-07).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub struct BatchUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub input_tokens_details: Option<InputTokensDetails>,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub output_tokens_details: Option<OutputTokensDetails>,
    #[serde(default)]
    pub total_tokens: u64,
}

fn file_id_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ProviderFileId>, D::Error> {
    // Providers have sent "" for an absent file; treat it as null.
    Ok(ProviderFileId::from_wire(Option::<String>::deserialize(d)?))
}

fn counts_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<RequestCounts, D::Error> {
    #[derive(Deserialize)]
    struct Wire {
        #[serde(default)]
        total: u64,
        #[serde(default)]
        completed: u64,
        #[serde(default)]
        failed: u64,
    }
    Ok(Option::<Wire>::deserialize(d)?
        .map(|w| RequestCounts {
            total: w.total,
            completed: w.completed,
            failed: w.failed,
        })
        .unwrap_or_default())
}

/// The Batch object, every documented field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Batch {
    pub id: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub errors: Option<BatchErrors>,
    #[serde(default)]
    pub input_file_id: Option<String>,
    #[serde(default)]
    pub completion_window: Option<String>,
    pub status: ProviderBatchStatus,
    #[serde(default, deserialize_with = "file_id_or_empty")]
    pub output_file_id: Option<ProviderFileId>,
    #[serde(default, deserialize_with = "file_id_or_empty")]
    pub error_file_id: Option<ProviderFileId>,
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default)]
    pub in_progress_at: Option<i64>,
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub finalizing_at: Option<i64>,
    #[serde(default)]
    pub completed_at: Option<i64>,
    #[serde(default)]
    pub failed_at: Option<i64>,
    #[serde(default)]
    pub expired_at: Option<i64>,
    #[serde(default)]
    pub cancelling_at: Option<i64>,
    #[serde(default)]
    pub cancelled_at: Option<i64>,
    #[serde(default, deserialize_with = "counts_or_zero")]
    pub request_counts: RequestCounts,
    #[serde(default)]
    pub metadata: Option<HashMap<String, String>>,
    #[serde(default)]
    pub usage: Option<BatchUsage>,
}

impl Batch {
    pub fn batch_id(&self) -> ProviderBatchId {
        ProviderBatchId::new(self.id.clone())
    }

    /// The batch-level errors as domain errors.
    pub fn job_errors(&self) -> Vec<JobError> {
        self.errors
            .as_ref()
            .map(|e| {
                e.data
                    .iter()
                    .map(|d| JobError {
                        code: d.code.clone().unwrap_or_else(|| "unknown".into()),
                        message: d.message.clone().unwrap_or_default(),
                        line: d.line,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The provider's per-model enqueued-token queue was full: the batch
    /// failed without running, nothing was wrong with its lines.
    pub fn is_token_limit_exceeded(&self) -> bool {
        self.status == ProviderBatchStatus::Failed && self.job_errors().iter().any(|e| e.code == "token_limit_exceeded")
    }

    /// The value batchq put under `metadata.batchq_job_id`.
    pub fn job_id_metadata(&self) -> Option<&str> {
        self.metadata.as_ref()?.get(METADATA_JOB_ID).map(String::as_str)
    }
}

/// Metadata key under which batchq records its job id on every batch.
pub const METADATA_JOB_ID: &str = "batchq_job_id";

/// A page of `GET /v1/batches`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BatchPage {
    #[serde(default)]
    pub data: Vec<Batch>,
    #[serde(default)]
    pub first_id: Option<String>,
    #[serde(default)]
    pub last_id: Option<String>,
    #[serde(default)]
    pub has_more: bool,
}

/// A page of `GET /v1/files`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FilePage {
    #[serde(default)]
    pub data: Vec<FileObject>,
    #[serde(default)]
    pub has_more: bool,
}

/// The API's error body `{"error": {...}}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiErrorBody {
    #[serde(default)]
    pub error: Option<ApiError>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub code: Option<serde_json::Value>,
    #[serde(default)]
    pub param: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_batch_object_parses_with_unknown_fields() {
        let json = r#"{
          "id": "batch_abc", "object": "batch", "endpoint": "/v1/chat/completions", "model": "gpt-4o-mini-2024-07-18",
          "errors": null, "input_file_id": "file-in", "completion_window": "24h", "status": "completed",
          "output_file_id": "file-out", "error_file_id": "", "created_at": 1714508499, "in_progress_at": 1714508500,
          "expires_at": 1714536634, "finalizing_at": 1714508600, "completed_at": 1714508700, "failed_at": null,
          "expired_at": null, "cancelling_at": null, "cancelled_at": null,
          "request_counts": {"total": 3, "completed": 3, "failed": 0},
          "metadata": {"batchq_job_id": "job_1"},
          "usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 7,
                    "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 17},
          "vendor_extension": {"anything": true}
        }"#;
        let b: Batch = serde_json::from_str(json).unwrap();
        assert_eq!(b.status, ProviderBatchStatus::Completed);
        assert_eq!(b.output_file_id, Some(ProviderFileId::new("file-out")));
        assert_eq!(b.error_file_id, None, "empty string means no file");
        assert_eq!(b.request_counts.completed, 3);
        assert_eq!(b.usage.unwrap().input_tokens_details.unwrap().cached_tokens, 2);
        assert_eq!(b.job_id_metadata(), Some("job_1"));
    }

    #[test]
    fn minimal_and_odd_batch_objects_parse() {
        let b: Batch =
            serde_json::from_str(r#"{"id":"batch_1","status":"paused_by_vendor","request_counts":null}"#).unwrap();
        assert_eq!(b.status, ProviderBatchStatus::Unknown("paused_by_vendor".into()));
        assert_eq!(b.request_counts, RequestCounts::default());
        let failed: Batch = serde_json::from_str(
            r#"{"id":"batch_2","status":"failed","errors":{"object":"list","data":[
               {"code":"token_limit_exceeded","message":"Enqueued token limit reached for gpt-4o-mini","param":null,"line":null}]}}"#,
        )
        .unwrap();
        assert!(failed.is_token_limit_exceeded());
        assert_eq!(failed.job_errors()[0].line, None);
    }
}
