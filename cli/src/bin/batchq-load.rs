//! `batchq-load`: a bounded load generator for a local `batchq serve`
//! (`make load`, `scripts/load.sh`).
//!
//! N concurrent clients enqueue chat requests (`POST /v1/requests`, each with
//! its own custom_id) for a fixed time or up to a fixed count, whichever
//! comes first; then every accepted request is read back
//! (`GET /v1/requests/{custom_id}`) with the key that created it. Prints
//! throughput, latency percentiles, errors by kind and `lost: N`; exits 1
//! when a request is lost (or nothing was accepted, or one tenant could read
//! another's request).
//!
//! Loopback only: the API URL must name `localhost` or a loopback address.
//! With several keys (`--token a,b`), clients are spread across them
//! round-robin, and a sample of requests is also read with another tenant's
//! key, which must answer 404.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use reqwest::{StatusCode, Url};
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(
    name = "batchq-load",
    about = "Enqueue load against a local batchq serve, then check nothing was lost"
)]
struct Args {
    /// The API's base URL (loopback only), as `batchq serve` prints it.
    #[arg(long, env = "LOAD_API")]
    api: String,
    /// Concurrent clients.
    #[arg(long, env = "LOAD_CLIENTS", default_value_t = 32)]
    clients: usize,
    /// How long the clients enqueue, in seconds.
    #[arg(long, env = "LOAD_SECONDS", default_value_t = 60)]
    seconds: u64,
    /// At most this many requests in all.
    #[arg(long, env = "LOAD_MAX_REQUESTS", default_value_t = 1_000_000)]
    max_requests: u64,
    /// Bearer key(s) for the API, comma-separated; clients are spread across
    /// them. None: the server runs without keys.
    #[arg(long, env = "LOAD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Cross-tenant reads to try when there are several keys.
    #[arg(long, default_value_t = 200)]
    cross_checks: usize,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// What one client saw.
#[derive(Default)]
struct ClientReport {
    latencies_us: Vec<u64>,
    accepted: Vec<(usize, String)>,
    errors: BTreeMap<String, u64>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("batchq-load: {e}");
            std::process::exit(2);
        }
    }
}

fn check_loopback(api: &str) -> Result<Url, String> {
    let url = Url::parse(api).map_err(|e| format!("--api {api:?} is not a URL: {e}"))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(format!(
            "--api {api} is not a loopback address; batchq-load only sends load to this machine"
        ));
    }
    Ok(url)
}

fn request_body(custom_id: &str, client: usize, n: u64) -> Value {
    json!({
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": if n.is_multiple_of(4) { "gpt-4.1-mini" } else { "gpt-4o-mini" },
            "messages": [
                {"role": "system", "content": "Classify the sentiment of the review as positive, negative or mixed."},
                {"role": "user", "content": format!("Review {n} from client {client}: the battery lasts {} hours and the screen is fine.", n % 40)}
            ],
            "max_tokens": 5
        }
    })
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

