//! `fake-openai --port N --api-key KEY`: the fake provider as a standalone
//! server, for `make demo` and manual testing. Faults are given as JSON, e.g.
//! `--faults '{"enqueued_token_limits": {"gpt-4o": 90000}, "list_lag_ms": 2000}'`
//! for tier-1 gpt-4o's enqueued-token limit and lists two seconds behind.
//! See fake-openai/README.md for every flag and fault.
//!
//! Ctrl-C (SIGINT) and SIGTERM stop it the same way: open requests are
//! finished (for at most `GRACE`; a second signal stops at once), the
//! temporary data directory is removed, and it exits 0.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use fake_openai::{FakeConfig, FakeServer, Faults, WebhookConfig};
use tracing_subscriber::EnvFilter;

/// How long a stop waits for open requests before it ends them.
const GRACE: Duration = Duration::from_secs(10);

/// Offline fake of the OpenAI Files + Batch API (and of Azure OpenAI's,
/// Groq's, Together's and Anthropic's batch APIs) for tests and the demo.
///
/// Prints `listening on http://HOST:PORT` on stdout once it serves.
#[derive(Parser, Debug)]
#[command(
    name = "fake-openai",
    version,
    after_help = "\
Environment:
  RUST_LOG   log filter for the log lines on stderr (default: info), e.g. RUST_LOG=warn
  NO_COLOR   set (non-empty) to never colour log lines; they are coloured only on a terminal
  TMPDIR     where the temporary data directory is made when --data-dir is not given
  FAKE_OPENAI_WEBHOOK_URL, FAKE_OPENAI_WEBHOOK_SECRET, FAKE_OPENAI_WEBHOOK_RETRY_MS
             the --webhook-* flags' values when the flags are not given

Webhooks: with --webhook-url and --webhook-secret, each batch that ends POSTs
OpenAI's event (batch.completed, batch.failed, batch.expired or
batch.cancelled) there, signed the Standard Webhooks way (webhook-id,
webhook-timestamp, webhook-signature). A non-2xx answer, or none within 5 s,
is retried with exponential backoff (--webhook-retry-ms, doubling up to an
hour) for up to 72 hours. Batches then also move on their own clock
(--step-ms), without being polled.

Ctrl-C or SIGTERM stops it: open requests are finished (at most 10 s; a second
signal stops at once), the temporary data directory is removed, exit status 0.
Exit status 2: a bad flag or value; 1: it cannot start (e.g. the port is taken)."
)]
struct Args {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value_t = FakeConfig::default().host)]
    host: String,
    /// Port to listen on (0 to 65535); 0 picks a free one (the address is printed on stdout).
    #[arg(long, value_name = "PORT", default_value_t = FakeConfig::default().port)]
    port: u16,
    /// The API key clients must send (`Authorization: Bearer KEY`, `api-key` or `x-api-key`).
    #[arg(long, value_name = "KEY", default_value_t = FakeConfig::default().api_key)]
    api_key: String,
    /// Length of each batch phase (validating, in_progress, finalizing) in milliseconds; 0: a retrieve
    /// right after create sees the batch finished.
    #[arg(long, value_name = "MS", default_value_t = FakeConfig::default().step_ms)]
    step_ms: u64,
    /// Most lines an input file may have (more fails validation).
    #[arg(long, value_name = "N", default_value_t = FakeConfig::default().max_lines)]
    max_lines: u64,
    /// Largest input file in bytes (larger fails validation).
    #[arg(long, value_name = "N", default_value_t = FakeConfig::default().max_bytes)]
    max_bytes: u64,
    /// Most embedding inputs an `/v1/embeddings` batch may carry across all its requests (a string
    /// input is one, an array one per element).
    #[arg(long, value_name = "N", default_value_t = FakeConfig::default().max_embedding_inputs)]
    max_embedding_inputs: u64,
    /// Where stored files go; kept on exit. Default: a new temporary directory, removed on exit.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Fault configuration as JSON, e.g. '{"http_429": {"create": 2}, "list_lag_ms": 2000}' (every
    /// knob: fake-openai/README.md).
    #[arg(long, value_name = "JSON", value_parser = parse_faults)]
    faults: Option<Faults>,
    /// Send OpenAI's batch events (`batch.completed`, …) to this URL, as OpenAI does for a project's
    /// webhook endpoint; needs --webhook-secret.
    #[arg(
        long,
        value_name = "URL",
        env = "FAKE_OPENAI_WEBHOOK_URL",
        requires = "webhook_secret"
    )]
    webhook_url: Option<String>,
    /// The endpoint's signing secret (`whsec_` and base64) the events are signed with.
    #[arg(long, value_name = "WHSEC", env = "FAKE_OPENAI_WEBHOOK_SECRET", requires = "webhook_url",
          value_parser = parse_whsec, hide_env_values = true)]
    webhook_secret: Option<String>,
    /// Wait after an event's first failed attempt, in milliseconds; it doubles after each failure (at
    /// most an hour) and attempts stop 72 hours after the first.
    #[arg(long, value_name = "MS", env = "FAKE_OPENAI_WEBHOOK_RETRY_MS",
          default_value_t = WebhookConfig::DEFAULT_FIRST_RETRY_MS)]
    webhook_retry_ms: u64,
}

