//! batchq-enqueue: the HTTP API as an AWS Lambda behind an API Gateway HTTP
//! API (payload format 2.0).
//!
//! This crate only translates: an API Gateway event becomes a
//! [`batchq_core::api::ApiRequest`], the core answers, and its
//! [`batchq_core::api::ApiResponse`] becomes the Lambda response. Every rule
//! about requests lives in `batchq_core::api`, which the local server reuses.

use batchq_core::api::{Api, ApiRequest, ApiResponse, Method};
use batchq_core::ids::TenantId;
use bytes::Bytes;
use lambda_http::http::header::CONTENT_TYPE;
use lambda_http::{Body, Request, RequestExt, Response};

pub use lambda_http::Error;

/// Handles one API Gateway HTTP API event. Never returns `Err` for anything
/// a caller sent: bad input is a 4xx response, storage trouble a 5xx one.
pub async fn handle(api: &Api, event: Request) -> Result<Response<Body>, Error> {
    let tenant = tenant_of(&event);
    let req = to_api_request(event);
    let resp = api.handle(&tenant, req).await;
    Ok(to_lambda_response(resp))
}

/// The tenant a request acts for. Authentication is not built yet, so every
/// caller is the default tenant; an authorizer's identity will be read here.
pub fn tenant_of(_event: &Request) -> TenantId {
    TenantId::default_tenant()
}

/// An API Gateway event as the core's request. The path is the raw path as
/// the caller sent it (still percent-encoded; the HTTP API's `$default`
/// stage adds no prefix); a base64-encoded body arrives decoded.
pub fn to_api_request(event: Request) -> ApiRequest {
    let (parts, body) = event.into_parts();
    let raw_path = parts.extensions.raw_http_path();
    let path = if raw_path.is_empty() {
        parts.uri.path().to_owned()
    } else {
        raw_path.to_owned()
    };
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = match body {
        Body::Text(s) => Bytes::from(s),
        Body::Binary(b) => Bytes::from(b),
        _ => Bytes::new(),
    };
    ApiRequest {
        method: Method::parse(parts.method.as_str()),
        path,
        query: parts.uri.query().unwrap_or_default().to_owned(),
        content_type,
        body,
    }
}

/// The core's response as a Lambda HTTP response (JSON text body).
pub fn to_lambda_response(resp: ApiResponse) -> Response<Body> {
    let mut builder = Response::builder()
        .status(resp.status)
        .header(CONTENT_TYPE, ApiResponse::CONTENT_TYPE);
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
