//! Account limits and listing lag the real API has: per-model enqueued-token
//! limits (a batch over it is accepted, then fails validation with
//! `token_limit_exceeded`), batches held in progress or cancelling, ending a
//! batch on demand, eventually consistent lists, and the 50,000 embedding
//! inputs cap.

use std::collections::HashMap;
use std::time::Duration;

use fake_openai::{FakeConfig, FakeHandle, FakeServer, Faults};
use serde_json::{json, Value};

struct Api {
    http: reqwest::Client,
    fake: FakeHandle,
}

impl Api {
    async fn start(faults: Faults) -> Api {
        let fake = FakeServer::start(FakeConfig {
            faults,
            ..Default::default()
        })
        .await
        .unwrap();
        Api {
            http: reqwest::Client::new(),
            fake,
        }
    }

    /// `path` from the server's root: `/v1/...` or `/_fake/...`.
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.fake.addr())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth("sk-fake")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth("sk-fake")
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn upload(&self, lines: &[Value]) -> String {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let form = reqwest::multipart::Form::new().text("purpose", "batch").part(
            "file",
            reqwest::multipart::Part::bytes(text.into_bytes()).file_name("in.jsonl"),
        );
        let r = self
            .http
            .post(self.url("/v1/files"))
            .bearer_auth("sk-fake")
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
    }

    /// Uploads the lines and creates a batch of them; create always answers 200 `validating`.
    async fn submit(&self, endpoint: &str, lines: &[Value]) -> String {
        let file = self.upload(lines).await;
        let (status, batch) = self
            .post(
                "/v1/batches",
                json!({"input_file_id": file, "endpoint": endpoint, "completion_window": "24h"}),
            )
            .await;
        assert_eq!(status, 200, "{batch}");
        assert_eq!(batch["status"], "validating");
        batch["id"].as_str().unwrap().to_owned()
    }

    async fn retrieve(&self, id: &str) -> Value {
        let (status, batch) = self.get(&format!("/v1/batches/{id}")).await;
        assert_eq!(status, 200, "{batch}");
        batch
    }

    async fn status(&self, id: &str) -> String {
        self.retrieve(id).await["status"].as_str().unwrap().to_owned()
    }

    async fn lines_of(&self, file_id: &Value) -> Vec<Value> {
        let r = self
            .http
            .get(self.url(&format!("/v1/files/{}/content", file_id.as_str().unwrap())))
            .bearer_auth("sk-fake")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text()
            .await
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn tokens_of(&self, batch_id: &str) -> u64 {
        let subs = self.fake.submissions();
        subs.iter().find(|s| s.batch_id == batch_id).unwrap().tokens
    }
}

/// A chat request of exactly 100 prompt tokens: 372 characters are 93
/// tokens at ~4 characters each, and a chat prompt adds 7.
fn chat(custom_id: &str, model: &str) -> Value {
    json!({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
           "body": {"model": model, "messages": [{"role": "user", "content": "a".repeat(372)}]}})
}

/// A batch of `n` such requests: `100 * n` tokens.
fn chats(prefix: &str, model: &str, n: usize) -> Vec<Value> {
    (0..n).map(|i| chat(&format!("{prefix}-{i}"), model)).collect()
}

fn limits(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
    pairs.iter().map(|(m, l)| (m.to_string(), *l)).collect()
}

