//! OpenAI's webhook events about batches, as its webhooks deliver them
//! (`{"id": "evt_…", "type": "batch.completed", "created_at": …, "data":
//! {"id": "batch_…"}}`): which batch ended and how. The signature
//! (Standard Webhooks headers) is checked before the body is parsed; this
//! only reads a verified body.

use serde::Deserialize;

use crate::ids::ProviderBatchId;

/// How the batch an event is about ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchEventKind {
    Completed,
    Failed,
    Expired,
    Cancelled,
}

impl BatchEventKind {
    /// The kind of an event `type` (`None`: not a batch event batchq acts on).
    pub fn of(event_type: &str) -> Option<Self> {
        match event_type {
            "batch.completed" => Some(Self::Completed),
            "batch.failed" => Some(Self::Failed),
            "batch.expired" => Some(Self::Expired),
            "batch.cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// One batch event: the event's own id (the same on a redelivery) and the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEvent {
    pub id: String,
    pub kind: BatchEventKind,
    pub batch: ProviderBatchId,
}

/// A verified body that is not an event as OpenAI sends them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the body is not an event: {0}")]
    Malformed(String),
    #[error("a {0} event names no batch (data.id)")]
    NoBatch(String),
}

#[derive(Deserialize)]
struct Wire {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    data: Option<WireData>,
}

#[derive(Deserialize)]
struct WireData {
    #[serde(default)]
    id: Option<String>,
}

/// Reads an event body. `Ok(None)`: a well-formed event of a type batchq
/// does not act on (answered 200 and ignored).
pub fn parse(body: &[u8]) -> Result<Option<BatchEvent>, EventError> {
    let wire: Wire = serde_json::from_slice(body).map_err(|e| EventError::Malformed(e.to_string()))?;
    let Some(kind) = BatchEventKind::of(&wire.event_type) else {
        return Ok(None);
    };
    let batch = wire
        .data
        .and_then(|d| d.id)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| EventError::NoBatch(wire.event_type.clone()))?;
    Ok(Some(BatchEvent {
        id: wire.id,
        kind,
        batch: ProviderBatchId::new(batch),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ending_of_a_batch_is_read_with_its_batch_id() {
        for (t, kind) in [
            ("batch.completed", BatchEventKind::Completed),
            ("batch.failed", BatchEventKind::Failed),
            ("batch.expired", BatchEventKind::Expired),
            ("batch.cancelled", BatchEventKind::Cancelled),
        ] {
            let body = format!(
                r#"{{"id":"evt_1","type":"{t}","created_at":1719168000,"data":{{"id":"batch_abc"}},"object":"event"}}"#
            );
            assert_eq!(
                parse(body.as_bytes()),
                Ok(Some(BatchEvent {
                    id: "evt_1".into(),
                    kind,
                    batch: ProviderBatchId::new("batch_abc")
                }))
            );
        }
    }

    #[test]
    fn other_event_types_are_ignored_and_broken_bodies_refused() {
        let other = br#"{"id":"evt_2","type":"response.completed","created_at":1,"data":{"id":"resp_1"}}"#;
        assert_eq!(parse(other), Ok(None));
        assert!(matches!(parse(b"not json"), Err(EventError::Malformed(_))));
        let no_batch = br#"{"id":"evt_3","type":"batch.completed","created_at":1,"data":{}}"#;
        assert_eq!(parse(no_batch), Err(EventError::NoBatch("batch.completed".into())));
    }
}
