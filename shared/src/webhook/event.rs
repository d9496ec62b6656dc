//! Events and their payloads: what a delivery's body says.
//!
//! Every message is `{"type", "timestamp", "data"}` (the Standard Webhooks
//! shape). `timestamp` is when the event happened (the request or job
//! finished), RFC 3339 UTC; the `webhook-timestamp` header is when the
//! attempt was signed.
//!
//! - `request.completed|failed|cancelled`: `data` is the request as
//!   `GET /v1/requests/{custom_id}` shows it (custom_id, status, job_id,
//!   model, provider, …) with `result` (status_code, usage, costs, error,
//!   and the provider's `response` body when it is at most
//!   [`INLINE_RESPONSE_BYTES`]); a larger response is left out and
//!   `result_path` names the route that returns it. `data.cursor` is the
//!   results-feed cursor of the entry.
//! - `request.batch` (endpoints in `per_job` mode): `data` is
//!   `{"job_id", "events": [{"type", "timestamp", "data"}, …]}` with up to
//!   [`BATCH_MAX_EVENTS`] request events of one job, each with its response
//!   inline up to [`BATCH_INLINE_RESPONSE_BYTES`].
//! - `job.finished`: `data` is the job as `GET /v1/jobs/{id}` shows it to
//!   the tenant (figures of other tenants' requests left out).
//!
//! Event ids are stable: derived from the feed cursor (request events) or
//! the job id (job events), so a redelivery or replay carries the same
//! `webhook-id`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::endpoint::EventType;
use crate::feed::{FeedEntry, FeedEvent};
use crate::ids::{JobId, TenantId};
use crate::job::Job;
use crate::percent::percent_encode;
use crate::request::{Payload, Request, RequestResult};
use crate::views::{self, ResponseBody};

/// Largest provider response embedded in a per-request event.
pub const INLINE_RESPONSE_BYTES: usize = 64 * 1024;
/// Largest provider response embedded in an event of a `request.batch`.
pub const BATCH_INLINE_RESPONSE_BYTES: usize = 4 * 1024;
/// Most request events in one `request.batch` message.
pub const BATCH_MAX_EVENTS: usize = 100;
/// Bytes of events at most in one `request.batch` message (a stored
/// delivery stays well under DynamoDB's 400 KB item).
pub const BATCH_MAX_BYTES: usize = 256 * 1024;

/// An event's id (the `webhook-id` header): `evt_` + what names the event.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    /// The id of the request event at this feed entry.
    pub fn of_entry(entry: &FeedEntry) -> Self {
        Self(format!("evt_{}", entry.cursor))
    }

    /// The id of a batch of request events ending at this feed entry.
    pub fn of_batch(last: &FeedEntry) -> Self {
        Self(format!("evt_batch_{}", last.cursor))
    }

    /// The id of the `job.finished` event of `job` for `tenant`.
    pub fn of_job(job: &JobId) -> Self {
        Self(format!("evt_job_{job}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    #[cfg(test)]
    pub fn for_test(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The event type of a feed entry.
pub fn event_type(e: FeedEvent) -> EventType {
    match e {
        FeedEvent::Completed => EventType::RequestCompleted,
        FeedEvent::Failed => EventType::RequestFailed,
        FeedEvent::Cancelled => EventType::RequestCancelled,
    }
}

/// What a request event says: the request and its result as stored when
/// the event was materialised (`None` when the row is gone: retention).
pub struct RequestFacts {
    pub entry: FeedEntry,
    pub request: Option<Request>,
    pub result: Option<RequestResult>,
}

/// The `{"type", "timestamp", "data"}` of one request event.
pub fn request_event(facts: &RequestFacts, inline_limit: usize) -> Value {
    let entry = &facts.entry;
    let mut data = match &facts.request {
        Some(r) => views::request(r),
        None => {
            let mut m = Map::new();
            m.insert("custom_id".into(), json!(entry.custom_id));
            m.insert("status".into(), json!(entry.event.as_str()));
            m.insert("provider".into(), json!(entry.provider));
            m.insert("model".into(), json!(entry.model));
            m.insert("job_id".into(), json!(entry.job));
            m
        }
    };
    // The status of the event, not whatever the row says by now.
    data.insert("status".into(), json!(entry.event.as_str()));
    data.insert("finished_at".into(), views::time(entry.finished_at));
    data.insert("cursor".into(), json!(entry.cursor.as_str()));
    let path = format!("/v1/requests/{}", percent_encode(entry.custom_id.as_str()));
    let result = match &facts.result {
        Some(r) => {
            let (body, complete) = match &r.response {
                None => (ResponseBody::None, true),
                Some(Payload::Inline(text)) if text.len() <= inline_limit => (
                    ResponseBody::Inline(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))),
                    true,
                ),
                Some(_) => (ResponseBody::None, false),
            };
            if !complete {
                data.insert("result_path".into(), json!(path));
            }
            views::result(r, body)
        }
        None => Value::Null,
    };
    data.insert("result".into(), result);
    json!({
        "type": event_type(entry.event).as_str(),
        "timestamp": views::time(entry.finished_at),
        "data": Value::Object(data),
    })
}

/// The `request.batch` message of some request events of one job.
pub fn batch_event(job: Option<&JobId>, events: Vec<Value>, last: &FeedEntry) -> Value {
    json!({
        "type": "request.batch",
        "timestamp": views::time(last.finished_at),
        "data": {"job_id": job, "events": events},
    })
}

/// The `job.finished` message of `job` as `tenant` sees it.
pub fn job_event(tenant: &TenantId, job: &Job) -> Value {
    json!({
        "type": EventType::JobFinished.as_str(),
        "timestamp": views::opt_time(job.finished_at.or(Some(job.updated_at))),
        "data": views::job_for(tenant, job),
    })
}
