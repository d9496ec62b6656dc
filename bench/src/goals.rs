//! The goals of issue #20 ("Lean"), in one table: what `make bench` prints
//! next to each figure with `ok` or `over`, and writes to
//! `bench/results.json` (`goals`).
//!
//! The emulator-call goals are "fewer than before #20": their bounds are the
//! figures `make bench` printed before that work (docs/performance.md):
//! submit 22.8 DynamoDB + 0.85 S3 calls, ingest 41.5 + 0.10, per 1,000
//! requests.

use serde::Serialize;

/// How a figure must stand to its target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Bound {
    AtMost(f64),
    Below(f64),
    AtLeast(f64),
}

impl Bound {
    pub fn holds(self, figure: f64) -> bool {
        match self {
            Bound::AtMost(b) => figure <= b,
            Bound::Below(b) => figure < b,
            Bound::AtLeast(b) => figure >= b,
        }
    }

    fn text(self, unit: &str) -> String {
        let (op, b) = match self {
            Bound::AtMost(b) => ("<=", b),
            Bound::Below(b) => ("<", b),
            Bound::AtLeast(b) => (">=", b),
        };
        format!("{op} {}{unit}", trim(b))
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// What a goal measures: the figure it is judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Figure {
    /// AWS overhead as a percentage of the saving, requests enqueued in bulk.
    OverheadPctBulk,
    /// The same, requests enqueued one per call.
    OverheadPctSingle,
    /// DynamoDB write units per request over its life, enqueued in bulk.
    WcuPerRequestBulk,
    /// Bytes of a function binary (by name), in MB (10^6 bytes).
    BinaryMb(&'static str),
    /// The slowest function's median start-to-ready time, ms.
    StartToReadyMs,
    /// Result parsing throughput over the `IgnoredAny` floor.
    ParseRatio,
    /// Emulator calls (DynamoDB + S3) per 1,000 requests, submit phase.
    SubmitCallsPer1000,
    /// The same, ingest phase.
    IngestCallsPer1000,
    /// batchq's own `aws_overhead_usd` for the end-to-end run against the
    /// cost model's total for it: |difference| in percent of the model's.
    RecordedOverheadDiffPct,
}

#[derive(Debug, Clone, Copy)]
pub struct Goal {
    pub figure: Figure,
    pub what: &'static str,
    pub bound: Bound,
    pub unit: &'static str,
}

/// Issue #20's goals.
pub const GOALS: &[Goal] = &[
    Goal {
        figure: Figure::OverheadPctBulk,
        what: "AWS overhead / saving, bulk enqueue",
        bound: Bound::AtMost(5.0),
        unit: "%",
    },
    Goal {
        figure: Figure::OverheadPctSingle,
        what: "AWS overhead / saving, single enqueue",
        bound: Bound::AtMost(10.0),
        unit: "%",
    },
    Goal {
        figure: Figure::WcuPerRequestBulk,
        what: "DynamoDB WCU per request over its life (bulk)",
        bound: Bound::AtMost(4.0),
        unit: "",
    },
    Goal {
        figure: Figure::BinaryMb("batchq-enqueue"),
        what: "binary batchq-enqueue",
        bound: Bound::Below(8.0),
        unit: " MB",
    },
    Goal {
        figure: Figure::BinaryMb("batchq-submit"),
        what: "binary batchq-submit",
        bound: Bound::Below(8.0),
        unit: " MB",
    },
    Goal {
        figure: Figure::BinaryMb("batchq-poll"),
        what: "binary batchq-poll",
        bound: Bound::Below(8.0),
        unit: " MB",
    },
    Goal {
        figure: Figure::BinaryMb("batchq-ingest"),
        what: "binary batchq-ingest",
        bound: Bound::Below(8.0),
        unit: " MB",
    },
    Goal {
        figure: Figure::BinaryMb("batchq-deliver"),
        what: "binary batchq-deliver",
        bound: Bound::Below(8.0),
        unit: " MB",
    },
    Goal {
        figure: Figure::StartToReadyMs,
        what: "start to ready (slowest function's median)",
        bound: Bound::Below(20.0),
        unit: " ms",
    },
    Goal {
        figure: Figure::ParseRatio,
        what: "parse result JSONL / IgnoredAny floor",
        bound: Bound::AtLeast(0.8),
        unit: "x",
    },
    Goal {
        figure: Figure::SubmitCallsPer1000,
        what: "emulator calls per 1,000 requests, submit",
        bound: Bound::Below(22.8 + 0.85),
        unit: "",
    },
    Goal {
        figure: Figure::IngestCallsPer1000,
        what: "emulator calls per 1,000 requests, ingest",
        bound: Bound::Below(41.5 + 0.10),
        unit: "",
    },
    Goal {
        figure: Figure::RecordedOverheadDiffPct,
        what: "batchq's aws_overhead_usd vs the cost model (|diff|)",
        bound: Bound::AtMost(1.0),
        unit: "%",
    },
];

/// A goal against the run's figure (`None`: the run did not measure it).
#[derive(Debug, Clone, Serialize)]
pub struct Judged {
    pub figure: Figure,
    pub what: String,
    pub value: Option<f64>,
    pub target: String,
    pub bound: Bound,
    /// `Some(true)` ok, `Some(false)` over, `None` not measured.
    pub met: Option<bool>,
}

impl Judged {
    pub fn verdict(&self) -> &'static str {
        match self.met {
            Some(true) => "ok",
            Some(false) => "over",
            None => "not measured",
        }
    }
}

/// Judges every goal of [`GOALS`] on the figures `value_of` gives.
pub fn judge(value_of: impl Fn(Figure) -> Option<f64>) -> Vec<Judged> {
    GOALS
        .iter()
        .map(|g| {
            let value = value_of(g.figure).filter(|v| v.is_finite());
            Judged {
                figure: g.figure,
                what: g.what.to_owned(),
                value,
                target: g.bound.text(g.unit),
                bound: g.bound,
                met: value.map(|v| g.bound.holds(v)),
            }
        })
        .collect()
}

/// The figure as printed beside its goal.
pub fn shown(j: &Judged, unit: &str) -> String {
    match j.value {
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}{unit}"),
        Some(v) => format!("{v:.2}{unit}"),
        None => "-".to_owned(),
    }
}

