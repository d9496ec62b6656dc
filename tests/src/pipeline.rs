//! A whole batchq on loopback: private stores (in memory, or tables and a
//! bucket on the emulator: see [`crate::stores`]), the fake provider, the
//! pipeline steps wired to them, and the real Lambda handler functions fed
//! with real event shapes. The clock is manual so leases and deadlines pass
//! when a test says so.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::s3::S3Event;
use batchq_core::api::Api;
use batchq_core::config::Config;
use batchq_core::config::ProviderConfig;
use batchq_core::ids::{CustomId, JobId, ModelName, ProviderName, RequestKey, TenantId};
use batchq_core::job::{Job, ProviderKind};
use batchq_core::pipeline::{Core, CrashPoints, Ingester, NoCrashes, Poller, Submitter};
use batchq_core::ports::Ports;
use batchq_core::pricing::PriceBook;
use batchq_core::provider::anthropic::AnthropicClient;
use batchq_core::provider::openai::OpenAiClient;
use batchq_core::provider::{Provider, Providers};
use batchq_core::request::{Endpoint, NewRequest, Payload, Request, RequestResult, RequestStatus};
use batchq_core::routing::{ModelPattern, Route, RoutedProvider, RoutingTable};
use batchq_core::store::ObjectStore;
use batchq_core::time::{Clock, ManualClock, SystemClock};
use fake_openai::{FakeConfig, FakeHandle, FakeServer};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;

use crate::stores::{Store, StoreKind, Stores};

const SCHEDULED_EVENT: &str = include_str!("../fixtures/events/eventbridge-scheduled.json");
const S3_EVENT: &str = include_str!("../fixtures/events/s3-object-created.json");

pub struct Pipeline {
    pub stores: Stores,
    pub fake: FakeHandle,
    pub clock: Arc<ManualClock>,
    /// The OpenAI client (provider instance `openai`).
    pub provider: Arc<dyn Provider>,
    /// The Anthropic client (provider instance `claude`).
    pub anthropic: Arc<dyn Provider>,
    /// Every provider instance on the fake: `openai`, `claude` (Anthropic)
    /// and `groq`.
    pub providers: Providers,
    /// Routes `/v1/messages` to `claude`, `openai/gpt-oss-*` models to
    /// `groq`, everything else to `openai`.
    pub routing: Arc<RoutingTable>,
    /// The request, job and savings ports (`stores.store`).
    pub store: Arc<dyn Store>,
    pub prices: Arc<PriceBook>,
    /// Result objects already announced to ingest: key → ETag.
    delivered: Mutex<HashMap<String, String>>,
    /// The index lag of this pipeline's store, when on.
    index_lag: Option<Duration>,
}

impl Pipeline {
    /// Defaults suited to tests: every queued group is due at once. The
    /// stores are those `BATCHQ_TEST_STORE` names (memory by default).
    pub async fn start(fake: FakeConfig, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_on(StoreKind::from_env(), fake, tweak).await
    }

