//! Conditional status changes (`apply`, `apply_many`) for each transition
//! constructor: the change, its counters, replays and refusals.

use batchq_core::ids::{CustomId, JobId, RequestKey};
use batchq_core::keys;
use batchq_core::request::{Payload, Request, RequestError, RequestStatus};
use batchq_core::store::{Applied, StoreError};
use batchq_core::transition::RequestUpdate;

use super::*;

fn err(code: &str) -> RequestError {
    RequestError {
        code: code.into(),
        message: format!("{code} happened"),
        status_code: Some(500),
    }
}

/// One queued request of tenant `acme`, claimed for a fresh job.
async fn claimed(s: &StoreUnderTest) -> (Request, JobId) {
    let r = insert_one(s, new_request("acme", "r-1", "gpt-4o-mini", "hi"), ts(0)).await;
    let job = JobId::generate();
    assert_eq!(
        s.requests.apply(RequestUpdate::claim(&r, &job, ts(10))).await.unwrap(),
        Applied::Now
    );
    (get(s, &r).await, job)
}

pub async fn claim_moves_a_queued_request_to_its_job_counting_an_attempt(s: StoreUnderTest) {
    let (r, job) = claimed(&s).await;
    assert_eq!(
        (r.status, r.attempts, r.job_id.clone()),
        (RequestStatus::Claimed, 1, Some(job))
    );
    assert_eq!((r.created_at, r.updated_at), (ts(0), ts(10)));
    let counts = s.requests.counts(&tenant("acme")).await.unwrap();
    assert_eq!(
        (counts.get(RequestStatus::Queued), counts.get(RequestStatus::Claimed)),
        (0, 1)
    );
    assert_eq!(
        counts.pending_bytes, r.body_bytes as i64,
        "a claimed request is still unfinished"
    );
    assert!(s.requests.queue_groups().await.unwrap().is_empty());
}

pub async fn a_replayed_claim_is_already_applied_and_counts_nothing(s: StoreUnderTest) {
    let r = insert_one(&s, new_request("acme", "r-1", "gpt-4o-mini", "hi"), ts(0)).await;
    let job = JobId::generate();
    let update = RequestUpdate::claim(&r, &job, ts(10));
    assert_eq!(s.requests.apply(update.clone()).await.unwrap(), Applied::Now);
    assert_eq!(s.requests.apply(update).await.unwrap(), Applied::Already);
    let now = get(&s, &r).await;
    assert_eq!(now.attempts, 1, "a replay counts no second attempt");
    assert_eq!(count(&s, "acme", RequestStatus::Claimed).await, 1);
    assert_eq!(count(&s, "acme", RequestStatus::Queued).await, 0);
}

pub async fn a_claim_of_a_request_another_job_holds_is_refused_with_its_state(s: StoreUnderTest) {
    let r = insert_one(&s, new_request("acme", "r-1", "gpt-4o-mini", "hi"), ts(0)).await;
    let (one, two) = (JobId::generate(), JobId::generate());
    s.requests.apply(RequestUpdate::claim(&r, &one, ts(10))).await.unwrap();
    let res = s.requests.apply(RequestUpdate::claim(&r, &two, ts(11))).await;
    assert_refused(res, &format!("claimed in {one}"));
    assert_eq!(get(&s, &r).await.job_id, Some(one));
    assert_eq!(count(&s, "acme", RequestStatus::Claimed).await, 1);
}

pub async fn finishing_a_request_for_another_job_is_refused_and_stores_no_result(s: StoreUnderTest) {
    let (r, job) = claimed(&s).await;
    let other = JobId::generate();
    let res = result(&r, &other, "stray", ts(20));
    let refused = s
        .requests
        .apply(RequestUpdate::finish(&r, &other, RequestStatus::Completed, res, ts(20)))
        .await;
    assert_refused(refused, &format!("claimed in {job}"));
    let (state, stored) = s.requests.get_with_result(&r.key).await.unwrap().unwrap();
    assert_eq!(
        (state.status, state.job_id, stored),
        (RequestStatus::Claimed, Some(job.clone()), None)
    );
    let refused = s.requests.apply(RequestUpdate::requeue(&r, &other, None, ts(20))).await;
    assert_refused(refused, &format!("claimed in {job}"));
    let refused = s
        .requests
        .apply(RequestUpdate::fail(&r, &other, err("x"), ts(20)))
        .await;
    assert_refused(refused, &format!("claimed in {job}"));
    assert_eq!(count(&s, "acme", RequestStatus::Claimed).await, 1);
    assert_eq!(count(&s, "acme", RequestStatus::Completed).await, 0);
}

