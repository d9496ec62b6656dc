//! `batchq analyze` as a subprocess on the shipped sample log
//! (`demo/usage-sample.jsonl`). The expected figures were computed apart from
//! batchq's code, by `demo/usage_sample.py --figures` (Python integers and its
//! own copy of the prices). No emulator and no AWS: the environment is
//! emptied, and a malformed batchq setting is set that every other command
//! would refuse.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../demo/usage-sample.jsonl")
}

fn batchq(args: &[&str]) -> Output {
    batchq_with(args, &[])
}

fn batchq_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_batchq"))
        .args(args)
        .env_clear()
        .env("BATCHQ_MAX_ATTEMPTS", "three")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .envs(env.iter().copied())
        .output()
        .expect("run batchq")
}

/// `batchq analyze` of the sample with `extra` arguments, its prices read
/// from a local table of `table` (`BATCHQ_PRICING_FILE`) named `name`.
fn analyze_with_prices(name: &str, table: &str, extra: &[&str]) -> Output {
    let dir = std::env::temp_dir().join(format!("batchq-analyze-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("prices.json");
    std::fs::write(&path, table).unwrap();
    let file = sample();
    let mut args = vec!["analyze", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = batchq_with(&args, &[("BATCHQ_PRICING_FILE", path.to_str().unwrap())]);
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

fn analyze_json(extra: &[&str]) -> Value {
    let file = sample();
    let mut args = vec!["analyze", file.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = batchq(&args);
    assert!(
        out.status.success(),
        "batchq analyze failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.trim_end().lines().count(), 1, "one JSON document: {stdout}");
    serde_json::from_str(&stdout).unwrap()
}

fn group<'a>(v: &'a Value, category: &str) -> &'a Value {
    v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["category"] == category)
        .unwrap_or_else(|| panic!("no group {category}"))
}

#[test]
fn the_sample_log_reports_its_batchable_share_and_monthly_saving_as_exact_strings() {
    let v = analyze_json(&[]);
    assert_eq!(v["min_wait_seconds"], 86_400);
    assert_eq!(v["lines_read"], 204);
    assert_eq!(v["period"]["from"], "2026-11-02T00:00:00.000Z");
    assert_eq!(v["period"]["to"], "2026-11-09T00:00:00.000Z");
    assert_eq!(v["period"]["seconds"], 7 * 86_400);

    let t = &v["totals"];
    assert_eq!(t["calls"], 1_597_087);
    assert_eq!(t["realtime_cost_usd"], "296.75602709");
    assert_eq!(t["batch_cost_usd"], "160.012906345");
    assert_eq!(t["batchable"]["realtime_cost_usd"], "217.07886329");
    assert_eq!(t["batchable"]["saving_usd"], "108.502567645");
    assert_eq!(t["batchable_share_percent"], "73.15");
    // 108.502567645 × 30 / 7, to the picodollar.
    assert_eq!(t["projected_monthly_saving_usd"], "465.011004192857");
    assert_eq!(t["calls_without_tolerance"], 20);

    let categories: Vec<&str> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["category"].as_str().unwrap())
        .collect();
    assert_eq!(
        categories,
        [
            "ad-hoc",
            "nightly-summaries",
            "search-indexing",
            "support-chat",
            "translations",
            "weekly-report"
        ]
    );
    let nightly = group(&v, "nightly-summaries");
    assert_eq!(nightly["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(nightly["priced_as"], "gpt-4o-mini");
    assert_eq!(nightly["calls"], 218_956);
    assert_eq!(nightly["tokens"]["input"], 700_813_605_u64);
    assert_eq!(nightly["realtime_cost_usd"], "158.98996035");
    assert_eq!(nightly["batchable_share_percent"], "100.00");
    assert_eq!(nightly["projected_monthly_saving_usd"], "340.692772178571");
    let chat = group(&v, "support-chat");
    assert_eq!(chat["batchable"]["calls"], 0);
    assert_eq!(chat["batchable_share_percent"], "0.00");
    // o3 gives no cached-input discount in a batch: less than half is saved.
    let report = group(&v, "weekly-report");
    assert_eq!(report["realtime_cost_usd"], "2.312264");
    assert_eq!(report["batchable"]["saving_usd"], "1.119268");

    assert_eq!(v["unpriced"][0]["model"], "acme-llm-70b");
    assert_eq!(v["unpriced"][0]["reason"], "unknown_model");
    assert_eq!(v["unpriced"][0]["calls"], 200);
    assert_eq!(v["already_batched"]["calls"], 40_000);
    assert_eq!(v["malformed_lines"], 1);
    assert_eq!(v["malformed"][0]["line"], 113);
    assert!(v["malformed"][0]["error"].as_str().unwrap().contains("EOF"));
}

#[test]
fn the_minimum_wait_decides_what_counts_as_batchable() {
    // An hour is enough for the translations (priority "low").
    let v = analyze_json(&["--min-wait", "1h"]);
    assert_eq!(group(&v, "translations")["batchable"]["calls"], 39_687);
    assert_eq!(v["totals"]["batchable"]["saving_usd"], "114.461476495");
    assert_eq!(v["totals"]["batchable_share_percent"], "77.17");
    assert_eq!(v["totals"]["projected_monthly_saving_usd"], "490.549184978571");

    // Nothing in the sample can wait three days.
    let v = analyze_json(&["--min-wait", "3d"]);
    assert_eq!(v["min_wait_seconds"], 3 * 86_400);
    assert_eq!(v["totals"]["batchable"]["calls"], 0);
    assert_eq!(v["totals"]["batchable_share_percent"], "0.00");
    assert_eq!(v["totals"]["projected_monthly_saving_usd"], "0.00");
}

#[test]
fn people_get_a_table_per_category_provider_and_model_with_totals_and_the_projection() {
    let file = sample();
    let out = batchq(&["analyze", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let row = |category: &str| {
        text.lines()
            .find(|l| l.starts_with(category))
            .unwrap_or_else(|| panic!("no {category} row in:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("category"),
        [
            "category",
            "provider",
            "model",
            "calls",
            "batchable",
            "real-time",
            "batch",
            "share",
            "saving",
            "per",
            "30",
            "days"
        ]
    );
    assert_eq!(
        row("nightly-summaries"),
        [
            "nightly-summaries",
            "openai",
            "gpt-4o-mini-2024-07-18",
            "218,956",
            "218,956",
            "$158.99",
            "$79.49",
            "100.00%",
            "$79.49",
            "$340.69"
        ]
    );
    assert_eq!(
        row("total"),
        [
            "total",
            "1,597,087",
            "1,481,872",
            "$296.76",
            "$160.01",
            "73.15%",
            "$108.50",
            "$465.01"
        ]
    );
    assert!(
        text.contains("Batchable share of spend: 73.15% ($217.08 of $296.76 real-time spend)."),
        "{text}"
    );
    assert!(
        text.contains("$108.50 over 7 days; projected: $465.01 per 30 days"),
        "{text}"
    );
    assert!(
        text.contains("experiments / openai / acme-llm-70b: 200 calls on 4 lines"),
        "{text}"
    );
    assert!(text.contains("line 113: "), "{text}");
    assert!(
        text.contains("Prices: openai https://platform.openai.com/docs/pricing as of 2025-11-13."),
        "{text}"
    );
}

/// A log of three providers, one model name under two of them (Groq and
/// Together both serve `openai/gpt-oss-120b`; Together is not priced).
const MIXED_LOG: &str = r#"{"category": "tagging", "provider": "anthropic", "model": "claude-haiku-4-5-20251001", "input_tokens": 200, "cache_read_input_tokens": 800000, "cache_creation_input_tokens": 100000, "output_tokens": 50000, "priority": "batch"}
{"category": "tagging", "provider": "groq", "model": "openai/gpt-oss-120b", "input_tokens": 2000000, "output_tokens": 100000, "priority": "batch"}
{"category": "tagging", "provider": "together", "model": "openai/gpt-oss-120b", "input_tokens": 1000, "priority": "batch"}
{"category": "tagging", "model": "gpt-4o-mini", "input_tokens": 1000000, "priority": "high"}
"#;

fn analyze_mixed(json: bool) -> Output {
    let dir = std::env::temp_dir().join(format!("batchq-analyze-mixed-{}-{json}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("usage.jsonl");
    std::fs::write(&log, MIXED_LOG).unwrap();
    let mut args = vec!["analyze", log.to_str().unwrap()];
    if json {
        args.push("--json");
    }
    let out = batchq(&args);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn each_provider_is_a_group_of_its_own_priced_from_its_own_source() {
    let v: Value = serde_json::from_slice(&analyze_mixed(true).stdout).unwrap();
    let groups: Vec<(&str, &str)> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["provider"].as_str().unwrap(), g["model"].as_str().unwrap()))
        .collect();
    assert_eq!(
        groups,
        [
            ("anthropic", "claude-haiku-4-5-20251001"),
            ("groq", "openai/gpt-oss-120b"),
            ("openai", "gpt-4o-mini"),
        ]
    );
    // claude-haiku-4-5 per M: 200 × $1 + 800,000 × $0.10 + 100,000 × $1.25 + 50,000 × $5
    //   = $0.0002 + $0.08 + $0.125 + $0.25; batch is half of each.
    let claude = &v["groups"][0];
    assert_eq!(claude["priced_as"], "claude-haiku-4-5");
    assert_eq!(claude["tokens"]["input"], 900_200);
    assert_eq!(claude["tokens"]["cached_input"], 800_000);
    assert_eq!(claude["tokens"]["cache_write"], 100_000);
    assert_eq!(claude["realtime_cost_usd"], "0.4552");
    assert_eq!(claude["batch_cost_usd"], "0.2276");
    // Groq: 2M × $0.15 + 0.1M × $0.60 = $0.36 real time, $0.18 batch.
    assert_eq!(v["groups"][1]["realtime_cost_usd"], "0.36");
    assert_eq!(v["unpriced"][0]["provider"], "together");
    assert_eq!(v["unpriced"][0]["model"], "openai/gpt-oss-120b");
    let by = &v["prices"]["by_provider"];
    assert_eq!(
        by.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["anthropic", "groq", "openai", "together"]
    );
    assert_eq!(
        by["anthropic"]["source"],
        "https://platform.claude.com/docs/en/about-claude/pricing"
    );
    assert_eq!(by["anthropic"]["as_of"], "2026-11-30");
    assert_eq!(by["groq"]["source"], "https://console.groq.com/docs/models");
    assert_eq!(by["openai"]["as_of"], "2025-11-13");
    // Together has no prices: no source is claimed for it.
    assert!(by["together"].is_null(), "{by}");

    let text = String::from_utf8(analyze_mixed(false).stdout).unwrap();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with("tagging"))
        .map(|l| l.split_whitespace().take(3).collect())
        .collect();
    assert_eq!(
        rows,
        [
            ["tagging", "anthropic", "claude-haiku-4-5-20251001"],
            ["tagging", "groq", "openai/gpt-oss-120b"],
            ["tagging", "openai", "gpt-4o-mini"],
        ]
    );
    assert!(
        text.contains("tagging / together / openai/gpt-oss-120b: 1 call on 1 line"),
        "{text}"
    );
    assert!(
        text.contains(
            "Prices: anthropic https://platform.claude.com/docs/en/about-claude/pricing as of 2026-11-30; \
             groq https://console.groq.com/docs/models as of 2026-11-30; \
             openai https://platform.openai.com/docs/pricing as of 2025-11-13; together not in the price table."
        ),
        "{text}"
    );
}

#[test]
fn a_missing_log_fails_on_stderr() {
    let out = batchq(&["analyze", "/nonexistent/usage.jsonl", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot open /nonexistent/usage.jsonl"), "{err}");
}

#[test]
fn a_local_price_table_named_by_batchq_pricing_file_is_used_and_s3_is_refused() {
    // Only the embeddings model, at round prices.
    let out = analyze_with_prices(
        "round",
        r#"{"source": "https://example.com/prices", "as_of": "2026-11-01", "providers": {"openai": {
            "text-embedding-3-small": {"realtime": {"input": "0.04"}, "batch": {"input": "0.01"}}}}}"#,
        &["--json"],
    );
    let file = sample();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["prices"]["as_of"], "2026-11-01");
    assert_eq!(v["groups"].as_array().unwrap().len(), 1);
    // 2,788,831,947 tokens at $0.04/M and $0.01/M.
    assert_eq!(v["totals"]["realtime_cost_usd"], "111.55327788");
    assert_eq!(v["totals"]["batchable"]["saving_usd"], "83.66495841");
    assert_eq!(v["unpriced"].as_array().unwrap().len(), 6);

    let out = batchq_with(
        &["analyze", file.to_str().unwrap()],
        &[("BATCHQ_PRICING_FILE", "s3://bucket/prices.json")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("local file only"));
}

#[test]
fn embeddings_whose_saving_would_not_pay_batchqs_aws_overhead_are_flagged_and_summaries_are_not() {
    // About 2,200 tokens per embeddings call: at the bundled prices
    // (text-embedding-3-small at half price in batch) a saving of about
    // $0.00002 a call, which covers batchq's estimate in bulk (about
    // $0.00001: twelve to thirteen write units, an 8 KB body kept a month).
    let v = analyze_json(&[]);
    let search = &group(&v, "search-indexing")["batchable"];
    assert_eq!(search["saving_covers_aws_overhead"], true, "{search}");
    // With a batch price only a tenth below real time, the saving per call
    // (about $0.000004) no longer pays for that: the group is flagged.
    let thin = r#"{"source": "https://example.com/prices", "as_of": "2026-11-01", "providers": {"openai": {
            "text-embedding-3-small": {"realtime": {"input": "0.02"}, "batch": {"input": "0.018"}},
            "gpt-4o-mini-2024-07-18": {"realtime": {"input": "0.15", "output": "0.6"},
                                       "batch": {"input": "0.075", "output": "0.3"}}}}}"#;
    let out = analyze_with_prices("thin", thin, &["--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let search = &group(&v, "search-indexing")["batchable"];
    assert_eq!(search["saving_covers_aws_overhead"], false, "{search}");
    let money = |x: &Value| x.as_str().unwrap().parse::<f64>().unwrap();
    assert!(money(&search["net_saving_usd"]) < 0.0, "{search}");
    let nightly = &group(&v, "nightly-summaries")["batchable"];
    assert_eq!(nightly["saving_covers_aws_overhead"], true, "{nightly}");
    assert!(money(&nightly["aws_overhead_usd"]) > 0.0, "{nightly}");
    let exact = |x: &Value| batchq_core::money::Money::parse_decimal(x.as_str().unwrap()).unwrap();
    assert_eq!(
        exact(&nightly["net_saving_usd"]),
        exact(&nightly["saving_usd"]) - exact(&nightly["aws_overhead_usd"]),
        "{nightly}"
    );

    let out = analyze_with_prices("thin", thin, &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("Where the saving would not cover batchq's own AWS overhead") && text.contains("search-indexing"),
        "{text}"
    );
}
