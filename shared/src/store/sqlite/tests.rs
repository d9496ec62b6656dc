use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::ids::{CustomId, ModelName, TenantId};
use crate::job::{Job, JobStatus, ProviderKind};
use crate::request::{Endpoint, InsertOutcome, NewRequest, QueueGroup, RequestResult, RequestStatus};
use crate::store::data_dir::DataDir;
use crate::store::memory::MemoryObjects;
use crate::store::{JobStore, RequestRows, RequestStore};
use crate::transition::RequestUpdate;

const LIMITS: InlineLimits = InlineLimits {
    body_max: 16 * 1024,
    result_max: 16 * 1024,
};

fn temp_db() -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("batchq-sqlite-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("test.sqlite3");
    (dir, db)
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(1_790_000_000_000 + ms)
}

fn request(custom_id: &str) -> NewRequest {
    NewRequest::new(
        TenantId::parse("acme").unwrap(),
        CustomId::parse(custom_id).unwrap(),
        Endpoint::ChatCompletions,
        ModelName::parse("gpt-4o-mini").unwrap(),
        r#"{"messages":[{"content":"hi","role":"user"}],"model":"gpt-4o-mini"}"#.into(),
    )
}

fn group() -> QueueGroup {
    QueueGroup::of(Endpoint::ChatCompletions, ModelName::parse("gpt-4o-mini").unwrap())
}

fn created(o: &InsertOutcome) -> Request {
    match o {
        InsertOutcome::Created(r) => r.clone(),
        other => panic!("expected Created, got {other:?}"),
    }
}

use crate::request::Request;

