//! Configuration from environment variables, parsed once per cold start.
//!
//! Every variable is listed in [`VARS`] with its default and meaning; the
//! table of docs/configuration.md is checked against that list by a test, and
//! the SAM template's environment names are checked against it too.
//! With nothing but `AWS_ENDPOINT_URL`, `OPENAI_BASE_URL` and `OPENAI_API_KEY`
//! set, every default yields a working local system.

use std::time::Duration;

use thiserror::Error;

use crate::job::ProviderKind;

/// One environment variable batchq reads.
#[derive(Debug, Clone, Copy)]
pub struct EnvVar {
    pub name: &'static str,
    /// Default as written in docs/configuration.md (empty: unset by default).
    pub default: &'static str,
    pub description: &'static str,
}

macro_rules! env_vars {
    ($($ident:ident = $name:literal, $default:literal, $desc:literal;)*) => {
        $(pub const $ident: &str = $name;)*
        /// Every environment variable batchq reads, in the order of docs/configuration.md.
        pub const VARS: &[EnvVar] = &[$(EnvVar { name: $name, default: $default, description: $desc }),*];
    };
}

env_vars! {
    STORE = "BATCHQ_STORE", "aws when AWS is configured, else embedded:./batchq-data",
        "Where batchq keeps its state: `aws` (the DynamoDB tables and S3 bucket below) or `embedded:DIR` (SQLite and files in DIR: one machine, one process at a time; see Run on one machine). Unset: `aws` in Lambda, when AWS_ENDPOINT_URL is set, or when AWS credentials are configured (AWS_ACCESS_KEY_ID, AWS_PROFILE, web identity or container credentials, ~/.aws/credentials or ~/.aws/config); otherwise `embedded:./batchq-data`. On EC2 with only an instance role, set `aws`.";
    AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL", "",
        "AWS SDK's own variable: send S3 and DynamoDB calls to this endpoint (a local emulator). When set and no AWS credentials are configured, batchq uses dummy static credentials and path-style S3 addressing.";
    AWS_ENDPOINT_URL_LAMBDA = "AWS_ENDPOINT_URL_LAMBDA", "",
        "AWS SDK's own variable: send the enqueue function's Lambda Invoke calls to this endpoint (tests). Unset: AWS_ENDPOINT_URL, else Lambda's regional endpoint.";
    AWS_REGION = "AWS_REGION", "us-east-1",
        "AWS SDK's own variable. batchq falls back to us-east-1 when the SDK finds no region.";
    REQUESTS_TABLE = "BATCHQ_REQUESTS_TABLE", "batchq-requests",
        "DynamoDB table holding request state, body and result items.";
    JOBS_TABLE = "BATCHQ_JOBS_TABLE", "batchq-jobs",
        "DynamoDB table holding jobs, queue groups and counters.";
    WEBHOOKS_TABLE = "BATCHQ_WEBHOOKS_TABLE", "",
        "DynamoDB table holding webhook endpoints, their positions and deliveries (webhooks to callers on AWS). Unset: the /v1/webhooks routes answer 404 webhooks_not_configured on AWS; `batchq init` creates it when set.";
    BUCKET = "BATCHQ_BUCKET", "batchq",
        "S3 bucket for batch input files, result files and large bodies.";
    PROVIDER = "BATCHQ_PROVIDER", "openai",
        "The one provider when no provider table is given: `openai` (any OpenAI-compatible batch API), `azure_openai`, `anthropic`, `groq` or `together`. Its key is read from the kind's own variable (e.g. ANTHROPIC_API_KEY), else OPENAI_API_KEY; its base URL from OPENAI_BASE_URL, else the kind's public API. Several providers: BATCHQ_PROVIDERS_FILE.";
    PROVIDERS_FILE = "BATCHQ_PROVIDERS_FILE", "",
        "Provider table (JSON): a local path or `s3://BUCKET/KEY` naming the provider instances (kind, base URL, key source, limits, endpoints) and the routes from url and model to each. Unset: the one provider above takes every request its kind serves.";
    ANTHROPIC_API_KEY = "ANTHROPIC_API_KEY", "",
        "Default key variable of an `anthropic` provider in the provider table (the official SDKs' name).";
    GROQ_API_KEY = "GROQ_API_KEY", "",
        "Default key variable of a `groq` provider in the provider table.";
    TOGETHER_API_KEY = "TOGETHER_API_KEY", "",
        "Default key variable of a `together` provider in the provider table.";
    OPENAI_BASE_URL = "OPENAI_BASE_URL", "https://api.openai.com/v1",
        "Base URL of the provider's API (the official SDKs' name); for another kind than openai the default is that kind's public API.";
    OPENAI_API_KEY = "OPENAI_API_KEY", "",
        "Provider API key (the official SDKs' name). For local use; in AWS prefer the secret ARN.";
    OPENAI_API_KEY_SECRET_ARN = "BATCHQ_OPENAI_API_KEY_SECRET_ARN", "",
        "Secrets Manager secret holding the provider key, read once per cold start. Wins over OPENAI_API_KEY.";
    OPENAI_WEBHOOK_SECRET = "OPENAI_WEBHOOK_SECRET", "",
        "OpenAI's webhook signing secret (`whsec_…`, the official SDKs' name): enables `POST /v1/provider-webhooks/openai`, whose batch events are verified with it and poll their batch at once. Unset (and no BATCHQ_OPENAI_WEBHOOK_SECRET_ARN): that route answers 404 `not_configured`. For local use; in AWS use the secret ARN.";
    OPENAI_WEBHOOK_SECRET_ARN = "BATCHQ_OPENAI_WEBHOOK_SECRET_ARN", "",
        "Secrets Manager secret holding OpenAI's webhook signing secret (a plain `whsec_…` string, or JSON with it under `OPENAI_WEBHOOK_SECRET`), read once per cold start by the enqueue function (the template's `OpenAiWebhookSecretArn`). Setting both this and OPENAI_WEBHOOK_SECRET is a start-up error.";
    POLL_FUNCTION = "BATCHQ_POLL_FUNCTION", "",
        "The enqueue function: the poll function (name or ARN) a verified OpenAI batch event hands its batch to, by an asynchronous Lambda invocation (`{\"poll_batch\": {\"provider\": \"openai\", \"batch_id\": …}}`). Required there with a webhook secret; the template sets it.";
    OPENAI_ORG_ID = "OPENAI_ORG_ID", "",
        "Optional `OpenAI-Organization` header.";
    OPENAI_PROJECT_ID = "OPENAI_PROJECT_ID", "",
        "Optional `OpenAI-Project` header.";
    AZURE_OPENAI_ENDPOINT = "AZURE_OPENAI_ENDPOINT", "",
        "Azure OpenAI resource endpoint, e.g. `https://NAME.openai.azure.com` (with BATCHQ_PROVIDER=azure_openai).";
    AZURE_OPENAI_API_KEY = "AZURE_OPENAI_API_KEY", "",
        "Azure OpenAI key (sent as `api-key`). Falls back to OPENAI_API_KEY.";
    OPENAI_API_VERSION = "OPENAI_API_VERSION", "2024-10-21",
        "Azure OpenAI `api-version` query parameter.";
    COMPLETION_WINDOW = "BATCHQ_COMPLETION_WINDOW", "24h",
        "`completion_window` sent when creating a batch.";
    HTTP_CONNECT_TIMEOUT_SECS = "BATCHQ_HTTP_CONNECT_TIMEOUT_SECS", "10",
        "Provider connect timeout.";
    HTTP_READ_TIMEOUT_SECS = "BATCHQ_HTTP_READ_TIMEOUT_SECS", "120",
        "Provider read timeout: the longest wait for the next bytes of a response.";
    HTTP_MAX_RETRIES = "BATCHQ_HTTP_MAX_RETRIES", "5",
        "Retries of a provider call on 429, 5xx and connection errors before giving up.";
    PROVIDER_LIST_LAG_SECS = "BATCHQ_PROVIDER_LIST_LAG_SECS", "60",
        "How long the provider's batch listing may lag its creates: after a create whose answer was lost (a 5xx, a timeout), batchq lists again with backoff for this long, looking for the batch it may have made, before it creates again.";
    MAX_LINES_PER_BATCH = "BATCHQ_MAX_LINES_PER_BATCH", "50000",
        "Most requests in one provider batch (OpenAI's limit is 50,000).";
    MAX_BYTES_PER_BATCH = "BATCHQ_MAX_BYTES_PER_BATCH", "200000000",
        "Largest input file in bytes (OpenAI's limit is 200 MB).";
    MAX_EMBEDDING_INPUTS_PER_BATCH = "BATCHQ_MAX_EMBEDDING_INPUTS_PER_BATCH", "50000",
        "Most embedding inputs in one `/v1/embeddings` batch, over all its requests (OpenAI's limit is 50,000).";
    ENQUEUED_TOKEN_LIMITS = "BATCHQ_ENQUEUED_TOKEN_LIMITS", "",
        "Per-model enqueued-token limits of the provider account, `model=tokens` pairs, comma-separated (e.g. `gpt-4o-mini=2000000,gpt-4o=90000`, OpenAI's tier 1). batchq plans with 90% of them. A model not listed has no limit until the provider refuses a batch with `token_limit_exceeded`; then batchq learns it (see Lifecycle).";
    SUBMIT_MIN_REQUESTS = "BATCHQ_SUBMIT_MIN_REQUESTS", "1000",
        "A queue group is submitted once it holds this many requests…";
    SUBMIT_MAX_AGE_SECS = "BATCHQ_SUBMIT_MAX_AGE_SECS", "900",
        "…or once its oldest request has waited this long.";
    MAX_ATTEMPTS = "BATCHQ_MAX_ATTEMPTS", "3",
        "Provider batches a request may be tried in before it ends failed.";
    JOB_LEASE_SECS = "BATCHQ_JOB_LEASE_SECS", "960",
        "How long a submit run owns a job before another run may resume it (longer than the function timeout).";
    BATCH_DEADLINE_SECS = "BATCHQ_BATCH_DEADLINE_SECS", "93600",
        "A provider batch still unfinished this long after submission is cancelled and its requests handled as expired.";
    TOKEN_LIMIT_HOLD_SECS = "BATCHQ_TOKEN_LIMIT_HOLD_SECS", "1800",
        "Longest wait before the next batch of a model after repeated `token_limit_exceeded` refusals (the wait starts at 60 s on the second refusal in a row and doubles).";
    DELETE_PROVIDER_FILES = "BATCHQ_DELETE_PROVIDER_FILES", "true",
        "Delete input, output and error files at the provider once their copies are safe in S3.";
    MAX_BODY_BYTES = "BATCHQ_MAX_BODY_BYTES", "4194304",
        "Largest accepted request body (serialized JSON).";
    INLINE_BODY_MAX_BYTES = "BATCHQ_INLINE_BODY_MAX_BYTES", "16384",
        "Bodies up to this size are stored in DynamoDB; larger ones in S3 under bodies/.";
    INLINE_RESULT_MAX_BYTES = "BATCHQ_INLINE_RESULT_MAX_BYTES", "16384",
        "Responses up to this size are stored in DynamoDB; larger ones in S3 under responses/.";
    S3_PART_BYTES = "BATCHQ_S3_PART_BYTES", "8388608",
        "Part size of multipart uploads to S3 (at least 5 MiB); also the streaming writer's buffer bound.";
    RETENTION_DAYS = "BATCHQ_RETENTION_DAYS", "30",
        "Days a finished request (its state and result items; its body item 30 days more, counted from enqueue) and a finished job are kept; they carry `expires_at` and DynamoDB's TTL deletes them (usually within days of it; until then they still read, and their custom_id still deduplicates). `0` keeps them.";
    TENANT_MAX_PENDING = "BATCHQ_TENANT_MAX_PENDING", "1000000",
        "Most unfinished requests one tenant may have; an enqueue that would pass it answers 429 `quota_exceeded`.";
    TENANT_MAX_PENDING_BYTES = "BATCHQ_TENANT_MAX_PENDING_BYTES", "10737418240",
        "Most bytes of request bodies one tenant may have unfinished (10 GiB); beyond it enqueue answers 429.";
    TENANT_DAILY_BUDGET_USD = "BATCHQ_TENANT_DAILY_BUDGET_USD", "",
        "Spend limit per tenant and UTC day, in US dollars: one amount for every tenant (`10.00`) or `tenant=amount` pairs, comma-separated, `*` for every tenant not listed (`acme=25,*=5`). Counted as the batch cost of the day's results plus the estimated cost of the tenant's queued and in-flight requests; an enqueue that would pass it answers 429 `budget_exceeded`, crossing 80% logs a warning. Unset: no limit. See [Budgets](operations.md#budgets).";
    TENANT_MONTHLY_BUDGET_USD = "BATCHQ_TENANT_MONTHLY_BUDGET_USD", "",
        "The same per UTC calendar month.";
    METRICS_NAMESPACE = "BATCHQ_METRICS_NAMESPACE", "batchq",
        "CloudWatch namespace of the metrics the Lambda functions write as Embedded Metric Format lines (the template sets `batchq/STACK`).";
    API_KEYS = "BATCHQ_API_KEYS", "",
        "`batchq serve` only: `tenant:key` pairs, comma-separated (keys of 16+ characters). Callers send `Authorization: Bearer KEY` and act as that tenant. Unset: one `default` tenant and loopback addresses only.";
    WEBHOOK_ALLOW_PRIVATE = "BATCHQ_WEBHOOK_ALLOW_PRIVATE", "false",
        "Webhooks to callers: `true` allows endpoints whose host is or resolves to a private, loopback, link-local, CGNAT, unique-local, multicast or unspecified address (local testing). Otherwise they are refused at registration (400 naming `url`) and at every delivery.";
    WEBHOOK_TIMEOUT_MS = "BATCHQ_WEBHOOK_TIMEOUT_MS", "10000",
        "How long a webhook delivery attempt may take, in milliseconds, before it counts as failed and is retried.";
    WEBHOOK_RETRY_DELAYS_MS = "BATCHQ_WEBHOOK_RETRY_DELAYS_MS", "5000,300000,1800000,7200000,18000000,36000000,36000000",
        "The waits after each failed webhook attempt, in milliseconds, comma-separated (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h). Each wait is drawn uniformly between zero and its value (full jitter); the last repeats until BATCHQ_WEBHOOK_MIN_RETRY_SPAN_MS has passed, then the delivery is failed (listable, replayable).";
    WEBHOOK_MIN_RETRY_SPAN_MS = "BATCHQ_WEBHOOK_MIN_RETRY_SPAN_MS", "86400000",
        "A webhook delivery is given up no sooner than this long after its first attempt (24 h).";
    WEBHOOK_CONCURRENCY = "BATCHQ_WEBHOOK_CONCURRENCY", "4",
        "Webhook attempts in flight at once per endpoint (1 to 64).";
    WEBHOOK_EVERY_MS = "BATCHQ_WEBHOOK_EVERY_MS", "1000",
        "`batchq serve`: how often the webhook delivery loop starts a pass per endpoint, in milliseconds.";
    JWT_TENANT_CLAIM = "BATCHQ_JWT_TENANT_CLAIM", "sub",
        "Lambda behind the optional JWT authorizer: the token claim that names the tenant.";
    REPORT_TENANTS = "BATCHQ_REPORT_TENANTS", "default",
        "The poll function's scheduled daily report (an event `{\"report\": true}`): the tenants it writes a report for, comma-separated.";
    REPORT_WEBHOOK_URL = "BATCHQ_REPORT_WEBHOOK_URL", "",
        "The scheduled daily report is also POSTed here (JSON: the day, the tenant, the report and its Markdown), once per day and tenant. Unset: S3 only.";
    PRICING_FILE = "BATCHQ_PRICING_FILE", "",
        "A price table replacing the bundled one (same format as `shared/data/prices.json`): a local path or `s3://BUCKET/KEY`, read once at start.";
    LOG = "BATCHQ_LOG", "info",
        "Log filter: a level and `target=level` entries, e.g. `info,batchq_core=debug`.";
    LOG_FORMAT = "BATCHQ_LOG_FORMAT", "json in Lambda, text elsewhere",
        "`json` or `text`.";
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("environment variable {var}={value:?} is invalid: {expected}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub expected: String,
}

/// Where the provider key comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum ApiKeySource {
    /// From the environment (local use).
    Literal(String),
    /// A Secrets Manager secret ARN, read once per cold start.
    SecretArn(String),
    /// No key configured; provider calls will fail with 401.
    None,
}

