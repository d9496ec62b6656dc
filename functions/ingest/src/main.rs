//! batchq-ingest: thin shell; configuration and clients are built once per
//! cold start. Ingest never talks to the provider, so it needs no key.

use aws_lambda_events::event::s3::S3Event;
use batchq_core::app::App;
use batchq_core::config::Config;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Config::from_env()?;
    batchq_core::telemetry::init(&config);
    let app = App::from_config(config).await.with_configured_tables().await?;
    let ingester = app.ingester();
    let bucket = app.config.bucket.clone();
    let lambda = batchq_core::overhead::LambdaMeter::new(
        app.ports.usage.clone(),
        std::env::var(batchq_core::overhead::LAMBDA_MEMORY_VAR)
            .ok()
            .and_then(|v| v.parse().ok()),
    );
    lambda_runtime::run(service_fn(|event: LambdaEvent<S3Event>| {
        lambda.invocation(None, batchq_ingest::handle(&ingester, &bucket, event))
    }))
    .await
}