    /// As [`Pipeline::start`], on stores of `kind`.
    pub async fn start_on(kind: StoreKind, fake: FakeConfig, tweak: impl FnOnce(&mut Config)) -> Self {
        let stores = Stores::on(kind, |c| {
            c.policy.submit_min_requests = 1;
            tweak(c)
        })
        .await;
        let fake = FakeServer::start(fake).await.expect("start fake provider");
        let mut provider_cfg = stores.config.provider.clone();
        provider_cfg.base_url = fake.base_url();
        // The fake's listings do not lag unless a test says so.
        provider_cfg.list_lag = Duration::ZERO;
        let backoff = (Duration::from_millis(5), Duration::from_millis(50));
        let provider: Arc<dyn Provider> = Arc::new(
            OpenAiClient::new(&provider_cfg, "sk-fake")
                .expect("provider client")
                .with_backoff(backoff.0, backoff.1),
        );
        let anthropic_cfg = ProviderConfig {
            kind: ProviderKind::Anthropic,
            api_version: ProviderKind::Anthropic.default_api_version().into(),
            ..provider_cfg.clone()
        };
        let anthropic: Arc<dyn Provider> = Arc::new(
            AnthropicClient::new(&anthropic_cfg, "sk-fake", stores.objects.clone())
                .expect("anthropic client")
                .with_backoff(backoff.0, backoff.1),
        );
        let groq_cfg = ProviderConfig {
            kind: ProviderKind::Groq,
            base_url: fake.groq_base_url(),
            ..provider_cfg.clone()
        };
        let groq: Arc<dyn Provider> = Arc::new(
            OpenAiClient::new(&groq_cfg, "sk-fake")
                .expect("groq client")
                .with_backoff(backoff.0, backoff.1),
        );
        let name = |n: &str| ProviderName::parse(n).unwrap();
        let providers = Providers::new()
            .with(name("openai"), provider.clone())
            .with(name("claude"), anthropic.clone())
            .with(name("groq"), groq);
        let routed = |n: &str, kind: ProviderKind| RoutedProvider {
            name: name(n),
            kind,
            endpoints: kind.endpoints().to_vec(),
        };
        let routing = RoutingTable::new(
            vec![
                routed("openai", ProviderKind::OpenAi),
                routed("claude", ProviderKind::Anthropic),
                routed("groq", ProviderKind::Groq),
            ],
            vec![
                Route {
                    url: Some(Endpoint::Messages),
                    model: ModelPattern::Any,
                    provider: name("claude"),
                },
                Route {
                    url: None,
                    model: ModelPattern::parse("openai/gpt-oss-*").unwrap(),
                    provider: name("groq"),
                },
                Route {
                    url: None,
                    model: ModelPattern::Any,
                    provider: name("openai"),
                },
            ],
        )
        .expect("routing table");
        Self {
            store: stores.store.clone(),
            stores,
            fake,
            clock: Arc::new(ManualClock::new(SystemClock.now())),
            provider,
            anthropic,
            providers,
            routing: Arc::new(routing),
            prices: Arc::new(PriceBook::bundled()),
            delivered: Mutex::new(HashMap::new()),
            index_lag: None,
        }
    }

    /// The same pipeline with its store's eventually consistent listings
    /// lagging writes by `lag` (see [`Stores::set_index_lag`]).
    pub async fn with_index_lag(mut self, lag: Duration) -> Self {
        self.stores.set_index_lag(lag).await;
        self.index_lag = Some(lag);
        self
    }

    /// The index lag, when on.
    pub fn index_lag(&self) -> Option<Duration> {
        self.index_lag
    }

    /// A pipeline whose fake provider starts with `faults`.
    pub async fn with_faults(faults: fake_openai::Faults, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::with_faults_on(StoreKind::from_env(), faults, tweak).await
    }

    /// As [`Pipeline::with_faults`], on stores of `kind`.
    pub async fn with_faults_on(kind: StoreKind, faults: fake_openai::Faults, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_on(
            kind,
            FakeConfig {
                faults,
                ..FakeConfig::default()
            },
            tweak,
        )
        .await
    }

    pub fn config(&self) -> &Config {
        &self.stores.config
    }

