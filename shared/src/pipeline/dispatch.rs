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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::config;
use crate::feed::{FeedCursor, FeedEntry};
use crate::ids::TenantId;
use crate::store::webhooks::{EndpointState, JobMark, WebhookStore, MATERIALISE_MAX};
use crate::store::{DeliveryReads, StoreError};
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

impl PassReport {
    /// Attempts made (each ends delivered, retrying or failed).
    pub fn attempts(&self) -> u32 {
        self.delivered + self.retrying + self.failed
    }
}

/// One `request.batch` delivery of a run of one job's events.
fn batch_delivery(endpoint: &Endpoint, chunk: Vec<(&RequestFacts, Value)>, now: crate::time::Timestamp) -> Delivery {
    let last = &chunk[chunk.len() - 1].0.entry;
    let events: Vec<Value> = chunk.into_iter().map(|(_, ev)| ev).collect();
    let body = event::batch_event(last.job.as_ref(), events, last);
    Delivery::new(
        endpoint.id.clone(),
        endpoint.tenant.clone(),
        EventId::of_batch(last),
        None,
        body.to_string(),
        now,
    )
}

/// What one [`Dispatcher::run_within`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunReport {
    /// Enabled endpoints passed over.
    pub endpoints: u32,
    pub materialised: u32,
    pub delivered: u32,
    /// Attempts that failed and will be retried.
    pub retrying: u32,
    /// Deliveries that ran out of retries in this run.
    pub failed: u32,
    /// Endpoints whose pass failed (a store error); the next run retries.
    pub errors: u32,
    /// Seconds since the oldest event not yet delivered came about (0: none).
    pub oldest_undelivered_secs: u64,
}

impl RunReport {
    /// Attempts made (each ends delivered, retrying or failed).
    pub fn attempts(&self) -> u32 {
        self.delivered + self.retrying + self.failed
    }
}

/// The delivery engine. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    pub store: Arc<dyn WebhookStore>,
    /// The request feed, requests with their results and the jobs list.
    pub reads: Arc<dyn DeliveryReads>,
    pub clock: Arc<dyn Clock>,
    pub sender: Arc<dyn WebhookSender>,
    pub config: WebhookConfig,
    running: Arc<Mutex<HashMap<EndpointId, JoinHandle<()>>>>,
    /// Told what each pass that [`Dispatcher::tick`] started did (`batchq
    /// serve` counts them for `GET /metrics`).
    on_pass: Option<PassHook>,
}

/// What [`Dispatcher::on_pass`] is told each pass's report through.
pub type PassHook = Arc<dyn Fn(&PassReport) + Send + Sync>;

/// Jobs read per page when looking for finished jobs after a job mark.
const JOB_PAGE: u32 = 100;

/// How new a job may be and still be passed by the job mark (see
/// [`Dispatcher::job_deliveries`]).
const JOB_SETTLE: Duration = Duration::from_secs(3600);

/// Bytes of delivery bodies written per atomic write (DynamoDB takes 4 MB
/// per transaction).
const MATERIALISE_MAX_BYTES: usize = 3 * 1024 * 1024;

impl Dispatcher {
    pub fn new(
        store: Arc<dyn WebhookStore>,
        reads: Arc<dyn DeliveryReads>,
        clock: Arc<dyn Clock>,
        sender: Arc<dyn WebhookSender>,
        config: WebhookConfig,
    ) -> Self {
        Self {
            store,
            reads,
            clock,
            sender,
            config,
            running: Arc::default(),
            on_pass: None,
        }
    }

