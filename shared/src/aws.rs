//! Building AWS SDK clients from [`Config`], once per cold start.

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;

use std::sync::Arc;

use crate::config::Config;
use crate::overhead::UsageTally;
use crate::store::usage::{DynamoUsage, S3Usage};

/// The SDK's HTTP client: hyper 1 with rustls on `ring` (the crates are
/// built without their default client, which would bring aws-lc-rs).
pub fn https_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// `aws_config::defaults` with [`https_client`]: every SDK configuration
/// batchq loads starts here (without it a call fails for want of a client).
pub fn config_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(https_client())
}

/// Loads the shared SDK configuration. `AWS_ENDPOINT_URL` is honoured by the
/// SDK itself; when it is set and no credentials are configured we supply
/// dummy static ones, so a local emulator works with no other setup.
pub async fn sdk_config(cfg: &Config) -> aws_config::SdkConfig {
    let mut loader = config_loader();
    let region = cfg.aws_region.clone().unwrap_or_else(|| "us-east-1".to_owned());
    loader = loader.region(Region::new(region));
    if let Some(endpoint) = &cfg.aws_endpoint_url {
        loader = loader.endpoint_url(endpoint);
        let has_creds = std::env::var_os("AWS_ACCESS_KEY_ID").is_some() || std::env::var_os("AWS_PROFILE").is_some();
        if !has_creds {
            loader = loader.credentials_provider(Credentials::new("test", "test", None, None, "batchq-local"));
        }
    }
    loader.load().await
}

/// DynamoDB client. Every call asks for its consumed capacity and adds it
/// to `usage` ([`crate::store::usage`]). Throttled calls (a partition over its 1,000 write
/// units a second, an on-demand table scaling up) are retried by the SDK
/// with backoff, up to 8 attempts instead of the default 3.
pub fn dynamo_client(sdk: &aws_config::SdkConfig, usage: &Arc<UsageTally>) -> aws_sdk_dynamodb::Client {
    let conf = aws_sdk_dynamodb::config::Builder::from(sdk)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(8))
        .interceptor(DynamoUsage(usage.clone()))
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

/// S3 client; path-style addressing when talking to an emulator endpoint.
pub fn s3_client(sdk: &aws_config::SdkConfig, cfg: &Config) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(s3_config(sdk, cfg).build())
}

/// The S3 client of the object store: as [`s3_client`], counting its
/// requests into `usage` ([`crate::store::usage`]).
pub fn metered_s3_client(sdk: &aws_config::SdkConfig, cfg: &Config, usage: &Arc<UsageTally>) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(s3_config(sdk, cfg).interceptor(S3Usage(usage.clone())).build())
}

fn s3_config(sdk: &aws_config::SdkConfig, cfg: &Config) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::from(sdk).force_path_style(cfg.aws_endpoint_url.is_some())
}
