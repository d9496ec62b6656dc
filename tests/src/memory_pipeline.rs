//! The pipeline and the HTTP API over the in-memory store: no emulator.
//! [`MemoryPipeline`] mirrors [`Pipeline`](crate::pipeline::Pipeline)'s
//! helpers (rounds, delivery of result files to ingest through the real
//! handler, reads) over [`MemoryStore`] and [`MemoryObjects`], building
//! [`Core`] and [`Api`] directly from the ports (`App` holds DynamoDB).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use batchq_core::api::Api;
use batchq_core::app::inline_limits;
use batchq_core::config::Config;
use batchq_core::ids::{JobId, RequestKey};
use batchq_core::job::Job;
use batchq_core::keys::RESULTS_PREFIX;
use batchq_core::pipeline::{Core, CrashPoints, Ingester, NoCrashes, Poller, Submitter};
use batchq_core::pricing::PriceBook;
use batchq_core::provider::openai::OpenAiClient;
use batchq_core::provider::Provider;
use batchq_core::request::{NewRequest, Payload, Request, RequestResult};
use batchq_core::store::memory::{MemoryObjects, MemoryStore};
use batchq_core::store::placed::PlacedStore;
use batchq_core::store::{JobStore, ObjectStore, RequestStore};
use batchq_core::time::{Clock, ManualClock, SystemClock};
use fake_openai::{FakeConfig, FakeHandle, FakeServer};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The bucket name ingest's handler checks events against.
const BUCKET: &str = "batchq-memory";

/// A whole batchq over the in-memory store and the fake provider.
pub struct MemoryPipeline {
    pub config: Config,
    pub store: Arc<PlacedStore<MemoryStore>>,
    pub objects: MemoryObjects,
    pub fake: FakeHandle,
    pub clock: Arc<ManualClock>,
    pub provider: Arc<dyn Provider>,
    pub prices: Arc<PriceBook>,
    /// Result objects already announced to ingest: key → content digest.
    delivered: Mutex<HashMap<String, String>>,
    /// The store's index lag, when on.
    index_lag: Option<Duration>,
}

/// The configuration's defaults, with no AWS endpoint (nothing calls AWS).
pub fn memory_config(tweak: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::from_lookup(&|_| None).expect("default config parses");
    config.bucket = BUCKET.into();
    config.limits.s3_part_bytes = batchq_core::config::S3_MIN_PART_BYTES;
    tweak(&mut config);
    config
}

/// A fresh in-memory store and its object store, with `config`'s inline limits.
pub fn memory_stores(config: &Config) -> (Arc<PlacedStore<MemoryStore>>, MemoryObjects) {
    let objects = MemoryObjects::new(config.limits.s3_part_bytes);
    let shared: Arc<dyn ObjectStore> = Arc::new(objects.clone());
    let store = Arc::new(MemoryStore::new().placed(shared, inline_limits(config)));
    (store, objects)
}

/// The HTTP API over an in-memory store.
pub fn memory_api(
    config: &Config,
    store: &Arc<PlacedStore<MemoryStore>>,
    objects: &MemoryObjects,
    clock: Arc<dyn Clock>,
) -> Api {
    Api::new(
        store.clone(),
        store.clone(),
        store.clone(),
        Arc::new(objects.clone()),
        clock,
        &config.limits,
    )
}

impl MemoryPipeline {
    /// Defaults suited to tests: every queued group is due at once.
    pub async fn start(fake: FakeConfig, tweak: impl FnOnce(&mut Config)) -> Self {
        let config = memory_config(|c| {
            c.policy.submit_min_requests = 1;
            tweak(c)
        });
        let (store, objects) = memory_stores(&config);
        let fake = FakeServer::start(fake).await.expect("start fake provider");
        let mut provider_cfg = config.provider.clone();
        provider_cfg.base_url = fake.base_url();
        provider_cfg.list_lag = Duration::ZERO;
        let provider = OpenAiClient::new(&provider_cfg, "sk-fake")
            .expect("provider client")
            .with_backoff(Duration::from_millis(5), Duration::from_millis(50));
        Self {
            config,
            store,
            objects,
            fake,
            clock: Arc::new(ManualClock::new(SystemClock.now())),
            provider: Arc::new(provider),
            prices: Arc::new(PriceBook::bundled()),
            delivered: Mutex::new(HashMap::new()),
            index_lag: None,
        }
    }

    /// A pipeline whose fake provider starts with `faults`.
    pub async fn with_faults(faults: fake_openai::Faults, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start(
            FakeConfig {
                faults,
                ..FakeConfig::default()
            },
            tweak,
        )
        .await
    }