    /// This dispatcher telling `on_pass` what each pass [`Self::tick`]
    /// started did.
    pub fn on_pass(mut self, on_pass: PassHook) -> Self {
        self.on_pass = Some(on_pass);
        self
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
                    if let (Ok(report), Some(on_pass)) = (me.pass(&state).await, &me.on_pass) {
                        on_pass(&report);
                    }
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

    /// One pass over the enabled endpoints of `tenants` (all when `None`),
    /// every endpoint at once, each starting no attempt after `budget` has
    /// passed (one in flight ends within [`WebhookConfig::timeout`]); then
    /// the age of the oldest event not yet delivered to those endpoints.
    /// AWS's deliver function runs this; an endpoint whose pass fails is
    /// counted and the others go on.
    pub async fn run_within(
        &self,
        tenants: Option<&BTreeSet<TenantId>>,
        budget: Duration,
    ) -> Result<RunReport, StoreError> {
        let deadline = tokio::time::Instant::now() + budget;
        let wanted = |state: &EndpointState| tenants.is_none_or(|t| t.contains(&state.endpoint.tenant));
        let endpoints: Vec<EndpointState> = self
            .store
            .enabled_endpoints()
            .await?
            .into_iter()
            .filter(wanted)
            .collect();
        let passes = futures::future::join_all(endpoints.iter().map(|state| async move {
            let r = self.pass_until(state, Some(deadline)).await;
            if let Err(e) = &r {
                tracing::error!(endpoint = %state.endpoint.id, error = %e, "webhook pass failed; the next run retries");
            }
            r
        }))
        .await;
        let mut report = RunReport {
            endpoints: endpoints.len() as u32,
            ..RunReport::default()
        };
        for r in passes {
            match r {
                Ok(p) => {
                    report.materialised += p.materialised;
                    report.delivered += p.delivered;
                    report.retrying += p.retrying;
                    report.failed += p.failed;
                }
                Err(_) => report.errors += 1,
            }
        }
        report.oldest_undelivered_secs = self.oldest_undelivered(tenants).await?;
        Ok(report)
    }

    /// Seconds since the oldest event not yet delivered to an enabled
    /// endpoint (of `tenants`) came about: the oldest pending delivery, or
    /// the oldest feed entry an endpoint wants and has not yet turned into
    /// deliveries. 0 when nothing waits.
    pub async fn oldest_undelivered(&self, tenants: Option<&BTreeSet<TenantId>>) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let mut oldest: Option<crate::time::Timestamp> = None;
        let mut older = |t: crate::time::Timestamp| oldest = Some(oldest.map_or(t, |o| o.min(t)));
        for state in self.store.enabled_endpoints().await? {
            if tenants.is_some_and(|t| !t.contains(&state.endpoint.tenant)) {
                continue;
            }
            if let Some(t) = self.store.oldest_pending(&state.endpoint.id).await? {
                older(t);
            }
            if state.endpoint.wants_requests() {
                let page = self
                    .reads
                    .feed(&state.endpoint.tenant, state.cursor.as_ref(), 1)
                    .await?;
                if let Some(e) = page.entries.first() {
                    older(e.finished_at.max(state.endpoint.created_at));
                }
            }
        }
        Ok(oldest.map_or(0, |t| now.since(t).as_secs()))
    }

    /// Materialises and sends for one endpoint.
    pub async fn pass(&self, state: &EndpointState) -> Result<PassReport, StoreError> {
        self.pass_until(state, None).await
    }