impl std::fmt::Debug for ApiKeySource {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Literal(_) => f.write_str("Literal(<redacted>)"),
            Self::SecretArn(arn) => write!(f, "SecretArn({arn})"),
            Self::None => f.write_str("None"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// For OpenAI: the `/v1` base. For Azure: the resource endpoint.
    pub base_url: String,
    pub api_key: ApiKeySource,
    pub organization: Option<String>,
    pub project: Option<String>,
    pub api_version: String,
    pub completion_window: String,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub max_retries: u32,
    /// How long the provider's listings may lag its creates.
    pub list_lag: Duration,
}

/// Where OpenAI's webhook signing secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookSecretSource {
    /// `OPENAI_WEBHOOK_SECRET` (local use). `Debug` never shows the key.
    Literal(crate::webhook::signature::WebhookSecret),
    /// `BATCHQ_OPENAI_WEBHOOK_SECRET_ARN`: a Secrets Manager secret, read
    /// once per cold start.
    SecretArn(String),
}

/// Where the state lives (`BATCHQ_STORE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// DynamoDB tables and an S3 bucket.
    Aws,
    /// SQLite and files in one directory, used by one process at a time.
    Embedded { dir: std::path::PathBuf },
}

/// Why the store is the one it is, for the line `batchq serve` starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreReason {
    /// `BATCHQ_STORE` names it.
    Configured,
    /// Running in Lambda.
    Lambda,
    /// `AWS_ENDPOINT_URL` is set.
    AwsEndpoint,
    /// AWS credentials are configured (the variable or file named).
    AwsCredentials(&'static str),
    /// Nothing about AWS is configured: the embedded default.
    NothingConfigured,
}

