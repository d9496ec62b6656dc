//! Wiring: builds the adapters from configuration once per cold start. The
//! handlers keep the resulting [`App`] in their state.

use std::sync::Arc;

use crate::api::Api;
use crate::config::Config;
#[cfg(feature = "embedded")]
use crate::config::StoreChoice;
use crate::config::{PRICING_FILE, PROVIDERS_FILE};
use crate::job::ProviderKind;
#[cfg(feature = "embedded")]
use crate::pipeline::submit::end_leases_of_gone_processes;
use crate::pipeline::{Core, Ingester, NoCrashes, Poller, Submitter};
use crate::placement::InlineLimits;
use crate::ports::Ports;
use crate::pricing::PriceBook;
use crate::provider::anthropic::{AnthropicClient, AnthropicFormat};
use crate::provider::openai::{GroqFormat, OpenAiClient, OpenAiFormat};
use crate::provider::together::{TogetherClient, TogetherFormat};
use crate::provider::{BatchFormat, FileLimits, Formats, Provider, ProviderError, Providers};
use crate::provider_table::{ProviderInstance, ProviderTable};
#[cfg(feature = "embedded")]
use crate::store::data_dir::{DataDir, DataDirError};
use crate::store::dynamo::DynamoStore;
#[cfg(feature = "embedded")]
use crate::store::fs::FsObjects;
use crate::store::placed::PlacedStore;
use crate::store::s3::S3Store;
#[cfg(feature = "embedded")]
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::webhooks::dynamo::DynamoWebhooks;
use crate::store::ObjectStore;
use crate::time::{Clock, SystemClock};

/// Why a table a variable names (`BATCHQ_PRICING_FILE`,
/// `BATCHQ_PROVIDERS_FILE`) cannot be used. Every message starts with the
/// variable and the file, so a cold start that fails on it says where to look.
#[derive(Debug, thiserror::Error)]
pub enum TableFileError {
    #[error("{var}={file:?}: expected s3://BUCKET/KEY")]
    NotAnS3Object { var: &'static str, file: String },
    #[error("{var}={file:?}: {reason}")]
    Unreadable {
        var: &'static str,
        file: String,
        reason: String,
    },
    #[error("{var}={file:?}: {error}")]
    Invalid {
        var: &'static str,
        file: String,
        error: String,
    },
}

/// The AWS stores: DynamoDB tables with large payloads placed in S3.
#[derive(Clone)]
pub struct AwsStores {
    pub store: Arc<PlacedStore<DynamoStore>>,
    pub objects: Arc<S3Store>,
    /// The webhook table, when `BATCHQ_WEBHOOKS_TABLE` names one.
    pub webhooks: Option<Arc<DynamoWebhooks>>,
}

/// The stores behind an [`App`], for what only one kind has (creating
/// the tables and the bucket; the data directory). The embedded store is
/// there only with the `embedded` feature (the CLI's; the Lambda functions
/// build without it, so no SQLite in their binaries).
#[derive(Clone)]
pub enum Backend {
    Aws(AwsStores),
    #[cfg(feature = "embedded")]
    Embedded(EmbeddedStores),
}

/// The embedded stores: SQLite and files in one locked data directory.
#[cfg(feature = "embedded")]
#[derive(Clone)]
pub struct EmbeddedStores {
    pub dir: Arc<DataDir>,
    pub store: Arc<PlacedStore<SqliteStore>>,
    pub objects: Arc<FsObjects>,
    /// The webhook store: its own database file in the data directory.
    pub webhooks: Arc<crate::store::webhooks::sqlite::SqliteWebhooks>,
    /// Jobs a process that is gone left leased (in the middle of a submit);
    /// their leases ended when this process opened the directory.
    pub leases_ended: Vec<crate::ids::JobId>,
}

/// Why `App::open` could not open the configured store.
#[cfg(feature = "embedded")]
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("{}: {source}", .path.display())]
    Store {
        path: std::path::PathBuf,
        #[source]
        source: crate::store::StoreError,
    },
}

