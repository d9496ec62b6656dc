//! Wiring: builds the adapters from configuration once per cold start. The
//! handlers keep the resulting [`App`] in their state.

use std::sync::Arc;

use crate::config::Config;
use crate::pipeline::{Core, Ingester, Poller, Submitter};
use crate::pricing::PriceBook;
use crate::provider::openai::OpenAiClient;
use crate::provider::{Provider, ProviderError};
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
}

impl App {
    /// Builds the AWS clients and adapters from `config`.
    pub async fn from_config(config: Config) -> Self {
        let sdk = crate::aws::sdk_config(&config).await;
        let s3 = Arc::new(S3Store::new(
            crate::aws::s3_client(&sdk, &config),
            &config.bucket,
            config.limits.s3_part_bytes,
        ));
        let objects: Arc<dyn ObjectStore> = s3.clone();
        let store = Arc::new(DynamoStore::new(
            crate::aws::dynamo_client(&sdk),
            &config.requests_table,
            &config.jobs_table,
            objects,
            config.limits.inline_body_max_bytes,
            config.limits.inline_result_max_bytes,
        ));
        Self {
            config: Arc::new(config),
            store,
            objects: s3,
            clock: Arc::new(SystemClock),
            sdk,
        }
    }

    /// The configured provider client; reads the key (from Secrets Manager
    /// when configured) once.
    pub async fn provider(&self) -> Result<Arc<dyn Provider>, ProviderError> {
        Ok(Arc::new(
            OpenAiClient::from_config(&self.config.provider, &self.sdk).await?,
        ))
    }

    /// The price table costs are computed with.
    pub fn prices(&self) -> Arc<PriceBook> {
        Arc::new(PriceBook::bundled())
    }

    pub fn core(&self) -> Core {
        Core::from_app(self)
    }

    pub fn ingester(&self) -> Ingester {
        Ingester::new(self.core(), self.prices())
    }

    pub fn submitter(&self, provider: Arc<dyn Provider>) -> Submitter {
        Submitter::new(self.core(), provider)
    }

    pub fn poller(&self, provider: Arc<dyn Provider>) -> Poller {
        Poller::new(self.core(), provider, self.ingester())
    }
}