    /// The object store (S3 or in memory).
    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.stores.objects
    }

    /// The ports over this pipeline's stores and clock.
    pub fn ports(&self) -> Ports {
        self.stores.ports(self.clock.clone())
    }

    /// The HTTP API over this pipeline's stores and clock.
    pub fn api(&self) -> Api {
        Api::new(self.ports(), &self.stores.config.limits).with_routing(self.routing.clone())
    }

    pub fn core_with(&self, crash: Arc<dyn CrashPoints>) -> Core {
        let config = self.stores.config.clone();
        Core {
            ports: self.ports(),
            config: Arc::new(config),
            crash,
            formats: batchq_core::app::formats(),
            moves: Default::default(),
        }
    }

    pub fn core(&self) -> Core {
        self.core_with(Arc::new(NoCrashes))
    }

    pub fn submitter_with(&self, crash: Arc<dyn CrashPoints>) -> Submitter {
        Submitter::new(self.core_with(crash), self.providers.clone())
    }

    pub fn ingester_with(&self, crash: Arc<dyn CrashPoints>) -> Ingester {
        Ingester::new(self.core_with(crash), self.prices.clone())
    }

    pub fn poller_with(&self, crash: Arc<dyn CrashPoints>) -> Poller {
        Poller::new(
            self.core_with(crash.clone()),
            self.providers.clone(),
            self.ingester_with(crash),
        )
    }

    pub fn submitter(&self) -> Submitter {
        self.submitter_with(Arc::new(NoCrashes))
    }

    pub fn poller(&self) -> Poller {
        self.poller_with(Arc::new(NoCrashes))
    }

    pub fn ingester(&self) -> Ingester {
        self.ingester_with(Arc::new(NoCrashes))
    }

    /// Lets leases run out, so a later run may resume what a crashed one
    /// left. With an index lag, real time passes too: a lease (16 minutes
    /// in AWS) is far longer than a global index's lag (under a second), so
    /// a resume never reads an index older than the claims it resumes.
    pub async fn pass_lease(&self) {
        self.clock
            .advance(self.stores.config.policy.job_lease + Duration::from_secs(1));
        if let Some(lag) = self.index_lag {
            tokio::time::sleep(lag + Duration::from_millis(50)).await;
        }
    }

    /// Stores requests directly (the API has its own tests).
    pub async fn enqueue(&self, requests: &[NewRequest]) {
        for chunk in requests.chunks(100) {
            self.store
                .insert(chunk.to_vec(), self.clock.now())
                .await
                .expect("insert requests");
        }
    }

    /// The EventBridge scheduled event as the schedule delivers it.
    pub fn scheduled_event(&self) -> LambdaEvent<Value> {
        scheduled_event()
    }

    /// Runs the submit Lambda handler on a scheduled event.
    pub async fn submit_via_handler(&self, submitter: &Submitter) -> Result<Value, String> {
        batchq_submit::handle(submitter, self.scheduled_event())
            .await
            .map_err(|e| e.to_string())
    }

    /// What the poll function's report run works with: this pipeline's
    /// API and objects, the configured tenants, and `webhook`.
    pub fn reports(&self, webhook: Option<String>) -> batchq_poll::Reports {
        batchq_poll::Reports::new(
            self.api(),
            self.objects().clone(),
            self.stores.config.report_tenants.clone(),
            webhook,
        )
    }

    /// Runs the poll Lambda handler on a scheduled event.
    pub async fn poll_via_handler(&self, poller: &Poller) -> Result<Value, String> {
        batchq_poll::handle(poller, &self.reports(None), self.scheduled_event())
            .await
            .map_err(|e| e.to_string())
    }

    /// Runs the poll Lambda handler on `payload` (e.g. `{"report": true}`).
    pub async fn poll_event_via_handler(
        &self,
        reports: &batchq_poll::Reports,
        payload: Value,
    ) -> Result<Value, String> {
        let mut event = self.scheduled_event();
        event.payload = payload;
        batchq_poll::handle(&self.poller(), reports, event)
            .await
            .map_err(|e| e.to_string())
    }

    /// The S3 notification S3 sends for an object under `key`.
    pub fn s3_event(&self, key: &str, size: u64, etag: &str) -> S3Event {
        s3_event(&self.stores.config.bucket, key, size, etag)
    }

    /// Result objects whose ObjectCreated event has not been delivered yet
    /// (a re-copy makes a new object, hence a new event, as in S3).
    pub async fn new_result_events(&self) -> Vec<S3Event> {
        let objects = self.stores.result_objects().await;
        let mut delivered = self.delivered.lock().unwrap();
        let mut events = Vec::new();
        for obj in objects {
            if delivered.get(&obj.key) == Some(&obj.etag) {
                continue;
            }
            events.push(self.s3_event(&obj.key, obj.size, &obj.etag));
            delivered.insert(obj.key, obj.etag);
        }
        events
    }

    /// Runs the ingest Lambda handler on one S3 event.
    pub async fn ingest_via_handler(&self, ingester: &Ingester, event: S3Event) -> Result<Value, String> {
        batchq_ingest::handle(
            ingester,
            &self.stores.config.bucket,
            LambdaEvent::new(event, Context::default()),
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// Delivers every new result object's event to ingest.
    pub async fn deliver(&self, ingester: &Ingester) -> Result<(), String> {
        for ev in self.new_result_events().await {
            self.ingest_via_handler(ingester, ev).await?;
        }
        Ok(())
    }

    /// Current states of these requests.
    pub async fn states(&self, keys: &[RequestKey]) -> HashMap<RequestKey, Request> {
        self.store.get_many(keys).await.expect("read states")
    }

    pub async fn result(&self, key: &RequestKey) -> (Request, Option<RequestResult>) {
        self.store
            .get_with_result(key)
            .await
            .expect("read request")
            .expect("request exists")
    }

    /// A stored response body as JSON (inline or from the object store).
    pub async fn response_json(&self, payload: &Payload) -> Value {
        let text = batchq_core::store::placed::payload_text(self.stores.objects.as_ref(), payload)
            .await
            .unwrap()
            .expect("response object");
        serde_json::from_str(&text).expect("stored response is JSON")
    }

    /// Every job, as stored now. The listing comes from an index, which
    /// with a lag may miss a job made a moment ago or show an older copy:
    /// the lag is waited out first and each job read again.
    pub async fn all_jobs(&self) -> Vec<Job> {
        if let Some(lag) = self.index_lag {
            tokio::time::sleep(lag + Duration::from_millis(50)).await;
        }
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.store.list_jobs(None, cursor, 100).await.expect("list jobs");
            for listed in page.items {
                out.push(self.job(&listed.id).await);
            }
            match page.next {
                Some(n) => cursor = Some(n),
                None => return out,
            }
        }
    }

    pub async fn job(&self, id: &JobId) -> Job {
        self.store.get_job(id).await.unwrap().expect("job exists")
    }

    /// One round of the schedule: submit, poll, deliver new result files.
    pub async fn round(&self) {
        self.submitter().run(Default::default()).await.expect("submit");
        self.poller().run().await.expect("poll");
        self.deliver(&self.ingester()).await.expect("ingest");
    }

    /// Rounds until every request is terminal (or `max` rounds passed).
    /// With an index lag, rounds are paced by it: the schedule runs minutes
    /// apart, far longer than an index's lag.
    pub async fn settle(&self, keys: &[RequestKey], max: usize) {
        for _ in 0..max {
            if self.all_terminal(keys).await {
                return;
            }
            if let Some(lag) = self.index_lag {
                tokio::time::sleep(lag + Duration::from_millis(50)).await;
            }
            self.round().await;
        }
    }

    /// Every one of `keys` is stored and terminal (a key that is not
    /// stored is not "done": it would let a wrong key pass for finished).
    /// Every savings row of the default tenant (the one `enqueue` stores for).
    pub async fn default_tenant_savings(&self) -> Vec<batchq_core::store::SavingsRow> {
        batchq_core::store::SavingsStore::savings(
            self.store.as_ref(),
            &batchq_core::ids::TenantId::default_tenant(),
            "0000-00-00",
            "9999-12-31",
        )
        .await
        .expect("savings rows read back")
    }

    pub async fn all_terminal(&self, keys: &[RequestKey]) -> bool {
        let states = self.states(keys).await;
        assert_eq!(states.len(), keys.len(), "some of these keys are not stored");
        states.values().all(|r| r.status.is_terminal())
    }

    /// Every stored row, for "nothing changed" comparisons.
    pub async fn snapshot(&self) -> BTreeMap<String, String> {
        self.stores.snapshot().await
    }
}

