//! Logging setup: JSON lines in Lambda (CloudWatch parses them), readable text
//! elsewhere. Spans and events carry ids and counts, never prompt or
//! completion text.

use tracing::Span;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};
use crate::job::Job;

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
