use super::*;
use crate::analyze::log_line::*;
use crate::analyze::terms::*;
use batchq_core::job::ProviderKind;

const DAY: Duration = Duration::from_secs(86_400);

fn run(log: &str, min_wait: Duration) -> Analysis {
    analyze(log.as_bytes(), &PriceBook::bundled(), min_wait).unwrap()
}

fn usd(s: &str) -> Money {
    Money::parse_decimal(s).unwrap()
}

fn group<'a>(a: &'a Analysis, category: &str, model: &str) -> &'a Group {
    a.groups
        .iter()
        .find(|g| g.category.as_str() == category && g.model.as_str() == model)
        .unwrap_or_else(|| panic!("no group {category} / {model} in {:?}", a.groups))
}

fn problems(a: &Analysis) -> Vec<(u64, LineProblem)> {
    a.malformed.iter().map(|m| (m.line, m.problem.clone())).collect()
}

#[test]
fn a_call_is_batchable_when_its_tolerance_reaches_the_minimum_wait() {
    let log = r#"
{"model": "gpt-4o-mini", "input_tokens": 1000, "max_latency_seconds": 86400, "category": "exactly-a-day"}
{"model": "gpt-4o-mini", "input_tokens": 1000, "max_latency_seconds": 86399, "category": "a-second-short"}
"#;
    let a = run(log, DEFAULT_MIN_WAIT);
    assert_eq!(group(&a, "exactly-a-day", "gpt-4o-mini").totals.batchable_calls, 1);
    assert_eq!(group(&a, "a-second-short", "gpt-4o-mini").totals.batchable_calls, 0);
    // A lower threshold makes the second one batchable too.
    let a = run(log, Duration::from_secs(3600));
    assert_eq!(a.totals.batchable_calls, 2);
}

#[test]
fn latency_labels_stand_for_the_least_wait_they_promise() {
    let secs = |s: &str| parse_tolerance(s).map(|d| d.as_secs());
    assert_eq!(secs("realtime"), Some(0));
    assert_eq!(secs("Real-Time"), Some(0));
    assert_eq!(secs("minutes"), Some(60));
    assert_eq!(secs("hours"), Some(3600));
    assert_eq!(secs("day"), Some(86_400));
    assert_eq!(secs("days"), Some(86_400));
    assert_eq!(secs("week"), Some(604_800));
    assert_eq!(secs("36h"), Some(129_600));
    assert_eq!(secs("2d"), Some(172_800));
    assert_eq!(secs("soonish"), None);
    assert_eq!(secs(""), None);
}

#[test]
fn priorities_map_to_tolerances() {
    assert_eq!(Priority::parse("HIGH").unwrap().tolerance(), Duration::ZERO);
    assert_eq!(Priority::parse("normal").unwrap().tolerance(), Duration::ZERO);
    assert_eq!(Priority::parse("low").unwrap().tolerance(), Duration::from_secs(3600));
    assert_eq!(Priority::parse("batch").unwrap().tolerance(), DAY);
    assert_eq!(Priority::parse("urgent"), None);

    let log = r#"
{"model": "gpt-4o-mini", "input_tokens": 10, "priority": "high", "category": "h"}
{"model": "gpt-4o-mini", "input_tokens": 10, "priority": "low", "category": "l"}
{"model": "gpt-4o-mini", "input_tokens": 10, "priority": "batch", "category": "b"}
"#;
    let a = run(log, DEFAULT_MIN_WAIT);
    let batchable = |a: &Analysis, c: &str| group(a, c, "gpt-4o-mini").totals.batchable_calls;
    assert_eq!((batchable(&a, "h"), batchable(&a, "l"), batchable(&a, "b")), (0, 0, 1));
    let a = run(log, Duration::from_secs(3600));
    assert_eq!((batchable(&a, "h"), batchable(&a, "l"), batchable(&a, "b")), (0, 1, 1));
    // "batch" promises the Batch API's 24 h window, not more.
    let a = run(log, 2 * DAY);
    assert_eq!(batchable(&a, "b"), 0);
}

#[test]
fn the_most_precise_tolerance_field_wins() {
    let log = r#"
{"model": "gpt-4o-mini", "input_tokens": 10, "max_latency_seconds": 0, "latency_tolerance": "week", "priority": "batch", "category": "seconds"}
{"model": "gpt-4o-mini", "input_tokens": 10, "latency_tolerance": "day", "priority": "high", "category": "label"}
"#;
    let a = run(log, DEFAULT_MIN_WAIT);
    assert_eq!(group(&a, "seconds", "gpt-4o-mini").totals.batchable_calls, 0);
    assert_eq!(group(&a, "label", "gpt-4o-mini").totals.batchable_calls, 1);
}

