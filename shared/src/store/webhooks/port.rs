//! The webhook store port: endpoints, each endpoint's position in its
//! tenant's results feed, and deliveries. Adapters: memory
//! (`store::webhooks::memory`), SQLite (`store::webhooks::sqlite`, its own
//! database file beside the request store's).

use async_trait::async_trait;

use std::fmt;

use crate::feed::FeedCursor;
use crate::ids::{JobId, TenantId};
use crate::store::StoreError;
use crate::time::Timestamp;
use crate::webhook::delivery::{Delivery, DeliveryId, DeliveryStatus};
use crate::webhook::endpoint::{Endpoint, EndpointId};

/// An endpoint with where its delivery of request events stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointState {
    pub endpoint: Endpoint,
    /// The last feed entry turned into deliveries (`None`: none yet; the
    /// endpoint starts at the feed position it was created at).
    pub cursor: Option<FeedCursor>,
    /// Where its `job.finished` events stand (`None`: no job passed yet).
    pub jobs: Option<JobMark>,
}

/// An endpoint's position among its tenant's jobs, in the order they are
/// listed (created, then id): every job up to and including this one has
/// finished and its `job.finished` delivery (if any) is stored. Jobs after
/// it are looked at on each pass, however many there are, so a job that
/// finishes after many newer ones still gets its event.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct JobMark {
    pub created_at: Timestamp,
    pub job: JobId,
}

impl JobMark {
    pub fn new(created_at: Timestamp, job: JobId) -> Self {
        Self { created_at, job }
    }

    /// The stored form, `{created millis, 15 digits}#{job id}`: sorts as the
    /// marks do.
    pub fn encode(&self) -> String {
        format!("{:015}#{}", self.created_at.millis().max(0), self.job)
    }

    pub fn decode(s: &str) -> Result<Self, String> {
        let (at, job) = s.split_once('#').ok_or_else(|| format!("{s:?} is not a job mark"))?;
        let at: i64 = at.parse().map_err(|_| format!("{s:?} is not a job mark"))?;
        let job = JobId::parse(job).map_err(|e| format!("{s:?}: {}", e.message))?;
        Ok(Self::new(Timestamp::from_millis(at), job))
    }
}

impl fmt::Display for JobMark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

/// The most deliveries one `materialise`/`materialise_jobs` call may
/// carry: what one DynamoDB transaction (100 items) holds beside the
/// endpoint's item, each delivery being [`ITEMS_PER_DELIVERY`] items. The
/// dispatcher writes in parts of this size.
pub const MATERIALISE_MAX: usize = (100 - 1) / ITEMS_PER_DELIVERY;

/// Items a delivery takes in the DynamoDB store (the delivery, its place in
/// its tenant's listing, its place in its endpoint's due order).
pub const ITEMS_PER_DELIVERY: usize = 3;

#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Stores a new endpoint with its starting feed position.
    async fn create_endpoint(&self, endpoint: &Endpoint, cursor: Option<&FeedCursor>) -> Result<(), StoreError>;

    async fn get_endpoint(&self, tenant: &TenantId, id: &EndpointId) -> Result<Option<Endpoint>, StoreError>;

    /// A tenant's endpoints, oldest first.
    async fn list_endpoints(&self, tenant: &TenantId) -> Result<Vec<Endpoint>, StoreError>;

    /// Every enabled endpoint of every tenant, with its feed position.
    async fn enabled_endpoints(&self) -> Result<Vec<EndpointState>, StoreError>;

    /// Saves an endpoint's settings (not its feed position). `NotFound`
    /// when it was deleted meanwhile.
    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError>;

    /// Deletes an endpoint and its deliveries; `false` when there was none.
    async fn delete_endpoint(&self, tenant: &TenantId, id: &EndpointId) -> Result<bool, StoreError>;

    /// In ONE atomic write: stores each of `deliveries` whose id is not
    /// stored yet (a stored one is left as it is) and, when `next` is given,
    /// moves the endpoint's feed position from `expected` to `next`. When
    /// the stored position is not `expected` (another writer moved it) or
    /// the endpoint is gone, nothing is written: `ConditionFailed` /
    /// `NotFound`. Returns how many deliveries were new. A crash before
    /// this write loses nothing (the entries are read again, same ids); a
    /// crash after it doubles nothing (the position moved with them).
    async fn materialise(
        &self,
        endpoint: &EndpointId,
        expected: Option<&FeedCursor>,
        next: Option<&FeedCursor>,
        deliveries: Vec<Delivery>,
    ) -> Result<u32, StoreError>;

    /// As [`WebhookStore::materialise`] for `job.finished` deliveries: in
    /// ONE atomic write, conditioned on the endpoint's job mark being
    /// `expected`, stores each new one of `deliveries` and, when `next` is
    /// given, moves the mark to it (`ConditionFailed` when the stored mark
    /// is not `expected`, `NotFound` when the endpoint is gone; then
    /// nothing is written).
    async fn materialise_jobs(
        &self,
        endpoint: &EndpointId,
        expected: Option<&JobMark>,
        next: Option<&JobMark>,
        deliveries: Vec<Delivery>,
    ) -> Result<u32, StoreError>;

    /// Which of `ids` are stored (for the endpoint's job events).
    async fn known_deliveries(&self, ids: &[DeliveryId]) -> Result<Vec<DeliveryId>, StoreError>;

    /// Up to `limit` pending deliveries of `endpoint` due by `now`, the
    /// earliest due first.
    async fn due(&self, endpoint: &EndpointId, now: Timestamp, limit: u32) -> Result<Vec<Delivery>, StoreError>;

    /// When the oldest pending delivery of `endpoint` was made (`None`: none
    /// is pending): what the oldest-undelivered figure is made of.
    async fn oldest_pending(&self, endpoint: &EndpointId) -> Result<Option<Timestamp>, StoreError>;

    /// Saves a delivery after an attempt or a replay (status, attempts,
    /// times, last error). `NotFound` when it was deleted meanwhile.
    async fn save_delivery(&self, delivery: &Delivery) -> Result<(), StoreError>;

    async fn get_delivery(&self, tenant: &TenantId, id: &DeliveryId) -> Result<Option<Delivery>, StoreError>;

    /// A tenant's deliveries, newest first, optionally of one status, after
    /// `after` (the last id of the previous page), at most `limit`.
    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        status: Option<DeliveryStatus>,
        endpoint: Option<&EndpointId>,
        after: Option<&DeliveryId>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError>;
}
