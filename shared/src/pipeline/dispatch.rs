//! The delivery engine. For each enabled endpoint, a pass
//!
//! 1. reads the next page of its tenant's results feed after the endpoint's
//!    position and turns the subscribed entries into deliveries, storing
//!    them and the new position in one atomic write
//!    ([`WebhookStore::materialise`]);
//! 2. finds the tenant's jobs that finished (newest first, one page) and
//!    stores a `job.finished` delivery for each not yet known (the id is
//!    derived from endpoint and job, so this is idempotent);
//! 3. sends up to [`WebhookConfig::sends_per_pass`] due deliveries, at most
//!    [`WebhookConfig::concurrency`] at a time, and saves each outcome.
//!
//! [`Dispatcher::tick`] starts one pass per endpoint as its own task and
//! skips an endpoint whose previous pass is still running: a slow or dead
//! endpoint holds up only itself, and its backlog costs at most one page of
//! sends per pass. Ingest and the API never wait for any of it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::config;
use crate::feed::FeedEntry;
use crate::store::webhooks::{EndpointState, WebhookStore};
use crate::store::{JobStore, RequestStore, StoreError};
use crate::time::Clock;
use crate::webhook::delivery::{Delivery, DeliveryId, RetrySchedule};
use crate::webhook::endpoint::{DeliveryMode, Endpoint, EndpointId, EndpointUrl, EventType};
use crate::webhook::event::{self, EventId, RequestFacts};
use crate::webhook::signature;
use crate::webhook::target::{self, GuardedResolver, TargetPolicy};

/// How deliveries are made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    pub schedule: RetrySchedule,
    /// How long an attempt may take before it counts as failed.
    pub timeout: Duration,
    pub target: TargetPolicy,
    /// Attempts in flight at once per endpoint.
    pub concurrency: usize,
    /// Feed entries read per endpoint and pass.
    pub feed_page: u32,
    /// Deliveries attempted per endpoint and pass.
    pub sends_per_pass: u32,
    /// How often `batchq serve` starts a pass.
    pub every: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            schedule: RetrySchedule::default(),
            timeout: Duration::from_secs(10),
            target: TargetPolicy::default(),
            concurrency: 4,
            feed_page: 500,
            sends_per_pass: 200,
            every: Duration::from_secs(1),
        }
    }
}

/// A setting of the environment that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl WebhookConfig {
    /// The defaults, overridden by `BATCHQ_WEBHOOK_TIMEOUT_MS`,
    /// `BATCHQ_WEBHOOK_RETRY_DELAYS_MS` (comma-separated milliseconds),
    /// `BATCHQ_WEBHOOK_MIN_RETRY_SPAN_MS`, `BATCHQ_WEBHOOK_CONCURRENCY`,
    /// `BATCHQ_WEBHOOK_EVERY_MS` and `BATCHQ_WEBHOOK_ALLOW_PRIVATE`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    pub fn from_lookup(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut c = Self::default();
        let millis = |var: &'static str, v: &str| -> Result<Duration, ConfigError> {
            v.trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| ConfigError {
                    var,
                    message: format!("{v:?} is not a whole number of milliseconds"),
                })
        };
        if let Some(v) = env(config::WEBHOOK_TIMEOUT_MS) {
            c.timeout = millis(config::WEBHOOK_TIMEOUT_MS, &v)?;
        }
        if let Some(v) = env(config::WEBHOOK_RETRY_DELAYS_MS) {
            c.schedule.delays = v
                .split(',')
                .map(|d| millis(config::WEBHOOK_RETRY_DELAYS_MS, d))
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = env(config::WEBHOOK_MIN_RETRY_SPAN_MS) {
            c.schedule.min_span = millis(config::WEBHOOK_MIN_RETRY_SPAN_MS, &v)?;
        }
        if let Some(v) = env(config::WEBHOOK_EVERY_MS) {
            c.every = millis(config::WEBHOOK_EVERY_MS, &v)?.max(Duration::from_millis(10));
        }
        if let Some(v) = env(config::WEBHOOK_CONCURRENCY) {
            c.concurrency = v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or(ConfigError {
                    var: config::WEBHOOK_CONCURRENCY,
                    message: format!("{v:?} is not a number from 1 to 64"),
                })?;
        }
        if let Some(v) = env(config::WEBHOOK_ALLOW_PRIVATE) {
            c.target.allow_private = v.eq_ignore_ascii_case("true") || v == "1";
        }
        Ok(c)
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The endpoint answered with this HTTP status.
    Answered(u16),
    /// No answer: timeout, connection refused, target refused by the guard.
    NoAnswer(String),
}

