//! The webhook delivery engine (`batchq_core::pipeline::dispatch`) over the
//! memory stores and a scripted sender.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::Notify;

use batchq_core::ids::{CustomId, JobId, ModelName, RequestKey, TenantId};
use batchq_core::job::{Job, JobStatus, ProviderKind};
use batchq_core::pipeline::dispatch::{Dispatcher, SendOutcome, WebhookConfig, WebhookSender};
use batchq_core::request::QueueGroup;
use batchq_core::request::{Endpoint as ApiEndpoint, NewRequest};
use batchq_core::store::memory::{MemoryObjects, MemoryStore};
use batchq_core::store::webhooks::memory::MemoryWebhooks;
use batchq_core::store::webhooks::{JobMark, WebhookStore};
use batchq_core::store::{JobStore, ObjectStore, RequestStore};
use batchq_core::time::{Clock, ManualClock, Timestamp};
use batchq_core::transition::RequestUpdate;
use batchq_core::webhook::delivery::{DeliveryStatus, RetrySchedule};
use batchq_core::webhook::endpoint::{DeliveryMode, Endpoint, EndpointId, EndpointUrl, EventType};
use batchq_core::webhook::signature::{verify, SignedHeaders, WebhookSecret};

/// One POST as the sender saw it.
#[derive(Clone, Debug)]
struct Sent {
    url: String,
    headers: HashMap<&'static str, String>,
    body: String,
}

/// Answers per URL from a script (200 once the script is used up); a gated
/// URL waits for its `Notify` before answering.
#[derive(Default)]
struct ScriptedSender {
    script: Mutex<HashMap<String, VecDeque<SendOutcome>>>,
    sent: Mutex<Vec<Sent>>,
    gates: Mutex<HashMap<String, Arc<Notify>>>,
}

impl ScriptedSender {
    fn script(&self, url: &str, answers: Vec<SendOutcome>) {
        self.script.lock().unwrap().insert(url.to_owned(), answers.into());
    }

    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }
}

#[async_trait]
impl WebhookSender for ScriptedSender {
    async fn post(&self, url: &EndpointUrl, headers: Vec<(&'static str, String)>, body: String) -> SendOutcome {
        let gate = self.gates.lock().unwrap().get(url.as_str()).cloned();
        if let Some(g) = gate {
            g.notified().await;
        }
        self.sent.lock().unwrap().push(Sent {
            url: url.as_str().to_owned(),
            headers: headers.into_iter().collect(),
            body,
        });
        self.script
            .lock()
            .unwrap()
            .get_mut(url.as_str())
            .and_then(VecDeque::pop_front)
            .unwrap_or(SendOutcome::Answered(200))
    }
}

struct World {
    requests: Arc<dyn RequestStore>,
    jobs: Arc<dyn JobStore>,
    hooks: Arc<MemoryWebhooks>,
    clock: Arc<ManualClock>,
    sender: Arc<ScriptedSender>,
    dispatcher: Dispatcher,
}

fn t0() -> Timestamp {
    Timestamp::from_millis(1_790_000_000_000)
}

fn world(schedule: RetrySchedule) -> World {
    let objects: Arc<dyn ObjectStore> = Arc::new(MemoryObjects::new(5 * 1024 * 1024));
    let store = Arc::new(MemoryStore::new().placed(objects, batchq_core::app::embedded_inline_limits()));
    let clock = Arc::new(ManualClock::new(t0()));
    let hooks = Arc::new(MemoryWebhooks::new());
    let sender = Arc::new(ScriptedSender::default());
    let config = WebhookConfig {
        schedule,
        ..WebhookConfig::default()
    };
    let dispatcher = Dispatcher::new(hooks.clone(), store.clone(), clock.clone(), sender.clone(), config);
    World {
        requests: store.clone(),
        jobs: store,
        hooks,
        clock,
        sender,
        dispatcher,
    }
}

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

impl World {
    async fn endpoint(&self, url: &str, events: &[EventType], mode: DeliveryMode) -> Endpoint {
        let e = Endpoint {
            id: EndpointId::generate(),
            tenant: acme(),
            url: EndpointUrl::parse(url).unwrap(),
            events: events.iter().copied().collect(),
            mode,
            secret: WebhookSecret::generate(),
            enabled: true,
            description: None,
            created_at: self.clock.now(),
            updated_at: self.clock.now(),
        };
        self.hooks.create_endpoint(&e, None).await.unwrap();
        e
    }