#[tokio::test]
async fn a_batch_over_the_limit_is_accepted_then_fails_with_the_documented_error() {
    let api = Api::start(Faults {
        enqueued_token_limits: limits(&[("gpt-4o-mini", 1_999)]),
        ..Default::default()
    })
    .await;
    let id = api
        .submit("/v1/chat/completions", &chats("big", "gpt-4o-mini", 20))
        .await;
    assert_eq!(api.tokens_of(&id), 2_000);
    let batch = api.retrieve(&id).await;
    assert_eq!(batch["status"], "failed");
    assert!(batch["failed_at"].is_i64());
    assert_eq!(
        batch["errors"],
        json!({"object": "list", "data": [{
            "code": "token_limit_exceeded",
            "message": "Enqueued token limit reached for gpt-4o-mini in organization org-fake. \
                        Limit: 1,999 enqueued tokens. Please try again once some in_progress batches have been completed.",
            "param": null, "line": null}]})
    );
    assert_eq!(batch["output_file_id"], Value::Null);
    // It held its tokens while validating, and released them on failing.
    assert_eq!(api.fake.peak_enqueued_tokens("gpt-4o-mini"), 2_000);
    assert_eq!(api.fake.enqueued_tokens("gpt-4o-mini"), 0);

    // Exactly at the limit fits; the default limit applies to other models.
    api.fake.set_faults(Faults {
        enqueued_token_limits: limits(&[("gpt-4o-mini", 2_000)]),
        default_enqueued_token_limit: Some(90_000),
        ..Default::default()
    });
    let fits = api
        .submit("/v1/chat/completions", &chats("fits", "gpt-4o-mini", 20))
        .await;
    assert_eq!(api.status(&fits).await, "completed");
    // Limits are account settings: the admin route changes them too.
    let (status, faults) = api
        .post(
            "/_fake/config",
            json!({"enqueued_token_limits": {}, "default_enqueued_token_limit": 999}),
        )
        .await;
    assert_eq!(status, 200, "{faults}");
    assert_eq!(api.fake.faults().default_enqueued_token_limit, Some(999));
    let other = api.submit("/v1/chat/completions", &chats("other", "gpt-4o", 10)).await;
    let batch = api.retrieve(&other).await;
    assert_eq!(batch["status"], "failed");
    assert_eq!(
        batch["errors"]["data"][0]["message"],
        "Enqueued token limit reached for gpt-4o in organization org-fake. Limit: 999 enqueued tokens. \
         Please try again once some in_progress batches have been completed."
    );

    // The old switch still fails every batch, whatever the limits.
    api.fake.set_faults(Faults {
        token_limit_exceeded: true,
        ..Default::default()
    });
    let forced = api
        .submit("/v1/chat/completions", &chats("forced", "gpt-4o-mini", 1))
        .await;
    let batch = api.retrieve(&forced).await;
    assert_eq!(batch["errors"]["data"][0]["code"], "token_limit_exceeded");
    assert!(batch["errors"]["data"][0]["message"]
        .as_str()
        .unwrap()
        .contains("Limit: 2,000,000 enqueued tokens."));
}

#[tokio::test]
async fn a_second_batch_fits_only_once_the_first_has_left_in_progress() {
    let api = Api::start(Faults {
        enqueued_token_limits: limits(&[("gpt-4o-mini", 1_500)]),
        default_enqueued_token_limit: Some(1_500),
        stay_in_progress_polls: 2,
        ..Default::default()
    })
    .await;
    let first = api
        .submit("/v1/chat/completions", &chats("first", "gpt-4o-mini", 10))
        .await;
    assert_eq!(api.status(&first).await, "in_progress");
    assert_eq!(api.fake.enqueued_tokens("gpt-4o-mini"), 1_000);

    let second = api
        .submit("/v1/chat/completions", &chats("second", "gpt-4o-mini", 10))
        .await;
    let batch = api.retrieve(&second).await;
    assert_eq!(batch["status"], "failed");
    assert_eq!(batch["errors"]["data"][0]["code"], "token_limit_exceeded");
    assert_eq!(api.fake.enqueued_tokens("gpt-4o-mini"), 1_000);

    // Another model has its own queue.
    let other = api.submit("/v1/chat/completions", &chats("other", "gpt-4o", 10)).await;
    assert_eq!(api.status(&other).await, "in_progress");
    assert_eq!(api.fake.enqueued_tokens("gpt-4o"), 1_000);
    assert_eq!(api.fake.enqueued_tokens("gpt-4o-mini"), 1_000);

    assert_eq!(api.status(&first).await, "in_progress");
    assert_eq!(api.status(&first).await, "completed");
    assert_eq!(api.fake.enqueued_tokens("gpt-4o-mini"), 0);
    let again = api
        .submit("/v1/chat/completions", &chats("second", "gpt-4o-mini", 10))
        .await;
    assert_eq!(api.status(&again).await, "in_progress");

    // The refused batch counted while it validated: the peak shows the overfill.
    assert_eq!(api.fake.peak_enqueued_tokens("gpt-4o-mini"), 2_000);
    assert_eq!(api.fake.peak_enqueued_tokens("gpt-4o"), 1_000);
    let (status, enqueued) = api.get("/_fake/enqueued").await;
    assert_eq!(status, 200);
    assert_eq!(
        enqueued,
        json!({"gpt-4o": {"enqueued": 1_000, "peak": 1_000},
               "gpt-4o-mini": {"enqueued": 1_000, "peak": 2_000}})
    );
}

