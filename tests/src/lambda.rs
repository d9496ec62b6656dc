//! A stand-in for Lambda's Invoke API on loopback (`AWS_ENDPOINT_URL_LAMBDA`
//! of the enqueue function): it records every call and answers 202 to a
//! signed asynchronous invocation of the one function it stands for, 400 to
//! anything else.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;

/// One Invoke call the stand-in received.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub path: String,
    pub invocation_type: Option<String>,
    pub authorization: Option<String>,
    pub amz_date: Option<String>,
    pub payload: Value,
    /// What the stand-in answered.
    pub status: u16,
}

/// Lambda's Invoke API for `function`, signed by `access_key_id`.
pub struct LambdaStandIn {
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<Invocation>>>,
}

impl LambdaStandIn {
    pub async fn start(function: &str, access_key_id: &str) -> Self {
        let calls: Arc<Mutex<Vec<Invocation>>> = Arc::default();
        let seen = calls.clone();
        let want_path = format!("/2015-03-31/functions/{function}/invocations");
        let want_credential = format!("AWS4-HMAC-SHA256 Credential={access_key_id}/");
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: axum::body::Bytes| {
            let (seen, want_path, want_credential) = (seen.clone(), want_path.clone(), want_credential.clone());
            async move {
                let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let mut call = Invocation {
                    path: uri.path().to_owned(),
                    invocation_type: header("x-amz-invocation-type"),
                    authorization: header("authorization"),
                    amz_date: header("x-amz-date"),
                    payload: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    status: 400,
                };
                let ok = call.path == want_path
                    && call.invocation_type.as_deref() == Some("Event")
                    && call.amz_date.is_some()
                    && call
                        .authorization
                        .as_deref()
                        .is_some_and(|a| a.starts_with(&want_credential) && a.contains("Signature="));
                let status = if ok {
                    StatusCode::ACCEPTED
                } else {
                    StatusCode::BAD_REQUEST
                };
                call.status = status.as_u16();
                seen.lock().unwrap().push(call);
                status
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, calls }
    }

    /// `http://127.0.0.1:PORT`, the value for `AWS_ENDPOINT_URL_LAMBDA`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Invocation> {
        self.calls.lock().unwrap().clone()
    }
}
