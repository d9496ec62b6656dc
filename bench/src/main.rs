//! `batchq-bench`: what `make bench` runs (see docs/performance.md).
//!
//! Needs the emulator with its meter (`BATCHQ_MOTO_METER=1
//! scripts/with-emulator.sh`, which `make bench` does) and the four function
//! binaries next to this one (`cargo build --profile perf`). Starts the fake
//! provider itself. Prints a table and writes `bench/results.json`.
//!
//! `--quick` runs everything at a tenth of the size (for working on the bench).
//! `--rss-requests N` sets how many requests carry the 150 MB input and
//! 200 MB output files of the peak-memory runs (default 50,000: 3 KB bodies,
//! 4 KB responses, as the issue asks; fewer, larger ones run faster).
//! `--out PATH` writes the results elsewhere than `bench/results.json`.
//! `BATCHQ_BENCH_ONLY=peak-memory` (or `--only peak-memory`) runs only those
//! (prints them, writes nothing). `BATCHQ_BENCH_ONLY=embedded` runs only the
//! embedded store's figures (no emulator needed), prints them and replaces
//! them in `bench/results.json`. `BATCHQ_BENCH_ONLY=hot-paths` runs only the
//! hot paths (no emulator), prints them with the parse goal and writes
//! nothing. `BATCHQ_BENCH_ONLY=functions` runs only the function binaries'
//! sizes and start-to-ready times (with the emulator), prints them with
//! their goals and writes nothing. `batchq-bench --help` lists every flag and
//! variable; a bad flag or value exits 2 naming it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use batchq_bench::cost::{Counts, Overhead};
use batchq_bench::goals::{self, Figure};
use batchq_bench::hot;
use batchq_bench::lambda::Function;
use batchq_bench::meter::Meter;
use batchq_core::app::App;
use clap::{Parser, ValueEnum};
use fake_openai::{FakeConfig, FakeHandle, FakeServer};
use serde_json::json;

mod embedded;
mod end_to_end;
mod events;
mod peak_memory;
mod report;

use end_to_end::*;
use peak_memory::*;
use report::*;

const FUNCTIONS: [(&str, u32); 5] = [
    ("batchq-enqueue", 256),
    ("batchq-submit", 512),
    ("batchq-poll", 512),
    ("batchq-ingest", 512),
    ("batchq-deliver", 256),
];
const RSS_GOAL_BYTES: u64 = 64 * 1024 * 1024;

struct Sizes {
    requests: usize,
    single: usize,
    big_requests: usize,
    big_input_bytes: usize,
    output_bytes: usize,
    hot_mb: usize,
    hot_reps: usize,
    starts: usize,
    /// Requests through the embedded store end to end (enqueued in bulk).
    embedded_requests: usize,
    /// Single enqueue calls on the embedded store.
    embedded_single: usize,
}

impl Sizes {
    fn full() -> Self {
        Self {
            requests: 20_000,
            single: 2_000,
            big_requests: 50_000,
            big_input_bytes: 150_000_000,
            output_bytes: 200_000_000,
            hot_mb: 64,
            hot_reps: 5,
            starts: 5,
            embedded_requests: 100_000,
            embedded_single: 5_000,
        }
    }
    fn quick() -> Self {
        Self {
            requests: 2_000,
            single: 200,
            big_requests: 5_000,
            big_input_bytes: 15_000_000,
            output_bytes: 20_000_000,
            hot_mb: 16,
            hot_reps: 3,
            starts: 3,
            embedded_requests: 10_000,
            embedded_single: 500,
        }
    }
}

struct Env {
    endpoint: String,
    http: reqwest::Client,
    bin_dir: PathBuf,
    log_dir: PathBuf,
    fake: FakeHandle,
}

