//! The metrics batchq publishes, named once: [`ALL`] lists every metric
//! with its CloudWatch name, Prometheus name, kind, unit and dimensions.
//! The CloudWatch Embedded Metric Format writer ([`emf`]), the Prometheus
//! registry ([`prometheus`]) and the template's dashboard and alarms (a test
//! cross-checks `infra/template.yaml`) all draw from this list.
//!
//! The pipeline and the API only report what happened (their run reports,
//! a budget warning through [`MetricsSink`]); the functions here turn those
//! reports into [`Sample`]s, and only the wiring (the Lambda handlers,
//! `batchq serve`) hands samples to an output format.

pub mod emf;
pub mod prometheus;

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::job::JobStatus;
pub use crate::pipeline::queue::{queue_levels, QueueLevel};
use crate::pipeline::{IngestReport, PollReport, SubmitReport};
use crate::ports::Ports;
use crate::request::QueueGroup;
use crate::store::StoreError;

/// Counter: how many times something happened since the last report
/// (CloudWatch sums the values; Prometheus keeps a running `_total`).
/// Gauge: a level at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// A metric's unit, as CloudWatch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
    /// US dollars (CloudWatch has no currency unit: `None`).
    Dollars,
}

impl Unit {
    pub fn cloudwatch(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Seconds => "Seconds",
            Self::Dollars => "None",
        }
    }
}

/// A dimension (CloudWatch) or label (Prometheus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dim {
    /// The provider instance of a queue group.
    Provider,
    /// The endpoint (url) of a queue group.
    Endpoint,
    Model,
    /// A job status.
    Status,
    /// A provider error's kind ([`crate::provider::ProviderError::kind`]).
    ErrorKind,
    /// A budget period: `daily` or `monthly`.
    Period,
}

impl Dim {
    pub fn cloudwatch(self) -> &'static str {
        match self {
            Self::Provider => "Provider",
            Self::Endpoint => "Endpoint",
            Self::Model => "Model",
            Self::Status => "Status",
            Self::ErrorKind => "ErrorKind",
            Self::Period => "Period",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Endpoint => "endpoint",
            Self::Model => "model",
            Self::Status => "status",
            Self::ErrorKind => "kind",
            Self::Period => "period",
        }
    }
}

/// One metric: both its names, what it is, and the dimensions it is
/// published with. A metric published per queue group is also published
/// without dimensions (the total, or for an age the largest), which is what
/// the alarms watch.
#[derive(Debug, PartialEq, Eq)]
pub struct Metric {
    /// The CloudWatch metric name (namespace `BATCHQ_METRICS_NAMESPACE`).
    pub name: &'static str,
    /// The Prometheus name (`batchq_…`, counters end in `_total`).
    pub prometheus: &'static str,
    pub kind: Kind,
    pub unit: Unit,
    pub dims: &'static [Dim],
    pub help: &'static str,
}

const GROUP: &[Dim] = &[Dim::Provider, Dim::Endpoint, Dim::Model];