#[test]
fn a_call_without_any_tolerance_is_not_batchable_and_is_counted() {
    let log = r#"{"model": "gpt-4o-mini", "input_tokens": 10, "num_model_requests": 7}"#;
    let a = run(log, Duration::ZERO);
    let t = &group(&a, UNCATEGORIZED, "gpt-4o-mini").totals;
    assert_eq!((t.calls, t.batchable_calls, t.calls_without_tolerance), (7, 0, 7));
    assert_eq!(a.totals.calls_without_tolerance, 7);
}

#[test]
fn costs_are_exact_to_the_picodollar() {
    // gpt-4o-mini, real time: 800 uncached × $0.15/M + 200 cached × $0.075/M + 500 out × $0.60/M
    //   = $0.00012 + $0.000015 + $0.0003 = $0.000435.
    // Batch: 1000 in × $0.075/M (no cached discount) + 500 out × $0.30/M = $0.000075 + $0.00015 = $0.000225.
    let log = r#"{"model": "gpt-4o-mini", "input_tokens": 1000, "cached_input_tokens": 200, "output_tokens": 500, "priority": "batch"}"#;
    let t = run(log, DEFAULT_MIN_WAIT).totals;
    assert_eq!(t.realtime_cost, usd("0.000435"));
    assert_eq!(t.batch_cost, usd("0.000225"));
    assert_eq!(t.saving_if_batched(), usd("0.00021"));
    assert_eq!(t.batchable_saving(), usd("0.00021"));
}

#[test]
fn openai_export_and_chat_field_names_give_the_same_figures() {
    let export = r#"{"object": "organization.usage.completions.result", "model": "gpt-4.1", "input_tokens": 5000, "input_cached_tokens": 4000, "output_tokens": 1000, "num_model_requests": 5, "project_id": "proj_abc", "user_id": null, "api_key_id": null, "batch": false, "service_tier": null, "start_time": 1730419200, "end_time": 1730505600, "priority": "batch"}"#;
    let chat = r#"{"model": "gpt-4.1", "prompt_tokens": 5000, "cached_input_tokens": 4000, "completion_tokens": 1000, "num_model_requests": 5, "timestamp": "2024-11-01T00:00:00Z", "priority": "batch"}"#;
    let (a, b) = (run(export, DEFAULT_MIN_WAIT), run(chat, DEFAULT_MIN_WAIT));
    assert!(
        a.malformed.is_empty() && b.malformed.is_empty(),
        "{:?} {:?}",
        a.malformed,
        b.malformed
    );
    assert_eq!(a.totals, b.totals);
    assert_eq!(
        a.totals.usage,
        Usage {
            input_tokens: 5000,
            cached_input_tokens: 4000,
            output_tokens: 1000,
            reasoning_tokens: 0,
            cache_write_tokens: 0,
        }
    );
    assert_eq!(a.totals.calls, 5);
    // gpt-4.1 real time: 1000 × $2/M + 4000 × $0.50/M + 1000 × $8/M = $0.002 + $0.002 + $0.008.
    assert_eq!(a.totals.realtime_cost, usd("0.012"));
    // Batch: 5000 × $1/M (no cached batch price) + 1000 × $4/M.
    assert_eq!(a.totals.batch_cost, usd("0.009"));
    // The export's bucket is one day long.
    assert_eq!(a.period.unwrap().millis(), 86_400_000);
}