    /// Enqueues and cancels `ids`: each becomes a `request.cancelled` feed entry.
    async fn cancelled(&self, ids: &[&str]) {
        let now = self.clock.now();
        let new: Vec<NewRequest> = ids
            .iter()
            .map(|id| {
                NewRequest::new(
                    acme(),
                    CustomId::parse(*id).unwrap(),
                    ApiEndpoint::ChatCompletions,
                    ModelName::parse("gpt-4o-mini").unwrap(),
                    r#"{"messages":[{"content":"hi","role":"user"}],"model":"gpt-4o-mini"}"#.into(),
                )
            })
            .collect();
        self.requests.insert(new, now).await.unwrap();
        for id in ids {
            let key = RequestKey::derive(&acme(), &CustomId::parse(*id).unwrap());
            let req = self.requests.get(&key).await.unwrap().unwrap();
            self.requests.apply(RequestUpdate::cancel(&req, now)).await.unwrap();
        }
    }
}

impl World {
    /// A job of acme's, created now, left open.
    async fn open_job(&self) -> Job {
        let now = self.clock.now();
        let mut job = Job::new(
            JobId::generate(),
            ProviderKind::OpenAi,
            &QueueGroup::of(ApiEndpoint::ChatCompletions, ModelName::parse("gpt-4o-mini").unwrap()),
            now,
            now.plus(Duration::from_secs(960)),
        );
        job.tenants = vec![acme()];
        self.jobs.create_job(&job).await.unwrap();
        self.jobs.add_job_tenants(&job, &[acme()]).await.unwrap();
        job
    }

