//! `batchq serve`: the enqueue function's HTTP API on a local port (same
//! routes, same code, same JSON), plus the local stand-ins for EventBridge
//! (submit and poll on intervals) and for the S3 notification (each result
//! file poll copies is ingested right away; one that fails is retried on the
//! next tick). Ctrl-C or SIGTERM stops accepting requests, lets a running step finish,
//! and exits; a step cut short would be finished by the next run anyway.
//!
//! Callers authenticate with `Authorization: Bearer KEY`, keys from
//! `BATCHQ_API_KEYS` (`tenant:key,...`), and act as that key's tenant.
//! Without keys every caller is the `default` tenant, so the server then
//! refuses to listen anywhere but on a loopback address.
//!
//! Webhooks to callers: with a webhook store (the embedded one), a task of
//! its own starts a delivery pass per endpoint every `BATCHQ_WEBHOOK_EVERY_MS`
//! (`batchq_core::pipeline::dispatch`): it never waits for, nor holds up,
//! submit, poll, ingest or the API; on stop it lets running passes finish.
//!
//! `GET /metrics` is the Prometheus text exposition of batchq's metrics
//! (`batchq_core::metrics`): operator-wide figures, not one tenant's. With
//! keys configured a scrape needs one of them (any tenant's); without, it is
//! open like the rest (loopback only).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{header, Request, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use batchq_core::api::provider_webhooks::{is_provider_webhook, WebhookHeaders};
use batchq_core::api::{Api, ApiError, ApiRequest, ApiResponse, Method};
use batchq_core::app::{App, Backend};
use batchq_core::auth::ApiKeys;
use batchq_core::ids::TenantId;
use batchq_core::keys::object_expiry;
use batchq_core::metrics::prometheus::{self, Registry};
use batchq_core::metrics::{self, MetricsSink};
use batchq_core::pipeline::dispatch::{Dispatcher, HttpSender, WebhookConfig};
use batchq_core::pipeline::{Ingester, PollNow, Poller, SubmitOptions, Submitter};
use batchq_core::store::fs::FsObjects;
use batchq_core::store::sqlite::SqliteStore;
use batchq_core::time::Clock;
use tokio::sync::watch;

use crate::commands::Ctx;
use crate::serve_marker;
use crate::Failure;

/// Largest request body read (the API refuses more than 10 MiB anyway).
const MAX_BODY: usize = 12 * 1024 * 1024;

