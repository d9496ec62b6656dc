//! Logging setup: JSON lines in Lambda (CloudWatch parses them), readable text
//! elsewhere. Spans and events carry ids and counts, never prompt or
//! completion text.

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Installs the global subscriber once; later calls are no-ops.
pub fn init(config: &Config) {
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .without_time() // Lambda stamps every line already
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