pub async fn finish_stores_the_result_counts_it_and_a_replay_keeps_the_first_result(s: StoreUnderTest) {
    let (r, job) = claimed(&s).await;
    let first = result(&r, &job, "first", ts(20));
    let update = RequestUpdate::finish(&r, &job, RequestStatus::Completed, first.clone(), ts(20));
    assert_eq!(s.requests.apply(update).await.unwrap(), Applied::Now);
    let second = result(&r, &job, "second", ts(30));
    let replay = RequestUpdate::finish(&r, &job, RequestStatus::Completed, second, ts(30));
    assert_eq!(s.requests.apply(replay).await.unwrap(), Applied::Already);
    let (state, stored) = s.requests.get_with_result(&r.key).await.unwrap().unwrap();
    assert_eq!(
        (state.status, state.job_id, state.updated_at),
        (RequestStatus::Completed, Some(job), ts(20))
    );
    assert_eq!(stored, Some(first));
    let counts = s.requests.counts(&tenant("acme")).await.unwrap();
    assert_eq!(
        (counts.get(RequestStatus::Claimed), counts.get(RequestStatus::Completed)),
        (0, 1)
    );
    assert_eq!((counts.pending(), counts.pending_bytes), (0, 0));
}

pub async fn fail_without_a_result_records_the_error_and_finishes_the_request(s: StoreUnderTest) {
    let (r, job) = claimed(&s).await;
    let e = err("invalid_batch");
    assert_eq!(
        s.requests
            .apply(RequestUpdate::fail(&r, &job, e.clone(), ts(20)))
            .await
            .unwrap(),
        Applied::Now
    );
    let (state, stored) = s.requests.get_with_result(&r.key).await.unwrap().unwrap();
    assert_eq!(
        (state.status, state.last_error, stored),
        (RequestStatus::Failed, Some(e), None)
    );
    let counts = s.requests.counts(&tenant("acme")).await.unwrap();
    assert_eq!(
        (
            counts.get(RequestStatus::Failed),
            counts.pending(),
            counts.pending_bytes
        ),
        (1, 0, 0)
    );
    let again = s.requests.apply(RequestUpdate::fail(&r, &job, err("x"), ts(30))).await;
    assert_eq!(again.unwrap(), Applied::Already);
}

pub async fn requeue_returns_a_request_to_the_queue_keeping_its_attempt_and_place(s: StoreUnderTest) {
    let (r, job) = claimed(&s).await;
    let e = err("server_error");
    let update = RequestUpdate::requeue(&r, &job, Some(e.clone()), ts(20));
    assert_eq!(s.requests.apply(update.clone()).await.unwrap(), Applied::Now);
    let back = get(&s, &r).await;
    assert_eq!(
        (back.status, back.job_id.clone(), back.attempts),
        (RequestStatus::Queued, None, 1)
    );
    assert_eq!(
        (back.created_at, back.updated_at, back.last_error.clone()),
        (ts(0), ts(20), Some(e))
    );
    assert_eq!(s.requests.apply(update).await.unwrap(), Applied::Already);
    let counts = s.requests.counts(&tenant("acme")).await.unwrap();
    assert_eq!(
        (counts.get(RequestStatus::Queued), counts.get(RequestStatus::Claimed)),
        (1, 0)
    );
    assert_eq!(counts.pending_bytes, r.body_bytes as i64);
    assert_eq!(s.requests.queue_groups().await.unwrap()[0].queued, 1);
    // Claimed again, it counts a second attempt.
    let job2 = JobId::generate();
    s.requests
        .apply(RequestUpdate::claim(&back, &job2, ts(30)))
        .await
        .unwrap();
    assert_eq!(get(&s, &r).await.attempts, 2);
}