/// The unit of a goal's figure.
pub fn unit_of(figure: Figure) -> &'static str {
    GOALS.iter().find(|g| g.figure == figure).map_or("", |g| g.unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bound_is_judged_on_its_own_side_and_edge() {
        assert!(Bound::AtMost(5.0).holds(5.0));
        assert!(!Bound::AtMost(5.0).holds(5.01));
        assert!(!Bound::Below(8.0).holds(8.0));
        assert!(Bound::Below(8.0).holds(7.99));
        assert!(Bound::AtLeast(0.8).holds(0.8));
        assert!(!Bound::AtLeast(0.8).holds(0.79));
    }

    #[test]
    fn a_figure_over_its_goal_is_over_and_a_missing_one_is_not_measured() {
        let judged = judge(|f| match f {
            Figure::ParseRatio => Some(0.66),
            Figure::BinaryMb(_) => Some(7.5),
            Figure::StartToReadyMs => Some(f64::NAN),
            _ => None,
        });
        assert_eq!(judged.len(), GOALS.len());
        let by = |f: Figure| judged.iter().find(|j| j.figure == f).unwrap();
        assert_eq!(by(Figure::ParseRatio).verdict(), "over");
        assert_eq!(by(Figure::BinaryMb("batchq-ingest")).verdict(), "ok");
        assert_eq!(by(Figure::StartToReadyMs).verdict(), "not measured");
        assert_eq!(by(Figure::OverheadPctBulk).verdict(), "not measured");
        assert_eq!(by(Figure::ParseRatio).target, ">= 0.8x");
        assert_eq!(by(Figure::SubmitCallsPer1000).target, "< 23.65");
    }

    #[test]
    fn every_function_binary_has_a_size_goal() {
        for name in [
            "batchq-enqueue",
            "batchq-submit",
            "batchq-poll",
            "batchq-ingest",
            "batchq-deliver",
        ] {
            assert!(GOALS.iter().any(|g| g.figure == Figure::BinaryMb(name)), "{name}");
        }
    }
}