/// The EventBridge scheduled event as the schedule delivers it (submit and poll).
pub fn scheduled_event() -> LambdaEvent<Value> {
    LambdaEvent::new(serde_json::from_str(SCHEDULED_EVENT).unwrap(), Context::default())
}

/// The notification S3 sends for an object created under `key` in `bucket` (ingest).
pub fn s3_event(bucket: &str, key: &str, size: u64, etag: &str) -> S3Event {
    let mut v: Value = serde_json::from_str(S3_EVENT).unwrap();
    let rec = &mut v["Records"][0]["s3"];
    rec["bucket"]["name"] = Value::from(bucket);
    rec["bucket"]["arn"] = Value::from(format!("arn:aws:s3:::{bucket}"));
    rec["object"]["key"] = Value::from(key);
    rec["object"]["size"] = Value::from(size);
    rec["object"]["eTag"] = Value::from(etag.trim_matches('"'));
    serde_json::from_value(v).expect("S3 event fixture parses")
}

/// A chat-completion request of the default tenant.
pub fn chat(i: usize, model: &str) -> NewRequest {
    let body = serde_json::json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "Classify the sentiment of the review as positive, negative or mixed."},
            {"role": "user", "content": format!("Review #{i}: the battery lasts {} hours and the screen is fine.", i % 40)}
        ],
        "max_tokens": 5
    });
    new_request(&format!("chat-{i}"), Endpoint::ChatCompletions, model, body)
}

