//! The HTTP API, independent of any web framework: [`Api::handle`] takes an
//! [`ApiRequest`] (method, raw path, raw query, content type, body bytes) and
//! the caller's tenant, and returns an [`ApiResponse`] (status, headers, JSON).
//! The dashboard's files (`/dashboard`, see [`dashboard`]) need no identity:
//! front ends ask [`Api::handle_public`] first and authenticate the rest.
//! Provider webhooks (`/v1/provider-webhooks/openai`, see
//! [`provider_webhooks`]) need no identity either (their signature
//! authenticates them), but their body and headers: front ends check
//! [`provider_webhooks::is_provider_webhook`], read the body and call
//! [`Api::handle_provider_webhook`] before authenticating.
//! The Lambda function (`functions/enqueue`) and the local server adapt their
//! own request types to these and back; nothing here knows about either.
//!
//! | route | method | does |
//! |---|---|---|
//! | `/v1/requests` | POST | enqueue one request (a batch input line) |
//! | `/v1/requests/bulk` | POST | enqueue a JSONL file of them, one outcome per line |
//! | `/v1/requests/{custom_id}` | GET | status and, once finished, the result |
//! | `/v1/requests/{custom_id}` | DELETE | cancel a queued request |
//! | `/v1/jobs` | GET | provider batches, newest first, paged |
//! | `/v1/jobs/{id}` | GET | one provider batch with its progress |
//! | `/v1/stats` | GET | counts by status, queue age, open jobs |
//! | `/v1/savings` | GET | batch cost, real-time cost and savings per day, model or provider |
//! | `/v1/activity` | GET | requests per UTC hour, queue by model, failures by code |
//! | `/v1/webhooks/endpoints` | POST | register a webhook endpoint (its secret is answered once) |
//! | `/v1/webhooks/endpoints` | GET | the tenant's webhook endpoints |
//! | `/v1/webhooks/endpoints/{id}` | GET, PATCH, DELETE | one endpoint: read, change, remove |
//! | `/v1/webhooks/deliveries` | GET | webhook deliveries, newest first (`?status=failed`) |
//! | `/v1/webhooks/deliveries/{id}/replay` | POST | send a failed or delivered message again |
//! | `/v1/results` | GET | the results feed: finished requests in the order they finished, after a cursor |
//! | `/v1/provider-webhooks/openai` | POST | OpenAI's batch events: verified with `OPENAI_WEBHOOK_SECRET`, the batch polled at once (no identity: the signature authenticates) |
//! | `/dashboard` | GET | the dashboard page (no identity needed; its data comes from the routes above) |
//!
//! docs/api.md (the API reference) documents the JSON of each.
//!
//! Logging: one line per request with the route, status and duration, inside
//! an `api` span (method, route, tenant, and the custom id or job id the path
//! names). Bodies (prompts) and responses (completions) are never logged.

pub mod dashboard;
pub mod error;
pub mod parse;
pub mod query;
pub use crate::views;

pub mod activity;
mod budget;
mod bulk;
mod jobs;
pub mod provider_webhooks;
mod requests;
mod results;
mod savings;
pub mod webhooks;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use tracing::Instrument;

use crate::config::Limits;
use crate::ids::{ProviderName, TenantId};
use crate::job::ProviderKind;
use crate::metrics::{MetricsSink, NoMetrics};
use crate::ports::Ports;
use crate::pricing::PriceBook;
use crate::routing::RoutingTable;

pub use error::ApiError;

/// Largest request payload read at all, in bytes: API Gateway's own limit
/// (10 MB), so a bulk file that API Gateway passes is never cut short here.
pub const MAX_PAYLOAD_BYTES: usize = 10 * 1024 * 1024;
/// Most lines in one `POST /v1/requests/bulk`.
pub const MAX_BULK_LINES: usize = 10_000;
/// How long a presigned result URL stays valid.
pub const RESULT_URL_TTL: Duration = Duration::from_secs(15 * 60);
/// Lines handed to one `RequestStore::insert` call during a bulk enqueue
/// parsed whole before its checks (a tenant with a budget, or a call near
/// its quota); otherwise parts of [`STREAM_PART_LINES`] are inserted while
/// the next part is parsed (see `bulk.rs`).
pub const INSERT_CHUNK: usize = 1000;
pub use bulk::STREAM_PART_LINES;
/// `GET /v1/jobs` page size: default and maximum.
pub const JOBS_PAGE_DEFAULT: u32 = 50;
pub const JOBS_PAGE_MAX: u32 = 200;

/// An HTTP method.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Other(String),
}

