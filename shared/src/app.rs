//! Wiring: builds the adapters from configuration once per cold start. The
//! handlers keep the resulting [`App`] in their state.

use std::sync::Arc;

use crate::api::Api;
use crate::config::Config;
use crate::job::ProviderKind;
use crate::pipeline::{Core, Ingester, NoCrashes, Poller, Submitter};
use crate::placement::InlineLimits;
use crate::ports::Ports;
use crate::pricing::{PriceBook, PricingError};
use crate::provider::openai::{OpenAiClient, OpenAiFormat};
use crate::provider::{BatchFormat, Formats, Provider, ProviderError};
use crate::store::dynamo::DynamoStore;
use crate::store::placed::PlacedStore;
use crate::store::s3::S3Store;
use crate::store::ObjectStore;
use crate::time::{Clock, SystemClock};

/// Why the price table `BATCHQ_PRICING_FILE` names cannot be used. Every
/// message starts with the variable and the file, so a cold start that fails
/// on it says where to look.
#[derive(Debug, thiserror::Error)]
pub enum PriceFileError {
    #[error("BATCHQ_PRICING_FILE={file:?}: expected s3://BUCKET/KEY")]
    NotAnS3Object { file: String },
    #[error("BATCHQ_PRICING_FILE={file:?}: {reason}")]
    Unreadable { file: String, reason: String },
    #[error("BATCHQ_PRICING_FILE={file:?}: {error}")]
    Invalid { file: String, error: PricingError },
}

/// Everything a handler needs, built once.
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    /// The ports the API and the pipeline use: the stores below and the clock.
    pub ports: Ports,
    /// The DynamoDB tables, with large payloads placed in S3 (for what only
    /// they have: creating the tables).
    pub store: Arc<PlacedStore<DynamoStore>>,
    pub objects: Arc<S3Store>,
    pub sdk: aws_config::SdkConfig,
    /// The price table costs are computed with (bundled unless
    /// `BATCHQ_PRICING_FILE` names another; see [`App::with_configured_prices`]).
    pub prices: Arc<PriceBook>,
}

impl App {
    /// Builds the AWS clients and adapters from `config`.
    pub async fn from_config(config: Config) -> Self {
        let sdk = crate::aws::sdk_config(&config).await;
        Self::from_sdk(config, sdk)
    }

    /// Builds the adapters from `config` over an SDK configuration given by
    /// the caller (tests give each function its own credentials this way).
    pub fn from_sdk(config: Config, sdk: aws_config::SdkConfig) -> Self {
        let s3 = Arc::new(S3Store::new(
            crate::aws::s3_client(&sdk, &config),
            &config.bucket,
            config.limits.s3_part_bytes,
        ));
        let objects: Arc<dyn ObjectStore> = s3.clone();
        let tables = DynamoStore::new(
            crate::aws::dynamo_client(&sdk),
            &config.requests_table,
            &config.jobs_table,
        )
        .with_retention(config.policy.retention);
        let store = Arc::new(PlacedStore::new(tables, objects.clone(), inline_limits(&config)));
        Self {
            config: Arc::new(config),
            ports: Ports::over(store.clone(), objects, Arc::new(SystemClock)),
            store,
            objects: s3,
            sdk,
            prices: Arc::new(PriceBook::bundled()),
        }
    }

    /// Loads `BATCHQ_PRICING_FILE` (a local path or `s3://BUCKET/KEY`) in
    /// place of the bundled table; an unreadable or invalid file is an error
    /// naming it, so a cold start fails loudly rather than pricing wrongly.
    pub async fn with_configured_prices(mut self) -> Result<Self, PriceFileError> {
        let Some(source) = self.config.pricing_file.clone() else {
            return Ok(self);
        };
        let unreadable = |reason: String| PriceFileError::Unreadable {
            file: source.clone(),
            reason,
        };
        let text = match source.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, key) = rest
                    .split_once('/')
                    .ok_or_else(|| PriceFileError::NotAnS3Object { file: source.clone() })?;
                let out = self
                    .objects
                    .client()
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| unreadable(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| unreadable(e.to_string()))?
                    .into_bytes();
                String::from_utf8(bytes.to_vec()).map_err(|_| unreadable("not UTF-8".into()))?
            }
            None => std::fs::read_to_string(&source).map_err(|e| unreadable(e.to_string()))?,
        };
        let book = PriceBook::from_json(&text).map_err(|error| PriceFileError::Invalid {
            file: source.clone(),
            error,
        })?;
        tracing::info!(source, as_of = book.as_of(), "price table loaded");
        self.prices = Arc::new(book);
        Ok(self)
    }

    /// The configured provider client; reads the key (from Secrets Manager
    /// when configured) once.
    pub async fn provider(&self) -> Result<Arc<dyn Provider>, ProviderError> {
        Ok(Arc::new(
            OpenAiClient::from_config(&self.config.provider, &self.sdk).await?,
        ))
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
        }
    }

    /// The HTTP API over this app's ports.
    pub fn api(&self) -> Api {
        Api::new(self.ports.clone(), &self.config.limits)
    }

    pub fn ingester(&self) -> Ingester {
        Ingester::new(self.core(), self.prices.clone())
    }

    pub fn submitter(&self, provider: Arc<dyn Provider>) -> Submitter {
        Submitter::new(self.core(), provider)
    }

    pub fn poller(&self, provider: Arc<dyn Provider>) -> Poller {
        Poller::new(self.core(), provider, self.ingester())
    }
}

/// The inline limits configured for bodies and responses.
pub fn inline_limits(config: &Config) -> InlineLimits {
    InlineLimits {
        body_max: config.limits.inline_body_max_bytes,
        result_max: config.limits.inline_result_max_bytes,
    }
}

/// Every provider kind's batch file format (no key needed: ingest reads
/// result files without calling the provider).
pub fn formats() -> Formats {
    let openai: Arc<dyn BatchFormat> = Arc::new(OpenAiFormat);
    // TODO(#16): the Anthropic and Together formats replace these placeholders.
    ProviderKind::ALL
        .into_iter()
        .fold(Formats::new(), |f, kind| f.with(kind, openai.clone()))
}
