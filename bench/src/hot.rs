//! Hot paths, single core: building input JSONL and parsing result JSONL,
//! each against the floor of merely reading the same bytes as JSON
//! (`serde_json` into `IgnoredAny`).

use std::time::{Duration, Instant};

use batchq_core::jsonl::{Line, LineReader};
use batchq_core::provider::openai::input::write_input_line;
use batchq_core::provider::openai::limits::MAX_RESULT_LINE_BYTES;
use batchq_core::provider::openai::output::parse_line;
use batchq_core::request::Endpoint;
use bytes::Bytes;
use futures::StreamExt;
use serde::de::IgnoredAny;
use serde::Serialize;

use crate::data;

const URL: &str = "/v1/chat/completions";

/// Throughput of one path and of the floor on the same bytes.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub bytes: u64,
    pub lines: u64,
    pub mb_per_s: f64,
    pub floor_mb_per_s: f64,
    /// `mb_per_s / floor_mb_per_s`.
    pub ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HotPaths {
    pub build_input: Throughput,
    pub parse_results: Throughput,
}

fn mb_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// Best of `reps` timings of `f`.
fn best<T>(reps: usize, mut f: impl FnMut() -> T) -> Duration {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .min()
        .expect("at least one rep")
}

/// Builds input lines as submit does: 100 lines into a buffer, handed on,
/// buffer cleared. Returns the bytes produced.
pub fn build_input(requests: &[(batchq_core::ids::RequestKey, String)], buf: &mut Vec<u8>) -> usize {
    let mut total = 0;
    for chunk in requests.chunks(100) {
        for (key, body) in chunk {
            write_input_line(buf, key, URL, body);
        }
        total += buf.len();
        std::hint::black_box(&buf[..]);
        buf.clear();
    }
    total
}

/// The whole input file the requests make (for the floor to read).
pub fn input_file(requests: &[(batchq_core::ids::RequestKey, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, body) in requests {
        write_input_line(&mut out, key, URL, body);
    }
    out
}

/// The floor: every line read as JSON into `IgnoredAny`.
pub fn read_floor(file: &[u8]) -> usize {
    let mut n = 0;
    for line in file.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let _: IgnoredAny = serde_json::from_slice(line).expect("valid JSON");
        n += 1;
    }
    n
}

/// Parses a result file as ingest does: the line reader over a stream of
/// 64 KiB chunks (as S3 delivers it), each line into the `ResultLine`
/// ingest reads (`parse_line`, which copies the answer's body; the view
/// `read_result_line` does not, so it would measure less than ingest does).
pub fn parse_results(chunks: &[Bytes]) -> usize {
    let owned: Vec<Bytes> = chunks.to_vec(); // Bytes: a reference count each
    let stream = futures::stream::iter(owned.into_iter().map(Ok)).boxed();
    let mut reader = LineReader::new(stream, MAX_RESULT_LINE_BYTES);
    let mut n = 0;
    futures::executor::block_on(async {
        while let Some(line) = reader.next_line().await.expect("in-memory stream") {
            if let Line::Data { number, bytes } = line {
                let rec = parse_line(Endpoint::ChatCompletions, number, &bytes).expect("valid result line");
                std::hint::black_box(rec);
                n += 1;
            }
        }
    });
    n
}

pub fn chunked(file: &[u8], size: usize) -> Vec<Bytes> {
    file.chunks(size).map(Bytes::copy_from_slice).collect()
}

/// Measures both hot paths on about `mb` MB of generated data each.
pub fn measure(mb: usize, reps: usize) -> HotPaths {
    let requests = data::input_requests(11, mb * 1_000_000);
    let mut buf = Vec::with_capacity(1 << 20);
    let input_file = input_file(&requests);
    let build = best(reps, || build_input(&requests, &mut buf));
    let build_floor = best(reps, || read_floor(&input_file));
    let build_input = Throughput {
        bytes: input_file.len() as u64,
        lines: requests.len() as u64,
        mb_per_s: mb_per_s(input_file.len(), build),
        floor_mb_per_s: mb_per_s(input_file.len(), build_floor),
        ratio: build_floor.as_secs_f64() / build.as_secs_f64(),
    };
    drop(requests);
    drop(input_file);

    let results = data::result_file(12, mb * 1_000_000);
    let chunks = chunked(&results, 64 * 1024);
    let lines = parse_results(&chunks) as u64;
    let parse = best(reps, || parse_results(&chunks));
    let parse_floor = best(reps, || read_floor(&results));
    let parse_results = Throughput {
        bytes: results.len() as u64,
        lines,
        mb_per_s: mb_per_s(results.len(), parse),
        floor_mb_per_s: mb_per_s(results.len(), parse_floor),
        ratio: parse_floor.as_secs_f64() / parse.as_secs_f64(),
    };
    HotPaths {
        build_input,
        parse_results,
    }
}