/// An embeddings request of the default tenant.
pub fn embedding(i: usize, model: &str) -> NewRequest {
    let body =
        serde_json::json!({"model": model, "input": format!("Article {i}: quarterly results beat expectations.")});
    new_request(&format!("emb-{i}"), Endpoint::Embeddings, model, body)
}

/// A Messages request of the default tenant, for the `claude` provider.
pub fn message(i: usize, model: &str) -> NewRequest {
    let body = serde_json::json!({
        "model": model,
        "max_tokens": 16,
        "system": "Classify the sentiment of the review as positive, negative or mixed.",
        "messages": [
            {"role": "user", "content": format!("Review #{i}: the keyboard is {} and the hinge creaks.", ["great", "fine", "awful"][i % 3])}
        ]
    });
    new_request(&format!("msg-{i}"), Endpoint::Messages, model, body).routed_to(ProviderName::parse("claude").unwrap())
}

/// A chat request of the default tenant for the `groq` provider.
pub fn groq_chat(i: usize, model: &str) -> NewRequest {
    let mut r = chat(i, model);
    r = new_request(
        &format!("groq-{i}"),
        Endpoint::ChatCompletions,
        model,
        serde_json::from_str(&r.body_json).unwrap(),
    );
    r.routed_to(ProviderName::parse("groq").unwrap())
}

pub fn new_request(custom_id: &str, endpoint: Endpoint, model: &str, body: Value) -> NewRequest {
    NewRequest::new(
        TenantId::default_tenant(),
        CustomId::parse(custom_id).unwrap(),
        endpoint,
        ModelName::parse(model).unwrap(),
        serde_json::to_string(&body).unwrap(),
    )
}

/// What the fake provider answers for a request (its deterministic body).
pub fn expected_response(req: &NewRequest) -> Value {
    let body: Value = serde_json::from_str(&req.body_json).unwrap();
    let answer = match req.endpoint {
        Endpoint::Messages => fake_openai::respond_message(req.key.as_str(), &body),
        _ => fake_openai::respond(req.endpoint.as_str(), req.key.as_str(), &body),
    };
    // Through text, as the stored copy went: floats parse back the same way.
    serde_json::from_str(&answer.to_string()).unwrap()
}

pub fn keys(requests: &[NewRequest]) -> Vec<RequestKey> {
    requests.iter().map(|r| r.key.clone()).collect()
}

/// Checks the lifecycle invariants over a finished run:
/// every request terminal; each provider batch carried a request at most once
/// per attempt; completed results are exactly what the provider produced;
/// the jobs' usage totals equal the sum over completed results (counted once).
/// Every request that reached a terminal state has exactly one entry in
/// its tenant's results feed, reporting that state, and the feed holds
/// nothing else: however the run crashed and was re-run, no transition's
/// entry was lost or written twice.
pub async fn assert_feed_matches(p: &Pipeline, requests: &[NewRequest], states: &HashMap<RequestKey, Request>) {
    let tenants: std::collections::BTreeSet<&TenantId> = requests.iter().map(|r| &r.tenant).collect();
    let mut entries: HashMap<RequestKey, Vec<batchq_core::feed::FeedEvent>> = HashMap::new();
    for t in tenants {
        let mut cursor = None;
        loop {
            let page = p.store.feed(t, cursor.as_ref(), 333).await.expect("read the feed");
            if page.entries.is_empty() {
                break;
            }
            for e in page.entries {
                entries.entry(e.key()).or_default().push(e.event);
            }
            cursor = page.next;
        }
    }
    for req in requests {
        let st = &states[&req.key];
        let got = entries.remove(&req.key).unwrap_or_default();
        let want: Vec<_> = batchq_core::feed::FeedEvent::of(st.status).into_iter().collect();
        assert_eq!(got, want, "{} ended {}: its feed entries", req.custom_id, st.status);
    }
    assert!(entries.is_empty(), "feed entries of no request of the run: {entries:?}");
}

