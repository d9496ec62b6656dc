//! batchq-ingest Lambda: on S3 `ObjectCreated` notifications for
//! `results/`, stream-parses each result file into per-request results. The
//! work lives in `batchq_core::pipeline::ingest`.
//!
//! Each invocation prints CloudWatch EMF lines to stdout from its reports:
//! requests completed, failed and retried, and the batch spend and savings
//! of the files it counted.

use aws_lambda_events::event::s3::S3Event;
use batchq_core::events::created_objects;
use batchq_core::keys::{parse_result_key, ResultFile};
use batchq_core::metrics;
use batchq_core::pipeline::{Ingester, PipelineError};
use batchq_core::telemetry;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::{json, Value};
use tracing::Instrument;

/// Handles one S3 notification. Objects that are not result files of a
/// known job (or are in another bucket) are reported and skipped; any other
/// failure fails the invocation so Lambda retries it (a replay is harmless).
pub async fn handle(ingester: &Ingester, bucket: &str, event: LambdaEvent<S3Event>) -> Result<Value, Error> {
    let (result, lines) = handle_metered(ingester, bucket, event).await;
    for line in lines {
        println!("{line}");
    }
    result
}

/// [`handle`] answering the EMF lines instead of printing them (tests).
/// Files ingested before a failure still count.
pub async fn handle_metered(
    ingester: &Ingester,
    bucket: &str,
    event: LambdaEvent<S3Event>,
) -> (Result<Value, Error>, Vec<String>) {
    let span = tracing::info_span!("lambda", function = "ingest", aws_request_id = %event.context.request_id);
    run(ingester, bucket, event).instrument(span).await
}

/// Runs inside the lambda span, so the step span it makes is that span's child.
async fn run(ingester: &Ingester, bucket: &str, event: LambdaEvent<S3Event>) -> (Result<Value, Error>, Vec<String>) {
    let mut done = Vec::new();
    let result = ingest_all(ingester, bucket, event, &mut done)
        .instrument(telemetry::step_span("ingest"))
        .await;
    let lines = metrics::emf::lines_of_run(ingester.core(), &metrics::from_ingest(&done));
    (result, lines)
}

async fn ingest_all(
    ingester: &Ingester,
    bucket: &str,
    event: LambdaEvent<S3Event>,
    done: &mut Vec<batchq_core::pipeline::IngestReport>,
) -> Result<Value, Error> {
    let mut reports = Vec::new();
    let mut skipped = Vec::new();
    for obj in created_objects(&event.payload) {
        if obj.bucket != bucket {
            tracing::warn!(bucket = %obj.bucket, key = %obj.key, "object in another bucket skipped");
            skipped.push(json!({"bucket": obj.bucket, "key": obj.key, "reason": "not batchq's bucket"}));
            continue;
        }
        // One span per result file: its key and the job it names.
        let file_span = tracing::info_span!("file", key = %obj.key, job = tracing::field::Empty);
        if let Some(ResultFile::Output(job) | ResultFile::Errors(job)) = parse_result_key(&obj.key) {
            file_span.record("job", tracing::field::display(&job));
        }
        match ingester.ingest_key(&obj.key).instrument(file_span).await {
            Ok(report) => {
                reports.push(serde_json::to_value(&report)?);
                done.push(report);
            }
            Err(PipelineError::Rejected(reason)) => {
                tracing::warn!(key = %obj.key, reason, "object skipped");
                skipped.push(json!({"bucket": obj.bucket, "key": obj.key, "reason": reason}));
            }
            Err(e) => {
                tracing::error!(key = %obj.key, error = %e, "ingest failed; the invocation will be retried");
                return Err(Box::new(e));
            }
        }
    }
    Ok(json!({"ingested": reports, "skipped": skipped}))
}