#[tokio::test]
async fn batches_still_validating_count_only_for_those_created_after_them() {
    let api = Api::start(Faults {
        enqueued_token_limits: limits(&[("gpt-4o-mini", 1_500)]),
        stay_validating_polls: 1,
        stay_in_progress_polls: 100,
        ..Default::default()
    })
    .await;
    // Validated first, the later batch still finds the earlier one ahead of it.
    let earlier = api.submit("/v1/chat/completions", &chats("a", "gpt-4o-mini", 10)).await;
    let later = api.submit("/v1/chat/completions", &chats("b", "gpt-4o-mini", 10)).await;
    assert_eq!(api.status(&later).await, "validating");
    assert_eq!(api.status(&later).await, "failed");
    assert_eq!(api.status(&earlier).await, "validating");
    assert_eq!(api.status(&earlier).await, "in_progress");
    assert!(api.fake.complete(&earlier));

    // Validated first, the earlier batch ignores the later one.
    let earlier = api.submit("/v1/chat/completions", &chats("c", "gpt-4o-mini", 10)).await;
    let later = api.submit("/v1/chat/completions", &chats("d", "gpt-4o-mini", 10)).await;
    assert_eq!(api.status(&earlier).await, "validating");
    assert_eq!(api.status(&earlier).await, "in_progress");
    assert_eq!(api.status(&later).await, "validating");
    assert_eq!(api.status(&later).await, "failed");
}

/// Sums a usage field over the output file's answers.
fn usage_sum(lines: &[Value], field: &str) -> u64 {
    lines
        .iter()
        .map(|l| l["response"]["body"]["usage"][field].as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn enqueued_tokens_are_the_prompt_tokens_the_output_reports() {
    let api = Api::start(Faults {
        stay_in_progress_polls: 1,
        ..Default::default()
    })
    .await;
    let texts = [
        "",
        "hi",
        "Grüße aus Köln, ça va ?",
        &"long text ".repeat(300),
        "🦀🦀🦀🦀🦀",
    ];
    let cases: Vec<(&str, &str, &str, Vec<Value>)> = vec![
        (
            "/v1/chat/completions",
            "gpt-4o-mini",
            "prompt_tokens",
            texts
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    json!({"custom_id": format!("c{i}"), "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": "gpt-4o-mini", "messages": [
                           {"role": "system", "content": "Be brief."},
                           {"role": "user", "content": [{"type": "text", "text": t}]}]}})
                })
                .collect(),
        ),
        (
            "/v1/responses",
            "o4-mini",
            "input_tokens",
            texts
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    json!({"custom_id": format!("r{i}"), "method": "POST", "url": "/v1/responses",
                       "body": {"model": "o4-mini", "input": t}})
                })
                .collect(),
        ),
        (
            "/v1/completions",
            "gpt-3.5-turbo-instruct",
            "prompt_tokens",
            texts
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    json!({"custom_id": format!("p{i}"), "method": "POST", "url": "/v1/completions",
                       "body": {"model": "gpt-3.5-turbo-instruct", "prompt": t}})
                })
                .collect(),
        ),
        (
            "/v1/embeddings",
            "text-embedding-3-small",
            "prompt_tokens",
            texts
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let input = if i % 2 == 0 {
                        json!(t)
                    } else {
                        json!([t, "and more", t])
                    };
                    json!({"custom_id": format!("e{i}"), "method": "POST", "url": "/v1/embeddings",
                       "body": {"model": "text-embedding-3-small", "input": input}})
                })
                .collect(),
        ),
    ];
    for (endpoint, model, field, lines) in cases {
        let id = api.submit(endpoint, &lines).await;
        let tokens = api.tokens_of(&id);
        assert!(tokens > 0, "{endpoint}");
        assert_eq!(api.status(&id).await, "in_progress", "{endpoint}");
        assert_eq!(api.fake.enqueued_tokens(model), tokens, "{endpoint}");
        let batch = api.retrieve(&id).await;
        assert_eq!(batch["status"], "completed", "{endpoint}");
        assert_eq!(api.fake.enqueued_tokens(model), 0, "{endpoint}");
        let output = api.lines_of(&batch["output_file_id"]).await;
        assert_eq!(output.len(), lines.len(), "{endpoint}");
        assert_eq!(usage_sum(&output, field), tokens, "{endpoint}");
        assert_eq!(batch["usage"]["input_tokens"], tokens, "{endpoint}");
    }
}