impl Env {
    fn function_env(&self, app: &App) -> Vec<(String, String)> {
        let c = &app.config;
        [
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("BATCHQ_REQUESTS_TABLE", c.requests_table.clone()),
            ("BATCHQ_JOBS_TABLE", c.jobs_table.clone()),
            ("BATCHQ_WEBHOOKS_TABLE", c.webhooks_table.clone().unwrap_or_default()),
            ("BATCHQ_BUCKET", c.bucket.clone()),
            ("BATCHQ_PROVIDER", "openai".into()),
            ("OPENAI_BASE_URL", self.fake.base_url()),
            ("OPENAI_API_KEY", "sk-fake".into()),
            ("BATCHQ_SUBMIT_MIN_REQUESTS", "1".into()),
            ("BATCHQ_LOG", "warn".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        // Extra variables for experiments: BENCH_FUNCTION_ENV="K=V K2=V2".
        .chain(
            std::env::var("BENCH_FUNCTION_ENV")
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
                .collect::<Vec<_>>(),
        )
        .collect()
    }

    async fn start(&self, app: &App, name: &str, tag: &str) -> Result<Function, String> {
        let memory = FUNCTIONS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, m)| *m)
            .unwrap_or(512);
        let log = self.log_dir.join(format!("{name}-{tag}.log"));
        let mut f = Function::start(name, &self.bin_dir.join(name), memory, &self.function_env(app), &log).await?;
        f.ready(Duration::from_secs(30)).await?;
        Ok(f)
    }

    async fn meter(&self) -> Result<Meter, String> {
        Meter::read(&self.http, &self.endpoint).await
    }
}

/// Measures batchq for `make bench`: hot-path throughput, peak memory, AWS
/// calls and cost per request, function sizes and start times (on the local
/// emulator), and the embedded store's figures. Prints a table and writes the
/// figures as JSON.
#[derive(Parser, Debug)]
#[command(
    name = "batchq-bench",
    after_help = "\
Environment:
  AWS_ENDPOINT_URL    the emulator (with its meter) to measure against; `make bench`
                      starts one and sets it (not needed for --only embedded)
  BATCHQ_BENCH_ONLY   the same as --only
  BENCH_FUNCTION_ENV  extra variables for the function processes, \"K=V K2=V2\" (experiments)
  BENCH_WRAP          a tool to run each function binary under, e.g. \"heaptrack -o /tmp/ht\"

