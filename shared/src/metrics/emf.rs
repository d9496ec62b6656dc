//! CloudWatch Embedded Metric Format: samples as JSON log lines that
//! CloudWatch Logs turns into metrics, with no call to CloudWatch. A Lambda
//! function prints them to stdout.
//!
//! Samples with the same dimension values go in one line (at most
//! [`MAX_METRICS_PER_LINE`] metrics each); a counter sampled twice with the
//! same dimensions is summed, a gauge keeps its last value.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{Kind, Sample};
use crate::time::Timestamp;

/// CloudWatch's limit of metrics in one EMF document.
pub const MAX_METRICS_PER_LINE: usize = 100;

/// `samples` as EMF lines in `core`'s configured namespace
/// (`BATCHQ_METRICS_NAMESPACE`), stamped with its clock's now: what a
/// pipeline function prints after its run.
pub fn lines_of_run(core: &crate::pipeline::Core, samples: &[Sample]) -> Vec<String> {
    lines(&core.config.metrics_namespace, samples, core.ports.clock.now())
}

/// The EMF lines (one JSON document each, no newline) for `samples`.
pub fn lines(namespace: &str, samples: &[Sample], now: Timestamp) -> Vec<String> {
    // dimension values -> metric name -> (unit, value)
    type Values = BTreeMap<&'static str, (&'static str, f64)>;
    let mut groups: BTreeMap<Vec<(&'static str, String)>, Values> = BTreeMap::new();
    for s in samples {
        let mut dims: Vec<(&'static str, String)> = s.dims.iter().map(|(d, v)| (d.cloudwatch(), v.clone())).collect();
        dims.sort();
        let entry = groups
            .entry(dims)
            .or_default()
            .entry(s.metric.name)
            .or_insert((s.metric.unit.cloudwatch(), 0.0));
        match s.metric.kind {
            Kind::Counter => entry.1 += s.value,
            Kind::Gauge => entry.1 = s.value,
        }
    }
    let mut out = Vec::new();
    for (dims, values) in groups {
        let values: Vec<_> = values.into_iter().collect();
        for chunk in values.chunks(MAX_METRICS_PER_LINE) {
            let mut doc = Map::new();
            let names: Vec<&str> = dims.iter().map(|(d, _)| *d).collect();
            doc.insert(
                "_aws".into(),
                json!({
                    "Timestamp": now.millis(),
                    "CloudWatchMetrics": [{
                        "Namespace": namespace,
                        "Dimensions": [names],
                        "Metrics": chunk.iter().map(|(name, (unit, _))| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
                    }],
                }),
            );
            for (d, v) in &dims {
                doc.insert((*d).into(), Value::String(v.clone()));
            }
            for (name, (_, value)) in chunk {
                doc.insert((*name).into(), json!(value));
            }
            out.push(Value::Object(doc).to_string());
        }
    }
    out
}

/// Prints the EMF lines for `samples` to stdout, where the Lambda runtime
/// sends them to CloudWatch Logs.
pub fn print(namespace: &str, samples: &[Sample], now: Timestamp) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    for line in lines(namespace, samples, now) {
        let _ = writeln!(stdout, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Dim, Metric, BATCH_SPEND, QUEUE_DEPTH, REQUESTS_COMPLETED};

    #[test]
    fn samples_with_the_same_dimensions_share_a_line_and_counters_add_up() {
        let samples = vec![
            Sample::new(&REQUESTS_COMPLETED, 2.0),
            Sample::new(&REQUESTS_COMPLETED, 3.0),
            Sample::new(&BATCH_SPEND, 0.5),
            Sample::new(&QUEUE_DEPTH, 4.0).with(Dim::Model, "m"),
        ];
        let lines = lines("batchq", &samples, Timestamp::from_millis(1_000));
        assert_eq!(lines.len(), 2);
        let docs: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        let plain = docs.iter().find(|d| d.get("Model").is_none()).unwrap();
        assert_eq!(plain["RequestsCompleted"], 5.0);
        assert_eq!(plain["_aws"]["Timestamp"], 1_000);
        assert_eq!(plain["_aws"]["CloudWatchMetrics"][0]["Namespace"], "batchq");
        assert_eq!(plain["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
        let per_model = docs.iter().find(|d| d.get("Model").is_some()).unwrap();
        assert_eq!(per_model["QueueDepth"], 4.0);
        assert_eq!(
            per_model["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Model"]])
        );
    }

    #[test]
    fn a_line_holds_at_most_one_hundred_metrics() {
        let metrics: Vec<&'static Metric> = (0..150)
            .map(|i| {
                &*Box::leak(Box::new(Metric {
                    name: Box::leak(format!("M{i}").into_boxed_str()),
                    ..REQUESTS_COMPLETED
                }))
            })
            .collect();
        let samples: Vec<Sample> = metrics.into_iter().map(|m| Sample::new(m, 1.0)).collect();
        let lines = lines("ns", &samples, Timestamp::from_millis(0));
        assert_eq!(lines.len(), 2);
        for l in &lines {
            let v: Value = serde_json::from_str(l).unwrap();
            assert!(v["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().len() <= MAX_METRICS_PER_LINE);
        }
    }
}
