//! The one bundle of ports the HTTP API and the pipeline steps work
//! through: the stores, the clock and the tally of the AWS the process
//! used ([`crate::overhead`]). The wiring (`app.rs`, the test
//! harness) builds it once over whichever adapters it chose — DynamoDB and
//! S3, or the in-memory store — and hands clones to [`crate::api::Api`]
//! and [`crate::pipeline::Core`].

use std::sync::Arc;

use async_trait::async_trait;

use crate::feed::{FeedCursor, FeedPage};
use crate::ids::{RequestKey, TenantId};
use crate::job::Job;
use crate::overhead::UsageTally;
use crate::request::{Request, RequestResult};
use crate::store::{DeliveryReads, JobStore, ObjectStore, Page, RequestStore, SavingsStore, StoreError};
use crate::time::Clock;

#[derive(Clone)]
pub struct Ports {
    pub requests: Arc<dyn RequestStore>,
    pub jobs: Arc<dyn JobStore>,
    pub savings: Arc<dyn SavingsStore>,
    pub objects: Arc<dyn ObjectStore>,
    pub clock: Arc<dyn Clock>,
    /// What this process used of AWS since a run last took it (filled by
    /// the AWS adapters and the Lambda handlers; empty on other stores).
    pub usage: Arc<UsageTally>,
}

impl Ports {
    /// The ports over one store that keeps requests, jobs and savings.
    pub fn over<S>(store: Arc<S>, objects: Arc<dyn ObjectStore>, clock: Arc<dyn Clock>) -> Self
    where
        S: RequestStore + JobStore + SavingsStore + 'static,
    {
        Self {
            requests: store.clone(),
            jobs: store.clone(),
            savings: store,
            objects,
            clock,
            usage: Arc::default(),
        }
    }

    /// The same ports adding to `usage` (the AWS adapters' tally).
    pub fn with_usage(mut self, usage: Arc<UsageTally>) -> Self {
        self.usage = usage;
        self
    }
}

/// Webhook delivery's reads through the request and job stores.
#[async_trait]
impl DeliveryReads for Ports {
    async fn feed(&self, tenant: &TenantId, after: Option<&FeedCursor>, limit: u32) -> Result<FeedPage, StoreError> {
        self.requests.feed(tenant, after, limit).await
    }

    async fn get_with_result(&self, key: &RequestKey) -> Result<Option<(Request, Option<RequestResult>)>, StoreError> {
        self.requests.get_with_result(key).await
    }

    async fn list_jobs(
        &self,
        tenant: Option<&TenantId>,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Job>, StoreError> {
        self.jobs.list_jobs(tenant, cursor, limit).await
    }
}
