//! Logging setup: JSON lines in Lambda (CloudWatch parses them), readable text
//! elsewhere, coloured only when stderr is a terminal and `NO_COLOR` is not
//! set. Spans and events carry ids and counts, never prompt or completion
//! text.

use std::ffi::OsStr;
use std::io::IsTerminal;

use tracing::Span;
use tracing_subscriber::filter::Targets;

use crate::config::{Config, LogFormat};
use crate::job::Job;

/// Installs the global subscriber once; later calls are no-ops.
pub fn init(config: &Config) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = log_filter(&config.log_filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr());
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match config.log_format {
        LogFormat::Json => registry
            .with(
                fmt.json().flatten_event(true).with_current_span(true).without_time(), // Lambda stamps every line already
            )
            .try_init(),
        LogFormat::Text => registry.with(fmt).try_init(),
    };
}

/// `BATCHQ_LOG`: a default level and `target=level` entries, comma
/// separated (`info,batchq_core=debug`); a value that does not parse logs at
/// `info`. (tracing-subscriber's `Targets`: no regex, unlike `EnvFilter`,
/// whose span and field filters batchq does not need.)
fn log_filter(spec: &str) -> Targets {
    spec.parse()
        .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO))
}

/// Whether log lines written to stderr may carry ANSI colour codes: only
/// when stderr is a terminal (a redirected log stays plain text) and
/// `NO_COLOR` is unset or empty (<https://no-color.org>).
pub fn colour_on_stderr() -> bool {
    colour_allowed(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref())
}

fn colour_allowed(terminal: bool, no_color: Option<&OsStr>) -> bool {
    terminal && no_color.is_none_or(OsStr::is_empty)
}

/// The span of one run of a pipeline step (`submit`, `poll`, `ingest`, …).
/// Log lines inside it carry the step; the Lambda handlers enter it inside
/// their own span, which carries the Lambda request id.
pub fn step_span(step: &'static str) -> Span {
    tracing::info_span!("step", step)
}

/// The span of one job a step handles: the job id and model, and the tenant
/// when the job holds requests of one tenant only (else how many tenants it
/// holds). Ids and counts only, never prompt or completion text.
pub fn job_span(step: &'static str, job: &Job) -> Span {
    let span = tracing::info_span!(
        "job",
        step,
        job = %job.id,
        model = %job.model,
        tenant = tracing::field::Empty,
        tenants = tracing::field::Empty,
    );
    record_tenants(&span, job);
    span
}

/// Records the job's tenant (or its tenant count) on `span`, once the job
/// knows them (submit learns them when it claims the requests).
pub fn record_tenants(span: &Span, job: &Job) {
    match job.tenants.as_slice() {
        [one] if job.tenant_count <= 1 => {
            span.record("tenant", tracing::field::display(one));
        }
        [] => {}
        _ => {
            span.record("tenants", job.tenant_count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::colour_allowed;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal() {
        assert!(colour_allowed(true, None));
        assert!(!colour_allowed(false, None));
    }

    #[test]
    fn no_color_set_turns_colour_off_and_empty_does_not() {
        assert!(!colour_allowed(true, Some(OsStr::new("1"))));
        assert!(!colour_allowed(false, Some(OsStr::new("1"))));
        assert!(colour_allowed(true, Some(OsStr::new(""))));
    }
}