impl Method {
    /// Methods are case-sensitive (RFC 9110); `get` is not `GET`.
    pub fn parse(s: &str) -> Self {
        match s {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "PATCH" => Self::Patch,
            "DELETE" => Self::Delete,
            "OPTIONS" => Self::Options,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
            Self::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One HTTP request, as any front end hands it over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiRequest {
    pub method: Method,
    /// The raw (still percent-encoded) path, without query: `/v1/requests/a%3Ab`.
    pub path: String,
    /// The raw query string without `?` (empty when none).
    pub query: String,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The Standard Webhooks headers, if any (read by the provider webhook
    /// route only).
    pub webhook_headers: provider_webhooks::WebhookHeaders,
    pub body: Bytes,
}

impl ApiRequest {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            query: String::new(),
            content_type: None,
            webhook_headers: Default::default(),
            body: Bytes::new(),
        }
    }

    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::Get, path)
    }

    pub fn delete(path: impl Into<String>) -> Self {
        Self::new(Method::Delete, path)
    }

    /// A POST with a body and its content type.
    pub fn post(path: impl Into<String>, content_type: &str, body: impl Into<Bytes>) -> Self {
        Self {
            content_type: Some(content_type.to_owned()),
            body: body.into(),
            ..Self::new(Method::Post, path)
        }
    }

    pub fn with_query(mut self, query: impl Into<String>) -> Self {
        self.query = query.into();
        self
    }

    /// The same request carrying Standard Webhooks headers.
    pub fn with_webhook_headers(mut self, headers: provider_webhooks::WebhookHeaders) -> Self {
        self.webhook_headers = headers;
        self
    }
}

/// The answer: a status, extra headers, and a JSON body
/// (`Content-Type: application/json`), or one of the dashboard's files.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    /// Headers besides `Content-Type` (`Allow` on 405, `Location` on 202).
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body (`null` when `asset` is sent instead).
    pub body: Value,
    /// A file of the dashboard, sent instead of `body` with its own type.
    pub asset: Option<dashboard::Asset>,
}

