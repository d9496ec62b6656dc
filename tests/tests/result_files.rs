//! Result files are untrusted input: a provider (or whatever wrote the file
//! into `results/`) may hand over lines that are not JSON, name requests
//! batchq never made, exceed the line limit, or stop mid-line. Each such line
//! is reported in the ingest report and skipped; every other line of the same
//! file is applied exactly as in a clean file, and the requests whose lines
//! were lost go back to the queue when the job closes and complete later.

use std::collections::HashMap;

use batchq_core::ids::RequestKey;
use batchq_core::job::{Job, JobStatus};
use batchq_core::keys as store_keys;
use batchq_core::pipeline::ingest::FileKind;
use batchq_core::pipeline::SubmitOptions;
use batchq_core::provider::openai::limits::MAX_RESULT_LINE_BYTES;
use batchq_core::request::{NewRequest, Payload, RequestStatus};
use batchq_tests::pipeline::{assert_invariants, chat, expected_response, keys, Pipeline};
use bytes::Bytes;
use fake_openai::FakeConfig;
use serde_json::Value;

/// Submits `n` chat requests as one batch and polls until its output file is
/// copied to `results/` (the job is then `ingesting`, the file not yet read).
async fn one_copied_batch(n: usize) -> (Pipeline, Vec<NewRequest>, Job, HashMap<RequestKey, String>) {
    let p = Pipeline::start(FakeConfig::default(), |_| {}).await;
    let reqs: Vec<_> = (0..n).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;
    p.submitter().run(SubmitOptions::default()).await.unwrap();
    p.poller().run().await.unwrap();
    let jobs = p.all_jobs().await;
    assert_eq!(jobs.len(), 1);
    let job = jobs.into_iter().next().unwrap();
    assert_eq!(job.status, JobStatus::Ingesting, "{job:?}");
    let output = p
        .objects()
        .get(&store_keys::job_output(&job.id))
        .await
        .unwrap()
        .expect("the output file was copied");
    let lines: HashMap<RequestKey, String> = std::str::from_utf8(&output)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let key = RequestKey::parse(v["custom_id"].as_str().unwrap()).unwrap();
            (key, l.to_owned())
        })
        .collect();
    assert_eq!(lines.len(), n, "the fake answered every request");
    (p, reqs, job, lines)
}

