//! `batchq`: the operator's command line, built on the same `batchq-core`
//! code as the Lambda functions. It reads the same environment variables
//! with the same defaults, so
//! `AWS_ENDPOINT_URL=… OPENAI_BASE_URL=… OPENAI_API_KEY=… batchq init && batchq serve`
//! is a complete local system.
//!
//! Output is for people by default; `--json` prints one JSON document on
//! stdout instead. Errors go to stderr with a non-zero exit status, one of
//! [`exit::Exit`] (listed by `batchq --help` and in docs/cli.md).

mod analyze;
mod chunk;
mod commands;
mod duration;
mod exit;
mod help;
mod output;
mod remote;
mod serve;
mod serve_marker;
mod signal;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::exit::Exit;

#[derive(Parser)]
#[command(
    name = "batchq",
    version,
    about = "Queue LLM requests into provider batch APIs at half price",
    long_about = "Queue LLM requests into provider batch APIs at half price. \
                  Every command reads the store the environment names (BATCHQ_STORE, AWS_ENDPOINT_URL, ...: \
                  see each command's --help), or works through a running API with --api."
)]
struct Cli {
    /// Print one JSON document on stdout instead of human output.
    #[arg(long, global = true)]
    json: bool,
    /// The tenant the request commands (enqueue, results, status, stats,
    /// savings) act for when they use the store directly. Operator use: the
    /// store trusts this process. Over `--api`, the credentials decide the tenant.
    #[arg(
        long,
        global = true,
        env = "BATCHQ_TENANT",
        default_value = "default",
        value_name = "NAME"
    )]
    tenant: String,
    /// Work through a running API instead of the store itself (e.g.
    /// `http://127.0.0.1:8080` for `batchq serve`, or the deployed
    /// `https://ID.execute-api.REGION.amazonaws.com`): enqueue, wait,
    /// results --follow, status, stats, jobs and savings. Needed to reach an embedded store
    /// that a running `batchq serve` holds.
    #[arg(long, global = true, value_name = "URL")]
    api: Option<String>,
    /// How calls to --api authenticate. SigV4 (the deployed API's IAM authorization) takes
    /// credentials from the standard AWS chain (AWS_PROFILE, AWS_ACCESS_KEY_ID, SSO, ...) and
    /// the region from the URL's execute-api host name, else AWS_REGION.
    #[arg(
        long,
        global = true,
        env = "BATCHQ_API_AUTH",
        value_enum,
        default_value = "auto",
        value_name = "MODE"
    )]
    api_auth: remote::AuthMode,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the store (idempotent): the embedded data directory, or the tables and the bucket.
    Init,
    /// Serve the HTTP API locally and run submit, poll and ingest on a schedule; Ctrl-C or SIGTERM stops it.
    Serve {
        /// The address to listen on (port 0 picks a free port; the one bound is printed).
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "IP:PORT")]
        addr: SocketAddr,
        /// How often submit runs (a duration: 500ms, 30s, 15m, 2h, 1d; a bare number is seconds).
        #[arg(long, default_value = "10s", value_parser = duration::parse, value_name = "DURATION")]
        submit_every: Duration,
        /// How often poll runs, new result files being ingested right after (a duration, as --submit-every).
        #[arg(long, default_value = "5s", value_parser = duration::parse, value_name = "DURATION")]
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
    /// Ingest one result file now.
    Ingest {
        /// The result file: `s3://BUCKET/results/JOB/output.jsonl` (the embedded store: `results/JOB/output.jsonl`).
        url: String,
    },
    /// Enqueue a batch-format JSONL file (one request per line).
    Enqueue {
        /// The JSONL file: one `{"custom_id", "method", "url", "body"}` request per line.
        file: PathBuf,
    },
    /// Wait until nothing is queued or in flight and every job is closed.
    Wait {
        /// Give up after this long, with exit status 5 (a duration: 500ms, 30s, 15m, 2h, 1d; a bare number is seconds).
        #[arg(long, default_value = "30m", value_parser = duration::parse, value_name = "DURATION")]
        timeout: Duration,
    },
    /// Export results as the provider's batch output lines (JSONL); with --follow, --after or
    /// --cursor-file, read the results feed instead: each finished request once, in the order
    /// it finished, as one JSON line with its cursor.
    Results {
        /// Write to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Only this job's results.
        #[arg(long, value_name = "JOB_ID")]
        job: Option<String>,
        /// Tail the results feed (GET /v1/results): print results as requests finish, until
        /// Ctrl-C or SIGTERM.
        #[arg(long, conflicts_with = "job")]
        follow: bool,
        /// Read the feed after this cursor (a printed line's `cursor`, or the `next` printed at
        /// the end) instead of from its start.
        #[arg(long, value_name = "CURSOR", conflicts_with = "job")]
        after: Option<String>,
        /// Keep the feed's cursor in this file: start after the cursor stored there (when
        /// --after is not given), and store the new one after every page written.
        #[arg(long, value_name = "FILE", conflicts_with = "job")]
        cursor_file: Option<PathBuf>,
        /// How long --follow waits before asking again once it has read every result (a
        /// duration: 500ms, 30s, 15m; a bare number is seconds).
        #[arg(long, default_value = "2s", value_parser = duration::parse, value_name = "DURATION")]
        poll_every: Duration,
    },
    /// Show one request: status, attempts, result.
    Status {
        /// The request's custom_id, as enqueued.
        custom_id: String,
    },
    /// Requests by status, queue age, open jobs.
    Stats,
    /// Provider batches, newest first.
    Jobs {
        /// How many jobs to list (1 to 200).
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: u32,
    },
    /// Write the whole store (queued work, jobs, results, budgets, savings) into a new directory.
    Export {
        /// The directory to create (or an empty one).
        dir: PathBuf,
    },
    /// Load an export into this store; checks it whole first, and is safe to run again.
    Import {
        /// A directory `batchq export` wrote.
        dir: PathBuf,
    },
    /// Report the batchable share of spend in a log of past real-time calls (JSONL) and the projected monthly saving.
    Analyze {
        /// The log of past real-time calls, one JSON object per line.
        file: PathBuf,
        /// A call is batchable when it can wait at least this long (a duration: 90m, 24h, 2d, 1w; a bare number is seconds).
        #[arg(long, default_value = "24h", value_parser = duration::parse, value_name = "DURATION")]
        min_wait: Duration,
    },
    /// What batching saved: batch vs real-time cost per day, model or provider, with a bar per day.
    Savings {
        /// First day, YYYY-MM-DD (UTC).
        #[arg(long, value_name = "DAY")]
        from: Option<String>,
        /// Last day, YYYY-MM-DD (UTC).
        #[arg(long, value_name = "DAY")]
        to: Option<String>,
        /// One line per day, per model or per provider.
        #[arg(long, value_parser = ["day", "model", "provider"], default_value = "day")]
        group_by: String,
    },
    /// Webhook endpoints of the tenant and their deliveries: add, list, show, update, remove, deliveries, replay.
    Webhooks {
        #[command(subcommand)]
        action: WebhooksAction,
    },
    /// The daily report of one tenant: requests, jobs, failures by reason, spend, savings, the slowest batches, each against the day before.
    Report {
        /// The UTC day, YYYY-MM-DD (default: yesterday).
        #[arg(long, value_name = "DAY")]
        day: Option<String>,
        /// text (aligned tables), markdown, json or html (one self-contained page); --json means json.
        #[arg(long, value_parser = ["text", "markdown", "json", "html"], default_value = "text")]
        format: String,
    },
}

