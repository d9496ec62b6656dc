//! BATCHQ_PRICING_FILE replaces the bundled price table, from a local path
//! or from S3, and a broken file stops the start with a clear error.

use batchq_core::app::App;
use batchq_core::job::ProviderKind;
use batchq_core::money::Money;
use batchq_core::store::ObjectStore;
use batchq_tests::TestEnv;

const TABLE: &str = r#"{
  "source": "https://example.com/our-negotiated-prices",
  "as_of": "2026-11-01",
  "providers": {"openai": {"gpt-4o-mini": {
    "realtime": {"input": "0.10", "output": "0.40"},
    "batch": {"input": "0.05", "output": "0.20"}
  }}}
}"#;

fn input_price(app: &App) -> Option<Money> {
    app.prices
        .lookup(ProviderKind::OpenAi, "gpt-4o-mini")
        .map(|p| p.batch.input)
}

#[tokio::test]
async fn a_local_price_file_replaces_the_bundled_table() {
    let env = TestEnv::new().await;
    let path = std::env::temp_dir().join(format!("prices-{}.json", batchq_tests::unique("t")));
    std::fs::write(&path, TABLE).unwrap();
    let mut config = env.config.clone();
    config.pricing_file = Some(path.display().to_string());
    let app = App::from_config(config).await.with_configured_tables().await.unwrap();
    std::fs::remove_file(&path).unwrap();
    // 0.05 USD per 1M tokens = 50,000 picodollars per token.
    assert_eq!(input_price(&app), Some(Money::from_picodollars(50_000)));
    assert!(
        app.prices.lookup(ProviderKind::OpenAi, "gpt-4o").is_none(),
        "the file replaces the table"
    );
}

#[tokio::test]
async fn a_price_file_in_s3_replaces_the_bundled_table() {
    let env = TestEnv::new().await;
    env.s3
        .put("config/prices.json", TABLE.into(), "application/json")
        .await
        .unwrap();
    let mut config = env.config.clone();
    config.pricing_file = Some(format!("s3://{}/config/prices.json", env.config.bucket));
    let app = App::from_config(config).await.with_configured_tables().await.unwrap();
    assert_eq!(input_price(&app), Some(Money::from_picodollars(50_000)));
}

#[tokio::test]
async fn without_a_price_file_the_bundled_table_is_used() {
    let env = TestEnv::new().await;
    let app = App::from_config(env.config.clone())
        .await
        .with_configured_tables()
        .await
        .unwrap();
    // gpt-4o-mini batch input: 0.075 USD per 1M tokens.
    assert_eq!(input_price(&app), Some(Money::from_picodollars(75_000)));
}

#[tokio::test]
async fn a_missing_or_broken_price_file_is_an_error_naming_the_variable() {
    let env = TestEnv::new().await;
    for source in [
        "/nonexistent/prices.json".to_owned(),
        format!("s3://{}/no/such/key.json", env.config.bucket),
        "s3://only-a-bucket".to_owned(),
    ] {
        let err = start_error(&env, &source).await;
        assert!(err.starts_with("BATCHQ_PRICING_FILE="), "{source}: {err}");
    }
    env.s3
        .put("bad.json", r#"{"source": "x"}"#.into(), "application/json")
        .await
        .unwrap();
    let err = start_error(&env, &format!("s3://{}/bad.json", env.config.bucket)).await;
    assert!(err.contains("BATCHQ_PRICING_FILE") && err.contains("as_of"), "{err}");
}

/// The error a start with `BATCHQ_PRICING_FILE=source` fails with.
async fn start_error(env: &TestEnv, source: &str) -> String {
    let mut config = env.config.clone();
    config.pricing_file = Some(source.to_owned());
    App::from_config(config)
        .await
        .with_configured_tables()
        .await
        .err()
        .expect("the start fails")
        .to_string()
}