#[tokio::test]
async fn rows_survive_dropping_the_store_and_opening_the_directory_again() {
    let (dir, _) = temp_db();
    let data = dir.join("data");
    let job = Job::new(JobId::generate(), ProviderKind::OpenAi, &group(), ts(0), ts(960_000));
    let (a, b) = {
        let d = DataDir::open(&data, true).unwrap();
        let store = d.store(LIMITS);
        let out = store.insert(vec![request("a"), request("b")], ts(1)).await.unwrap();
        let (a, b) = (created(&out[0]), created(&out[1]));
        store.apply(RequestUpdate::claim(&a, &job.id, ts(2))).await.unwrap();
        store.create_job(&job).await.unwrap();
        (a, b)
    };
    let d = DataDir::open(&data, false).unwrap();
    let store = d.store(LIMITS);
    let back = store.get(&a.key).await.unwrap().unwrap();
    assert_eq!(
        (back.status, back.job_id.clone()),
        (RequestStatus::Claimed, Some(job.id.clone()))
    );
    assert_eq!(store.get(&b.key).await.unwrap(), Some(b.clone()));
    assert_eq!(store.get_job(&job.id).await.unwrap(), Some(job.clone()));
    let counts = store.counts(&TenantId::parse("acme").unwrap()).await.unwrap();
    assert_eq!(
        (counts.get(RequestStatus::Queued), counts.get(RequestStatus::Claimed)),
        (1, 1)
    );
    let bodies = store.bodies(std::slice::from_ref(&b.key)).await.unwrap();
    assert_eq!(bodies[&b.key], request("b").body_json);
    drop((store, d));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_cursor_another_store_issued_is_refused() {
    let (dir, db) = temp_db();
    let store = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
    for cursor in ["mem1:000000000000001#x", "garbage", ""] {
        let err = store.queued(&group(), Some(cursor.into()), 10).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { entity: "cursor", .. }), "{err:?}");
        let err = store
            .by_job(&JobId::generate(), Some(cursor.into()), 10)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { entity: "cursor", .. }), "{err:?}");
        let err = store.list_jobs(None, Some(cursor.into()), 10).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { entity: "cursor", .. }), "{err:?}");
    }
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_database_of_a_newer_schema_is_refused_and_the_current_one_opens() {
    let (dir, db) = temp_db();
    drop(SqliteStore::open(&db, SqliteOptions::default()).unwrap());
    // Reopening the version this build wrote works.
    drop(SqliteStore::open(&db, SqliteOptions::default()).unwrap());
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
        .unwrap();
    drop(conn);
    let err = SqliteStore::open(&db, SqliteOptions::default()).unwrap_err();
    assert!(
        matches!(err, DataDirError::NewerSchema { found, known, .. } if found == SCHEMA_VERSION + 1 && known == SCHEMA_VERSION),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_new_database_is_in_wal_mode_with_the_current_schema_version() {
    let (dir, db) = temp_db();
    drop(SqliteStore::open(&db, SqliteOptions::default()).unwrap());
    let conn = Connection::open(&db).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!((mode.as_str(), version), ("wal", SCHEMA_VERSION));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn purge_deletes_finished_requests_and_jobs_once_expired_and_keeps_the_rest() {
    let (dir, db) = temp_db();
    let day = Duration::from_secs(86_400);
    let rows = SqliteStore::open(
        &db,
        SqliteOptions {
            retention: Some(day),
            ..SqliteOptions::default()
        },
    )
    .unwrap();
    let store = rows.clone().placed(Arc::new(MemoryObjects::default()), LIMITS);
    let out = store
        .insert(vec![request("done"), request("waiting")], ts(0))
        .await
        .unwrap();
    let (done, waiting) = (created(&out[0]), created(&out[1]));
    // Their keys moved to `request_keys`: the purge deletes from it too.
    move_recent_keys(&rows).await;
    let mut job = Job::new(JobId::generate(), ProviderKind::OpenAi, &group(), ts(0), ts(1));
    store.create_job(&job).await.unwrap();
    store.apply(RequestUpdate::claim(&done, &job.id, ts(1))).await.unwrap();
    let claimed = store.get(&done.key).await.unwrap().unwrap();
    let result = RequestResult {
        key: done.key.clone(),
        job_id: job.id.clone(),
        status_code: Some(200),
        response: Some(crate::request::Payload::Inline("{}".into())),
        error: None,
        usage: None,
        batch_cost: None,
        realtime_cost: None,
        recorded_at: ts(2),
        request_id: None,
    };
    store
        .apply(RequestUpdate::finish(
            &claimed,
            &job.id,
            RequestStatus::Completed,
            result,
            ts(2),
        ))
        .await
        .unwrap();
    let finished = store.get(&done.key).await.unwrap().unwrap();
    assert_eq!(finished.expires_at, Some(ts(2).plus(day)));
    let mut next = job.clone();
    next.status = JobStatus::Failed;
    next.finished_at = Some(ts(3));
    job = store.save_job(&job, next).await.unwrap();
    store
        .add_job_tenants(&job, &[TenantId::parse("acme").unwrap()])
        .await
        .unwrap();

    // Not yet expired: nothing goes.
    assert_eq!(rows.purge_expired(ts(1).plus(day)).await.unwrap(), 0);
    assert!(store.get(&done.key).await.unwrap().is_some());
    let purged = rows.purge_expired(ts(10).plus(day)).await.unwrap();
    assert_eq!(purged, 2, "the finished request and the failed job");
    assert_eq!(store.get(&done.key).await.unwrap(), None);
    assert!(store.get_with_result(&done.key).await.unwrap().is_none());
    assert_eq!(store.get(&waiting.key).await.unwrap(), Some(waiting.clone()));
    assert_eq!(store.get_job(&job.id).await.unwrap(), None);
    assert!(store
        .list_jobs(Some(&TenantId::parse("acme").unwrap()), None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
    let snap = rows.snapshot().await.unwrap();
    assert!(!snap.keys().any(|k| k.contains(done.key.as_str())), "{snap:?}");
    assert_eq!(key_tables(&rows).await, (vec![], vec![waiting.key.to_string()]));
    drop((store, rows));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rows_are_stored_as_readable_json_with_statuses_by_name_and_round_trip() {
    let r = crate::transition::queued(&request("a"), ts(0));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["status"], "queued");
    assert_eq!(json["endpoint"], "/v1/chat/completions");
    assert_eq!(json["created_at"], ts(0).millis());
    assert_eq!(serde_json::from_value::<Request>(json).unwrap(), r);

    let inline = serde_json::to_value(crate::request::Payload::Inline("{}".into())).unwrap();
    assert_eq!(inline, serde_json::json!({"inline": "{}"}));
    let object = crate::request::Payload::S3 {
        key: "bodies/k/h.json".into(),
        bytes: 3,
    };
    assert_eq!(
        serde_json::to_value(&object).unwrap(),
        serde_json::json!({"s3": {"key": "bodies/k/h.json", "bytes": 3}})
    );

    let mut job = Job::new(JobId::generate(), ProviderKind::OpenAi, &group(), ts(0), ts(1));
    job.status = JobStatus::InProgress;
    job.provider_status = Some(crate::job::ProviderBatchStatus::parse("paused_by_provider"));
    let json = serde_json::to_value(&job).unwrap();
    assert_eq!(
        (json["status"].as_str(), json["provider_status"].as_str()),
        (Some("in_progress"), Some("paused_by_provider"))
    );
    assert_eq!(serde_json::from_value::<Job>(json).unwrap(), job);
}

#[tokio::test]
async fn a_version_1_database_is_upgraded_its_json_wrapped_bodies_still_read_and_its_queue_seeds_the_activity() {
    let (dir, db) = temp_db();
    let old = request("old");
    {
        // A data directory as version 1 left it: bodies as `Payload` JSON.
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(schema::SCHEMA_V1).unwrap();
        conn.execute_batch("PRAGMA user_version = 1").unwrap();
        let payload = serde_json::to_string(&crate::request::Payload::Inline(old.body_json.clone())).unwrap();
        let row = serde_json::to_string(&crate::transition::queued(&old, ts(0))).unwrap();
        conn.execute(
            "INSERT INTO requests (key, tenant, status, row) VALUES (?1, 'acme', 'queued', ?2)",
            rusqlite::params![old.key.as_str(), row],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO bodies (key, payload) VALUES (?1, ?2)",
            rusqlite::params![old.key.as_str(), payload],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&db, SqliteOptions::default())
        .unwrap()
        .placed(Arc::new(MemoryObjects::default()), LIMITS);
    let new = created(&store.insert(vec![request("new")], ts(1)).await.unwrap()[0]);
    // The queue per model was seeded with the request queued before the upgrade.
    let hour = crate::activity::Hour::of(ts(0));
    let activity = store
        .activity(&TenantId::parse("acme").unwrap(), hour, hour)
        .await
        .unwrap();
    assert_eq!(
        activity.queued_now.get(&ModelName::parse("gpt-4o-mini").unwrap()),
        Some(&2),
        "the old queued request and the new one"
    );
    assert_eq!(
        activity.hours[&hour].totals.enqueued, 1,
        "only the new one was counted as enqueued"
    );
    let bodies = store.bodies(&[old.key.clone(), new.key.clone()]).await.unwrap();
    assert_eq!(
        (bodies[&old.key].as_str(), bodies[&new.key].as_str()),
        (old.body_json.as_str(), request("new").body_json.as_str())
    );
    drop(store);
    let conn = Connection::open(&db).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    // The new body is stored as itself, not as a JSON string.
    let raw: String = conn
        .query_row(
            "SELECT b.payload FROM bodies b JOIN requests r ON r.rowid = b.request_row WHERE r.key = ?1",
            [new.key.as_str()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        (version, raw.as_str()),
        (SCHEMA_VERSION, request("new").body_json.as_str())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_version_3_database_is_upgraded_and_its_finished_requests_enter_the_feed_in_the_order_they_finished() {
    let (dir, db) = temp_db();
    let acme = TenantId::parse("acme").unwrap();
    {
        // A data directory as version 3 left it: two finished requests
        // (the later-finished one stored first) and a queued one.
        let conn = Connection::open(&db).unwrap();
        for step in [schema::SCHEMA_V1, schema::SCHEMA_V2, schema::SCHEMA_V3] {
            conn.execute_batch(step).unwrap();
        }
        conn.execute_batch("PRAGMA user_version = 3").unwrap();
        let job = JobId::generate();
        for (id, status, finished) in [
            ("late", RequestStatus::Failed, 30),
            ("early", RequestStatus::Completed, 20),
            ("waiting", RequestStatus::Queued, 10),
        ] {
            let mut r = crate::transition::queued(&request(id), ts(0));
            r.status = status;
            r.updated_at = ts(finished);
            r.job_id = (status != RequestStatus::Queued).then(|| job.clone());
            conn.execute(
                "INSERT INTO requests (key, tenant, status, job_id, row) VALUES (?1, 'acme', ?2, ?3, ?4)",
                rusqlite::params![
                    r.key.as_str(),
                    status.as_str(),
                    r.job_id.as_ref().map(|j| j.as_str()),
                    serde_json::to_string(&r).unwrap()
                ],
            )
            .unwrap();
        }
    }
    let store = SqliteStore::open(&db, SqliteOptions::default())
        .unwrap()
        .placed(Arc::new(MemoryObjects::default()), LIMITS);
    let page = store.feed(&acme, None, 10).await.unwrap();
    let listed: Vec<(&str, crate::feed::FeedEvent, Timestamp)> = page
        .entries
        .iter()
        .map(|e| (e.custom_id.as_str(), e.event, e.finished_at))
        .collect();
    assert_eq!(
        listed,
        [
            ("early", crate::feed::FeedEvent::Completed, ts(20)),
            ("late", crate::feed::FeedEvent::Failed, ts(30))
        ]
    );
    // New entries follow the ones entered at the upgrade.
    let waiting = store.get(&request("waiting").key).await.unwrap().unwrap();
    store.apply(RequestUpdate::cancel(&waiting, ts(40))).await.unwrap();
    let more = store.feed(&acme, page.next.as_ref(), 10).await.unwrap();
    assert_eq!(more.entries.len(), 1);
    assert_eq!(more.entries[0].custom_id.as_str(), "waiting");
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Moves every key of `recent_keys` into `request_keys` now.
async fn move_recent_keys(rows: &SqliteStore) {
    rows.tx("test", true, |tx| requests::merge_recent_keys(tx, "test"))
        .await
        .unwrap();
}

/// The keys in `recent_keys` and in `request_keys`, each in key order.
async fn key_tables(rows: &SqliteStore) -> (Vec<String>, Vec<String>) {
    rows.tx("test", false, |tx| {
        let keys = |table: &str| -> Vec<String> {
            let mut stmt = tx.prepare(&format!("SELECT key FROM {table} ORDER BY key")).unwrap();
            let keys = stmt.query_map([], |r| r.get(0)).unwrap();
            keys.map(Result::unwrap).collect()
        };
        Ok((keys("recent_keys"), keys("request_keys")))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_key_is_found_and_never_inserted_twice_whether_it_is_recent_or_moved() {
    let (dir, db) = temp_db();
    let rows = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
    let store = rows.clone().placed(Arc::new(MemoryObjects::default()), LIMITS);
    let moved = created(&store.insert(vec![request("moved")], ts(0)).await.unwrap()[0]);
    move_recent_keys(&rows).await;
    let recent = created(&store.insert(vec![request("recent")], ts(1)).await.unwrap()[0]);
    assert_eq!(
        key_tables(&rows).await,
        (vec![recent.key.to_string()], vec![moved.key.to_string()])
    );

    for r in [&moved, &recent] {
        assert_eq!(store.get(&r.key).await.unwrap().as_ref(), Some(r));
    }
    let bodies = store.bodies(&[moved.key.clone(), recent.key.clone()]).await.unwrap();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[&moved.key], request("moved").body_json);

    // Posted again: both found, nothing written.
    let before = rows.snapshot().await.unwrap();
    let again = store
        .insert(vec![request("moved"), request("recent")], ts(2))
        .await
        .unwrap();
    assert!(
        again.iter().all(|o| matches!(o, InsertOutcome::Existing(_))),
        "{again:?}"
    );
    assert_eq!(rows.snapshot().await.unwrap(), before);

    // Updates find each of them.
    let job = JobId::generate();
    for r in [&moved, &recent] {
        store.apply(RequestUpdate::claim(r, &job, ts(3))).await.unwrap();
        let back = store.get(&r.key).await.unwrap().unwrap();
        assert_eq!((back.status, back.job_id), (RequestStatus::Claimed, Some(job.clone())));
    }
    drop((store, rows));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn recent_keys_move_to_request_keys_once_they_reach_their_limit() {
    assert_eq!(requests::recent_keys_limit(0), 1_024);
    assert_eq!(requests::recent_keys_limit(100_000), 10_000);
    let (dir, db) = temp_db();
    let rows = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
    let store = rows.clone().placed(Arc::new(MemoryObjects::default()), LIMITS);
    let first: Vec<NewRequest> = (0..1_000).map(|i| request(&format!("r{i}"))).collect();
    store.insert(first, ts(0)).await.unwrap();
    assert_eq!(key_tables(&rows).await.0.len(), 1_000, "below the limit: still recent");
    let rest: Vec<NewRequest> = (1_000..1_024).map(|i| request(&format!("r{i}"))).collect();
    store.insert(rest, ts(1)).await.unwrap();
    let (recent, moved) = key_tables(&rows).await;
    assert_eq!((recent.len(), moved.len()), (0, 1_024));
    // A store opened later counts what is still recent.
    store.insert(vec![request("after")], ts(2)).await.unwrap();
    drop((store, rows));
    let rows = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
    assert_eq!(rows.recent_keys.load(std::sync::atomic::Ordering::Relaxed), 1);
    drop(rows);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_version_4_database_is_upgraded_and_its_requests_are_found_by_key_with_their_bodies() {
    let (dir, db) = temp_db();
    let old = crate::transition::queued(&request("old"), ts(0));
    {
        // A data directory as version 4 left it: a unique index on the key.
        let conn = Connection::open(&db).unwrap();
        for step in [
            schema::SCHEMA_V1,
            schema::SCHEMA_V2,
            schema::SCHEMA_V3,
            schema::SCHEMA_V4,
        ] {
            conn.execute_batch(step).unwrap();
        }
        conn.execute_batch("PRAGMA user_version = 4").unwrap();
        // A row deleted before it, so `rowid`s must be kept, not renumbered.
        for (key, tenant) in [("gone", "x"), (old.key.as_str(), "acme")] {
            conn.execute(
                "INSERT INTO requests (key, tenant, status, queue, queue_order, row) VALUES (?1, ?2, 'queued', ?3, ?4, ?5)",
                rusqlite::params![
                    key,
                    tenant,
                    old.queue_group().key(),
                    order_key(old.created_at, key),
                    serde_json::to_string(&old).unwrap()
                ],
            )
            .unwrap();
        }
        conn.execute("DELETE FROM requests WHERE key = 'gone'", []).unwrap();
        conn.execute(
            "INSERT INTO bodies (request_row, kind, payload) SELECT rowid, 1, ?1 FROM requests WHERE key = ?2",
            rusqlite::params![request("old").body_json, old.key.as_str()],
        )
        .unwrap();
    }
    let rows = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
    let store = rows.clone().placed(Arc::new(MemoryObjects::default()), LIMITS);
    assert_eq!(store.get(&old.key).await.unwrap(), Some(old.clone()));
    let bodies = store.bodies(std::slice::from_ref(&old.key)).await.unwrap();
    assert_eq!(bodies[&old.key], request("old").body_json);
    let again = store.insert(vec![request("old"), request("new")], ts(1)).await.unwrap();
    assert!(matches!(again[0], InsertOutcome::Existing(_)), "{again:?}");
    let new = created(&again[1]);
    assert_eq!(
        key_tables(&rows).await,
        (vec![new.key.to_string()], vec![old.key.to_string()])
    );
    let queued = store.queued(&group(), None, 10).await.unwrap();
    assert_eq!(queued.items.len(), 2);
    drop((store, rows));
    let conn = Connection::open(&db).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!((version, check.as_str()), (SCHEMA_VERSION, "ok"));
    drop(conn);
    std::fs::remove_dir_all(&dir).unwrap();
}
