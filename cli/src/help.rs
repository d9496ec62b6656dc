//! The "Environment" section each command's `--help` ends with: the
//! variables that command reads, described from the same list as the
//! configuration reference (`batchq_core::config::VARS`), plus the few the
//! command line itself reads. `batchq --help` also lists the exit statuses.

use batchq_core::config::{self, VARS};

/// Variables only the command line reads (not in `config::VARS`).
pub const CLI_VARS: [(&str, &str); 4] = [
    ("BATCHQ_TENANT", "the tenant for --tenant (default `default`)"),
    (
        "BATCHQ_API_AUTH",
        "the mode for --api-auth: auto, sigv4, bearer or none",
    ),
    (
        "BATCHQ_API_KEY",
        "with --api: the bearer token sent (a `batchq serve` key from its BATCHQ_API_KEYS, or a JWT)",
    ),
    (
        "NO_COLOR",
        "set and non-empty: log lines never coloured (otherwise coloured only when stderr is a terminal)",
    ),
];

/// Where the state lives: every command that opens the store.
const STORE: &[&str] = &[
    config::STORE,
    config::AWS_ENDPOINT_URL,
    config::AWS_REGION,
    config::REQUESTS_TABLE,
    config::JOBS_TABLE,
    config::BUCKET,
];

/// How providers are reached: submit, poll, serve.
const PROVIDER: &[&str] = &[
    config::PROVIDER,
    config::PROVIDERS_FILE,
    config::OPENAI_BASE_URL,
    config::OPENAI_API_KEY,
    config::OPENAI_API_KEY_SECRET_ARN,
];

/// When a group is due.
const SUBMIT: &[&str] = &[config::SUBMIT_MIN_REQUESTS, config::SUBMIT_MAX_AGE_SECS];

/// How `--api` calls authenticate.
const API: &[&str] = &["BATCHQ_API_AUTH", "BATCHQ_API_KEY"];

const LOG: &[&str] = &[config::LOG, config::LOG_FORMAT];

/// How `serve` delivers webhooks to callers.
const WEBHOOKS: &[&str] = &[
    config::WEBHOOK_ALLOW_PRIVATE,
    config::WEBHOOK_TIMEOUT_MS,
    config::WEBHOOK_RETRY_DELAYS_MS,
    config::WEBHOOK_MIN_RETRY_SPAN_MS,
    config::WEBHOOK_CONCURRENCY,
    config::WEBHOOK_EVERY_MS,
];

/// The variables `command` reads, in the order its help lists them.
pub fn vars_of(command: &str) -> Vec<&'static str> {
    let groups: &[&[&str]] = match command {
        "init" => &[STORE],
        "serve" => &[STORE, PROVIDER, SUBMIT, &[config::API_KEYS], WEBHOOKS, LOG],
        "submit" => &[STORE, PROVIDER, SUBMIT],
        "poll" => &[STORE, PROVIDER],
        "ingest" | "export" | "import" => &[STORE],
        "enqueue" | "wait" | "status" | "stats" | "jobs" | "savings" | "report" | "webhooks" => {
            &[&["BATCHQ_TENANT"], STORE, API]
        }
        "results" => &[&["BATCHQ_TENANT"], STORE],
        "analyze" => &[&[config::PRICING_FILE]],
        _ => &[],
    };
    let mut out: Vec<&'static str> = groups.iter().flat_map(|g| g.iter().copied()).collect();
    if command != "analyze" {
        out.extend(
            ["BATCHQ_LOG", "NO_COLOR"]
                .iter()
                .filter(|v| !out.contains(v))
                .copied()
                .collect::<Vec<_>>(),
        );
    }
    out
}

/// The short description of a variable: the command line's own, or the
/// first sentence of the configuration reference's.
pub fn describe(name: &str) -> Option<String> {
    if let Some((_, d)) = CLI_VARS.iter().find(|(n, _)| *n == name) {
        return Some((*d).to_owned());
    }
    let var = VARS.iter().find(|v| v.name == name)?;
    let first = var
        .description
        .split(". ")
        .next()
        .unwrap_or(var.description)
        .trim_end_matches('.')
        .replace('`', "");
    Some(if var.default.is_empty() {
        first
    } else {
        format!("{first} (default {})", var.default)
    })
}

/// The "Environment" section of `command`'s help.
pub fn environment(command: &str) -> String {
    let vars = vars_of(command);
    let mut out = String::from("Environment:\n");
    for name in vars {
        let d = describe(name).unwrap_or_default();
        out.push_str(&format!("  {name}\n          {d}\n"));
    }
    out.push_str("  Every variable batchq reads: docs/cli.md (Environment).");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_a_help_names_is_one_batchq_reads() {
        for command in [
            "init", "serve", "submit", "poll", "ingest", "enqueue", "wait", "results", "status", "stats", "jobs",
            "export", "import", "analyze", "savings", "report", "webhooks",
        ] {
            let vars = vars_of(command);
            assert!(!vars.is_empty(), "{command}");
            for v in vars {
                assert!(describe(v).is_some_and(|d| !d.is_empty()), "{command}: {v}");
            }
        }
    }

    #[test]
    fn docs_cli_md_names_every_variable_a_help_lists() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cli.md")).unwrap();
        let env = doc.split("## Environment").nth(1).expect("an Environment section");
        for command in [
            "init", "serve", "submit", "poll", "ingest", "enqueue", "wait", "results", "status", "stats", "jobs",
            "export", "import", "analyze", "savings", "report", "webhooks",
        ] {
            for v in vars_of(command) {
                assert!(env.contains(&format!("`{v}`")), "docs/cli.md: {v} ({command})");
            }
        }
    }
}