/// Everything a handler needs, built once.
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    /// The ports the API and the pipeline use: the stores below and the clock.
    pub ports: Ports,
    /// The stores behind the ports.
    pub backend: Backend,
    /// The AWS SDK configuration (Secrets Manager keys, `s3://` tables; the
    /// stores too when they are AWS's).
    pub sdk: aws_config::SdkConfig,
    /// The price table costs are computed with (bundled unless
    /// `BATCHQ_PRICING_FILE` names another; see [`App::with_configured_tables`]).
    pub prices: Arc<PriceBook>,
    /// The provider instances and the routes to them (the environment's one
    /// provider unless `BATCHQ_PROVIDERS_FILE` names a table).
    pub providers: Arc<ProviderTable>,
}

impl App {
    /// Opens the store `config.store` names (`BATCHQ_STORE`): the AWS
    /// adapters, or the embedded store in its data directory, created when
    /// `create` (else it must exist) and locked for this process.
    #[cfg(feature = "embedded")]
    pub async fn open(config: Config, create: bool) -> Result<Self, OpenError> {
        let dir = match &config.store {
            StoreChoice::Aws => return Ok(Self::from_config(config).await),
            StoreChoice::Embedded { dir } => dir.clone(),
        };
        let sdk = crate::aws::sdk_config(&config).await;
        let options = SqliteOptions {
            retention: config.policy.retention,
            ..SqliteOptions::default()
        };
        let dir = Arc::new(DataDir::open_with(&dir, create, options, config.limits.s3_part_bytes)?);
        let objects = dir.objects();
        let shared: Arc<dyn ObjectStore> = objects.clone();
        let store = Arc::new(dir.store(embedded_inline_limits()));
        let providers = Arc::new(ProviderTable::single(&config));
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        // The directory's lock is ours: no other process runs a step on it,
        // so a lease a job holds now was taken by one that is gone.
        let leases_ended = end_leases_of_gone_processes(store.as_ref(), clock.now())
            .await
            .map_err(|source| OpenError::Store {
                path: dir.path().to_owned(),
                source,
            })?;
        let webhooks =
            crate::store::webhooks::sqlite::SqliteWebhooks::in_dir(dir.path()).map_err(|source| OpenError::Store {
                path: dir.path().to_owned(),
                source,
            })?;
        Ok(Self {
            providers,
            config: Arc::new(config),
            ports: Ports::over(store.clone(), shared, clock),
            backend: Backend::Embedded(EmbeddedStores {
                dir,
                store,
                objects,
                webhooks: Arc::new(webhooks),
                leases_ended,
            }),
            sdk,
            prices: Arc::new(PriceBook::bundled()),
        })
    }

    /// The AWS stores, when this app runs on them.
    pub fn aws(&self) -> Option<&AwsStores> {
        match &self.backend {
            Backend::Aws(a) => Some(a),
            #[cfg(feature = "embedded")]
            Backend::Embedded(_) => None,
        }
    }

    /// The webhook store (endpoints, feed positions, deliveries): the
    /// embedded store's own database file, or on AWS its own DynamoDB table
    /// (`BATCHQ_WEBHOOKS_TABLE`; `None` when that is not set).
    ///
    /// Made a trait object here, not when the app is built: only the
    /// functions that call this (through [`App::api`] or
    /// [`App::dispatcher`]) link the store's methods (issue #20, binary
    /// sizes; submit and ingest never touch webhooks).
    pub fn webhooks(&self) -> Option<Arc<dyn crate::store::webhooks::WebhookStore>> {
        match &self.backend {
            Backend::Aws(a) => a
                .webhooks
                .clone()
                .map(|w| w as Arc<dyn crate::store::webhooks::WebhookStore>),
            #[cfg(feature = "embedded")]
            Backend::Embedded(e) => Some(e.webhooks.clone()),
        }
    }

    /// Builds the AWS clients and adapters from `config` (whatever
    /// `BATCHQ_STORE` says: the Lambda functions run on AWS).
    pub async fn from_config(config: Config) -> Self {
        let sdk = crate::aws::sdk_config(&config).await;
        Self::from_sdk(config, sdk)
    }

