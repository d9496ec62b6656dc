//! The placement layer over a row store that only records what it is given
//! and an object store in memory: what reaches the rows is placed, and the
//! objects are written, read and deleted as the rules say.

use std::sync::Mutex;

use super::*;
use crate::ids::CustomId;
use crate::request::{Endpoint, RequestStatus};
use crate::store::{ByteStream, ObjectInfo, ObjectWriter};
use crate::transition;

const LIMITS: InlineLimits = InlineLimits {
    body_max: 40,
    result_max: 40,
};

/// Rows kept in a map; records the updates it was given.
#[derive(Default)]
struct Rows {
    states: Mutex<HashMap<RequestKey, Request>>,
    bodies: Mutex<HashMap<RequestKey, Payload>>,
    applied: Mutex<Vec<RequestUpdate>>,
}

#[async_trait]
impl RequestRows for Rows {
    async fn insert_rows(&self, rows: Vec<QueuedRow>) -> Result<Vec<RowInsert>, StoreError> {
        let mut states = self.states.lock().unwrap();
        Ok(rows
            .into_iter()
            .map(|row| match states.get(&row.state.key) {
                Some(stored) => RowInsert::Exists(Box::new(stored.clone())),
                None => {
                    self.bodies.lock().unwrap().insert(row.state.key.clone(), row.body);
                    states.insert(row.state.key.clone(), row.state);
                    RowInsert::Written
                }
            })
            .collect())
    }

    async fn get(&self, key: &RequestKey) -> Result<Option<Request>, StoreError> {
        Ok(self.states.lock().unwrap().get(key).cloned())
    }

    async fn get_many(&self, _: &[RequestKey]) -> Result<HashMap<RequestKey, Request>, StoreError> {
        unimplemented!()
    }

    async fn get_with_result(&self, _: &RequestKey) -> Result<Option<(Request, Option<RequestResult>)>, StoreError> {
        unimplemented!()
    }

    async fn body_payloads(&self, keys: &[RequestKey]) -> Result<HashMap<RequestKey, Payload>, StoreError> {
        let bodies = self.bodies.lock().unwrap();
        Ok(keys
            .iter()
            .filter_map(|k| bodies.get(k).map(|p| (k.clone(), p.clone())))
            .collect())
    }

    async fn queued(&self, _: &QueueGroup, _: Option<String>, _: u32) -> Result<Page<Request>, StoreError> {
        unimplemented!()
    }

    async fn queue_groups(&self) -> Result<Vec<QueueGroupStats>, StoreError> {
        unimplemented!()
    }

    async fn by_job(&self, _: &JobId, _: Option<String>, _: u32) -> Result<Page<Request>, StoreError> {
        unimplemented!()
    }

    async fn apply_placed(&self, updates: Vec<RequestUpdate>) -> Result<Vec<Result<Applied, StoreError>>, StoreError> {
        let n = updates.len();
        self.applied.lock().unwrap().extend(updates);
        Ok((0..n).map(|_| Ok(Applied::Now)).collect())
    }

    async fn counts(&self, _: &TenantId) -> Result<StatusCounts, StoreError> {
        unimplemented!()
    }

    async fn activity(
        &self,
        _: &TenantId,
        _: crate::activity::Hour,
        _: crate::activity::Hour,
    ) -> Result<crate::activity::ActivityRows, StoreError> {
        unimplemented!()
    }

    async fn feed_end(&self, _: &TenantId) -> Result<Option<FeedCursor>, StoreError> {
        unimplemented!()
    }

    async fn feed(
        &self,
        _: &TenantId,
        _: Option<&crate::feed::FeedCursor>,
        _: u32,
    ) -> Result<crate::feed::FeedPage, StoreError> {
        unimplemented!()
    }
}

/// Objects in a map; counts the reads.
#[derive(Default)]
struct Objects(Mutex<HashMap<String, Bytes>>, std::sync::atomic::AtomicU32);

