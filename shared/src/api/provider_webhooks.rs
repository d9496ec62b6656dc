//! `POST /v1/provider-webhooks/openai`: OpenAI's batch events
//! (`batch.completed|failed|expired|cancelled`), so a finished batch is
//! polled at once instead of at the next scheduled poll (which stays the
//! safety net).
//!
//! No tenant identity: the Standard Webhooks signature over the raw body,
//! made with `OPENAI_WEBHOOK_SECRET`, is the authentication, so front ends
//! answer this route before authenticating ([`super::Api::handle_provider_webhook`]).
//! Answers:
//! * no secret configured (or no poller wired): 404 `not_configured`;
//! * a missing header, a stale or future timestamp, or a signature that does
//!   not match: 400 `bad_signature` naming the header, nothing read or done;
//! * a verified body that is not an event: 400 `bad_event` naming `body`;
//! * a verified event of another type: 200 `{"ignored": true}`;
//! * a verified batch event: the batch is polled now through [`BatchPoll`],
//!   then 200 saying what became of it: `poll` is `polled` (polled here: an
//!   open job had that batch; `batchq serve`), `no_open_job` (closed
//!   already, or not batchq's) or `queued` (handed to the poll function:
//!   AWS, where the API function answers at once and has no poller powers);
//!   `polled` is true for the first only. A redelivery polls again, which
//!   changes nothing once the job is closed. A poll or hand-off that fails
//!   is logged and still answered 200 (`poll: failed`): the scheduled poll
//!   retries it.

use std::sync::Arc;

use serde_json::json;

use super::{ApiRequest, ApiResponse, Method};
use crate::job::ProviderKind;
use crate::provider::openai::webhook::{self as events, BatchEvent};
use crate::webhook::signature::{self, SignatureError, SignedHeaders, WebhookSecret};

/// The route's path.
pub const OPENAI_PATH: &str = "/v1/provider-webhooks/openai";

pub use crate::pipeline::poll::{BatchPoll, BatchPollError, PollAsked};

/// What the route needs: OpenAI's signing secret and the poller.
#[derive(Clone)]
pub struct ProviderWebhooks {
    pub openai_secret: WebhookSecret,
    pub poll: Arc<dyn BatchPoll>,
}

/// The three Standard Webhooks headers of a request, as sent (front ends
/// fill them; other routes ignore them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookHeaders {
    /// `webhook-id`.
    pub id: Option<String>,
    /// `webhook-timestamp`.
    pub timestamp: Option<String>,
    /// `webhook-signature`.
    pub signature: Option<String>,
}

impl WebhookHeaders {
    /// Reads them from any header list (names compared case-insensitively).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut h = Self::default();
        for (name, value) in pairs {
            let slot = if name.eq_ignore_ascii_case("webhook-id") {
                &mut h.id
            } else if name.eq_ignore_ascii_case("webhook-timestamp") {
                &mut h.timestamp
            } else if name.eq_ignore_ascii_case("webhook-signature") {
                &mut h.signature
            } else {
                continue;
            };
            *slot = Some(value.to_owned());
        }
        h
    }
}

/// Whether a path is a provider webhook route (answered without identity).
pub fn is_provider_webhook(path: &str) -> bool {
    path == OPENAI_PATH
}

fn error(status: u16, code: &str, message: String, field: Option<&str>) -> ApiResponse {
    ApiResponse::json(
        status,
        json!({"error": {"code": code, "message": message, "field": field}}),
    )
}

fn signature_field(e: &SignatureError) -> &'static str {
    match e {
        SignatureError::MissingHeader(h) => h,
        SignatureError::BadTimestamp | SignatureError::TooOld | SignatureError::TooNew => "webhook-timestamp",
        SignatureError::BadSecret | SignatureError::Mismatch => "webhook-signature",
    }
}

