//! batchq-deliver: thin shell; configuration, the webhook table and the
//! HTTP client are built once per cold start.

use std::sync::Arc;

use batchq_core::config::Config;
use batchq_core::pipeline::dispatch::{HttpSender, WebhookConfig};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Config::from_env()?;
    batchq_core::telemetry::init(&config);
    let webhooks = WebhookConfig::from_env()?;
    let sender = Arc::new(HttpSender::new(&webhooks)?);
    // Not an `App`: deliver reads the tables and sends, nothing more
    // (`aws_dispatcher` says why that keeps the binary small).
    let dispatcher = batchq_core::app::aws_dispatcher(&config, webhooks, sender)
        .await
        .ok_or("BATCHQ_WEBHOOKS_TABLE is not set: deliver has no webhook table")?;
    let namespace = config.metrics_namespace.clone();
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        batchq_deliver::handle(&dispatcher, &namespace, event)
    }))
    .await
}
