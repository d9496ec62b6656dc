//! batchq-poll Lambda: on its EventBridge schedule, follows every open job's
//! provider batch, copies finished result files to S3 (which fires ingest)
//! and closes jobs. The work lives in `batchq_core::pipeline::poll`.
//!
//! Each run prints CloudWatch EMF lines to stdout from its report: the
//! queue depth and oldest queued age per group, the unfinished jobs by
//! status, the requests it failed or sent back, its provider errors.

use batchq_core::events::Scheduled;
use batchq_core::metrics;
use batchq_core::pipeline::Poller;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;
use tracing::Instrument;

/// Handles one scheduled event and answers with the run's report; prints
/// the run's metrics as EMF lines.
pub async fn handle(poller: &Poller, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (result, lines) = handle_metered(poller, event).await;
    for line in lines {
        println!("{line}");
    }
    result
}

/// [`handle`] answering the EMF lines instead of printing them (tests).
pub async fn handle_metered(poller: &Poller, event: LambdaEvent<Value>) -> (Result<Value, Error>, Vec<String>) {
    let span = tracing::info_span!("lambda", function = "poll", aws_request_id = %event.context.request_id);
    run(poller, event).instrument(span).await
}

async fn run(poller: &Poller, event: LambdaEvent<Value>) -> (Result<Value, Error>, Vec<String>) {
    if let Err(e) = Scheduled::parse(&event.payload) {
        return (Err(format!("bad poll event: {e}").into()), Vec::new());
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
            let lines = poller.core().emf_lines(&metrics::from_poll(&report));
            (serde_json::to_value(report).map_err(Error::from), lines)
        }
        Err(e) => {
            tracing::error!(error = %e, "poll run failed; the next run picks up where it stopped");
            (Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>), Vec::new())
        }
    }
}
