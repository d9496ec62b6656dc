//! The Lambda events the bench hands the functions: API Gateway, schedule, S3.

use batchq_core::app::App;
use batchq_core::config::Config;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub(crate) fn fixture_event() -> Value {
    json!({
        "version": "2.0",
        "routeKey": "POST /v1/requests",
        "rawPath": "/v1/requests",
        "rawQueryString": "",
        "headers": {"accept": "application/json", "content-type": "application/json",
                    "host": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com", "user-agent": "batchq-bench"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "a1b2c3d4e5",
            // The identity API Gateway's IAM authorizer adds for a SigV4 caller.
            "authorizer": {"iam": {
                "accessKey": "ASIAXAMPLEKEY1234567", "accountId": "123456789012",
                "callerId": "AROAEXAMPLEID1234567:bench", "cognitoIdentity": null, "principalOrgId": null,
                "userArn": "arn:aws:sts::123456789012:assumed-role/batch-worker/bench",
                "userId": "AROAEXAMPLEID1234567:bench"}},
            "domainName": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com", "domainPrefix": "a1b2c3d4e5",
            "http": {"method": "POST", "path": "/v1/requests", "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.7", "userAgent": "batchq-bench"},
            "requestId": "bench", "routeKey": "POST /v1/requests", "stage": "$default",
            "time": "25/Nov/2026:12:00:00 +0000", "timeEpoch": 1795608000000u64
        },
        "body": "",
        "isBase64Encoded": false
    })
}

/// An API Gateway HTTP API (payload 2.0) event for POST `path`.
pub(crate) fn api_event(path: &str, content_type: &str, body: &str) -> Vec<u8> {
    let mut e = fixture_event();
    e["routeKey"] = json!(format!("POST {path}"));
    e["rawPath"] = json!(path);
    e["headers"]["content-type"] = json!(content_type);
    e["headers"]["content-length"] = json!(body.len().to_string());
    e["requestContext"]["http"]["path"] = json!(path);
    e["requestContext"]["routeKey"] = json!(format!("POST {path}"));
    e["body"] = json!(body);
    serde_json::to_vec(&e).expect("event serializes")
}

/// A `GET` of the HTTP API, `query` without its `?`.
pub(crate) fn api_get_event(path: &str, query: &str) -> Vec<u8> {
    let mut e = fixture_event();
    e["routeKey"] = json!(format!("GET {path}"));
    e["rawPath"] = json!(path);
    e["rawQueryString"] = json!(query);
    if let Some(h) = e["headers"].as_object_mut() {
        h.remove("content-type");
        h.remove("content-length");
    }
    e["requestContext"]["http"]["path"] = json!(path);
    e["requestContext"]["http"]["method"] = json!("GET");
    e["requestContext"]["routeKey"] = json!(format!("GET {path}"));
    if let Some(o) = e.as_object_mut() {
        o.remove("body");
        o.insert("isBase64Encoded".into(), json!(false));
    }
    serde_json::to_vec(&e).expect("event serializes")
}

pub(crate) fn scheduled_event() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": "2026-11-25T12:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/batchq-schedule"], "detail": {}
    }))
    .expect("event serializes")
}

pub(crate) fn s3_event(bucket: &str, key: &str, size: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-25T12:00:00.000Z", "eventName": "ObjectCreated:CompleteMultipartUpload",
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"}, "requestParameters": {"sourceIPAddress": "203.0.113.10"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "bench"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "batchq-results",
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": key, "size": size, "eTag": "0123456789abcdef0123456789abcdef", "sequencer": "0055AED6DCD90281E5"}}
    }]}))
    .expect("event serializes")
}

/// Fresh tables and bucket on the emulator, and the in-process adapters.
pub(crate) async fn fresh_app(endpoint: &str, tag: &str) -> Result<App, String> {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let vars: BTreeMap<&str, String> = [
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("BATCHQ_REQUESTS_TABLE", format!("bench-{tag}-requests-{suffix}")),
        ("BATCHQ_JOBS_TABLE", format!("bench-{tag}-jobs-{suffix}")),
        ("BATCHQ_WEBHOOKS_TABLE", format!("bench-{tag}-webhooks-{suffix}")),
        ("BATCHQ_BUCKET", format!("bench-{tag}-{suffix}")),
    ]
    .into_iter()
    .collect();
    let config = Config::from_lookup(&|name| vars.get(name).cloned()).map_err(|e| e.to_string())?;
    let app = App::from_config(config).await;
    let aws = app.aws().ok_or("App::from_config built no AWS stores")?;
    aws.store.create_tables().await.map_err(|e| e.to_string())?;
    if let Some(w) = &aws.webhooks {
        w.create_table().await.map_err(|e| e.to_string())?;
    }
    aws.objects
        .client()
        .create_bucket()
        .bucket(&app.config.bucket)
        .send()
        .await
        .map_err(|e| format!("create bucket: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
    Ok(app)
}

pub(crate) fn status_of(resp: &[u8]) -> (u16, Value) {
    let v: Value = serde_json::from_slice(resp).unwrap_or(Value::Null);
    let status = v["statusCode"].as_u64().unwrap_or(0) as u16;
    let body = v["body"]
        .as_str()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

pub(crate) fn as_json(resp: &[u8]) -> Value {
    serde_json::from_slice(resp).unwrap_or(Value::Null)
}
