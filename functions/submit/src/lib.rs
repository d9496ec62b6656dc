//! batchq-submit Lambda: on its EventBridge schedule, claims due queued
//! requests into jobs, writes their input files to S3, uploads them to the
//! provider and creates the batches; also resumes jobs an earlier run left
//! half-way. The work lives in `batchq_core::pipeline::submit`.
//!
//! Each run prints CloudWatch EMF lines to stdout from its report: its
//! provider errors by kind and the requests it failed or sent back.

use batchq_core::events::Scheduled;
use batchq_core::metrics;
use batchq_core::pipeline::{SubmitOptions, Submitter};
use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;
use tracing::Instrument;

/// Handles one scheduled event (or a manual `{"force": true}`) and answers
/// with the run's report; prints the run's metrics as EMF lines.
pub async fn handle(submitter: &Submitter, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (result, lines) = handle_metered(submitter, event).await;
    for line in lines {
        println!("{line}");
    }
    result
}

/// [`handle`] answering the EMF lines instead of printing them (tests).
pub async fn handle_metered(submitter: &Submitter, event: LambdaEvent<Value>) -> (Result<Value, Error>, Vec<String>) {
    let span = tracing::info_span!("lambda", function = "submit", aws_request_id = %event.context.request_id);
    run(submitter, event).instrument(span).await
}

async fn run(submitter: &Submitter, event: LambdaEvent<Value>) -> (Result<Value, Error>, Vec<String>) {
    let force = match Scheduled::parse(&event.payload) {
        Ok(Scheduled { force, .. }) => force,
        Err(e) => return (Err(format!("bad submit event: {e}").into()), Vec::new()),
    };
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
            let lines = metrics::emf::lines_of_run(submitter.core(), &metrics::from_submit(&report));
            (serde_json::to_value(report).map_err(Error::from), lines)
        }
        Err(e) => {
            tracing::error!(error = %e, "submit run failed; the next run resumes it");
            (Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>), Vec::new())
        }
    }
}