impl Objects {
    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.0.lock().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }
}

#[async_trait]
impl ObjectStore for Objects {
    async fn put(&self, key: &str, body: Bytes, _: &str) -> Result<(), StoreError> {
        self.0.lock().unwrap().insert(key.to_owned(), body);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.0.lock().unwrap().get(key).cloned())
    }

    async fn head(&self, _: &str) -> Result<Option<ObjectInfo>, StoreError> {
        unimplemented!()
    }

    async fn open(&self, _: &str) -> Result<(ObjectInfo, ByteStream), StoreError> {
        unimplemented!()
    }

    async fn writer(&self, _: &str, _: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        unimplemented!()
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.lock().unwrap().remove(key);
        Ok(())
    }

    async fn presign_get(&self, _: &str, _: std::time::Duration) -> Result<String, StoreError> {
        unimplemented!()
    }
}

fn store() -> (PlacedStore<Rows>, Arc<Objects>) {
    let objects = Arc::new(Objects::default());
    (PlacedStore::new(Rows::default(), objects.clone(), LIMITS), objects)
}

fn new_request(id: &str, body: &str) -> NewRequest {
    NewRequest::new(
        TenantId::parse("acme").unwrap(),
        CustomId::parse(id).unwrap(),
        Endpoint::ChatCompletions,
        ModelName::parse("gpt-4o-mini").unwrap(),
        body.into(),
    )
}

const SMALL: &str = r#"{"model":"gpt-4o-mini"}"#;
const LARGE: &str = r#"{"model":"gpt-4o-mini","messages":"a long conversation"}"#;

fn now() -> Timestamp {
    Timestamp::from_millis(1_000)
}

#[tokio::test]
async fn a_large_body_is_written_as_an_object_before_its_row_and_read_back_from_it() {
    let (store, objects) = store();
    let small = new_request("small", SMALL);
    let large = new_request("large", LARGE);
    store.insert(vec![small.clone(), large.clone()], now()).await.unwrap();

    let body_key = keys::body(&large.key, &large.content_hash);
    assert_eq!(objects.keys(), vec![body_key.clone()]);
    let rows = store.rows().bodies.lock().unwrap().clone();
    assert_eq!(rows[&small.key], Payload::Inline(SMALL.into()));
    assert_eq!(
        rows[&large.key],
        Payload::S3 {
            key: body_key,
            bytes: LARGE.len() as u64
        }
    );

    let bodies = store.bodies(&[small.key.clone(), large.key.clone()]).await.unwrap();
    assert_eq!(bodies[&small.key], SMALL);
    assert_eq!(bodies[&large.key], LARGE);
}

#[tokio::test]
async fn a_conflicting_repost_of_a_large_body_leaves_no_object_and_a_repeat_in_one_call_is_judged_by_the_first() {
    let (store, objects) = store();
    let first = new_request("same", LARGE);
    store.insert(vec![first.clone()], now()).await.unwrap();
    let other = new_request("same", &LARGE.replace("long", "other"));

    let out = store
        .insert(vec![other.clone(), first.clone(), other.clone()], now())
        .await
        .unwrap();
    assert!(matches!(out[0], InsertOutcome::Conflict(_)));
    assert!(matches!(out[1], InsertOutcome::Existing(_)));
    assert!(matches!(out[2], InsertOutcome::Conflict(_)));
    assert_eq!(objects.keys(), vec![keys::body(&first.key, &first.content_hash)]);
}

