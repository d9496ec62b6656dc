//! Many tasks racing on the same rows: every conditional write has exactly
//! one winner and the counters stay exact.

use std::collections::HashMap;

use batchq_core::ids::{JobId, RequestKey};
use batchq_core::request::{InsertOutcome, RequestStatus};
use batchq_core::store::Applied;
use batchq_core::transition::RequestUpdate;

use super::*;

const RACERS: usize = 6;

pub async fn racing_claims_claim_each_request_exactly_once_and_count_exactly(s: StoreUnderTest) {
    let rs = insert_many(&s, "acme", "gpt-4o-mini", 30, 0).await;
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let s = s.clone();
            let rs = rs.clone();
            tokio::spawn(async move {
                let job = JobId::generate();
                let updates = rs.iter().map(|r| RequestUpdate::claim(r, &job, ts(100))).collect();
                let out = s.requests.apply_many(updates).await.unwrap();
                let won: Vec<RequestKey> = rs
                    .iter()
                    .zip(out)
                    .filter_map(|(r, res)| match res {
                        Ok(Applied::Now) => Some(r.key.clone()),
                        Ok(Applied::Already) => panic!("another job's claim is no replay"),
                        Err(e) => {
                            assert!(e.is_condition_failed(), "{e}");
                            None
                        }
                    })
                    .collect();
                (job, won)
            })
        })
        .collect();
    let mut winner: HashMap<RequestKey, JobId> = HashMap::new();
    for t in tasks {
        let (job, won) = t.await.unwrap();
        for k in won {
            assert!(winner.insert(k, job.clone()).is_none(), "a request claimed twice");
        }
    }
    assert_eq!(winner.len(), rs.len(), "every request claimed once");
    let stored = s
        .requests
        .get_many(&rs.iter().map(|r| r.key.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    for r in &rs {
        let now = &stored[&r.key];
        assert_eq!((now.status, now.attempts), (RequestStatus::Claimed, 1));
        assert_eq!(now.job_id.as_ref(), Some(&winner[&r.key]));
    }
    let counts = s.requests.counts(&tenant("acme")).await.unwrap();
    assert_eq!(
        (counts.get(RequestStatus::Queued), counts.get(RequestStatus::Claimed)),
        (0, 30)
    );
    assert!(s.requests.queue_groups().await.unwrap().is_empty());
    let listed: usize = {
        let mut n = 0;
        for job in winner.values().collect::<std::collections::HashSet<_>>() {
            n += all_by_job(&s, job, 100).await.len();
        }
        n
    };
    assert_eq!(listed, 30);
}

pub async fn racing_inserts_of_one_request_create_it_once(s: StoreUnderTest) {
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let r = new_request("acme", "same", "gpt-4o-mini", "hi");
                s.requests.insert(vec![r], ts(0)).await.unwrap().remove(0)
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            InsertOutcome::Created(_) => created += 1,
            InsertOutcome::Existing(_) => {}
            other => panic!("the same body is no conflict: {other:?}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(count(&s, "acme", RequestStatus::Queued).await, 1);
}

pub async fn racing_finish_and_requeue_of_one_claim_leave_one_outcome(s: StoreUnderTest) {
    let rs = insert_many(&s, "acme", "gpt-4o-mini", 10, 0).await;
    let job = JobId::generate();
    let claims = rs.iter().map(|r| RequestUpdate::claim(r, &job, ts(5))).collect();
    s.requests.apply_many(claims).await.unwrap();
    let claimed: Vec<_> = s
        .requests
        .get_many(&rs.iter().map(|r| r.key.clone()).collect::<Vec<_>>())
        .await
        .unwrap()
        .into_values()
        .collect();
    let finishes: Vec<_> = claimed
        .iter()
        .map(|r| RequestUpdate::finish(r, &job, RequestStatus::Completed, result(r, &job, "ok", ts(9)), ts(9)))
        .collect();
    let requeues: Vec<_> = claimed
        .iter()
        .map(|r| RequestUpdate::requeue(r, &job, None, ts(9)))
        .collect();
    let (a, b) = (s.clone(), s.clone());
    let (f, q) = tokio::join!(
        tokio::spawn(async move { a.requests.apply_many(finishes).await.unwrap() }),
        tokio::spawn(async move { b.requests.apply_many(requeues).await.unwrap() }),
    );
    let (f, q) = (f.unwrap(), q.unwrap());
    let mut completed = 0;
    for (fr, qr) in f.iter().zip(&q) {
        let wins = [fr, qr].iter().filter(|r| matches!(r, Ok(Applied::Now))).count();
        assert_eq!(wins, 1, "exactly one of finish and requeue applies: {fr:?} {qr:?}");
        completed += matches!(fr, Ok(Applied::Now)) as i64;
    }
    let counts = s.requests.counts(&tenant("acme")).await.unwrap();
    assert_eq!(counts.get(RequestStatus::Completed), completed);
    assert_eq!(counts.get(RequestStatus::Queued), 10 - completed);
    assert_eq!(counts.get(RequestStatus::Claimed), 0);
    let queued = all_queued(&s, &group("gpt-4o-mini"), 100).await.len() as i64;
    assert_eq!(queued, 10 - completed);
}
