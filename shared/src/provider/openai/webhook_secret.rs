//! OpenAI's webhook signing secret: from the environment (local use), or
//! read once per cold start from Secrets Manager (AWS). The secret holds a
//! plain `whsec_…` string, or JSON with it under `OPENAI_WEBHOOK_SECRET`
//! (or `webhook_secret`).

use thiserror::Error;

use crate::config::{WebhookSecretSource, OPENAI_WEBHOOK_SECRET};
use crate::webhook::signature::WebhookSecret;

/// Why the signing secret could not be had. Never carries the secret.
#[derive(Debug, Error)]
pub enum WebhookSecretError {
    #[error("reading OpenAI's webhook secret from {arn}: {reason}")]
    Read { arn: String, reason: String },
    #[error("secret {arn} holds no webhook secret (a plain whsec_… string, or JSON with OPENAI_WEBHOOK_SECRET)")]
    Unusable { arn: String },
}

/// The signing secret `source` names; a Secrets Manager ARN is read now.
pub async fn resolve_webhook_secret(
    source: &WebhookSecretSource,
    sdk: &aws_config::SdkConfig,
) -> Result<WebhookSecret, WebhookSecretError> {
    match source {
        WebhookSecretSource::Literal(secret) => Ok(secret.clone()),
        WebhookSecretSource::SecretArn(arn) => {
            let client = aws_sdk_secretsmanager::Client::new(sdk);
            let out = client
                .get_secret_value()
                .secret_id(arn)
                .send()
                .await
                .map_err(|e| WebhookSecretError::Read {
                    arn: arn.clone(),
                    reason: crate::error::chain(&e),
                })?;
            out.secret_string()
                .and_then(parse_secret)
                .ok_or_else(|| WebhookSecretError::Unusable { arn: arn.clone() })
        }
    }
}

/// A plain `whsec_…` value, or JSON holding it.
fn parse_secret(raw: &str) -> Option<WebhookSecret> {
    let raw = raw.trim();
    let text = if raw.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(raw).ok()?;
        [OPENAI_WEBHOOK_SECRET, "webhook_secret"]
            .into_iter()
            .find_map(|k| v.get(k).and_then(|x| x.as_str()))?
            .to_owned()
    } else {
        raw.to_owned()
    };
    WebhookSecret::parse(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn the_secret_may_be_plain_or_json() {
        let want = WebhookSecret::parse(WHSEC).unwrap();
        assert_eq!(parse_secret(&format!("{WHSEC}\n")), Some(want.clone()));
        assert_eq!(
            parse_secret(&format!(r#"{{"OPENAI_WEBHOOK_SECRET":"{WHSEC}"}}"#)),
            Some(want)
        );
        assert_eq!(parse_secret(r#"{"OPENAI_API_KEY":"sk-1"}"#), None);
        assert_eq!(parse_secret(""), None);
        assert_eq!(parse_secret("whsec_not base64!"), None);
    }
}