/// What to set on a webhook endpoint (`add`: url required; `update`: what changes).
#[derive(clap::Args, Debug, Clone, Default)]
struct EndpointArgs {
    /// The endpoint's http(s) URL (private addresses are refused unless BATCHQ_WEBHOOK_ALLOW_PRIVATE=true on the server).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Events, comma-separated: request.completed, request.failed, request.cancelled, job.finished (add: all four by default).
    #[arg(long, value_delimiter = ',', value_name = "EVENTS")]
    events: Option<Vec<String>>,
    /// per_request (one message per request) or per_job (request events of one job batched).
    #[arg(long, value_parser = ["per_request", "per_job"], value_name = "MODE")]
    mode: Option<String>,
    /// The signing secret, whsec_ + base64 (add: generated when not given, and printed once).
    #[arg(long, value_name = "WHSEC")]
    secret: Option<String>,
    /// A note for people.
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
}

#[derive(Subcommand)]
enum WebhooksAction {
    /// Register an endpoint; prints its id and its secret (once).
    Add {
        #[command(flatten)]
        fields: EndpointArgs,
        /// Register it disabled (nothing is sent until it is enabled).
        #[arg(long)]
        disabled: bool,
    },
    /// The tenant's endpoints.
    List,
    /// One endpoint.
    Show {
        /// The endpoint id (whep_...).
        id: String,
    },
    /// Change an endpoint: only what is given changes.
    Update {
        /// The endpoint id (whep_...).
        id: String,
        #[command(flatten)]
        fields: EndpointArgs,
        /// Start sending again.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Stop sending (deliveries wait until it is enabled again).
        #[arg(long)]
        disable: bool,
        /// Replace the secret with a new generated one (printed once).
        #[arg(long, conflicts_with = "secret")]
        rotate_secret: bool,
    },
    /// Remove an endpoint and its deliveries.
    Remove {
        /// The endpoint id (whep_...).
        id: String,
    },
    /// Deliveries, newest first.
    Deliveries {
        /// Only pending, delivered or failed ones.
        #[arg(long, value_parser = ["pending", "delivered", "failed"], value_name = "STATUS")]
        status: Option<String>,
        /// Only this endpoint's.
        #[arg(long, value_name = "ID")]
        endpoint: Option<String>,
        /// How many to list (1 to 1000).
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: u32,
    },
    /// Send a failed (or delivered) delivery again, same webhook-id.
    Replay {
        /// The delivery id (whmsg_...).
        id: String,
    },
}