#[tokio::test]
async fn a_large_response_reaches_the_rows_as_an_object_and_a_finished_requests_body_object_is_deleted() {
    let (store, objects) = store();
    let large = new_request("large", LARGE);
    store.insert(vec![large.clone()], now()).await.unwrap();
    let job = JobId::generate();
    let claimed = Request {
        status: RequestStatus::Claimed,
        job_id: Some(job.clone()),
        ..transition::queued(&large, now())
    };
    let answer = r#"{"choices":[{"message":"a long answer indeed"}]}"#;
    let result = RequestResult {
        key: large.key.clone(),
        job_id: job.clone(),
        status_code: Some(200),
        response: Some(Payload::Inline(answer.into())),
        error: None,
        usage: None,
        batch_cost: None,
        realtime_cost: None,
        recorded_at: now(),
        request_id: None,
    };
    let finish = RequestUpdate::finish(&claimed, &job, RequestStatus::Completed, result, now());
    assert_eq!(store.apply(finish).await.unwrap(), Applied::Now);

    let response_key = keys::response(&large.key, &job);
    let applied = store.rows().applied.lock().unwrap().clone();
    assert_eq!(
        applied[0].result.as_ref().unwrap().response,
        Some(Payload::S3 {
            key: response_key.clone(),
            bytes: answer.len() as u64
        })
    );
    // The body object went with the finish; the response object stays.
    assert_eq!(objects.keys(), vec![response_key]);
}

/// `n` requests of one queue group with distinct small bodies.
fn bulk(n: usize, prefix: &str) -> Vec<NewRequest> {
    (0..n)
        .map(|i| new_request(&format!("{prefix}-{i}"), &format!(r#"{{"i":{i}}}"#)))
        .collect()
}

#[tokio::test]
async fn a_bulk_insert_writes_its_small_bodies_once_as_a_chunk_and_reads_each_back_exactly() {
    let (store, objects) = store();
    let requests = bulk(crate::placement::CHUNK_MIN_BODIES + 4, "b");
    store.insert(requests.clone(), now()).await.unwrap();

    let keys = objects.keys();
    assert_eq!(keys.len(), 1, "one chunk object: {keys:?}");
    assert!(keys[0].starts_with("bodies/chunks/"), "{keys:?}");
    let rows = store.rows().bodies.lock().unwrap().clone();
    for r in &requests {
        assert!(
            matches!(&rows[&r.key], Payload::Chunk { key, len, .. } if *key == keys[0] && *len == r.body_bytes()),
            "{:?}",
            rows[&r.key]
        );
    }

    // Any subset reads back exactly, with one read of the chunk.
    let wanted: Vec<RequestKey> = requests.iter().skip(3).step_by(2).map(|r| r.key.clone()).collect();
    let reads_before = objects.1.load(std::sync::atomic::Ordering::Relaxed);
    let bodies = store.bodies(&wanted).await.unwrap();
    assert_eq!(objects.1.load(std::sync::atomic::Ordering::Relaxed) - reads_before, 1);
    assert_eq!(bodies.len(), wanted.len());
    for r in requests.iter().skip(3).step_by(2) {
        assert_eq!(bodies[&r.key], r.body_json);
    }
}

#[tokio::test]
async fn fewer_small_bodies_than_a_chunk_needs_stay_inline_and_a_chunk_no_row_refers_to_is_deleted() {
    let (store, objects) = store();
    let few = bulk(crate::placement::CHUNK_MIN_BODIES - 1, "few");
    store.insert(few.clone(), now()).await.unwrap();
    assert!(objects.keys().is_empty());
    let rows = store.rows().bodies.lock().unwrap().clone();
    assert!(few.iter().all(|r| rows[&r.key] == Payload::Inline(r.body_json.clone())));

    let many = bulk(crate::placement::CHUNK_MIN_BODIES, "many");
    store.insert(many.clone(), now()).await.unwrap();
    let chunk = objects.keys();
    assert_eq!(chunk.len(), 1);
    // The same call again: every request exists, so its new chunk is deleted
    // and the rows keep pointing into the first one.
    let outcomes = store.insert(many.clone(), now()).await.unwrap();
    assert!(outcomes.iter().all(|o| matches!(o, InsertOutcome::Existing(_))));
    assert_eq!(objects.keys(), chunk);
    let bodies = store
        .bodies(&many.iter().map(|r| r.key.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    assert!(many.iter().all(|r| bodies[&r.key] == r.body_json));
}
