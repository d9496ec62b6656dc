//! batchq-poll: thin shell; configuration, clients and the provider key are
//! loaded once per cold start.

use batchq_core::app::App;
use batchq_core::config::Config;
use batchq_poll::Reports;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Config::from_env()?;
    batchq_core::telemetry::init(&config);
    let app = App::from_config(config).await.with_configured_tables().await?;
    let poller = app.poller(app.providers().await?);
    // The reports read figures through the API; none of them is a webhook's.
    let reports = Reports::new(
        app.api_without_webhooks(),
        app.ports.objects.clone(),
        app.config.report_tenants.clone(),
        app.config.report_webhook_url.clone(),
    );
    let lambda = batchq_core::overhead::LambdaMeter::new(
        app.ports.usage.clone(),
        std::env::var(batchq_core::overhead::LAMBDA_MEMORY_VAR)
            .ok()
            .and_then(|v| v.parse().ok()),
    );
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        lambda.invocation(None, batchq_poll::handle(&poller, &reports, event))
    }))
    .await
}