impl EndpointArgs {
    fn fields(self) -> commands::webhooks::EndpointFields {
        commands::webhooks::EndpointFields {
            url: self.url,
            events: self.events,
            mode: self.mode,
            secret: self.secret,
            description: self.description,
            enabled: None,
            rotate_secret: false,
        }
    }
}

async fn webhooks(ctx: &commands::Ctx, action: WebhooksAction) -> Result<(), Failure> {
    use commands::webhooks as wh;
    match action {
        WebhooksAction::Add { fields, disabled } => {
            let mut f = fields.fields();
            if disabled {
                f.enabled = Some(false);
            }
            wh::add(ctx, &f).await
        }
        WebhooksAction::List => wh::list(ctx).await,
        WebhooksAction::Show { id } => wh::show(ctx, &id).await,
        WebhooksAction::Update {
            id,
            fields,
            enable,
            disable,
            rotate_secret,
        } => {
            let mut f = fields.fields();
            f.enabled = if enable {
                Some(true)
            } else if disable {
                Some(false)
            } else {
                None
            };
            f.rotate_secret = rotate_secret;
            wh::update(ctx, &id, &f).await
        }
        WebhooksAction::Remove { id } => wh::remove(ctx, &id).await,
        WebhooksAction::Deliveries {
            status,
            endpoint,
            limit,
        } => wh::deliveries(ctx, status.as_deref(), endpoint.as_deref(), limit).await,
        WebhooksAction::Replay { id } => wh::replay(ctx, &id).await,
    }
}

/// The command line with its generated sections: every command's help ends
/// with the environment variables it reads, `batchq --help` with the exit
/// statuses.
fn command_line() -> clap::Command {
    let mut cmd = Cli::command().after_help(format!(
        "{}\nEach command's --help lists the environment variables it reads; docs/cli.md has the whole reference.",
        Exit::help_table()
    ));
    let names: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_owned()).collect();
    for name in names {
        let section = help::environment(&name);
        cmd = cmd.mut_subcommand(&name, |c| c.after_help(section));
    }
    cmd
}

/// A command's failure, already phrased for the user, and the exit status
/// it ends with. An empty message prints nothing.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub exit: Exit,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit,
        }
    }

    /// Ends the command with `exit` and nothing on stderr.
    pub fn quiet(exit: Exit) -> Self {
        Self::new(exit, "")
    }
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Self::new(Exit::Failure, e.to_string())
    }
}