impl std::fmt::Display for StoreReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Configured => write!(f, "BATCHQ_STORE"),
            Self::Lambda => write!(f, "running in AWS Lambda"),
            Self::AwsEndpoint => write!(f, "AWS_ENDPOINT_URL is set"),
            Self::AwsCredentials(what) => write!(f, "AWS credentials are configured ({what})"),
            Self::NothingConfigured => write!(f, "no BATCHQ_STORE, no AWS endpoint and no AWS credentials"),
        }
    }
}

/// The default directory of the embedded store.
pub const DEFAULT_DATA_DIR: &str = "./batchq-data";

impl StoreChoice {
    /// `aws`, `embedded` (the default directory) or `embedded:DIR`.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        match raw {
            "aws" => Some(Self::Aws),
            "embedded" => Some(Self::Embedded {
                dir: DEFAULT_DATA_DIR.into(),
            }),
            _ => {
                let dir = raw.strip_prefix("embedded:")?.trim();
                (!dir.is_empty()).then(|| Self::Embedded { dir: dir.into() })
            }
        }
    }

    /// The store to use when `BATCHQ_STORE` is unset, and why: AWS when
    /// anything says this process works with AWS, else the embedded store.
    fn default_for(lookup: &dyn Fn(&str) -> Option<String>, in_lambda: bool) -> (Self, StoreReason) {
        let set = |name: &str| lookup(name).is_some_and(|v| !v.trim().is_empty());
        if in_lambda {
            return (Self::Aws, StoreReason::Lambda);
        }
        if set(AWS_ENDPOINT_URL) {
            return (Self::Aws, StoreReason::AwsEndpoint);
        }
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ] {
            if set(var) {
                return (Self::Aws, StoreReason::AwsCredentials(var));
            }
        }
        let shared_file = |var: &str, default: &str| -> Option<std::path::PathBuf> {
            match lookup(var).filter(|v| !v.trim().is_empty()) {
                Some(p) => Some(p.into()),
                None => lookup("HOME").map(|h| std::path::Path::new(&h).join(".aws").join(default)),
            }
        };
        for (var, default, what) in [
            ("AWS_SHARED_CREDENTIALS_FILE", "credentials", "~/.aws/credentials"),
            ("AWS_CONFIG_FILE", "config", "~/.aws/config"),
        ] {
            if shared_file(var, default).is_some_and(|p| p.is_file()) {
                return (Self::Aws, StoreReason::AwsCredentials(what));
            }
        }
        (
            Self::Embedded {
                dir: DEFAULT_DATA_DIR.into(),
            },
            StoreReason::NothingConfigured,
        )
    }
}

