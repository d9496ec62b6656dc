//! Wiring: builds the adapters from configuration once per cold start. The
//! handlers keep the resulting [`App`] in their state.

use std::sync::Arc;

use crate::api::Api;
use crate::config::Config;
use crate::job::ProviderKind;
use crate::pipeline::{Core, Ingester, NoCrashes, Poller, Submitter};
use crate::pricing::PriceBook;
use crate::provider::openai::{OpenAiClient, OpenAiFormat};
use crate::provider::{BatchFormat, Provider, ProviderError};
use crate::store::dynamo::DynamoStore;
use crate::store::s3::S3Store;
use crate::store::ObjectStore;
use crate::time::{Clock, SystemClock};

/// Everything a handler needs, built once.
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<DynamoStore>,
    pub objects: Arc<S3Store>,
    pub clock: Arc<dyn Clock>,
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
        let store = Arc::new(
            DynamoStore::new(
                crate::aws::dynamo_client(&sdk),
                &config.requests_table,
                &config.jobs_table,
                objects,
                config.limits.inline_body_max_bytes,
                config.limits.inline_result_max_bytes,
            )
            .with_retention(config.policy.retention),
        );
        Self {
            config: Arc::new(config),
            store,
            objects: s3,
            clock: Arc::new(SystemClock),
            sdk,
            prices: Arc::new(PriceBook::bundled()),
        }
    }

    /// Loads `BATCHQ_PRICING_FILE` (a local path or `s3://BUCKET/KEY`) in
    /// place of the bundled table; an unreadable or invalid file is an error
    /// naming it, so a cold start fails loudly rather than pricing wrongly.
    pub async fn with_configured_prices(mut self) -> Result<Self, String> {
        let Some(source) = self.config.pricing_file.clone() else {
            return Ok(self);
        };
        let text = match source.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, key) = rest
                    .split_once('/')
                    .ok_or_else(|| format!("BATCHQ_PRICING_FILE={source:?}: expected s3://BUCKET/KEY"))?;
                let out = self
                    .objects
                    .client()
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| {
                        format!(
                            "BATCHQ_PRICING_FILE={source:?}: {}",
                            aws_sdk_s3::error::DisplayErrorContext(e)
                        )
                    })?;
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| format!("BATCHQ_PRICING_FILE={source:?}: {e}"))?
                    .into_bytes();
                String::from_utf8(bytes.to_vec()).map_err(|_| format!("BATCHQ_PRICING_FILE={source:?}: not UTF-8"))?
            }
            None => std::fs::read_to_string(&source).map_err(|e| format!("BATCHQ_PRICING_FILE={source:?}: {e}"))?,
        };
        let book = PriceBook::from_json(&text).map_err(|e| format!("BATCHQ_PRICING_FILE={source:?}: {e}"))?;
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

    /// The configured provider's batch file format (no key needed: ingest
    /// reads result files without calling the provider).
    pub fn format(&self) -> Arc<dyn BatchFormat> {
        match self.config.provider.kind {
            ProviderKind::OpenAi | ProviderKind::AzureOpenAi => Arc::new(OpenAiFormat),
        }
    }

    /// The pipeline's ports over this app's stores and clock.
    pub fn core(&self) -> Core {
        Core {
            requests: self.store.clone(),
            jobs: self.store.clone(),
            savings: self.store.clone(),
            objects: self.objects.clone(),
            clock: self.clock.clone(),
            config: self.config.clone(),
            crash: Arc::new(NoCrashes),
            format: self.format(),
        }
    }

    /// The HTTP API over this app's stores and clock.
    pub fn api(&self) -> Api {
        Api::new(
            self.store.clone(),
            self.store.clone(),
            self.store.clone(),
            self.objects.clone(),
            self.clock.clone(),
            &self.config.limits,
        )
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
