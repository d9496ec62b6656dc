//! Wiring: builds the adapters from configuration once per cold start. The
//! handlers keep the resulting [`App`] in their state.

use std::sync::Arc;

use crate::config::Config;
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
        }
    }
}
