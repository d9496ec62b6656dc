//! Wire types of Anthropic's Message Batches API, and their mapping onto
//! the pipeline's [`Batch`]. Every field is optional with a default;
//! unknown fields are ignored; an unknown `processing_status` is kept as
//! [`ProviderBatchStatus::Unknown`].

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::ids::ProviderFileId;
use crate::job::{ProviderBatchStatus, RequestCounts};
use crate::provider::types::{Batch, BatchPage};

/// Prefix of the synthetic file id that names a batch's results.
pub const RESULTS_PREFIX: &str = "results:";
/// Prefix of the synthetic file id an "upload" answers (nothing is sent).
pub const INLINE_PREFIX: &str = "inline:";

/// `request_counts` of a message batch. They always sum to the batch's
/// total; all but `processing` stay 0 until the batch has ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct WireCounts {
    pub processing: u64,
    pub succeeded: u64,
    pub errored: u64,
    pub canceled: u64,
    pub expired: u64,
}

impl WireCounts {
    /// total = all five; completed = succeeded; failed = errored + canceled + expired.
    pub fn to_counts(self) -> RequestCounts {
        let failed = self.errored.saturating_add(self.canceled).saturating_add(self.expired);
        RequestCounts {
            total: self.processing.saturating_add(self.succeeded).saturating_add(failed),
            completed: self.succeeded,
            failed,
        }
    }
}

/// A `MessageBatch` object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MessageBatch {
    pub id: String,
    #[serde(default)]
    pub processing_status: Option<String>,
    #[serde(default)]
    pub request_counts: Option<WireCounts>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub ended_at: Option<String>,
    #[serde(default)]
    pub cancel_initiated_at: Option<String>,
    #[serde(default)]
    pub archived_at: Option<String>,
    #[serde(default)]
    pub results_url: Option<String>,
}

/// An RFC 3339 time as unix seconds (fractions dropped); `None` if unreadable.
pub fn unix_seconds(t: Option<&str>) -> Option<i64> {
    OffsetDateTime::parse(t?, &Rfc3339).ok().map(|t| t.unix_timestamp())
}

impl MessageBatch {
    /// in_progress → InProgress, canceling → Cancelling, ended → Completed
    /// (Cancelled once a cancel was asked), anything else → Unknown.
    pub fn status(&self) -> ProviderBatchStatus {
        match self.processing_status.as_deref() {
            Some("in_progress") => ProviderBatchStatus::InProgress,
            Some("canceling") => ProviderBatchStatus::Cancelling,
            Some("ended") if self.cancel_initiated_at.is_some() => ProviderBatchStatus::Cancelled,
            Some("ended") => ProviderBatchStatus::Completed,
            Some(other) => ProviderBatchStatus::Unknown(other.to_owned()),
            None => ProviderBatchStatus::Unknown(String::new()),
        }
    }

    /// The batch in the pipeline's terms. Its results are the synthetic file
    /// `results:<id>` once it has ended with a `results_url`; there is no
    /// error file (errors are lines of the results).
    pub fn to_batch(&self) -> Batch {
        let status = self.status();
        let ended = matches!(status, ProviderBatchStatus::Completed | ProviderBatchStatus::Cancelled);
        let ended_at = unix_seconds(self.ended_at.as_deref());
        let created_at = unix_seconds(self.created_at.as_deref());
        Batch {
            id: self.id.clone(),
            endpoint: None,
            model: None,
            errors: None,
            input_file_id: None,
            completion_window: Some("24h".into()),
            output_file_id: (ended && self.results_url.is_some())
                .then(|| ProviderFileId::new(format!("{RESULTS_PREFIX}{}", self.id))),
            error_file_id: None,
            created_at,
            // Processing begins at creation.
            in_progress_at: created_at,
            expires_at: unix_seconds(self.expires_at.as_deref()),
            finalizing_at: None,
            completed_at: (status == ProviderBatchStatus::Completed).then_some(ended_at).flatten(),
            failed_at: None,
            expired_at: None,
            cancelling_at: unix_seconds(self.cancel_initiated_at.as_deref()),
            cancelled_at: (status == ProviderBatchStatus::Cancelled).then_some(ended_at).flatten(),
            request_counts: self.request_counts.unwrap_or_default().to_counts(),
            metadata: None,
            usage: None,
            status,
        }
    }
}