pub async fn assert_invariants(p: &Pipeline, requests: &[NewRequest]) {
    let keys = keys(requests);
    let states = p.states(&keys).await;
    assert_eq!(states.len(), requests.len(), "every request still exists");
    // Batches that failed never ran: they are no attempt of their requests
    // (a full token queue gives the attempt back).
    let mut ran: HashMap<String, u32> = HashMap::new();
    let mut batches_of: HashMap<String, Vec<String>> = HashMap::new();
    let mut failed_batches = 0;
    for sub in p.fake.submissions() {
        let client = match sub.endpoint.as_str() {
            "/v1/messages" => &p.anthropic,
            _ => &p.provider,
        };
        // A message batch is deleted once its results are copied: it ran.
        let (status, job) = match client
            .retrieve_batch(&batchq_core::ids::ProviderBatchId::new(sub.batch_id.clone()))
            .await
        {
            Ok(batch) => (
                batch.status.to_string(),
                batch.job_id_metadata().unwrap_or("?").to_owned(),
            ),
            Err(batchq_core::provider::ProviderError::NotFound { .. }) if sub.endpoint == "/v1/messages" => {
                ("deleted".to_owned(), "?".to_owned())
            }
            Err(e) => panic!("retrieve batch {}: {e}", sub.batch_id),
        };
        if status == "failed" {
            failed_batches += 1;
            continue;
        }
        for id in sub.custom_ids {
            *ran.entry(id.clone()).or_default() += 1;
            batches_of.entry(id).or_default().push(format!(
                "{} (job {job}, file {}, {status})",
                sub.batch_id, sub.input_file_id
            ));
        }
    }
    // A job failed before submission counted an attempt without a batch.
    let abandoned_jobs = p
        .all_jobs()
        .await
        .iter()
        .any(|j| j.status == batchq_core::job::JobStatus::Failed && j.provider_batch_id.is_none());
    let mut completed_usage = batchq_core::request::Usage::default();
    for req in requests {
        let st = &states[&req.key];
        if !st.status.is_terminal() {
            let job = match &st.job_id {
                Some(j) => format!("{:?}", p.store.get_job(j).await.unwrap()),
                None => "no job".into(),
            };
            panic!("{} ended {} ({st:?}); its job: {job}", req.custom_id, st.status);
        }
        let sent = ran.get(req.key.as_str()).copied().unwrap_or(0);
        assert!(
            sent <= st.attempts,
            "{} was in {sent} provider batches that ran, in {} attempts: {:?}",
            req.custom_id,
            st.attempts,
            batches_of.get(req.key.as_str())
        );
        if st.status == RequestStatus::Completed {
            if failed_batches == 0 && !abandoned_jobs {
                assert_eq!(sent, st.attempts, "{}: each attempt was one batch", req.custom_id);
            }
            let (_, result) = p.result(&req.key).await;
            let result = result.expect("a completed request has a result");
            let body = p.response_json(result.response.as_ref().expect("response")).await;
            assert_eq!(
                body,
                expected_response(req),
                "{} got someone else's answer",
                req.custom_id
            );
            completed_usage.add(&result.usage.expect("usage"));
        }
    }
    let mut job_usage = batchq_core::request::Usage::default();
    let jobs = p.all_jobs().await;
    for job in &jobs {
        assert!(job.status.is_terminal(), "job {} left {}", job.id, job.status);
        job_usage.add(&job.totals.usage);
    }
    assert_eq!(
        job_usage, completed_usage,
        "job totals count every completed result exactly once"
    );
    let savings = p.default_tenant_savings().await;
    let mut saved_usage = batchq_core::request::Usage::default();
    let mut saved_cost = batchq_core::money::Money::default();
    for row in &savings {
        saved_usage.add(&row.totals.usage);
        saved_cost += row.totals.batch_cost;
    }
    // Answers paid twice (late answers of a given-up batch) are cost
    // without a saving in the running totals.
    let job_cost = jobs.iter().fold(batchq_core::money::Money::default(), |acc, j| {
        acc + j.totals.batch_cost + j.double_spent_cost
    });
    assert_eq!(
        saved_usage, completed_usage,
        "the running savings totals count every result once"
    );
    assert_eq!(
        saved_cost, job_cost,
        "the running savings totals match the jobs' totals"
    );

    assert_activity_matches(p, requests, &states).await;
    assert_feed_matches(p, requests, &states).await;

    // No job created two provider batches, and every batch is a job's.
    let mut per_job: HashMap<String, u32> = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = p
            .provider
            .list_batches(after.as_deref(), 100)
            .await
            .expect("list batches");
        for b in &page.data {
            let job = b.job_id_metadata().expect("every batch names its job").to_owned();
            *per_job.entry(job).or_default() += 1;
        }
        match page.data.last() {
            Some(last) if page.has_more => after = Some(last.id.clone()),
            _ => break,
        }
    }
    // Message batches carry no job id: each one must be the batch a job
    // records, or a create ran twice.
    for sub in p.fake.submissions().iter().filter(|s| s.endpoint == "/v1/messages") {
        let owners = jobs
            .iter()
            .filter(|j| j.provider_batch_id.as_ref().map(|b| b.as_str()) == Some(sub.batch_id.as_str()))
            .count();
        assert_eq!(owners, 1, "message batch {} is recorded by {owners} jobs", sub.batch_id);
        per_job.insert(
            jobs.iter()
                .find(|j| j.provider_batch_id.as_ref().map(|b| b.as_str()) == Some(sub.batch_id.as_str()))
                .map(|j| j.id.to_string())
                .unwrap_or_default(),
            1,
        );
    }
    for (job, n) in &per_job {
        assert_eq!(*n, 1, "job {job} created {n} provider batches");
    }
    for job in &jobs {
        if let Some(batch) = &job.provider_batch_id {
            assert!(
                per_job.contains_key(job.id.as_str()),
                "job {} records batch {batch} the provider never made",
                job.id
            );
        }
    }
}

