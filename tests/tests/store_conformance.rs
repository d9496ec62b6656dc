//! The store conformance suite (`batchq_tests::conformance`) against every
//! store: the in-memory adapter, the DynamoDB + S3 adapters on the
//! emulator (fresh tables and bucket per case) and the embedded SQLite +
//! files store (a fresh data directory per case). A case that passes on one
//! and fails on another is a difference in semantics to fix. The cases
//! after `lagging:` pin eventually consistent listings, which the embedded
//! store does not have (its reads are consistent).

macro_rules! conformance {
    ($($case:ident),* $(,)?; lagging: $($lag:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    batchq_tests::conformance::$case(batchq_tests::conformance::memory_store()).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $lag() {
                    batchq_tests::conformance::$lag(batchq_tests::conformance::memory_store()).await;
                }
            )*
        }

        mod dynamo {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    batchq_tests::conformance::$case(batchq_tests::conformance::dynamo_store().await).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $lag() {
                    batchq_tests::conformance::$lag(batchq_tests::conformance::dynamo_store().await).await;
                }
            )*
        }

        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    batchq_tests::conformance::$case(batchq_tests::conformance::embedded_store()).await;
                }
            )*
        }
    };
}

conformance!(
    // inserts, reads, bodies, listings
    insert_creates_a_queued_request_and_counts_it,
    insert_of_the_same_body_again_returns_the_existing_request_and_counts_nothing,
    insert_of_a_conflicting_body_returns_the_stored_request_and_keeps_its_body,
    insert_of_the_same_body_routed_elsewhere_is_a_repeat_but_named_for_another_provider_a_conflict,
    insert_judges_a_key_repeated_in_one_call_against_its_first_occurrence,
    get_and_get_many_read_known_requests_and_leave_out_unknown_ones,
    get_with_result_reads_the_result_once_one_is_stored,
    bodies_are_read_back_inline_and_from_the_object_store,
    a_conflicting_large_body_leaves_no_object_behind,
    a_body_whose_object_is_lost_is_left_out_of_bodies,
    many_requests_in_one_call_are_inserted_and_changed_with_exact_counts,
    queued_lists_a_groups_requests_oldest_first_across_pages,
    queued_leaves_out_claimed_requests_and_a_requeued_one_keeps_its_place,
    listings_refuse_a_cursor_the_store_never_issued,
    queue_groups_count_queued_requests_per_group_and_drop_empty_groups,
    by_job_lists_every_request_of_a_job_in_any_status_across_pages,
    // conditional status changes
    claim_moves_a_queued_request_to_its_job_counting_an_attempt,
    a_replayed_claim_is_already_applied_and_counts_nothing,
    a_claim_of_a_request_another_job_holds_is_refused_with_its_state,
    finishing_a_request_for_another_job_is_refused_and_stores_no_result,
    finish_stores_the_result_counts_it_and_a_replay_keeps_the_first_result,
    the_committed_cost_follows_requests_into_and_out_of_the_unfinished_statuses,
    fail_without_a_result_records_the_error_and_finishes_the_request,
    requeue_returns_a_request_to_the_queue_keeping_its_attempt_and_place,
    requeue_free_gives_the_attempt_back,
    cancel_finishes_a_queued_request_and_is_refused_once_it_is_claimed,
    finish_late_completes_a_queued_request_for_the_late_job_once,
    an_illegal_transition_is_refused_before_any_write,
    a_change_of_an_unknown_request_is_not_found,
    apply_many_settles_each_change_on_its_own_condition_in_input_order,
    a_large_response_is_kept_in_the_object_store,
    a_finished_requests_large_body_is_deleted_and_an_unfinished_ones_kept,
    // jobs
    a_created_job_reads_back_whole_and_cannot_be_created_twice,
    save_job_bumps_the_version_and_is_conditioned_on_status_and_version,
    open_jobs_are_the_unfinished_and_watched_ones_oldest_first,
    list_jobs_is_newest_first_across_pages_and_by_tenant,
    job_tenants_let_each_tenant_find_a_job_however_many_it_holds,
    token_budgets_keep_the_last_saved_budget_of_each_model,
    // savings
    savings_are_counted_once_per_source_and_read_by_day_then_model,
    savings_of_two_providers_for_one_model_and_day_are_kept_apart,
    // activity
    activity_counts_each_move_once_in_its_hour_with_the_queue_by_model,
    // the results feed
    feed_lists_each_finished_request_once_in_the_order_it_finished_across_pages,
    a_replayed_terminal_change_appends_no_second_entry,
    the_feed_end_is_the_newest_entry_and_following_from_it_gives_only_later_ones,
    feed_is_tenant_scoped_and_refuses_a_cursor_it_did_not_issue_to_the_tenant,
    a_reader_following_the_feed_while_writers_race_sees_every_entry_exactly_once,
    // objects
    objects_are_put_read_measured_streamed_and_deleted,
    a_written_object_appears_only_when_finished_and_an_aborted_one_never,
    a_large_written_object_goes_up_in_parts_with_a_bounded_buffer,
    // concurrency
    racing_claims_claim_each_request_exactly_once_and_count_exactly,
    racing_inserts_of_one_request_create_it_once,
    racing_finish_and_requeue_of_one_claim_leave_one_outcome;
    lagging:
    // eventually consistent listings
    listings_may_lag_behind_writes_but_reads_counters_and_conditions_do_not,
);