async fn run(args: Args) -> Result<i32, String> {
    let base = check_loopback(&args.api)?;
    let base = base.as_str().trim_end_matches('/').to_owned();
    if args.clients == 0 || args.seconds == 0 {
        return Err("--clients and --seconds must be at least 1".into());
    }
    let tokens: Vec<Option<String>> = match &args.token {
        Some(t) if !t.trim().is_empty() => t.split(',').map(|k| Some(k.trim().to_owned())).collect(),
        _ => vec![None],
    };
    let http = batchq_core::tls::http_client_builder()
        .pool_max_idle_per_host(args.clients)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_millis()
    );

    if !args.json {
        eprintln!(
            "batchq-load: {} clients for {} s (at most {} requests) against {base}, {} key(s)",
            args.clients,
            args.seconds,
            args.max_requests,
            tokens.iter().flatten().count()
        );
    }
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut tasks = Vec::with_capacity(args.clients);
    for client in 0..args.clients {
        let http = http.clone();
        let url = format!("{base}/v1/requests");
        let token_index = client % tokens.len();
        let token = tokens[token_index].clone();
        let issued = issued.clone();
        let run_id = run_id.clone();
        let max = args.max_requests;
        tasks.push(tokio::spawn(async move {
            let mut report = ClientReport::default();
            let mut n = 0u64;
            while Instant::now() < deadline {
                if issued.fetch_add(1, Ordering::Relaxed) >= max {
                    break;
                }
                n += 1;
                let custom_id = format!("load-{run_id}-{client}-{n}");
                let mut req = http.post(&url).json(&request_body(&custom_id, client, n));
                if let Some(t) = &token {
                    req = req.bearer_auth(t);
                }
                let sent = Instant::now();
                let outcome = req.send().await;
                let status = match outcome {
                    Ok(resp) => {
                        let status = resp.status();
                        let _ = resp.bytes().await;
                        Ok(status)
                    }
                    Err(e) => Err(e),
                };
                report.latencies_us.push(sent.elapsed().as_micros() as u64);
                match status {
                    Ok(StatusCode::ACCEPTED) => report.accepted.push((token_index, custom_id)),
                    Ok(s) => *report.errors.entry(format!("HTTP {}", s.as_u16())).or_default() += 1,
                    Err(e) => {
                        let kind = if e.is_timeout() {
                            "timeout"
                        } else if e.is_connect() {
                            "connect"
                        } else {
                            "transport"
                        };
                        *report.errors.entry(kind.to_owned()).or_default() += 1;
                    }
                }
            }
            report
        }));
    }
    let mut latencies = Vec::new();
    let mut accepted = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks {
        let r = t.await.map_err(|e| format!("client task: {e}"))?;
        latencies.extend(r.latencies_us);
        accepted.extend(r.accepted);
        for (k, v) in r.errors {
            *errors.entry(k).or_default() += v;
        }
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let sent = latencies.len() as u64;
    let error_count: u64 = errors.values().sum();
    let throughput = sent as f64 / elapsed.as_secs_f64();

    // Read every accepted request back with the key that created it.
    let verify_started = Instant::now();
    let check = |token_index: usize, custom_id: String| {
        let http = http.clone();
        let url = format!("{base}/v1/requests/{custom_id}");
        let token = tokens[token_index].clone();
        async move {
            for attempt in 0..3 {
                let mut req = http.get(&url);
                if let Some(t) = &token {
                    req = req.bearer_auth(t);
                }
                match req.send().await {
                    Ok(resp) if resp.status() == StatusCode::OK => {
                        let body: Value = resp.json().await.unwrap_or(Value::Null);
                        return if body["custom_id"] == custom_id.as_str() {
                            "found"
                        } else {
                            "wrong request"
                        };
                    }
                    Ok(resp) if resp.status() == StatusCode::NOT_FOUND => return "not found",
                    // A 5xx or a dropped connection: ask again.
                    _ if attempt < 2 => tokio::time::sleep(Duration::from_millis(200)).await,
                    _ => {}
                }
            }
            "unanswered"
        }
    };
    let outcomes: Vec<&str> = futures::stream::iter(accepted.iter().cloned())
        .map(|(t, id)| check(t, id))
        .buffer_unordered(args.clients)
        .collect()
        .await;
    let mut verify: BTreeMap<&str, u64> = BTreeMap::new();
    for o in outcomes {
        *verify.entry(o).or_default() += 1;
    }
    let found = verify.get("found").copied().unwrap_or(0);
    let lost = accepted.len() as u64 - found;
    let verify_elapsed = verify_started.elapsed();

    // With several tenants: another tenant's key must not see a request.
    let mut cross_tried = 0u64;
    let mut cross_visible = 0u64;
    if tokens.len() > 1 {
        let step = (accepted.len() / args.cross_checks.max(1)).max(1);
        for (token_index, custom_id) in accepted.iter().step_by(step).take(args.cross_checks) {
            let other = (token_index + 1) % tokens.len();
            let mut req = http.get(format!("{base}/v1/requests/{custom_id}"));
            if let Some(t) = &tokens[other] {
                req = req.bearer_auth(t);
            }
            if let Ok(resp) = req.send().await {
                cross_tried += 1;
                if resp.status() != StatusCode::NOT_FOUND {
                    cross_visible += 1;
                }
            }
        }
    }

    let p = |q: f64| percentile(&latencies, q);
    let ok = lost == 0 && !accepted.is_empty() && cross_visible == 0;
    if args.json {
        println!(
            "{}",
            json!({
                "clients": args.clients,
                "tenants": tokens.iter().flatten().count(),
                "seconds": elapsed.as_secs_f64(),
                "sent": sent,
                "accepted": accepted.len(),
                "errors": error_count,
                "errors_by_kind": errors,
                "throughput_per_second": throughput,
                "latency_ms": {"p50": p(50.0), "p90": p(90.0), "p99": p(99.0), "max": p(100.0)},
                "verify": {"seconds": verify_elapsed.as_secs_f64(), "outcomes": verify},
                "cross_tenant": {"tried": cross_tried, "visible": cross_visible},
                "lost": lost,
            })
        );
    } else {
        println!(
            "sent {sent} requests in {:.1} s with {} clients: {} accepted (202), {error_count} errors{}",
            elapsed.as_secs_f64(),
            args.clients,
            accepted.len(),
            if errors.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    errors
                        .iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        println!("throughput: {throughput:.1} requests/s");
        println!(
            "latency: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            p(50.0),
            p(90.0),
            p(99.0),
            p(100.0)
        );
        println!(
            "verify: read back {} accepted requests in {:.1} s: {}",
            accepted.len(),
            verify_elapsed.as_secs_f64(),
            verify
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if tokens.len() > 1 {
            println!("cross-tenant: {cross_visible} of {cross_tried} reads with another tenant's key saw the request");
        }
        println!("lost: {lost}");
    }
    Ok(if ok { 0 } else { 1 })
}