/// The hourly activity counters of each tenant the requests belong to, over
/// all the time the run took, agree with its status counters (written in
/// the same atomic writes): each request enqueued once, each end counted
/// once, the queue per model empty at the end, each failure under its
/// code; and, when the tenant holds only these requests, with their states.
pub async fn assert_activity_matches(p: &Pipeline, requests: &[NewRequest], states: &HashMap<RequestKey, Request>) {
    use batchq_core::activity::{read_until, summarize, Hour};
    let store = p.stores.store.clone();
    let mut tenants: BTreeMap<TenantId, Vec<&Request>> = BTreeMap::new();
    for r in requests {
        tenants.entry(r.tenant.clone()).or_default().push(&states[&r.key]);
    }
    let now = p.clock.now();
    for (tenant, reqs) in tenants {
        let from = Hour::of(reqs.iter().map(|r| r.created_at).min().expect("a request"));
        let to = Hour::of(now);
        let rows = batchq_core::store::RequestStore::activity(store.as_ref(), &tenant, from, read_until(to, now))
            .await
            .expect("activity");
        let a = summarize(&rows, from, to);
        let counts = batchq_core::store::RequestStore::counts(store.as_ref(), &tenant)
            .await
            .expect("counts");
        let total: i64 = counts.by_status.values().sum();
        let t = a.total;
        assert_eq!(
            (t.enqueued, t.completed, t.failed, t.cancelled),
            (
                total,
                counts.get(RequestStatus::Completed),
                counts.get(RequestStatus::Failed),
                counts.get(RequestStatus::Cancelled)
            ),
            "{tenant}: activity (enqueued, completed, failed, cancelled) against the status counters"
        );
        let queued: i64 = rows.queued_now.values().sum();
        assert_eq!(
            queued,
            counts.get(RequestStatus::Queued),
            "{tenant}: queued per model now"
        );
        let last = a.hours.last().expect("an hour");
        assert_eq!(
            last.queued_by_model.values().sum::<i64>(),
            counts.get(RequestStatus::Queued),
            "{tenant}: the queue at the end of the last hour"
        );
        assert_eq!(
            a.failures.iter().map(|(_, n)| n).sum::<i64>(),
            t.failed,
            "{tenant}: every failure under one code"
        );
        if total == reqs.len() as i64 {
            let mut codes: BTreeMap<String, i64> = BTreeMap::new();
            for r in reqs.iter().filter(|r| r.status == RequestStatus::Failed) {
                let code = r.last_error.as_ref().map(|e| e.code.as_str());
                if let batchq_core::activity::ActivityCount::FailedWith(c) =
                    batchq_core::activity::ActivityCount::failed_with(code)
                {
                    *codes.entry(c).or_default() += 1;
                }
            }
            let found: BTreeMap<String, i64> = a.failures.iter().cloned().collect();
            assert_eq!(
                found, codes,
                "{tenant}: failures by code against the failed requests' errors"
            );
            let completed = reqs.iter().filter(|r| r.status == RequestStatus::Completed).count() as i64;
            assert_eq!(t.completed, completed, "{tenant}: completed against the states");
        }
    }
}