pub async fn serve(ctx: &Ctx, addr: SocketAddr, submit_every: Duration, poll_every: Duration) -> Result<(), Failure> {
    let app = ctx.app()?;
    // Where the state lives, and why, before anything else.
    eprintln!("{}", store_line(app));
    if let Backend::Embedded(e) = &app.backend {
        if !e.leases_ended.is_empty() {
            eprintln!(
                "batchq: {} job(s) a stopped batchq left in the middle of a submit resume now",
                e.leases_ended.len()
            );
        }
        for job in &e.leases_ended {
            tracing::info!(job = %job, "lease of a stopped process ended: the next submit resumes the job");
        }
    }
    let keys = app.config.api_keys.clone();
    if keys.is_empty() && !addr.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {addr} without authentication: set BATCHQ_API_KEYS=tenant:key,... \
             (every caller would otherwise act as the default tenant), or listen on 127.0.0.1"
        )
        .into());
    }
    let webhook_config = WebhookConfig::from_env()?;
    let dispatcher = match app.webhooks().is_some() {
        true => {
            let sender = HttpSender::new(&webhook_config).map_err(|e| format!("webhook HTTP client: {e}"))?;
            app.dispatcher(webhook_config.clone(), Arc::new(sender))
        }
        false => None,
    };
    let providers = ctx.providers().await?;
    let submitter = app.submitter(providers.clone());
    let poller = app.poller(providers);
    let ingester = app.ingester();

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        crate::signal::stop().await;
        eprintln!("batchq: stopping (finishing the running step)…");
        let _ = stop_tx.send(true);
    });
    let registry = Arc::new(Registry::new());
    // Each delivery pass's attempts, deliveries and give-ups are counted.
    let dispatcher = dispatcher.map(|d| {
        let counts = registry.clone();
        d.on_pass(Arc::new(move |pass| counts.record(metrics::from_pass(pass))))
    });
    let mut api = ctx.api()?.clone().with_metrics(registry.clone());
    if let Some(source) = &app.config.openai_webhook_secret {
        let secret = batchq_core::provider::openai::resolve_webhook_secret(source, &app.sdk)
            .await
            .map_err(|e| e.to_string())?;
        // OpenAI's batch events poll with the scheduled poll's own poller,
        // and ingest what that copies at once (no S3 notification here).
        let poll = PollNow {
            poller: poller.clone(),
            ingester: Some(ingester.clone()),
        };
        api = api.with_provider_webhooks(secret, Arc::new(poll));
    }
    let router = Router::new()
        .route("/metrics", get(scrape))
        .fallback(handle)
        .with_state(Front {
            api,
            keys: keys.clone(),
            registry: registry.clone(),
            dispatcher: dispatcher.clone(),
        });
    let mut http_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .await
    });
    // The line scripts wait for: the address actually bound (port 0 picks one).
    // A closed stdout does not stop the server (nothing else goes there).
    let _ = if ctx.json {
        crate::output::out(
            &serde_json::json!({"serving": format!("http://{bound}"), "submit_every_ms": submit_every.as_millis() as u64, "poll_every_ms": poll_every.as_millis() as u64}).to_string(),
        )
    } else {
        crate::output::out(&format!("batchq serving http://{bound}"))
    };
    let data_dir = match &app.backend {
        Backend::Embedded(e) => Some(e.dir.path().to_path_buf()),
        Backend::Aws(_) => None,
    };
    if let Some(dir) = &data_dir {
        serve_marker::write(dir, &format!("http://{bound}"));
    }
    if keys.is_empty() {
        eprintln!("batchq: no BATCHQ_API_KEYS: every caller is the default tenant (loopback only)");
    } else {
        let tenants: Vec<String> = keys.tenants().iter().map(|t| t.to_string()).collect();
        eprintln!("batchq: bearer keys required; tenants: {}", tenants.join(", "));
    }
    eprintln!(
        "batchq: submit every {}s, poll every {}s; Ctrl-C or SIGTERM stops",
        submit_every.as_secs_f32(),
        poll_every.as_secs_f32()
    );

    let purge = match &app.backend {
        Backend::Embedded(e) => Some(Purge {
            rows: e.dir.rows(),
            objects: e.dir.objects(),
            retention: app.config.policy.retention,
            clock: app.ports.clock.clone(),
        }),
        Backend::Aws(_) => None,
    };
    let steps = Steps {
        submitter,
        poller,
        ingester,
        purge,
        registry,
    };
    let deliveries = dispatcher.map(|d| tokio::spawn(deliver(d, webhook_config.every, stop_rx.clone())));
    schedule(steps, submit_every, poll_every, stop_rx).await;
    if let Some(task) = deliveries {
        let _ = task.await;
    }
    let served = server
        .await
        .map_err(|e| format!("server task: {e}"))
        .and_then(|r| r.map_err(|e| format!("server: {e}")));
    if let Some(dir) = &data_dir {
        serve_marker::remove(dir);
    }
    served?;
    Ok(())
}

/// The first line `serve` prints: the store, and why it is that one.
fn store_line(app: &App) -> String {
    let cfg = &app.config;
    match &app.backend {
        Backend::Embedded(e) => format!(
            "batchq: store embedded:{} ({})",
            e.dir.path().display(),
            cfg.store_reason
        ),
        Backend::Aws(_) => format!(
            "batchq: store aws: tables {} and {}, bucket {} ({})",
            cfg.requests_table, cfg.jobs_table, cfg.bucket, cfg.store_reason
        ),
    }
}

