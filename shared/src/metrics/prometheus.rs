//! The Prometheus text exposition format (version 0.0.4) for `batchq
//! serve`'s `GET /metrics`: counters kept in the process since it started
//! (the `_total`s), gauges read from the store at each scrape and handed to
//! [`Registry::render`].

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use super::{Dim, Kind, MetricsSink, Sample, ALL};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Vec<(Dim, String)>;

/// The running counters of one process.
#[derive(Default)]
pub struct Registry {
    counters: Mutex<BTreeMap<(&'static str, Labels), f64>>,
}

impl Registry {
    /// A registry whose counters start at zero for the label values known
    /// up front (every provider error kind, both budget periods), so a
    /// scrape lists them before the first one happens.
    pub fn new() -> Self {
        let r = Self::default();
        let mut seed = vec![
            Sample::new(&super::REQUESTS_COMPLETED, 0.0),
            Sample::new(&super::REQUESTS_FAILED, 0.0),
            Sample::new(&super::REQUESTS_RETRIED, 0.0),
            Sample::new(&super::BATCH_SPEND, 0.0),
            Sample::new(&super::SAVINGS, 0.0),
            Sample::new(&super::WEBHOOK_ATTEMPTS, 0.0),
            Sample::new(&super::WEBHOOKS_DELIVERED, 0.0),
            Sample::new(&super::WEBHOOKS_FAILED, 0.0),
        ];
        for kind in crate::provider::ProviderError::KINDS {
            seed.push(Sample::new(&super::PROVIDER_ERRORS, 0.0).with(Dim::ErrorKind, *kind));
        }
        for period in crate::spend::Period::ALL {
            seed.push(Sample::new(&super::BUDGET_WARNINGS, 0.0).with(Dim::Period, period.as_str()));
        }
        r.record(seed);
        r
    }

    /// The exposition: every metric with its HELP and TYPE lines, the
    /// counters of this registry and the `gauges` given.
    pub fn render(&self, gauges: &[Sample]) -> String {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut out = String::new();
        for m in ALL {
            let _ = writeln!(out, "# HELP {} {}", m.prometheus, m.help);
            let kind = match m.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# TYPE {} {kind}", m.prometheus);
            match m.kind {
                Kind::Counter => {
                    for ((name, labels), v) in &counters {
                        if *name == m.name {
                            sample_line(&mut out, m.prometheus, labels, *v);
                        }
                    }
                }
                Kind::Gauge => {
                    for s in gauges.iter().filter(|s| s.metric.name == m.name) {
                        sample_line(&mut out, m.prometheus, &s.dims, s.value);
                    }
                }
            }
        }
        out
    }
}

impl MetricsSink for Registry {
    /// Adds counter samples to their running totals (gauges are read at
    /// scrape time, not kept).
    fn record(&self, samples: Vec<Sample>) {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        for s in samples {
            if s.metric.kind == Kind::Counter {
                let mut labels = s.dims;
                labels.sort();
                *counters.entry((s.metric.name, labels)).or_default() += s.value;
            }
        }
    }
}

fn sample_line(out: &mut String, name: &str, labels: &[(Dim, String)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (d, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{}=\"{}\"", d.label(), escape(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A label value as the text format quotes it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{QUEUE_DEPTH, REQUESTS_COMPLETED};

    #[test]
    fn counters_add_up_across_records_and_gauges_come_from_the_scrape() {
        let r = Registry::new();
        r.record(vec![Sample::new(&REQUESTS_COMPLETED, 2.0)]);
        r.record(vec![Sample::new(&REQUESTS_COMPLETED, 3.0)]);
        let text = r.render(&[Sample::new(&QUEUE_DEPTH, 7.0).with(Dim::Model, "a\"b")]);
        assert!(text.contains("# TYPE batchq_requests_completed_total counter\n"));
        assert!(text.contains("\nbatchq_requests_completed_total 5\n"), "{text}");
        assert!(text.contains("\nbatchq_queue_depth{model=\"a\\\"b\"} 7\n"), "{text}");
        assert!(
            text.contains("batchq_budget_warnings_total{period=\"daily\"} 0\n"),
            "{text}"
        );
    }
}