    /// Builds the adapters from `config` over an SDK configuration given by
    /// the caller (tests give each function its own credentials this way).
    pub fn from_sdk(config: Config, sdk: aws_config::SdkConfig) -> Self {
        // The AWS this process uses, as its clients report it (crate::overhead).
        let usage = Arc::new(crate::overhead::UsageTally::on_aws());
        let s3 = Arc::new(S3Store::new(
            crate::aws::metered_s3_client(&sdk, &config, &usage),
            &config.bucket,
            config.limits.s3_part_bytes,
        ));
        let objects: Arc<dyn ObjectStore> = s3.clone();
        let dynamo = crate::aws::dynamo_client(&sdk, &usage);
        let webhooks = config
            .webhooks_table
            .as_ref()
            .map(|t| Arc::new(DynamoWebhooks::new(dynamo.clone(), t).with_retention(config.policy.retention)));
        let tables = DynamoStore::new(dynamo, &config.requests_table, &config.jobs_table)
            .with_retention(config.policy.retention)
            .with_usage(usage.clone());
        let store = Arc::new(PlacedStore::new(tables, objects.clone(), inline_limits(&config)));
        let providers = Arc::new(ProviderTable::single(&config));
        Self {
            providers,
            config: Arc::new(config),
            ports: Ports::over(store.clone(), objects, Arc::new(SystemClock)).with_usage(usage),
            backend: Backend::Aws(AwsStores {
                store,
                objects: s3,
                webhooks,
            }),
            sdk,
            prices: Arc::new(PriceBook::bundled()),
        }
    }

    /// Loads the tables the environment names in place of the defaults:
    /// `BATCHQ_PRICING_FILE` (prices) and `BATCHQ_PROVIDERS_FILE` (provider
    /// instances and routes), each a local path or `s3://BUCKET/KEY`. An
    /// unreadable or invalid file is an error naming it, so a cold start
    /// fails loudly rather than pricing or routing wrongly.
    pub async fn with_configured_tables(mut self) -> Result<Self, TableFileError> {
        if let Some(source) = self.config.pricing_file.clone() {
            let text = self.read_table(PRICING_FILE, &source).await?;
            let book = PriceBook::from_json(&text).map_err(|error| TableFileError::Invalid {
                var: PRICING_FILE,
                file: source.clone(),
                error: error.to_string(),
            })?;
            tracing::info!(source, as_of = book.as_of(), "price table loaded");
            self.prices = Arc::new(book);
        }
        if let Some(source) = self.config.providers_file.clone() {
            let text = self.read_table(PROVIDERS_FILE, &source).await?;
            let env = |name: &str| std::env::var(name).ok();
            let table =
                ProviderTable::from_json(&text, &self.config, &env).map_err(|error| TableFileError::Invalid {
                    var: PROVIDERS_FILE,
                    file: source.clone(),
                    error: error.to_string(),
                })?;
            let names: Vec<&str> = table.instances.iter().map(|i| i.name.as_str()).collect();
            tracing::info!(source, providers = %names.join(","), "provider table loaded");
            self.providers = Arc::new(table);
        }
        Ok(self)
    }

