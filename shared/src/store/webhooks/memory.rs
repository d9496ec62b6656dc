//! The webhook store in memory (tests, and `batchq` runs on the memory
//! store). One mutex: every call is atomic, as a SQLite transaction is.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::feed::FeedCursor;
use crate::ids::TenantId;
use crate::store::webhooks::{EndpointState, JobMark, WebhookStore};
use crate::store::StoreError;
use crate::time::Timestamp;
use crate::webhook::delivery::{Delivery, DeliveryId, DeliveryStatus};
use crate::webhook::endpoint::{Endpoint, EndpointId};

#[derive(Default)]
pub struct MemoryWebhooks {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    endpoints: BTreeMap<EndpointId, EndpointState>,
    /// Deliveries in the order they were stored (`None`: deleted).
    deliveries: Vec<Option<Delivery>>,
    by_id: HashMap<DeliveryId, usize>,
}

impl MemoryWebhooks {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn not_found(entity: &'static str, id: &str) -> StoreError {
    StoreError::NotFound {
        entity,
        id: id.to_owned(),
    }
}

/// Stores each delivery whose id is new; returns how many were.
fn store_new(s: &mut State, deliveries: Vec<Delivery>) -> u32 {
    let mut new = 0;
    for d in deliveries {
        if s.by_id.contains_key(&d.id) {
            continue;
        }
        let at = s.deliveries.len();
        s.by_id.insert(d.id.clone(), at);
        s.deliveries.push(Some(d));
        new += 1;
    }
    new
}

#[async_trait]
impl WebhookStore for MemoryWebhooks {
    async fn create_endpoint(&self, endpoint: &Endpoint, cursor: Option<&FeedCursor>) -> Result<(), StoreError> {
        let mut s = self.lock();
        if s.endpoints.contains_key(&endpoint.id) {
            return Err(StoreError::ConditionFailed {
                entity: "webhook endpoint",
                id: endpoint.id.to_string(),
                expected: "no endpoint".into(),
                actual: Some("exists".into()),
            });
        }
        s.endpoints.insert(
            endpoint.id.clone(),
            EndpointState {
                endpoint: endpoint.clone(),
                cursor: cursor.cloned(),
                jobs: None,
            },
        );
        Ok(())
    }

    async fn get_endpoint(&self, tenant: &TenantId, id: &EndpointId) -> Result<Option<Endpoint>, StoreError> {
        Ok(self
            .lock()
            .endpoints
            .get(id)
            .filter(|e| e.endpoint.tenant == *tenant)
            .map(|e| e.endpoint.clone()))
    }

    async fn list_endpoints(&self, tenant: &TenantId) -> Result<Vec<Endpoint>, StoreError> {
        let mut out: Vec<Endpoint> = self
            .lock()
            .endpoints
            .values()
            .filter(|e| e.endpoint.tenant == *tenant)
            .map(|e| e.endpoint.clone())
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    async fn enabled_endpoints(&self) -> Result<Vec<EndpointState>, StoreError> {
        Ok(self
            .lock()
            .endpoints
            .values()
            .filter(|e| e.endpoint.enabled)
            .cloned()
            .collect())
    }

    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        let mut s = self.lock();
        let stored = s
            .endpoints
            .get_mut(&endpoint.id)
            .filter(|e| e.endpoint.tenant == endpoint.tenant)
            .ok_or_else(|| not_found("webhook endpoint", endpoint.id.as_str()))?;
        stored.endpoint = endpoint.clone();
        Ok(())
    }

    async fn delete_endpoint(&self, tenant: &TenantId, id: &EndpointId) -> Result<bool, StoreError> {
        let mut s = self.lock();
        if s.endpoints.get(id).is_none_or(|e| e.endpoint.tenant != *tenant) {
            return Ok(false);
        }
        s.endpoints.remove(id);
        let State { deliveries, by_id, .. } = &mut *s;
        for slot in deliveries.iter_mut() {
            if slot.as_ref().is_some_and(|d| d.endpoint == *id) {
                if let Some(d) = slot.take() {
                    by_id.remove(&d.id);
                }
            }
        }
        Ok(true)
    }