pub async fn requeue_free_gives_the_attempt_back(s: StoreUnderTest) {
    let (r, job) = claimed(&s).await;
    let update = RequestUpdate::requeue_free(&r, &job, None, ts(20));
    assert!(update.refund_attempt);
    assert_eq!(s.requests.apply(update).await.unwrap(), Applied::Now);
    let back = get(&s, &r).await;
    assert_eq!((back.status, back.attempts), (RequestStatus::Queued, 0));
    assert_eq!(count(&s, "acme", RequestStatus::Queued).await, 1);
}

pub async fn cancel_finishes_a_queued_request_and_is_refused_once_it_is_claimed(s: StoreUnderTest) {
    let a = insert_one(&s, new_request("acme", "a", "gpt-4o-mini", "hi"), ts(0)).await;
    let b = insert_one(&s, new_request("acme", "b", "gpt-4o-mini", "hi"), ts(1)).await;
    assert_eq!(
        s.requests.apply(RequestUpdate::cancel(&a, ts(5))).await.unwrap(),
        Applied::Now
    );
    assert_eq!(
        s.requests.apply(RequestUpdate::cancel(&a, ts(6))).await.unwrap(),
        Applied::Already
    );
    assert_eq!(get(&s, &a).await.status, RequestStatus::Cancelled);
    let job = JobId::generate();
    s.requests.apply(RequestUpdate::claim(&b, &job, ts(5))).await.unwrap();
    // `b` as read before the claim: the cancel finds it claimed.
    assert_refused(
        s.requests.apply(RequestUpdate::cancel(&b, ts(6))).await,
        &format!("claimed in {job}"),
    );
    let counts = s.requests.counts(&tenant("acme")).await.unwrap();
    assert_eq!(
        (
            counts.get(RequestStatus::Cancelled),
            counts.get(RequestStatus::Claimed),
            counts.get(RequestStatus::Queued)
        ),
        (1, 1, 0)
    );
    assert_eq!(counts.pending_bytes, b.body_bytes as i64);
    assert!(s.requests.queue_groups().await.unwrap().is_empty());
}

pub async fn finish_late_completes_a_queued_request_for_the_late_job_once(s: StoreUnderTest) {
    let r = insert_one(&s, new_request("acme", "r-1", "gpt-4o-mini", "hi"), ts(0)).await;
    let late = JobId::generate();
    let res = result(&r, &late, "late answer", ts(20));
    let update = RequestUpdate::finish_late(&r, &late, res.clone(), ts(20));
    assert_eq!(s.requests.apply(update.clone()).await.unwrap(), Applied::Now);
    assert_eq!(s.requests.apply(update).await.unwrap(), Applied::Already);
    let (state, stored) = s.requests.get_with_result(&r.key).await.unwrap().unwrap();
    assert_eq!(
        (state.status, state.job_id),
        (RequestStatus::Completed, Some(late.clone()))
    );
    assert_eq!(stored, Some(res));
    let counts = s.requests.counts(&tenant("acme")).await.unwrap();
    assert_eq!(
        (
            counts.get(RequestStatus::Completed),
            counts.pending(),
            counts.pending_bytes
        ),
        (1, 0, 0)
    );
    assert!(s.requests.queue_groups().await.unwrap().is_empty());
    // A request already sent again: the late answer is refused.
    let other = insert_one(&s, new_request("acme", "r-2", "gpt-4o-mini", "hi"), ts(1)).await;
    let job = JobId::generate();
    s.requests
        .apply(RequestUpdate::claim(&other, &job, ts(30)))
        .await
        .unwrap();
    let res = result(&other, &late, "late answer", ts(40));
    let refused = s
        .requests
        .apply(RequestUpdate::finish_late(&other, &late, res, ts(40)))
        .await;
    assert_refused(refused, &format!("claimed in {job}"));
}

pub async fn an_illegal_transition_is_refused_before_any_write(s: StoreUnderTest) {
    let (r, job) = claimed(&s).await;
    let mut update = RequestUpdate::requeue(&r, &job, None, ts(20));
    update.from = RequestStatus::Completed;
    let res = s.requests.apply(update).await;
    assert!(matches!(res, Err(StoreError::IllegalTransition(_))), "{res:?}");
    let now = get(&s, &r).await;
    assert_eq!((now.status, now.updated_at), (RequestStatus::Claimed, ts(10)));
    assert_eq!(count(&s, "acme", RequestStatus::Claimed).await, 1);
}