pub const QUEUE_DEPTH: Metric = Metric {
    name: "QueueDepth",
    prometheus: "batchq_queue_depth",
    kind: Kind::Gauge,
    unit: Unit::Count,
    dims: GROUP,
    help: "Queued requests per queue group (provider, endpoint, model); without dimensions, all groups.",
};
pub const OLDEST_QUEUED_AGE: Metric = Metric {
    name: "OldestQueuedAge",
    prometheus: "batchq_oldest_queued_age_seconds",
    kind: Kind::Gauge,
    unit: Unit::Seconds,
    dims: GROUP,
    help: "Age of the oldest queued request per queue group; without dimensions, the oldest of all.",
};
pub const JOBS: Metric = Metric {
    name: "Jobs",
    prometheus: "batchq_jobs",
    kind: Kind::Gauge,
    unit: Unit::Count,
    dims: &[Dim::Status],
    help: "Unfinished jobs (provider batches) by status.",
};
pub const REQUESTS_COMPLETED: Metric = Metric {
    name: "RequestsCompleted",
    prometheus: "batchq_requests_completed_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    dims: &[],
    help: "Requests finished with a provider answer (completed).",
};
pub const REQUESTS_FAILED: Metric = Metric {
    name: "RequestsFailed",
    prometheus: "batchq_requests_failed_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    dims: &[],
    help: "Requests finished failed (a non-retryable error or attempts used up).",
};
pub const REQUESTS_RETRIED: Metric = Metric {
    name: "RequestsRetried",
    prometheus: "batchq_requests_retried_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    dims: &[],
    help: "Requests sent back to the queue for another attempt.",
};
pub const PROVIDER_ERRORS: Metric = Metric {
    name: "ProviderErrors",
    prometheus: "batchq_provider_errors_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    dims: &[Dim::ErrorKind],
    help: "Provider API calls that failed (after the client's own retries), by kind.",
};
pub const BATCH_SPEND: Metric = Metric {
    name: "BatchSpendUsd",
    prometheus: "batchq_batch_spend_usd_total",
    kind: Kind::Counter,
    unit: Unit::Dollars,
    dims: &[],
    help: "What ingested results cost at Batch API prices, in US dollars (priced models only).",
};
pub const SAVINGS: Metric = Metric {
    name: "SavedUsd",
    prometheus: "batchq_saved_usd_total",
    kind: Kind::Counter,
    unit: Unit::Dollars,
    dims: &[],
    help: "Real-time cost minus batch cost of ingested results, in US dollars (priced models only).",
};
pub const BUDGET_WARNINGS: Metric = Metric {
    name: "BudgetWarnings",
    prometheus: "batchq_budget_warnings_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    dims: &[Dim::Period],
    help: "Enqueues that took a tenant's spend past 80% of a budget, by period.",
};

pub const WEBHOOK_OLDEST_UNDELIVERED_AGE: Metric = Metric {
    name: "WebhookOldestUndeliveredAge",
    prometheus: "batchq_webhook_oldest_undelivered_age_seconds",
    kind: Kind::Gauge,
    unit: Unit::Seconds,
    dims: &[],
    help: "Age of the oldest webhook event not yet delivered to an enabled endpoint (a pending delivery, or a feed entry not yet made into deliveries); 0 when none waits.",
};
pub const WEBHOOK_ATTEMPTS: Metric = Metric {
    name: "WebhookAttempts",
    prometheus: "batchq_webhook_attempts_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    dims: &[],
    help: "Webhook deliveries attempted (POSTs made to endpoints).",
};
pub const WEBHOOKS_DELIVERED: Metric = Metric {
    name: "WebhooksDelivered",
    prometheus: "batchq_webhooks_delivered_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    dims: &[],
    help: "Webhook deliveries answered 2xx.",
};
pub const WEBHOOKS_FAILED: Metric = Metric {
    name: "WebhooksFailed",
    prometheus: "batchq_webhooks_failed_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    dims: &[],
    help: "Webhook deliveries that ran out of retries (kept as failed, replayable).",
};

/// Every metric batchq publishes.
pub const ALL: &[&Metric] = &[
    &QUEUE_DEPTH,
    &OLDEST_QUEUED_AGE,
    &JOBS,
    &REQUESTS_COMPLETED,
    &REQUESTS_FAILED,
    &REQUESTS_RETRIED,
    &PROVIDER_ERRORS,
    &BATCH_SPEND,
    &SAVINGS,
    &BUDGET_WARNINGS,
    &WEBHOOK_OLDEST_UNDELIVERED_AGE,
    &WEBHOOK_ATTEMPTS,
    &WEBHOOKS_DELIVERED,
    &WEBHOOKS_FAILED,
];

/// The metric named `name` (CloudWatch name).
pub fn by_name(name: &str) -> Option<&'static Metric> {
    ALL.iter().copied().find(|m| m.name == name)
}

/// One value of one metric, with its dimension values (a subset of the
/// metric's dimensions: empty for the all-groups figure).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub metric: &'static Metric,
    pub dims: Vec<(Dim, String)>,
    pub value: f64,
}

impl Sample {
    pub fn new(metric: &'static Metric, value: f64) -> Self {
        Self {
            metric,
            dims: Vec::new(),
            value,
        }
    }

    pub fn with(mut self, dim: Dim, value: impl Into<String>) -> Self {
        self.dims.push((dim, value.into()));
        self
    }
}