impl std::fmt::Display for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Aws => write!(f, "aws"),
            Self::Embedded { dir } => write!(f, "embedded:{}", dir.display()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_lines_per_batch: u64,
    pub max_bytes_per_batch: u64,
    /// Most embedding inputs in one embeddings batch.
    pub max_embedding_inputs_per_batch: u64,
    /// Configured enqueued-token limits per model (provider tokens).
    pub enqueued_token_limits: std::collections::BTreeMap<String, u64>,
    pub max_body_bytes: u64,
    pub inline_body_max_bytes: u64,
    pub inline_result_max_bytes: u64,
    pub s3_part_bytes: u64,
    /// Unfinished requests one tenant may have.
    pub tenant_max_pending: u64,
    /// Bytes of unfinished request bodies one tenant may have.
    pub tenant_max_pending_bytes: u64,
    /// Per-tenant daily and monthly spend limits.
    pub budgets: crate::spend::Budgets,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub submit_min_requests: u64,
    pub submit_max_age: Duration,
    pub max_attempts: u32,
    pub job_lease: Duration,
    pub batch_deadline: Duration,
    pub token_limit_hold: Duration,
    pub delete_provider_files: bool,
    /// How long finished rows are kept (`None`: forever).
    pub retention: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `BATCHQ_STORE`, or the default this environment implies.
    pub store: StoreChoice,
    pub store_reason: StoreReason,
    pub aws_endpoint_url: Option<String>,
    pub aws_region: Option<String>,
    pub requests_table: String,
    pub jobs_table: String,
    /// `BATCHQ_WEBHOOKS_TABLE` (`None`: no webhooks to callers on AWS).
    pub webhooks_table: Option<String>,
    pub bucket: String,
    pub provider: ProviderConfig,
    pub limits: Limits,
    pub policy: Policy,
    /// `BATCHQ_PROVIDERS_FILE`: a local path or `s3://BUCKET/KEY`.
    pub providers_file: Option<String>,
    /// `BATCHQ_PRICING_FILE`: a local path or `s3://BUCKET/KEY`.
    pub pricing_file: Option<String>,
    /// `BATCHQ_API_KEYS` (local server only).
    pub api_keys: crate::auth::ApiKeys,
    /// `BATCHQ_JWT_TENANT_CLAIM`.
    pub jwt_tenant_claim: String,
    /// `BATCHQ_REPORT_TENANTS`: who the scheduled daily report is written for.
    pub report_tenants: Vec<crate::ids::TenantId>,
    /// `BATCHQ_REPORT_WEBHOOK_URL`.
    pub report_webhook_url: Option<String>,
    pub log_filter: String,
    pub log_format: LogFormat,
    /// `BATCHQ_METRICS_NAMESPACE`: the CloudWatch namespace of EMF lines.
    pub metrics_namespace: String,
    /// `OPENAI_WEBHOOK_SECRET` or `BATCHQ_OPENAI_WEBHOOK_SECRET_ARN`: verifies
    /// OpenAI's batch events (`None`: the provider webhook route is off).
    /// Never printed.
    pub openai_webhook_secret: Option<WebhookSecretSource>,
    /// `BATCHQ_POLL_FUNCTION`: the poll function the enqueue function hands
    /// a provider webhook's batch to.
    pub poll_function: Option<String>,
    /// `AWS_ENDPOINT_URL_LAMBDA`, else `AWS_ENDPOINT_URL`: where Lambda
    /// Invoke calls go (`None`: Lambda's regional endpoint).
    pub lambda_endpoint_url: Option<String>,
}

