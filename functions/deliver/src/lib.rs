//! batchq-deliver Lambda: webhooks to callers. Invoked by the jobs table's
//! DynamoDB stream (filtered to results feed entries, `feed#…` keys) for
//! the tenants whose feed grew, and by an EventBridge schedule for every
//! endpoint (retries that came due, anything a failed stream batch missed).
//! The work lives in `batchq_core::pipeline::dispatch`; the durable queue is
//! the results feed itself with each endpoint's position in it.
//!
//! A run stops starting attempts when the invocation's time runs short
//! (its deadline less one attempt's timeout and a margin), so it never ends
//! by a timeout in the middle of saving. Each run prints CloudWatch EMF
//! lines: the age of the oldest undelivered event, attempts, delivered and
//! failed.

use std::time::Duration;

use batchq_core::events::DeliverEvent;
use batchq_core::metrics;
use batchq_core::pipeline::dispatch::{Dispatcher, RunReport};
use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;
use tracing::Instrument;

/// Time kept back from the invocation's deadline besides one attempt's
/// timeout: the saves after the last attempts and the metrics.
const MARGIN: Duration = Duration::from_secs(5);

/// Handles one invocation and answers with the run's report; prints the
/// run's metrics as EMF lines.
pub async fn handle(dispatcher: &Dispatcher, namespace: &str, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (result, lines) = handle_metered(dispatcher, namespace, event).await;
    for line in lines {
        println!("{line}");
    }
    result
}

/// [`handle`] answering the EMF lines instead of printing them (tests).
pub async fn handle_metered(
    dispatcher: &Dispatcher,
    namespace: &str,
    event: LambdaEvent<Value>,
) -> (Result<Value, Error>, Vec<String>) {
    let span = tracing::info_span!("lambda", function = "deliver", aws_request_id = %event.context.request_id);
    run(dispatcher, namespace, event).instrument(span).await
}

async fn run(
    dispatcher: &Dispatcher,
    namespace: &str,
    event: LambdaEvent<Value>,
) -> (Result<Value, Error>, Vec<String>) {
    let asked = match DeliverEvent::parse(&event.payload) {
        Ok(a) => a,
        Err(e) => return (Err(format!("bad deliver event: {e}").into()), Vec::new()),
    };
    let tenants = match &asked {
        DeliverEvent::Feed(t) if t.is_empty() => return (Ok(serde_json::json!({"endpoints": 0})), Vec::new()),
        DeliverEvent::Feed(t) => Some(t),
        DeliverEvent::Everyone => None,
    };
    let budget = budget(event.context.deadline, dispatcher.config.timeout);
    match dispatcher.run_within(tenants, budget).await {
        Ok(report) => {
            log(&report);
            let lines = metrics::emf::lines(namespace, &metrics::from_deliver(&report), dispatcher.clock.now());
            if report.errors > 0 {
                // Failed passes retry on the next run; the invocation fails
                // so the stream mapping retries and the Errors metric shows it.
                let e = format!("{} of {} endpoint passes failed", report.errors, report.endpoints);
                return (Err(e.into()), lines);
            }
            (serde_json::to_value(report).map_err(Error::from), lines)
        }
        Err(e) => {
            tracing::error!(error = %e, "deliver run failed; the next run picks up where it stopped");
            (Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>), Vec::new())
        }
    }
}

fn log(report: &RunReport) {
    tracing::info!(
        endpoints = report.endpoints,
        materialised = report.materialised,
        delivered = report.delivered,
        retrying = report.retrying,
        failed = report.failed,
        errors = report.errors,
        oldest_undelivered_secs = report.oldest_undelivered_secs,
        "deliver run finished"
    );
}

/// The budget of an invocation that names no deadline (a test's context).
const NO_DEADLINE_BUDGET: Duration = Duration::from_secs(60);

/// How long a run may start attempts: until the invocation's deadline
/// (epoch milliseconds; 0: none named) less one attempt's timeout and
/// [`MARGIN`]; at least one second.
pub fn budget(deadline_ms: u64, attempt_timeout: Duration) -> Duration {
    if deadline_ms == 0 {
        return NO_DEADLINE_BUDGET;
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Duration::from_millis(deadline_ms.saturating_sub(now_ms))
        .saturating_sub(attempt_timeout + MARGIN)
        .max(Duration::from_secs(1))
}