/// Answers a request to [`OPENAI_PATH`] at `now_secs` (Unix seconds).
pub async fn answer_openai(hooks: Option<&ProviderWebhooks>, req: &ApiRequest, now_secs: i64) -> ApiResponse {
    if req.method != Method::Post {
        return ApiResponse::from(super::ApiError::MethodNotAllowed {
            method: req.method.to_string(),
            allowed: &["POST"],
        });
    }
    let Some(hooks) = hooks else {
        return error(
            404,
            "not_configured",
            "OpenAI webhooks are not configured here (set OPENAI_WEBHOOK_SECRET)".into(),
            None,
        );
    };
    let h = &req.webhook_headers;
    let headers = SignedHeaders {
        id: h.id.as_deref().unwrap_or(""),
        timestamp: h.timestamp.as_deref().unwrap_or(""),
        signature: h.signature.as_deref().unwrap_or(""),
    };
    if let Err(e) = signature::verify(
        &hooks.openai_secret,
        &headers,
        &req.body,
        now_secs,
        signature::DEFAULT_TOLERANCE_SECS,
    ) {
        tracing::warn!(reason = %e, "provider webhook refused: signature");
        return error(400, "bad_signature", e.to_string(), Some(signature_field(&e)));
    }
    let event = match events::parse(&req.body) {
        Ok(Some(e)) => e,
        Ok(None) => {
            tracing::info!(webhook_id = headers.id, "provider webhook ignored: not a batch event");
            return ApiResponse::json(200, json!({"ignored": true}));
        }
        Err(e) => return error(400, "bad_event", e.to_string(), Some("body")),
    };
    let BatchEvent { id, kind, batch } = &event;
    let poll = match hooks.poll.poll_batch_now(ProviderKind::OpenAi, batch).await {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::error!(event = %id, batch = %batch, error = %e, "poll after a provider webhook failed; the scheduled poll retries");
            None
        }
    };
    let poll_str = poll.map_or("failed", PollAsked::as_str);
    tracing::info!(event = %id, batch = %batch, kind = ?kind, poll = poll_str, "provider webhook");
    ApiResponse::json(
        200,
        json!({"event": id, "batch": batch.as_str(), "poll": poll_str, "polled": poll == Some(PollAsked::Polled)}),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::ids::ProviderBatchId;

    /// Counts the polls asked for.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    #[async_trait]
    impl BatchPoll for Counting {
        async fn poll_batch_now(&self, _: ProviderKind, _: &ProviderBatchId) -> Result<PollAsked, BatchPollError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(PollAsked::Polled)
        }
    }

    const NOW: i64 = 1_764_583_200;
    const BODY: &str = r#"{"id":"evt_1","type":"batch.completed","created_at":1,"data":{"id":"batch_1"}}"#;

    fn hooks(poll: Arc<Counting>) -> ProviderWebhooks {
        ProviderWebhooks {
            openai_secret: WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
            poll,
        }
    }

    fn signed(h: &ProviderWebhooks, ts: i64) -> ApiRequest {
        ApiRequest::post(OPENAI_PATH, "application/json", BODY).with_webhook_headers(WebhookHeaders {
            id: Some("evt_1".into()),
            timestamp: Some(ts.to_string()),
            signature: Some(signature::sign(&h.openai_secret, "evt_1", ts, BODY.as_bytes())),
        })
    }

    #[tokio::test]
    async fn without_a_secret_the_route_answers_not_configured() {
        let resp = answer_openai(None, &ApiRequest::post(OPENAI_PATH, "application/json", BODY), NOW).await;
        assert_eq!(
            (resp.status, &resp.body["error"]["code"]),
            (404, &json!("not_configured"))
        );
    }

    #[tokio::test]
    async fn a_missing_header_is_named_and_nothing_is_polled() {
        let poll = Arc::new(Counting::default());
        let h = hooks(poll.clone());
        for (strip, field) in [(0, "webhook-id"), (1, "webhook-timestamp"), (2, "webhook-signature")] {
            let mut req = signed(&h, NOW);
            match strip {
                0 => req.webhook_headers.id = None,
                1 => req.webhook_headers.timestamp = None,
                _ => req.webhook_headers.signature = None,
            }
            let resp = answer_openai(Some(&h), &req, NOW).await;
            assert_eq!((resp.status, &resp.body["error"]["field"]), (400, &json!(field)));
        }
        assert_eq!(poll.0.load(Ordering::SeqCst), 0);
        let resp = answer_openai(Some(&h), &signed(&h, NOW), NOW).await;
        assert_eq!((resp.status, &resp.body["polled"]), (200, &json!(true)));
        assert_eq!(poll.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn headers_are_read_whatever_their_case() {
        let h = WebhookHeaders::from_pairs([
            ("Webhook-Id", "a"),
            ("WEBHOOK-TIMESTAMP", "1"),
            ("webhook-signature", "v1,x"),
            ("content-type", "application/json"),
        ]);
        assert_eq!(
            h,
            WebhookHeaders {
                id: Some("a".into()),
                timestamp: Some("1".into()),
                signature: Some("v1,x".into())
            }
        );
    }
}