/// A page of `GET /v1/messages/batches` (newest first).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct MessageBatchPage {
    #[serde(default)]
    pub data: Vec<MessageBatch>,
    #[serde(default)]
    pub has_more: bool,
    #[serde(default)]
    pub first_id: Option<String>,
    #[serde(default)]
    pub last_id: Option<String>,
}

impl MessageBatchPage {
    pub fn to_page(&self) -> BatchPage {
        BatchPage {
            data: self.data.iter().map(MessageBatch::to_batch).collect(),
            first_id: self.first_id.clone(),
            last_id: self.last_id.clone(),
            has_more: self.has_more,
        }
    }
}

/// The API's error body `{"type":"error","error":{"type":…,"message":…}}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub error: Option<ErrorDetail>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorDetail {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(json: &str) -> Batch {
        serde_json::from_str::<MessageBatch>(json).unwrap().to_batch()
    }

    #[test]
    fn an_ended_batch_maps_counts_times_and_its_results_file() {
        let b = batch(
            r#"{"id":"msgbatch_01","type":"message_batch","processing_status":"ended",
            "request_counts":{"processing":0,"succeeded":5,"errored":1,"canceled":0,"expired":2},
            "ended_at":"2024-09-24T19:00:00.5Z","created_at":"2024-09-24T18:37:24.100435Z",
            "expires_at":"2024-09-25T18:37:24.100435Z","archived_at":null,"cancel_initiated_at":null,
            "results_url":"https://api.anthropic.com/v1/messages/batches/msgbatch_01/results","extra":{"x":1}}"#,
        );
        assert_eq!(b.status, ProviderBatchStatus::Completed);
        assert_eq!(
            b.request_counts,
            RequestCounts {
                total: 8,
                completed: 5,
                failed: 3
            }
        );
        assert_eq!(b.created_at, Some(1_727_203_044));
        assert_eq!(b.expires_at, Some(1_727_203_044 + 86_400));
        assert_eq!(b.completed_at, Some(1_727_204_400));
        assert_eq!(b.output_file_id, Some(ProviderFileId::new("results:msgbatch_01")));
        assert_eq!(b.error_file_id, None);
        assert_eq!(b.job_id_metadata(), None);
    }

    #[test]
    fn a_cancelled_batch_is_cancelling_then_cancelled_and_unknown_states_are_kept() {
        let canceling = batch(
            r#"{"id":"m","processing_status":"canceling","cancel_initiated_at":"2024-09-24T18:40:00Z",
            "request_counts":{"processing":3}}"#,
        );
        assert_eq!(canceling.status, ProviderBatchStatus::Cancelling);
        assert_eq!(canceling.request_counts.total, 3);
        assert_eq!(canceling.output_file_id, None);
        let ended = batch(
            r#"{"id":"m","processing_status":"ended","cancel_initiated_at":"2024-09-24T18:40:00Z",
            "ended_at":"2024-09-24T18:41:00Z","results_url":"u","request_counts":{"canceled":3}}"#,
        );
        assert_eq!(ended.status, ProviderBatchStatus::Cancelled);
        assert_eq!(ended.cancelled_at, Some(1_727_203_260));
        assert_eq!(ended.output_file_id, Some(ProviderFileId::new("results:m")));
        let odd = batch(r#"{"id":"m","processing_status":"paused","created_at":"yesterday","request_counts":null}"#);
        assert_eq!(odd.status, ProviderBatchStatus::Unknown("paused".into()));
        assert_eq!(odd.created_at, None);
        assert_eq!(odd.request_counts, RequestCounts::default());
    }

    #[test]
    fn an_ended_batch_without_a_results_url_has_no_results_file() {
        let b = batch(r#"{"id":"m","processing_status":"ended","results_url":null}"#);
        assert_eq!(b.output_file_id, None);
    }
}
