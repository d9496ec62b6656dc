//! The same behaviour pinned on both adapters.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::memory::MemoryWebhooks;
#[cfg(feature = "embedded")]
use super::sqlite::SqliteWebhooks;
use crate::feed::FeedCursor;
use crate::ids::TenantId;
use crate::store::webhooks::WebhookStore;
use crate::store::StoreError;
use crate::time::Timestamp;
use crate::webhook::delivery::{Delivery, DeliveryStatus, RetrySchedule};
use crate::webhook::endpoint::{DeliveryMode, Endpoint, EndpointId, EndpointUrl, EventType};
use crate::webhook::event::EventId;
use crate::webhook::signature::WebhookSecret;

fn stores() -> Vec<(&'static str, Arc<dyn WebhookStore>)> {
    #[allow(unused_mut)] // only the memory store without the `embedded` feature
    let mut stores: Vec<(&'static str, Arc<dyn WebhookStore>)> = vec![("memory", Arc::new(MemoryWebhooks::new()))];
    #[cfg(feature = "embedded")]
    {
        let dir = std::env::temp_dir().join(format!("batchq-webhooks-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        stores.push(("sqlite", Arc::new(SqliteWebhooks::in_dir(&dir).unwrap())));
    }
    stores
}

fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn endpoint(t: &str, at: i64) -> Endpoint {
    Endpoint {
        id: EndpointId::generate(),
        tenant: tenant(t),
        url: EndpointUrl::parse("https://example.com/hook").unwrap(),
        events: BTreeSet::from([EventType::RequestCompleted]),
        mode: DeliveryMode::PerRequest,
        secret: WebhookSecret::generate(),
        enabled: true,
        description: None,
        created_at: Timestamp::from_millis(at),
        updated_at: Timestamp::from_millis(at),
    }
}

fn cursor(t: &str, seq: u64) -> FeedCursor {
    FeedCursor::new(&tenant(t), seq)
}

fn delivery(e: &Endpoint, event: &str, at: i64) -> Delivery {
    Delivery::new(
        e.id.clone(),
        e.tenant.clone(),
        EventId::for_test(event),
        Some(EventType::RequestCompleted),
        format!("{{\"event\":\"{event}\"}}"),
        Timestamp::from_millis(at),
    )
}

#[tokio::test]
async fn materialise_moves_the_cursor_with_its_deliveries_or_writes_nothing() {
    for (name, s) in stores() {
        let e = endpoint("acme", 1);
        s.create_endpoint(&e, None).await.unwrap();
        let c1 = cursor("acme", 1);
        let c2 = cursor("acme", 2);
        let n = s
            .materialise(
                &e.id,
                None,
                Some(&c1),
                vec![delivery(&e, "evt_1", 10), delivery(&e, "evt_2", 10)],
            )
            .await
            .unwrap();
        assert_eq!(n, 2, "{name}");
        // A second writer holding the old position is refused and writes nothing.
        let err = s
            .materialise(&e.id, None, Some(&c2), vec![delivery(&e, "evt_3", 10)])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::ConditionFailed { .. }), "{name}: {err}");
        assert_eq!(
            s.due(&e.id, Timestamp::from_millis(10), 10).await.unwrap().len(),
            2,
            "{name}"
        );
        // The same events again (a crash after an earlier write): nothing doubles.
        let n = s
            .materialise(
                &e.id,
                Some(&c1),
                Some(&c2),
                vec![delivery(&e, "evt_2", 11), delivery(&e, "evt_3", 11)],
            )
            .await
            .unwrap();
        assert_eq!(n, 1, "{name}");
        let states = s.enabled_endpoints().await.unwrap();
        assert_eq!(states.len(), 1, "{name}");
        assert_eq!(states[0].cursor.as_ref(), Some(&c2), "{name}");
        assert_eq!(
            s.due(&e.id, Timestamp::from_millis(20), 10).await.unwrap().len(),
            3,
            "{name}"
        );
    }
}

#[tokio::test]
async fn due_returns_pending_deliveries_whose_time_came_earliest_first_up_to_the_limit() {
    for (name, s) in stores() {
        let e = endpoint("acme", 1);
        s.create_endpoint(&e, None).await.unwrap();
        let ds = vec![
            delivery(&e, "evt_a", 30),
            delivery(&e, "evt_b", 10),
            delivery(&e, "evt_c", 20),
        ];
        s.materialise(&e.id, None, None, ds.clone()).await.unwrap();
        let due = s.due(&e.id, Timestamp::from_millis(25), 10).await.unwrap();
        let ids: Vec<&str> = due.iter().map(|d| d.event_id.as_str()).collect();
        assert_eq!(ids, ["evt_b", "evt_c"], "{name}");
        assert_eq!(
            s.due(&e.id, Timestamp::from_millis(99), 1).await.unwrap().len(),
            1,
            "{name}"
        );
        // Delivered ones are no longer due.
        let done = due[0].clone().delivered(Timestamp::from_millis(26));
        s.save_delivery(&done).await.unwrap();
        let left = s.due(&e.id, Timestamp::from_millis(99), 10).await.unwrap();
        assert_eq!(left.len(), 2, "{name}");
        assert!(left.iter().all(|d| d.id != done.id), "{name}");
    }
}

#[tokio::test]
async fn deliveries_and_endpoints_are_tenant_scoped_and_listed_newest_first_by_status() {
    for (name, s) in stores() {
        let a = endpoint("acme", 1);
        let b = endpoint("other", 2);
        s.create_endpoint(&a, None).await.unwrap();
        s.create_endpoint(&b, None).await.unwrap();
        s.materialise(
            &a.id,
            None,
            None,
            vec![
                delivery(&a, "evt_1", 1),
                delivery(&a, "evt_2", 2),
                delivery(&a, "evt_3", 3),
            ],
        )
        .await
        .unwrap();
        s.materialise(&b.id, None, None, vec![delivery(&b, "evt_1", 1)])
            .await
            .unwrap();
        let none = RetrySchedule {
            delays: vec![],
            min_span: std::time::Duration::ZERO,
        };
        let d2 = s.due(&a.id, Timestamp::from_millis(9), 10).await.unwrap()[1].clone();
        let failed = d2.attempt_failed(Timestamp::from_millis(9), Some(500), "HTTP 500".into(), &none);
        assert_eq!(failed.status, DeliveryStatus::Failed);
        s.save_delivery(&failed).await.unwrap();

        let all = s.list_deliveries(&tenant("acme"), None, None, None, 10).await.unwrap();
        let events: Vec<&str> = all.iter().map(|d| d.event_id.as_str()).collect();
        assert_eq!(events, ["evt_3", "evt_2", "evt_1"], "{name}");
        let page2 = s
            .list_deliveries(&tenant("acme"), None, None, Some(&all[0].id), 1)
            .await
            .unwrap();
        assert_eq!(page2[0].event_id.as_str(), "evt_2", "{name}");
        let failed_only = s
            .list_deliveries(&tenant("acme"), Some(DeliveryStatus::Failed), None, None, 10)
            .await
            .unwrap();
        assert_eq!(failed_only, vec![failed.clone()], "{name}");
        assert_eq!(
            s.get_delivery(&tenant("other"), &failed.id).await.unwrap(),
            None,
            "{name}"
        );
        assert_eq!(s.get_endpoint(&tenant("other"), &a.id).await.unwrap(), None, "{name}");
        assert_eq!(
            s.list_endpoints(&tenant("acme")).await.unwrap(),
            vec![a.clone()],
            "{name}"
        );
        assert!(!s.delete_endpoint(&tenant("other"), &a.id).await.unwrap(), "{name}");
        assert!(s.delete_endpoint(&tenant("acme"), &a.id).await.unwrap(), "{name}");
        assert!(
            s.list_deliveries(&tenant("acme"), None, None, None, 10)
                .await
                .unwrap()
                .is_empty(),
            "{name}"
        );
        assert_eq!(
            s.list_deliveries(&tenant("other"), None, None, None, 10)
                .await
                .unwrap()
                .len(),
            1,
            "{name}"
        );
    }
}

#[tokio::test]
async fn endpoint_updates_keep_the_feed_position_and_disabled_endpoints_are_not_enabled() {
    for (name, s) in stores() {
        let mut e = endpoint("acme", 1);
        let c = cursor("acme", 7);
        s.create_endpoint(&e, Some(&c)).await.unwrap();
        e.enabled = false;
        e.url = EndpointUrl::parse("https://example.org/new").unwrap();
        s.update_endpoint(&e).await.unwrap();
        assert_eq!(
            s.get_endpoint(&e.tenant, &e.id).await.unwrap(),
            Some(e.clone()),
            "{name}"
        );
        assert!(s.enabled_endpoints().await.unwrap().is_empty(), "{name}");
        e.enabled = true;
        s.update_endpoint(&e).await.unwrap();
        assert_eq!(
            s.enabled_endpoints().await.unwrap()[0].cursor,
            Some(c.clone()),
            "{name}"
        );
        let gone = endpoint("acme", 2);
        assert!(
            matches!(s.update_endpoint(&gone).await, Err(StoreError::NotFound { .. })),
            "{name}"
        );
    }
}
