//! The demo's two helpers, so `make demo` needs nothing but Rust:
//!
//! * `demo workload REVIEWS ARTICLES TICKETS` writes the sample workload as
//!   batch-format JSONL on stdout: product-review sentiment
//!   (gpt-4o-mini) and news-article summaries (gpt-4.1-mini) for OpenAI,
//!   support-ticket triage (claude-haiku-4-5, Anthropic's Messages API,
//!   `url: /v1/messages`) — work that can wait a few hours for half price.
//!   Deterministic: the same arguments give the same file.
//! * `demo summary JOBS_JSON RESULTS_JSONL` prints what the run did from
//!   `batchq jobs --json` and `batchq results`: requests completed per model,
//!   money per provider, the result lines exported and the saving.
//!
//! `cargo run -q -p batchq-cli --example demo -- workload 2000 1000 500`

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use batchq_core::money::Money;
use serde_json::{json, Value};

const PRODUCTS: &[&str] = &[
    "wireless earbuds",
    "espresso machine",
    "running shoes",
    "standing desk",
    "e-reader",
    "air purifier",
    "mechanical keyboard",
    "robot vacuum",
    "hiking backpack",
    "smart thermostat",
];
const PRAISE: &[&str] = &[
    "it works exactly as described",
    "the battery lasts for days",
    "the build quality is excellent",
    "setup took two minutes",
    "customer support was quick and helpful",
    "it is worth every cent",
];
const COMPLAINTS: &[&str] = &[
    "it stopped working after a week",
    "the app keeps disconnecting",
    "it arrived with a cracked case",
    "it is far louder than advertised",
    "the manual is useless",
    "returns were a nightmare",
];
const TOPICS: &[&str] = &[
    "city council budget",
    "regional rail strike",
    "new battery factory",
    "drought and farm output",
    "central bank rate decision",
    "school lunch programme",
    "stadium renovation",
    "port automation",
];
const DAYS: &[&str] = &["Monday", "Tuesday", "Wednesday", "Thursday"];

/// A small deterministic generator (xorshift64*): the workload is the same
/// on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.next() as usize % from.len()]
    }

    /// Up to `most` distinct items of `from`.
    fn some<'a>(&mut self, from: &[&'a str], most: u64) -> Vec<&'a str> {
        let n = self.range(0, most) as usize;
        let mut picked: Vec<&str> = Vec::new();
        while picked.len() < n {
            let p = self.pick(from);
            if !picked.contains(&p) {
                picked.push(p);
            }
        }
        picked
    }
}

fn review(rng: &mut Rng, i: u64) -> Value {
    let product = rng.pick(PRODUCTS);
    let good = rng.some(PRAISE, 2);
    let bad = rng.some(COMPLAINTS, 2);
    let mut text = format!("I bought the {product} last month.");
    for g in good {
        text.push_str(&format!(" Honestly, {g}."));
    }
    for b in bad {
        text.push_str(&format!(" Sadly, {b}."));
    }
    text.push_str(&format!(" Order #{}.", 100_000 + i));
    json!({
        "custom_id": format!("review-{i:05}"),
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Classify the sentiment of the product review. Answer with exactly one word: positive, negative or mixed."},
                {"role": "user", "content": text},
            ],
            "max_tokens": 2,
            "temperature": 0,
        },
    })
}

fn article(rng: &mut Rng, i: u64) -> Value {
    let topic = rng.pick(TOPICS);
    let text = format!(
        "Officials met on {} to discuss the {topic}. Supporters said the plan would create {} jobs over {} years. \
         Critics pointed to a projected cost of {} million and asked for an independent review. \
         A final decision is expected after a public consultation later this year.",
        rng.pick(DAYS),
        rng.range(50, 900),
        rng.range(2, 6),
        rng.range(3, 90)
    );
    json!({
        "custom_id": format!("article-{i:05}"),
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4.1-mini",
            "messages": [
                {"role": "system", "content": "Summarise the news article in two neutral sentences."},
                {"role": "user", "content": text},
            ],
            "max_tokens": 120,
        },
    })
}

