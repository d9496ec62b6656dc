//! The error body every API route answers with, as OpenAI shapes it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

pub(crate) fn api_error(
    status: StatusCode,
    message: impl Into<String>,
    code: Option<&str>,
    param: Option<&str>,
) -> Response {
    (
        status,
        Json(json!({"error": {"message": message.into(), "type": "invalid_request_error", "param": param, "code": code}})),
    )
        .into_response()
}
