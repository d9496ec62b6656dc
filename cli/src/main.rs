//! `batchq`: the operator's command line, built on the same `batchq-core`
//! code as the Lambda functions. It reads the same environment variables
//! with the same defaults, so
//! `AWS_ENDPOINT_URL=… OPENAI_BASE_URL=… OPENAI_API_KEY=… batchq init && batchq serve`
//! is a complete local system.
//!
//! Output is for people by default; `--json` prints one JSON document on
//! stdout instead. Errors go to stderr with a non-zero exit: 1 for a failure,
//! 2 when the command ran but part of its work failed (`enqueue` rejected
//! lines, `submit` or `poll` reported errors; the report on stdout lists
//! them).

mod analyze;
mod chunk;
mod commands;
mod output;
mod remote;
mod serve;
mod serve_marker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "batchq",
    version,
    about = "Queue LLM requests into provider batch APIs at half price",
    after_help = "Exit status: 0 done; 1 the command failed (message on stderr); 2 it ran but part of \
                  its work failed: enqueue rejected lines or found conflicts, submit or poll reported \
                  errors or abandoned jobs (listed in the report on stdout, the first named on stderr)."
)]
struct Cli {
    /// Print one JSON document on stdout instead of human output.
    #[arg(long, global = true)]
    json: bool,
    /// The tenant the request commands (enqueue, results, status, stats,
    /// savings) act for when they use the store directly. Operator use: the
    /// store trusts this process. Over `--api`, the credentials decide the tenant.
    #[arg(long, global = true, env = "BATCHQ_TENANT", default_value = "default")]
    tenant: String,
    /// Work through a running API instead of the store itself (e.g.
    /// `http://127.0.0.1:8080` for `batchq serve`, or the deployed
    /// `https://ID.execute-api.REGION.amazonaws.com`): enqueue, wait,
    /// status, stats, jobs and savings. Needed to reach an embedded store
    /// that a running `batchq serve` holds.
    #[arg(long, global = true)]
    api: Option<String>,
    /// How calls to --api authenticate. SigV4 (the deployed API's IAM authorization) takes
    /// credentials from the standard AWS chain (AWS_PROFILE, AWS_ACCESS_KEY_ID, SSO, ...) and
    /// the region from the URL's execute-api host name, else AWS_REGION.
    #[arg(long, global = true, env = "BATCHQ_API_AUTH", value_enum, default_value = "auto")]
    api_auth: remote::AuthMode,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the store (idempotent): the embedded data directory, or the tables and the bucket.
    Init,
    /// Serve the HTTP API locally and run submit, poll and ingest on a schedule.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// How often submit runs.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        submit_every: Duration,
        /// How often poll runs (new result files are ingested right after).
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        poll_every: Duration,
    },
    /// Run submit once now.
    Submit {
        /// Submit every queued group, due or not.
        #[arg(long)]
        force: bool,
    },
    /// Run poll once now (and ingest the result files it copies).
    Poll,
    /// Ingest one result file now: `s3://BUCKET/results/JOB/output.jsonl` (the embedded store: `results/JOB/output.jsonl`).
    Ingest { url: String },
    /// Enqueue a batch-format JSONL file (one request per line).
    Enqueue { file: PathBuf },
    /// Wait until nothing is queued or in flight and every job is closed.
    Wait {
        #[arg(long, default_value = "30m", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Export results as OpenAI batch output lines (JSONL).
    Results {
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only this job's results.
        #[arg(long)]
        job: Option<String>,
    },
    /// Show one request: status, attempts, result.
    Status { custom_id: String },
    /// Requests by status, queue age, open jobs.
    Stats,
    /// Provider batches, newest first.
    Jobs {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Write the whole store (queued work, jobs, results, budgets, savings) into a new directory.
    Export { dir: PathBuf },
    /// Load an export into this store; checks it whole first, and is safe to run again.
    Import { dir: PathBuf },
    /// Report the batchable share of spend in a log of past real-time calls (JSONL) and the projected monthly saving.
    Analyze {
        file: PathBuf,
        /// A call is batchable when it can wait at least this long (e.g. 24h, 2d, 90m).
        #[arg(long, default_value = "24h", value_parser = analyze::parse_min_wait)]
        min_wait: Duration,
    },
    /// What batching saved: batch vs real-time cost per day, model or provider, with a bar per day.
    Savings {
        /// First day, YYYY-MM-DD (UTC).
        #[arg(long)]
        from: Option<String>,
        /// Last day, YYYY-MM-DD (UTC).
        #[arg(long)]
        to: Option<String>,
        #[arg(long, value_parser = ["day", "model", "provider"], default_value = "day")]
        group_by: String,
    },
}

/// Parses `90`, `90s`, `15m`, `2h`, `500ms`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 15m or 2h"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?}: unknown unit {unit:?}; use ms, s, m or h")),
    }
}

/// A command's failure, already phrased for the user.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Self {
            message: e.to_string(),
            code: 1,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("batchq: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("batchq: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    // Reads only the file and a price table: no AWS, no other configuration.
    if let Command::Analyze { file, min_wait } = &cli.command {
        return analyze::analyze(file, *min_wait, cli.json);
    }
    let config = batchq_core::config::Config::from_env()?;
    let quiet_logs = !matches!(cli.command, Command::Serve { .. });
    output::init_logs(&config, quiet_logs);
    let tenant =
        batchq_core::ids::TenantId::parse(cli.tenant.clone()).map_err(|e| format!("--tenant: {}", e.message))?;
    let through_api = matches!(
        cli.command,
        Command::Enqueue { .. }
            | Command::Wait { .. }
            | Command::Status { .. }
            | Command::Stats
            | Command::Jobs { .. }
            | Command::Savings { .. }
    );
    let ctx = match &cli.api {
        Some(base) if through_api => commands::Ctx::through_api(base, cli.api_auth, cli.json, tenant).await?,
        Some(_) => {
            return Err("--api works with enqueue, wait, status, stats, jobs and savings; \
                        this command works on the store itself"
                .into())
        }
        None => {
            let create = matches!(
                cli.command,
                Command::Init | Command::Serve { .. } | Command::Import { .. }
            );
            commands::Ctx::local(config, cli.json, tenant, create).await?
        }
    };
    match cli.command {
        Command::Init => commands::init(&ctx).await,
        Command::Serve {
            addr,
            submit_every,
            poll_every,
        } => serve::serve(&ctx, addr, submit_every, poll_every).await,
        Command::Submit { force } => commands::submit(&ctx, force).await,
        Command::Poll => commands::poll(&ctx).await,
        Command::Ingest { url } => commands::ingest(&ctx, &url).await,
        Command::Enqueue { file } => commands::enqueue(&ctx, &file).await,
        Command::Wait { timeout } => commands::wait(&ctx, timeout).await,
        Command::Results { out, job } => commands::results(&ctx, out.as_deref(), job.as_deref()).await,
        Command::Status { custom_id } => commands::status(&ctx, &custom_id).await,
        Command::Stats => commands::stats(&ctx).await,
        Command::Jobs { limit } => commands::jobs(&ctx, limit).await,
        Command::Analyze { file, min_wait } => analyze::analyze(&file, min_wait, cli.json),
        Command::Export { dir } => commands::export(&ctx, &dir).await,
        Command::Import { dir } => commands::import(&ctx, &dir).await,
        Command::Savings { from, to, group_by } => {
            commands::savings(&ctx, from.as_deref(), to.as_deref(), &group_by).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
