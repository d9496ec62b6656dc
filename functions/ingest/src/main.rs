//! batchq-ingest Lambda: S3 ObjectCreated on results/: stream-parse result files into per-request results.
//!
//! Thin shell: configuration and clients are built once per cold start; the
//! work lives in `batchq-core`.

use batchq_core::app::App;
use batchq_core::config::Config;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Config::from_env()?;
    batchq_core::telemetry::init(&config);
    let app = App::from_config(config).await;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| handle(&app, event))).await
}

async fn handle(_app: &App, event: LambdaEvent<Value>) -> Result<Value, Error> {
    tracing::warn!(request_id = %event.context.request_id, "batchq-ingest handler is not implemented yet");
    Err("batchq-ingest is not implemented yet".into())
}
