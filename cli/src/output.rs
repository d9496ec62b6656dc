//! How the CLI talks: logs and progress on stderr, results on stdout, either
//! for people or as one JSON document (`--json`).

use std::io::IsTerminal;

use batchq_core::config::Config;
use serde_json::Value;

/// Logs go to stderr. One-shot commands log warnings only unless
/// `BATCHQ_LOG` asks for more; `serve` logs at the configured level.
pub fn init_logs(config: &Config, quiet: bool) {
    let mut config = config.clone();
    if quiet && std::env::var_os("BATCHQ_LOG").is_none() {
        config.log_filter = "warn".into();
    }
    batchq_core::telemetry::init(&config);
}

/// Prints `value` as JSON, or the human text.
pub fn emit(json: bool, value: &Value, human: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        let text = human();
        if !text.is_empty() {
            println!("{text}");
        }
    }
}

/// Progress bars only when a person watches stderr.
pub fn progress_allowed(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// `$0.000123` style, from an exact decimal string such as `"0.000123"`.
pub fn usd(v: &Value) -> String {
    match v.as_str() {
        Some(s) => format!("${s}"),
        None => "unknown".into(),
    }
}

/// A value as plain text (strings without quotes, null as `-`).
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
