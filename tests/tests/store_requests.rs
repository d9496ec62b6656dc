//! DynamoDB request store against the emulator, through the real SDK.

use std::collections::HashSet;
use std::time::Duration;

use batchq_core::ids::{CustomId, JobId, ModelName, TenantId};
use batchq_core::request::{
    Endpoint, InsertOutcome, NewRequest, Payload, QueueGroup, Request, RequestError, RequestResult, RequestStatus,
    Usage,
};
use batchq_core::store::{Applied, RequestStore, StoreError};
use batchq_core::time::Timestamp;
use batchq_core::transition::RequestUpdate;
use batchq_tests::TestEnv;
use serde_json::json;

const T0: i64 = 1_790_000_000_000;

fn ts(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

fn new_request(tenant: &str, custom_id: &str, endpoint: Endpoint, model: &str, text: &str) -> NewRequest {
    let body = json!({"model": model, "messages": [{"role": "user", "content": text}]});
    NewRequest::new(
        TenantId::parse(tenant).unwrap(),
        CustomId::parse(custom_id).unwrap(),
        endpoint,
        ModelName::parse(model).unwrap(),
        serde_json::to_string(&body).unwrap(),
    )
}

fn created(o: &InsertOutcome) -> &Request {
    match o {
        InsertOutcome::Created(r) => r,
        other => panic!("expected Created, got {other:?}"),
    }
}

async fn insert_one(env: &TestEnv, r: NewRequest, at: Timestamp) -> Request {
    let out = env.store.insert(vec![r], at).await.unwrap();
    created(&out[0]).clone()
}

#[tokio::test]
async fn enqueue_same_tenant_and_custom_id_twice_stores_one_row() {
    let env = TestEnv::new().await;
    let first = insert_one(
        &env,
        new_request("acme", "r-1", Endpoint::ChatCompletions, "gpt-4o-mini", "hi"),
        ts(0),
    )
    .await;
    let items_after_first = env.request_items().await;
    assert_eq!(items_after_first, 2, "one state item and one body item");

    // Same content again: the existing request comes back, nothing new is written.
    let again = env
        .store
        .insert(
            vec![new_request(
                "acme",
                "r-1",
                Endpoint::ChatCompletions,
                "gpt-4o-mini",
                "hi",
            )],
            ts(5),
        )
        .await
        .unwrap();
    assert_eq!(again, vec![InsertOutcome::Existing(first.clone())]);

    // Different content under the same id: a conflict, and still nothing written.
    let conflict = env
        .store
        .insert(
            vec![new_request(
                "acme",
                "r-1",
                Endpoint::ChatCompletions,
                "gpt-4o-mini",
                "other",
            )],
            ts(6),
        )
        .await
        .unwrap();
    assert_eq!(conflict, vec![InsertOutcome::Conflict(first.clone())]);

    // The same id twice inside one call, and the same id for another tenant.
    let mixed = env
        .store
        .insert(
            vec![
                new_request("acme", "r-2", Endpoint::ChatCompletions, "gpt-4o-mini", "x"),
                new_request("acme", "r-2", Endpoint::ChatCompletions, "gpt-4o-mini", "x"),
                new_request("other-team", "r-1", Endpoint::ChatCompletions, "gpt-4o-mini", "hi"),
            ],
            ts(7),
        )
        .await
        .unwrap();
    assert!(matches!(mixed[0], InsertOutcome::Created(_)));
    assert!(matches!(mixed[1], InsertOutcome::Existing(_)));
    assert!(matches!(mixed[2], InsertOutcome::Created(_)));

    assert_eq!(env.request_items().await, 6);
    let acme = TenantId::parse("acme").unwrap();
    assert_eq!(env.store.counts(&acme).await.unwrap().get(RequestStatus::Queued), 2);
    let groups = env.store.queue_groups().await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].queued, 3);
}

