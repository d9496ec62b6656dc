//! The results feed: one entry per request that reached a terminal status,
//! appended in the same write as the transition, in commit order, paged
//! by a tenant-bound cursor that no late commit ever falls behind.

use std::collections::HashMap;

use batchq_core::feed::{FeedCursor, FeedEntry, FeedEvent};
use batchq_core::ids::{CustomId, JobId};
use batchq_core::request::{Request, RequestError, RequestStatus};
use batchq_core::store::{Applied, StoreError};
use batchq_core::transition::RequestUpdate;

use super::*;

/// Every entry of `t`'s feed after `after`, `limit` at a time, checking
/// that each page's `next` is its last entry's cursor.
pub async fn read_feed(s: &StoreUnderTest, t: &str, after: Option<FeedCursor>, limit: u32) -> Vec<FeedEntry> {
    let mut out = Vec::new();
    let mut cursor = after;
    for _ in 0..10_000 {
        let page = s.requests.feed(&tenant(t), cursor.as_ref(), limit).await.unwrap();
        assert!(page.entries.len() <= limit as usize, "a page holds at most its limit");
        if page.entries.is_empty() {
            assert_eq!(
                page.next, cursor,
                "an empty page hands back the cursor it was read after"
            );
            return out;
        }
        assert_eq!(page.next.as_ref(), page.entries.last().map(|e| &e.cursor));
        cursor = page.next;
        out.extend(page.entries);
    }
    panic!("feed pages never end");
}

fn ids(entries: &[FeedEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.custom_id.as_str()).collect()
}

async fn claim_all(s: &StoreUnderTest, rs: &[Request], job: &JobId) -> Vec<Request> {
    let claims = rs.iter().map(|r| RequestUpdate::claim(r, job, ts(50))).collect();
    for res in s.requests.apply_many(claims).await.unwrap() {
        res.unwrap();
    }
    let mut out = Vec::new();
    for r in rs {
        out.push(get(s, r).await);
    }
    out
}

fn complete(r: &Request, job: &JobId, at: i64) -> RequestUpdate {
    RequestUpdate::finish(r, job, RequestStatus::Completed, result(r, job, "ok", ts(at)), ts(at))
}

fn error() -> RequestError {
    RequestError {
        code: "invalid_request".into(),
        message: "no".into(),
        status_code: Some(400),
    }
}

pub async fn feed_lists_each_finished_request_once_in_the_order_it_finished_across_pages(s: StoreUnderTest) {
    let rs = insert_many(&s, "acme", "gpt-4o-mini", 6, 0).await;
    assert!(read_feed(&s, "acme", None, 10).await.is_empty(), "nothing finished yet");
    // A cancel of a queued request is terminal; claims and a requeue are not.
    s.requests.apply(RequestUpdate::cancel(&rs[5], ts(40))).await.unwrap();
    let job = JobId::generate();
    let claimed = claim_all(&s, &rs[..5], &job).await;
    s.requests
        .apply(RequestUpdate::requeue(&claimed[4], &job, None, ts(60)))
        .await
        .unwrap();
    // Finished in the order 2, 0, then 3 and 1 in one call.
    s.requests.apply(complete(&claimed[2], &job, 70)).await.unwrap();
    s.requests
        .apply(RequestUpdate::fail(&claimed[0], &job, error(), ts(80)))
        .await
        .unwrap();
    for res in s
        .requests
        .apply_many(vec![complete(&claimed[3], &job, 90), complete(&claimed[1], &job, 90)])
        .await
        .unwrap()
    {
        res.unwrap();
    }

    for limit in [1, 2, 5, 100] {
        let all = read_feed(&s, "acme", None, limit).await;
        assert_eq!(
            ids(&all),
            [
                "gpt-4o-mini-5",
                "gpt-4o-mini-2",
                "gpt-4o-mini-0",
                "gpt-4o-mini-3",
                "gpt-4o-mini-1"
            ],
            "limit {limit}"
        );
        let events: Vec<FeedEvent> = all.iter().map(|e| e.event).collect();
        use FeedEvent::*;
        assert_eq!(events, [Cancelled, Completed, Failed, Completed, Completed]);
        assert_eq!(all[0].job, None, "a cancelled request had no job");
        assert_eq!(all[1].job.as_ref(), Some(&job));
        assert_eq!(
            (all[1].finished_at, all[1].model.as_str(), all[1].provider.as_str()),
            (ts(70), "gpt-4o-mini", "openai")
        );
        // Each entry's cursor resumes right after it.
        let rest = read_feed(&s, "acme", Some(all[1].cursor.clone()), limit).await;
        assert_eq!(ids(&rest), ids(&all[2..]));
    }
    // A cursor at the end stays there until more finish.
    let all = read_feed(&s, "acme", None, 100).await;
    let end = all.last().unwrap().cursor.clone();
    assert!(read_feed(&s, "acme", Some(end.clone()), 100).await.is_empty());
    let back = get(&s, &rs[4]).await;
    let again = claim_all(&s, &[back], &job).await;
    s.requests.apply(complete(&again[0], &job, 100)).await.unwrap();
    assert_eq!(ids(&read_feed(&s, "acme", Some(end), 100).await), ["gpt-4o-mini-4"]);
}