/// The port that POSTs a message.
#[async_trait]
pub trait WebhookSender: Send + Sync {
    async fn post(&self, url: &EndpointUrl, headers: Vec<(&'static str, String)>, body: String) -> SendOutcome;
}

/// POSTs with reqwest: no redirects followed, no proxy, names resolved
/// through the target guard (so the address connected to is the one
/// checked), IP literals checked before sending.
pub struct HttpSender {
    http: reqwest::Client,
    policy: TargetPolicy,
}

impl HttpSender {
    pub fn new(config: &WebhookConfig) -> Result<Self, reqwest::Error> {
        let http = crate::tls::http_client_builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(GuardedResolver { policy: config.target })
            .user_agent(concat!("batchq-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            policy: config.target,
        })
    }
}

#[async_trait]
impl WebhookSender for HttpSender {
    async fn post(&self, url: &EndpointUrl, headers: Vec<(&'static str, String)>, body: String) -> SendOutcome {
        let u = url.url();
        if let Some(ip) = target::literal_ip(&u) {
            if !self.policy.allows(ip) {
                return SendOutcome::NoAnswer(format!("target {ip} is not a public address"));
            }
        }
        let mut req = self.http.post(u).header("content-type", "application/json");
        for (name, value) in headers {
            req = req.header(name, value);
        }
        match req.body(body).send().await {
            Ok(resp) => SendOutcome::Answered(resp.status().as_u16()),
            Err(e) if e.is_timeout() => SendOutcome::NoAnswer("timed out".into()),
            Err(e) if e.is_connect() => {
                SendOutcome::NoAnswer(format!("could not connect: {}", crate::error::chain(&e)))
            }
            Err(e) => SendOutcome::NoAnswer(crate::error::chain(&e)),
        }
    }
}

/// What one pass over one endpoint did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    pub materialised: u32,
    pub delivered: u32,
    pub retrying: u32,
    pub failed: u32,
}

/// The delivery engine. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    pub store: Arc<dyn WebhookStore>,
    pub requests: Arc<dyn RequestStore>,
    pub jobs: Arc<dyn JobStore>,
    pub clock: Arc<dyn Clock>,
    pub sender: Arc<dyn WebhookSender>,
    pub config: WebhookConfig,
    running: Arc<Mutex<HashMap<EndpointId, JoinHandle<()>>>>,
}

/// Jobs looked at per endpoint and pass for `job.finished` (newest first).
const JOB_SCAN: u32 = 50;

impl Dispatcher {
    pub fn new(
        store: Arc<dyn WebhookStore>,
        requests: Arc<dyn RequestStore>,
        jobs: Arc<dyn JobStore>,
        clock: Arc<dyn Clock>,
        sender: Arc<dyn WebhookSender>,
        config: WebhookConfig,
    ) -> Self {
        Self {
            store,
            requests,
            jobs,
            clock,
            sender,
            config,
            running: Arc::default(),
        }
    }

    /// Starts a pass for every enabled endpoint whose previous pass ended.
    /// Returns at once; the passes run as tasks.
    pub async fn tick(&self) -> Result<usize, StoreError> {
        let endpoints = self.store.enabled_endpoints().await?;
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|_, h| !h.is_finished());
        let mut started = 0;
        for state in endpoints {
            if running.contains_key(&state.endpoint.id) {
                continue;
            }
            let me = self.clone();
            let id = state.endpoint.id.clone();
            running.insert(
                id,
                tokio::spawn(async move {
                    let _ = me.pass(&state).await;
                }),
            );
            started += 1;
        }
        Ok(started)
    }