#[tokio::test]
async fn conditional_transition_is_refused_when_stored_status_differs() {
    let env = TestEnv::new().await;
    let req = insert_one(
        &env,
        new_request("acme", "c-1", Endpoint::ChatCompletions, "gpt-4o-mini", "hi"),
        ts(0),
    )
    .await;
    let job_a = JobId::generate();
    let job_b = JobId::generate();

    assert_eq!(
        env.store
            .apply(RequestUpdate::claim(&req, &job_a, ts(10)))
            .await
            .unwrap(),
        Applied::Now
    );
    let claimed = env.store.get(&req.key).await.unwrap().unwrap();
    assert_eq!(claimed.status, RequestStatus::Claimed);
    assert_eq!(claimed.job_id.as_ref(), Some(&job_a));
    assert_eq!(claimed.attempts, 1);

    // A second claim for another job works from a stale copy (status queued): refused.
    let err = env
        .store
        .apply(RequestUpdate::claim(&req, &job_b, ts(20)))
        .await
        .unwrap_err();
    match &err {
        StoreError::ConditionFailed {
            entity,
            expected,
            actual,
            ..
        } => {
            assert_eq!(*entity, "request");
            assert_eq!(expected, "queued");
            assert_eq!(actual.as_deref(), Some(format!("claimed in {job_a}").as_str()));
        }
        other => panic!("expected ConditionFailed, got {other:?}"),
    }
    // Cancelling from the stale queued copy is refused too.
    assert!(env
        .store
        .apply(RequestUpdate::cancel(&req, ts(21)))
        .await
        .unwrap_err()
        .is_condition_failed());
    // Finishing it for the wrong job is refused.
    let wrong = RequestUpdate::fail(
        &claimed,
        &job_b,
        RequestError {
            code: "x".into(),
            message: "y".into(),
            status_code: None,
        },
        ts(22),
    );
    assert!(env.store.apply(wrong).await.unwrap_err().is_condition_failed());

    // The row is exactly as the successful claim left it.
    assert_eq!(env.store.get(&req.key).await.unwrap().unwrap(), claimed);
    let counts = env.store.counts(&req.tenant).await.unwrap();
    assert_eq!(
        (counts.get(RequestStatus::Queued), counts.get(RequestStatus::Claimed)),
        (0, 1)
    );

    // Replaying the successful claim is recognised as already done.
    assert_eq!(
        env.store
            .apply(RequestUpdate::claim(&req, &job_a, ts(30)))
            .await
            .unwrap(),
        Applied::Already
    );
    assert_eq!(env.store.get(&req.key).await.unwrap().unwrap().attempts, 1);
}

#[tokio::test]
async fn illegal_transition_is_refused_before_any_write() {
    let env = TestEnv::new().await;
    let req = insert_one(
        &env,
        new_request("acme", "i-1", Endpoint::Embeddings, "text-embedding-3-small", "x"),
        ts(0),
    )
    .await;
    let mut bogus = RequestUpdate::cancel(&req, ts(1));
    bogus.to = RequestStatus::Failed; // queued -> failed is not a transition
    let err = env.store.apply(bogus).await.unwrap_err();
    assert!(matches!(err, StoreError::IllegalTransition(_)), "{err:?}");
    assert_eq!(env.store.get(&req.key).await.unwrap().unwrap(), req);
}

#[tokio::test]
async fn queued_by_model_returns_oldest_first_across_pages() {
    let env = TestEnv::new().await;
    let group = QueueGroup::of(Endpoint::ChatCompletions, ModelName::parse("gpt-4o-mini").unwrap());
    // Interleave three groups; insert newest first so storage order differs from age order.
    let mut expected = Vec::new();
    for i in (0..23).rev() {
        let r = new_request(
            "acme",
            &format!("q-{i:02}"),
            Endpoint::ChatCompletions,
            "gpt-4o-mini",
            "x",
        );
        expected.push((i, r.key.clone()));
        insert_one(&env, r, ts(i * 1000)).await;
        insert_one(
            &env,
            new_request("acme", &format!("o-{i:02}"), Endpoint::ChatCompletions, "gpt-4o", "x"),
            ts(i),
        )
        .await;
        insert_one(
            &env,
            new_request("acme", &format!("e-{i:02}"), Endpoint::Embeddings, "gpt-4o-mini", "x"),
            ts(i),
        )
        .await;
    }
    expected.sort();
    let expected: Vec<_> = expected.into_iter().map(|(_, k)| k).collect();

    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = env.store.queued(&group, cursor, 5).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 5);
        for r in &page.items {
            assert_eq!(r.queue_group(), group);
            assert_eq!(r.status, RequestStatus::Queued);
        }
        seen.extend(page.items.into_iter().map(|r| r.key));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert!(pages >= 5, "23 items in pages of 5 take at least 5 pages, got {pages}");
    assert_eq!(seen, expected);

    // Claimed requests leave the queue index.
    let oldest = env.store.get(&expected[0]).await.unwrap().unwrap();
    env.store
        .apply(RequestUpdate::claim(&oldest, &JobId::generate(), ts(99_000)))
        .await
        .unwrap();
    let first = env.store.queued(&group, None, 1).await.unwrap();
    assert_eq!(first.items[0].key, expected[1]);
}