    /// The same pipeline with the store's listings lagging writes by `lag`
    /// (`MemoryStore::set_index_lag`, as the emulator's index lag).
    pub fn with_index_lag(mut self, lag: Duration) -> Self {
        self.store.set_index_lag(lag);
        self.index_lag = Some(lag);
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every stored row and object key, for "nothing changed" comparisons.
    pub fn snapshot(&self) -> std::collections::BTreeMap<String, String> {
        let mut out = self.store.snapshot();
        for key in self.objects.keys() {
            out.insert(format!("object|{key}"), String::new());
        }
        out
    }

    pub fn core_with(&self, crash: Arc<dyn CrashPoints>) -> Core {
        Core {
            requests: self.store.clone(),
            jobs: self.store.clone(),
            savings: self.store.clone(),
            objects: Arc::new(self.objects.clone()),
            clock: self.clock.clone(),
            config: Arc::new(self.config.clone()),
            crash,
        }
    }

    pub fn core(&self) -> Core {
        self.core_with(Arc::new(NoCrashes))
    }

    pub fn api(&self) -> Api {
        memory_api(&self.config, &self.store, &self.objects, self.clock.clone())
    }

    pub fn submitter_with(&self, crash: Arc<dyn CrashPoints>) -> Submitter {
        Submitter::new(self.core_with(crash), self.provider.clone())
    }

    pub fn ingester_with(&self, crash: Arc<dyn CrashPoints>) -> Ingester {
        Ingester::new(self.core_with(crash), self.prices.clone())
    }

    pub fn poller_with(&self, crash: Arc<dyn CrashPoints>) -> Poller {
        Poller::new(
            self.core_with(crash.clone()),
            self.provider.clone(),
            self.ingester_with(crash),
        )
    }

    pub fn submitter(&self) -> Submitter {
        self.submitter_with(Arc::new(NoCrashes))
    }

    pub fn ingester(&self) -> Ingester {
        self.ingester_with(Arc::new(NoCrashes))
    }

    pub fn poller(&self) -> Poller {
        self.poller_with(Arc::new(NoCrashes))
    }

    /// The S3 notification for an object under `key` of this pipeline's bucket.
    pub fn s3_event(&self, key: &str, size: u64, etag: &str) -> aws_lambda_events::event::s3::S3Event {
        crate::pipeline::s3_event(BUCKET, key, size, etag)
    }

    /// Runs the ingest Lambda handler on one S3 event.
    pub async fn ingest_via_handler(
        &self,
        ingester: &Ingester,
        event: aws_lambda_events::event::s3::S3Event,
    ) -> Result<Value, String> {
        batchq_ingest::handle(
            ingester,
            BUCKET,
            lambda_runtime::LambdaEvent::new(event, Default::default()),
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// Stores requests directly.
    pub async fn enqueue(&self, requests: &[NewRequest]) {
        for chunk in requests.chunks(100) {
            self.store
                .insert(chunk.to_vec(), self.clock.now())
                .await
                .expect("insert requests");
        }
    }

    /// Delivers an ObjectCreated event for every new or rewritten result
    /// object to the ingest Lambda handler.
    pub async fn deliver(&self, ingester: &Ingester) -> Result<(), String> {
        let mut events = Vec::new();
        for key in self.objects.keys() {
            if !key.starts_with(RESULTS_PREFIX) {
                continue;
            }
            let Some(bytes) = self.objects.get(&key).await.expect("read result object") else {
                continue;
            };
            let digest = format!("{:x}", Sha256::digest(&bytes));
            let mut delivered = self.delivered.lock().unwrap();
            if delivered.get(&key) == Some(&digest) {
                continue;
            }
            delivered.insert(key.clone(), digest.clone());
            events.push(crate::pipeline::s3_event(BUCKET, &key, bytes.len() as u64, &digest));
        }
        for ev in events {
            batchq_ingest::handle(
                ingester,
                BUCKET,
                lambda_runtime::LambdaEvent::new(ev, Default::default()),
            )
            .await
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// One round of the schedule: submit, poll, deliver new result files.
    pub async fn round(&self) {
        self.submitter().run(Default::default()).await.expect("submit");
        self.poller().run().await.expect("poll");
        self.deliver(&self.ingester()).await.expect("ingest");
    }

    /// Rounds until every request is terminal (or `max` rounds passed),
    /// paced by the index lag when on (the schedule runs minutes apart).
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

    pub async fn all_terminal(&self, keys: &[RequestKey]) -> bool {
        let states = self.states(keys).await;
        assert_eq!(states.len(), keys.len(), "some of these keys are not stored");
        states.values().all(|r| r.status.is_terminal())
    }

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
        match payload {
            Payload::Inline(s) => serde_json::from_str(s).expect("stored response is JSON"),
            Payload::S3 { key, .. } => {
                let bytes = self.objects.get(key).await.unwrap().expect("response object");
                serde_json::from_slice(&bytes).expect("stored response is JSON")
            }
        }
    }

    /// Every job as stored now, newest first (the lag waited out first).
    pub async fn all_jobs(&self) -> Vec<Job> {
        if let Some(lag) = self.index_lag {
            tokio::time::sleep(lag + Duration::from_millis(50)).await;
        }
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.store.list_jobs(None, cursor, 100).await.expect("list jobs");
            out.extend(page.items);
            match page.next {
                Some(n) => cursor = Some(n),
                None => return out,
            }
        }
    }

    pub async fn job(&self, id: &JobId) -> Job {
        self.store.get_job(id).await.unwrap().expect("job exists")
    }
}
