//! The webhook store's conformance cases (`WebhookStore`): what the
//! memory, SQLite and DynamoDB adapters must each do
//! (`tests/tests/webhook_store.rs` runs every case on each).

use std::collections::BTreeSet;
use std::sync::Arc;

use batchq_core::feed::FeedCursor;
use batchq_core::ids::{JobId, TenantId};
use batchq_core::store::webhooks::{JobMark, WebhookStore};
use batchq_core::store::StoreError;
use batchq_core::time::Timestamp;
use batchq_core::webhook::delivery::{Delivery, DeliveryStatus, RetrySchedule};
use batchq_core::webhook::endpoint::{DeliveryMode, Endpoint, EndpointId, EndpointUrl, EventType};
use batchq_core::webhook::event::EventId;
use batchq_core::webhook::signature::WebhookSecret;

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

/// An event id as stored (ids are made from feed entries and jobs; these
/// cases only need distinct ones).
fn event_id(s: &str) -> EventId {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).unwrap()
}

fn delivery(e: &Endpoint, event: &str, at: i64) -> Delivery {
    Delivery::new(
        e.id.clone(),
        e.tenant.clone(),
        event_id(event),
        Some(EventType::RequestCompleted),
        format!("{{\"event\":\"{event}\"}}"),
        Timestamp::from_millis(at),
    )
}

pub async fn materialise_moves_the_cursor_with_its_deliveries_or_writes_nothing(s: Arc<dyn WebhookStore>) {
    let name = "store";
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

pub async fn due_returns_pending_deliveries_whose_time_came_earliest_first_up_to_the_limit(s: Arc<dyn WebhookStore>) {
    let name = "store";
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

pub async fn deliveries_and_endpoints_are_tenant_scoped_and_listed_newest_first_by_status(s: Arc<dyn WebhookStore>) {
    let name = "store";
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

pub async fn endpoint_updates_keep_the_feed_position_and_disabled_endpoints_are_not_enabled(s: Arc<dyn WebhookStore>) {
    let name = "store";
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

pub async fn the_job_mark_moves_with_its_deliveries_and_a_stale_writer_writes_nothing(s: Arc<dyn WebhookStore>) {
    let e = endpoint("acme", 1);
    s.create_endpoint(&e, Some(&cursor("acme", 3))).await.unwrap();
    let m1 = JobMark::new(Timestamp::from_millis(5), JobId::generate());
    let m2 = JobMark::new(Timestamp::from_millis(6), JobId::generate());
    let n = s
        .materialise_jobs(&e.id, None, Some(&m1), vec![delivery(&e, "evt_job_1", 10)])
        .await
        .unwrap();
    assert_eq!(n, 1);
    let err = s
        .materialise_jobs(&e.id, None, Some(&m2), vec![delivery(&e, "evt_job_2", 10)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed { .. }), "{err}");
    // Deliveries without moving the mark, still conditioned on it.
    let n = s
        .materialise_jobs(&e.id, Some(&m1), None, vec![delivery(&e, "evt_job_2", 10)])
        .await
        .unwrap();
    assert_eq!(n, 1);
    let n = s
        .materialise_jobs(
            &e.id,
            Some(&m1),
            Some(&m2),
            vec![delivery(&e, "evt_job_2", 11), delivery(&e, "evt_job_3", 11)],
        )
        .await
        .unwrap();
    assert_eq!(n, 1, "a stored delivery is not stored again");
    let states = s.enabled_endpoints().await.unwrap();
    assert_eq!(states[0].jobs.as_ref(), Some(&m2));
    assert_eq!(
        states[0].cursor.as_ref(),
        Some(&cursor("acme", 3)),
        "the feed position is its own"
    );
    let events: BTreeSet<String> = s
        .due(&e.id, Timestamp::from_millis(20), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.event_id.as_str().to_owned())
        .collect();
    assert_eq!(
        events,
        BTreeSet::from(["evt_job_1".into(), "evt_job_2".into(), "evt_job_3".into()])
    );
    let gone = endpoint("acme", 2);
    assert!(matches!(
        s.materialise_jobs(&gone.id, None, Some(&m1), vec![]).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn a_write_of_more_deliveries_than_one_transaction_holds_stores_them_all_once(s: Arc<dyn WebhookStore>) {
    let e = endpoint("acme", 1);
    s.create_endpoint(&e, None).await.unwrap();
    let c = cursor("acme", 80);
    let ds: Vec<Delivery> = (0..80).map(|i| delivery(&e, &format!("evt_{i}"), 10)).collect();
    assert_eq!(s.materialise(&e.id, None, Some(&c), ds.clone()).await.unwrap(), 80);
    assert_eq!(s.enabled_endpoints().await.unwrap()[0].cursor.as_ref(), Some(&c));
    assert_eq!(s.due(&e.id, Timestamp::from_millis(10), 1000).await.unwrap().len(), 80);
    let again = s.materialise(&e.id, Some(&c), Some(&c), ds).await.unwrap();
    assert_eq!(again, 0);
}

pub async fn the_oldest_pending_delivery_is_the_earliest_made_that_is_not_delivered(s: Arc<dyn WebhookStore>) {
    let e = endpoint("acme", 1);
    s.create_endpoint(&e, None).await.unwrap();
    assert_eq!(s.oldest_pending(&e.id).await.unwrap(), None);
    s.materialise(
        &e.id,
        None,
        None,
        vec![
            delivery(&e, "evt_1", 10),
            delivery(&e, "evt_2", 20),
            delivery(&e, "evt_3", 30),
        ],
    )
    .await
    .unwrap();
    assert_eq!(s.oldest_pending(&e.id).await.unwrap(), Some(Timestamp::from_millis(10)));
    let first = s.due(&e.id, Timestamp::from_millis(10), 1).await.unwrap().remove(0);
    s.save_delivery(&first.delivered(Timestamp::from_millis(40)))
        .await
        .unwrap();
    assert_eq!(s.oldest_pending(&e.id).await.unwrap(), Some(Timestamp::from_millis(20)));
    // A retry scheduled far ahead is still pending, and still the oldest.
    let schedule = RetrySchedule {
        delays: vec![std::time::Duration::from_secs(3600)],
        min_span: std::time::Duration::ZERO,
    };
    let second = s.due(&e.id, Timestamp::from_millis(20), 1).await.unwrap().remove(0);
    assert_eq!(second.event_id.as_str(), "evt_2");
    let retried = second.attempt_failed(Timestamp::from_millis(50), Some(500), "HTTP 500".into(), &schedule);
    assert_eq!(retried.status, DeliveryStatus::Pending);
    s.save_delivery(&retried).await.unwrap();
    assert_eq!(s.oldest_pending(&e.id).await.unwrap(), Some(Timestamp::from_millis(20)));
    let due: Vec<String> = s
        .due(&e.id, Timestamp::from_millis(60), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.event_id.as_str().to_owned())
        .collect();
    assert_eq!(due, ["evt_3"], "the retry is not due before its time");
}