pub async fn a_change_of_an_unknown_request_is_not_found(s: StoreUnderTest) {
    let r = insert_one(&s, new_request("acme", "r-1", "gpt-4o-mini", "hi"), ts(0)).await;
    let mut update = RequestUpdate::cancel(&r, ts(1));
    update.key = RequestKey::derive(&tenant("acme"), &CustomId::parse("nope").unwrap());
    let res = s.requests.apply(update).await;
    assert!(matches!(res, Err(StoreError::NotFound { .. })), "{res:?}");
    assert_eq!(count(&s, "acme", RequestStatus::Queued).await, 1);
    assert_eq!(count(&s, "acme", RequestStatus::Cancelled).await, 0);
}

pub async fn apply_many_settles_each_change_on_its_own_condition_in_input_order(s: StoreUnderTest) {
    let rs = insert_many(&s, "acme", "gpt-4o-mini", 4, 0).await;
    let (job, other) = (JobId::generate(), JobId::generate());
    s.requests
        .apply(RequestUpdate::claim(&rs[1], &other, ts(5)))
        .await
        .unwrap();
    s.requests.apply(RequestUpdate::cancel(&rs[3], ts(5))).await.unwrap();
    let claim0 = RequestUpdate::claim(&rs[0], &job, ts(10));
    // rs[0] claimed earlier in the same call, then finished: the second sees the first.
    let mut claimed0 = rs[0].clone();
    claimed0.status = RequestStatus::Claimed;
    claimed0.job_id = Some(job.clone());
    let finish0 = RequestUpdate::finish(
        &claimed0,
        &job,
        RequestStatus::Completed,
        result(&claimed0, &job, "ok", ts(10)),
        ts(10),
    );
    let out = s
        .requests
        .apply_many(vec![
            claim0,
            RequestUpdate::claim(&rs[1], &job, ts(10)),
            RequestUpdate::claim(&rs[2], &job, ts(10)),
            RequestUpdate::cancel(&rs[3], ts(10)),
            finish0,
        ])
        .await
        .unwrap();
    assert_eq!(out.len(), 5);
    assert_eq!(out[0].as_ref().unwrap(), &Applied::Now);
    assert!(matches!(&out[1], Err(e) if e.is_condition_failed()), "{:?}", out[1]);
    assert_eq!(out[2].as_ref().unwrap(), &Applied::Now);
    assert_eq!(out[3].as_ref().unwrap(), &Applied::Already);
    assert_eq!(out[4].as_ref().unwrap(), &Applied::Now);
    assert_eq!(get(&s, &rs[0]).await.status, RequestStatus::Completed);
    let counts = s.requests.counts(&tenant("acme")).await.unwrap();
    let by = |st| counts.get(st);
    assert_eq!(
        (
            by(RequestStatus::Queued),
            by(RequestStatus::Claimed),
            by(RequestStatus::Completed),
            by(RequestStatus::Cancelled)
        ),
        (0, 2, 1, 1)
    );
    assert!(s.requests.apply_many(vec![]).await.unwrap().is_empty());
}

pub async fn a_large_response_is_kept_in_the_object_store(s: StoreUnderTest) {
    let (r, job) = claimed(&s).await;
    let big: String = "z".repeat(s.inline_result_max as usize + 10);
    let mut res = result(&r, &job, "", ts(20));
    res.response = Some(Payload::Inline(big.clone()));
    s.requests
        .apply(RequestUpdate::finish(&r, &job, RequestStatus::Completed, res, ts(20)))
        .await
        .unwrap();
    let (_, stored) = s.requests.get_with_result(&r.key).await.unwrap().unwrap();
    let object = keys::response(&r.key, &job);
    assert_eq!(
        stored.unwrap().response,
        Some(Payload::S3 {
            key: object.clone(),
            bytes: big.len() as u64
        })
    );
    let held = s
        .objects
        .get(&object)
        .await
        .unwrap()
        .expect("the response object exists");
    assert_eq!(held, big.as_bytes());
}