pub async fn a_replayed_terminal_change_appends_no_second_entry(s: StoreUnderTest) {
    let rs = insert_many(&s, "acme", "gpt-4o-mini", 3, 0).await;
    let job = JobId::generate();
    let claimed = claim_all(&s, &rs[..2], &job).await;
    let finish = complete(&claimed[0], &job, 70);
    let fail = RequestUpdate::fail(&claimed[1], &job, error(), ts(70));
    let cancel = RequestUpdate::cancel(&rs[2], ts(70));
    for u in [&finish, &fail, &cancel] {
        assert_eq!(s.requests.apply(u.clone()).await.unwrap(), Applied::Now);
    }
    // The same events again (a redelivered message, a re-run after a crash),
    // alone and in one call with themselves.
    for u in [&finish, &fail, &cancel] {
        assert_eq!(s.requests.apply(u.clone()).await.unwrap(), Applied::Already);
    }
    let twice = s
        .requests
        .apply_many(vec![finish.clone(), fail.clone(), finish.clone()])
        .await
        .unwrap();
    assert!(twice.iter().all(|r| matches!(r, Ok(Applied::Already))), "{twice:?}");
    let all = read_feed(&s, "acme", None, 100).await;
    assert_eq!(ids(&all), ["gpt-4o-mini-0", "gpt-4o-mini-1", "gpt-4o-mini-2"]);
}

pub async fn feed_is_tenant_scoped_and_refuses_a_cursor_it_did_not_issue_to_the_tenant(s: StoreUnderTest) {
    let a = insert_many(&s, "acme", "gpt-4o-mini", 3, 0).await;
    let b = insert_many(&s, "globex", "gpt-4o-mini", 2, 10).await;
    let job = JobId::generate();
    let both: Vec<Request> = a.iter().chain(&b).cloned().collect();
    let claimed = claim_all(&s, &both, &job).await;
    // One call finishing both tenants' requests, interleaved.
    let order = [0, 3, 1, 4, 2];
    let updates = order.iter().map(|i| complete(&claimed[*i], &job, 70)).collect();
    for res in s.requests.apply_many(updates).await.unwrap() {
        res.unwrap();
    }
    let acme = read_feed(&s, "acme", None, 2).await;
    let globex = read_feed(&s, "globex", None, 2).await;
    assert_eq!(ids(&acme), ["gpt-4o-mini-0", "gpt-4o-mini-1", "gpt-4o-mini-2"]);
    assert_eq!(ids(&globex), ["gpt-4o-mini-0", "gpt-4o-mini-1"]);
    assert!(acme.iter().all(|e| e.tenant == tenant("acme")));
    assert!(globex.iter().all(|e| e.tenant == tenant("globex")));
    assert!(read_feed(&s, "initech", None, 10).await.is_empty());

    // Another tenant's cursor shows nothing: it is refused.
    for (t, foreign) in [
        ("globex", &acme[0].cursor),
        ("acme", &globex[1].cursor),
        ("initech", &acme[2].cursor),
    ] {
        match s.requests.feed(&tenant(t), Some(foreign), 10).await {
            Err(StoreError::BadCursor(_)) => {}
            other => panic!("{t} read with another tenant's cursor: {other:?}"),
        }
    }
    // A well-formed cursor of this tenant past its end is an empty page, not an error.
    let far = FeedCursor::new(&tenant("acme"), 1_000_000);
    let page = s.requests.feed(&tenant("acme"), Some(&far), 10).await.unwrap();
    assert!(page.entries.is_empty());
    assert_eq!(page.next, Some(far));
}

