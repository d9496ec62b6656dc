//! The stores a test runs on: in memory (the default: fast, no emulator),
//! DynamoDB and S3 on the emulator, or the embedded store (SQLite and files
//! in a fresh temporary data directory), chosen by `BATCHQ_TEST_STORE`
//! (`memory` | `emulator` | `embedded`). `make test` runs the pipeline,
//! crash-matrix and API tests once on each, so every store inherits them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use batchq_core::app::inline_limits;
use batchq_core::config::Config;
use batchq_core::keys::RESULTS_PREFIX;
use batchq_core::ports::Ports;
use batchq_core::store::data_dir::DataDir;
use batchq_core::store::fs::FsObjects;
use batchq_core::store::memory::{MemoryObjects, MemoryStore};
use batchq_core::store::placed::PlacedStore;
use batchq_core::store::sqlite::{SqliteOptions, SqliteStore};
use batchq_core::store::{JobStore, ObjectStore, RequestStore, SavingsStore};
use batchq_core::time::Clock;
use sha2::{Digest, Sha256};

use crate::TestEnv;

/// The request, job and savings ports of one store in one handle.
pub trait Store: RequestStore + JobStore + SavingsStore {}

impl<T: RequestStore + JobStore + SavingsStore> Store for T {}

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    Emulator,
    /// SQLite and files in a temporary data directory.
    Embedded,
}

impl StoreKind {
    /// `BATCHQ_TEST_STORE`: `memory` (also when unset), `emulator` or `embedded`.
    pub fn from_env() -> Self {
        match std::env::var("BATCHQ_TEST_STORE").as_deref() {
            Err(_) | Ok("") | Ok("memory") => Self::Memory,
            Ok("emulator") => Self::Emulator,
            Ok("embedded") => Self::Embedded,
            Ok(other) => panic!("BATCHQ_TEST_STORE={other:?}: expected memory, emulator or embedded"),
        }
    }
}

/// A result object as S3 would announce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultObject {
    pub key: String,
    pub size: u64,
    /// Changes whenever the object is written again.
    pub etag: String,
}

enum Backing {
    Memory {
        store: Arc<PlacedStore<MemoryStore>>,
        objects: MemoryObjects,
    },
    Emulator(Box<TestEnv>),
    Embedded {
        rows: SqliteStore,
        objects: Arc<FsObjects>,
        _dir: TempDataDir,
    },
}

/// A fresh temporary data directory, removed (with everything in it) on drop.
pub struct TempDataDir {
    pub path: PathBuf,
}

impl TempDataDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("batchq-test-{}", uuid::Uuid::new_v4().simple()));
        Self { path }
    }
}

impl Default for TempDataDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Fresh, empty stores of one kind with the configuration they were built with.
pub struct Stores {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub objects: Arc<dyn ObjectStore>,
    backing: Backing,
}

/// The bucket name of the in-memory object store (only names it in events).
const MEMORY_BUCKET: &str = "batchq-memory";

impl Stores {
    /// Stores of the kind `BATCHQ_TEST_STORE` names.
    pub async fn new(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::on(StoreKind::from_env(), tweak).await
    }

    /// Stores of `kind`; `tweak` may change the configuration first.
    pub async fn on(kind: StoreKind, tweak: impl FnOnce(&mut Config)) -> Self {
        match kind {
            StoreKind::Emulator => {
                let env = TestEnv::with(tweak).await;
                let store: Arc<dyn Store> = Arc::new(env.store.clone());
                let objects: Arc<dyn ObjectStore> = env.s3.clone();
                Self {
                    config: env.config.clone(),
                    store,
                    objects,
                    backing: Backing::Emulator(Box::new(env)),
                }
            }
            StoreKind::Embedded => {
                let mut config = Config::from_lookup(&|_| None).expect("default config parses");
                config.bucket = MEMORY_BUCKET.into();
                config.limits.s3_part_bytes = batchq_core::config::S3_MIN_PART_BYTES;
                tweak(&mut config);
                let dir = TempDataDir::new();
                let data = DataDir::open_with(
                    &dir.path,
                    true,
                    SqliteOptions {
                        retention: config.policy.retention,
                        ..SqliteOptions::default()
                    },
                    config.limits.s3_part_bytes,
                )
                .expect("open a fresh data directory");
                let objects = data.objects();
                let store = Arc::new(data.store(inline_limits(&config)));
                Self {
                    config,
                    store,
                    objects: objects.clone(),
                    backing: Backing::Embedded {
                        rows: data.rows(),
                        objects,
                        _dir: dir,
                    },
                }
            }
            StoreKind::Memory => {
                let mut config = Config::from_lookup(&|_| None).expect("default config parses");
                config.bucket = MEMORY_BUCKET.into();
                config.limits.s3_part_bytes = batchq_core::config::S3_MIN_PART_BYTES;
                tweak(&mut config);
                let objects = MemoryObjects::new(config.limits.s3_part_bytes);
                let shared: Arc<dyn ObjectStore> = Arc::new(objects.clone());
                let store = Arc::new(MemoryStore::new().placed(shared.clone(), inline_limits(&config)));
                Self {
                    config,
                    store: store.clone(),
                    objects: shared,
                    backing: Backing::Memory { store, objects },
                }
            }
        }
    }

