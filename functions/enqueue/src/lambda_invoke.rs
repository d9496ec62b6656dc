//! The provider-webhook route's [`BatchPoll`] in AWS: hands the batch to the
//! poll function by an asynchronous Lambda invocation (`InvocationType:
//! Event`, payload [`PollBatch::to_payload`]) and answers at once, so the API
//! function neither waits for a copy of a large result file (API Gateway
//! gives it 29 s, OpenAI retries a slow answer) nor holds the poller's
//! powers (provider key, job writes, result files): its role may only
//! invoke the poll function.
//!
//! One SigV4-signed `POST /2015-03-31/functions/{name}/invocations` with
//! reqwest and `aws-sigv4` (both already in the binary), not the Lambda SDK
//! client. Lambda answers 202 once it has queued the event; the poll
//! function's async settings (retries, DLQ) take it from there.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use batchq_core::events::PollBatch;
use batchq_core::ids::ProviderBatchId;
use batchq_core::job::ProviderKind;
use batchq_core::pipeline::{BatchPoll, BatchPollError, PollAsked};

/// The invocation type header and its value for an asynchronous invoke.
pub const INVOCATION_TYPE: (&str, &str) = ("x-amz-invocation-type", "Event");

/// How long one Invoke call may take: the API answers OpenAI within seconds.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Invokes the poll function asynchronously for one batch.
#[derive(Clone)]
pub struct InvokePoll {
    http: reqwest::Client,
    url: String,
    region: String,
    credentials: SharedCredentialsProvider,
}

impl std::fmt::Debug for InvokePoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvokePoll")
            .field("url", &self.url)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Lambda's Invoke path for a function name or ARN (its colons escaped,
/// as the SDK does).
pub fn invoke_path(function: &str) -> String {
    let name: String = function
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect();
    format!("/2015-03-31/functions/{name}/invocations")
}

impl InvokePoll {
    /// `function`: the poll function's name or ARN; `endpoint`: Lambda's
    /// endpoint (`None`: `https://lambda.{region}.amazonaws.com`).
    pub fn new(function: &str, region: &str, endpoint: Option<&str>, credentials: SharedCredentialsProvider) -> Self {
        let base = match endpoint {
            Some(e) => e.trim_end_matches('/').to_owned(),
            None => format!("https://lambda.{region}.amazonaws.com"),
        };
        // ring installed as the TLS provider first: the functions' reqwest has none of its own.
        let http = batchq_core::tls::http_client_builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("a client with timeouts builds");
        Self {
            http,
            url: format!("{base}{}", invoke_path(function)),
            region: region.to_owned(),
            credentials,
        }
    }

    /// The Invoke URL this adapter posts to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The signed headers of one Invoke call carrying `body`.
    async fn signed_headers(&self, body: &[u8]) -> Result<Vec<(String, String)>, BatchPollError> {
        let handoff = |what: &str, e: &dyn std::fmt::Display| BatchPollError::Handoff(format!("{what}: {e}"));
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| handoff("no AWS credentials", &e))?;
        let identity: Identity = credentials.into();
        let headers = [("content-type", "application/json"), INVOCATION_TYPE];
        let signable = SignableRequest::new("POST", &self.url, headers.iter().copied(), SignableBody::Bytes(body))
            .map_err(|e| handoff("signing the Invoke call", &e))?;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("lambda")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| handoff("signing the Invoke call", &e))?
            .into();
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| handoff("signing the Invoke call", &e))?
            .into_parts();
        let mut out: Vec<(String, String)> = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        out.extend(instructions.headers().map(|(n, v)| (n.to_owned(), v.to_owned())));
        Ok(out)
    }
}

#[async_trait]
impl BatchPoll for InvokePoll {
    async fn poll_batch_now(&self, kind: ProviderKind, batch: &ProviderBatchId) -> Result<PollAsked, BatchPollError> {
        let payload = PollBatch {
            kind,
            batch: batch.clone(),
        }
        .to_payload();
        let body = serde_json::to_vec(&payload).expect("a JSON value serializes");
        let mut req = self.http.post(&self.url);
        for (name, value) in self.signed_headers(&body).await? {
            req = req.header(name, value);
        }
        let resp =
            req.body(body).send().await.map_err(|e| {
                BatchPollError::Handoff(format!("Invoke {}: {}", self.url, batchq_core::error::chain(&e)))
            })?;
        let status = resp.status().as_u16();
        if status == 202 {
            return Ok(PollAsked::Queued);
        }
        let text = resp.text().await.unwrap_or_default();
        Err(BatchPollError::Handoff(format!(
            "Invoke {} answered HTTP {status}: {}",
            self.url,
            text.chars().take(300).collect::<String>()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_arn_is_escaped_in_the_invoke_path() {
        assert_eq!(
            invoke_path("stack-poll"),
            "/2015-03-31/functions/stack-poll/invocations"
        );
        assert_eq!(
            invoke_path("arn:aws:lambda:us-east-1:123456789012:function:stack-poll"),
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Astack-poll/invocations"
        );
    }
}
