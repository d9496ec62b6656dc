//! What the bench measured and the table it prints.

use batchq_bench::cost::{Counts, Overhead};
use batchq_bench::goals;
use batchq_bench::hot;
use batchq_bench::meter::Meter;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct FunctionInfo {
    pub(crate) name: String,
    pub(crate) bytes: u64,
    pub(crate) memory_mb: u32,
    pub(crate) start_to_ready_ms: Vec<f64>,
    pub(crate) start_to_ready_median_ms: f64,
    pub(crate) rss_at_ready_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Phase {
    pub(crate) name: String,
    pub(crate) requests: u64,
    pub(crate) wall_s: f64,
    pub(crate) invocations: u64,
    /// Σ of invocation times, ms.
    pub(crate) lambda_ms: f64,
    pub(crate) lambda_mb_ms: f64,
    pub(crate) api_gateway_units: u64,
    pub(crate) provider_calls: u64,
    pub(crate) meter: Meter,
}

impl Phase {
    pub(crate) fn per_1000(&self, n: f64) -> f64 {
        n * 1000.0 / self.requests.max(1) as f64
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PeakMemory {
    pub(crate) what: String,
    pub(crate) max_rss_bytes: u64,
    pub(crate) goal_bytes: u64,
    pub(crate) met: bool,
    pub(crate) wall_s: f64,
    pub(crate) detail: Value,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RecordedOverhead {
    /// `aws_overhead_usd` of `/v1/savings` after the run (None: not read).
    pub(crate) batchq_usd: Option<f64>,
    /// The cost model's total for the whole run.
    pub(crate) model_usd: f64,
    /// (batchq − model) / model, in percent.
    pub(crate) difference_pct: Option<f64>,
    /// Of batchq's figure, what it folded at enqueue (`enqueue_aws_overhead_usd`).
    pub(crate) batchq_enqueue_usd: Option<f64>,
    /// The model's share of the same: the enqueue phases and the bytes kept
    /// in DynamoDB (which batchq counts as it enqueues).
    pub(crate) model_enqueue_usd: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Results {
    pub(crate) generated_at: String,
    pub(crate) quick: bool,
    pub(crate) profile: String,
    pub(crate) machine: Value,
    pub(crate) hot_paths: hot::HotPaths,
    pub(crate) functions: Vec<FunctionInfo>,
    pub(crate) end_to_end: Vec<Phase>,
    pub(crate) end_to_end_requests: u64,
    pub(crate) end_to_end_completed: u64,
    pub(crate) peak_memory: Vec<PeakMemory>,
    pub(crate) embedded: Embedded,
    pub(crate) cost_counts: Counts,
    pub(crate) overhead_per_1000_usd: Overhead,
    pub(crate) saving_per_1000_usd: f64,
    /// batchq's own measure of its AWS overhead for the end-to-end run
    /// (`/v1/savings`), beside the cost model's total for the same run.
    pub(crate) recorded_overhead: RecordedOverhead,
    pub(crate) overhead_to_saving: f64,
    /// The overhead and write units of a request by how it was enqueued.
    pub(crate) modes: Modes,
    /// Issue #20's goals, each with this run's figure (bench/src/goals.rs).
    pub(crate) goals: Vec<goals::Judged>,
    pub(crate) seconds: f64,
}

/// A request's AWS overhead over its life, by enqueue mode.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Mode {
    pub(crate) overhead_per_1000_usd: f64,
    pub(crate) wcu_per_request: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Modes {
    pub(crate) single: Mode,
    pub(crate) bulk: Mode,
    pub(crate) overhead_to_saving_single: f64,
    pub(crate) overhead_to_saving_bulk: f64,
}

pub(crate) fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

pub(crate) fn print_table(r: &Results) {
    let h = &r.hot_paths;
    println!();
    println!(
        "batchq bench ({} profile{})",
        r.profile,
        if r.quick { ", --quick" } else { "" }
    );
    println!();
    print_hot_paths(h);
    println!();
    println!("2. Peak memory (max RSS of the function process; goal < 64 MiB)");
    for m in &r.peak_memory {
        println!(
            "   {:<58} {:>6.1} MiB  {}  ({:.0} s)",
            m.what,
            mib(m.max_rss_bytes),
            if m.met { "ok" } else { "OVER GOAL" },
            m.wall_s
        );
    }
    println!();
    println!(
        "3. End to end: {} requests ({} completed); per 1,000 requests",
        r.end_to_end_requests, r.end_to_end_completed
    );
    println!("   phase               requests   wall s  invocations  DynamoDB calls      WCU      RCU  S3 calls  provider calls");
    for p in &r.end_to_end {
        println!(
            "   {:<18} {:>9} {:>8.1} {:>12.1} {:>15.1} {:>8.1} {:>8.1} {:>9.2} {:>15.2}",
            p.name,
            p.requests,
            p.wall_s,
            p.per_1000(p.invocations as f64),
            p.per_1000(p.meter.dynamodb_calls() as f64),
            p.per_1000(p.meter.wcu()),
            p.per_1000(p.meter.rcu()),
            p.per_1000(p.meter.s3_calls() as f64),
            p.per_1000(p.provider_calls as f64),
        );
    }
    println!();
    let o = &r.overhead_per_1000_usd;
    println!("4. AWS overhead per 1,000 requests (list prices, us-east-1, arm64; see bench/src/cost.rs)");
    for (name, v) in [
        ("API Gateway", o.api_gateway),
        ("Lambda requests", o.lambda_requests),
        ("Lambda duration", o.lambda_duration),
        ("DynamoDB writes", o.dynamodb_writes),
        ("DynamoDB reads", o.dynamodb_reads),
        ("DynamoDB storage (1 month)", o.dynamodb_storage),
        ("S3 requests", o.s3_requests),
        ("S3 storage", o.s3_storage),
    ] {
        println!("   {name:<28} ${v:>9.5}");
    }
    println!("   {:<28} ${:>9.5}", "total overhead", o.total);
    println!(
        "   {:<28} ${:>9.5}",
        "saving (Batch vs real time)", r.saving_per_1000_usd
    );
    println!("   overhead / saving            {:>9.1}%", r.overhead_to_saving * 100.0);
    let ro = &r.recorded_overhead;
    match (ro.batchq_usd, ro.difference_pct) {
        (Some(b), Some(d)) => println!(
            "   batchq's own aws_overhead_usd for the run ${b:.5}, the model's ${:.5}: {d:+.2}%  {}",
            ro.model_usd,
            if d.abs() <= 1.0 { "ok" } else { "over" }
        ),
        _ => println!("   batchq's own aws_overhead_usd: not read"),
    }
    if let (Some(b), Some(e)) = (ro.batchq_usd, ro.batchq_enqueue_usd) {
        println!(
            "     of which enqueue: batchq ${e:.5}, the model ${:.5}; submit to ingest: batchq ${:.5}, the model ${:.5}",
            ro.model_enqueue_usd,
            b - e,
            ro.model_usd - ro.model_enqueue_usd
        );
    }
    for (name, m, ratio) in [
        ("single", &r.modes.single, r.modes.overhead_to_saving_single),
        ("bulk", &r.modes.bulk, r.modes.overhead_to_saving_bulk),
    ] {
        println!(
            "     enqueued {name:<6}: overhead ${:>9.5}  / saving {:>6.1}%   WCU per request over its life {:>6.2}",
            m.overhead_per_1000_usd,
            ratio * 100.0,
            m.wcu_per_request
        );
    }
    println!();
    print_functions(5, &r.functions);
    println!();
    print_embedded(6, &r.embedded);
    println!();
    print_goals(7, &r.goals);
    println!();
    println!("Took {:.0} s; written to bench/results.json", r.seconds);
}

/// Section 5: the function binaries' sizes and start-to-ready times.
pub(crate) fn print_functions(n: u32, functions: &[FunctionInfo]) {
    println!(
        "{n}. Function binaries          bytes    MiB   start to ready (median of {})   RSS at ready",
        functions.first().map_or(0, |f| f.start_to_ready_ms.len())
    );
    for f in functions {
        println!(
            "   {:<20} {:>12} {:>6.1} {:>16.1} ms {:>26.1} MiB",
            f.name,
            f.bytes,
            mib(f.bytes),
            f.start_to_ready_median_ms,
            mib(f.rss_at_ready_bytes.unwrap_or(0))
        );
    }
}

/// Section 1: the two hot paths against their floor.
pub(crate) fn print_hot_paths(h: &hot::HotPaths) {
    println!("1. Hot paths, one core                      MB/s   IgnoredAny floor   ratio");
    for (name, t) in [
        ("build input JSONL", &h.build_input),
        ("parse result JSONL", &h.parse_results),
    ] {
        println!(
            "   {name:<38} {:>7.0}   {:>16.0}   {:>5.2}   ({:.0} MB, {} lines)",
            t.mb_per_s,
            t.floor_mb_per_s,
            t.ratio,
            t.bytes as f64 / 1e6,
            t.lines
        );
    }
}

/// Issue #20's goals, each beside this run's figure.
pub(crate) fn print_goals(n: u32, judged: &[goals::Judged]) {
    println!("{n}. Goals of issue #20 (bench/src/goals.rs)                    figure        goal");
    for j in judged {
        println!(
            "   {:<52} {:>10}   {:>10}   {}",
            j.what,
            goals::shown(j, goals::unit_of(j.figure)),
            j.target,
            j.verdict()
        );
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "ok"
    } else {
        "MISSED"
    }
}

/// The embedded store's figures, as section `n`, each with its target.
pub(crate) fn print_embedded(n: u32, e: &Embedded) {
    println!(
        "{n}. Embedded store (SQLite, synchronous={}, temporary data dir; fake provider in process)    target",
        e.durability
    );
    let b = &e.bulk_enqueue;
    println!(
        "   bulk enqueue, {} calls of {} lines        {:>9.0} requests/s      >= {:.0}/s  {}",
        b.calls,
        b.lines_per_call,
        b.requests_per_s,
        b.target_per_s,
        verdict(b.met)
    );
    let s = &e.single_enqueue;
    println!(
        "   single enqueue, {} calls             p50 {:>5.2} ms  p99 {:>5.2} ms   p99 < {:.0} ms   {}  (p90 {:.2}, max {:.1} ms)",
        s.calls,
        s.p50_ms,
        s.p99_ms,
        s.target_p99_ms,
        verdict(s.met),
        s.p90_ms,
        s.max_ms
    );
    let x = &e.end_to_end;
    let phases: Vec<String> = x.phases.iter().map(|(p, t)| format!("{p} {t:.1}")).collect();
    println!(
        "   {} requests end to end ({} completed, {} jobs) {:>6.1} s        < {:.0} s     {}  ({} s)",
        x.requests,
        x.completed,
        x.jobs,
        x.wall_s,
        x.target_s,
        verdict(x.met),
        phases.join(", ")
    );
    let m = &e.ingest_peak_memory;
    println!(
        "   peak RSS, {:<40} {:>6.1} MiB         < {:.0} MiB   {}  ({:.0} s)",
        m.what,
        mib(m.max_rss_bytes),
        mib(m.goal_bytes),
        verdict(m.met),
        m.wall_s
    );
}

// ---------------------------------------------------------------- embedded store

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Bulk {
    pub(crate) requests: u64,
    pub(crate) calls: u64,
    pub(crate) lines_per_call: u64,
    pub(crate) body_bytes: u64,
    pub(crate) wall_s: f64,
    pub(crate) requests_per_s: f64,
    pub(crate) target_per_s: f64,
    pub(crate) met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Single {
    pub(crate) calls: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) wall_s: f64,
    pub(crate) target_p99_ms: f64,
    pub(crate) met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct EndToEnd {
    pub(crate) requests: u64,
    pub(crate) completed: u64,
    pub(crate) jobs: u64,
    pub(crate) wall_s: f64,
    /// (phase, wall seconds): enqueue, submit, poll, ingest.
    pub(crate) phases: Vec<(String, f64)>,
    pub(crate) target_s: f64,
    pub(crate) met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Embedded {
    /// `synchronous` of the SQLite database (`App::open`'s default).
    pub(crate) durability: String,
    pub(crate) bulk_enqueue: Bulk,
    pub(crate) single_enqueue: Single,
    pub(crate) end_to_end: EndToEnd,
    pub(crate) ingest_peak_memory: PeakMemory,
    pub(crate) seconds: f64,
}
