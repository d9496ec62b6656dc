//! Test harness shared by batchq's adapter and end-to-end tests.
//!
//! Tests talk to a real emulator (moto server) through the real AWS SDK. The
//! emulator is started by `make test` (see `scripts/with-emulator.sh`), which
//! exports `AWS_ENDPOINT_URL`. Every test creates its own uniquely named
//! tables and bucket, so tests run in parallel without seeing each other.

use std::sync::Arc;

pub mod conformance;
pub mod iam;
pub mod lambda;
pub mod pipeline;
pub mod stores;
pub mod template;

use batchq_core::config::Config;
use batchq_core::placement::InlineLimits;
use batchq_core::store::dynamo::DynamoStore;
use batchq_core::store::placed::PlacedStore;
use batchq_core::store::s3::S3Store;
use batchq_core::store::ObjectStore;

/// A private set of tables and a bucket on the emulator.
pub struct TestEnv {
    pub config: Config,
    pub dynamo: aws_sdk_dynamodb::Client,
    pub s3_client: aws_sdk_s3::Client,
    pub s3: Arc<S3Store>,
    pub store: PlacedStore<DynamoStore>,
    /// What the store's DynamoDB and S3 clients report using (batchq's
    /// own tally, `batchq_core::overhead`).
    pub usage: Arc<batchq_core::overhead::UsageTally>,
}

/// The emulator endpoint, or a panic that says how to get one. A test that
/// silently skipped without an emulator could never fail.
pub fn emulator_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!(
            "AWS_ENDPOINT_URL is not set: these tests need the local AWS emulator. \
             Run them with `make test`, which installs and starts it."
        )
    })
}

/// A short unique suffix for resource names.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

impl TestEnv {
    /// Fresh tables and bucket with default settings.
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// Fresh tables and bucket; `tweak` may change the configuration first.
    pub async fn with(tweak: impl FnOnce(&mut Config)) -> Self {
        let endpoint = emulator_endpoint();
        let mut config = Config::from_lookup(&|name| match name {
            "AWS_ENDPOINT_URL" => Some(endpoint.clone()),
            _ => None,
        })
        .expect("default config parses");
        config.requests_table = unique("requests");
        config.jobs_table = unique("jobs");
        config.webhooks_table = Some(unique("webhooks"));
        config.bucket = unique("bucket");
        // The smallest part S3 accepts keeps streaming tests quick.
        config.limits.s3_part_bytes = batchq_core::config::S3_MIN_PART_BYTES;
        tweak(&mut config);

        let sdk = batchq_core::aws::sdk_config(&config).await;
        let usage = Arc::new(batchq_core::overhead::UsageTally::on_aws());
        let dynamo = batchq_core::aws::dynamo_client(&sdk, &usage);
        let s3_client = batchq_core::aws::metered_s3_client(&sdk, &config, &usage);
        s3_client
            .create_bucket()
            .bucket(&config.bucket)
            .send()
            .await
            .expect("create test bucket");
        let s3 = Arc::new(S3Store::new(
            s3_client.clone(),
            &config.bucket,
            config.limits.s3_part_bytes,
        ));
        let objects: Arc<dyn ObjectStore> = s3.clone();
        let store = PlacedStore::new(
            DynamoStore::new(dynamo.clone(), &config.requests_table, &config.jobs_table)
                .with_retention(config.policy.retention)
                .with_usage(usage.clone()),
            objects,
            InlineLimits {
                body_max: config.limits.inline_body_max_bytes,
                result_max: config.limits.inline_result_max_bytes,
            },
        );
        store.create_tables().await.expect("create test tables");
        if let Some(t) = &config.webhooks_table {
            batchq_core::store::webhooks::dynamo::DynamoWebhooks::new(dynamo.clone(), t)
                .create_table()
                .await
                .expect("create the test webhook table");
        }
        Self {
            config,
            dynamo,
            s3_client,
            s3,
            store,
            usage,
        }
    }

    /// Makes the global secondary indexes of both tables lag their writes
    /// by `lag` (the emulator's `/_batchq/index-lag`), as DynamoDB's
    /// eventually consistent indexes do.
    pub async fn set_index_lag(&self, lag: std::time::Duration) {
        for table in [&self.config.requests_table, &self.config.jobs_table] {
            set_table_index_lag(table, lag).await;
        }
    }

    /// Number of items in the requests table (all item kinds), for
    /// "nothing was written" assertions.
    pub async fn request_items(&self) -> usize {
        count_items(&self.dynamo, &self.config.requests_table).await
    }

    /// Number of items in the jobs table.
    pub async fn job_items(&self) -> usize {
        count_items(&self.dynamo, &self.config.jobs_table).await
    }
}

/// Makes the global secondary indexes of one table lag its writes by `lag`
/// (zero: no lag, the indexes answer from the table as it is). A lag far
/// longer than the test holds an index at what it was when the lag was set,
/// for the writes that follow.
pub async fn set_table_index_lag(table: &str, lag: std::time::Duration) {
    let url = format!("{}/_batchq/index-lag", emulator_endpoint());
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&serde_json::json!({"table": table, "ms": lag.as_millis() as u64}))
        .send()
        .await
        .expect("emulator answers /_batchq/index-lag");
    assert!(resp.status().is_success(), "index lag refused: {}", resp.status());
}

async fn count_items(client: &aws_sdk_dynamodb::Client, table: &str) -> usize {
    scan_all(client, table).await.len()
}

/// Every item of a table (tests only: a full scan).
pub async fn scan_all(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan");
        items.extend(out.items.unwrap_or_default());
        match out.last_evaluated_key {
            Some(k) => start = Some(k),
            None => return items,
        }
    }
}