impl ApiResponse {
    pub const CONTENT_TYPE: &'static str = "application/json";

    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
            asset: None,
        }
    }

    /// 200 with one of the dashboard's files: a policy allowing only the
    /// page's own origin, no type sniffing, and revalidated on every load
    /// (a new binary's page is seen at once).
    pub fn asset(asset: dashboard::Asset) -> Self {
        Self {
            asset: Some(asset),
            ..Self::json(200, Value::Null)
        }
        .with_header("Content-Security-Policy", dashboard::CONTENT_SECURITY_POLICY)
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("Referrer-Policy", "no-referrer")
        .with_header("Cache-Control", "no-cache")
    }

    /// The `Content-Type` to send.
    pub fn content_type(&self) -> &'static str {
        self.asset.map_or(Self::CONTENT_TYPE, |a| a.content_type)
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The body as sent on the wire.
    pub fn body_string(&self) -> String {
        match self.asset {
            Some(a) => a.text.to_owned(),
            None => self.body.to_string(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl From<ApiError> for ApiResponse {
    fn from(e: ApiError) -> Self {
        let resp = ApiResponse::json(e.status(), e.body());
        match &e {
            ApiError::MethodNotAllowed { allowed, .. } => resp.with_header("Allow", allowed.join(", ")),
            ApiError::Unavailable => resp.with_header("Retry-After", "1"),
            ApiError::Unauthorized { .. } => resp.with_header("WWW-Authenticate", "Bearer"),
            ApiError::QuotaExceeded { .. } => resp.with_header("Retry-After", "60"),
            ApiError::BudgetExceeded(_) => resp.with_header("Retry-After", "60"),
            _ => resp,
        }
    }
}

/// Limits the API enforces, besides the body limit from configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiLimits {
    /// Largest accepted `body` object, as compact JSON (`BATCHQ_MAX_BODY_BYTES`).
    pub max_body_bytes: u64,
    /// Largest request payload read (bulk or single).
    pub max_payload_bytes: usize,
    pub max_bulk_lines: usize,
    pub result_url_ttl: Duration,
    /// Unfinished requests one tenant may have (`BATCHQ_TENANT_MAX_PENDING`).
    pub tenant_max_pending: u64,
    /// Bytes of unfinished bodies one tenant may have.
    pub tenant_max_pending_bytes: u64,
    /// Per-tenant spend limits.
    pub budgets: crate::spend::Budgets,
}

impl ApiLimits {
    pub fn from_config(limits: &Limits) -> Self {
        Self {
            max_body_bytes: limits.max_body_bytes,
            max_payload_bytes: MAX_PAYLOAD_BYTES,
            max_bulk_lines: MAX_BULK_LINES,
            result_url_ttl: RESULT_URL_TTL,
            tenant_max_pending: limits.tenant_max_pending,
            tenant_max_pending_bytes: limits.tenant_max_pending_bytes,
            budgets: limits.budgets.clone(),
        }
    }
}

/// The API core: the stores it reads and writes, a clock, and its limits.
/// Build it once per process; it is cheap to clone.
#[derive(Clone)]
pub struct Api {
    pub ports: Ports,
    pub limits: ApiLimits,
    /// Which provider instance each enqueued request goes to.
    pub routing: Arc<RoutingTable>,
    /// The prices an enqueued request's cost is estimated at (budgets).
    pub prices: Arc<PriceBook>,
    /// Where the API reports what a metric counts (budget warnings).
    pub metrics: Arc<dyn MetricsSink>,
    /// The webhook store and target policy (`None`: the webhook routes
    /// answer 404 `webhooks_not_configured`).
    pub webhooks: Option<Arc<webhooks::WebhookApi>>,
    /// OpenAI's signing secret and the poller its batch events trigger
    /// (`None`: `/v1/provider-webhooks/openai` answers 404 `not_configured`).
    pub provider_webhooks: Option<Arc<provider_webhooks::ProviderWebhooks>>,
}

impl Api {
    /// An API whose requests all go to the default provider (OpenAI).
    pub fn new(ports: Ports, limits: &Limits) -> Self {
        Self {
            ports,
            limits: ApiLimits::from_config(limits),
            routing: Arc::new(RoutingTable::single(ProviderName::default_name(), ProviderKind::OpenAi)),
            prices: Arc::new(PriceBook::bundled()),
            metrics: Arc::new(NoMetrics),
            webhooks: None,
            provider_webhooks: None,
        }
    }

    /// The same API answering OpenAI's batch events: verified with
    /// `secret`, each polls its batch through `poll` at once.
    pub fn with_provider_webhooks(
        mut self,
        secret: crate::webhook::signature::WebhookSecret,
        poll: Arc<dyn provider_webhooks::BatchPoll>,
    ) -> Self {
        self.provider_webhooks = Some(Arc::new(provider_webhooks::ProviderWebhooks {
            openai_secret: secret,
            poll,
        }));
        self
    }

    /// Answers a provider webhook (`/v1/provider-webhooks/openai`): no
    /// identity, the signature over the body authenticates it. Front ends
    /// call it, before authenticating, for the paths
    /// [`provider_webhooks::is_provider_webhook`] accepts.
    pub async fn handle_provider_webhook(&self, req: &ApiRequest) -> ApiResponse {
        let started = Instant::now();
        let now_secs = self.ports.clock.now().millis().div_euclid(1000);
        let resp = provider_webhooks::answer_openai(self.provider_webhooks.as_deref(), req, now_secs).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::info!(method = %req.method, route = provider_webhooks::OPENAI_PATH, status = resp.status, elapsed_ms, "api request");
        resp
    }

    /// The same API serving the webhook routes over `store`.
    pub fn with_webhooks(
        mut self,
        store: Arc<dyn crate::store::webhooks::WebhookStore>,
        target: crate::webhook::target::TargetPolicy,
    ) -> Self {
        self.webhooks = Some(Arc::new(webhooks::WebhookApi { store, target }));
        self
    }

    /// The same API estimating costs with `prices`.
    pub fn with_prices(mut self, prices: Arc<PriceBook>) -> Self {
        self.prices = prices;
        self
    }

    /// The same API reporting budget warnings to `sink`.
    pub fn with_metrics(mut self, sink: Arc<dyn MetricsSink>) -> Self {
        self.metrics = sink;
        self
    }

    /// The same API routing requests with `routing`.
    pub fn with_routing(mut self, routing: Arc<RoutingTable>) -> Self {
        self.routing = routing;
        self
    }

    /// Answers a request that needs no identity: the dashboard's files
    /// (`/dashboard`, its script and style sheet), which carry no data.
    /// `None` for every other path: authenticate it, then [`Api::handle`].
    pub fn handle_public(&self, req: &ApiRequest) -> Option<ApiResponse> {
        let route = dashboard::DashboardRoute::parse(&req.path)?;
        let resp = route.answer(&req.method);
        tracing::info!(method = %req.method, route = route.label(), status = resp.status, "api request");
        Some(resp)
    }

    /// Answers one request for `tenant`. Never fails: every error becomes
    /// its response (4xx for bad input, 5xx for storage failures).
    pub async fn handle(&self, tenant: &TenantId, req: ApiRequest) -> ApiResponse {
        if let Some(resp) = self.handle_public(&req) {
            return resp;
        }
        if provider_webhooks::is_provider_webhook(&req.path) {
            return self.handle_provider_webhook(&req).await;
        }
        let started = Instant::now();
        let route = Route::parse(&req.path);
        let label = route.as_ref().map(Route::label).unwrap_or("(unknown)");
        // One span per call: method, route template and tenant, and the id
        // the route names (a custom id or a job id; never a body).
        let span = tracing::info_span!(
            "api",
            method = %req.method,
            route = label,
            tenant = %tenant,
            request = tracing::field::Empty,
            job = tracing::field::Empty,
        );
        match &route {
            Ok(Route::Request(id)) => {
                span.record("request", id.as_str());
            }
            Ok(Route::Job(id)) => {
                span.record("job", id.as_str());
            }
            _ => {}
        }
        let resp = match route {
            Ok(route) => self.dispatch(tenant, route, &req).instrument(span.clone()).await,
            Err(e) => Err(e),
        }
        .unwrap_or_else(ApiResponse::from);
        let _entered = span.enter();
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if resp.status >= 500 {
            tracing::warn!(method = %req.method, route = label, status = resp.status, elapsed_ms, tenant = %tenant, "api request failed");
        } else {
            tracing::info!(method = %req.method, route = label, status = resp.status, elapsed_ms, tenant = %tenant, "api request");
        }
        resp
    }

    async fn dispatch(&self, tenant: &TenantId, route: Route, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
        use Method::{Delete, Get, Patch, Post};
        match (&route, &req.method) {
            (Route::Requests, Post) => self.create(tenant, req).await,
            (Route::Bulk, Post) => self.bulk(tenant, req).await,
            (Route::Request(id), Get) => self.get_request(tenant, id, req).await,
            (Route::Bulk, Get) => self.get_request(tenant, "bulk", req).await,
            (Route::Request(id), Delete) => self.cancel(tenant, id, req).await,
            (Route::Bulk, Delete) => self.cancel(tenant, "bulk", req).await,
            (Route::Jobs, Get) => self.list_jobs(tenant, req).await,
            (Route::Job(id), Get) => self.get_job(tenant, id, req).await,
            (Route::Stats, Get) => self.stats(tenant, req).await,
            (Route::Savings, Get) => self.savings_report(tenant, req).await,
            (Route::Activity, Get) => self.activity(tenant, req).await,
            (Route::WebhookEndpoints, Post) => self.create_endpoint(tenant, req).await,
            (Route::WebhookEndpoints, Get) => self.list_endpoints(tenant, req).await,
            (Route::WebhookEndpoint(id), Get) => self.get_endpoint(tenant, id, req).await,
            (Route::WebhookEndpoint(id), Patch) => self.update_endpoint(tenant, id, req).await,
            (Route::WebhookEndpoint(id), Delete) => self.delete_endpoint(tenant, id, req).await,
            (Route::WebhookDeliveries, Get) => self.list_deliveries(tenant, req).await,
            (Route::WebhookReplay(id), Post) => self.replay_delivery(tenant, id, req).await,
            (Route::Results, Get) => self.list_results(tenant, req).await,
            _ => Err(ApiError::MethodNotAllowed {
                method: req.method.to_string(),
                allowed: route.allowed(),
            }),
        }
    }
}

/// The routes. Path segments are percent-decoded here.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Requests,
    /// `/v1/requests/bulk`: POST enqueues a file; GET and DELETE address the
    /// request whose custom_id is `bulk`.
    Bulk,
    Request(String),
    Jobs,
    Job(String),
    Stats,
    Savings,
    Activity,
    WebhookEndpoints,
    WebhookEndpoint(String),
    WebhookDeliveries,
    WebhookReplay(String),
    Results,
}

impl Route {
    fn parse(raw_path: &str) -> Result<Self, ApiError> {
        // One trailing slash is forgiven: `/v1/jobs/` is `/v1/jobs`.
        let path = match raw_path.strip_suffix('/') {
            Some(p) if !p.is_empty() => p,
            _ => raw_path,
        };
        let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        let id = |raw: &str, field: &str| -> Result<String, ApiError> {
            query::percent_decode(raw, false).ok_or_else(|| {
                ApiError::bad_request(
                    Some(field),
                    "invalid_path",
                    format!("the {field} in the path is not validly percent-encoded"),
                )
            })
        };
        match segments.as_slice() {
            ["v1", "requests"] => Ok(Self::Requests),
            ["v1", "requests", "bulk"] => Ok(Self::Bulk),
            ["v1", "requests", raw] if !raw.is_empty() => Ok(Self::Request(id(raw, "custom_id")?)),
            ["v1", "jobs"] => Ok(Self::Jobs),
            ["v1", "jobs", raw] if !raw.is_empty() => Ok(Self::Job(id(raw, "job_id")?)),
            ["v1", "stats"] => Ok(Self::Stats),
            ["v1", "savings"] => Ok(Self::Savings),
            ["v1", "activity"] => Ok(Self::Activity),
            ["v1", "results"] => Ok(Self::Results),
            ["v1", "webhooks", "endpoints"] => Ok(Self::WebhookEndpoints),
            ["v1", "webhooks", "endpoints", raw] if !raw.is_empty() => {
                Ok(Self::WebhookEndpoint(id(raw, "endpoint_id")?))
            }
            ["v1", "webhooks", "deliveries"] => Ok(Self::WebhookDeliveries),
            ["v1", "webhooks", "deliveries", raw, "replay"] if !raw.is_empty() => {
                Ok(Self::WebhookReplay(id(raw, "delivery_id")?))
            }
            _ => Err(ApiError::NotFound {
                code: "no_such_route",
                message: format!(
                    "no route {:?}; routes are /v1/requests, /v1/requests/bulk, /v1/requests/{{custom_id}}, /v1/jobs, /v1/jobs/{{id}}, /v1/stats, /v1/savings, /v1/activity, /v1/results and /v1/webhooks/...",
                    raw_path.chars().take(100).collect::<String>()
                ),
            }),
        }
    }

    fn allowed(&self) -> &'static [&'static str] {
        match self {
            Self::Requests => &["POST"],
            Self::Bulk => &["POST", "GET", "DELETE"],
            Self::Request(_) => &["GET", "DELETE"],
            Self::Jobs | Self::Job(_) | Self::Stats | Self::Savings | Self::Activity | Self::Results => &["GET"],
            Self::WebhookEndpoints => &["POST", "GET"],
            Self::WebhookEndpoint(_) => &["GET", "PATCH", "DELETE"],
            Self::WebhookDeliveries => &["GET"],
            Self::WebhookReplay(_) => &["POST"],
        }
    }

    /// The route template, for logs (the ids go in the span's own fields).
    fn label(&self) -> &'static str {
        match self {
            Self::Requests => "/v1/requests",
            Self::Bulk => "/v1/requests/bulk",
            Self::Request(_) => "/v1/requests/{custom_id}",
            Self::Jobs => "/v1/jobs",
            Self::Job(_) => "/v1/jobs/{id}",
            Self::Stats => "/v1/stats",
            Self::Savings => "/v1/savings",
            Self::Activity => "/v1/activity",
            Self::WebhookEndpoints => "/v1/webhooks/endpoints",
            Self::WebhookEndpoint(_) => "/v1/webhooks/endpoints/{id}",
            Self::WebhookDeliveries => "/v1/webhooks/deliveries",
            Self::WebhookReplay(_) => "/v1/webhooks/deliveries/{id}/replay",
            Self::Results => "/v1/results",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_routes_with_decoded_ids() {
        assert_eq!(Route::parse("/v1/requests").unwrap(), Route::Requests);
        assert_eq!(Route::parse("/v1/requests/").unwrap(), Route::Requests);
        assert_eq!(Route::parse("/v1/requests/bulk").unwrap(), Route::Bulk);
        assert_eq!(
            Route::parse("/v1/requests/a%3Ab").unwrap(),
            Route::Request("a:b".into())
        );
        assert_eq!(Route::parse("/v1/jobs/job_1").unwrap(), Route::Job("job_1".into()));
        assert_eq!(Route::parse("/v1/stats").unwrap(), Route::Stats);
        for unknown in [
            "/",
            "",
            "/v1",
            "/v2/requests",
            "/v1/requests//x",
            "/v1/requests/a/b",
            "/v1/jobs//",
        ] {
            assert_eq!(Route::parse(unknown).unwrap_err().status(), 404, "{unknown}");
        }
        assert_eq!(Route::parse("/v1/requests/%zz").unwrap_err().status(), 400);
    }

    #[test]
    fn method_not_allowed_answers_with_an_allow_header() {
        let resp = ApiResponse::from(ApiError::MethodNotAllowed {
            method: "PUT".into(),
            allowed: Route::Request("x".into()).allowed(),
        });
        assert_eq!(resp.status, 405);
        assert_eq!(resp.header("allow"), Some("GET, DELETE"));
    }
}