fn ticket(rng: &mut Rng, i: u64) -> Value {
    let product = rng.pick(PRODUCTS);
    let problem = rng.pick(COMPLAINTS);
    json!({
        "custom_id": format!("ticket-{i:05}"),
        "url": "/v1/messages",
        "body": {
            "model": "claude-haiku-4-5",
            "max_tokens": 8,
            "system": "Triage the support ticket. Answer with one word: refund, repair or advice.",
            "messages": [{"role": "user", "content": format!("My {product}: {problem}. Ticket #{}.", 200_000 + i)}],
        },
    })
}

fn workload(reviews: u64, articles: u64, tickets: u64) -> std::io::Result<()> {
    let mut rng = Rng(20_261_125);
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    for i in 0..reviews {
        writeln!(out, "{}", review(&mut rng, i))?;
    }
    for i in 0..articles {
        writeln!(out, "{}", article(&mut rng, i))?;
    }
    for i in 0..tickets {
        writeln!(out, "{}", ticket(&mut rng, i))?;
    }
    out.flush()
}

fn money(v: &Value) -> Money {
    v.as_str().and_then(Money::parse_decimal).unwrap_or_default()
}

/// `$0.012345` with six decimals, rounded half up.
fn dollars(m: Money) -> String {
    let micros = (m.picodollars() + 500_000) / 1_000_000;
    format!("${}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

fn summary(jobs_json: &str, results_jsonl: &str) -> Result<(), String> {
    let jobs: Value = serde_json::from_slice(&std::fs::read(jobs_json).map_err(|e| format!("{jobs_json}: {e}"))?)
        .map_err(|e| format!("{jobs_json}: {e}"))?;
    let mut per_model: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_provider: BTreeMap<String, (u64, Money, Money)> = BTreeMap::new();
    let (mut batch, mut realtime) = (Money::ZERO, Money::ZERO);
    for j in jobs["jobs"].as_array().into_iter().flatten() {
        let completed = j["request_counts"]["completed"].as_u64().unwrap_or(0);
        *per_model
            .entry(j["model"].as_str().unwrap_or("?").to_owned())
            .or_default() += completed;
        let (b, r) = (money(&j["totals"]["batch_cost"]), money(&j["totals"]["realtime_cost"]));
        batch += b;
        realtime += r;
        let p = per_provider
            .entry(j["provider"].as_str().unwrap_or("?").to_owned())
            .or_default();
        p.0 += completed;
        p.1 += b;
        p.2 += r;
    }
    for (model, n) in &per_model {
        println!("completed with {model}: {n}");
    }
    for (name, (n, b, r)) in &per_provider {
        println!(
            "provider {name}: {n} completed, paid {} instead of {}: saved {}",
            dollars(*b),
            dollars(*r),
            dollars(*r - *b)
        );
    }
    let file = std::fs::File::open(results_jsonl).map_err(|e| format!("{results_jsonl}: {e}"))?;
    let (mut lines, mut ok) = (0u64, 0u64);
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(|e| format!("{results_jsonl}: {e}"))?;
        let l: Value = serde_json::from_str(&line).map_err(|e| format!("{results_jsonl}: {e}"))?;
        lines += 1;
        // OpenAI's output-file lines carry "response"; Anthropic's result lines "result".
        let succeeded = match l.get("result") {
            Some(r) => r["type"] == "succeeded",
            None => l["response"]["status_code"]
                .as_u64()
                .is_some_and(|s| (200..300).contains(&s)),
        };
        ok += u64::from(succeeded);
    }
    println!("result lines exported: {lines} ({ok} successful), each in its provider's batch output format");
    let saved = realtime - batch;
    let pct = if realtime.picodollars() > 0 {
        (saved.picodollars() * 100 + realtime.picodollars() / 2) / realtime.picodollars()
    } else {
        0
    };
    println!(
        "savings: paid {} instead of {} in real time: saved {} ({pct}%)",
        dollars(batch),
        dollars(realtime),
        dollars(saved)
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let done = match args.first().map(String::as_str) {
        Some("workload") => workload(number(1, 2000), number(2, 1000), number(3, 0)).map_err(|e| e.to_string()),
        Some("summary") if args.len() == 3 => summary(&args[1], &args[2]),
        _ => Err("usage: demo workload [REVIEWS] [ARTICLES] [TICKETS] | demo summary JOBS_JSON RESULTS_JSONL".into()),
    };
    if let Err(e) = done {
        eprintln!("demo: {e}");
        std::process::exit(1);
    }
}
