//! Table creation (`batchq init`, tests): both tables with their indexes
//! and TTL, idempotently.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType,
};

use super::item::err_msg;
use super::schema::*;
use super::DynamoStore;
use crate::store::StoreError;

impl DynamoStore {
    /// Creates both tables with their indexes (on demand billing). Idempotent.
    pub async fn create_tables(&self) -> Result<(), StoreError> {
        let key = |name: &str, t: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(t).build();
        let attr = |name: &str, t: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(t)
                .build()
        };
        let gsi = |name: &str, hash: &str, range: &str| {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(hash, KeyType::Hash).expect("key"))
                .key_schema(key(range, KeyType::Range).expect("key"))
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()
        };
        let tables = [
            (
                &self.requests_table,
                vec![
                    attr(PK, ScalarAttributeType::S),
                    attr(SK, ScalarAttributeType::S),
                    attr("queue", ScalarAttributeType::S),
                    attr("queue_order", ScalarAttributeType::S),
                    attr("job_part", ScalarAttributeType::S),
                ],
                vec![gsi(QUEUE_INDEX, "queue", "queue_order"), gsi(JOB_INDEX, "job_part", PK)],
            ),
            (
                &self.jobs_table,
                vec![
                    attr(PK, ScalarAttributeType::S),
                    attr(SK, ScalarAttributeType::S),
                    attr("kind", ScalarAttributeType::S),
                    attr("open", ScalarAttributeType::S),
                    attr("created_at", ScalarAttributeType::N),
                ],
                vec![
                    gsi(JOBS_INDEX, "kind", "created_at"),
                    gsi(OPEN_INDEX, "open", "created_at"),
                ],
            ),
        ];
        for (name, attrs, gsis) in tables {
            let mut req = self
                .client
                .create_table()
                .table_name(name.as_str())
                .billing_mode(BillingMode::PayPerRequest)
                .key_schema(key(PK, KeyType::Hash).expect("key"))
                .key_schema(key(SK, KeyType::Range).expect("key"));
            for a in attrs {
                req = req.attribute_definitions(a.expect("attribute"));
            }
            for g in gsis {
                req = req.global_secondary_indexes(g.expect("index"));
            }
            match req.send().await {
                Ok(_) => {}
                Err(e) if e.as_service_error().is_some_and(|se| se.is_resource_in_use_exception()) => {}
                Err(e) => return Err(StoreError::backend("dynamodb CreateTable", err_msg(e))),
            }
        }
        for name in [&self.requests_table, &self.jobs_table] {
            self.wait_active(name).await?;
            self.enable_ttl(name).await?;
        }
        Ok(())
    }

    async fn enable_ttl(&self, table: &str) -> Result<(), StoreError> {
        enable_ttl(&self.client, table).await
    }

    async fn wait_active(&self, table: &str) -> Result<(), StoreError> {
        wait_active(&self.client, table).await
    }
}

/// Turns on `table`'s TTL on [`EXPIRES_AT`] unless it is on already
/// (enabling it twice is an error in DynamoDB). For `batchq init` and tests;
/// the template declares the TTL in AWS.
pub(crate) async fn enable_ttl(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), StoreError> {
    use aws_sdk_dynamodb::types::{TimeToLiveSpecification, TimeToLiveStatus};
    let current = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| StoreError::backend("dynamodb DescribeTimeToLive", err_msg(e)))?;
    let status = current
        .time_to_live_description()
        .and_then(|d| d.time_to_live_status().cloned());
    if matches!(status, Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)) {
        return Ok(());
    }
    let spec = TimeToLiveSpecification::builder()
        .attribute_name(EXPIRES_AT)
        .enabled(true)
        .build()
        .expect("spec has name and flag");
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(spec)
        .send()
        .await
        .map_err(|e| StoreError::backend("dynamodb UpdateTimeToLive", err_msg(e)))?;
    Ok(())
}

/// Waits (up to a minute) until `table` is ACTIVE after its creation.
pub(crate) async fn wait_active(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), StoreError> {
    for _ in 0..120 {
        let out = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| StoreError::backend("dynamodb DescribeTable", err_msg(e)))?;
        let active = out
            .table()
            .and_then(|t| t.table_status())
            .is_some_and(|s| s.as_str() == "ACTIVE");
        if active {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(StoreError::backend(
        "dynamodb DescribeTable",
        format!("table {table} did not become ACTIVE"),
    ))
}
