//! The events OpenAI sends a project's webhook endpoint: when started with a
//! webhook URL and a `whsec_` secret, the fake POSTs `batch.completed`,
//! `batch.failed`, `batch.expired` or `batch.cancelled` once each batch
//! reaches that status:
//!
//! ```json
//! {"object":"event","id":"evt_…","type":"batch.completed","created_at":…,"data":{"id":"batch_…"}}
//! ```
//!
//! signed the Standard Webhooks way (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`),
//! with OpenAI's `user-agent`. An answer that is not 2xx (a redirect
//! included), or none within the attempt timeout, is retried with
//! exponential backoff (the first wait, doubling up to an hour) for up to
//! 72 hours, as OpenAI documents; each attempt is signed afresh with the
//! same `webhook-id`.
//!
//! Batches move on their own clock while webhooks are on (a ticker advances
//! every unfinished batch as far as `step_ms` allows; the `stay_*_polls`
//! faults still count retrieves), so a batch ends without anyone polling it,
//! as a real one does.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::WebhookConfig;
use crate::lifecycle::{advance_by, Cause};
use crate::state::{now_s, Shared, WebhookAttempt};

/// How often the ticker looks at the batches.
const TICK: Duration = Duration::from_millis(50);
/// The longest wait between two attempts.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(3600);
/// Attempts stop this long after the first one.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(72 * 3600);
const USER_AGENT: &str = "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)";
/// The statuses that send an event (`batch.<status>`).
const ENDED: [&str; 4] = ["completed", "failed", "expired", "cancelled"];

/// HMAC-SHA256 (RFC 2104) over SHA-256.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// The `webhook-signature` header of a message.
pub fn signature(key: &[u8], webhook_id: &str, timestamp: i64, body: &str) -> String {
    let signed = format!("{webhook_id}.{timestamp}.{body}");
    format!("v1,{}", STANDARD.encode(hmac_sha256(key, signed.as_bytes())))
}

fn hex_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Starts the ticker that advances batches and sends an event for each one
/// that ended. It stops when the fake is gone.
pub(crate) fn start(shared: &Arc<Shared>, config: WebhookConfig, key: Vec<u8>) {
    let weak = Arc::downgrade(shared);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_millis(config.timeout_ms.max(1)))
        .build()
        .expect("a client with a timeout builds");
    let key = Arc::new(key);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(TICK).await;
            let Some(shared) = weak.upgrade() else { return };
            for (batch_id, status) in ended_now(&shared) {
                let event = json!({
                    "object": "event",
                    "id": format!("evt_{}", hex_id()),
                    "type": format!("batch.{status}"),
                    "created_at": now_s(),
                    "data": {"id": batch_id},
                });
                tokio::spawn(deliver(
                    Arc::downgrade(&shared),
                    http.clone(),
                    config.clone(),
                    key.clone(),
                    event,
                ));
            }
        }
    });
}

/// Moves every unfinished batch by the clock and returns those that ended
/// since the last look, marking them told.
fn ended_now(shared: &Shared) -> Vec<(String, String)> {
    let mut inner = shared.inner.lock().expect("lock");
    let ids: Vec<String> = inner
        .by_id
        .iter()
        .filter(|(_, r)| !r.notified && !r.vanished)
        .map(|(id, _)| id.clone())
        .collect();
    let mut out = Vec::new();
    for id in ids {
        advance_by(&mut inner, &id, Cause::Clock);
        let Some(rec) = inner.by_id.get_mut(&id) else { continue };
        let status = rec.obj["status"].as_str().unwrap_or("").to_owned();
        if ENDED.contains(&status.as_str()) {
            rec.notified = true;
            out.push((id, status));
        }
    }
    out
}

/// Sends one event until a 2xx answer, retrying with backoff.
async fn deliver(shared: Weak<Shared>, http: reqwest::Client, config: WebhookConfig, key: Arc<Vec<u8>>, event: Value) {
    let webhook_id = format!("wh_{}", hex_id());
    let body = event.to_string();
    let first = Instant::now();
    let mut wait = Duration::from_millis(config.first_retry_ms);
    for attempt in 1u32.. {
        let timestamp = now_s();
        let answer = http
            .post(&config.url)
            .header("content-type", "application/json")
            .header("user-agent", USER_AGENT)
            .header("webhook-id", &webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature(&key, &webhook_id, timestamp, &body))
            .body(body.clone())
            .send()
            .await;
        let status = answer.as_ref().ok().map(|r| r.status().as_u16());
        let Some(shared) = shared.upgrade() else { return };
        shared.webhook_log.lock().expect("lock").push(WebhookAttempt {
            webhook_id: webhook_id.clone(),
            event_id: event["id"].as_str().unwrap_or("").to_owned(),
            event_type: event["type"].as_str().unwrap_or("").to_owned(),
            batch_id: event["data"]["id"].as_str().unwrap_or("").to_owned(),
            attempt,
            status,
        });
        drop(shared);
        match status {
            Some(s) if (200..300).contains(&s) => return,
            _ => tracing::warn!(webhook_id, attempt, ?status, "webhook attempt failed; retrying"),
        }
        if first.elapsed() + wait > GIVE_UP_AFTER {
            tracing::warn!(webhook_id, attempts = attempt, "webhook given up after 72 hours");
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_RETRY_WAIT);
    }
}

/// `GET /_fake/webhooks`: every attempt so far.
pub(crate) fn attempts(shared: &Mutex<Vec<WebhookAttempt>>) -> Vec<WebhookAttempt> {
    shared.lock().expect("lock").clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn signatures_match_the_standard_webhooks_example() {
        let cfg = WebhookConfig::new("http://x", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(
            signature(
                &cfg.key().unwrap(),
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                r#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_secret_without_its_prefix_or_not_base64_is_refused() {
        assert!(WebhookConfig::new("http://x", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .key()
            .is_err());
        assert!(WebhookConfig::new("http://x", "whsec_!!").key().is_err());
        assert!(WebhookConfig::new("http://x", "whsec_").key().is_err());
    }
}
