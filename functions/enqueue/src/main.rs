//! batchq-enqueue Lambda: the HTTP API (enqueue one or many, status and
//! result, cancel, jobs, stats) behind API Gateway.
//!
//! Thin shell: configuration, clients and the API core are built once per
//! cold start; the work lives in `batchq_core::api`.

use batchq_core::app::App;
use batchq_core::config::Config;
use lambda_http::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Config::from_env()?;
    batchq_core::telemetry::init(&config);
    let app = App::from_config(config).await.with_configured_tables().await?;
    // OpenAI's batch events (`POST /v1/provider-webhooks/openai`) are
    // verified here and handed to the poll function (an asynchronous
    // invocation): this function holds no provider key and writes no result
    // files.
    let api = batchq_enqueue::with_provider_webhooks(app.api(), &app.config, &app.sdk).await?;
    let edge = batchq_enqueue::Edge::new(api, app.config.jwt_tenant_claim.clone())
        .with_metrics_namespace(app.config.metrics_namespace.clone());
    let lambda = batchq_core::overhead::LambdaMeter::new(
        app.ports.usage.clone(),
        std::env::var(batchq_core::overhead::LAMBDA_MEMORY_VAR)
            .ok()
            .and_then(|v| v.parse().ok()),
    );
    lambda_http::lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        // One API Gateway request per call, metered in 512 KB steps of its body.
        let api_bytes = event.payload.get("requestContext").map(|_| {
            let body = event.payload.get("body").and_then(serde_json::Value::as_str);
            body.map_or(0, str::len) as u64
        });
        lambda.invocation(api_bytes, batchq_enqueue::handle_event(&edge, event))
    }))
    .await
}