    /// Waits for the passes started so far (shutdown, tests).
    pub async fn drain(&self) {
        let handles: Vec<JoinHandle<()>> = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            running.drain().map(|(_, h)| h).collect()
        };
        for h in handles {
            let _ = h.await;
        }
    }

    /// One pass over every enabled endpoint, awaited (AWS's scheduled
    /// function, tests).
    pub async fn run_once(&self) -> Result<PassReport, StoreError> {
        let mut total = PassReport::default();
        for state in self.store.enabled_endpoints().await? {
            let r = self.pass(&state).await?;
            total.materialised += r.materialised;
            total.delivered += r.delivered;
            total.retrying += r.retrying;
            total.failed += r.failed;
        }
        Ok(total)
    }

    /// Materialises and sends for one endpoint.
    pub async fn pass(&self, state: &EndpointState) -> Result<PassReport, StoreError> {
        let endpoint = &state.endpoint;
        let mut report = PassReport::default();
        match self.materialise(state).await {
            Ok(n) => report.materialised = n,
            Err(e) => {
                tracing::error!(endpoint = %endpoint.id, error = %e, "materialising webhook events failed; the next pass retries")
            }
        }
        let (delivered, retrying, failed) = self.send_due(endpoint).await?;
        report.delivered = delivered;
        report.retrying = retrying;
        report.failed = failed;
        Ok(report)
    }

    /// Turns new feed entries and finished jobs into stored deliveries.
    pub async fn materialise(&self, state: &EndpointState) -> Result<u32, StoreError> {
        let endpoint = &state.endpoint;
        let mut new = 0;
        if endpoint.wants_requests() {
            let page = self
                .requests
                .feed(&endpoint.tenant, state.cursor.as_ref(), self.config.feed_page)
                .await?;
            if !page.entries.is_empty() {
                let deliveries = self.request_deliveries(endpoint, page.entries).await?;
                match self
                    .store
                    .materialise(&endpoint.id, state.cursor.as_ref(), page.next.as_ref(), deliveries)
                    .await
                {
                    Ok(n) => new += n,
                    // Another pass moved the position first: its deliveries stand.
                    Err(e) if e.is_condition_failed() => {
                        tracing::info!(endpoint = %endpoint.id, "feed position moved by another pass");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        if endpoint.wants(EventType::JobFinished) {
            new += self.job_deliveries(endpoint).await?;
        }
        Ok(new)
    }

    async fn request_deliveries(
        &self,
        endpoint: &Endpoint,
        entries: Vec<FeedEntry>,
    ) -> Result<Vec<Delivery>, StoreError> {
        let now = self.clock.now();
        let mut facts = Vec::new();
        for entry in entries {
            // A new endpoint starts at the feed's beginning but is sent only
            // what finished after it was created.
            if entry.finished_at < endpoint.created_at || !endpoint.wants(event::event_type(entry.event)) {
                continue;
            }
            let (request, result) = match self.requests.get_with_result(&entry.key()).await? {
                Some((r, res)) => (Some(r), res),
                None => (None, None),
            };
            facts.push(RequestFacts { entry, request, result });
        }
        let mut out = Vec::new();
        match endpoint.mode {
            DeliveryMode::PerRequest => {
                for f in &facts {
                    let body = event::request_event(f, event::INLINE_RESPONSE_BYTES);
                    out.push(Delivery::new(
                        endpoint.id.clone(),
                        endpoint.tenant.clone(),
                        EventId::of_entry(&f.entry),
                        Some(event::event_type(f.entry.event)),
                        body.to_string(),
                        now,
                    ));
                }
            }
            DeliveryMode::PerJob => {
                // Group by job in feed order, then cut groups at the batch size.
                let mut groups: BTreeMap<Option<String>, Vec<&RequestFacts>> = BTreeMap::new();
                let mut order: Vec<Option<String>> = Vec::new();
                for f in &facts {
                    let k = f.entry.job.as_ref().map(|j| j.to_string());
                    if !groups.contains_key(&k) {
                        order.push(k.clone());
                    }
                    groups.entry(k).or_default().push(f);
                }
                for k in order {
                    let group = &groups[&k];
                    for chunk in group.chunks(event::BATCH_MAX_EVENTS) {
                        let last = &chunk[chunk.len() - 1].entry;
                        let events: Vec<Value> = chunk
                            .iter()
                            .map(|f| event::request_event(f, event::BATCH_INLINE_RESPONSE_BYTES))
                            .collect();
                        let body = event::batch_event(last.job.as_ref(), events, last);
                        out.push(Delivery::new(
                            endpoint.id.clone(),
                            endpoint.tenant.clone(),
                            EventId::of_batch(last),
                            None,
                            body.to_string(),
                            now,
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    async fn job_deliveries(&self, endpoint: &Endpoint) -> Result<u32, StoreError> {
        let now = self.clock.now();
        let page = self.jobs.list_jobs(Some(&endpoint.tenant), None, JOB_SCAN).await?;
        let finished: Vec<_> = page
            .items
            .into_iter()
            .filter(|j| j.status.is_terminal())
            .filter(|j| j.finished_at.unwrap_or(j.updated_at) >= endpoint.created_at)
            .collect();
        if finished.is_empty() {
            return Ok(0);
        }
        let ids: Vec<DeliveryId> = finished
            .iter()
            .map(|j| DeliveryId::of(&endpoint.id, &EventId::of_job(&j.id)))
            .collect();
        let known = self.store.known_deliveries(&ids).await?;
        let fresh: Vec<Delivery> = finished
            .iter()
            .zip(&ids)
            .filter(|(_, id)| !known.contains(id))
            .map(|(j, _)| {
                Delivery::new(
                    endpoint.id.clone(),
                    endpoint.tenant.clone(),
                    EventId::of_job(&j.id),
                    Some(EventType::JobFinished),
                    event::job_event(&endpoint.tenant, j).to_string(),
                    now,
                )
            })
            .collect();
        if fresh.is_empty() {
            return Ok(0);
        }
        self.store.materialise(&endpoint.id, None, None, fresh).await
    }

    /// Sends the endpoint's due deliveries; returns (delivered, retrying, failed).
    pub async fn send_due(&self, endpoint: &Endpoint) -> Result<(u32, u32, u32), StoreError> {
        let due = self
            .store
            .due(&endpoint.id, self.clock.now(), self.config.sends_per_pass)
            .await?;
        let outcomes: Vec<Result<Delivery, StoreError>> = futures::stream::iter(due)
            .map(|d| self.attempt(endpoint, d))
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        let mut counts = (0, 0, 0);
        for o in outcomes {
            match o?.status {
                crate::webhook::delivery::DeliveryStatus::Delivered => counts.0 += 1,
                crate::webhook::delivery::DeliveryStatus::Pending => counts.1 += 1,
                crate::webhook::delivery::DeliveryStatus::Failed => counts.2 += 1,
            }
        }
        Ok(counts)
    }

    /// One attempt: sign, POST, save the outcome.
    async fn attempt(&self, endpoint: &Endpoint, d: Delivery) -> Result<Delivery, StoreError> {
        let ts = self.clock.now().unix_seconds();
        let sig = signature::sign(&endpoint.secret, d.event_id.as_str(), ts, d.body.as_bytes());
        let headers = vec![
            ("webhook-id", d.event_id.as_str().to_owned()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", sig),
        ];
        let outcome = self.sender.post(&endpoint.url, headers, d.body.clone()).await;
        let now = self.clock.now();
        let next = match &outcome {
            SendOutcome::Answered(code) if (200..300).contains(code) => d.delivered(now),
            SendOutcome::Answered(code) => {
                d.attempt_failed(now, Some(*code), format!("HTTP {code}"), &self.config.schedule)
            }
            SendOutcome::NoAnswer(reason) => d.attempt_failed(now, None, reason.clone(), &self.config.schedule),
        };
        tracing::info!(
            endpoint = %endpoint.id,
            delivery = %next.id,
            event = %next.event_id,
            attempt = next.attempts,
            status = %next.status,
            answer = ?outcome,
            "webhook attempt"
        );
        self.store.save_delivery(&next).await?;
        Ok(next)
    }
}
