//! The HTTP surface: the OpenAI and Azure routers, and the guard every API
//! route passes (auth, api-version, injected faults, the request log).

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::api_error::api_error;
use crate::batches::{cancel_batch, create_batch, list_batches, retrieve_batch};
use crate::files::{delete_file, file_content, get_file, list_files, upload};
use crate::state::{Flavor, Inner, LogEntry, Shared};

pub(crate) fn route_name(method: &Method, path: &str) -> &'static str {
    // OpenAI `/v1`, Azure `/openai`, Groq `/openai/v1`, Together `/together/v1`.
    let p = path
        .trim_start_matches("/together")
        .trim_start_matches("/openai")
        .trim_start_matches("/v1");
    match (method.as_str(), p) {
        ("POST", "/files" | "/files/upload") => "upload",
        ("GET", "/files") => "list_files",
        ("GET", "/files/{id}") => "file",
        ("DELETE", "/files/{id}") => "delete",
        ("GET", "/files/{id}/content") => "content",
        ("POST", "/batches") => "create",
        ("GET", "/batches") => "list",
        ("GET", "/batches/{id}") => "retrieve",
        ("POST", "/batches/{id}/cancel") => "cancel",
        _ => "other",
    }
}

/// Logs a call on arrival (status 0 until answered, so a request whose
/// answer is held back is visible while it hangs); its slot in the log.
pub(crate) fn log_arrival(inner: &mut Inner, method: &Method, path: String, query: String, route: &str) -> usize {
    let seq = inner.log.len() as u64 + 1;
    inner.log.push(LogEntry {
        seq,
        method: method.to_string(),
        path,
        query,
        route: route.into(),
        status: 0,
    });
    seq as usize - 1
}

/// A fault the configuration injects into a call, before its route runs;
/// each API renders it in its own error shape.
pub(crate) enum Injected {
    /// 429, asking to wait `retry_after_ms`.
    RateLimited { retry_after_ms: u64 },
    /// 400: a refusal that retrying does not fix.
    Refused,
    /// 529: overloaded.
    Overloaded,
    /// 500.
    ServerError,
}

/// Counts the call to `route` and takes the fault it meets, if any (the
/// `http_*` counters count down; the `*_every` rates fire on every k-th call).
pub(crate) fn injected_fault(inner: &mut Inner, route: &str) -> Option<Injected> {
    let calls = {
        let c = inner.route_calls.entry(route.to_owned()).or_insert(0);
        *c += 1;
        *c
    };
    let f = &mut inner.config.faults;
    let every = |m: &HashMap<String, u32>| m.get(route).is_some_and(|k| *k > 0 && calls.is_multiple_of(*k));
    let rate_429 = every(&f.http_429_every);
    let rate_500 = every(&f.http_500_every);
    let next = |m: &mut HashMap<String, u32>| m.get_mut(route).filter(|n| **n > 0).map(|n| *n -= 1).is_some();
    if next(&mut f.http_429) || rate_429 {
        Some(Injected::RateLimited {
            retry_after_ms: f.retry_after_ms,
        })
    } else if next(&mut f.http_400) {
        Some(Injected::Refused)
    } else if next(&mut f.http_529) {
        Some(Injected::Overloaded)
    } else if next(&mut f.http_500) || rate_500 {
        Some(Injected::ServerError)
    } else {
        None
    }
}

/// Auth, api-version, injected faults and the request log, for every API route.
pub(crate) async fn guard(State((shared, flavor)): State<(Arc<Shared>, Flavor)>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let uri = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.0.clone())
        .unwrap_or_else(|| req.uri().clone());
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or("").to_owned();
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| path.clone());
    let route = route_name(&method, &matched);
    let headers = req.headers().clone();

    // Logged on arrival (status 0 until answered), so a request whose answer
    // is held back is visible while it hangs.
    let (key, faults, slot) = {
        let mut inner = shared.inner.lock().expect("lock");
        let slot = log_arrival(&mut inner, &method, path, query.clone(), route);
        (inner.config.api_key.clone(), inner.config.faults.clone(), slot)
    };
    let early = {
        let authed = match flavor {
            Flavor::OpenAi => headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == format!("Bearer {key}")),
            Flavor::Azure => headers.get("api-key").and_then(|v| v.to_str().ok()) == Some(key.as_str()),
        };
        if !authed {
            Some(api_error(
                StatusCode::UNAUTHORIZED,
                "Incorrect API key provided. You can find your API key in your account settings.",
                Some("invalid_api_key"),
                None,
            ))
        } else if flavor == Flavor::Azure && !query.split('&').any(|kv| kv.starts_with("api-version=")) {
            Some(api_error(
                StatusCode::BAD_REQUEST,
                "Missing required query parameter: api-version",
                Some("missing_api_version"),
                Some("api-version"),
            ))
        } else {
            None
        }
    };
    if let Some(d) = faults.delay_ms.get(route) {
        tokio::time::sleep(Duration::from_millis(*d)).await;
    }
    let injected = if early.is_some() {
        early
    } else {
        let mut inner = shared.inner.lock().expect("lock");
        injected_fault(&mut inner, route).map(|fault| match fault {
            Injected::RateLimited { retry_after_ms: ms } => {
                let mut r = api_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Rate limit reached for requests. Please try again later.",
                    Some("rate_limit_exceeded"),
                    None,
                );
                r.headers_mut()
                    .insert("retry-after-ms", ms.to_string().parse().expect("header"));
                r.headers_mut()
                    .insert("retry-after", ms.div_ceil(1000).to_string().parse().expect("header"));
                r
            }
            Injected::Refused => api_error(
                StatusCode::BAD_REQUEST,
                "Invalid request: the server refused this call.",
                Some("invalid_request_error"),
                None,
            ),
            Injected::Overloaded => api_error(
                StatusCode::from_u16(529).expect("529"),
                "The server is overloaded.",
                None,
                None,
            ),
            Injected::ServerError => api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The server had an error while processing your request. Sorry about that!",
                None,
                None,
            ),
        })
    };
    let resp = match injected {
        Some(r) => {
            drain(req).await;
            r
        }
        None => next.run(req).await,
    };
    shared.inner.lock().expect("lock").log[slot].status = resp.status().as_u16();
    resp
}

/// Reads a request's body to its end before an injected or early error is
/// answered, as the real API does (it answers once the upload is in).
/// Answering first and closing the connection with the rest of an upload
/// unread can reset the connection before the client reads the answer:
/// the client then sees a broken connection, retries, and the fault a
/// test injected is spent on an attempt nobody saw.
pub(crate) async fn drain(req: Request) {
    use futures::StreamExt;
    let mut body = req.into_body().into_data_stream();
    while let Some(Ok(_)) = body.next().await {}
}

pub(crate) fn api_router(shared: Arc<Shared>, flavor: Flavor) -> Router {
    Router::new()
        .route("/files", post(upload).get(list_files))
        .route("/files/{id}", get(get_file).delete(delete_file))
        .route("/files/{id}/content", get(file_content))
        .route("/batches", post(create_batch).get(list_batches))
        .route("/batches/{id}", get(retrieve_batch))
        .route("/batches/{id}/cancel", post(cancel_batch))
        .route_layer(middleware::from_fn_with_state((shared.clone(), flavor), guard))
        .with_state(shared)
}
