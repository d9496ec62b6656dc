//! batchq-enqueue: the HTTP API as an AWS Lambda behind an API Gateway HTTP
//! API (payload format 2.0).
//!
//! This crate only translates: an API Gateway event becomes a
//! [`batchq_core::api::ApiRequest`], the core answers, and its
//! [`batchq_core::api::ApiResponse`] becomes the Lambda response. Every rule
//! about requests lives in `batchq_core::api`, which the local server reuses.
//!
//! What the API reports for a metric (a budget warning) is printed after
//! the invocation as CloudWatch EMF lines on stdout.

pub mod lambda_invoke;

use batchq_core::api::provider_webhooks::{is_provider_webhook, WebhookHeaders};
use batchq_core::api::{Api, ApiError, ApiRequest, ApiResponse, Method};
use batchq_core::auth;
use batchq_core::ids::TenantId;
use batchq_core::metrics::{emf, Collected};
use bytes::Bytes;
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use lambda_http::http::header::CONTENT_TYPE;
use lambda_http::http::{Extensions, Uri};
use lambda_http::request::{LambdaRequest, RequestContext};
use lambda_http::{Body, LambdaEvent, Request, RequestExt, Response};
use serde_json::Value;
use std::sync::Arc;
use tracing::Instrument;

pub use lambda_http::Error;

/// What the handler keeps between invocations: the API core, the claim
/// naming the tenant when API Gateway's JWT authorizer is in front, and
/// the metrics the API reported during the invocation.
#[derive(Clone)]
pub struct Edge {
    pub api: Api,
    pub jwt_tenant_claim: String,
    /// CloudWatch namespace of the EMF lines (`BATCHQ_METRICS_NAMESPACE`).
    pub metrics_namespace: String,
    metrics: Arc<Collected>,
}

impl Edge {
    pub fn new(api: Api, jwt_tenant_claim: impl Into<String>) -> Self {
        let metrics = Arc::new(Collected::default());
        Self {
            api: api.with_metrics(metrics.clone()),
            jwt_tenant_claim: jwt_tenant_claim.into(),
            metrics_namespace: "batchq".into(),
            metrics,
        }
    }

    /// The same edge writing its EMF lines in `namespace`.
    pub fn with_metrics_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.metrics_namespace = namespace.into();
        self
    }

    /// The EMF lines of what the API reported since the last call.
    pub fn take_emf_lines(&self) -> Vec<String> {
        let samples = self.metrics.take();
        if samples.is_empty() {
            return Vec::new();
        }
        emf::lines(&self.metrics_namespace, &samples, self.api.ports.clock.now())
    }
}

/// Why the provider-webhook route could not be wired at start.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error(transparent)]
    Secret(#[from] batchq_core::provider::openai::WebhookSecretError),
    #[error("a webhook secret is configured but BATCHQ_POLL_FUNCTION is not: the enqueue function hands verified batch events to the poll function")]
    NoPollFunction,
    #[error("no AWS credentials provider to sign the poll function's invocations with")]
    NoCredentials,
}

/// Wires `POST /v1/provider-webhooks/openai` when a webhook secret is
/// configured: the secret (read from Secrets Manager now, once per cold
/// start, when it is an ARN) and the poll function's asynchronous
/// invocation ([`lambda_invoke::InvokePoll`]) as the route's poll. No
/// secret: the API as it was (the route answers 404 `not_configured`).
pub async fn with_provider_webhooks(
    api: Api,
    config: &batchq_core::config::Config,
    sdk: &aws_config::SdkConfig,
) -> Result<Api, WiringError> {
    let Some(source) = &config.openai_webhook_secret else {
        return Ok(api);
    };
    let secret = batchq_core::provider::openai::resolve_webhook_secret(source, sdk).await?;
    let function = config.poll_function.as_deref().ok_or(WiringError::NoPollFunction)?;
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .or_else(|| config.aws_region.clone())
        .unwrap_or_else(|| "us-east-1".into());
    let credentials = sdk.credentials_provider().ok_or(WiringError::NoCredentials)?;
    let poll = lambda_invoke::InvokePoll::new(function, &region, config.lambda_endpoint_url.as_deref(), credentials);
    Ok(api.with_provider_webhooks(secret, Arc::new(poll)))
}

/// Handles one API Gateway HTTP API event. Never returns `Err` for anything
/// a caller sent: bad input is a 4xx response, storage trouble a 5xx one.
/// An event without an identity API Gateway vouched for is answered 401 and
/// touches nothing.
pub async fn handle(edge: &Edge, event: Request) -> Result<Response<Body>, Error> {
    // The dashboard's files carry no data: answered without an identity (its
    // API Gateway routes have no authorizer; the data routes keep theirs).
    let public = ApiRequest::new(Method::parse(event.method().as_str()), api_path_of(&event));
    if let Some(resp) = edge.api.handle_public(&public) {
        return Ok(to_lambda_response(resp));
    }
    // Provider webhooks: the signature over the body is the authentication
    // (their API Gateway route has no authorizer).
    if is_provider_webhook(&public.path) {
        let resp = edge.api.handle_provider_webhook(&to_api_request(event)).await;
        return Ok(to_lambda_response(resp));
    }
    let resp = match tenant_of(&event, &edge.jwt_tenant_claim) {
        Ok(tenant) => edge.api.handle(&tenant, to_api_request(event)).await,
        Err(e) => {
            tracing::warn!(status = e.status(), code = e.code(), "api request refused: no tenant");
            ApiResponse::from(e)
        }
    };
    Ok(to_lambda_response(resp))
}