#[tokio::test]
async fn body_over_inline_limit_round_trips_through_s3() {
    let env = TestEnv::new().await;
    let big_text = "lorem ipsum ".repeat(4_000); // ~48 KB, above the 16 KB inline limit
    let big = new_request("acme", "big-1", Endpoint::ChatCompletions, "gpt-4o-mini", &big_text);
    let small = new_request("acme", "small-1", Endpoint::ChatCompletions, "gpt-4o-mini", "short");
    assert!(big.body_bytes() > env.config.limits.inline_body_max_bytes);
    let out = env.store.insert(vec![big.clone(), small.clone()], ts(0)).await.unwrap();
    assert_eq!(created(&out[0]).body_bytes, big.body_bytes());

    let object_key = batchq_core::keys::body(&big.key, &big.content_hash);
    let head = batchq_core::store::ObjectStore::head(env.s3.as_ref(), &object_key)
        .await
        .unwrap();
    assert_eq!(head.map(|h| h.bytes), Some(big.body_bytes()));

    let bodies = env.store.bodies(&[big.key.clone(), small.key.clone()]).await.unwrap();
    assert_eq!(bodies[&big.key], big.body_json);
    assert_eq!(bodies[&small.key], small.body_json);
}

#[tokio::test]
async fn a_conflicting_large_body_leaves_no_object_behind_and_a_repeated_one_rewrites_its_own() {
    let env = TestEnv::new().await;
    let big = new_request(
        "acme",
        "big-1",
        Endpoint::ChatCompletions,
        "gpt-4o-mini",
        &"a b ".repeat(6_000),
    );
    created(&env.store.insert(vec![big.clone()], ts(0)).await.unwrap()[0]);
    let other = new_request(
        "acme",
        "big-1",
        Endpoint::ChatCompletions,
        "gpt-4o-mini",
        &"c d ".repeat(6_000),
    );
    let out = env.store.insert(vec![other.clone(), big.clone()], ts(1)).await.unwrap();
    assert!(matches!(out[0], InsertOutcome::Conflict(_)), "{:?}", out[0]);
    assert!(matches!(
        out[1],
        InsertOutcome::Conflict(_) | InsertOutcome::Existing(_)
    ));

    let objects = env
        .s3_client
        .list_objects_v2()
        .bucket(&env.config.bucket)
        .prefix(format!("bodies/{}/", big.key))
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = objects.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(
        keys,
        [batchq_core::keys::body(&big.key, &big.content_hash).as_str()],
        "only the accepted request's body stays"
    );
}

#[tokio::test]
async fn result_is_recorded_once_and_replays_change_nothing() {
    let env = TestEnv::new().await;
    let req = insert_one(
        &env,
        new_request("acme", "res-1", Endpoint::ChatCompletions, "gpt-4o-mini", "hi"),
        ts(0),
    )
    .await;
    let job = JobId::generate();
    env.store.apply(RequestUpdate::claim(&req, &job, ts(1))).await.unwrap();
    let claimed = env.store.get(&req.key).await.unwrap().unwrap();

    // A response larger than the inline limit goes to S3 under responses/.
    let response = json!({"id": "chatcmpl-1", "choices": [{"message": {"content": "y".repeat(20_000)}}]}).to_string();
    let result = RequestResult {
        key: req.key.clone(),
        job_id: job.clone(),
        status_code: Some(200),
        response: Some(Payload::Inline(response.clone())),
        error: None,
        usage: Some(Usage {
            input_tokens: 12,
            cached_input_tokens: 0,
            output_tokens: 5000,
            reasoning_tokens: 0,
            cache_write_tokens: 0,
        }),
        batch_cost: None,
        realtime_cost: None,
        recorded_at: ts(2),
        request_id: Some("req_0123456789abcdef".into()),
    };
    let update = RequestUpdate::finish(&claimed, &job, RequestStatus::Completed, result.clone(), ts(2));
    assert_eq!(env.store.apply(update.clone()).await.unwrap(), Applied::Now);
    assert_eq!(env.store.apply(update).await.unwrap(), Applied::Already);

    let (state, stored) = env.store.get_with_result(&req.key).await.unwrap().unwrap();
    assert_eq!(state.status, RequestStatus::Completed);
    let stored = stored.expect("result stored");
    assert_eq!(stored.usage, result.usage);
    assert_eq!(
        stored.request_id, result.request_id,
        "the provider's request id is kept"
    );
    match stored.response {
        Some(Payload::S3 { key, bytes }) => {
            assert_eq!(bytes, response.len() as u64);
            let got = batchq_core::store::ObjectStore::get(env.s3.as_ref(), &key)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got, response.as_bytes());
        }
        other => panic!("expected an S3 payload, got {other:?}"),
    }
    let counts = env.store.counts(&req.tenant).await.unwrap();
    assert_eq!(
        (counts.get(RequestStatus::Claimed), counts.get(RequestStatus::Completed)),
        (0, 1),
        "a replayed result is counted once"
    );
}