    /// [`Dispatcher::pass`] starting no attempt after `deadline`.
    pub async fn pass_until(
        &self,
        state: &EndpointState,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<PassReport, StoreError> {
        let endpoint = &state.endpoint;
        let mut report = PassReport::default();
        match self.materialise(state).await {
            Ok(n) => report.materialised = n,
            Err(e) => {
                tracing::error!(endpoint = %endpoint.id, error = %e, "materialising webhook events failed; the next pass retries")
            }
        }
        let (delivered, retrying, failed) = self.send_due_until(endpoint, deadline).await?;
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
                .reads
                .feed(&endpoint.tenant, state.cursor.as_ref(), self.config.feed_page)
                .await?;
            let facts = self.request_facts(endpoint, page.entries).await?;
            // The page in parts a store writes atomically; each part's
            // deliveries and the position after its last entry go together.
            let mut at = state.cursor.clone();
            let mut rest: &[(FeedCursor, Option<RequestFacts>)] = &facts;
            while !rest.is_empty() {
                let mut take = rest.len();
                let deliveries = loop {
                    let d = self.build_deliveries(endpoint, &rest[..take]);
                    let bytes: usize = d.iter().map(|d| d.body.len()).sum();
                    if take == 1 || (d.len() <= MATERIALISE_MAX && bytes <= MATERIALISE_MAX_BYTES) {
                        break d;
                    }
                    take = take.div_ceil(2);
                };
                let next = rest[take - 1].0.clone();
                match self
                    .store
                    .materialise(&endpoint.id, at.as_ref(), Some(&next), deliveries)
                    .await
                {
                    Ok(n) => new += n,
                    // Another pass moved the position first: its deliveries stand.
                    Err(e) if e.is_condition_failed() => {
                        tracing::info!(endpoint = %endpoint.id, "feed position moved by another pass");
                        break;
                    }
                    Err(e) => return Err(e),
                }
                at = Some(next);
                rest = &rest[take..];
            }
        }
        if endpoint.wants(EventType::JobFinished) {
            new += self.job_deliveries(state).await?;
        }
        Ok(new)
    }