/// The Lambda entry point: one API Gateway HTTP API (payload 2.0) event as
/// JSON. lambda_http builds an `http::Request` from an event and panics when
/// its URI does not parse, which a raw space, quote, `<`, `>` or DEL in
/// `rawQueryString` makes happen (and with `panic = "abort"` that is a crashed
/// instance and a 5xx for the caller). Such bytes are percent-encoded first,
/// which is what a conforming client would have sent; the API's query parser
/// decodes them back and judges them like any other parameter.
pub async fn handle_event(edge: &Edge, event: LambdaEvent<Value>) -> Result<ApiGatewayV2httpResponse, Error> {
    let span = tracing::info_span!("lambda", function = "enqueue", aws_request_id = %event.context.request_id);
    let resp = handle_json(edge, event.payload).instrument(span).await;
    for line in edge.take_emf_lines() {
        println!("{line}");
    }
    resp
}

/// [`handle_event`] without the Lambda context (tests send events this way).
pub async fn handle_json(edge: &Edge, mut payload: Value) -> Result<ApiGatewayV2httpResponse, Error> {
    if let Some(q) = payload.get_mut("rawQueryString") {
        if let Some(raw) = q.as_str() {
            *q = Value::String(encode_query(raw));
        }
    }
    let request: Request = match serde_json::from_value::<LambdaRequest>(payload) {
        Ok(r) => r.into(),
        Err(e) => {
            // Not an HTTP API event at all: the integration is misconfigured.
            tracing::error!(error = %e, "the event is not an API Gateway HTTP API request");
            return Ok(to_v2_response(to_lambda_response(ApiResponse::from(
                ApiError::bad_request(
                    None,
                    "invalid_event",
                    "the event is not an API Gateway HTTP API (payload 2.0) request",
                ),
            ))));
        }
    };
    Ok(to_v2_response(handle(edge, request).await?))
}

/// An HTTP response as API Gateway's payload 2.0 answer (a text body).
fn to_v2_response(resp: Response<Body>) -> ApiGatewayV2httpResponse {
    let (parts, body) = resp.into_parts();
    let mut out = ApiGatewayV2httpResponse::default();
    out.status_code = i64::from(parts.status.as_u16());
    out.headers = parts.headers;
    out.body = Some(body);
    out
}

/// Percent-encodes every byte RFC 3986 does not allow in a query (keeping
/// `%`, so existing escapes stay as they are).
pub fn encode_query(raw: &str) -> String {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b);
    if raw.bytes().all(allowed) {
        return raw.to_owned();
    }
    let mut out = String::with_capacity(raw.len() + 8);
    for b in raw.bytes() {
        if allowed(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The tenant a request acts for, from API Gateway's authorizer context:
/// the IAM principal (SigV4, the default) or, behind the JWT authorizer, the
/// `jwt_tenant_claim` claim. Never from the request itself.
pub fn tenant_of(event: &Request, jwt_tenant_claim: &str) -> Result<TenantId, ApiError> {
    let authorizer = match event.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref(),
        _ => None,
    };
    match authorizer {
        Some(a) if a.jwt.is_some() => {
            let claims = a.jwt.as_ref().map(|j| &j.claims);
            auth::tenant_from_claim(
                claims.and_then(|c| c.get(jwt_tenant_claim)).map(String::as_str),
                jwt_tenant_claim,
            )
            .map_err(ApiError::from)
        }
        Some(a) if a.iam.is_some() => {
            let iam = a.iam.as_ref().expect("checked");
            auth::tenant_from_iam(iam.account_id.as_deref(), iam.user_arn.as_deref()).map_err(ApiError::from)
        }
        _ => Err(ApiError::Unauthorized {
            message: "the request carries no identity from API Gateway's authorizer; call the API with SigV4 (or the configured JWT)".into(),
        }),
    }
}

/// An API Gateway event as the core's request. The path is the raw path as
/// the caller sent it (still percent-encoded), without the stage: the HTTP
/// API's `$default` stage adds no prefix, a named stage (`/prod/v1/...`) is
/// stripped; a base64-encoded body arrives decoded.
pub fn to_api_request(event: Request) -> ApiRequest {
    let (parts, body) = event.into_parts();
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = match body {
        Body::Text(s) => Bytes::from(s),
        Body::Binary(b) => Bytes::from(b),
        _ => Bytes::new(),
    };
    let webhook_headers = WebhookHeaders::from_pairs(
        parts
            .headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))),
    );
    ApiRequest {
        method: Method::parse(parts.method.as_str()),
        path: api_path(&parts.uri, &parts.extensions),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        content_type,
        webhook_headers,
        body,
    }
}