/// Where the API reports what it did that a metric counts (a budget
/// warning). The wiring gives it an adapter: the Lambda handler collects
/// and prints EMF lines, `batchq serve` counts them for `/metrics`.
pub trait MetricsSink: Send + Sync {
    fn record(&self, samples: Vec<Sample>);
}

/// Records nothing (the default).
pub struct NoMetrics;

impl MetricsSink for NoMetrics {
    fn record(&self, _: Vec<Sample>) {}
}

/// Keeps what it is given until taken (the Lambda handler takes and prints
/// them after each invocation).
#[derive(Default)]
pub struct Collected(Mutex<Vec<Sample>>);

impl Collected {
    pub fn take(&self) -> Vec<Sample> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl MetricsSink for Collected {
    fn record(&self, samples: Vec<Sample>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend(samples);
    }
}

fn dollars(m: crate::money::Money) -> f64 {
    m.picodollars() as f64 / crate::money::Money::PICOS_PER_DOLLAR as f64
}

/// The kinds that occurred (a CloudWatch metric costs by the month once
/// published, so kinds never seen are not written; an alarm on one treats
/// missing data as fine).
fn provider_errors(errors: &BTreeMap<String, u64>) -> Vec<Sample> {
    errors
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(kind, n)| Sample::new(&PROVIDER_ERRORS, *n as f64).with(Dim::ErrorKind, kind.clone()))
        .collect()
}

/// What a submit run reports: its provider errors, and the requests it
/// failed or sent back (a batch it could not submit).
pub fn from_submit(report: &SubmitReport) -> Vec<Sample> {
    let mut out = provider_errors(&report.provider_errors);
    out.push(Sample::new(&REQUESTS_FAILED, report.requests_failed as f64));
    out.push(Sample::new(&REQUESTS_RETRIED, report.requests_retried as f64));
    out
}

/// What a poll run reports: the queue per group (it read it for the queue
/// age), the unfinished jobs by status as the run left them, the requests
/// its failed batches failed or sent back, and its provider errors.
pub fn from_poll(report: &PollReport) -> Vec<Sample> {
    let mut out = queue_samples(&report.queue);
    for status in JobStatus::ALL.iter().filter(|s| !s.is_terminal()) {
        let n = report.open_jobs.get(status.as_str()).copied().unwrap_or(0);
        out.push(Sample::new(&JOBS, n as f64).with(Dim::Status, status.as_str()));
    }
    out.push(Sample::new(&REQUESTS_FAILED, report.requests_failed as f64));
    out.push(Sample::new(&REQUESTS_RETRIED, report.requests_retried as f64));
    out.extend(provider_errors(&report.provider_errors));
    out
}

/// What one endpoint's delivery pass in `batchq serve` did: its attempts,
/// deliveries and give-ups (the oldest undelivered age is a gauge there,
/// read at each scrape).
pub fn from_pass(report: &crate::pipeline::dispatch::PassReport) -> Vec<Sample> {
    vec![
        Sample::new(&WEBHOOK_ATTEMPTS, report.attempts() as f64),
        Sample::new(&WEBHOOKS_DELIVERED, report.delivered as f64),
        Sample::new(&WEBHOOKS_FAILED, report.failed as f64),
    ]
}

/// What a deliver run reports: its attempts, deliveries and give-ups, and
/// the age of the oldest event still waiting.
pub fn from_deliver(report: &crate::pipeline::dispatch::RunReport) -> Vec<Sample> {
    vec![
        Sample::new(&WEBHOOK_OLDEST_UNDELIVERED_AGE, report.oldest_undelivered_secs as f64),
        Sample::new(&WEBHOOK_ATTEMPTS, report.attempts() as f64),
        Sample::new(&WEBHOOKS_DELIVERED, report.delivered as f64),
        Sample::new(&WEBHOOKS_FAILED, report.failed as f64),
    ]
}

