//! batchq-submit Lambda: on its EventBridge schedule, claims due queued
//! requests into jobs, writes their input files to S3, uploads them to the
//! provider and creates the batches; also resumes jobs an earlier run left
//! half-way. The work lives in `batchq_core::pipeline::submit`.

use batchq_core::events::Scheduled;
use batchq_core::pipeline::{SubmitOptions, Submitter};
use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;
use tracing::Instrument;

/// Handles one scheduled event (or a manual `{"force": true}`) and answers
/// with the run's report.
pub async fn handle(submitter: &Submitter, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let span = tracing::info_span!("lambda", function = "submit", aws_request_id = %event.context.request_id);
    run(submitter, event).instrument(span).await
}

async fn run(submitter: &Submitter, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let Scheduled { force, .. } = Scheduled::parse(&event.payload).map_err(|e| format!("bad submit event: {e}"))?;
    match submitter.run(SubmitOptions { force }).await {
        Ok(report) => {
            tracing::info!(
                jobs = report.jobs.len(),
                resumed = report.resumed.len(),
                claimed = report.claimed,
                waiting = report.waiting.len(),
                held = report.held.len(),
                "submit run finished"
            );
            Ok(serde_json::to_value(report)?)
        }
        Err(e) => {
            tracing::error!(error = %e, "submit run failed; the next run resumes it");
            Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        }
    }
}
