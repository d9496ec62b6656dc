//! Profiling aid: `cargo run --profile perf -p batchq-bench --example parse_profile [parse|floor|both]`.
use batchq_bench::{data, hot};
use std::time::Instant;

fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "both".into());
    let results = data::result_file(12, 32_000_000);
    let chunks = hot::chunked(&results, 64 * 1024);
    for _ in 0..5 {
        if what != "floor" {
            let t = Instant::now();
            hot::parse_results(&chunks);
            let p = t.elapsed();
            eprintln!("parse {:.0} MB/s", results.len() as f64 / 1e6 / p.as_secs_f64());
        }
        if what != "parse" {
            let t = Instant::now();
            hot::read_floor(&results);
            let f = t.elapsed();
            eprintln!("floor {:.0} MB/s", results.len() as f64 / 1e6 / f.as_secs_f64());
        }
    }
}