/// DynamoDB only (the item shapes are its own): feed items written before a
/// transaction's entries were grouped into one item hold one entry each in
/// their own attributes. Read with groups after them, every entry comes
/// once, in number order, at every page size and from every entry's cursor
/// (old items' cursors and cursors inside a group alike).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamo_feed_items_of_one_entry_written_before_grouping_read_in_order_with_groups() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use batchq_core::feed::FeedCursor;
    use batchq_core::ids::{CustomId, JobId, ModelName, TenantId};
    use batchq_core::request::{Endpoint, InsertOutcome, NewRequest, Payload, RequestResult, RequestStatus};
    use batchq_core::store::RequestStore;
    use batchq_core::time::Timestamp;
    use batchq_core::transition::RequestUpdate;

    let env = batchq_tests::TestEnv::new().await;
    let acme = TenantId::parse("acme").unwrap();
    let t0 = 1_790_000_000_000;
    // Two entries as the store wrote them before: one item each, sequence at 2.
    for (seq, id) in [(1u64, "old-0"), (2, "old-1")] {
        let s = |v: &str| AttributeValue::S(v.to_owned());
        env.dynamo
            .put_item()
            .table_name(&env.config.jobs_table)
            .item("pk", s("feed#acme"))
            .item("sk", s(&format!("{seq:020}")))
            .item("custom_id", s(id))
            .item("event", s("cancelled"))
            .item("finished_at", AttributeValue::N((t0 + seq as i64).to_string()))
            .item("model", s("gpt-4o-mini"))
            .item("provider", s("openai"))
            .send()
            .await
            .unwrap();
    }
    env.dynamo
        .put_item()
        .table_name(&env.config.jobs_table)
        .item("pk", AttributeValue::S("feedseq#acme".into()))
        .item("sk", AttributeValue::S("seq".into()))
        .item("seq", AttributeValue::N("2".into()))
        .send()
        .await
        .unwrap();

    // Then three finished now: two in one call (a group), one alone.
    let mut rs = Vec::new();
    for i in 0..3 {
        let body = serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
        let new = NewRequest::new(
            acme.clone(),
            CustomId::parse(format!("new-{i}")).unwrap(),
            Endpoint::ChatCompletions,
            ModelName::parse("gpt-4o-mini").unwrap(),
            body.to_string(),
        );
        match env
            .store
            .insert(vec![new], Timestamp::from_millis(t0 + 10 + i))
            .await
            .unwrap()
            .remove(0)
        {
            InsertOutcome::Created(r) => rs.push(r),
            other => panic!("expected Created, got {other:?}"),
        }
    }
    let job = JobId::generate();
    let at = Timestamp::from_millis(t0 + 50);
    let claims = rs.iter().map(|r| RequestUpdate::claim(r, &job, at)).collect();
    for res in env.store.apply_many(claims).await.unwrap() {
        res.unwrap();
    }
    let mut claimed = Vec::new();
    for r in &rs {
        claimed.push(env.store.get(&r.key).await.unwrap().unwrap());
    }
    let done = |i: usize| {
        let at = Timestamp::from_millis(t0 + 60);
        let res = RequestResult {
            key: claimed[i].key.clone(),
            job_id: job.clone(),
            status_code: Some(200),
            response: Some(Payload::Inline("{}".into())),
            error: None,
            usage: None,
            batch_cost: None,
            realtime_cost: None,
            recorded_at: at,
            request_id: None,
        };
        RequestUpdate::finish(&claimed[i], &job, RequestStatus::Completed, res, at)
    };
    for res in env.store.apply_many(vec![done(0), done(1)]).await.unwrap() {
        res.unwrap();
    }
    env.store.apply(done(2)).await.unwrap();

    let read = |after: Option<FeedCursor>, limit: u32| {
        let store = env.store.clone();
        let acme = acme.clone();
        async move {
            let mut out = Vec::new();
            let mut cursor = after;
            loop {
                let page = store.feed(&acme, cursor.as_ref(), limit).await.unwrap();
                assert!(page.entries.len() <= limit as usize);
                if page.entries.is_empty() {
                    return out;
                }
                cursor = page.next;
                out.extend(page.entries);
            }
        }
    };
    let want = ["old-0", "old-1", "new-0", "new-1", "new-2"];
    for limit in [1, 2, 3, 100] {
        let all = read(None, limit).await;
        let ids: Vec<&str> = all.iter().map(|e| e.custom_id.as_str()).collect();
        assert_eq!(ids, want, "limit {limit}");
        let seqs: Vec<u64> = all.iter().map(|e| e.cursor.seq_for(&acme).unwrap()).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5], "limit {limit}");
        for (i, e) in all.iter().enumerate() {
            let rest = read(Some(e.cursor.clone()), limit).await;
            let rest: Vec<&str> = rest.iter().map(|e| e.custom_id.as_str()).collect();
            assert_eq!(rest, want[i + 1..], "limit {limit}, after entry {}", i + 1);
        }
    }
    // The new entries went as one item per transaction: the two of one call
    // in one item keyed by the last number, the third alone.
    let items = batchq_tests::scan_all(&env.dynamo, &env.config.jobs_table).await;
    let mut feed_keys: Vec<&str> = items
        .iter()
        .filter(|i| i["pk"].as_s().unwrap() == "feed#acme")
        .map(|i| i["sk"].as_s().unwrap().as_str())
        .collect();
    feed_keys.sort();
    assert_eq!(
        feed_keys,
        [
            "00000000000000000001",
            "00000000000000000002",
            "00000000000000000004",
            "00000000000000000005"
        ]
    );
}