fn ids(page: &Value) -> Vec<&str> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn lists_lag_behind_creation_and_retrieve_does_not() {
    const LAG_MS: u64 = 1_500;
    let api = Api::start(Faults {
        list_lag_ms: LAG_MS,
        ..Default::default()
    })
    .await;
    let lines = chats("l", "gpt-4o-mini", 2);
    let file = api.upload(&lines).await;
    let create = json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"});
    let (_, b1) = api.post("/v1/batches", create.clone()).await;
    let (_, b2) = api.post("/v1/batches", create.clone()).await;
    let (b1, b2) = (b1["id"].as_str().unwrap(), b2["id"].as_str().unwrap());

    let (_, files) = api.get("/v1/files").await;
    assert!(ids(&files).is_empty(), "{files}");
    let (_, batches) = api.get("/v1/batches").await;
    assert_eq!(batches["data"], json!([]));
    assert_eq!(batches["has_more"], false);
    let (status, meta) = api.get(&format!("/v1/files/{file}")).await;
    assert_eq!((status, meta["id"].as_str()), (200, Some(file.as_str())));
    let (status, batch) = api.get(&format!("/v1/batches/{b1}")).await;
    assert_eq!((status, batch["id"].as_str()), (200, Some(b1)));

    tokio::time::sleep(Duration::from_millis(LAG_MS + 100)).await;
    // (Retrieving b1 finished it: its output file is listed too.)
    let (_, files) = api.get("/v1/files?purpose=batch").await;
    assert_eq!(ids(&files), [file.as_str()]);
    let (_, b3) = api.post("/v1/batches", create).await;
    let b3 = b3["id"].as_str().unwrap();

    // Pages speak of what is shown: the hidden newest batch takes no room.
    let (_, page) = api.get("/v1/batches?limit=2").await;
    assert_eq!(ids(&page), [b2, b1]);
    assert_eq!(page["has_more"], false);
    let (_, page) = api.get("/v1/batches?limit=1").await;
    assert_eq!(ids(&page), [b2]);
    assert_eq!(page["has_more"], true);
    let (_, page) = api.get(&format!("/v1/batches?limit=1&after={b2}")).await;
    assert_eq!(ids(&page), [b1]);
    assert_eq!(page["has_more"], false);
    // A cursor naming a batch still hidden places the page all the same.
    let (_, page) = api.get(&format!("/v1/batches?after={b3}")).await;
    assert_eq!(ids(&page), [b2, b1]);

    api.fake.set_faults(Faults::default());
    let (_, page) = api.get("/v1/batches").await;
    assert_eq!(ids(&page), [b3, b2, b1]);
}

#[tokio::test]
async fn a_cancelled_batch_stays_cancelling_for_the_polls_asked() {
    let api = Api::start(Faults {
        stay_in_progress_polls: 100,
        stay_cancelling_polls: 2,
        ..Default::default()
    })
    .await;
    let lines = chats("x", "gpt-4o-mini", 20);
    let id = api.submit("/v1/chat/completions", &lines).await;
    assert_eq!(api.status(&id).await, "in_progress");
    assert_eq!(api.fake.enqueued_tokens("gpt-4o-mini"), 2_000);
    let (status, batch) = api.post(&format!("/v1/batches/{id}/cancel"), json!({})).await;
    assert_eq!((status, batch["status"].as_str()), (200, Some("cancelling")));
    // Cancelling releases the batch's tokens.
    assert_eq!(api.fake.enqueued_tokens("gpt-4o-mini"), 0);
    assert_eq!(api.status(&id).await, "cancelling");
    assert_eq!(api.status(&id).await, "cancelling");
    let batch = api.retrieve(&id).await;
    assert_eq!(batch["status"], "cancelled");
    assert!(batch["cancelled_at"].is_i64());
    let done = batch["request_counts"]["completed"].as_u64().unwrap();
    assert_eq!(done + batch["request_counts"]["failed"].as_u64().unwrap(), 20);
    let errors = api.lines_of(&batch["error_file_id"]).await;
    assert!(!errors.is_empty());
    assert!(errors.iter().all(|e| e["error"]["code"] == "batch_cancelled"));
}

