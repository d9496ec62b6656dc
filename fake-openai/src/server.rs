//! Starting the fake and the handle tests hold on it.

use crate::limits;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::admin::{
    admin_complete, admin_config, admin_enqueued, admin_expire, admin_log, admin_submitted, complete, expire,
    submitted_summary,
};
use crate::config::{FakeConfig, Faults};
use crate::routes::api_router;
use crate::state::{Flavor, Inner, LogEntry, Shared, Submission};

/// A running fake.
pub struct FakeHandle {
    pub(crate) addr: SocketAddr,
    pub(crate) shared: Arc<Shared>,
    pub(crate) shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub(crate) task: Option<tokio::task::JoinHandle<()>>,
}

pub struct FakeServer;

impl FakeServer {
    /// Binds and serves on the current tokio runtime.
    pub async fn start(config: FakeConfig) -> std::io::Result<FakeHandle> {
        let (dir, owns_dir) = match &config.data_dir {
            Some(d) => (d.clone(), false),
            None => (
                std::env::temp_dir().join(format!("fake-openai-{}", uuid::Uuid::new_v4().simple())),
                true,
            ),
        };
        let webhook = match &config.webhook {
            Some(w) => Some((
                w.clone(),
                w.key()
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
            )),
            None => None,
        };
        std::fs::create_dir_all(&dir)?;
        let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                config,
                dir: dir.clone(),
                files: HashMap::new(),
                file_order: Vec::new(),
                batches: BTreeMap::new(),
                by_id: HashMap::new(),
                log: Vec::new(),
                ledger: Vec::new(),
                next: 0,
                route_calls: HashMap::new(),
                peak_enqueued: HashMap::new(),
                anthropic: Default::default(),
            }),
            webhook_log: Mutex::new(Vec::new()),
            dir,
            owns_dir,
        });
        if let Some((w, key)) = webhook {
            crate::webhooks::start(&shared, w, key);
        }
        let app = Router::new()
            .route("/_fake/health", get(|| async { "ok" }))
            .route("/_fake/log", get(admin_log))
            .route("/_fake/submitted", get(admin_submitted))
            .route("/_fake/config", post(admin_config))
            .route("/_fake/batches/{id}/expire", post(admin_expire))
            .route("/_fake/batches/{id}/complete", post(admin_complete))
            .route("/_fake/enqueued", get(admin_enqueued))
            .route(
                "/_fake/webhooks",
                get(
                    |axum::extract::State(s): axum::extract::State<Arc<Shared>>| async move {
                        axum::Json(crate::webhooks::attempts(&s.webhook_log))
                    },
                ),
            )
            .with_state(shared.clone())
            .nest("/v1", api_router(shared.clone(), Flavor::OpenAi))
            .nest("/openai", api_router(shared.clone(), Flavor::Azure))
            .nest("/openai/v1", crate::groq::router(shared.clone()))
            .nest("/together/v1", crate::together::router(shared.clone()))
            .merge(crate::anthropic::router(shared.clone()))
            .layer(DefaultBodyLimit::disable());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(FakeHandle {
            addr,
            shared,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

impl FakeHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`, the value for `OPENAI_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT/openai/v1`, Groq's base on this fake.
    pub fn groq_base_url(&self) -> String {
        format!("http://{}/openai/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT/together/v1`, Together's base on this fake.
    pub fn together_base_url(&self) -> String {
        format!("http://{}/together/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT`, the value for `AZURE_OPENAI_ENDPOINT`.
    pub fn azure_endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> Vec<LogEntry> {
        self.shared.inner.lock().expect("lock").log.clone()
    }

    /// Calls answered on a route (e.g. `create`), any status.
    pub fn calls(&self, route: &str) -> Vec<LogEntry> {
        self.log().into_iter().filter(|e| e.route == route).collect()
    }

    /// Every webhook delivery attempt so far, in order.
    pub fn webhook_attempts(&self) -> Vec<crate::state::WebhookAttempt> {
        crate::webhooks::attempts(&self.shared.webhook_log)
    }

    pub fn submissions(&self) -> Vec<Submission> {
        self.shared.inner.lock().expect("lock").ledger.clone()
    }

    /// custom_id → number of created batches whose input held it.
    pub fn submitted_counts(&self) -> BTreeMap<String, u32> {
        submitted_summary(&self.shared.inner.lock().expect("lock").ledger)
    }

    /// Replaces the fault configuration (applies to calls and batches created
    /// from now on; the enqueued-token limits also to batches created before
    /// and not yet validated).
    pub fn set_faults(&self, faults: Faults) {
        self.shared.inner.lock().expect("lock").config.faults = faults;
    }

    pub fn faults(&self) -> Faults {
        self.shared.inner.lock().expect("lock").config.faults.clone()
    }

    /// Expires a batch now with partial results. False if it is not running.
    pub fn expire(&self, batch_id: &str) -> bool {
        expire(&mut self.shared.inner.lock().expect("lock"), batch_id)
    }

    /// Ends an unfinished batch now (see `POST /_fake/batches/{id}/complete`),
    /// e.g. one a client gave up on that still delivers. False if it is
    /// finished, vanished or unknown.
    pub fn complete(&self, batch_id: &str) -> bool {
        complete(&mut self.shared.inner.lock().expect("lock"), batch_id)
    }

    /// Prompt tokens of the model's batches now `validating` or
    /// `in_progress`: what counts against its enqueued-token limit. Models
    /// are named as the input lines' `body.model` ("" for none).
    pub fn enqueued_tokens(&self, model: &str) -> u64 {
        limits::enqueued(&self.shared.inner.lock().expect("lock"), model)
    }

    /// The most `enqueued_tokens(model)` has ever been (it includes batches
    /// that were then refused for the limit, so a client that never
    /// overfills the queue keeps it at or below the limit).
    pub fn peak_enqueued_tokens(&self, model: &str) -> u64 {
        let inner = self.shared.inner.lock().expect("lock");
        inner.peak_enqueued.get(model).copied().unwrap_or(0)
    }

    /// Number of stored files (inputs and results).
    pub fn file_count(&self) -> usize {
        self.shared.inner.lock().expect("lock").files.len()
    }

    /// Size and SHA-256 (hex) of a stored file, read from disk.
    pub fn file_digest(&self, id: &str) -> Option<(u64, String)> {
        use sha2::{Digest, Sha256};
        let path = self.shared.inner.lock().expect("lock").files.get(id)?.path.clone();
        let mut f = std::fs::File::open(path).ok()?;
        let mut h = Sha256::new();
        let n = std::io::copy(&mut f, &mut h).ok()?;
        Some((n, h.finalize().iter().map(|b| format!("{b:02x}")).collect()))
    }

    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for FakeHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
