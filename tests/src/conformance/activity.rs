//! The hourly activity counters: each move counted in the hour it was made,
//! in the same write as the row, once (a replay and a refused change count
//! nothing), with the tenant's queue per model; read back for a range of
//! hours.

use batchq_core::activity::{summarize, Hour};
use batchq_core::ids::JobId;
use batchq_core::request::{RequestError, RequestStatus};
use batchq_core::store::Applied;
use batchq_core::transition::RequestUpdate;

use super::*;

const HOUR: i64 = 3_600_000;

fn err(code: &str) -> RequestError {
    RequestError {
        code: code.into(),
        message: format!("{code} happened"),
        status_code: Some(429),
    }
}

pub async fn activity_counts_each_move_once_in_its_hour_with_the_queue_by_model(s: StoreUnderTest) {
    // A fixed day: hour 0 of 2026-12-01 and the three after it.
    let h0 = Hour::parse("2026-12-01T00").unwrap();
    let at = |hour: i64, ms: i64| Timestamp::from_millis(h0.start().millis() + hour * HOUR + ms);
    let mut reqs = Vec::new();
    for i in 0..4 {
        reqs.push(
            insert_one(
                &s,
                new_request("acme", &format!("a-{i}"), "gpt-4o-mini", "hi"),
                at(0, i),
            )
            .await,
        );
    }
    insert_one(&s, new_request("acme", "e-1", "text-embedding-3-small", "hi"), at(0, 9)).await;
    insert_one(&s, new_request("zeta", "z-1", "gpt-4o-mini", "hi"), at(0, 10)).await;

    // Hour 1: three claimed (the claim replayed), one cancelled.
    let job = JobId::generate();
    let claims: Vec<RequestUpdate> = reqs[..3]
        .iter()
        .map(|r| RequestUpdate::claim(r, &job, at(1, 0)))
        .collect();
    for res in s.requests.apply_many(claims.clone()).await.unwrap() {
        assert_eq!(res.unwrap(), Applied::Now);
    }
    assert_eq!(s.requests.apply(claims[0].clone()).await.unwrap(), Applied::Already);
    s.requests
        .apply(RequestUpdate::cancel(&reqs[3], at(1, 1)))
        .await
        .unwrap();
    // A cancel of a claimed request is refused and counts nothing.
    let claimed: Vec<Request> = futures::future::join_all(reqs[..3].iter().map(|r| get(&s, r))).await;
    assert!(s
        .requests
        .apply(RequestUpdate::cancel(&reqs[0], at(1, 2)))
        .await
        .is_err());

    // Hour 3: one completed, one failed (twice: the second is a replay), one back in the queue.
    let done = RequestUpdate::finish(
        &claimed[0],
        &job,
        RequestStatus::Completed,
        result(&claimed[0], &job, "ok", at(3, 0)),
        at(3, 0),
    );
    let fail = RequestUpdate::fail(&claimed[1], &job, err("rate_limit_exceeded"), at(3, 1));
    let back = RequestUpdate::requeue(&claimed[2], &job, Some(err("batch_expired")), at(3, 2));
    for res in s.requests.apply_many(vec![done, fail.clone(), back]).await.unwrap() {
        assert_eq!(res.unwrap(), Applied::Now);
    }
    assert_eq!(s.requests.apply(fail).await.unwrap(), Applied::Already);

    let rows = s.requests.activity(&tenant("acme"), h0, h0.plus(5)).await.unwrap();
    let a = summarize(&rows, h0, h0.plus(3));
    let counts: Vec<[i64; 5]> = a
        .hours
        .iter()
        .map(|h| {
            let t = h.totals;
            [t.enqueued, t.completed, t.failed, t.cancelled, t.retried]
        })
        .collect();
    assert_eq!(
        counts,
        [[5, 0, 0, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 0], [0, 1, 1, 0, 1]],
        "enqueued, completed, failed, cancelled, retried per hour"
    );
    let mini = model("gpt-4o-mini");
    let emb = model("text-embedding-3-small");
    let queued: Vec<(i64, i64)> = a
        .hours
        .iter()
        .map(|h| {
            (
                h.queued_by_model.get(&mini).copied().unwrap_or(0),
                h.queued_by_model.get(&emb).copied().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        queued,
        [(4, 1), (0, 1), (0, 1), (1, 1)],
        "queued per model at each hour's end"
    );
    assert_eq!(a.failures, [("rate_limit_exceeded".to_owned(), 1)]);
    assert_eq!(rows.queued_now.get(&mini).copied(), Some(1));
    assert_eq!(
        rows.hours[&h0.plus(3)].failures.get("rate_limit_exceeded").copied(),
        Some(1)
    );
    // Another tenant's requests are its own.
    let z = s.requests.activity(&tenant("zeta"), h0, h0.plus(5)).await.unwrap();
    assert_eq!(z.hours[&h0].totals.enqueued, 1);
    assert_eq!(z.queued_now.get(&mini).copied(), Some(1));
    // A range without the early hours reads none of them.
    let late = s
        .requests
        .activity(&tenant("acme"), h0.plus(2), h0.plus(5))
        .await
        .unwrap();
    assert_eq!(late.hours.keys().copied().collect::<Vec<_>>(), [h0.plus(3)]);
}

fn model(m: &str) -> batchq_core::ids::ModelName {
    batchq_core::ids::ModelName::parse(m).unwrap()
}