#[tokio::test]
async fn complete_ends_a_batch_now_whatever_holds_it() {
    let api = Api::start(Faults {
        stay_validating_polls: 100,
        ..Default::default()
    })
    .await;
    let lines = chats("v", "gpt-4o-mini", 6);
    let validating = api.submit("/v1/chat/completions", &lines).await;
    assert_eq!(api.status(&validating).await, "validating");
    assert!(api.fake.complete(&validating));
    let batch = api.retrieve(&validating).await;
    assert_eq!(batch["status"], "completed");
    assert_eq!(api.lines_of(&batch["output_file_id"]).await.len(), 6);
    assert!(!api.fake.complete(&validating), "already finished");
    assert!(!api.fake.complete("batch_unknown"));

    api.fake.set_faults(Faults {
        stay_in_progress_polls: 100,
        stay_cancelling_polls: 100,
        ..Default::default()
    });
    let running = api.submit("/v1/chat/completions", &lines).await;
    assert_eq!(api.status(&running).await, "in_progress");
    let (status, batch) = api.post(&format!("/_fake/batches/{running}/complete"), json!({})).await;
    assert_eq!((status, batch["status"].as_str()), (200, Some("completed")));
    assert!(batch["finalizing_at"].is_i64());
    assert_eq!(
        batch["request_counts"],
        json!({"total": 6, "completed": 6, "failed": 0})
    );
    assert_eq!(api.status(&running).await, "completed");
    let (status, _) = api.post(&format!("/_fake/batches/{running}/complete"), json!({})).await;
    assert_eq!(status, 400);

    let cancelling = api.submit("/v1/chat/completions", &chats("c", "gpt-4o-mini", 20)).await;
    assert_eq!(api.status(&cancelling).await, "in_progress");
    api.post(&format!("/v1/batches/{cancelling}/cancel"), json!({})).await;
    assert_eq!(api.status(&cancelling).await, "cancelling");
    assert!(api.fake.complete(&cancelling));
    let batch = api.retrieve(&cancelling).await;
    assert_eq!(batch["status"], "cancelled");
    assert!(!api.lines_of(&batch["error_file_id"]).await.is_empty());

    // Completing validates first, and validation may refuse it.
    api.fake.set_faults(Faults {
        stay_validating_polls: 100,
        enqueued_token_limits: limits(&[("gpt-4o-mini", 100)]),
        ..Default::default()
    });
    let over = api.submit("/v1/chat/completions", &lines).await;
    assert!(api.fake.complete(&over));
    let batch = api.retrieve(&over).await;
    assert_eq!(batch["status"], "failed");
    assert_eq!(batch["errors"]["data"][0]["code"], "token_limit_exceeded");
}

/// An embeddings batch of two requests: `array` inputs, then one string.
fn embeddings(array: usize) -> Vec<Value> {
    vec![
        json!({"custom_id": "many", "method": "POST", "url": "/v1/embeddings",
               "body": {"model": "text-embedding-3-small", "input": vec!["a"; array]}}),
        json!({"custom_id": "one", "method": "POST", "url": "/v1/embeddings",
               "body": {"model": "text-embedding-3-small", "input": "b"}}),
    ]
}

#[tokio::test]
async fn an_embeddings_batch_carries_at_most_50000_inputs() {
    let api = Api::start(Faults::default()).await;
    let over = api.submit("/v1/embeddings", &embeddings(50_000)).await;
    let batch = api.retrieve(&over).await;
    assert_eq!(batch["status"], "failed");
    let errors = batch["errors"]["data"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["code"], "too_many_inputs");
    assert_eq!(errors[0]["line"], Value::Null);
    assert!(errors[0]["message"].as_str().unwrap().contains("50001"));

    let fits = api.submit("/v1/embeddings", &embeddings(49_999)).await;
    let batch = api.retrieve(&fits).await;
    assert_eq!(batch["status"], "completed");
    let output = api.lines_of(&batch["output_file_id"]).await;
    let answered: usize = output
        .iter()
        .map(|l| l["response"]["body"]["data"].as_array().unwrap().len())
        .sum();
    assert_eq!(answered, 50_000);
}