/// The webhook delivery loop: a pass per endpoint every `every`, each pass
/// its own task (a slow endpoint delays only itself). On stop, the passes
/// under way finish (an attempt cut short would be retried anyway).
async fn deliver(dispatcher: Dispatcher, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = tick.tick() => {
                if let Err(e) = dispatcher.tick().await {
                    tracing::error!(error = %e, "webhook pass failed to start; the next tick retries");
                }
            }
        }
    }
    dispatcher.drain().await;
}

/// What `serve` runs on its schedule.
struct Steps {
    submitter: Submitter,
    poller: Poller,
    ingester: Ingester,
    /// The embedded store, whose finished rows past retention and expired
    /// objects `serve` deletes (DynamoDB's TTL and the bucket's lifecycle
    /// rules do it on AWS).
    purge: Option<Purge>,
    /// Counts what the runs report, for `GET /metrics`.
    registry: Arc<Registry>,
}

/// What the hourly purge of the embedded store needs.
struct Purge {
    rows: SqliteStore,
    objects: Arc<FsObjects>,
    retention: Option<Duration>,
    clock: Arc<dyn Clock>,
}

impl Purge {
    async fn run(&self) {
        let now = self.clock.now();
        match self.rows.purge_expired(now).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "deleted finished rows past retention"),
            Err(e) => tracing::error!(error = %e, "deleting expired rows failed; retried in an hour"),
        }
        let at = std::time::UNIX_EPOCH + Duration::from_millis(now.millis().max(0) as u64);
        match self.objects.expire(object_expiry(self.retention), at).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(objects = n, "deleted expired objects"),
            Err(e) => tracing::error!(error = %e, "deleting expired objects failed; retried in an hour"),
        }
    }
}

/// How often the embedded store's expired rows are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

async fn schedule(steps: Steps, submit_every: Duration, poll_every: Duration, mut stop: watch::Receiver<bool>) {
    let Steps {
        submitter,
        poller,
        ingester,
        purge,
        registry,
    } = steps;
    let mut purge_tick = tokio::time::interval(PURGE_EVERY);
    purge_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut submit_tick = tokio::time::interval(submit_every);
    let mut poll_tick = tokio::time::interval(poll_every);
    submit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut to_ingest: BTreeSet<String> = BTreeSet::new();
    loop {
        // Only the waits race the stop signal; a step, once started, finishes.
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = submit_tick.tick() => {
                match submitter.run(SubmitOptions::default()).await {
                    Ok(r) => {
                        for j in r.jobs.iter().chain(&r.resumed) {
                            tracing::info!(job = %j.job_id, group = %j.group, requests = j.requests, "submitted");
                        }
                        registry.record(metrics::from_submit(&r));
                    }
                    Err(e) => tracing::error!(error = %e, "submit failed; the next tick retries"),
                }
            }
            _ = purge_tick.tick(), if purge.is_some() => {
                if let Some(purge) = &purge {
                    purge.run().await;
                }
            }
            _ = poll_tick.tick() => {
                match poller.run().await {
                    Ok(r) => {
                        for c in &r.changed {
                            tracing::info!(job = %c.job_id, from = %c.from, to = %c.to, "job status");
                        }
                        registry.record(metrics::from_poll(&r));
                        to_ingest.extend(r.copied);
                    }
                    Err(e) => tracing::error!(error = %e, "poll failed; the next tick retries"),
                }
                // Copied files not yet counted: the notifications a stop or a
                // crash between copy and ingest took with it.
                match ingester.pending_files().await {
                    Ok(keys) => to_ingest.extend(keys),
                    Err(e) => tracing::error!(error = %e, "listing result files to ingest failed; the next tick retries"),
                }
                for key in std::mem::take(&mut to_ingest) {
                    match ingester.ingest_key(&key).await {
                        Ok(r) => {
                            tracing::info!(key, completed = r.completed, failed = r.failed, requeued = r.requeued, "ingested");
                            registry.record(metrics::from_ingest([&r]));
                        }
                        Err(e) => {
                            tracing::error!(key, error = %e, "ingest failed; retried next tick");
                            to_ingest.insert(key);
                        }
                    }
                }
            }
        }
    }
}