#[tokio::test]
async fn requeued_request_keeps_its_place_at_the_front() {
    let env = TestEnv::new().await;
    let old = insert_one(
        &env,
        new_request("acme", "old", Endpoint::ChatCompletions, "m", "a"),
        ts(0),
    )
    .await;
    let newer = insert_one(
        &env,
        new_request("acme", "new", Endpoint::ChatCompletions, "m", "b"),
        ts(1000),
    )
    .await;
    let job = JobId::generate();
    env.store
        .apply(RequestUpdate::claim(&old, &job, ts(2000)))
        .await
        .unwrap();
    let claimed = env.store.get(&old.key).await.unwrap().unwrap();
    let err = RequestError {
        code: "batch_expired".into(),
        message: "This request could not be executed before the completion window expired.".into(),
        status_code: None,
    };
    env.store
        .apply(RequestUpdate::requeue(&claimed, &job, Some(err.clone()), ts(3000)))
        .await
        .unwrap();
    let back = env.store.get(&old.key).await.unwrap().unwrap();
    assert_eq!(back.status, RequestStatus::Queued);
    assert_eq!(back.job_id, None);
    assert_eq!(back.attempts, 1, "the attempt stays counted");
    assert_eq!(back.last_error, Some(err));
    let page = env.store.queued(&old.queue_group(), None, 10).await.unwrap();
    let keys: Vec<_> = page.items.iter().map(|r| r.key.clone()).collect();
    assert_eq!(keys, vec![old.key.clone(), newer.key.clone()]);
    assert_eq!(env.store.queue_groups().await.unwrap()[0].queued, 2);
}