pub async fn a_finished_requests_large_body_is_deleted_and_an_unfinished_ones_kept(s: StoreUnderTest) {
    let a = large_request(&s, "acme", "a", 'a');
    let b = large_request(&s, "acme", "b", 'b');
    s.requests.insert(vec![a.clone(), b.clone()], ts(0)).await.unwrap();
    let job = JobId::generate();
    let ra = s.requests.get(&a.key).await.unwrap().unwrap();
    let rb = s.requests.get(&b.key).await.unwrap().unwrap();
    s.requests.apply(RequestUpdate::claim(&ra, &job, ts(5))).await.unwrap();
    s.requests.apply(RequestUpdate::claim(&rb, &job, ts(5))).await.unwrap();
    let ra = get(&s, &ra).await;
    s.requests
        .apply(RequestUpdate::finish(
            &ra,
            &job,
            RequestStatus::Completed,
            result(&ra, &job, "ok", ts(9)),
            ts(9),
        ))
        .await
        .unwrap();
    assert_eq!(
        s.objects.head(&keys::body(&a.key, &a.content_hash)).await.unwrap(),
        None
    );
    assert!(s
        .objects
        .head(&keys::body(&b.key, &b.content_hash))
        .await
        .unwrap()
        .is_some());
    assert_eq!(count(&s, "acme", RequestStatus::Claimed).await, 1);
    let counts = s.requests.counts(&tenant("acme")).await.unwrap();
    assert_eq!(counts.pending_bytes, b.body_bytes() as i64);
}

/// A tenant's committed spend (the estimated cost of its unfinished
/// requests) rises with an insert, stays through a claim and a requeue,
/// falls when a request finishes or is cancelled, and a replay moves it no
/// further: it is written with the row it counts.
pub async fn the_committed_cost_follows_requests_into_and_out_of_the_unfinished_statuses(s: StoreUnderTest) {
    let committed = |s: &StoreUnderTest| {
        let requests = s.requests.clone();
        async move { requests.counts(&tenant("acme")).await.unwrap().committed_nanos }
    };
    let a = insert_one(
        &s,
        new_request("acme", "r-1", "gpt-4o-mini", "hi").estimated(700),
        ts(0),
    )
    .await;
    let b = insert_one(&s, new_request("acme", "r-2", "gpt-4o-mini", "ho").estimated(50), ts(0)).await;
    assert_eq!(a.estimated_cost_nanos, 700, "the estimate is stored on the row");
    assert_eq!(committed(&s).await, 750);
    // The same insert again (same content) commits nothing more.
    let again = s
        .requests
        .insert(
            vec![new_request("acme", "r-1", "gpt-4o-mini", "hi").estimated(700)],
            ts(1),
        )
        .await
        .unwrap();
    assert!(matches!(again[0], batchq_core::request::InsertOutcome::Existing(_)));
    assert_eq!(committed(&s).await, 750);

    let job = JobId::generate();
    s.requests.apply(RequestUpdate::claim(&a, &job, ts(10))).await.unwrap();
    assert_eq!(committed(&s).await, 750, "in flight is still committed");
    let claimed = get(&s, &a).await;
    s.requests
        .apply(RequestUpdate::requeue(&claimed, &job, Some(err("x")), ts(11)))
        .await
        .unwrap();
    assert_eq!(committed(&s).await, 750, "back in the queue is still committed");
    let queued = get(&s, &a).await;
    let job2 = JobId::generate();
    s.requests
        .apply(RequestUpdate::claim(&queued, &job2, ts(12)))
        .await
        .unwrap();
    let claimed = get(&s, &a).await;
    let finish = RequestUpdate::finish(
        &claimed,
        &job2,
        RequestStatus::Completed,
        result(&claimed, &job2, "done", ts(20)),
        ts(20),
    );
    assert_eq!(s.requests.apply(finish.clone()).await.unwrap(), Applied::Now);
    assert_eq!(committed(&s).await, 50, "a finished request commits nothing");
    assert_eq!(s.requests.apply(finish).await.unwrap(), Applied::Already);
    assert_eq!(committed(&s).await, 50, "a replay gives nothing back twice");

    s.requests.apply(RequestUpdate::cancel(&b, ts(30))).await.unwrap();
    assert_eq!(committed(&s).await, 0);
    assert_eq!(
        s.requests.counts(&tenant("other")).await.unwrap().committed_nanos,
        0,
        "per tenant"
    );
}