#[derive(Clone)]
struct Front {
    api: Api,
    keys: ApiKeys,
    registry: Arc<Registry>,
    /// The webhook delivery engine, for the oldest undelivered event's age.
    dispatcher: Option<Dispatcher>,
}

/// `GET /metrics`: the counters of this process and the gauges as the
/// store has them now. With keys configured, any valid key may scrape.
async fn scrape(State(front): State<Front>, req: Request<Body>) -> Response<Body> {
    if !front.keys.is_empty() {
        let header = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if let Err(e) = front.keys.authenticate(header.as_deref()) {
            let resp = ApiResponse::from(ApiError::from(e));
            tracing::warn!(status = resp.status, "metrics scrape refused: not authenticated");
            return json_response(resp.status, &resp.headers, resp.body_string());
        }
    }
    let gauges = match metrics::store_gauges(&front.api.ports).await {
        Ok(mut gauges) => {
            // Without a webhook store nothing can wait for delivery.
            let waiting = match &front.dispatcher {
                Some(d) => d.oldest_undelivered(None).await,
                None => Ok(0),
            };
            waiting.map(|secs| {
                gauges.push(metrics::Sample::new(
                    &metrics::WEBHOOK_OLDEST_UNDELIVERED_AGE,
                    secs as f64,
                ));
                gauges
            })
        }
        Err(e) => Err(e),
    };
    match gauges {
        Ok(gauges) => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)
            .body(Body::from(front.registry.render(&gauges)))
            .unwrap_or_else(|_| Response::new(Body::empty())),
        Err(e) => {
            let resp = ApiResponse::from(ApiError::from(e));
            json_response(resp.status, &resp.headers, resp.body_string())
        }
    }
}

/// Any request: authenticate it, then hand it to the API core as the
/// Lambda handler does. An unauthenticated request's body is never read.
async fn handle(State(front): State<Front>, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    // The dashboard's files carry no data and need no key: a browser loads
    // the page first, and the page then asks for the key.
    let public = ApiRequest::new(Method::parse(parts.method.as_str()), parts.uri.path());
    if let Some(resp) = front.api.handle_public(&public) {
        return response(&resp);
    }
    // Provider webhooks: the signature over the body is the authentication.
    let provider_webhook = is_provider_webhook(parts.uri.path());
    let tenant = if front.keys.is_empty() || provider_webhook {
        TenantId::default_tenant()
    } else {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        match front.keys.authenticate(header.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                let resp = ApiResponse::from(ApiError::from(e));
                tracing::warn!(method = %parts.method, status = resp.status, "api request refused: not authenticated");
                return response(&resp);
            }
        }
    };
    let body = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE.as_u16(),
                &[],
                r#"{"error":{"code":"too_large","message":"the request body is too large","field":"body"}}"#.into(),
            )
        }
    };
    let request = ApiRequest {
        method: Method::parse(parts.method.as_str()),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        webhook_headers: WebhookHeaders::from_pairs(
            parts
                .headers
                .iter()
                .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))),
        ),
        body,
    };
    if provider_webhook {
        return response(&front.api.handle_provider_webhook(&request).await);
    }
    let resp = front.api.handle(&tenant, request).await;
    response(&resp)
}

fn response(resp: &ApiResponse) -> Response<Body> {
    http_response(resp.status, resp.content_type(), &resp.headers, resp.body_string())
}

fn json_response(status: u16, headers: &[(&'static str, String)], body: String) -> Response<Body> {
    http_response(status, ApiResponse::CONTENT_TYPE, headers, body)
}

fn http_response(status: u16, content_type: &str, headers: &[(&'static str, String)], body: String) -> Response<Body> {
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type);
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    builder.body(Body::from(body)).unwrap_or_else(|_| {
        let mut r = Response::new(Body::from(
            r#"{"error":{"code":"internal","message":"internal error","field":null}}"#,
        ));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}