The five function binaries (batchq-enqueue, -submit, -poll, -ingest, -deliver) must sit next
to this one: `cargo build --profile perf` (what `make bench` does).
`--embedded-ingest DIR KEY` is the bench's own child process (the embedded
section's ingest, measured in a fresh process); not for use by hand."
)]
struct Args {
    /// Run everything at a tenth of the size (for working on the bench).
    #[arg(long)]
    quick: bool,
    /// Requests that carry the peak-memory runs' 150 MB input and 200 MB output files (default 50,000,
    /// 5,000 with --quick); fewer, larger requests run faster.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    rss_requests: Option<u64>,
    /// Where the results are written (default: bench/results.json in the source tree).
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Run one section only: `peak-memory` (prints the runs as JSON, writes nothing), `embedded`
    /// (the embedded store's figures, no emulator; replaces them in the results file) or `hot-paths`
    /// (the two hot paths and the parse goal, no emulator; writes nothing) or `functions` (the
    /// function binaries' sizes and start-to-ready times and their goals; writes nothing).
    #[arg(long, value_name = "SECTION", value_enum, env = "BATCHQ_BENCH_ONLY")]
    only: Option<Only>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Only {
    PeakMemory,
    Embedded,
    HotPaths,
    Functions,
}

async fn run(quick: bool, rss_requests: Option<usize>, only: Option<Only>, out_path: &Path) -> Result<Results, String> {
    let started = Instant::now();
    let mut sizes = if quick { Sizes::quick() } else { Sizes::full() };
    if let Some(n) = rss_requests {
        sizes.big_requests = n;
    }
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .map_err(|_| "AWS_ENDPOINT_URL is not set: run `make bench` (it starts the emulator)".to_owned())?;
    let bin_dir = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .ok_or("no exe dir")?
        .to_path_buf();
    let profile = bin_dir.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_owned();
    let log_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tmp/bench");
    std::fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
    let fake = FakeServer::start(FakeConfig::default())
        .await
        .map_err(|e| format!("fake provider: {e}"))?;
    let env = Arc::new(Env {
        endpoint,
        http: batchq_core::tls::http_client_builder()
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?,
        bin_dir,
        log_dir,
        fake,
    });
    env.meter().await?;

    if only == Some(Only::PeakMemory) {
        // For working on the peak-memory runs: only them, printed as JSON.
        let rows = peak_memory(&env, &sizes).await?;
        println!("{}", serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?);
        return Err(format!(
            "--only peak-memory: done in {:.0} s, nothing written",
            started.elapsed().as_secs_f64()
        ));
    }

    if only == Some(Only::Functions) {
        // For working on the binaries: their sizes and start times only.
        let functions = function_starts(&env, &sizes).await?;
        print_functions(5, &functions);
        println!();
        let judged: Vec<_> = goals::judge(|f| match f {
            Figure::BinaryMb(name) => functions.iter().find(|x| x.name == name).map(|x| x.bytes as f64 / 1e6),
            Figure::StartToReadyMs => functions.iter().map(|x| x.start_to_ready_median_ms).reduce(f64::max),
            _ => None,
        })
        .into_iter()
        .filter(|j| j.met.is_some())
        .collect();
        print_goals(7, &judged);
        println!();
        return Err(format!(
            "--only functions: done in {:.0} s, nothing written",
            started.elapsed().as_secs_f64()
        ));
    }

    eprintln!(
        "bench: hot paths ({} MB each, best of {})",
        sizes.hot_mb, sizes.hot_reps
    );
    let (mb, reps) = (sizes.hot_mb, sizes.hot_reps);
    let hot_paths = tokio::task::spawn_blocking(move || hot::measure(mb, reps))
        .await
        .map_err(|e| e.to_string())?;

    eprintln!("bench: function sizes and start-to-ready times");
    let functions = function_starts(&env, &sizes).await?;

    eprintln!("bench: end to end, {} requests", sizes.requests);
    let e2e = end_to_end(&env, &sizes).await?;

    eprintln!(
        "bench: peak memory ({} requests / {} MB input, {} MB output)",
        sizes.big_requests,
        sizes.big_input_bytes / 1_000_000,
        sizes.output_bytes / 1_000_000
    );
    let peak_memory = peak_memory(&env, &sizes).await?;

    let embedded = embedded::embedded(&env.fake.base_url(), &sizes).await?;

    let mut counts = Counts {
        requests: sizes.requests as u64,
        input_bytes: e2e.input_bytes,
        result_bytes: e2e.result_bytes,
        // Body items plus about 1 KB of state, result pointer and keys per
        // request (answers stay in the result file copies).
        dynamodb_bytes: e2e.body_bytes + sizes.requests as u64 * 1024,
        ..Default::default()
    };
    for p in &e2e.phases {
        counts.api_gateway_units += p.api_gateway_units;
        counts.lambda_invocations += p.invocations;
        counts.lambda_mb_ms += p.lambda_mb_ms;
        counts.wcu += p.meter.wcu();
        counts.rcu += p.meter.rcu();
        let (put, get) = p.meter.s3_billed();
        counts.s3_put_class += put;
        counts.s3_get_class += get;
    }
    let overhead = Overhead::per_1000(&counts);
    let saving = e2e.saved_usd * 1000.0 / sizes.requests as f64;
    let storage = Counts {
        requests: counts.requests,
        input_bytes: counts.input_bytes,
        result_bytes: counts.result_bytes,
        dynamodb_bytes: counts.dynamodb_bytes,
        ..Default::default()
    };
    let single = by_mode(&e2e.phases, "enqueue (single)", &storage);
    let bulk = by_mode(&e2e.phases, "enqueue (bulk)", &storage);
    let ratio = |o: f64| if saving > 0.0 { o / saving } else { f64::NAN };
    let modes = Modes {
        overhead_to_saving_single: ratio(single.overhead_per_1000_usd),
        overhead_to_saving_bulk: ratio(bulk.overhead_per_1000_usd),
        single,
        bulk,
    };
    let model_usd = overhead.total * sizes.requests as f64 / 1000.0;
    let enqueue_phases: f64 = e2e
        .phases
        .iter()
        .filter(|p| p.name.starts_with("enqueue"))
        .map(|p| Overhead::per_1000(&phase_counts(p)).total * p.requests as f64 / 1000.0)
        .sum();
    let kept = Counts {
        requests: counts.requests,
        dynamodb_bytes: counts.dynamodb_bytes,
        ..Default::default()
    };
    let recorded_overhead = RecordedOverhead {
        batchq_usd: e2e.recorded_overhead_usd,
        batchq_enqueue_usd: e2e.recorded_enqueue_usd,
        model_enqueue_usd: enqueue_phases + Overhead::per_1000(&kept).total * counts.requests as f64 / 1000.0,
        model_usd,
        difference_pct: e2e
            .recorded_overhead_usd
            .filter(|_| model_usd > 0.0)
            .map(|b| (b - model_usd) / model_usd * 100.0),
    };
    let goals = judge_goals(
        &hot_paths,
        &functions,
        &e2e.phases,
        &modes,
        recorded_overhead.difference_pct,
    );
    let results = Results {
        generated_at: batchq_core::time::Clock::now(&batchq_core::time::SystemClock).to_rfc3339(),
        quick,
        profile,
        machine: json!({
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
        }),
        hot_paths,
        functions,
        end_to_end_requests: sizes.requests as u64,
        end_to_end_completed: e2e.completed,
        end_to_end: e2e.phases,
        peak_memory,
        embedded,
        overhead_to_saving: if saving > 0.0 {
            overhead.total / saving
        } else {
            f64::NAN
        },
        cost_counts: counts,
        overhead_per_1000_usd: overhead,
        modes,
        goals,
        saving_per_1000_usd: saving,
        recorded_overhead,
        seconds: started.elapsed().as_secs_f64(),
    };
    let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    std::fs::write(out_path, text + "\n").map_err(|e| format!("{}: {e}", out_path.display()))?;
    Ok(results)
}

/// The overhead and write units of a request enqueued by `enqueue` (one of
/// the two enqueue phases) over its whole life: that phase's share per
/// request, plus the shared phases' (submit, poll, ingest) and storage.
/// What the model counts of one phase.
fn phase_counts(p: &Phase) -> Counts {
    let (put, get) = p.meter.s3_billed();
    Counts {
        requests: p.requests,
        api_gateway_units: p.api_gateway_units,
        lambda_invocations: p.invocations,
        lambda_mb_ms: p.lambda_mb_ms,
        wcu: p.meter.wcu(),
        rcu: p.meter.rcu(),
        s3_put_class: put,
        s3_get_class: get,
        ..Default::default()
    }
}

fn by_mode(phases: &[Phase], enqueue: &str, storage: &Counts) -> Mode {
    let mine = || {
        phases
            .iter()
            .filter(move |p| p.requests > 0 && (p.name == enqueue || !p.name.starts_with("enqueue")))
    };
    Mode {
        overhead_per_1000_usd: mine().map(|p| Overhead::per_1000(&phase_counts(p)).total).sum::<f64>()
            + Overhead::per_1000(storage).total,
        wcu_per_request: mine().map(|p| p.meter.wcu() / p.requests as f64).sum(),
    }
}

/// Issue #20's goals judged on this run's figures (bench/src/goals.rs).
fn judge_goals(
    hot: &hot::HotPaths,
    functions: &[FunctionInfo],
    phases: &[Phase],
    modes: &Modes,
    recorded_diff_pct: Option<f64>,
) -> Vec<goals::Judged> {
    let calls = |name: &str| {
        phases
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.per_1000((p.meter.dynamodb_calls() + p.meter.s3_calls()) as f64))
    };
    goals::judge(|f| match f {
        Figure::OverheadPctBulk => Some(modes.overhead_to_saving_bulk * 100.0),
        Figure::OverheadPctSingle => Some(modes.overhead_to_saving_single * 100.0),
        Figure::WcuPerRequestBulk => Some(modes.bulk.wcu_per_request),
        Figure::BinaryMb(name) => functions.iter().find(|f| f.name == name).map(|f| f.bytes as f64 / 1e6),
        Figure::StartToReadyMs => functions.iter().map(|f| f.start_to_ready_median_ms).reduce(f64::max),
        Figure::ParseRatio => Some(hot.parse_results.ratio),
        Figure::SubmitCallsPer1000 => calls("submit"),
        Figure::IngestCallsPer1000 => calls("ingest"),
        Figure::RecordedOverheadDiffPct => recorded_diff_pct.map(f64::abs),
    })
}