#[test]
fn giving_both_names_of_one_quantity_is_a_malformed_line() {
    let log = r#"{"model": "gpt-4o-mini", "input_tokens": 10, "prompt_tokens": 10}
{"model": "gpt-4o-mini", "input_tokens": 10, "cached_input_tokens": 1, "input_cached_tokens": 1}
{"model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 1, "completion_tokens": 1}
{"model": "gpt-4o-mini", "input_tokens": 10, "timestamp": "2026-11-02T00:00:00Z", "start_time": 1793577600}"#;
    let a = run(log, DEFAULT_MIN_WAIT);
    assert_eq!(
        problems(&a),
        vec![
            (1, LineProblem::Both("input_tokens", "prompt_tokens")),
            (2, LineProblem::Both("cached_input_tokens", "input_cached_tokens")),
            (3, LineProblem::Both("output_tokens", "completion_tokens")),
            (4, LineProblem::Both("timestamp", "start_time")),
        ]
    );
    assert_eq!(a.totals, Totals::default());
}

#[test]
fn malformed_lines_are_reported_with_line_numbers_and_skipped() {
    let log = [
        r#"{"model": "gpt-4o-mini", "input_tokens": 100, "priority": "batch"}"#,
        "",
        r#"{"model": "gpt-4o-mini", "input_tok"#,
        r#"{"input_tokens": 100}"#,
        r#"{"model": null, "input_tokens": 100}"#,
        r#"{"model": "gpt-4o-mini", "output_tokens": 100}"#,
        r#"{"model": "gpt-4o-mini", "input_tokens": -5}"#,
        r#"{"model": "gpt-4o-mini", "input_tokens": 10, "cached_input_tokens": 11}"#,
        r#"{"model": "gpt-4o-mini", "input_tokens": 10, "timestamp": "2026-02-30T00:00:00Z"}"#,
        r#"{"model": "gpt-4o-mini", "input_tokens": 10, "latency_tolerance": "whenever"}"#,
        r#"{"model": "gpt-4o-mini", "input_tokens": 10, "priority": "urgent"}"#,
        r#"{"model": "gpt-4o-mini", "input_tokens": 10, "provider": "bedrock"}"#,
        r#"{"model": "gpt-4o-mini", "input_tokens": 10, "start_time": 1793577600, "end_time": 1793577599}"#,
        r#"{"model": "gpt-4o-mini", "input_tokens": 10, "end_time": 1793577600}"#,
        r#"[1, 2, 3]"#,
        "  \t ",
        "{\"model\": \"gpt-4o-mini\", \"input_tokens\": 100, \"priority\": \"batch\"}\r",
    ]
    .join("\n");
    let a = run(&log, DEFAULT_MIN_WAIT);
    let got = problems(&a);
    let lines: Vec<u64> = got.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, vec![3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    assert!(matches!(got[0].1, LineProblem::Json(_)));
    assert_eq!(got[1].1, LineProblem::MissingModel);
    assert_eq!(got[2].1, LineProblem::MissingModel);
    assert_eq!(got[3].1, LineProblem::MissingInputTokens);
    assert!(
        matches!(&got[4].1, LineProblem::Json(m) if m.contains("-5")),
        "{:?}",
        got[4]
    );
    assert_eq!(got[5].1, LineProblem::CachedAboveInput { cached: 11, input: 10 });
    assert_eq!(got[6].1, LineProblem::BadTimestamp("2026-02-30T00:00:00Z".into()));
    assert_eq!(got[7].1, LineProblem::BadTolerance("whenever".into()));
    assert_eq!(got[8].1, LineProblem::BadPriority("urgent".into()));
    assert_eq!(got[9].1, LineProblem::BadProvider("bedrock".into()));
    assert_eq!(got[10].1, LineProblem::EndBeforeStart);
    assert_eq!(got[11].1, LineProblem::EndWithoutStart);
    assert!(matches!(got[12].1, LineProblem::Json(_)));
    assert_eq!(a.malformed_lines, 13);
    // The good lines (1 and 17, the last with CRLF) still count.
    assert_eq!(a.lines_read, 17);
    assert_eq!((a.totals.lines, a.totals.calls, a.totals.batchable_calls), (2, 2, 2));
    // Messages say what is wrong.
    assert_eq!(
        LineProblem::CachedAboveInput { cached: 11, input: 10 }.to_string(),
        "cached input tokens (11) exceed input tokens (10)"
    );
}

#[test]
fn an_over_long_line_is_skipped_without_losing_the_next_one() {
    let long = format!(
        r#"{{"model": "gpt-4o-mini", "input_tokens": 1, "pad": "{}"}}"#,
        "x".repeat(MAX_LINE_BYTES)
    );
    let log = format!("{long}\n{{\"model\": \"gpt-4o-mini\", \"input_tokens\": 1}}\n");
    let a = run(&log, DEFAULT_MIN_WAIT);
    assert_eq!(problems(&a), vec![(1, LineProblem::TooLong { max: MAX_LINE_BYTES })]);
    assert_eq!(a.totals.lines, 1);
    assert_eq!(a.lines_read, 2);
}

#[test]
fn only_the_first_hundred_malformed_lines_are_listed_but_all_are_counted() {
    let log = "not json\n".repeat(MAX_LISTED_MALFORMED + 5);
    let a = run(&log, DEFAULT_MIN_WAIT);
    assert_eq!(a.malformed.len(), MAX_LISTED_MALFORMED);
    assert_eq!(a.malformed_lines, MAX_LISTED_MALFORMED as u64 + 5);
}

#[test]
fn unknown_models_are_listed_and_never_priced_at_zero() {
    let log = r#"
{"model": "acme-llm-70b", "input_tokens": 1000, "output_tokens": 10, "num_model_requests": 3, "category": "lab", "priority": "batch"}
{"model": "acme-llm-70b", "input_tokens": 500, "category": "lab"}
{"model": "gpt-3.5-turbo-1106", "input_tokens": 5, "category": "old"}
{"model": "gpt-4o-mini", "input_tokens": 1000000, "priority": "batch", "category": "lab"}
"#;
    let a = run(log, DEFAULT_MIN_WAIT);
    let unpriced: Vec<_> = a
        .unpriced
        .iter()
        .map(|u| {
            (
                u.category.as_str(),
                u.model.as_str(),
                u.reason,
                u.lines,
                u.calls,
                u.usage.input_tokens,
            )
        })
        .collect();
    assert_eq!(
        unpriced,
        vec![
            ("lab", "acme-llm-70b", UnpricedReason::UnknownModel, 2, 4, 1500),
            ("old", "gpt-3.5-turbo-1106", UnpricedReason::UnknownModel, 1, 1, 5),
        ]
    );
    // They are in no money figure and in no group: only the priced call is.
    assert_eq!(a.groups.len(), 1);
    assert_eq!((a.totals.lines, a.totals.calls), (1, 1));
    assert_eq!(a.totals.realtime_cost, usd("0.15"));
    assert_eq!(a.totals.batch_cost, usd("0.075"));
    assert_eq!(a.totals.batchable_share().unwrap().to_string(), "100.00");
}

#[test]
fn output_tokens_on_an_embedding_model_are_unpriced_not_zero() {
    let log = r#"{"model": "text-embedding-3-small", "input_tokens": 1000, "output_tokens": 1}"#;
    let a = run(log, DEFAULT_MIN_WAIT);
    assert_eq!(a.unpriced.len(), 1);
    assert_eq!(a.unpriced[0].reason, UnpricedReason::UsageNotPriced);
    assert!(a.groups.is_empty());
    assert_eq!(a.totals.batchable_share(), None);
}

#[test]
fn dated_snapshots_are_grouped_as_written_and_priced_as_their_family() {
    let log = r#"
{"model": "gpt-4o-mini-2024-07-18", "input_tokens": 1000000}
{"model": "gpt-4o-mini", "input_tokens": 1000000}
"#;
    let a = run(log, DEFAULT_MIN_WAIT);
    let dated = group(&a, UNCATEGORIZED, "gpt-4o-mini-2024-07-18");
    assert_eq!(dated.priced_as, "gpt-4o-mini");
    assert_eq!(dated.totals.realtime_cost, usd("0.15"));
    assert_eq!(
        group(&a, UNCATEGORIZED, "gpt-4o-mini").totals.realtime_cost,
        usd("0.15")
    );
}

#[test]
fn already_batched_usage_is_counted_apart() {
    let log = r#"
{"model": "gpt-4o-mini", "input_tokens": 1000, "num_model_requests": 9, "batch": true, "start_time": 0, "end_time": 86400}
{"model": "gpt-4o-mini", "input_tokens": 1000, "batch": false, "start_time": 3600}
"#;
    let a = run(log, DEFAULT_MIN_WAIT);
    assert_eq!(a.already_batched, Count { lines: 1, calls: 9 });
    assert_eq!((a.totals.lines, a.totals.calls), (1, 1));
    // It still tells the period the log covers.
    assert_eq!(a.period.unwrap().millis(), 86_400_000);
}

#[test]
fn the_period_runs_from_the_earliest_start_to_the_latest_end_and_scales_to_thirty_days() {
    // Two batchable gpt-4o-mini calls of 1M input tokens each (saving $0.075 each) over two days.
    let log = r#"
{"model": "gpt-4o-mini", "input_tokens": 1000000, "priority": "batch", "timestamp": "2026-11-03T00:00:00Z"}
{"model": "gpt-4o-mini", "input_tokens": 1000000, "priority": "batch", "start_time": 1793577600, "end_time": 1793664000}
{"model": "gpt-4o-mini", "input_tokens": 1000000, "priority": "high", "timestamp": "2026-11-04T00:00:00+00:00"}
"#;
    let a = run(log, DEFAULT_MIN_WAIT);
    let p = a.period.unwrap();
    assert_eq!(p.from.to_rfc3339(), "2026-11-02T00:00:00.000Z");
    assert_eq!(p.to.to_rfc3339(), "2026-11-04T00:00:00.000Z");
    assert_eq!(a.totals.batchable_saving(), usd("0.15"));
    // $0.15 over 2 days → × 15 → $2.25 per 30 days.
    assert_eq!(a.projected_monthly_saving(), Some(usd("2.25")));
    // Batchable share: $0.30 of $0.45 real-time spend.
    assert_eq!(a.totals.batchable_share().unwrap().to_string(), "66.67");
}

#[test]
fn projections_round_to_the_nearest_picodollar() {
    let week = Period {
        from: Timestamp::from_millis(0),
        to: Timestamp::from_millis(7 * 86_400_000),
    };
    let pico = Money::from_picodollars;
    assert_eq!(week.scale_to_month(pico(7)), Some(pico(30)));
    assert_eq!(week.scale_to_month(pico(1)), Some(pico(4))); // 4.29
    assert_eq!(week.scale_to_month(pico(-1)), Some(pico(-4)));
    assert_eq!(week.scale_to_month(pico(5)), Some(pico(21))); // 21.43
    let sixty_days = Period {
        from: Timestamp::from_millis(0),
        to: Timestamp::from_millis(60 * 86_400_000),
    };
    assert_eq!(sixty_days.scale_to_month(pico(1)), Some(pico(1))); // 0.5, away from zero
    assert_eq!(sixty_days.scale_to_month(pico(-1)), Some(pico(-1)));
    assert_eq!(sixty_days.scale_to_month(pico(2)), Some(pico(1)));
}

#[test]
fn without_a_period_there_is_no_projection() {
    let untimed = r#"{"model": "gpt-4o-mini", "input_tokens": 1000000, "priority": "batch"}"#;
    let a = run(untimed, DEFAULT_MIN_WAIT);
    assert_eq!((a.period, a.projected_monthly_saving()), (None, None));
    let one_instant = r#"{"model": "gpt-4o-mini", "input_tokens": 1000000, "priority": "batch", "start_time": 1793577600}
{"model": "gpt-4o-mini", "input_tokens": 1000000, "priority": "batch", "timestamp": "2026-11-02T00:00:00Z"}"#;
    let a = run(one_instant, DEFAULT_MIN_WAIT);
    assert_eq!((a.period, a.projected_monthly_saving()), (None, None));
    // The saving over the log itself is still there.
    assert_eq!(a.totals.batchable_saving(), usd("0.15"));
}

#[test]
fn rfc3339_timestamps_parse_with_fractions_and_offsets() {
    let ms = |s: &str| parse_rfc3339(s).map(Timestamp::millis);
    assert_eq!(ms("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(ms("2026-11-02T00:00:00Z"), Some(1_793_577_600_000));
    assert_eq!(ms("2026-11-02T01:00:00+01:00"), Some(1_793_577_600_000));
    assert_eq!(ms("2026-11-01T23:30:00-00:30"), Some(1_793_577_600_000));
    assert_eq!(ms("2026-11-02t00:00:00.5z"), Some(1_793_577_600_500));
    assert_eq!(ms("2026-11-02 00:00:00.123456Z"), Some(1_793_577_600_123));
    assert_eq!(ms("2024-02-29T12:00:00Z"), Some(1_709_208_000_000));
    for bad in [
        "2026-11-02",
        "2026-11-02T00:00:00",
        "2026-13-01T00:00:00Z",
        "2025-02-29T00:00:00Z",
        "2026-11-02T24:00:00Z",
        "2026-11-02T00:00:00.Z",
        "2026-11-02T00:00:00+0100",
        "2026-11-02T00:00:00Z junk",
        "1793577600",
    ] {
        assert_eq!(parse_rfc3339(bad), None, "{bad}");
    }
}

#[test]
fn rfc3339_edges_keep_their_reading() {
    let ms = |s: &str| parse_rfc3339(s).map(Timestamp::millis);
    // Surrounding blanks are ignored; fractions past the millisecond are cut.
    assert_eq!(ms("  2026-11-02T00:00:00Z\n"), Some(1_793_577_600_000));
    assert_eq!(ms("2026-11-02T00:00:00.9999999999Z"), Some(1_793_577_600_999));
    // Before 1970 the millisecond is still cut towards the earlier instant.
    assert_eq!(ms("1969-12-31T23:59:59.999Z"), Some(-1));
    assert_eq!(ms("0000-01-01T00:00:00Z"), Some(-62_167_219_200_000));
    assert_eq!(ms("9999-12-31T23:59:59Z"), Some(253_402_300_799_000));
    for bad in [
        "2026-12-31T23:59:60Z",
        "2026-11-02T00:00:00+24:00",
        "2026-11-02T00:00:00+01:60",
        "2026-04-31T00:00:00Z",
        "2026-11-02T00:60:00Z",
        "2026-11-02X00:00:00Z",
        "",
    ] {
        assert_eq!(parse_rfc3339(bad), None, "{bad}");
    }
}

#[test]
fn shares_are_percentages_with_two_decimals_rounded_half_up() {
    let pico = Money::from_picodollars;
    assert_eq!(Percent::of(pico(1), pico(3)).unwrap().to_string(), "33.33");
    assert_eq!(Percent::of(pico(2), pico(3)).unwrap().to_string(), "66.67");
    assert_eq!(Percent::of(pico(1), pico(8)).unwrap().to_string(), "12.50");
    assert_eq!(Percent::of(pico(1), pico(20_000)).unwrap().to_string(), "0.01"); // 0.005 up
    assert_eq!(Percent::of(pico(5), pico(5)).unwrap().to_string(), "100.00");
    assert_eq!(Percent::of(pico(0), pico(5)).unwrap().to_string(), "0.00");
    assert_eq!(Percent::of(pico(1), Money::ZERO), None);
}

#[test]
fn waits_parse_with_units_and_print_back() {
    assert_eq!(parse_wait("24h"), Ok(DAY));
    assert_eq!(parse_wait("1d"), Ok(DAY));
    assert_eq!(parse_wait("1w"), Ok(7 * DAY));
    assert_eq!(parse_wait("90"), Ok(Duration::from_secs(90)));
    assert!(parse_wait("1y").unwrap_err().contains("unknown unit"));
    assert!(parse_wait("h").is_err());
    assert_eq!(format_wait(DAY), "24h");
    assert_eq!(format_wait(Duration::from_secs(90 * 60)), "90m");
    assert_eq!(format_wait(Duration::from_secs(45)), "45s");
    assert_eq!(format_wait(Duration::ZERO), "0s");
}

/// `demo/usage-sample.jsonl` against figures computed apart from this
/// code: by `demo/usage_sample.py --figures` (Python integers, its own
/// copy of the prices), and for search-indexing by hand below.
#[test]
fn the_shipped_sample_gives_the_independently_computed_figures() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../demo/usage-sample.jsonl");
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let a = analyze(file, &PriceBook::bundled(), DEFAULT_MIN_WAIT).unwrap();

    assert_eq!(a.lines_read, 204);
    // The logger crashed mid-line on Thursday morning.
    assert_eq!(a.malformed.len(), 1);
    assert_eq!(a.malformed[0].line, 113);
    assert!(matches!(a.malformed[0].problem, LineProblem::Json(_)));
    assert_eq!(
        a.already_batched,
        Count {
            lines: 1,
            calls: 40_000
        }
    );
    let unknown: Vec<_> = a
        .unpriced
        .iter()
        .map(|u| (u.model.as_str(), u.lines, u.calls))
        .collect();
    assert_eq!(unknown, vec![("acme-llm-70b", 4, 200)]);
    let p = a.period.unwrap();
    assert_eq!(p.from.to_rfc3339(), "2026-11-02T00:00:00.000Z");
    assert_eq!(p.to.to_rfc3339(), "2026-11-09T00:00:00.000Z");

    // (category, model, lines, calls, input, cached, output, real time, batch, batchable calls,
    //  batchable saving, projected monthly saving)
    #[rustfmt::skip]
    let expected = [
        ("ad-hoc", "gpt-4o", 20, 20, 74_769, 0, 15_458, "0.3415025", "0.17075125", 0, "0", "0"),
        ("nightly-summaries", "gpt-4o-mini-2024-07-18", 56, 218_956, 700_813_605, 0, 89_779_866,
         "158.98996035", "79.494980175", 218_956, "79.494980175", "340.692772178571"),
        ("search-indexing", "text-embedding-3-small", 7, 1_262_892, 2_788_831_947, 0, 0,
         "55.77663894", "27.88831947", 1_262_892, "27.88831947", "119.521369157143"),
        ("support-chat", "gpt-4.1-mini", 84, 75_508, 151_011_189, 77_320_192, 18_880_891,
         "67.4178436", "45.3069506", 0, "0", "0"),
        ("translations", "gpt-4.1-nano", 7, 39_687, 23_790_381, 0, 23_846_949,
         "11.9178177", "5.95890885", 0, "0", "0"),
        ("weekly-report", "o3", 24, 24, 554_092, 49_152, 159_726, "2.312264", "1.192996", 24,
         "1.119268", "4.796862857143"),
    ];
    assert_eq!(a.groups.len(), expected.len());
    for (g, e) in a.groups.iter().zip(expected) {
        let t = &g.totals;
        let got = (
            g.category.as_str(),
            g.model.as_str(),
            t.lines,
            t.calls,
            t.usage.input_tokens,
            t.usage.cached_input_tokens,
            t.usage.output_tokens,
            t.realtime_cost,
            t.batch_cost,
            t.batchable_calls,
            t.batchable_saving(),
            a.project(t).unwrap(),
        );
        let want = (
            e.0,
            e.1,
            e.2,
            e.3,
            e.4,
            e.5,
            e.6,
            usd(e.7),
            usd(e.8),
            e.9,
            usd(e.10),
            usd(e.11),
        );
        assert_eq!(got, want);
    }
    // Only the calls without any tolerance: ad-hoc.
    assert_eq!(a.totals.calls_without_tolerance, 20);

    // Search indexing by hand: 2,788,831,947 tokens at $0.02/M real time and $0.01/M batch.
    let tokens = 2_788_831_947i128;
    assert_eq!(
        group(&a, "search-indexing", "text-embedding-3-small")
            .totals
            .realtime_cost,
        Money::from_picodollars(tokens * 20_000)
    );

    assert_eq!(a.totals.calls, 1_597_087);
    assert_eq!(a.totals.realtime_cost, usd("296.75602709"));
    assert_eq!(a.totals.batch_cost, usd("160.012906345"));
    assert_eq!(a.totals.batchable_realtime_cost, usd("217.07886329"));
    assert_eq!(a.totals.batchable_share().unwrap().to_string(), "73.15");
    assert_eq!(a.totals.batchable_saving(), usd("108.502567645"));
    assert_eq!(a.projected_monthly_saving(), Some(usd("465.011004192857")));
}

#[test]
fn an_anthropic_line_with_cache_reads_and_writes_prices_exactly() {
    // claude-sonnet-4-5 per M tokens, real time: input $3, cache read $0.30,
    // cache write $3.75, output $15; batch: half of each.
    // Anthropic's usage names: input_tokens 120 is the uncached part only.
    // Real time: 120×3 + 4000×0.30 + 900×3.75 + 350×15 = 360 + 1200 + 3375 + 5250 = 10185 → $0.010185.
    // Batch: 120×1.5 + 4000×0.15 + 900×1.875 + 350×7.5 = 180 + 600 + 1687.5 + 2625 = 5092.5 → $0.0050925.
    let anthropic_names = r#"{"provider": "anthropic", "model": "claude-sonnet-4-5-20250929", "input_tokens": 120, "cache_read_input_tokens": 4000, "cache_creation_input_tokens": 900, "output_tokens": 350, "priority": "batch"}"#;
    // The same call in batchq's names: the input counts every input token.
    let batchq_names = r#"{"provider": "anthropic", "model": "claude-sonnet-4-5-20250929", "input_tokens": 5020, "cached_input_tokens": 4000, "cache_write_tokens": 900, "output_tokens": 350, "priority": "batch"}"#;
    for log in [anthropic_names, batchq_names] {
        let a = run(log, DEFAULT_MIN_WAIT);
        assert!(a.malformed.is_empty(), "{:?}", a.malformed);
        let g = group(&a, UNCATEGORIZED, "claude-sonnet-4-5-20250929");
        assert_eq!(g.provider, ProviderKind::Anthropic);
        assert_eq!(g.priced_as, "claude-sonnet-4-5");
        assert_eq!(
            g.totals.usage,
            Usage {
                input_tokens: 5020,
                cached_input_tokens: 4000,
                output_tokens: 350,
                reasoning_tokens: 0,
                cache_write_tokens: 900,
            }
        );
        assert_eq!(g.totals.realtime_cost, usd("0.010185"));
        assert_eq!(g.totals.batch_cost, usd("0.0050925"));
        assert_eq!(a.totals.batchable_saving(), usd("0.0050925"));
        assert_eq!(a.providers(), vec![ProviderKind::Anthropic]);
    }
}

#[test]
fn cache_writes_without_a_cache_write_price_are_billed_as_input() {
    // gpt-4o-mini has no cache-write price: 1000 input tokens at $0.15/M
    // whether 400 of them were written to the cache or not.
    let log = r#"{"model": "gpt-4o-mini", "input_tokens": 1000, "cache_write_tokens": 400}"#;
    let a = run(log, DEFAULT_MIN_WAIT);
    assert_eq!(a.totals.usage.cache_write_tokens, 400);
    assert_eq!(a.totals.realtime_cost, usd("0.00015"));
}

#[test]
fn the_same_model_under_two_providers_makes_two_groups_each_priced_from_its_own_table() {
    let prices = PriceBook::from_json(
        r#"{"source": "https://example.com/all", "as_of": "2026-11-01", "providers": {
            "groq": {"source": "https://example.com/groq", "as_of": "2026-11-30", "models": {
                "openai/gpt-oss-120b": {"realtime": {"input": "0.15", "output": "0.60"}, "batch": {"input": "0.075", "output": "0.30"}}}},
            "together": {"source": "https://example.com/together", "as_of": "2026-10-15", "models": {
                "openai/gpt-oss-120b": {"realtime": {"input": "0.20", "output": "0.80"}, "batch": {"input": "0.10", "output": "0.40"}}}}}}"#,
    )
    .unwrap();
    let log = r#"
{"provider": "groq", "model": "openai/gpt-oss-120b", "input_tokens": 1000000, "category": "tagging"}
{"provider": "together", "model": "openai/gpt-oss-120b", "input_tokens": 1000000, "category": "tagging"}
{"provider": "groq", "model": "openai/gpt-oss-120b", "input_tokens": 1000000, "category": "tagging"}
"#;
    let a = analyze(log.as_bytes(), &prices, DEFAULT_MIN_WAIT).unwrap();
    let got: Vec<_> = a
        .groups
        .iter()
        .map(|g| {
            (
                g.category.as_str(),
                g.provider,
                g.model.as_str(),
                g.totals.calls,
                g.totals.realtime_cost,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("tagging", ProviderKind::Groq, "openai/gpt-oss-120b", 2, usd("0.30")),
            ("tagging", ProviderKind::Together, "openai/gpt-oss-120b", 1, usd("0.20")),
        ]
    );
    assert_eq!(a.totals.realtime_cost, usd("0.50"));
    assert_eq!(a.providers(), vec![ProviderKind::Groq, ProviderKind::Together]);
}

#[test]
fn unpriced_calls_are_kept_apart_per_provider() {
    // Together has no prices in the bundled table; Groq does.
    let log = r#"
{"provider": "together", "model": "openai/gpt-oss-120b", "input_tokens": 10}
{"provider": "groq", "model": "openai/gpt-oss-120b", "input_tokens": 10}
{"provider": "azure", "model": "gpt-4o-mini", "input_tokens": 10}
"#;
    let a = run(log, DEFAULT_MIN_WAIT);
    let unpriced: Vec<_> = a
        .unpriced
        .iter()
        .map(|u| (u.provider, u.model.as_str(), u.reason))
        .collect();
    assert_eq!(
        unpriced,
        vec![
            (ProviderKind::AzureOpenAi, "gpt-4o-mini", UnpricedReason::UnknownModel),
            (
                ProviderKind::Together,
                "openai/gpt-oss-120b",
                UnpricedReason::UnknownModel
            ),
        ]
    );
    assert_eq!(a.groups.len(), 1);
    assert_eq!(a.groups[0].provider, ProviderKind::Groq);
}

#[test]
fn cache_counts_that_do_not_add_up_or_mix_naming_schemes_are_malformed() {
    let log = r#"{"model": "gpt-4o-mini", "input_tokens": 10, "cached_input_tokens": 6, "cache_write_tokens": 5}
{"provider": "anthropic", "model": "claude-haiku-4-5", "input_tokens": 10, "cache_read_input_tokens": 5, "cached_input_tokens": 5}
{"provider": "anthropic", "model": "claude-haiku-4-5", "prompt_tokens": 10, "cache_creation_input_tokens": 5}
{"provider": "anthropic", "model": "claude-haiku-4-5", "cache_creation_input_tokens": 5}
{"provider": "anthropic", "model": "claude-haiku-4-5", "input_tokens": 18446744073709551615, "cache_read_input_tokens": 1}
{"model": "gpt-4o-mini", "input_tokens": 10, "provider": "bedrock"}"#;
    let a = run(log, DEFAULT_MIN_WAIT);
    assert_eq!(
        problems(&a),
        vec![
            (
                1,
                LineProblem::CacheAboveInput {
                    cached: 6,
                    written: 5,
                    input: 10
                }
            ),
            (2, LineProblem::MixedUsageNames("cached_input_tokens")),
            (3, LineProblem::MixedUsageNames("prompt_tokens")),
            (4, LineProblem::MissingInputTokens),
            (5, LineProblem::TokenOverflow),
            (6, LineProblem::BadProvider("bedrock".into())),
        ]
    );
    assert_eq!(a.totals, Totals::default());
    assert_eq!(
        LineProblem::BadProvider("bedrock".into()).to_string(),
        "`provider` \"bedrock\" is not one of openai, azure_openai, anthropic, groq, together"
    );
}
