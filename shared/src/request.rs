//! Requests: one caller request, its status machine, and what batchq stores
//! about it.
//!
//! A request is stored as three items (see `docs/storage.md`): a small, often
//! rewritten *state* ([`Request`]), a write-once *body* ([`RequestBody`]) and a
//! write-once *result* ([`RequestResult`]). Keeping the large parts apart means
//! a status change costs one write unit, not one per KB of prompt.

use serde::{Deserialize, Serialize};

pub use crate::endpoint::Endpoint;
use crate::ids::{ContentHash, CustomId, JobId, ModelName, ProviderName, RequestKey, TenantId};
use crate::money::Money;
use crate::time::Timestamp;
use crate::tokens::Weight;

crate::status_machine! {
    /// Where a request is in its life.
    pub enum RequestStatus for "request" {
        /// Waiting for a submit run to put it in a job.
        Queued = "queued",
        /// Part of exactly one job (the request's `job_id`); the provider may be working on it.
        Claimed = "claimed",
        /// Terminal: the provider answered 2xx and the result is stored.
        Completed = "completed",
        /// Terminal: a non-retryable error, or retries exhausted.
        Failed = "failed",
        /// Terminal: the caller cancelled it while it was still queued.
        Cancelled = "cancelled",
    }
    // Every allowed transition, and only those. The store refuses any write
    // not listed here, and conditions every write on the `from` status.
    moves {
        Queued -> Claimed,   // submit claims it for a job
        Queued -> Cancelled, // caller cancels before submission
        // A batch given up at its deadline delivers its answer after all,
        // before the request was sent again.
        Queued -> Completed,
        Claimed -> Completed, // ingest stores a 2xx result
        Claimed -> Failed,    // non-retryable error or attempts exhausted
        Claimed -> Queued,    // retryable outcome: back to the queue, attempts + 1
    }
}

/// The queue a request waits in: one provider batch file goes to one
/// provider instance and holds one endpoint and one model.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueGroup {
    pub provider: ProviderName,
    pub endpoint: Endpoint,
    pub model: ModelName,
}

impl QueueGroup {
    /// The group of the default provider (no provider table).
    pub fn of(endpoint: Endpoint, model: ModelName) -> Self {
        Self {
            provider: ProviderName::default_name(),
            endpoint,
            model,
        }
    }

    /// Stable string form used as a store key: `"{provider} {endpoint}
    /// {model}"` (neither a provider name nor an endpoint holds a space, so
    /// the split is unambiguous; a model may).
    pub fn key(&self) -> String {
        format!("{} {} {}", self.provider, self.endpoint.as_str(), self.model.as_str())
    }

    /// Reads [`QueueGroup::key`]; a key written before provider instances
    /// existed (`"{endpoint} {model}"`) belongs to the default provider.
    pub fn from_key(key: &str) -> Option<Self> {
        if key.starts_with('/') {
            let (endpoint, model) = key.split_once(' ')?;
            return Some(Self::of(Endpoint::parse(endpoint).ok()?, ModelName::parse(model).ok()?));
        }
        let (provider, rest) = key.split_once(' ')?;
        let (endpoint, model) = rest.split_once(' ')?;
        Some(Self {
            provider: ProviderName::parse(provider).ok()?,
            endpoint: Endpoint::parse(endpoint).ok()?,
            model: ModelName::parse(model).ok()?,
        })
    }
}

/// Token usage of one response, from its `usage` object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// All input tokens, cached and cache-written ones included.
    pub input_tokens: u64,
    /// Input tokens read from the provider's prompt cache (part of `input_tokens`).
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    /// Input tokens written to the provider's prompt cache (part of
    /// `input_tokens`; Anthropic bills them above the input price).
    #[serde(default)]
    pub cache_write_tokens: u64,
}

impl Usage {
    /// A usage from its four counts, in the order `Usage` lists them (tests).
    #[cfg(test)]
    pub(crate) fn of(input: u64, cached: u64, output: u64, reasoning: u64) -> Self {
        Self {
            input_tokens: input,
            cached_input_tokens: cached,
            output_tokens: output,
            reasoning_tokens: reasoning,
            cache_write_tokens: 0,
        }
    }

    /// Adds `other`, saturating: counts come from untrusted result files.
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.cached_input_tokens = self.cached_input_tokens.saturating_add(other.cached_input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(other.reasoning_tokens);
        self.cache_write_tokens = self.cache_write_tokens.saturating_add(other.cache_write_tokens);
    }
}

/// The last error a request saw (from the provider's error file or a failed batch).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestError {
    pub code: String,
    pub message: String,
    /// HTTP status inside the result line, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
}