    async fn finish_job(&self, job: &Job) {
        let current = self.jobs.get_job(&job.id).await.unwrap().unwrap();
        let mut next = current.clone();
        next.finish(JobStatus::Done, self.clock.now()).unwrap();
        self.jobs.save_job(&current, next).await.unwrap();
    }
}

fn no_retries() -> RetrySchedule {
    RetrySchedule {
        delays: vec![Duration::from_secs(1), Duration::from_secs(1)],
        min_span: Duration::ZERO,
    }
}

#[tokio::test]
async fn each_feed_entry_becomes_one_signed_message_and_a_second_pass_sends_nothing_more() {
    let w = world(no_retries());
    let e = w
        .endpoint(
            "https://a.example/hook",
            &[EventType::RequestCancelled],
            DeliveryMode::PerRequest,
        )
        .await;
    w.clock.advance(Duration::from_millis(5));
    w.cancelled(&["r-1", "r-2", "r-3"]).await;

    let first = w.dispatcher.run_once().await.unwrap();
    assert_eq!((first.materialised, first.delivered), (3, 3));
    let again = w.dispatcher.run_once().await.unwrap();
    assert_eq!((again.materialised, again.delivered), (0, 0));

    let sent = w.sender.sent();
    assert_eq!(sent.len(), 3);
    let mut custom_ids = BTreeSet::new();
    for s in &sent {
        let h = SignedHeaders {
            id: &s.headers["webhook-id"],
            timestamp: &s.headers["webhook-timestamp"],
            signature: &s.headers["webhook-signature"],
        };
        verify(&e.secret, &h, s.body.as_bytes(), w.clock.now().unix_seconds(), 300).unwrap();
        let v: Value = serde_json::from_str(&s.body).unwrap();
        assert_eq!(v["type"], "request.cancelled");
        assert_eq!(v["data"]["status"], "cancelled");
        assert!(s.headers["webhook-id"].starts_with("evt_"));
        custom_ids.insert(v["data"]["custom_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(custom_ids, BTreeSet::from(["r-1".into(), "r-2".into(), "r-3".into()]));
}

#[tokio::test]
async fn a_failed_attempt_is_retried_with_the_same_id_and_body_and_never_resent_after_2xx() {
    let w = world(no_retries());
    let url = "https://a.example/hook";
    w.endpoint(url, &[EventType::RequestCancelled], DeliveryMode::PerRequest)
        .await;
    w.sender.script(
        url,
        vec![SendOutcome::Answered(500), SendOutcome::NoAnswer("timed out".into())],
    );
    w.cancelled(&["r-1"]).await;

    let r = w.dispatcher.run_once().await.unwrap();
    assert_eq!((r.delivered, r.retrying), (0, 1));
    // Each wait is at most 1 s (full jitter below the schedule's 1 s).
    for _ in 0..5 {
        w.clock.advance(Duration::from_secs(1));
        w.dispatcher.run_once().await.unwrap();
    }
    let sent = w.sender.sent();
    assert_eq!(sent.len(), 3, "500, timeout, then 200 and nothing after it");
    assert!(sent
        .iter()
        .all(|s| s.headers["webhook-id"] == sent[0].headers["webhook-id"]));
    assert!(sent.iter().all(|s| s.body == sent[0].body));
    let listed = w.hooks.list_deliveries(&acme(), None, None, None, 10).await.unwrap();
    assert_eq!(listed[0].status, DeliveryStatus::Delivered);
    assert_eq!(listed[0].attempts, 3);
}

#[tokio::test]
async fn a_delivery_out_of_retries_is_failed_and_a_replay_sends_it_again() {
    let w = world(RetrySchedule {
        delays: vec![Duration::from_millis(10)],
        min_span: Duration::ZERO,
    });
    let url = "https://a.example/hook";
    w.endpoint(url, &[EventType::RequestCancelled], DeliveryMode::PerRequest)
        .await;
    w.sender
        .script(url, vec![SendOutcome::Answered(503), SendOutcome::Answered(503)]);
    w.cancelled(&["r-1"]).await;
    w.dispatcher.run_once().await.unwrap();
    w.clock.advance(Duration::from_secs(1));
    let r = w.dispatcher.run_once().await.unwrap();
    assert_eq!(r.failed, 1);
    let failed = w
        .hooks
        .list_deliveries(&acme(), Some(DeliveryStatus::Failed), None, None, 10)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].last_status_code, Some(503));
    w.clock.advance(Duration::from_secs(60));
    assert_eq!(
        w.dispatcher.run_once().await.unwrap().delivered,
        0,
        "a failed delivery is not retried"
    );

    w.hooks
        .save_delivery(&failed[0].clone().replayed(w.clock.now()))
        .await
        .unwrap();
    assert_eq!(w.dispatcher.run_once().await.unwrap().delivered, 1);
    let sent = w.sender.sent();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[2].headers["webhook-id"], sent[0].headers["webhook-id"]);
}

#[tokio::test]
async fn events_from_before_the_endpoint_and_of_types_not_subscribed_are_not_sent() {
    let w = world(no_retries());
    w.cancelled(&["before"]).await;
    w.clock.advance(Duration::from_millis(5));
    w.endpoint(
        "https://a.example/hook",
        &[EventType::RequestCompleted],
        DeliveryMode::PerRequest,
    )
    .await;
    let all = w
        .endpoint("https://b.example/hook", &EventType::ALL, DeliveryMode::PerRequest)
        .await;
    w.clock.advance(Duration::from_millis(5));
    w.cancelled(&["after"]).await;
    w.dispatcher.run_once().await.unwrap();
    let sent = w.sender.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].url, all.url.as_str());
    assert!(sent[0].body.contains("\"after\""));
    // The position moved past what was skipped: nothing is read again.
    let states = w.hooks.enabled_endpoints().await.unwrap();
    assert!(states.iter().all(|s| s.cursor.is_some()));
}

#[tokio::test]
async fn per_job_mode_sends_the_events_found_together_as_one_batch() {
    let w = world(no_retries());
    w.endpoint(
        "https://a.example/hook",
        &[EventType::RequestCancelled],
        DeliveryMode::PerJob,
    )
    .await;
    w.cancelled(&["r-1", "r-2", "r-3"]).await;
    w.dispatcher.run_once().await.unwrap();
    let sent = w.sender.sent();
    assert_eq!(sent.len(), 1);
    let v: Value = serde_json::from_str(&sent[0].body).unwrap();
    assert_eq!(v["type"], "request.batch");
    assert_eq!(v["data"]["events"].as_array().unwrap().len(), 3);
    assert_eq!(v["data"]["events"][0]["type"], "request.cancelled");
}