fn main() -> ExitCode {
    let matches = command_line().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "batchq: cannot start: {e}");
            return ExitCode::from(Exit::Failure.code());
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if !f.message.is_empty() {
                let _ = writeln!(std::io::stderr(), "batchq: {}", f.message);
            }
            ExitCode::from(f.exit.code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    // `serve` handles Ctrl-C and SIGTERM itself (it finishes a running step);
    // every other command stops where it is, as Ctrl-C always stopped it.
    if matches!(
        cli.command,
        Command::Serve { .. } | Command::Results { follow: true, .. }
    ) {
        return run_command(cli).await;
    }
    // The signal first: its handlers are in place before the command starts.
    tokio::select! {
        biased;
        () = signal::stop() => Err(Failure::new(Exit::Interrupted, "interrupted")),
        r = run_command(cli) => r,
    }
}

async fn run_command(cli: Cli) -> Result<(), Failure> {
    // Reads only the file and a price table: no AWS, no other configuration.
    if let Command::Analyze { file, min_wait } = &cli.command {
        return analyze::analyze(file, *min_wait, cli.json);
    }
    let config = batchq_core::config::Config::from_env()?;
    let quiet_logs = !matches!(cli.command, Command::Serve { .. });
    output::init_logs(&config, quiet_logs);
    let tenant = batchq_core::ids::TenantId::parse(cli.tenant.clone())
        .map_err(|e| Failure::new(Exit::Usage, format!("--tenant: {}", e.message)))?;
    let through_api = match &cli.command {
        Command::Enqueue { .. }
        | Command::Wait { .. }
        | Command::Status { .. }
        | Command::Stats
        | Command::Jobs { .. }
        | Command::Savings { .. }
        | Command::Report { .. }
        | Command::Webhooks { .. } => true,
        // The results feed; exporting by job reads the store itself.
        Command::Results {
            follow,
            after,
            cursor_file,
            ..
        } => *follow || after.is_some() || cursor_file.is_some(),
        _ => false,
    };
    let ctx = match &cli.api {
        Some(base) if through_api => commands::Ctx::through_api(base, cli.api_auth, cli.json, tenant).await?,
        Some(_) => {
            return Err(Failure::new(
                Exit::Usage,
                "--api works with enqueue, wait, results --follow/--after/--cursor-file, status, stats, \
                 jobs, savings, report and webhooks; this command works on the store itself",
            ))
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
        Command::Results {
            out,
            job,
            follow,
            after,
            cursor_file,
            poll_every,
        } => {
            if follow || after.is_some() || cursor_file.is_some() {
                let feed = commands::FeedOptions {
                    follow,
                    after,
                    cursor_file,
                    poll_every,
                };
                commands::follow_results(&ctx, out.as_deref(), feed).await
            } else {
                commands::results(&ctx, out.as_deref(), job.as_deref()).await
            }
        }
        Command::Status { custom_id } => commands::status(&ctx, &custom_id).await,
        Command::Stats => commands::stats(&ctx).await,
        Command::Jobs { limit } => commands::jobs(&ctx, limit).await,
        Command::Analyze { file, min_wait } => analyze::analyze(&file, min_wait, cli.json),
        Command::Export { dir } => commands::export(&ctx, &dir).await,
        Command::Import { dir } => commands::import(&ctx, &dir).await,
        Command::Savings { from, to, group_by } => {
            commands::savings(&ctx, from.as_deref(), to.as_deref(), &group_by).await
        }
        Command::Report { day, format } => commands::report(&ctx, day.as_deref(), &format).await,
        Command::Webhooks { action } => webhooks(&ctx, action).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        command_line().debug_assert();
    }

    #[test]
    fn every_argument_has_help_text_and_every_command_an_environment_section() {
        let cmd = command_line();
        let mut missing = Vec::new();
        for sub in cmd.get_subcommands() {
            if sub.get_about().is_none() {
                missing.push(format!("{}: about", sub.get_name()));
            }
            for arg in sub.get_arguments() {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{} {}", sub.get_name(), arg.get_id()));
                }
            }
            let after = sub.get_after_help().map(|s| s.to_string()).unwrap_or_default();
            assert!(after.starts_with("Environment:"), "{}: {after}", sub.get_name());
        }
        for arg in cmd.get_arguments() {
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("batchq {}", arg.get_id()));
            }
        }
        assert!(missing.is_empty(), "no help text: {missing:?}");
        let top = cmd.get_after_help().map(|s| s.to_string()).unwrap_or_default();
        for e in Exit::ALL {
            assert!(top.contains(&format!("{:>3}  {}", e.code(), e.meaning())), "{top}");
        }
    }
}
