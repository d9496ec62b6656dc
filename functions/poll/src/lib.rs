//! batchq-poll Lambda: on its EventBridge schedule, follows every open job's
//! provider batch, copies finished result files to S3 (which fires ingest)
//! and closes jobs. The work lives in `batchq_core::pipeline::poll`.

use batchq_core::events::Scheduled;
use batchq_core::pipeline::Poller;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;
use tracing::Instrument;

/// Handles one scheduled event and answers with the run's report.
pub async fn handle(poller: &Poller, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let span = tracing::info_span!("lambda", function = "poll", aws_request_id = %event.context.request_id);
    run(poller, event).instrument(span).await
}

async fn run(poller: &Poller, event: LambdaEvent<Value>) -> Result<Value, Error> {
    Scheduled::parse(&event.payload).map_err(|e| format!("bad poll event: {e}"))?;
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
            Ok(serde_json::to_value(report)?)
        }
        Err(e) => {
            tracing::error!(error = %e, "poll run failed; the next run picks up where it stopped");
            Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        }
    }
}