#[tokio::test]
async fn a_slow_endpoint_does_not_hold_up_another() {
    let w = world(no_retries());
    let slow = "https://slow.example/hook";
    w.endpoint(slow, &[EventType::RequestCancelled], DeliveryMode::PerRequest)
        .await;
    let fast = w
        .endpoint(
            "https://fast.example/hook",
            &[EventType::RequestCancelled],
            DeliveryMode::PerRequest,
        )
        .await;
    let gate = Arc::new(Notify::new());
    w.sender.gates.lock().unwrap().insert(slow.into(), gate.clone());
    w.cancelled(&["r-1"]).await;

    w.dispatcher.tick().await.unwrap();
    let mut fast_done = false;
    for _ in 0..200 {
        let ds = w
            .hooks
            .list_deliveries(&acme(), Some(DeliveryStatus::Delivered), Some(&fast.id), None, 10)
            .await
            .unwrap();
        if ds.len() == 1 {
            fast_done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(fast_done, "the fast endpoint waited for the slow one");
    // A second tick does not start another pass for the endpoint still busy.
    assert_eq!(w.dispatcher.tick().await.unwrap(), 1);
    gate.notify_one();
    w.dispatcher.drain().await;
    let delivered = w
        .hooks
        .list_deliveries(&acme(), Some(DeliveryStatus::Delivered), None, None, 10)
        .await
        .unwrap();
    assert_eq!(delivered.len(), 2);
}

#[tokio::test]
async fn a_job_that_finishes_after_sixty_newer_jobs_still_gets_its_job_finished_event() {
    let w = world(no_retries());
    w.endpoint(
        "https://a.example/hook",
        &[EventType::JobFinished],
        DeliveryMode::PerRequest,
    )
    .await;
    w.clock.advance(Duration::from_millis(5));
    let oldest = w.open_job().await;
    let mut newer = Vec::new();
    for _ in 0..60 {
        w.clock.advance(Duration::from_millis(5));
        newer.push(w.open_job().await);
    }
    for j in &newer {
        w.finish_job(j).await;
    }
    let first = w.dispatcher.run_once().await.unwrap();
    assert_eq!(first.delivered, 60, "each newer job's event");

    // Long after, past the settling time, the oldest job finishes last.
    w.clock.advance(Duration::from_secs(2 * 3600));
    w.dispatcher.run_once().await.unwrap();
    w.finish_job(&oldest).await;
    let last = w.dispatcher.run_once().await.unwrap();
    assert_eq!((last.materialised, last.delivered), (1, 1));

    let sent = w.sender.sent();
    let mut jobs = BTreeSet::new();
    for s in &sent {
        let v: Value = serde_json::from_str(&s.body).unwrap();
        assert_eq!(v["type"], "job.finished");
        assert!(
            jobs.insert(v["data"]["id"].as_str().unwrap().to_owned()),
            "one event per job"
        );
    }
    assert_eq!(jobs.len(), 61);
    assert!(jobs.contains(oldest.id.as_str()));
    let again = w.dispatcher.run_once().await.unwrap();
    assert_eq!((again.materialised, again.delivered), (0, 0));
}

#[tokio::test]
async fn the_job_mark_passes_finished_jobs_and_stops_at_the_oldest_open_one() {
    let w = world(no_retries());
    w.endpoint(
        "https://a.example/hook",
        &[EventType::JobFinished],
        DeliveryMode::PerRequest,
    )
    .await;
    let a = w.open_job().await;
    w.clock.advance(Duration::from_millis(5));
    let b = w.open_job().await;
    w.clock.advance(Duration::from_millis(5));
    let c = w.open_job().await;
    w.finish_job(&a).await;
    w.finish_job(&c).await;
    w.clock.advance(Duration::from_secs(2 * 3600));
    w.dispatcher.run_once().await.unwrap();
    let marks: Vec<_> = w
        .hooks
        .enabled_endpoints()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.jobs)
        .collect();
    assert_eq!(marks, vec![Some(JobMark::new(a.created_at, a.id.clone()))]);
    w.finish_job(&b).await;
    w.dispatcher.run_once().await.unwrap();
    let marks: Vec<_> = w
        .hooks
        .enabled_endpoints()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.jobs)
        .collect();
    assert_eq!(marks, vec![Some(JobMark::new(c.created_at, c.id.clone()))]);
    assert_eq!(w.sender.sent().len(), 3);
}
