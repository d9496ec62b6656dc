//! The one bundle of ports the HTTP API and the pipeline steps work
//! through: the stores, the clock and the tally of the AWS the process
//! used ([`crate::overhead`]). The wiring (`app.rs`, the test
//! harness) builds it once over whichever adapters it chose — DynamoDB and
//! S3, or the in-memory store — and hands clones to [`crate::api::Api`]
//! and [`crate::pipeline::Core`].

use std::sync::Arc;

use crate::overhead::UsageTally;
use crate::store::{JobStore, ObjectStore, RequestStore, SavingsStore};
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