/// The state item of a request: small, and the only part that changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub key: RequestKey,
    pub tenant: TenantId,
    pub custom_id: CustomId,
    /// The provider instance the request was routed to at enqueue.
    pub provider: ProviderName,
    pub endpoint: Endpoint,
    pub model: ModelName,
    pub status: RequestStatus,
    /// Number of provider batches this request has been claimed into.
    pub attempts: u32,
    /// The job holding the request while claimed, and the one that finished it.
    pub job_id: Option<JobId>,
    pub content_hash: ContentHash,
    /// Size of the serialized body, used to plan batch files without reading bodies.
    pub body_bytes: u64,
    /// Estimated input tokens and embedding inputs, used to plan batches
    /// against the provider's limits without reading bodies.
    pub weight: Weight,
    /// Estimated batch cost in nanodollars, fixed at enqueue
    /// ([`crate::spend::estimate`]): what the request commits of its
    /// tenant's budget while unfinished. 0 for an unpriced model, and for
    /// rows written before estimates were kept.
    #[serde(default)]
    pub estimated_cost_nanos: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_error: Option<RequestError>,
    /// When DynamoDB's TTL may delete the finished request
    /// (`BATCHQ_RETENTION_DAYS` after it finished).
    pub expires_at: Option<Timestamp>,
}

impl Request {
    pub fn queue_group(&self) -> QueueGroup {
        QueueGroup {
            provider: self.provider.clone(),
            endpoint: self.endpoint,
            model: self.model.clone(),
        }
    }
}

/// A request that passed validation and is about to be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRequest {
    pub key: RequestKey,
    pub tenant: TenantId,
    pub custom_id: CustomId,
    /// The provider instance the request is routed to.
    pub provider: ProviderName,
    /// Whether the caller named `provider` (rather than the routes choosing
    /// it): only then does another provider make a repost a conflict.
    pub provider_named: bool,
    pub endpoint: Endpoint,
    pub model: ModelName,
    /// The `body` object, serialized once (compact, keys sorted).
    pub body_json: String,
    pub content_hash: ContentHash,
    pub weight: Weight,
    /// Estimated batch cost in nanodollars (see [`Request::estimated_cost_nanos`]).
    pub estimated_cost_nanos: u64,
}

impl NewRequest {
    /// Builds a request from already-validated parts and computes its key,
    /// hash and weight.
    pub fn new(tenant: TenantId, custom_id: CustomId, endpoint: Endpoint, model: ModelName, body_json: String) -> Self {
        let weight = match serde_json::from_str::<serde_json::Value>(&body_json) {
            Ok(body) => crate::tokens::estimate(endpoint, &body),
            Err(_) => Weight::from_body_bytes(body_json.len() as u64),
        };
        Self::weighed(tenant, custom_id, endpoint, model, body_json, weight)
    }

    /// [`NewRequest::new`] with the weight already estimated from the parsed
    /// body (the API has the body's value at hand; parsing `body_json` a
    /// second time only to weigh it was a tenth of a bulk enqueue's time).
    pub fn weighed(
        tenant: TenantId,
        custom_id: CustomId,
        endpoint: Endpoint,
        model: ModelName,
        body_json: String,
        weight: Weight,
    ) -> Self {
        let key = RequestKey::derive(&tenant, &custom_id);
        let content_hash = ContentHash::of_parts(&[b"POST", endpoint.as_str().as_bytes(), body_json.as_bytes()]);
        Self {
            key,
            tenant,
            custom_id,
            provider: ProviderName::default_name(),
            provider_named: false,
            endpoint,
            model,
            body_json,
            content_hash,
            weight,
            estimated_cost_nanos: 0,
        }
    }

    /// The same request with its estimated batch cost.
    pub fn estimated(mut self, nanos: u64) -> Self {
        self.estimated_cost_nanos = nanos;
        self
    }

    /// The same request routed to `provider` by the routes.
    pub fn routed_to(mut self, provider: ProviderName) -> Self {
        self.provider = provider;
        self.provider_named = false;
        self
    }

    /// The same request sent to `provider` because the caller named it.
    pub fn sent_to(mut self, provider: ProviderName) -> Self {
        self.provider = provider;
        self.provider_named = true;
        self
    }

    pub fn queue_group(&self) -> QueueGroup {
        QueueGroup {
            provider: self.provider.clone(),
            endpoint: self.endpoint,
            model: self.model.clone(),
        }
    }

    pub fn body_bytes(&self) -> u64 {
        self.body_json.len() as u64
    }

    /// Whether `stored` is this request sent again (an idempotent retry)
    /// rather than another request under the same custom id: the same
    /// content and, when the caller named a provider, that provider. The
    /// same body named for another provider is a conflict (the caller asked
    /// for something else); a retry the routes now place elsewhere is not
    /// (the caller sent the same thing; the operator changed the routes).
    pub fn is_repeat_of(&self, stored: &Request) -> bool {
        stored.content_hash == self.content_hash && (!self.provider_named || stored.provider == self.provider)
    }
}

/// What enqueueing one request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// A new row was written.
    Created(Request),
    /// The same (tenant, custom_id) with the same content was already there.
    Existing(Request),
    /// The same (tenant, custom_id) exists with different content.
    Conflict(Request),
}

