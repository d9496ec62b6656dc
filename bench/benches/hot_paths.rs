//! Criterion benches of the two hot paths and their `IgnoredAny` floor
//! (`cargo bench -p batchq-bench`). `make bench` measures the same paths
//! without criterion and prints them with every other figure.

use batchq_bench::{data, hot};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn hot_paths(c: &mut Criterion) {
    let requests = data::input_requests(11, 8_000_000);
    let input_file = hot::input_file(&requests);
    let mut buf = Vec::with_capacity(1 << 20);
    let bytes = input_file.len();
    let mut g = c.benchmark_group("build_input");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.sample_size(20);
    g.bench_function("write_input_line", |b| b.iter(|| hot::build_input(&requests, &mut buf)));
    g.bench_function("ignored_any_floor", |b| b.iter(|| hot::read_floor(&input_file)));
    g.finish();

    let results = data::result_file(12, 8_000_000);
    let chunks = hot::chunked(&results, 64 * 1024);
    let mut g = c.benchmark_group("parse_results");
    g.throughput(Throughput::Bytes(results.len() as u64));
    g.sample_size(20);
    g.bench_function("read_result_line", |b| b.iter(|| hot::parse_results(&chunks)));
    g.bench_function("ignored_any_floor", |b| b.iter(|| hot::read_floor(&results)));
    g.finish();
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);