fn api_path_of(event: &Request) -> String {
    api_path(event.uri(), event.extensions())
}

fn api_path(uri: &Uri, extensions: &Extensions) -> String {
    let raw = extensions.raw_http_path();
    let path = if raw.is_empty() { uri.path() } else { raw };
    let stage = match extensions.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.stage.as_deref(),
        _ => None,
    };
    match stage {
        Some(stage) if stage != "$default" => {
            let prefix = format!("/{stage}");
            match path.strip_prefix(&prefix) {
                Some("") => "/".to_owned(),
                Some(rest) if rest.starts_with('/') => rest.to_owned(),
                _ => path.to_owned(),
            }
        }
        _ => path.to_owned(),
    }
}

/// The core's response as a Lambda HTTP response (a JSON text body, or a
/// dashboard file with its own type).
pub fn to_lambda_response(resp: ApiResponse) -> Response<Body> {
    let mut builder = Response::builder()
        .status(resp.status)
        .header(CONTENT_TYPE, resp.content_type());
    for (name, value) in &resp.headers {
        builder = builder.header(*name, value.as_str());
    }
    builder.body(Body::Text(resp.body_string())).unwrap_or_else(|e| {
        tracing::error!(error = %e, status = resp.status, "could not build the HTTP response");
        let mut fallback = Response::new(Body::Text(
            r#"{"error":{"code":"internal","message":"internal error; it has been logged","field":null}}"#.to_owned(),
        ));
        *fallback.status_mut() = lambda_http::http::StatusCode::INTERNAL_SERVER_ERROR;
        fallback
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(stage: &str, raw_path: &str, query: &str, body: Option<(&str, bool)>) -> Request {
        let mut e = json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": raw_path,
            "rawQueryString": query,
            "headers": {"content-type": "application/x-ndjson", "host": "x.execute-api.us-east-1.amazonaws.com"},
            "requestContext": {
                "accountId": "123456789012", "apiId": "x", "domainName": "x.execute-api.us-east-1.amazonaws.com",
                "http": {"method": "POST", "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "t"},
                "requestId": "r", "routeKey": "$default", "stage": stage, "time": "25/Nov/2026:12:00:00 +0000", "timeEpoch": 0
            },
            "isBase64Encoded": false
        });
        if let Some((b, base64)) = body {
            e["body"] = b.into();
            e["isBase64Encoded"] = base64.into();
        }
        lambda_http::request::from_str(&e.to_string()).unwrap()
    }

    #[test]
    fn an_http_api_event_becomes_the_cores_request() {
        let r = to_api_request(event(
            "$default",
            "/v1/requests/a%3Ab",
            "limit=2&cursor=x%3D",
            Some(("{}", false)),
        ));
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.path, "/v1/requests/a%3Ab", "the raw path, still encoded");
        assert_eq!(r.query, "limit=2&cursor=x%3D");
        assert_eq!(r.content_type.as_deref(), Some("application/x-ndjson"));
        assert_eq!(&r.body[..], b"{}");
    }

    #[test]
    fn a_base64_body_arrives_decoded_and_no_body_is_empty() {
        // "{\"a\":1}\n\xff" in base64: bytes pass through untouched.
        let r = to_api_request(event("$default", "/v1/requests/bulk", "", Some(("eyJhIjoxfQr/", true))));
        assert_eq!(&r.body[..], b"{\"a\":1}\n\xff");
        let r = to_api_request(event("$default", "/v1/stats", "", None));
        assert!(r.body.is_empty());
        assert_eq!(r.query, "");
    }

    #[test]
    fn a_named_stage_prefix_is_stripped_from_the_path() {
        assert_eq!(
            to_api_request(event("prod", "/prod/v1/stats", "", None)).path,
            "/v1/stats"
        );
        assert_eq!(to_api_request(event("prod", "/prod", "", None)).path, "/");
        // A custom domain mapping sends the path without the stage.
        assert_eq!(to_api_request(event("prod", "/v1/stats", "", None)).path, "/v1/stats");
        assert_eq!(
            to_api_request(event("prod", "/production/x", "", None)).path,
            "/production/x"
        );
    }

    #[test]
    fn responses_carry_status_json_and_extra_headers() {
        let resp = to_lambda_response(
            ApiResponse::json(405, json!({"error": {"code": "method_not_allowed"}})).with_header("Allow", "GET"),
        );
        assert_eq!(resp.status().as_u16(), 405);
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(resp.headers()["allow"], "GET");
        match resp.body() {
            Body::Text(t) => assert_eq!(t, r#"{"error":{"code":"method_not_allowed"}}"#),
            other => panic!("{other:?}"),
        }
    }
}
