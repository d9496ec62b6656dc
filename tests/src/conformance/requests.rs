//! Inserts, reads, bodies and the listings of the request store.

use std::collections::HashSet;

use batchq_core::ids::{JobId, ProviderName, RequestKey};
use batchq_core::keys;
use batchq_core::request::{InsertOutcome, RequestStatus};
use batchq_core::store::StoreError;
use batchq_core::transition::RequestUpdate;

use super::*;

pub async fn insert_creates_a_queued_request_and_counts_it(s: StoreUnderTest) {
    let nr = new_request("acme", "r-1", "gpt-4o-mini", "hi");
    let out = s.requests.insert(vec![nr.clone()], ts(0)).await.unwrap();
    let InsertOutcome::Created(r) = &out[0] else {
        panic!("expected Created, got {out:?}")
    };
    assert_eq!(
        (r.status, r.attempts, r.job_id.clone()),
        (RequestStatus::Queued, 0, None)
    );
    assert_eq!((r.created_at, r.updated_at), (ts(0), ts(0)));
    assert_eq!(
        (&r.key, &r.tenant, &r.content_hash),
        (&nr.key, &nr.tenant, &nr.content_hash)
    );
    assert_eq!(r.body_bytes, nr.body_bytes());
    assert_eq!(norm_req(get(&s, r).await), norm_req(r.clone()));

    let counts = s.requests.counts(&tenant("acme")).await.unwrap();
    assert_eq!(counts.get(RequestStatus::Queued), 1);
    assert_eq!(counts.pending(), 1);
    assert_eq!(counts.pending_bytes, nr.body_bytes() as i64);
    let groups = s.requests.queue_groups().await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!((groups[0].group.clone(), groups[0].queued), (group("gpt-4o-mini"), 1));
    assert_eq!(s.requests.counts(&tenant("other")).await.unwrap().pending(), 0);
}

pub async fn insert_of_the_same_body_again_returns_the_existing_request_and_counts_nothing(s: StoreUnderTest) {
    let first = insert_one(&s, new_request("acme", "r-1", "gpt-4o-mini", "hi"), ts(0)).await;
    let again = s
        .requests
        .insert(vec![new_request("acme", "r-1", "gpt-4o-mini", "hi")], ts(5))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    match &again[0] {
        InsertOutcome::Existing(r) => assert_eq!(norm_req(r.clone()), norm_req(first.clone())),
        other => panic!("expected Existing, got {other:?}"),
    }
    assert_eq!(count(&s, "acme", RequestStatus::Queued).await, 1);
    assert_eq!(s.requests.queue_groups().await.unwrap()[0].queued, 1);
}