/// Replaces the job's output file in S3 with `content`.
async fn replace_output(p: &Pipeline, job: &Job, content: Vec<u8>) {
    p.objects()
        .put(
            &store_keys::job_output(&job.id),
            Bytes::from(content),
            "application/jsonl",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn hostile_lines_are_reported_and_skipped_and_the_rest_of_the_file_is_applied() {
    let (p, reqs, job, real) = one_copied_batch(12).await;
    let line_of = |i: usize| real[&reqs[i].key].clone();

    // Request 0..=7 keep their real lines, spread between hostile ones.
    // Request 8's line is over the limit, 9's is replaced by garbage, 10's
    // names itself in a form batchq never uses, and 11's is cut mid-line at
    // the end of a file that has no final newline.
    let mut file = Vec::new();
    let mut push = |s: &str| {
        file.extend_from_slice(s.as_bytes());
        file.push(b'\n');
    };
    push(&line_of(0));
    push("not json at all");
    push(&line_of(1));
    push("");
    push("   \t");
    push(&line_of(2));
    push(
        r#"{"id":"batch_req_1","custom_id":"someone-elses-id","response":{"status_code":200,"body":{}},"error":null}"#,
    );
    push(&line_of(3));
    // A well-formed line for a request key that exists nowhere.
    let stranger = real[&reqs[4].key].replace(reqs[4].key.as_str(), &"0".repeat(32));
    assert_ne!(stranger, line_of(4));
    push(&stranger);
    push(&line_of(4));
    push(&format!(
        "{{\"custom_id\":\"{}\",\"response\":{{\"status_code\":\"200\"}}}}",
        reqs[9].key
    ));
    push(&line_of(5));
    push("[1,2,3]");
    push(&line_of(6));
    push(&format!("{{\"custom_id\":\"{}\"}}", reqs[10].key));
    push(&line_of(7));
    // Over the limit: request 8's real line with padding inside the JSON.
    let real8 = line_of(8);
    let (head, tail) = real8.split_at(1);
    let mut long = String::with_capacity(MAX_RESULT_LINE_BYTES + real8.len() + 1);
    long.push_str(head);
    long.push_str(&" ".repeat(MAX_RESULT_LINE_BYTES + 1 - real8.len()));
    long.push_str(tail);
    assert_eq!(long.len(), MAX_RESULT_LINE_BYTES + 1);
    push(&long);
    drop(long);
    // Truncated: no final newline, cut mid-line.
    let real11 = line_of(11);
    file.extend_from_slice(&real11.as_bytes()[..real11.len() / 2]);
    let size = file.len() as u64;
    replace_output(&p, &job, file).await;

    let answer = p
        .ingest_via_handler(
            &p.ingester(),
            p.s3_event(&store_keys::job_output(&job.id), size, "hostile"),
        )
        .await
        .expect("a hostile file is ingested, not refused");
    let report = &answer["ingested"][0];
    assert_eq!(report["lines"], 16, "{report}");
    assert_eq!(report["completed"], 8, "{report}");
    assert_eq!(report["malformed"], 6, "{report}");
    assert_eq!(report["too_long"], 1, "{report}");
    assert_eq!(report["not_in_job"], 1, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["requeued"], 0, "{report}");
    assert_eq!(report["counted"], true, "{report}");
    // The message of a skipped line never echoes the line.
    assert!(!report.to_string().contains("someone-elses-id"), "{report}");

    // The good lines were applied exactly as the provider wrote them.
    let states = p.states(&keys(&reqs)).await;
    for r in &reqs[..8] {
        assert_eq!(states[&r.key].status, RequestStatus::Completed, "{}", r.custom_id);
        let (_, result) = p.result(&r.key).await;
        let body = p.response_json(result.unwrap().response.as_ref().unwrap()).await;
        assert_eq!(body, expected_response(r), "{}", r.custom_id);
    }
    // The job closed without answers for 8..=11; they went back to the queue.
    assert_eq!(p.job(&job.id).await.status, JobStatus::Done);
    for r in &reqs[8..] {
        let st = &states[&r.key];
        assert_eq!(st.status, RequestStatus::Queued, "{}: {st:?}", r.custom_id);
    }
    // Nothing of the stranger's or the skipped lines counted toward the totals.
    let counted = p.job(&job.id).await.totals.usage;
    let mut expected = batchq_core::request::Usage::default();
    for r in &reqs[..8] {
        expected.add(&p.result(&r.key).await.1.unwrap().usage.unwrap());
    }
    assert_eq!(counted, expected);

    // A later round submits the four again and they complete.
    p.settle(&keys(&reqs), 3).await;
    assert_invariants(&p, &reqs).await;
    let states = p.states(&keys(&reqs)).await;
    assert!(states.values().all(|r| r.status == RequestStatus::Completed));
    for r in &reqs[8..] {
        assert_eq!(states[&r.key].attempts, 2, "{}", r.custom_id);
    }
}

#[tokio::test]
async fn a_file_cut_at_a_line_boundary_or_empty_loses_only_the_missing_lines() {
    let (p, reqs, job, real) = one_copied_batch(6).await;
    // The first three lines, the last without its newline.
    let content = (0..3)
        .map(|i| real[&reqs[i].key].clone())
        .collect::<Vec<_>>()
        .join("\n");
    replace_output(&p, &job, content.into_bytes()).await;

    let report = p.ingester().ingest_file(job.clone(), FileKind::Output).await.unwrap();
    assert_eq!(
        (report.lines, report.completed, report.malformed, report.too_long),
        (3, 3, 0, 0),
        "{report:?}"
    );
    assert!(report.closed);
    let states = p.states(&keys(&reqs)).await;
    for (i, r) in reqs.iter().enumerate() {
        let want = if i < 3 {
            RequestStatus::Completed
        } else {
            RequestStatus::Queued
        };
        assert_eq!(states[&r.key].status, want, "{}", r.custom_id);
    }

    // An empty result file for the next batch: every request comes back.
    p.submitter().run(SubmitOptions::default()).await.unwrap();
    p.poller().run().await.unwrap();
    let second = p
        .all_jobs()
        .await
        .into_iter()
        .find(|j| j.id != job.id)
        .expect("a second job");
    assert_eq!(second.status, JobStatus::Ingesting);
    replace_output(&p, &second, Vec::new()).await;
    let report = p
        .ingester()
        .ingest_file(second.clone(), FileKind::Output)
        .await
        .unwrap();
    assert_eq!((report.lines, report.completed), (0, 0), "{report:?}");
    assert_eq!(p.job(&second.id).await.status, JobStatus::Done);
    p.settle(&keys(&reqs), 3).await;
    assert_invariants(&p, &reqs).await;
}

#[tokio::test]
async fn absurd_token_counts_in_a_result_line_neither_panic_nor_poison_the_totals() {
    let (p, reqs, job, real) = one_copied_batch(4).await;
    // Requests 0 and 1 claim u64::MAX tokens each (their sum overflows a u64),
    // request 2 claims more cached tokens than input tokens; 3 is honest.
    let inflate = |i: usize, f: &dyn Fn(&mut Value)| {
        let mut v: Value = serde_json::from_str(&real[&reqs[i].key]).unwrap();
        f(&mut v["response"]["body"]["usage"]);
        v.to_string()
    };
    let max = u64::MAX;
    let lines = [
        inflate(0, &|u| {
            u["prompt_tokens"] = max.into();
            u["completion_tokens"] = max.into();
        }),
        inflate(1, &|u| {
            u["prompt_tokens"] = max.into();
            u["total_tokens"] = max.into();
        }),
        inflate(2, &|u| {
            u["prompt_tokens_details"] = serde_json::json!({"cached_tokens": 1_000_000})
        }),
        real[&reqs[3].key].clone(),
    ];
    replace_output(&p, &job, (lines.join("\n") + "\n").into_bytes()).await;

    let report = p.ingester().ingest_file(job.clone(), FileKind::Output).await.unwrap();

    assert_eq!((report.completed, report.malformed), (4, 0), "{report:?}");
    let honest = p.result(&reqs[3].key).await.1.unwrap();
    let honest_usage = honest.usage.unwrap();
    for r in &reqs[..2] {
        let (state, result) = p.result(&r.key).await;
        let result = result.unwrap();
        assert_eq!(state.status, RequestStatus::Completed);
        assert_eq!(result.usage, None, "{}: an absurd count is not believed", r.custom_id);
        assert_eq!(result.batch_cost, None);
    }
    let job_after = p.job(&job.id).await;
    let mut expected = honest_usage;
    expected.add(&p.result(&reqs[2].key).await.1.unwrap().usage.unwrap());
    assert_eq!(job_after.totals.usage, expected);
    assert_eq!(job_after.status, JobStatus::Done);
    // The savings rows read back (a sum past u64 would make them unreadable).
    let savings = p.default_tenant_savings().await;
    let total: u64 = savings.iter().map(|r| r.totals.usage.input_tokens).sum();
    assert_eq!(total, expected.input_tokens);
}

#[tokio::test]
async fn an_answer_over_the_line_limit_fails_its_request_and_is_never_sent_again() {
    let (p, reqs, job, real) = one_copied_batch(3).await;
    // Request 0's answer grows past the limit (inside its JSON, after the
    // custom_id, as a huge embeddings answer would).
    let real0 = real[&reqs[0].key].clone();
    let (body, last) = real0.split_at(real0.len() - 1);
    let mut long = String::with_capacity(MAX_RESULT_LINE_BYTES + real0.len() + 1);
    long.push_str(body);
    long.push_str(&" ".repeat(MAX_RESULT_LINE_BYTES + 1 - real0.len()));
    long.push_str(last);
    let mut file = long.into_bytes();
    for r in &reqs[1..] {
        file.push(b'\n');
        file.extend_from_slice(real[&r.key].as_bytes());
    }
    replace_output(&p, &job, file).await;

    let report = p.ingester().ingest_file(job.clone(), FileKind::Output).await.unwrap();
    assert_eq!(
        (report.too_long, report.failed, report.completed),
        (1, 1, 2),
        "{report:?}"
    );
    assert!(report.closed);
    let (state, result) = p.result(&reqs[0].key).await;
    assert_eq!(state.status, RequestStatus::Failed);
    let error = result.unwrap().error.unwrap();
    assert_eq!(error.code, "result_too_large");
    assert_eq!(error.status_code, Some(200));

    // Nothing goes back to the provider: the answer would be as large again.
    p.settle(&keys(&reqs), 2).await;
    assert_eq!(p.fake.submissions().len(), 1, "the request was sent again");
}

#[tokio::test]
async fn answers_are_read_from_the_result_file_copy_not_copied_into_their_rows() {
    let (p, reqs, job, real) = one_copied_batch(6).await;
    // Line ends of both kinds and blank lines: every answer's place in the
    // file is where the reader found its line, whatever came before.
    let mut file = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        file.extend_from_slice(real[&r.key].as_bytes());
        file.extend_from_slice(if i % 2 == 0 { b"\r\n" } else { b"\n\n" });
    }
    let size = file.len() as u64;
    replace_output(&p, &job, file.clone()).await;
    p.ingest_via_handler(
        &p.ingester(),
        p.s3_event(&store_keys::job_output(&job.id), size, "pointers"),
    )
    .await
    .expect("ingested");

    for r in &reqs {
        let (state, result) = p.result(&r.key).await;
        assert_eq!(state.status, RequestStatus::Completed, "{}", r.custom_id);
        let response = result.unwrap().response.unwrap();
        let Payload::Chunk { key, offset, len } = &response else {
            panic!("{}: the answer was copied into its row: {response:?}", r.custom_id);
        };
        assert_eq!(key, &store_keys::job_output(&job.id));
        let (from, to) = (*offset as usize, (*offset + *len) as usize);
        let in_file: Value = serde_json::from_slice(&file[from..to]).expect("the range is the answer's JSON");
        let line: Value = serde_json::from_str(&real[&r.key]).unwrap();
        assert_eq!(in_file, line["response"]["body"], "{}", r.custom_id);
        assert_eq!(
            p.response_json(&response).await,
            expected_response(r),
            "{}",
            r.custom_id
        );
    }
    assert_invariants(&p, &reqs).await;
}