/// Where a stored body or response lives. As JSON (the embedded store's
/// rows, `batchq export`): `{"inline": "<the JSON text>"}`,
/// `{"s3": {"key": "...", "bytes": n}}` (an object store key, whichever
/// object store holds it) or `{"chunk": {"key": "...", "offset": o, "len": n}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    /// Small enough to sit in the DynamoDB item.
    Inline(String),
    /// Too large for the item; the JSON is in S3 under this key.
    S3 { key: String, bytes: u64 },
    /// Bytes `offset..offset + len` of a chunk object that holds the bodies
    /// of one bulk call's requests of one queue group, one per line
    /// ([`crate::placement::InlineLimits::place_bodies`]): written once
    /// for all of them instead of once per row.
    Chunk { key: String, offset: u64, len: u64 },
}

/// The write-once body item of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestBody {
    pub key: RequestKey,
    pub content_hash: ContentHash,
    pub payload: Payload,
}

/// The write-once result item of a request: the provider's answer for the
/// attempt that finished it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestResult {
    pub key: RequestKey,
    pub job_id: JobId,
    /// HTTP status inside the result line (`response.status_code`), if any.
    pub status_code: Option<u16>,
    /// The provider's `response.body`, when there was one.
    pub response: Option<Payload>,
    pub error: Option<RequestError>,
    pub usage: Option<Usage>,
    /// What the request cost at batch prices, when the model's price is known.
    pub batch_cost: Option<Money>,
    /// What it would have cost through the real-time API.
    pub realtime_cost: Option<Money>,
    pub recorded_at: Timestamp,
    /// The provider's id of the request that answered (OpenAI's
    /// `response.request_id`), for support; `None` when it gave none.
    /// Absent from rows and exports written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_status_pair_is_allowed_exactly_when_listed() {
        let allowed = [
            ("queued", "claimed"),
            ("queued", "cancelled"),
            ("queued", "completed"),
            ("claimed", "completed"),
            ("claimed", "failed"),
            ("claimed", "queued"),
        ];
        for from in RequestStatus::ALL {
            for to in RequestStatus::ALL {
                let expected = allowed.contains(&(from.as_str(), to.as_str()));
                assert_eq!(
                    from.can_transition_to(to),
                    expected,
                    "{from} -> {to} should be {}",
                    if expected { "allowed" } else { "forbidden" }
                );
                assert_eq!(from.check_transition(to).is_ok(), expected);
            }
        }
    }

    #[test]
    fn completed_failed_and_cancelled_are_the_terminal_request_statuses() {
        let terminal: Vec<_> = RequestStatus::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(
            terminal,
            [
                RequestStatus::Completed,
                RequestStatus::Failed,
                RequestStatus::Cancelled
            ]
        );
    }

    #[test]
    fn terminal_request_statuses_have_no_way_out() {
        for from in RequestStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in RequestStatus::ALL {
                assert!(!from.can_transition_to(to), "{from} -> {to} must be forbidden");
            }
        }
    }

    #[test]
    fn forbidden_request_transition_names_both_statuses() {
        let e = RequestStatus::Completed
            .check_transition(RequestStatus::Queued)
            .unwrap_err();
        assert_eq!(e.to_string(), "illegal request transition completed -> queued");
    }

    #[test]
    fn request_status_round_trips_through_its_string() {
        for s in RequestStatus::ALL {
            assert_eq!(s.as_str().parse::<RequestStatus>().unwrap(), s);
        }
        assert!("running".parse::<RequestStatus>().is_err());
    }

    #[test]
    fn queue_group_key_round_trips_models_with_spaces_and_slashes() {
        let g = QueueGroup {
            provider: ProviderName::parse("groq-eu").unwrap(),
            endpoint: Endpoint::ChatCompletions,
            model: ModelName::parse("ft:gpt-4o-mini:org/custom name").unwrap(),
        };
        assert_eq!(QueueGroup::from_key(&g.key()).unwrap(), g);
    }

    #[test]
    fn queue_group_key_without_a_provider_reads_as_the_default_provider() {
        let g = QueueGroup::from_key("/v1/embeddings text-embedding-3-small").unwrap();
        assert_eq!(g.provider, ProviderName::default_name());
        assert_eq!(g.endpoint, Endpoint::Embeddings);
        assert_eq!(g.model.as_str(), "text-embedding-3-small");
        assert_eq!(QueueGroup::from_key("Openai /v1/embeddings m"), None);
    }

    #[test]
    fn new_request_hash_depends_on_endpoint_and_body() {
        let t = TenantId::parse("t").unwrap();
        let c = CustomId::parse("c").unwrap();
        let m = ModelName::parse("m").unwrap();
        let a = NewRequest::new(t.clone(), c.clone(), Endpoint::ChatCompletions, m.clone(), "{}".into());
        let b = NewRequest::new(t.clone(), c.clone(), Endpoint::Completions, m.clone(), "{}".into());
        let d = NewRequest::new(t, c, Endpoint::ChatCompletions, m, "{\"a\":1}".into());
        assert_eq!(a.key, b.key);
        assert_ne!(a.content_hash, b.content_hash);
        assert_ne!(a.content_hash, d.content_hash);
    }
}