pub async fn insert_of_a_conflicting_body_returns_the_stored_request_and_keeps_its_body(s: StoreUnderTest) {
    let first = insert_one(&s, new_request("acme", "r-1", "gpt-4o-mini", "hi"), ts(0)).await;
    let out = s
        .requests
        .insert(vec![new_request("acme", "r-1", "gpt-4o-mini", "something else")], ts(5))
        .await
        .unwrap();
    match &out[0] {
        InsertOutcome::Conflict(r) => assert_eq!(r.content_hash, first.content_hash),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let bodies = s.requests.bodies(std::slice::from_ref(&first.key)).await.unwrap();
    assert!(bodies[&first.key].contains("\"hi\""), "the accepted body stays");
    assert_eq!(count(&s, "acme", RequestStatus::Queued).await, 1);
}

pub async fn insert_of_the_same_body_routed_elsewhere_is_a_repeat_but_named_for_another_provider_a_conflict(
    s: StoreUnderTest,
) {
    let first = insert_one(&s, new_request("acme", "r-1", "gpt-4o-mini", "hi"), ts(0)).await;
    let azure = ProviderName::parse("azure").unwrap();
    // The routes changed between the post and its retry: the same request.
    let rerouted = new_request("acme", "r-1", "gpt-4o-mini", "hi").routed_to(azure.clone());
    let out = s.requests.insert(vec![rerouted], ts(5)).await.unwrap();
    match &out[0] {
        InsertOutcome::Existing(r) => assert_eq!(r.provider, first.provider),
        other => panic!("expected Existing, got {other:?}"),
    }
    // The caller named another provider: another request.
    let elsewhere = new_request("acme", "r-1", "gpt-4o-mini", "hi").sent_to(azure);
    assert_eq!(elsewhere.content_hash, first.content_hash);
    let out = s.requests.insert(vec![elsewhere], ts(5)).await.unwrap();
    match &out[0] {
        InsertOutcome::Conflict(r) => assert_eq!(r.provider, first.provider),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let bodies = s.requests.bodies(std::slice::from_ref(&first.key)).await.unwrap();
    assert!(bodies[&first.key].contains("\"hi\""), "the accepted body stays");
    assert_eq!(count(&s, "acme", RequestStatus::Queued).await, 1);
}

pub async fn insert_judges_a_key_repeated_in_one_call_against_its_first_occurrence(s: StoreUnderTest) {
    let a = new_request("acme", "r-1", "gpt-4o-mini", "hi");
    let conflicting = new_request("acme", "r-1", "gpt-4o-mini", "bye");
    let b = new_request("acme", "r-2", "gpt-4o-mini", "hi");
    let out = s
        .requests
        .insert(vec![a.clone(), b, a, conflicting], ts(0))
        .await
        .unwrap();
    assert!(matches!(out[0], InsertOutcome::Created(_)), "{out:?}");
    assert!(matches!(out[1], InsertOutcome::Created(_)), "{out:?}");
    assert!(matches!(out[2], InsertOutcome::Existing(_)), "{out:?}");
    assert!(matches!(out[3], InsertOutcome::Conflict(_)), "{out:?}");
    assert_eq!(count(&s, "acme", RequestStatus::Queued).await, 2);
}

pub async fn get_and_get_many_read_known_requests_and_leave_out_unknown_ones(s: StoreUnderTest) {
    let rs = insert_many(&s, "acme", "gpt-4o-mini", 3, 0).await;
    let unknown = RequestKey::derive(&tenant("acme"), &batchq_core::ids::CustomId::parse("nope").unwrap());
    assert_eq!(s.requests.get(&unknown).await.unwrap(), None);
    assert_eq!(s.requests.get_with_result(&unknown).await.unwrap(), None);
    let mut keys: Vec<RequestKey> = rs.iter().map(|r| r.key.clone()).collect();
    keys.push(unknown.clone());
    keys.push(rs[0].key.clone());
    let many = s.requests.get_many(&keys).await.unwrap();
    assert_eq!(many.len(), 3);
    for r in &rs {
        assert_eq!(norm_req(many[&r.key].clone()), norm_req(r.clone()));
    }
    assert!(s.requests.get_many(&[]).await.unwrap().is_empty());
}

pub async fn get_with_result_reads_the_result_once_one_is_stored(s: StoreUnderTest) {
    let r = insert_one(&s, new_request("acme", "r-1", "gpt-4o-mini", "hi"), ts(0)).await;
    let (state, res) = s.requests.get_with_result(&r.key).await.unwrap().unwrap();
    assert_eq!((state.status, res), (RequestStatus::Queued, None));
    let job = JobId::generate();
    s.requests.apply(RequestUpdate::claim(&r, &job, ts(1))).await.unwrap();
    let claimed = get(&s, &r).await;
    let stored = result(&claimed, &job, "answer", ts(2));
    let update = RequestUpdate::finish(&claimed, &job, RequestStatus::Completed, stored.clone(), ts(2));
    s.requests.apply(update).await.unwrap();
    let (state, res) = s.requests.get_with_result(&r.key).await.unwrap().unwrap();
    assert_eq!(state.status, RequestStatus::Completed);
    assert_eq!(res, Some(stored));
}

pub async fn bodies_are_read_back_inline_and_from_the_object_store(s: StoreUnderTest) {
    let small = new_request("acme", "small", "gpt-4o-mini", "hi");
    let large = large_request(&s, "acme", "large", 'x');
    s.requests
        .insert(vec![small.clone(), large.clone()], ts(0))
        .await
        .unwrap();
    let object = keys::body(&large.key, &large.content_hash);
    let info = s.objects.head(&object).await.unwrap();
    assert_eq!(
        info.map(|i| i.bytes),
        Some(large.body_bytes()),
        "a large body goes to the object store"
    );
    assert_eq!(
        s.objects
            .head(&keys::body(&small.key, &small.content_hash))
            .await
            .unwrap(),
        None
    );
    let unknown = RequestKey::derive(&tenant("acme"), &batchq_core::ids::CustomId::parse("nope").unwrap());
    let bodies = s
        .requests
        .bodies(&[small.key.clone(), large.key.clone(), unknown])
        .await
        .unwrap();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[&small.key], small.body_json);
    assert_eq!(bodies[&large.key], large.body_json);
}

pub async fn a_conflicting_large_body_leaves_no_object_behind(s: StoreUnderTest) {
    let first = large_request(&s, "acme", "large", 'x');
    let conflicting = large_request(&s, "acme", "large", 'y');
    insert_one(&s, first.clone(), ts(0)).await;
    let out = s.requests.insert(vec![conflicting.clone()], ts(1)).await.unwrap();
    assert!(matches!(out[0], InsertOutcome::Conflict(_)), "{out:?}");
    let gone = keys::body(&conflicting.key, &conflicting.content_hash);
    assert_eq!(s.objects.head(&gone).await.unwrap(), None);
    let bodies = s.requests.bodies(std::slice::from_ref(&first.key)).await.unwrap();
    assert_eq!(bodies[&first.key], first.body_json);
}

pub async fn queued_lists_a_groups_requests_oldest_first_across_pages(s: StoreUnderTest) {
    // Inserted newest first, so the order comes from creation time, not insertion.
    let mut mine = Vec::new();
    for i in (0..7).rev() {
        let r = new_request("acme", &format!("m-{i}"), "gpt-4o-mini", "hi");
        mine.push(insert_one(&s, r, ts(i * 10)).await);
    }
    mine.reverse();
    insert_many(&s, "acme", "gpt-4o", 2, 0).await;
    let listed = all_queued(&s, &group("gpt-4o-mini"), 3).await;
    let keys: Vec<_> = listed.iter().map(|r| r.key.clone()).collect();
    let want: Vec<_> = mine.iter().map(|r| r.key.clone()).collect();
    assert_eq!(keys, want);
    assert_eq!(all_queued(&s, &group("gpt-4o"), 100).await.len(), 2);
    assert!(all_queued(&s, &group("gpt-5"), 10).await.is_empty());
}

pub async fn queued_leaves_out_claimed_requests_and_a_requeued_one_keeps_its_place(s: StoreUnderTest) {
    let rs = insert_many(&s, "acme", "gpt-4o-mini", 4, 0).await;
    let job = JobId::generate();
    for r in &rs[..2] {
        s.requests.apply(RequestUpdate::claim(r, &job, ts(100))).await.unwrap();
    }
    let listed: Vec<_> = all_queued(&s, &group("gpt-4o-mini"), 10).await;
    assert_eq!(
        listed.iter().map(|r| &r.key).collect::<Vec<_>>(),
        vec![&rs[2].key, &rs[3].key]
    );
    let claimed = get(&s, &rs[0]).await;
    s.requests
        .apply(RequestUpdate::requeue(&claimed, &job, None, ts(200)))
        .await
        .unwrap();
    let listed: Vec<_> = all_queued(&s, &group("gpt-4o-mini"), 10).await;
    assert_eq!(
        listed.iter().map(|r| &r.key).collect::<Vec<_>>(),
        vec![&rs[0].key, &rs[2].key, &rs[3].key]
    );
}

pub async fn listings_refuse_a_cursor_the_store_never_issued(s: StoreUnderTest) {
    insert_many(&s, "acme", "gpt-4o-mini", 2, 0).await;
    let bad = || Some("not a cursor".to_owned());
    let q = s.requests.queued(&group("gpt-4o-mini"), bad(), 10).await;
    assert!(matches!(q, Err(StoreError::Corrupt { .. })), "{q:?}");
    let b = s.requests.by_job(&JobId::generate(), bad(), 10).await;
    assert!(matches!(b, Err(StoreError::Corrupt { .. })), "{b:?}");
    let j = s.jobs.list_jobs(None, bad(), 10).await;
    assert!(matches!(j, Err(StoreError::Corrupt { .. })), "{j:?}");
}

pub async fn queue_groups_count_queued_requests_per_group_and_drop_empty_groups(s: StoreUnderTest) {
    let mini = insert_many(&s, "acme", "gpt-4o-mini", 3, 0).await;
    insert_many(&s, "beta", "gpt-4o", 2, 0).await;
    let groups = s.requests.queue_groups().await.unwrap();
    let seen: Vec<_> = groups.iter().map(|g| (g.group.model.to_string(), g.queued)).collect();
    assert_eq!(seen, vec![("gpt-4o".to_owned(), 2), ("gpt-4o-mini".to_owned(), 3)]);
    let job = JobId::generate();
    for r in &mini {
        s.requests.apply(RequestUpdate::claim(r, &job, ts(10))).await.unwrap();
    }
    let groups = s.requests.queue_groups().await.unwrap();
    let seen: Vec<_> = groups.iter().map(|g| (g.group.model.to_string(), g.queued)).collect();
    assert_eq!(seen, vec![("gpt-4o".to_owned(), 2)]);
    let back = get(&s, &mini[0]).await;
    s.requests
        .apply(RequestUpdate::requeue(&back, &job, None, ts(20)))
        .await
        .unwrap();
    let groups = s.requests.queue_groups().await.unwrap();
    assert_eq!(groups.iter().map(|g| g.queued).sum::<u64>(), 3);
}

pub async fn by_job_lists_every_request_of_a_job_in_any_status_across_pages(s: StoreUnderTest) {
    let rs = insert_many(&s, "acme", "gpt-4o-mini", 7, 0).await;
    let (one, two) = (JobId::generate(), JobId::generate());
    for r in &rs[..5] {
        s.requests.apply(RequestUpdate::claim(r, &one, ts(10))).await.unwrap();
    }
    for r in &rs[5..] {
        s.requests.apply(RequestUpdate::claim(r, &two, ts(10))).await.unwrap();
    }
    let done = get(&s, &rs[0]).await;
    let res = result(&done, &one, "ok", ts(20));
    s.requests
        .apply(RequestUpdate::finish(
            &done,
            &one,
            RequestStatus::Completed,
            res,
            ts(20),
        ))
        .await
        .unwrap();
    let back = get(&s, &rs[1]).await;
    s.requests
        .apply(RequestUpdate::requeue(&back, &one, None, ts(20)))
        .await
        .unwrap();

    let listed = all_by_job(&s, &one, 2).await;
    let keys: HashSet<_> = listed.iter().map(|r| r.key.clone()).collect();
    assert_eq!(listed.len(), keys.len(), "no request listed twice");
    let want: HashSet<_> = [0, 2, 3, 4].iter().map(|i| rs[*i].key.clone()).collect();
    assert_eq!(
        keys, want,
        "the completed and claimed ones; the requeued one left the job"
    );
    assert_eq!(all_by_job(&s, &two, 100).await.len(), 2);
    assert!(all_by_job(&s, &JobId::generate(), 10).await.is_empty());
}

pub async fn a_body_whose_object_is_lost_is_left_out_of_bodies(s: StoreUnderTest) {
    let large = large_request(&s, "acme", "large", 'x');
    let small = new_request("acme", "small", "gpt-4o-mini", "hi");
    s.requests
        .insert(vec![large.clone(), small.clone()], ts(0))
        .await
        .unwrap();
    s.objects
        .delete(&keys::body(&large.key, &large.content_hash))
        .await
        .unwrap();
    let bodies = s
        .requests
        .bodies(&[large.key.clone(), small.key.clone()])
        .await
        .unwrap();
    assert_eq!(bodies.len(), 1, "the caller decides what a lost body means");
    assert_eq!(bodies[&small.key], small.body_json);
}

pub async fn many_requests_in_one_call_are_inserted_and_changed_with_exact_counts(s: StoreUnderTest) {
    let many: Vec<_> = (0..250)
        .map(|i| {
            new_request(
                if i % 2 == 0 { "acme" } else { "beta" },
                &format!("r-{i}"),
                "gpt-4o-mini",
                "hi",
            )
        })
        .collect();
    let out = s.requests.insert(many.clone(), ts(0)).await.unwrap();
    assert_eq!(out.len(), 250);
    assert!(out.iter().all(|o| matches!(o, InsertOutcome::Created(_))));
    assert_eq!(count(&s, "acme", RequestStatus::Queued).await, 125);
    assert_eq!(count(&s, "beta", RequestStatus::Queued).await, 125);
    let stored: Vec<_> = many
        .iter()
        .map(|r| r.key.clone())
        .collect::<Vec<_>>()
        .chunks(100)
        .map(|c| c.to_vec())
        .collect();
    let mut requests = Vec::new();
    for chunk in stored {
        requests.extend(s.requests.get_many(&chunk).await.unwrap().into_values());
    }
    assert_eq!(requests.len(), 250);
    let job = JobId::generate();
    let claims = requests.iter().map(|r| RequestUpdate::claim(r, &job, ts(10))).collect();
    let results = s.requests.apply_many(claims).await.unwrap();
    assert!(results
        .iter()
        .all(|r| matches!(r, Ok(batchq_core::store::Applied::Now))));
    assert_eq!(count(&s, "acme", RequestStatus::Claimed).await, 125);
    assert_eq!(count(&s, "beta", RequestStatus::Claimed).await, 125);
    assert!(s.requests.queue_groups().await.unwrap().is_empty());
    assert_eq!(all_by_job(&s, &job, 100).await.len(), 250);
}