    async fn materialise(
        &self,
        endpoint: &EndpointId,
        expected: Option<&FeedCursor>,
        next: Option<&FeedCursor>,
        deliveries: Vec<Delivery>,
    ) -> Result<u32, StoreError> {
        let mut s = self.lock();
        let stored = s
            .endpoints
            .get(endpoint)
            .ok_or_else(|| not_found("webhook endpoint", endpoint.as_str()))?;
        if next.is_some() && stored.cursor.as_ref() != expected {
            return Err(StoreError::ConditionFailed {
                entity: "webhook endpoint",
                id: endpoint.to_string(),
                expected: format!("feed cursor {}", expected.map_or("(none)", |c| c.as_str())),
                actual: Some(stored.cursor.as_ref().map_or("(none)", |c| c.as_str()).to_owned()),
            });
        }
        let new = store_new(&mut s, deliveries);
        if let Some(next) = next {
            if let Some(e) = s.endpoints.get_mut(endpoint) {
                e.cursor = Some(next.clone());
            }
        }
        Ok(new)
    }

    async fn materialise_jobs(
        &self,
        endpoint: &EndpointId,
        expected: Option<&JobMark>,
        next: Option<&JobMark>,
        deliveries: Vec<Delivery>,
    ) -> Result<u32, StoreError> {
        let mut s = self.lock();
        let stored = s
            .endpoints
            .get(endpoint)
            .ok_or_else(|| not_found("webhook endpoint", endpoint.as_str()))?;
        if stored.jobs.as_ref() != expected {
            return Err(StoreError::ConditionFailed {
                entity: "webhook endpoint",
                id: endpoint.to_string(),
                expected: format!("job mark {}", expected.map_or("(none)".into(), |m| m.encode())),
                actual: Some(stored.jobs.as_ref().map_or("(none)".into(), |m| m.encode())),
            });
        }
        let new = store_new(&mut s, deliveries);
        if let (Some(next), Some(e)) = (next, s.endpoints.get_mut(endpoint)) {
            e.jobs = Some(next.clone());
        }
        Ok(new)
    }

    async fn known_deliveries(&self, ids: &[DeliveryId]) -> Result<Vec<DeliveryId>, StoreError> {
        let s = self.lock();
        Ok(ids.iter().filter(|id| s.by_id.contains_key(*id)).cloned().collect())
    }

    async fn due(&self, endpoint: &EndpointId, now: Timestamp, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let s = self.lock();
        let mut out: Vec<&Delivery> = s
            .deliveries
            .iter()
            .flatten()
            .filter(|d| d.endpoint == *endpoint && d.status == DeliveryStatus::Pending && d.next_attempt_at <= now)
            .collect();
        out.sort_by_key(|d| d.next_attempt_at);
        Ok(out.into_iter().take(limit as usize).cloned().collect())
    }

    async fn oldest_pending(&self, endpoint: &EndpointId) -> Result<Option<Timestamp>, StoreError> {
        Ok(self
            .lock()
            .deliveries
            .iter()
            .flatten()
            .filter(|d| d.endpoint == *endpoint && d.status == DeliveryStatus::Pending)
            .map(|d| d.created_at)
            .min())
    }

    async fn save_delivery(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let mut s = self.lock();
        let at = *s
            .by_id
            .get(&delivery.id)
            .ok_or_else(|| not_found("webhook delivery", delivery.id.as_str()))?;
        s.deliveries[at] = Some(delivery.clone());
        Ok(())
    }

    async fn get_delivery(&self, tenant: &TenantId, id: &DeliveryId) -> Result<Option<Delivery>, StoreError> {
        let s = self.lock();
        Ok(s.by_id
            .get(id)
            .and_then(|at| s.deliveries[*at].as_ref())
            .filter(|d| d.tenant == *tenant)
            .cloned())
    }

    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        status: Option<DeliveryStatus>,
        endpoint: Option<&EndpointId>,
        after: Option<&DeliveryId>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let s = self.lock();
        let before = match after {
            Some(id) => match s.by_id.get(id) {
                Some(at) => *at,
                None => return Ok(Vec::new()),
            },
            None => s.deliveries.len(),
        };
        Ok(s.deliveries[..before]
            .iter()
            .rev()
            .flatten()
            .filter(|d| d.tenant == *tenant)
            .filter(|d| status.is_none_or(|st| d.status == st))
            .filter(|d| endpoint.is_none_or(|e| d.endpoint == *e))
            .take(limit as usize)
            .cloned()
            .collect())
    }
}