fn parse_whsec(s: &str) -> Result<String, String> {
    WebhookConfig::new("", s).key().map(|_| s.to_owned())
}

fn parse_faults(s: &str) -> Result<Faults, String> {
    serde_json::from_str(s).map_err(|e| format!("not a fault configuration: {e}"))
}

impl Args {
    fn into_config(self) -> FakeConfig {
        FakeConfig {
            api_key: self.api_key,
            host: self.host,
            port: self.port,
            step_ms: self.step_ms,
            max_lines: self.max_lines,
            max_bytes: self.max_bytes,
            max_embedding_inputs: self.max_embedding_inputs,
            data_dir: self.data_dir,
            faults: self.faults.unwrap_or_default(),
            webhook: match (self.webhook_url, self.webhook_secret) {
                (Some(url), Some(secret)) => Some(WebhookConfig {
                    first_retry_ms: self.webhook_retry_ms,
                    ..WebhookConfig::new(url, secret)
                }),
                _ => None,
            },
        }
    }
}

/// Colour in log lines only on a terminal, and never with `NO_COLOR` set
/// (https://no-color.org). The same rule as `batchq_core::telemetry`; this
/// crate does not depend on batchq-core.
fn colour_on_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn init_logs() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr())
        .init();
}

/// Resolves on the next Ctrl-C or SIGTERM, with the signal's name.
struct Stop {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Stop {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = self.term.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Bad flags: clap prints the error and usage and exits 2.
    let cfg = Args::parse().into_config();
    init_logs();
    let mut stop = match Stop::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fake-openai: cannot handle SIGTERM: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let handle = match FakeServer::start(cfg).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("fake-openai: cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("listening on http://{}", handle.addr());
    let signal = stop.next().await;
    tracing::info!(signal, "stopping: finishing open requests");
    tokio::select! {
        _ = handle.shutdown() => {}
        again = stop.next() => tracing::warn!(signal = again, "second signal: stopping without waiting"),
        _ = tokio::time::sleep(GRACE) => tracing::warn!(grace_secs = GRACE.as_secs(), "open requests still running: stopping without them"),
    }
    // The handle is gone (and with it, once the runtime has dropped the
    // connections it still served, the temporary data directory).
    tracing::info!("stopped");
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn every_argument_has_help_text() {
        let cmd = Args::command();
        for arg in cmd.get_arguments() {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(!help.trim().is_empty(), "--{} has no help text", arg.get_id());
        }
    }

    #[test]
    fn flag_values_reach_the_config() {
        let cfg = Args::try_parse_from([
            "fake-openai",
            "--port=8089",
            "--host",
            "0.0.0.0",
            "--api-key=sk-x",
            "--step-ms",
            "1500",
            "--max-lines=7",
            "--max-bytes",
            "9",
            "--max-embedding-inputs",
            "3",
            "--data-dir",
            "/some/dir",
            "--faults",
            r#"{"list_lag_ms": 2000}"#,
        ])
        .unwrap()
        .into_config();
        assert_eq!(
            (cfg.port, cfg.host.as_str(), cfg.api_key.as_str(), cfg.step_ms),
            (8089, "0.0.0.0", "sk-x", 1500)
        );
        assert_eq!((cfg.max_lines, cfg.max_bytes, cfg.max_embedding_inputs), (7, 9, 3));
        assert_eq!(cfg.data_dir.as_deref(), Some(std::path::Path::new("/some/dir")));
        assert_eq!(cfg.faults.list_lag_ms, 2000);
        assert!(cfg.webhook.is_none());
    }

    #[test]
    fn webhook_flags_reach_the_config_and_need_each_other() {
        let cfg = Args::try_parse_from([
            "fake-openai",
            "--webhook-url",
            "http://127.0.0.1:9/hook",
            "--webhook-secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "--webhook-retry-ms=250",
        ])
        .unwrap()
        .into_config();
        let w = cfg.webhook.expect("webhooks on");
        assert_eq!((w.url.as_str(), w.first_retry_ms), ("http://127.0.0.1:9/hook", 250));
        assert!(Args::try_parse_from(["fake-openai", "--webhook-url", "http://x"]).is_err());
        assert!(
            Args::try_parse_from(["fake-openai", "--webhook-url", "http://x", "--webhook-secret", "nope"]).is_err()
        );
    }
}