/// What ingesting result files reports: requests completed, failed and
/// retried, and the batch spend and savings of the files it counted (a
/// replayed file adds nothing).
pub fn from_ingest<'a>(reports: impl IntoIterator<Item = &'a IngestReport>) -> Vec<Sample> {
    let (mut completed, mut failed, mut retried) = (0u64, 0u64, 0u64);
    let mut spend = crate::money::Money::ZERO;
    let mut saved = crate::money::Money::ZERO;
    for r in reports {
        completed += r.completed;
        failed += r.failed;
        retried += r.requeued;
        if r.counted {
            spend += r.totals.batch_cost;
            saved += r.totals.realtime_cost - r.totals.batch_cost;
        }
    }
    vec![
        Sample::new(&REQUESTS_COMPLETED, completed as f64),
        Sample::new(&REQUESTS_FAILED, failed as f64),
        Sample::new(&REQUESTS_RETRIED, retried as f64),
        Sample::new(&BATCH_SPEND, dollars(spend)),
        Sample::new(&SAVINGS, dollars(saved)),
    ]
}

/// A budget warning (a tenant's spend crossed 80% of a period's limit).
pub fn budget_warning(period: &str) -> Vec<Sample> {
    vec![Sample::new(&BUDGET_WARNINGS, 1.0).with(Dim::Period, period)]
}

/// The queue depth and oldest age per group, and over all groups.
pub fn queue_samples(levels: &[QueueLevel]) -> Vec<Sample> {
    let mut out = Vec::new();
    let (mut total, mut oldest) = (0u64, 0u64);
    for l in levels {
        let Some(g) = QueueGroup::from_key(&l.group) else {
            continue;
        };
        let dims = |m: &'static Metric, v: f64| {
            Sample::new(m, v)
                .with(Dim::Provider, g.provider.as_str())
                .with(Dim::Endpoint, g.endpoint.as_str())
                .with(Dim::Model, g.model.as_str())
        };
        out.push(dims(&QUEUE_DEPTH, l.queued as f64));
        let age = l.oldest_age_seconds.unwrap_or(0);
        out.push(dims(&OLDEST_QUEUED_AGE, age as f64));
        total += l.queued;
        oldest = oldest.max(age);
    }
    out.push(Sample::new(&QUEUE_DEPTH, total as f64));
    out.push(Sample::new(&OLDEST_QUEUED_AGE, oldest as f64));
    out
}

/// The gauges as the store has them now (what `/metrics` reads at each
/// scrape): the queue per group and the unfinished jobs by status.
pub async fn store_gauges(ports: &Ports) -> Result<Vec<Sample>, StoreError> {
    let mut out = queue_samples(&queue_levels(ports).await?);
    let mut by_status: BTreeMap<&'static str, u64> = BTreeMap::new();
    for j in ports.jobs.open_jobs().await? {
        *by_status.entry(j.status.as_str()).or_default() += 1;
    }
    for status in JobStatus::ALL.iter().filter(|s| !s.is_terminal()) {
        let n = by_status.get(status.as_str()).copied().unwrap_or(0);
        out.push(Sample::new(&JOBS, n as f64).with(Dim::Status, status.as_str()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_distinct_names_and_counters_end_in_total() {
        let mut names = std::collections::HashSet::new();
        for m in ALL {
            assert!(names.insert(m.name), "{} listed twice", m.name);
            assert!(names.insert(m.prometheus), "{} listed twice", m.prometheus);
            assert!(m.prometheus.starts_with("batchq_"));
            assert_eq!(m.kind == Kind::Counter, m.prometheus.ends_with("_total"), "{}", m.name);
        }
    }

    #[test]
    fn queue_samples_give_each_group_and_the_total_and_oldest_of_all() {
        let levels = vec![
            QueueLevel {
                group: "openai /v1/chat/completions gpt-4o-mini".into(),
                queued: 3,
                oldest_age_seconds: Some(50),
            },
            QueueLevel {
                group: "openai /v1/embeddings text-embedding-3-small".into(),
                queued: 4,
                oldest_age_seconds: Some(70),
            },
        ];
        let s = queue_samples(&levels);
        let total = s
            .iter()
            .find(|s| s.metric == &QUEUE_DEPTH && s.dims.is_empty())
            .unwrap();
        assert_eq!(total.value, 7.0);
        let oldest = s
            .iter()
            .find(|s| s.metric == &OLDEST_QUEUED_AGE && s.dims.is_empty())
            .unwrap();
        assert_eq!(oldest.value, 70.0);
        let one = s
            .iter()
            .find(|s| s.metric == &QUEUE_DEPTH && s.dims.contains(&(Dim::Model, "gpt-4o-mini".into())))
            .unwrap();
        assert_eq!(one.value, 3.0);
    }
}