#[tokio::test]
async fn apply_many_settles_each_update_on_its_own_condition() {
    let env = TestEnv::new().await;
    let mut reqs = Vec::new();
    for i in 0..120 {
        // More than one transaction's worth, to cross chunk boundaries.
        reqs.push(new_request(
            "acme",
            &format!("m-{i:03}"),
            Endpoint::ChatCompletions,
            "gpt-4o-mini",
            "x",
        ));
    }
    let inserted: Vec<Request> = env
        .store
        .insert(reqs, ts(0))
        .await
        .unwrap()
        .iter()
        .map(|o| created(o).clone())
        .collect();
    // Someone else cancels three of them first.
    for i in [3usize, 57, 110] {
        env.store
            .apply(RequestUpdate::cancel(&inserted[i], ts(1)))
            .await
            .unwrap();
    }
    let job = JobId::generate();
    let updates = inserted.iter().map(|r| RequestUpdate::claim(r, &job, ts(2))).collect();
    let results = env.store.apply_many(updates).await.unwrap();
    let failed: HashSet<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_err())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failed, HashSet::from([3, 57, 110]));
    for (i, r) in results.iter().enumerate() {
        if let Err(e) = r {
            assert!(e.is_condition_failed(), "{i}: {e:?}");
        }
    }
    let counts = env.store.counts(&inserted[0].tenant).await.unwrap();
    assert_eq!(counts.get(RequestStatus::Claimed), 117);
    assert_eq!(counts.get(RequestStatus::Cancelled), 3);
    assert_eq!(counts.get(RequestStatus::Queued), 0);
    let mut n = 0;
    let mut cursor = None;
    loop {
        let page = env.store.by_job(&job, cursor, 50).await.unwrap();
        n += page.items.len();
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(n, 117);
    assert!(env.store.queue_groups().await.unwrap().is_empty());
    let _ = Duration::ZERO;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_of_one_request_have_exactly_one_winner() {
    let env = std::sync::Arc::new(TestEnv::new().await);
    let req = insert_one(
        &env,
        new_request("acme", "contended", Endpoint::ChatCompletions, "gpt-4o-mini", "hi"),
        ts(0),
    )
    .await;
    let jobs: Vec<JobId> = (0..16).map(|_| JobId::generate()).collect();
    let tasks: Vec<_> = jobs
        .iter()
        .map(|job| {
            let (env, req, job) = (env.clone(), req.clone(), job.clone());
            tokio::spawn(async move { env.store.apply(RequestUpdate::claim(&req, &job, ts(1))).await })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(Applied::Now) => winners += 1,
            Ok(Applied::Already) => panic!("no two claims are for the same job"),
            Err(StoreError::ConditionFailed { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(winners, 1, "a conditional claim admits one job");
    let stored = env.store.get(&req.key).await.unwrap().unwrap();
    assert_eq!(stored.attempts, 1, "no lost or doubled increment");
    assert!(jobs.contains(stored.job_id.as_ref().unwrap()));
}

/// An object store that counts how many writes are in flight at once.
struct CountingObjects {
    inner: std::sync::Arc<batchq_core::store::s3::S3Store>,
    in_flight: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl batchq_core::store::ObjectStore for CountingObjects {
    async fn put(&self, key: &str, body: bytes::Bytes, content_type: &str) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(now, SeqCst);
        // Long enough for writes started together to overlap.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = self.inner.put(key, body, content_type).await;
        self.in_flight.fetch_sub(1, SeqCst);
        r
    }
    async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, StoreError> {
        self.inner.get(key).await
    }
    async fn head(&self, key: &str) -> Result<Option<batchq_core::store::ObjectInfo>, StoreError> {
        self.inner.head(key).await
    }
    async fn open(
        &self,
        key: &str,
    ) -> Result<(batchq_core::store::ObjectInfo, batchq_core::store::ByteStream), StoreError> {
        self.inner.open(key).await
    }
    async fn writer(
        &self,
        key: &str,
        content_type: &str,
    ) -> Result<Box<dyn batchq_core::store::ObjectWriter>, StoreError> {
        self.inner.writer(key, content_type).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<String, StoreError> {
        self.inner.presign_get(key, ttl).await
    }
}

#[tokio::test]
async fn large_responses_of_one_batch_of_updates_are_written_to_s3_several_at_a_time() {
    let env = TestEnv::new().await;
    let counting = std::sync::Arc::new(CountingObjects {
        inner: env.s3.clone(),
        in_flight: Default::default(),
        peak: Default::default(),
    });
    let store = batchq_core::store::placed::PlacedStore::new(
        batchq_core::store::dynamo::DynamoStore::new(
            env.dynamo.clone(),
            &env.config.requests_table,
            &env.config.jobs_table,
        ),
        counting.clone(),
        batchq_core::placement::InlineLimits {
            body_max: env.config.limits.inline_body_max_bytes,
            result_max: env.config.limits.inline_result_max_bytes,
        },
    );
    let job = JobId::generate();
    let mut updates = Vec::new();
    for i in 0..40 {
        let req = insert_one(
            &env,
            new_request(
                "acme",
                &format!("big-{i}"),
                Endpoint::ChatCompletions,
                "gpt-4o-mini",
                "hi",
            ),
            ts(0),
        )
        .await;
        store.apply(RequestUpdate::claim(&req, &job, ts(1))).await.unwrap();
        let claimed = store.get(&req.key).await.unwrap().unwrap();
        let response = json!({"choices": [{"message": {"content": "z".repeat(20_000)}}]}).to_string();
        let result = RequestResult {
            key: req.key.clone(),
            job_id: job.clone(),
            status_code: Some(200),
            response: Some(Payload::Inline(response)),
            error: None,
            usage: None,
            batch_cost: None,
            realtime_cost: None,
            recorded_at: ts(2),
            request_id: None,
        };
        updates.push(RequestUpdate::finish(
            &claimed,
            &job,
            RequestStatus::Completed,
            result,
            ts(2),
        ));
    }
    let started = std::time::Instant::now();
    let out = store.apply_many(updates).await.unwrap();
    assert!(out.iter().all(|r| matches!(r, Ok(Applied::Now))));
    let peak = counting.peak.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (2..=16).contains(&peak),
        "{peak} response writes were in flight at once (one at a time cannot finish a 50,000-answer file within \
         Lambda's 15 minutes; more than 16 would flood S3); took {:?}",
        started.elapsed()
    );
}
