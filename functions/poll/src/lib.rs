//! batchq-poll Lambda: on its EventBridge schedule, follows every open job's
//! provider batch, copies finished result files to S3 (which fires ingest)
//! and closes jobs. The work lives in `batchq_core::pipeline::poll`.
//!
//! Each run prints CloudWatch EMF lines to stdout from its report: the
//! queue depth and oldest queued age per group, the unfinished jobs by
//! status, the requests it failed or sent back, its provider errors.
//!
//! A second schedule sends `{"report": true}`: that run writes the daily
//! report of the day before (`batchq_core::report::publish`) for each
//! configured tenant to S3 and, when a webhook is configured, POSTs each
//! report it wrote there; it does not poll.
//!
//! The enqueue function sends `{"poll_batch": {"provider": "openai",
//! "batch_id": "batch_…"}}` (an asynchronous invocation) after a verified
//! OpenAI batch event: that run polls only the open job with that batch
//! (`Poller::poll_batch_of_kind`), whose copy to S3 fires ingest as usual,
//! and prints no metrics (a partial run has no queue figures). No open job
//! with that batch: nothing is done. The scheduled run stays the safety net.

use std::sync::Arc;
use std::time::Duration;

use batchq_core::api::Api;
use batchq_core::events::{PollBatch, ReportDay, Scheduled};
use batchq_core::ids::TenantId;
use batchq_core::metrics;
use batchq_core::pipeline::Poller;
use batchq_core::report::publish::{publish, Published};
use batchq_core::report::render;
use batchq_core::store::ObjectStore;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::{json, Value};
use tracing::Instrument;

/// What the report run needs: the API core it reads the figures through,
/// the bucket it writes to, who it reports on and where it sends them.
pub struct Reports {
    pub api: Api,
    pub objects: Arc<dyn ObjectStore>,
    pub tenants: Vec<TenantId>,
    /// `BATCHQ_REPORT_WEBHOOK_URL`.
    pub webhook: Option<String>,
    pub http: reqwest::Client,
}

impl Reports {
    pub fn new(api: Api, objects: Arc<dyn ObjectStore>, tenants: Vec<TenantId>, webhook: Option<String>) -> Self {
        let http = batchq_core::tls::http_client_builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a client with a timeout builds");
        Self {
            api,
            objects,
            tenants,
            webhook,
            http,
        }
    }
}

/// Handles one scheduled event and answers with the run's report; prints
/// the run's metrics as EMF lines.
pub async fn handle(poller: &Poller, reports: &Reports, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (result, lines) = handle_metered(poller, reports, event).await;
    for line in lines {
        println!("{line}");
    }
    result
}

/// [`handle`] answering the EMF lines instead of printing them (tests).
pub async fn handle_metered(
    poller: &Poller,
    reports: &Reports,
    event: LambdaEvent<Value>,
) -> (Result<Value, Error>, Vec<String>) {
    let span = tracing::info_span!("lambda", function = "poll", aws_request_id = %event.context.request_id);
    run(poller, reports, event).instrument(span).await
}

async fn run(poller: &Poller, reports: &Reports, event: LambdaEvent<Value>) -> (Result<Value, Error>, Vec<String>) {
    let scheduled = match Scheduled::parse(&event.payload) {
        Ok(s) => s,
        Err(e) => return (Err(format!("bad poll event: {e}").into()), Vec::new()),
    };
    if let Some(day) = scheduled.report {
        let day = match day {
            ReportDay::Day(d) => d,
            ReportDay::Yesterday => {
                let now = reports.api.ports.clock.now();
                batchq_core::activity::Hour::of(now).plus(-24).day()
            }
        };
        return (daily_report(reports, &day).await, Vec::new());
    }
    if let Some(one) = scheduled.poll_batch {
        return (poll_one_batch(poller, &one).await, Vec::new());
    }
    match poller.run().await {
        Ok(report) => {
            tracing::info!(
                checked = report.checked,
                changed = report.changed.len(),
                copied = report.copied.len(),
                closed = report.closed.len(),
                errors = report.errors.len(),
                "poll run finished"
            );
            let lines = metrics::emf::lines_of_run(poller.core(), &metrics::from_poll(&report));
            (serde_json::to_value(report).map_err(Error::from), lines)
        }
        Err(e) => {
            tracing::error!(error = %e, "poll run failed; the next run picks up where it stopped");
            (Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>), Vec::new())
        }
    }
}

/// Polls the one batch a provider webhook named.
async fn poll_one_batch(poller: &Poller, one: &PollBatch) -> Result<Value, Error> {
    match poller.poll_batch_of_kind(one.kind, &one.batch).await {
        Ok(report) => {
            tracing::info!(
                provider = one.kind.as_str(),
                batch = %one.batch,
                polled = report.is_some(),
                copied = report.as_ref().map_or(0, |r| r.copied.len()),
                "poll of one batch finished"
            );
            Ok(json!({
                "poll_batch": {"provider": one.kind.as_str(), "batch_id": one.batch.as_str()},
                "polled": report.is_some(),
                "report": report,
            }))
        }
        Err(e) => {
            tracing::error!(provider = one.kind.as_str(), batch = %one.batch, error = %e, "poll of one batch failed; the scheduled run retries it");
            Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        }
    }
}

/// Writes the reports of `day` and sends each one written now to the webhook.
async fn daily_report(reports: &Reports, day: &str) -> Result<Value, Error> {
    let published = publish(&reports.api, reports.objects.as_ref(), &reports.tenants, day)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, day, "daily report failed");
            format!("daily report of {day}: {e}")
        })?;
    let mut out = Vec::new();
    for p in &published {
        let sent = match (&p.written, &reports.webhook) {
            (Some(report), Some(url)) => {
                send(reports, url, p, report).await?;
                true
            }
            _ => false,
        };
        tracing::info!(
            day = %p.day,
            tenant = %p.tenant,
            written = p.written.is_some(),
            sent,
            "daily report"
        );
        out.push(json!({
            "tenant": p.tenant,
            "day": p.day,
            "keys": p.keys,
            "written": p.written.is_some(),
            "sent": sent,
        }));
    }
    Ok(json!({"reports": out}))
}

async fn send(
    reports: &Reports,
    url: &str,
    p: &Published,
    report: &batchq_core::report::DailyReport,
) -> Result<(), Error> {
    let body = json!({
        "day": p.day,
        "tenant": p.tenant,
        "report": report,
        "markdown": render::markdown(report),
    });
    let resp = reports.http.post(url).json(&body).send().await.map_err(|e| {
        tracing::error!(error = %e, tenant = %p.tenant, "report webhook failed");
        format!("report webhook: {e}")
    })?;
    if !resp.status().is_success() {
        let status = resp.status().as_u16();
        tracing::error!(status, tenant = %p.tenant, "report webhook refused the report");
        return Err(format!("report webhook answered HTTP {status}").into());
    }
    Ok(())
}