    /// Reads a table file: a local path or `s3://BUCKET/KEY`.
    async fn read_table(&self, var: &'static str, source: &str) -> Result<String, TableFileError> {
        let unreadable = |reason: String| TableFileError::Unreadable {
            var,
            file: source.to_owned(),
            reason,
        };
        match source.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, key) = rest.split_once('/').ok_or_else(|| TableFileError::NotAnS3Object {
                    var,
                    file: source.to_owned(),
                })?;
                let out = crate::aws::s3_client(&self.sdk, &self.config)
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| unreadable(crate::error::chain(&e)))?;
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| unreadable(e.to_string()))?
                    .into_bytes();
                String::from_utf8(bytes.to_vec()).map_err(|_| unreadable("not UTF-8".into()))
            }
            None => std::fs::read_to_string(source).map_err(|e| unreadable(e.to_string())),
        }
    }

    /// A client for every configured provider instance; reads each key
    /// (from Secrets Manager when configured) once.
    pub async fn providers(&self) -> Result<Providers, ProviderError> {
        let mut out = Providers::new();
        for instance in &self.providers.instances {
            let client = self.provider_client(instance).await.map_err(|e| match e {
                ProviderError::Key(m) => ProviderError::Key(format!("provider {}: {m}", instance.name)),
                other => other,
            })?;
            out = out.with(instance.name.clone(), client).with_file_limits(
                instance.name.clone(),
                FileLimits {
                    max_lines: instance.max_lines_per_batch.unwrap_or(u64::MAX),
                    max_bytes: instance.max_bytes_per_batch.unwrap_or(u64::MAX),
                    max_inputs: u64::MAX,
                },
            );
        }
        Ok(out)
    }

    async fn provider_client(&self, instance: &ProviderInstance) -> Result<Arc<dyn Provider>, ProviderError> {
        let cfg = &instance.config;
        Ok(match cfg.kind {
            ProviderKind::OpenAi | ProviderKind::AzureOpenAi | ProviderKind::Groq => {
                Arc::new(OpenAiClient::from_config(cfg, &self.sdk).await?)
            }
            ProviderKind::Together => Arc::new(TogetherClient::from_config(cfg, &self.sdk).await?),
            ProviderKind::Anthropic => {
                Arc::new(AnthropicClient::from_config(cfg, &self.sdk, self.ports.objects.clone()).await?)
            }
        })
    }

    /// The same app reading time from `clock` (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.ports.clock = clock;
        self
    }

    /// What the pipeline steps work with, over this app's ports.
    pub fn core(&self) -> Core {
        Core {
            ports: self.ports.clone(),
            config: self.config.clone(),
            crash: Arc::new(NoCrashes),
            formats: formats(),
            moves: Default::default(),
        }
    }

    /// The HTTP API over this app's ports.
    pub fn api(&self) -> Api {
        let api = self.api_without_webhooks();
        match self.webhooks() {
            Some(store) => api.with_webhooks(
                store,
                crate::webhook::target::TargetPolicy {
                    allow_private: std::env::var(crate::config::WEBHOOK_ALLOW_PRIVATE)
                        .is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1"),
                },
            ),
            None => api,
        }
    }

    /// The HTTP API without the webhook store (its `/v1/webhooks` routes
    /// answer as when no webhook table is configured): what the poll
    /// function's daily reports read, which so links no webhook store.
    pub fn api_without_webhooks(&self) -> Api {
        Api::new(self.ports.clone(), &self.config.limits)
            .with_routing(Arc::new(self.providers.routing.clone()))
            .with_prices(self.prices.clone())
    }

    /// The webhook delivery engine over this app's stores, sending with
    /// `sender`; `None` when this app has no webhook store.
    pub fn dispatcher(
        &self,
        config: crate::pipeline::dispatch::WebhookConfig,
        sender: Arc<dyn crate::pipeline::dispatch::WebhookSender>,
    ) -> Option<crate::pipeline::dispatch::Dispatcher> {
        let store = self.webhooks()?;
        Some(crate::pipeline::dispatch::Dispatcher::new(
            store,
            Arc::new(self.ports.clone()),
            self.ports.clock.clone(),
            sender,
            config,
        ))
    }

    pub fn ingester(&self) -> Ingester {
        Ingester::new(self.core(), self.prices.clone())
    }

    pub fn submitter(&self, providers: impl Into<Providers>) -> Submitter {
        Submitter::new(self.core(), providers)
    }

    pub fn poller(&self, providers: impl Into<Providers>) -> Poller {
        Poller::new(self.core(), providers, self.ingester())
    }
}

/// The deliver function's wiring: the webhook table and the requests' and
/// jobs' tables read as they are ([`crate::store::DeliveryReads`] over
/// [`DynamoStore`]), without an [`App`]: an `App` builds every store
/// (request and job writes, S3, savings) and so links every method of
/// each into the binary, which deliver never calls (issue #20, binary
/// sizes). `None` when `BATCHQ_WEBHOOKS_TABLE` is not set. Reads and sends
/// exactly what [`App::dispatcher`] over the same tables does.
pub async fn aws_dispatcher(
    config: &Config,
    webhooks: crate::pipeline::dispatch::WebhookConfig,
    sender: Arc<dyn crate::pipeline::dispatch::WebhookSender>,
) -> Option<crate::pipeline::dispatch::Dispatcher> {
    let table = config.webhooks_table.as_ref()?;
    let sdk = crate::aws::sdk_config(config).await;
    let usage = Arc::new(crate::overhead::UsageTally::on_aws());
    let dynamo = crate::aws::dynamo_client(&sdk, &usage);
    let store = Arc::new(DynamoWebhooks::new(dynamo.clone(), table).with_retention(config.policy.retention));
    let tables = DynamoStore::new(dynamo, &config.requests_table, &config.jobs_table)
        .with_retention(config.policy.retention)
        .with_usage(usage);
    Some(crate::pipeline::dispatch::Dispatcher::new(
        store,
        Arc::new(tables),
        Arc::new(SystemClock),
        sender,
        webhooks,
    ))
}

/// The inline limits configured for bodies and responses.
pub fn inline_limits(config: &Config) -> InlineLimits {
    InlineLimits::configured(&config.limits)
}