/// Ingest runs concurrently (several invocations, each finishing many
/// requests of one tenant) while a reader follows the feed: the reader
/// sees every finished request exactly once, and never an entry below a
/// cursor it already holds.
pub async fn a_reader_following_the_feed_while_writers_race_sees_every_entry_exactly_once(s: StoreUnderTest) {
    const WRITERS: usize = 4;
    const EACH: usize = 15;
    let rs = insert_many(&s, "acme", "gpt-4o-mini", WRITERS * EACH, 0).await;
    let job = JobId::generate();
    let claimed = claim_all(&s, &rs, &job).await;
    let writers: Vec<_> = claimed
        .chunks(EACH)
        .map(|part| {
            let s = s.clone();
            let part = part.to_vec();
            let job = job.clone();
            tokio::spawn(async move {
                // A few calls each, so transactions of different writers interleave.
                for few in part.chunks(4) {
                    let updates = few.iter().map(|r| complete(r, &job, 70)).collect();
                    for res in s.requests.apply_many(updates).await.unwrap() {
                        assert_eq!(res.unwrap(), Applied::Now);
                    }
                }
            })
        })
        .collect();
    let mut seen: HashMap<CustomId, usize> = HashMap::new();
    let mut cursor: Option<FeedCursor> = None;
    let mut last_seq = 0u64;
    let mut done = false;
    for _ in 0..100_000 {
        let finished = writers.iter().all(|w| w.is_finished());
        let page = s.requests.feed(&tenant("acme"), cursor.as_ref(), 7).await.unwrap();
        for e in &page.entries {
            let seq = e.cursor.seq_for(&tenant("acme")).unwrap();
            assert!(seq > last_seq, "entries come in order, after the cursor");
            last_seq = seq;
            *seen.entry(e.custom_id.clone()).or_default() += 1;
        }
        cursor = page.next;
        // Read once more after every writer finished, to the end.
        if finished && page.entries.is_empty() {
            done = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(done, "the reader caught up");
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(seen.len(), rs.len(), "every finished request is in the feed");
    assert!(seen.values().all(|n| *n == 1), "each exactly once: {seen:?}");
    // And a reader from the start agrees.
    assert_eq!(read_feed(&s, "acme", None, 13).await.len(), rs.len());
}

pub async fn the_feed_end_is_the_newest_entry_and_following_from_it_gives_only_later_ones(s: StoreUnderTest) {
    assert_eq!(
        s.requests.feed_end(&tenant("acme")).await.unwrap(),
        None,
        "an empty feed has no end"
    );
    let rs = insert_many(&s, "acme", "gpt-4o-mini", 4, 0).await;
    let other = insert_many(&s, "globex", "gpt-4o-mini", 1, 0).await;
    let job = JobId::generate();
    let claimed = claim_all(&s, &rs, &job).await;
    for r in &claimed[..3] {
        s.requests.apply(complete(r, &job, 70)).await.unwrap();
    }
    let end = s
        .requests
        .feed_end(&tenant("acme"))
        .await
        .unwrap()
        .expect("three entries");
    let all = read_feed(&s, "acme", None, 100).await;
    assert_eq!(
        Some(&end),
        all.last().map(|e| &e.cursor),
        "the end is the newest entry's cursor"
    );
    assert!(read_feed(&s, "acme", Some(end.clone()), 100).await.is_empty());
    // Another tenant's entry does not move this tenant's end.
    s.requests
        .apply(RequestUpdate::cancel(&other[0], ts(71)))
        .await
        .unwrap();
    assert_eq!(s.requests.feed_end(&tenant("acme")).await.unwrap(), Some(end.clone()));
    s.requests.apply(complete(&claimed[3], &job, 72)).await.unwrap();
    assert_eq!(ids(&read_feed(&s, "acme", Some(end), 100).await), ["gpt-4o-mini-3"]);
}
