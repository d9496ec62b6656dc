//! The webhook store's conformance cases (`batchq_tests::conformance::webhooks`)
//! on each adapter: in memory, SQLite (a fresh file per case) and DynamoDB
//! on the emulator (a fresh table per case).

use std::sync::Arc;

use batchq_core::store::webhooks::dynamo::DynamoWebhooks;
use batchq_core::store::webhooks::memory::MemoryWebhooks;
use batchq_core::store::webhooks::sqlite::SqliteWebhooks;
use batchq_core::store::webhooks::WebhookStore;

fn memory() -> Arc<dyn WebhookStore> {
    Arc::new(MemoryWebhooks::new())
}

fn sqlite() -> Arc<dyn WebhookStore> {
    let dir = std::env::temp_dir().join(format!("batchq-webhooks-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    Arc::new(SqliteWebhooks::in_dir(&dir).unwrap())
}

async fn dynamo() -> Arc<dyn WebhookStore> {
    let env = batchq_tests::TestEnv::new().await;
    let store = DynamoWebhooks::new(env.dynamo.clone(), batchq_tests::unique("webhooks"));
    store.create_table().await.unwrap();
    Arc::new(store)
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    batchq_tests::conformance::webhooks::$case(super::memory()).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    batchq_tests::conformance::webhooks::$case(super::sqlite()).await;
                }
            )*
        }
        mod dynamo {
            $(
                #[tokio::test]
                async fn $case() {
                    batchq_tests::conformance::webhooks::$case(super::dynamo().await).await;
                }
            )*
        }
    };
}

cases!(
    materialise_moves_the_cursor_with_its_deliveries_or_writes_nothing,
    due_returns_pending_deliveries_whose_time_came_earliest_first_up_to_the_limit,
    deliveries_and_endpoints_are_tenant_scoped_and_listed_newest_first_by_status,
    endpoint_updates_keep_the_feed_position_and_disabled_endpoints_are_not_enabled,
    the_job_mark_moves_with_its_deliveries_and_a_stale_writer_writes_nothing,
    a_write_of_more_deliveries_than_one_transaction_holds_stores_them_all_once,
    the_oldest_pending_delivery_is_the_earliest_made_that_is_not_delivered,
);