    /// Each entry's cursor with what its event says (`None`: an entry the
    /// endpoint is not sent).
    async fn request_facts(
        &self,
        endpoint: &Endpoint,
        entries: Vec<FeedEntry>,
    ) -> Result<Vec<(FeedCursor, Option<RequestFacts>)>, StoreError> {
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            // A new endpoint starts at the feed's beginning but is sent only
            // what finished after it was created.
            if entry.finished_at < endpoint.created_at || !endpoint.wants(event::event_type(entry.event)) {
                out.push((entry.cursor, None));
                continue;
            }
            let (request, result) = match self.reads.get_with_result(&entry.key()).await? {
                Some((r, res)) => (Some(r), res),
                None => (None, None),
            };
            out.push((entry.cursor.clone(), Some(RequestFacts { entry, request, result })));
        }
        Ok(out)
    }

    /// The deliveries of a run of feed entries.
    fn build_deliveries(&self, endpoint: &Endpoint, part: &[(FeedCursor, Option<RequestFacts>)]) -> Vec<Delivery> {
        let now = self.clock.now();
        let facts: Vec<&RequestFacts> = part.iter().filter_map(|(_, f)| f.as_ref()).collect();
        let mut out = Vec::new();
        match endpoint.mode {
            DeliveryMode::PerRequest => {
                for f in facts {
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
                // Group by job in feed order, then cut groups at the batch
                // size or when the body would grow past BATCH_MAX_BYTES.
                let mut groups: BTreeMap<Option<String>, Vec<&RequestFacts>> = BTreeMap::new();
                let mut order: Vec<Option<String>> = Vec::new();
                for f in facts {
                    let k = f.entry.job.as_ref().map(|j| j.to_string());
                    if !groups.contains_key(&k) {
                        order.push(k.clone());
                    }
                    groups.entry(k).or_default().push(f);
                }
                for k in order {
                    let mut chunk: Vec<(&RequestFacts, Value)> = Vec::new();
                    let mut bytes = 0;
                    for f in &groups[&k] {
                        let ev = event::request_event(f, event::BATCH_INLINE_RESPONSE_BYTES);
                        let len = ev.to_string().len();
                        if !chunk.is_empty()
                            && (chunk.len() == event::BATCH_MAX_EVENTS || bytes + len > event::BATCH_MAX_BYTES)
                        {
                            out.push(batch_delivery(endpoint, std::mem::take(&mut chunk), now));
                            bytes = 0;
                        }
                        bytes += len;
                        chunk.push((f, ev));
                    }
                    if !chunk.is_empty() {
                        out.push(batch_delivery(endpoint, chunk, now));
                    }
                }
            }
        }
        out
    }

    /// Stores a `job.finished` delivery for each of the tenant's jobs after
    /// the endpoint's job mark that finished (and was not stored yet), and
    /// moves the mark past the oldest run of finished jobs, in one write.
    /// Every job after the mark is looked at, so none is missed however
    /// many newer jobs exist; the mark keeps the look short.
    async fn job_deliveries(&self, state: &EndpointState) -> Result<u32, StoreError> {
        let endpoint = &state.endpoint;
        let now = self.clock.now();
        // The tenant's jobs after the mark, newest first.
        let mut after_mark = Vec::new();
        let mut cursor = None;
        'pages: loop {
            let page = self.reads.list_jobs(Some(&endpoint.tenant), cursor, JOB_PAGE).await?;
            for j in page.items {
                let mark = JobMark::new(j.created_at, j.id.clone());
                if state.jobs.as_ref().is_some_and(|m| mark <= *m) {
                    break 'pages;
                }
                after_mark.push(j);
            }
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        after_mark.reverse();
        // The mark moves over finished jobs, oldest first, up to the first
        // open one, and not over the last JOB_SETTLE of jobs: a job is
        // listed for its tenant shortly after it is created (submit), so an
        // older job could still appear behind a very new one.
        let settled = now.millis() - JOB_SETTLE.as_millis() as i64;
        let next_mark = after_mark
            .iter()
            .take_while(|j| j.status.is_terminal() && j.created_at.millis() <= settled)
            .last()
            .map(|j| JobMark::new(j.created_at, j.id.clone()));
        let finished: Vec<_> = after_mark
            .iter()
            .filter(|j| j.status.is_terminal())
            .filter(|j| j.finished_at.unwrap_or(j.updated_at) >= endpoint.created_at)
            .collect();
        let ids: Vec<DeliveryId> = finished
            .iter()
            .map(|j| DeliveryId::of(&endpoint.id, &EventId::of_job(&j.id)))
            .collect();
        let known = if ids.is_empty() {
            Vec::new()
        } else {
            self.store.known_deliveries(&ids).await?
        };
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
        if fresh.is_empty() && next_mark.is_none() {
            return Ok(0);
        }
        let mut new = 0;
        // Write in parts a store takes in one atomic write, each conditioned
        // on the mark; the mark moves with the last part (a part before it
        // only adds deliveries, which a re-run finds stored).
        let parts: Vec<Vec<Delivery>> = if fresh.is_empty() {
            vec![Vec::new()]
        } else {
            fresh.chunks(MATERIALISE_MAX).map(<[Delivery]>::to_vec).collect()
        };
        let last = parts.len() - 1;
        for (i, part) in parts.into_iter().enumerate() {
            let to = if i == last { next_mark.as_ref() } else { None };
            match self
                .store
                .materialise_jobs(&endpoint.id, state.jobs.as_ref(), to, part)
                .await
            {
                Ok(n) => new += n,
                Err(e) if e.is_condition_failed() => {
                    tracing::info!(endpoint = %endpoint.id, "job mark moved by another pass");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(new)
    }

    /// Sends the endpoint's due deliveries; returns (delivered, retrying, failed).
    pub async fn send_due(&self, endpoint: &Endpoint) -> Result<(u32, u32, u32), StoreError> {
        self.send_due_until(endpoint, None).await
    }

    /// [`Dispatcher::send_due`] starting no attempt after `deadline` (the
    /// ones not started stay due for the next pass).
    async fn send_due_until(
        &self,
        endpoint: &Endpoint,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(u32, u32, u32), StoreError> {
        let due = self
            .store
            .due(&endpoint.id, self.clock.now(), self.config.sends_per_pass)
            .await?;
        let outcomes: Vec<Result<Delivery, StoreError>> = futures::stream::iter(due)
            .take_while(|_| std::future::ready(deadline.is_none_or(|d| tokio::time::Instant::now() < d)))
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
