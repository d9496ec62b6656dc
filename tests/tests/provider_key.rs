//! The provider key is read from Secrets Manager (on the emulator).

use batchq_core::config::{ApiKeySource, Config};
use batchq_core::provider::openai::resolve_api_key;
use batchq_core::provider::ProviderError;
use batchq_tests::{emulator_endpoint, unique};

async fn config_with_secret(secret_value: Option<&str>) -> (Config, aws_config::SdkConfig) {
    let endpoint = emulator_endpoint();
    let cfg = Config::from_lookup(&|k| match k {
        "AWS_ENDPOINT_URL" => Some(endpoint.clone()),
        _ => None,
    })
    .unwrap();
    let sdk = batchq_core::aws::sdk_config(&cfg).await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let mut cfg = cfg;
    let arn = match secret_value {
        Some(v) => sm
            .create_secret()
            .name(unique("openai-key"))
            .secret_string(v)
            .send()
            .await
            .unwrap()
            .arn
            .unwrap(),
        None => "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf".to_owned(),
    };
    cfg.provider.api_key = ApiKeySource::SecretArn(arn);
    (cfg, sdk)
}

#[tokio::test]
async fn key_is_read_from_a_plain_secret() {
    let (cfg, sdk) = config_with_secret(Some("sk-from-secret")).await;
    assert_eq!(resolve_api_key(&cfg.provider, &sdk).await.unwrap(), "sk-from-secret");
}

#[tokio::test]
async fn key_is_read_from_a_json_secret() {
    let (cfg, sdk) = config_with_secret(Some(r#"{"OPENAI_API_KEY":"sk-json"}"#)).await;
    assert_eq!(resolve_api_key(&cfg.provider, &sdk).await.unwrap(), "sk-json");
}

#[tokio::test]
async fn missing_secret_is_a_key_error_naming_the_arn() {
    let (cfg, sdk) = config_with_secret(None).await;
    match resolve_api_key(&cfg.provider, &sdk).await {
        Err(ProviderError::Key(msg)) => assert!(msg.contains("missing-AbCdEf"), "{msg}"),
        other => panic!("expected a key error, got {other:?}"),
    }
}

/// OpenAI's webhook signing secret, read from its secret (AWS) as the
/// enqueue function does at a cold start: plain or JSON; a missing one is
/// an error naming the ARN and never the value.
#[tokio::test]
async fn the_webhook_secret_is_read_from_its_secret_plain_or_json() {
    use batchq_core::config::WebhookSecretSource;
    use batchq_core::provider::openai::resolve_webhook_secret;
    use batchq_core::webhook::signature::WebhookSecret;

    const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let endpoint = emulator_endpoint();
    let cfg = Config::from_lookup(&|k| (k == "AWS_ENDPOINT_URL").then(|| endpoint.clone())).unwrap();
    let sdk = batchq_core::aws::sdk_config(&cfg).await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let want = WebhookSecret::parse(WHSEC).unwrap();
    for value in [WHSEC.to_owned(), format!(r#"{{"OPENAI_WEBHOOK_SECRET":"{WHSEC}"}}"#)] {
        let arn = sm
            .create_secret()
            .name(unique("openai-webhook"))
            .secret_string(value)
            .send()
            .await
            .unwrap()
            .arn
            .unwrap();
        let got = resolve_webhook_secret(&WebhookSecretSource::SecretArn(arn), &sdk)
            .await
            .unwrap();
        assert_eq!(got, want);
    }
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-whsec-AbCdEf";
    let err = resolve_webhook_secret(&WebhookSecretSource::SecretArn(missing.into()), &sdk)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing-whsec-AbCdEf"), "{err}");
}