/// Smallest part S3 accepts in a multipart upload (except the last).
pub const S3_MIN_PART_BYTES: u64 = 5 * 1024 * 1024;

struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    /// The value if set and not blank.
    fn get(&self, var: &'static str) -> Option<String> {
        (self.lookup)(var).filter(|v| !v.trim().is_empty())
    }

    fn string(&self, var: &'static str, default: &str) -> String {
        self.get(var).unwrap_or_else(|| default.to_owned())
    }

    fn number<T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display>(
        &self,
        var: &'static str,
        default: T,
        min: T,
    ) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => match raw.trim().parse::<T>() {
                Ok(v) if v >= min => Ok(v),
                _ => Err(ConfigError {
                    var,
                    value: raw,
                    expected: format!("a whole number of at least {min}"),
                }),
            },
        }
    }

    fn budget(&self, var: &'static str) -> Result<crate::spend::PeriodSetting, ConfigError> {
        match self.get(var) {
            None => Ok(Default::default()),
            Some(raw) => crate::spend::PeriodSetting::parse(&raw).map_err(|expected| ConfigError {
                var,
                value: raw,
                expected,
            }),
        }
    }

    fn seconds(&self, var: &'static str, default: u64, min: u64) -> Result<Duration, ConfigError> {
        self.number(var, default, min).map(Duration::from_secs)
    }

    fn boolean(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => match raw.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError {
                    var,
                    value: raw,
                    expected: "true or false".into(),
                }),
            },
        }
    }
}

fn check_url(var: &'static str, url: &str) -> Result<(), ConfigError> {
    let ok = (url.starts_with("http://") || url.starts_with("https://")) && url.len() > "http://".len();
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            var,
            value: url.to_owned(),
            expected: "an http:// or https:// URL".into(),
        })
    }
}

/// `model=tokens[,model=tokens…]`; a model may contain `=`-free text of any
/// kind (fine-tuned names carry colons), so the split is at the last `=`.
fn parse_model_limits(raw: &str) -> Result<std::collections::BTreeMap<String, u64>, String> {
    let mut out = std::collections::BTreeMap::new();
    for (i, entry) in raw.split(',').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
        let (model, tokens) = entry
            .rsplit_once('=')
            .ok_or_else(|| format!("entry {} is not model=tokens", i + 1))?;
        let model = model.trim();
        let tokens: u64 = tokens
            .trim()
            .replace('_', "")
            .parse()
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| format!("entry {} ({model}): the limit is not a positive whole number", i + 1))?;
        if model.is_empty() || out.insert(model.to_owned(), tokens).is_some() {
            return Err(format!("entry {}: a model name, once", i + 1));
        }
    }
    Ok(out)
}