/// Inline limits of the embedded store: SQLite rows hold a body or a
/// response of any size the API accepts (10 MiB), so only input and
/// result files go to the data directory's files. Not behind the
/// `embedded` feature: batchq-core's own tests use it with the memory
/// store, and `cargo test -p batchq-core` builds without that feature.
pub fn embedded_inline_limits() -> InlineLimits {
    InlineLimits {
        body_max: 16 * 1024 * 1024,
        result_max: 16 * 1024 * 1024,
    }
}

/// Every provider kind's batch file format (no key needed: ingest reads
/// result files without calling the provider).
pub fn formats() -> Formats {
    let openai: Arc<dyn BatchFormat> = Arc::new(OpenAiFormat);
    Formats::new()
        .with(ProviderKind::OpenAi, openai.clone())
        .with(ProviderKind::AzureOpenAi, openai)
        .with(ProviderKind::Groq, Arc::new(GroqFormat))
        .with(ProviderKind::Together, Arc::new(TogetherFormat))
        .with(ProviderKind::Anthropic, Arc::new(AnthropicFormat))
}

#[cfg(all(test, feature = "embedded"))]
mod tests {
    use super::*;
    use crate::ids::{JobId, ModelName};
    use crate::job::{Job, JobStatus};
    use crate::request::{Endpoint, QueueGroup};

    fn embedded_config(dir: &std::path::Path) -> Config {
        let store = format!("embedded:{}", dir.display());
        Config::from_lookup(&|name| (name == "BATCHQ_STORE").then(|| store.clone())).unwrap()
    }

    /// A process killed in the middle of a submit leaves its job leased for
    /// `BATCHQ_JOB_LEASE_SECS` (16 minutes). On the embedded store the next
    /// process holds the directory's lock, so that lease is nobody's: it
    /// ends at open and the next submit run resumes the job at once.
    #[tokio::test]
    async fn opening_the_data_directory_ends_the_leases_a_killed_process_held() {
        let dir = std::env::temp_dir().join(format!("batchq-app-leases-{}", uuid::Uuid::new_v4().simple()));
        let config = embedded_config(&dir);
        let group = QueueGroup::of(Endpoint::ChatCompletions, ModelName::parse("gpt-4o-mini").unwrap());
        let (leased, lapsed, done) = {
            let app = App::open(config.clone(), true).await.unwrap();
            let now = app.ports.clock.now();
            let lease = config.policy.job_lease;
            let leased = Job::new(JobId::generate(), ProviderKind::OpenAi, &group, now, now.plus(lease));
            // A lease that ran out already, and a job that is finished.
            let lapsed = Job::new(JobId::generate(), ProviderKind::OpenAi, &group, now, now);
            let mut done = Job::new(JobId::generate(), ProviderKind::OpenAi, &group, now, now.plus(lease));
            for j in [&leased, &lapsed, &done] {
                app.ports.jobs.create_job(j).await.unwrap();
            }
            let mut finished = done.clone();
            finished.finish(JobStatus::Done, now).unwrap();
            app.ports.jobs.save_job(&done, finished).await.unwrap();
            done = app.ports.jobs.get_job(&done.id).await.unwrap().unwrap();
            assert_eq!(app.ports.jobs.open_jobs().await.unwrap().len(), 2);
            (leased, lapsed, done)
            // Dropped here as a killed process drops it: the lock goes with it.
        };

        let app = App::open(config, false).await.unwrap();
        let now = app.ports.clock.now();
        let get = |id: JobId| {
            let jobs = app.ports.jobs.clone();
            async move { jobs.get_job(&id).await.unwrap().unwrap() }
        };
        let reopened = get(leased.id.clone()).await;
        assert!(
            reopened.lease_until.is_none_or(|l| l <= now),
            "the lease of the gone process still holds the job: {:?}",
            reopened.lease_until
        );
        assert_eq!(reopened.status, JobStatus::Preparing);
        match &app.backend {
            Backend::Embedded(e) => assert_eq!(e.leases_ended, vec![leased.id.clone()]),
            Backend::Aws(_) => panic!("BATCHQ_STORE names the embedded store"),
        }
        assert_eq!(
            get(lapsed.id.clone()).await.lease_until,
            lapsed.lease_until,
            "left as it was"
        );
        assert_eq!(get(done.id.clone()).await, done, "a finished job is left alone");
        drop(app);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