/// `BATCHQ_BENCH_ONLY=embedded`: the embedded store's figures only, put
/// in place of the ones `out_path` holds (the other figures are kept).
async fn run_embedded_only(quick: bool, rss_requests: Option<usize>, out_path: &Path) -> Result<(), String> {
    let mut sizes = if quick { Sizes::quick() } else { Sizes::full() };
    if let Some(n) = rss_requests {
        sizes.big_requests = n;
    }
    let fake = FakeServer::start(FakeConfig::default())
        .await
        .map_err(|e| format!("fake provider: {e}"))?;
    let figures = embedded::embedded(&fake.base_url(), &sizes).await?;
    println!();
    print_embedded(1, &figures);
    let mut all: serde_json::Value = std::fs::read_to_string(out_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({}));
    all["embedded"] = serde_json::to_value(&figures).map_err(|e| e.to_string())?;
    let text = serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?;
    std::fs::write(out_path, text + "\n").map_err(|e| format!("{}: {e}", out_path.display()))?;
    println!();
    println!(
        "Took {:.0} s; the embedded figures written to {}",
        figures.seconds,
        out_path.display()
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(embedded::INGEST_CHILD_FLAG) {
        // The embedded section's ingest child (see embedded.rs).
        let (Some(dir), Some(key)) = (args.get(1), args.get(2)) else {
            eprintln!("usage: batchq-bench {} DIR KEY", embedded::INGEST_CHILD_FLAG);
            return std::process::ExitCode::FAILURE;
        };
        return match embedded::ingest_child(dir, key) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("batchq-bench {}: {e}", embedded::INGEST_CHILD_FLAG);
                std::process::ExitCode::FAILURE
            }
        };
    }
    // Bad flags: clap prints the error and usage and exits 2. A bad
    // BATCHQ_BENCH_ONLY is named as the variable, not as `--only`.
    if let Some(v) = std::env::var_os("BATCHQ_BENCH_ONLY").filter(|v| !v.is_empty()) {
        let v = v.to_string_lossy();
        if Only::from_str(&v, false).is_err() {
            use clap::CommandFactory;
            Args::command()
                .error(
                    clap::error::ErrorKind::InvalidValue,
                    format!(
                        "BATCHQ_BENCH_ONLY={v:?} is not a section: use peak-memory, embedded, hot-paths or functions, or unset it"
                    ),
                )
                .exit();
        }
    }
    let cli = Args::parse();
    let quick = cli.quick;
    let rss_requests = cli.rss_requests.map(|n| n as usize);
    let out = cli
        .out
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("results.json"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if cli.only == Some(Only::HotPaths) {
        // For working on the hot paths: no emulator, nothing written.
        let sizes = if quick { Sizes::quick() } else { Sizes::full() };
        let started = Instant::now();
        let hot = hot::measure(sizes.hot_mb, sizes.hot_reps);
        print_hot_paths(&hot);
        println!();
        let judged: Vec<_> = goals::judge(|f| (f == Figure::ParseRatio).then_some(hot.parse_results.ratio))
            .into_iter()
            .filter(|j| j.met.is_some())
            .collect();
        print_goals(2, &judged);
        println!();
        println!("Took {:.0} s; nothing written", started.elapsed().as_secs_f64());
        return std::process::ExitCode::SUCCESS;
    }
    if cli.only == Some(Only::Embedded) {
        return match rt.block_on(run_embedded_only(quick, rss_requests, &out)) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("batchq-bench: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    match rt.block_on(run(quick, rss_requests, cli.only, &out)) {
        Ok(results) => {
            print_table(&results);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("batchq-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn phase(name: &str, requests: u64, wcu: f64, rcu: f64, s3: &[(&str, u64)], units: u64) -> Phase {
        use batchq_bench::meter::OpCount;
        let mut meter = Meter::default();
        let ddb = meter.0.entry("dynamodb".into()).or_default();
        ddb.insert(
            "PutItem".into(),
            OpCount {
                calls: requests,
                rcu,
                wcu,
                seconds: 0.0,
            },
        );
        let s3map = meter.0.entry("s3".into()).or_default();
        for (op, calls) in s3 {
            s3map.insert(
                (*op).into(),
                OpCount {
                    calls: *calls,
                    ..Default::default()
                },
            );
        }
        Phase {
            name: name.into(),
            requests,
            invocations: requests / 10 + 1,
            lambda_mb_ms: requests as f64 * 7.0,
            api_gateway_units: units,
            meter,
            ..Default::default()
        }
    }

    #[test]
    fn the_overhead_of_both_enqueue_modes_mixed_by_their_requests_is_the_whole_runs() {
        let phases = vec![
            phase("enqueue (single)", 2_000, 16_000.0, 900.0, &[], 2_000),
            phase("enqueue (bulk)", 18_000, 12_000.0, 20.0, &[("PutObject", 3)], 20),
            phase(
                "submit",
                20_000,
                4_000.0,
                1_600.0,
                &[("PutObject", 17), ("GetObject", 4)],
                0,
            ),
            phase("poll", 20_000, 12.0, 30.0, &[("ListObjectsV2", 7)], 0),
            phase("ingest", 20_000, 5_000.0, 1_000.0, &[("GetObject", 2)], 0),
        ];
        let mut all = Counts {
            requests: 20_000,
            input_bytes: 80_000_000,
            result_bytes: 60_000_000,
            dynamodb_bytes: 150_000_000,
            ..Default::default()
        };
        let storage = all.clone();
        for p in &phases {
            all.api_gateway_units += p.api_gateway_units;
            all.lambda_invocations += p.invocations;
            all.lambda_mb_ms += p.lambda_mb_ms;
            all.wcu += p.meter.wcu();
            all.rcu += p.meter.rcu();
            let (put, get) = p.meter.s3_billed();
            all.s3_put_class += put;
            all.s3_get_class += get;
        }
        let single = by_mode(&phases, "enqueue (single)", &storage);
        let bulk = by_mode(&phases, "enqueue (bulk)", &storage);
        let mixed = (2_000.0 * single.overhead_per_1000_usd + 18_000.0 * bulk.overhead_per_1000_usd) / 20_000.0;
        let whole = Overhead::per_1000(&all).total;
        assert!((mixed - whole).abs() < whole * 1e-9, "{mixed} vs {whole}");
        assert!((single.wcu_per_request - (8.0 + 0.2 + 0.0006 + 0.25)).abs() < 1e-9);
        assert!((bulk.wcu_per_request - (12_000.0 / 18_000.0 + 0.2 + 0.0006 + 0.25)).abs() < 1e-9);
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn every_argument_has_help_text() {
        for arg in Args::command().get_arguments() {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(!help.trim().is_empty(), "--{} has no help text", arg.get_id());
        }
    }

    #[test]
    fn the_flags_make_bench_passes_are_read() {
        let a = Args::try_parse_from(["batchq-bench", "--quick", "--rss-requests", "10000", "--out=/x.json"]).unwrap();
        assert!(a.quick);
        assert_eq!(a.rss_requests, Some(10_000));
        assert_eq!(a.out.as_deref(), Some(Path::new("/x.json")));
        let a = Args::try_parse_from(["batchq-bench", "--only", "peak-memory"]).unwrap();
        assert_eq!(a.only, Some(Only::PeakMemory));
        let a = Args::try_parse_from(["batchq-bench", "--only", "hot-paths"]).unwrap();
        assert_eq!(a.only, Some(Only::HotPaths));
    }
}