impl Limits {
    /// The configured enqueued-token limit of a model.
    pub fn enqueued_token_limit(&self, model: &str) -> Option<u64> {
        self.enqueued_token_limits.get(model).copied()
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env { lookup };

        let aws_endpoint_url = env.get(AWS_ENDPOINT_URL);
        if let Some(url) = &aws_endpoint_url {
            check_url(AWS_ENDPOINT_URL, url)?;
        }

        let kind_raw = env.string(PROVIDER, "openai");
        let kind = ProviderKind::parse(kind_raw.trim()).ok_or_else(|| ConfigError {
            var: PROVIDER,
            value: kind_raw.clone(),
            expected: "openai, azure_openai, anthropic, groq or together".into(),
        })?;

        let (base_url, literal_key) = match kind {
            ProviderKind::AzureOpenAi => {
                let url = env.get(AZURE_OPENAI_ENDPOINT).ok_or_else(|| ConfigError {
                    var: AZURE_OPENAI_ENDPOINT,
                    value: String::new(),
                    expected: "the Azure OpenAI resource endpoint (required with BATCHQ_PROVIDER=azure_openai)".into(),
                })?;
                check_url(AZURE_OPENAI_ENDPOINT, &url)?;
                (url, env.get(AZURE_OPENAI_API_KEY).or_else(|| env.get(OPENAI_API_KEY)))
            }
            _ => {
                let url = env.string(OPENAI_BASE_URL, kind.default_base_url().unwrap_or_default());
                check_url(OPENAI_BASE_URL, &url)?;
                let own_key = (lookup)(kind.default_key_env()).filter(|v| !v.trim().is_empty());
                (url, own_key.or_else(|| env.get(OPENAI_API_KEY)))
            }
        };
        let api_key = match (env.get(OPENAI_API_KEY_SECRET_ARN), literal_key) {
            (Some(arn), _) => {
                if !arn.starts_with("arn:") {
                    return Err(ConfigError {
                        var: OPENAI_API_KEY_SECRET_ARN,
                        value: arn,
                        expected: "a Secrets Manager ARN (arn:aws:secretsmanager:…)".into(),
                    });
                }
                ApiKeySource::SecretArn(arn)
            }
            (None, Some(key)) => ApiKeySource::Literal(key),
            (None, None) => ApiKeySource::None,
        };

        let completion_window = env.string(COMPLETION_WINDOW, "24h");
        crate::completion_window::check_completion_window(kind, &completion_window).map_err(|expected| {
            ConfigError {
                var: COMPLETION_WINDOW,
                value: completion_window.clone(),
                expected,
            }
        })?;
        let provider = ProviderConfig {
            kind,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            organization: env.get(OPENAI_ORG_ID),
            project: env.get(OPENAI_PROJECT_ID),
            api_version: match kind {
                ProviderKind::AzureOpenAi => env.string(OPENAI_API_VERSION, "2024-10-21"),
                _ => kind.default_api_version().to_owned(),
            },
            completion_window,
            connect_timeout: env.seconds(HTTP_CONNECT_TIMEOUT_SECS, 10, 1)?,
            read_timeout: env.seconds(HTTP_READ_TIMEOUT_SECS, 120, 1)?,
            max_retries: env.number(HTTP_MAX_RETRIES, 5u32, 0)?,
            list_lag: env.seconds(PROVIDER_LIST_LAG_SECS, 60, 0)?,
        };

        let limits = Limits {
            max_lines_per_batch: env.number(MAX_LINES_PER_BATCH, 50_000u64, 1)?,
            max_bytes_per_batch: env.number(MAX_BYTES_PER_BATCH, 200_000_000u64, 1024)?,
            max_embedding_inputs_per_batch: env.number(MAX_EMBEDDING_INPUTS_PER_BATCH, 50_000u64, 1)?,
            enqueued_token_limits: match env.get(ENQUEUED_TOKEN_LIMITS) {
                None => Default::default(),
                Some(raw) => parse_model_limits(&raw).map_err(|expected| ConfigError {
                    var: ENQUEUED_TOKEN_LIMITS,
                    value: raw,
                    expected,
                })?,
            },
            max_body_bytes: env.number(MAX_BODY_BYTES, 4 * 1024 * 1024u64, 64)?,
            inline_body_max_bytes: env.number(INLINE_BODY_MAX_BYTES, 16 * 1024u64, 0)?,
            inline_result_max_bytes: env.number(INLINE_RESULT_MAX_BYTES, 16 * 1024u64, 0)?,
            s3_part_bytes: env.number(S3_PART_BYTES, 8 * 1024 * 1024u64, S3_MIN_PART_BYTES)?,
            tenant_max_pending: env.number(TENANT_MAX_PENDING, 1_000_000u64, 1)?,
            tenant_max_pending_bytes: env.number(TENANT_MAX_PENDING_BYTES, 10 * 1024 * 1024 * 1024u64, 1)?,
            budgets: crate::spend::Budgets {
                daily: env.budget(TENANT_DAILY_BUDGET_USD)?,
                monthly: env.budget(TENANT_MONTHLY_BUDGET_USD)?,
            },
        };
        // DynamoDB items stop at 400 KB; leave room for the other attributes.
        for (var, v) in [
            (INLINE_BODY_MAX_BYTES, limits.inline_body_max_bytes),
            (INLINE_RESULT_MAX_BYTES, limits.inline_result_max_bytes),
        ] {
            if v > 300 * 1024 {
                return Err(ConfigError {
                    var,
                    value: v.to_string(),
                    expected: "at most 307200 (DynamoDB items are limited to 400 KB)".into(),
                });
            }
        }

        let policy = Policy {
            submit_min_requests: env.number(SUBMIT_MIN_REQUESTS, 1000u64, 1)?,
            submit_max_age: env.seconds(SUBMIT_MAX_AGE_SECS, 900, 0)?,
            max_attempts: env.number(MAX_ATTEMPTS, 3u32, 1)?,
            job_lease: env.seconds(JOB_LEASE_SECS, 960, 1)?,
            batch_deadline: env.seconds(BATCH_DEADLINE_SECS, 93_600, 60)?,
            token_limit_hold: env.seconds(TOKEN_LIMIT_HOLD_SECS, 1800, 0)?,
            delete_provider_files: env.boolean(DELETE_PROVIDER_FILES, true)?,
            retention: match env.number(RETENTION_DAYS, 30u64, 0)? {
                0 => None,
                days => Some(Duration::from_secs(days.min(36_500) * 86_400)),
            },
        };
        let api_keys = match env.get(API_KEYS) {
            None => crate::auth::ApiKeys::default(),
            Some(raw) => crate::auth::ApiKeys::parse(&raw).map_err(|e| ConfigError {
                var: API_KEYS,
                // Never echo keys back, not even in an error.
                value: "<redacted>".into(),
                expected: e.to_string(),
            })?,
        };

        let report_tenants = {
            let raw = env.string(REPORT_TENANTS, "default");
            raw.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| {
                    crate::ids::TenantId::parse(t).map_err(|e| ConfigError {
                        var: REPORT_TENANTS,
                        value: raw.clone(),
                        expected: format!("tenant names, comma-separated ({t:?}: {})", e.message),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let report_webhook_url = env.get(REPORT_WEBHOOK_URL);
        if let Some(url) = &report_webhook_url {
            check_url(REPORT_WEBHOOK_URL, url)?;
        }

        let openai_webhook_secret =
            match (env.get(OPENAI_WEBHOOK_SECRET), env.get(OPENAI_WEBHOOK_SECRET_ARN)) {
                (Some(_), Some(arn)) => return Err(ConfigError {
                    var: OPENAI_WEBHOOK_SECRET_ARN,
                    value: arn,
                    expected:
                        "either this or OPENAI_WEBHOOK_SECRET, not both (the secret ARN in AWS, the variable locally)"
                            .into(),
                }),
                (None, Some(arn)) => {
                    if !arn.trim().starts_with("arn:") {
                        return Err(ConfigError {
                            var: OPENAI_WEBHOOK_SECRET_ARN,
                            value: arn,
                            expected: "a Secrets Manager ARN (arn:aws:secretsmanager:…)".into(),
                        });
                    }
                    Some(WebhookSecretSource::SecretArn(arn.trim().to_owned()))
                }
                (Some(raw), None) => Some(WebhookSecretSource::Literal(
                    crate::webhook::signature::WebhookSecret::parse(&raw).map_err(|_| ConfigError {
                        var: OPENAI_WEBHOOK_SECRET,
                        value: "(not shown)".into(),
                        expected: "whsec_ followed by base64, as OpenAI shows it".into(),
                    })?,
                )),
                (None, None) => None,
            };
        let lambda_endpoint_url = env.get(AWS_ENDPOINT_URL_LAMBDA).or_else(|| aws_endpoint_url.clone());
        if let Some(url) = &lambda_endpoint_url {
            check_url(AWS_ENDPOINT_URL_LAMBDA, url)?;
        }

        let in_lambda = (lookup)("AWS_LAMBDA_FUNCTION_NAME").is_some();
        let (store, store_reason) = match env.get(STORE) {
            Some(raw) => (
                StoreChoice::parse(&raw).ok_or_else(|| ConfigError {
                    var: STORE,
                    value: raw.clone(),
                    expected: "aws, embedded or embedded:DIR".into(),
                })?,
                StoreReason::Configured,
            ),
            None => StoreChoice::default_for(lookup, in_lambda),
        };
        let log_format = match env.get(LOG_FORMAT).as_deref().map(str::trim) {
            None => {
                if in_lambda {
                    LogFormat::Json
                } else {
                    LogFormat::Text
                }
            }
            Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => {
                return Err(ConfigError {
                    var: LOG_FORMAT,
                    value: other.to_owned(),
                    expected: "json or text".into(),
                })
            }
        };

        Ok(Self {
            store,
            store_reason,
            aws_endpoint_url,
            aws_region: env.get(AWS_REGION),
            requests_table: env.string(REQUESTS_TABLE, "batchq-requests"),
            jobs_table: env.string(JOBS_TABLE, "batchq-jobs"),
            webhooks_table: env.get(WEBHOOKS_TABLE),
            bucket: env.string(BUCKET, "batchq"),
            provider,
            limits,
            policy,
            providers_file: env.get(PROVIDERS_FILE),
            pricing_file: env.get(PRICING_FILE),
            api_keys,
            jwt_tenant_claim: env.string(JWT_TENANT_CLAIM, "sub").trim().to_owned(),
            report_tenants,
            report_webhook_url,
            log_filter: env.string(LOG, "info"),
            metrics_namespace: env.string(METRICS_NAMESPACE, "batchq"),
            openai_webhook_secret,
            poll_function: env.get(POLL_FUNCTION).map(|f| f.trim().to_owned()),
            lambda_endpoint_url,
            log_format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(&move |k| map.get(k).cloned())
    }

    #[test]
    fn the_store_is_embedded_in_the_default_directory_when_nothing_names_aws() {
        let c = parse(&[]).unwrap();
        assert_eq!(
            c.store,
            StoreChoice::Embedded {
                dir: "./batchq-data".into()
            }
        );
        assert_eq!(c.store_reason, StoreReason::NothingConfigured);
    }

    #[test]
    fn the_store_is_aws_when_an_endpoint_credentials_or_lambda_say_so() {
        for (var, value) in [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ("AWS_ACCESS_KEY_ID", "AKIA0000"),
            ("AWS_PROFILE", "work"),
            ("AWS_LAMBDA_FUNCTION_NAME", "batchq-submit"),
        ] {
            let c = parse(&[(var, value)]).unwrap();
            assert_eq!(c.store, StoreChoice::Aws, "{var}");
            assert_ne!(c.store_reason, StoreReason::NothingConfigured, "{var}");
        }
    }

    #[test]
    fn a_shared_credentials_file_makes_the_store_aws() {
        let dir = std::env::temp_dir().join(format!("batchq-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("credentials");
        std::fs::write(&file, "[default]\n").unwrap();
        let c = parse(&[("AWS_SHARED_CREDENTIALS_FILE", file.to_str().unwrap())]).unwrap();
        assert_eq!(c.store, StoreChoice::Aws);
        let missing = dir.join("nothing-here");
        let c = parse(&[
            ("AWS_SHARED_CREDENTIALS_FILE", missing.to_str().unwrap()),
            ("HOME", "/nonexistent"),
        ])
        .unwrap();
        assert_eq!(
            c.store,
            StoreChoice::Embedded {
                dir: "./batchq-data".into()
            }
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn batchq_store_wins_and_a_bad_value_names_the_variable() {
        let c = parse(&[("BATCHQ_STORE", "embedded:/var/lib/batchq"), ("AWS_PROFILE", "work")]).unwrap();
        assert_eq!(
            c.store,
            StoreChoice::Embedded {
                dir: "/var/lib/batchq".into()
            }
        );
        assert_eq!(c.store_reason, StoreReason::Configured);
        let c = parse(&[("BATCHQ_STORE", "aws")]).unwrap();
        assert_eq!(c.store, StoreChoice::Aws);
        for bad in ["sqlite", "embedded:", "dynamo"] {
            let e = parse(&[("BATCHQ_STORE", bad)]).unwrap_err();
            assert_eq!(e.var, "BATCHQ_STORE", "{bad}");
        }
    }

    #[test]
    fn three_variables_are_enough_for_a_local_system() {
        let c = parse(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:8089/v1/"),
            ("OPENAI_API_KEY", "sk-fake"),
        ])
        .unwrap();
        assert_eq!(c.aws_endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(c.provider.base_url, "http://127.0.0.1:8089/v1");
        assert_eq!(c.provider.api_key, ApiKeySource::Literal("sk-fake".into()));
        assert_eq!(c.requests_table, "batchq-requests");
        assert_eq!(c.limits.max_lines_per_batch, 50_000);
        assert_eq!(c.policy.max_attempts, 3);
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn malformed_number_names_the_variable() {
        let e = parse(&[("BATCHQ_MAX_ATTEMPTS", "three")]).unwrap_err();
        assert_eq!(e.var, "BATCHQ_MAX_ATTEMPTS");
        assert!(e.to_string().contains("BATCHQ_MAX_ATTEMPTS=\"three\""), "{e}");
        assert_eq!(
            parse(&[("BATCHQ_MAX_ATTEMPTS", "0")]).unwrap_err().var,
            "BATCHQ_MAX_ATTEMPTS"
        );
    }

    #[test]
    fn malformed_values_of_each_kind_are_rejected_by_name() {
        for (var, bad) in [
            ("BATCHQ_PROVIDER", "bedrock"),
            ("OPENAI_BASE_URL", "api.openai.com"),
            ("AWS_ENDPOINT_URL", "localhost:5000"),
            ("BATCHQ_DELETE_PROVIDER_FILES", "maybe"),
            ("BATCHQ_S3_PART_BYTES", "1024"),
            ("BATCHQ_INLINE_BODY_MAX_BYTES", "500000"),
            ("BATCHQ_LOG_FORMAT", "xml"),
            ("BATCHQ_OPENAI_API_KEY_SECRET_ARN", "my-secret"),
        ] {
            let e = parse(&[(var, bad)]).unwrap_err();
            assert_eq!(e.var, var, "{e}");
        }
    }

    #[test]
    fn secret_arn_wins_over_literal_key_and_is_never_printed() {
        let c = parse(&[
            ("OPENAI_API_KEY", "sk-live-secret"),
            (
                "BATCHQ_OPENAI_API_KEY_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:1:secret:k",
            ),
        ])
        .unwrap();
        assert!(matches!(c.provider.api_key, ApiKeySource::SecretArn(_)));
        let c = parse(&[("OPENAI_API_KEY", "sk-live-secret")]).unwrap();
        assert!(!format!("{c:?}").contains("sk-live-secret"));
    }

    #[test]
    fn the_webhook_secret_comes_from_the_variable_or_the_secret_arn_never_both() {
        const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        const ARN: &str = "arn:aws:secretsmanager:us-east-1:1:secret:openai-webhook-AbCdEf";
        let c = parse(&[("OPENAI_WEBHOOK_SECRET", WHSEC)]).unwrap();
        assert!(matches!(c.openai_webhook_secret, Some(WebhookSecretSource::Literal(_))));
        assert!(!format!("{c:?}").contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
        let c = parse(&[("BATCHQ_OPENAI_WEBHOOK_SECRET_ARN", ARN)]).unwrap();
        assert_eq!(
            c.openai_webhook_secret,
            Some(WebhookSecretSource::SecretArn(ARN.into()))
        );
        let e = parse(&[
            ("OPENAI_WEBHOOK_SECRET", WHSEC),
            ("BATCHQ_OPENAI_WEBHOOK_SECRET_ARN", ARN),
        ])
        .unwrap_err();
        assert_eq!(e.var, "BATCHQ_OPENAI_WEBHOOK_SECRET_ARN");
        assert!(e.expected.contains("not both"), "{e}");
        let e = parse(&[("BATCHQ_OPENAI_WEBHOOK_SECRET_ARN", "openai-webhook")]).unwrap_err();
        assert_eq!(e.var, "BATCHQ_OPENAI_WEBHOOK_SECRET_ARN");
        assert_eq!(parse(&[]).unwrap().openai_webhook_secret, None);
    }

    #[test]
    fn lambda_calls_go_to_their_own_endpoint_else_the_aws_one() {
        let c = parse(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")]).unwrap();
        assert_eq!(c.lambda_endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        let c = parse(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ("AWS_ENDPOINT_URL_LAMBDA", "http://127.0.0.1:6000"),
        ])
        .unwrap();
        assert_eq!(c.lambda_endpoint_url.as_deref(), Some("http://127.0.0.1:6000"));
        assert_eq!(parse(&[]).unwrap().lambda_endpoint_url, None);
        assert_eq!(parse(&[]).unwrap().poll_function, None);
    }

    #[test]
    fn azure_needs_its_endpoint() {
        let e = parse(&[("BATCHQ_PROVIDER", "azure_openai")]).unwrap_err();
        assert_eq!(e.var, "AZURE_OPENAI_ENDPOINT");
        let c = parse(&[
            ("BATCHQ_PROVIDER", "azure_openai"),
            ("AZURE_OPENAI_ENDPOINT", "https://x.openai.azure.com"),
            ("AZURE_OPENAI_API_KEY", "k"),
        ])
        .unwrap();
        assert_eq!(c.provider.kind, ProviderKind::AzureOpenAi);
        assert_eq!(c.provider.api_version, "2024-10-21");
    }

    #[test]
    fn lambda_logs_json_by_default() {
        let c = parse(&[("AWS_LAMBDA_FUNCTION_NAME", "batchq-submit")]).unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn enqueued_token_limits_are_read_per_model() {
        let c = parse(&[(
            "BATCHQ_ENQUEUED_TOKEN_LIMITS",
            "gpt-4o-mini=2_000_000, ft:gpt-4o:org:x=90000",
        )])
        .unwrap();
        assert_eq!(c.limits.enqueued_token_limit("gpt-4o-mini"), Some(2_000_000));
        assert_eq!(c.limits.enqueued_token_limit("ft:gpt-4o:org:x"), Some(90_000));
        assert_eq!(c.limits.enqueued_token_limit("gpt-4o"), None);
        for bad in ["gpt-4o", "gpt-4o=lots", "=5", "a=1,a=2", "a=0"] {
            let e = parse(&[("BATCHQ_ENQUEUED_TOKEN_LIMITS", bad)]).unwrap_err();
            assert_eq!(e.var, "BATCHQ_ENQUEUED_TOKEN_LIMITS", "{bad}");
        }
    }

    #[test]
    fn every_variable_read_is_listed_once() {
        let mut names: Vec<&str> = VARS.iter().map(|v| v.name).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate names in VARS");
    }
}