    /// The ports over these stores, reading time from `clock`.
    pub fn ports(&self, clock: Arc<dyn Clock>) -> Ports {
        Ports {
            requests: self.store.clone(),
            jobs: self.store.clone(),
            savings: self.store.clone(),
            objects: self.objects.clone(),
            clock,
            // The AWS adapters' tally on the emulator; nothing adds to it on the others.
            usage: match &self.backing {
                Backing::Emulator(env) => env.usage.clone(),
                _ => Arc::default(),
            },
        }
    }

    pub fn kind(&self) -> StoreKind {
        match self.backing {
            Backing::Memory { .. } => StoreKind::Memory,
            Backing::Emulator(_) => StoreKind::Emulator,
            Backing::Embedded { .. } => StoreKind::Embedded,
        }
    }

    /// The emulator environment, for tests of what only DynamoDB and S3
    /// have (item shapes, retention, IAM); `None` on the memory store.
    pub fn emulator(&self) -> Option<&TestEnv> {
        match &self.backing {
            Backing::Emulator(env) => Some(env),
            Backing::Memory { .. } | Backing::Embedded { .. } => None,
        }
    }

    /// Makes the eventually consistent listings (DynamoDB's global
    /// indexes; the memory store's own) lag writes by `lag`. A no-op on
    /// the embedded store: SQLite's listings read the committed rows, as
    /// consistent as its other reads, so they never lag.
    pub async fn set_index_lag(&self, lag: Duration) {
        match &self.backing {
            Backing::Emulator(env) => env.set_index_lag(lag).await,
            Backing::Memory { store, .. } => store.set_index_lag(lag),
            Backing::Embedded { .. } => {}
        }
    }

    /// Every object under `results/`, as its ObjectCreated event names it.
    pub async fn result_objects(&self) -> Vec<ResultObject> {
        match &self.backing {
            Backing::Emulator(env) => list_bucket(env, RESULTS_PREFIX).await,
            Backing::Embedded { objects, .. } => {
                let keys = objects.keys();
                result_objects_of(objects.as_ref(), keys).await
            }
            Backing::Memory { objects, .. } => result_objects_of(objects, objects.keys()).await,
        }
    }

    /// Every stored row (not objects), as text, for "nothing changed"
    /// comparisons.
    pub async fn snapshot(&self) -> BTreeMap<String, String> {
        match &self.backing {
            Backing::Emulator(env) => {
                let mut out = BTreeMap::new();
                for table in [&env.config.requests_table, &env.config.jobs_table] {
                    for item in crate::scan_all(&env.dynamo, table).await {
                        let pk = format!("{:?}", item.get("pk"));
                        let sk = format!("{:?}", item.get("sk"));
                        let sorted: BTreeMap<_, _> = item.iter().map(|(k, v)| (k.clone(), rendered(v))).collect();
                        out.insert(format!("{table}|{pk}|{sk}"), format!("{sorted:?}"));
                    }
                }
                out
            }
            Backing::Memory { store, .. } => store.snapshot(),
            Backing::Embedded { rows, .. } => rows.snapshot().await.expect("snapshot the embedded store"),
        }
    }

    /// The keys of every stored object.
    pub async fn object_keys(&self) -> Vec<String> {
        match &self.backing {
            Backing::Memory { objects, .. } => objects.keys(),
            Backing::Embedded { objects, .. } => objects.keys(),
            Backing::Emulator(env) => list_bucket(env, "").await.into_iter().map(|o| o.key).collect(),
        }
    }
}

/// An attribute value as text, a map's members in name order at every
/// depth (`Debug` of a map follows its hash order, which differs between
/// two reads of the same item).
fn rendered(v: &aws_sdk_dynamodb::types::AttributeValue) -> String {
    use aws_sdk_dynamodb::types::AttributeValue;
    match v {
        AttributeValue::M(m) => {
            let sorted: BTreeMap<_, _> = m.iter().map(|(k, v)| (k, rendered(v))).collect();
            format!("M({sorted:?})")
        }
        AttributeValue::L(l) => format!("L({:?})", l.iter().map(rendered).collect::<Vec<_>>()),
        other => format!("{other:?}"),
    }
}

/// The objects under `results/` among `keys`, each with a digest of its
/// bytes for its etag.
async fn result_objects_of(objects: &dyn ObjectStore, keys: Vec<String>) -> Vec<ResultObject> {
    let mut out = Vec::new();
    for key in keys {
        if !key.starts_with(RESULTS_PREFIX) {
            continue;
        }
        let Some(bytes) = objects.get(&key).await.expect("read result object") else {
            continue;
        };
        out.push(ResultObject {
            etag: format!("{:x}", Sha256::digest(&bytes)),
            size: bytes.len() as u64,
            key,
        });
    }
    out
}

/// Every object of the emulator bucket under `prefix`, page by page.
async fn list_bucket(env: &TestEnv, prefix: &str) -> Vec<ResultObject> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = env
            .s3_client
            .list_objects_v2()
            .bucket(&env.config.bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .expect("list bucket");
        for obj in page.contents() {
            if let (Some(key), Some(etag)) = (obj.key(), obj.e_tag()) {
                out.push(ResultObject {
                    key: key.to_owned(),
                    size: obj.size().unwrap_or(0) as u64,
                    etag: etag.to_owned(),
                });
            }
        }
        match page.next_continuation_token() {
            Some(t) => token = Some(t.to_owned()),
            None => return out,
        }
    }
}
