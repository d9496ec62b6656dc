//! Groq's variant, under `/openai/v1/...`: OpenAI's routes and shapes
//! (Bearer key, purpose `batch`, metadata), with Groq's differences: a
//! `completion_window` from `24h` to `7d` (anything else is refused with a
//! 400 on `completion_window`), and chat completions as the only batch
//! endpoint. A batch's `expires_at` follows its window.

use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use std::sync::Arc;

use crate::api_error::api_error;
use crate::batches::{cancel_batch, create_batch, list_batches, retrieve_batch};
use crate::files::{delete_file, file_content, get_file, list_files, upload};
use crate::routes::guard;
use crate::state::{Flavor, Shared};

/// Hours of a Groq window (`<n>h` or `<n>d`), if it is one.
fn window_hours(w: &str) -> Option<u64> {
    let (n, unit) = w.split_at(w.len().checked_sub(1)?);
    let n: u64 = n.parse().ok()?;
    match unit {
        "h" => Some(n),
        "d" => n.checked_mul(24),
        _ => None,
    }
}

async fn groq_create(State(shared): State<Arc<Shared>>, body: Option<Json<Value>>) -> Response {
    let Some(Json(mut raw)) = body else {
        return api_error(StatusCode::BAD_REQUEST, "The body must be a JSON object.", None, None);
    };
    let window = raw
        .get("completion_window")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let Some(hours) = window_hours(&window).filter(|h| (24..=168).contains(h)) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!("completion_window must be a duration between 24h and 7d, got '{window}'"),
            Some("invalid_completion_window"),
            Some("completion_window"),
        );
    };
    if raw.get("endpoint").and_then(Value::as_str) != Some("/v1/chat/completions") {
        return api_error(
            StatusCode::BAD_REQUEST,
            "endpoint must be '/v1/chat/completions'",
            None,
            Some("endpoint"),
        );
    }
    // OpenAI's create takes 24h only: create with it, then give the batch
    // its own window.
    raw["completion_window"] = "24h".into();
    let resp = create_batch(State(shared.clone()), Some(Json(raw))).await;
    if !resp.status().is_success() {
        return resp;
    }
    let Ok(bytes) = axum::body::to_bytes(resp.into_body(), usize::MAX).await else {
        return api_error(StatusCode::INTERNAL_SERVER_ERROR, "create lost its answer", None, None);
    };
    let Ok(mut obj) = serde_json::from_slice::<Value>(&bytes) else {
        return api_error(StatusCode::INTERNAL_SERVER_ERROR, "create answered no JSON", None, None);
    };
    let id = obj["id"].as_str().unwrap_or("").to_owned();
    let mut inner = shared.inner.lock().expect("lock");
    if let Some(rec) = inner.by_id.get_mut(&id) {
        let created = rec.obj["created_at"].as_i64().unwrap_or(0);
        rec.obj["completion_window"] = window.clone().into();
        rec.obj["expires_at"] = (created + hours as i64 * 3600).into();
        obj["completion_window"] = rec.obj["completion_window"].clone();
        obj["expires_at"] = rec.obj["expires_at"].clone();
    }
    Json(obj).into_response()
}

/// The Groq routes, nested under `/openai/v1`.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/files", post(upload).get(list_files))
        .route("/files/{id}", get(get_file).delete(delete_file))
        .route("/files/{id}/content", get(file_content))
        .route("/batches", post(groq_create).get(list_batches))
        .route("/batches/{id}", get(retrieve_batch))
        .route("/batches/{id}/cancel", post(cancel_batch))
        .route_layer(middleware::from_fn_with_state((shared.clone(), Flavor::OpenAi), guard))
        .with_state(shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_read_in_hours_or_days() {
        assert_eq!(window_hours("24h"), Some(24));
        assert_eq!(window_hours("7d"), Some(168));
        assert_eq!(window_hours("1w"), None);
        assert_eq!(window_hours(""), None);
    }
}
