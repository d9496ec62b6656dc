//! The one-shot commands. Reads go through the same API core the HTTP API
//! uses (`batchq_core::api`), so `batchq status` prints what
//! `GET /v1/requests/{id}` answers.

use batchq_core::api::{Api, ApiRequest, ApiResponse};
use batchq_core::app::{App, OpenError};
use batchq_core::config::{Config, StoreChoice};
use batchq_core::ids::TenantId;
use batchq_core::pipeline::Submitter;
use batchq_core::provider::Providers;
use batchq_core::store::data_dir::DataDirError;
use batchq_core::store::StoreError;
use serde_json::Value;
use std::time::Duration;

use crate::exit::Exit;

use crate::remote::{Auth, AuthMode};
use crate::serve_marker;
use crate::Failure;

mod backup;
mod enqueue;
mod reads;
mod report;
mod result_line;
mod results;
mod steps;
pub mod webhooks;

pub use backup::{export, import};
pub use enqueue::enqueue;
pub use reads::{jobs, savings, stats, status};
pub use report::report;
pub use results::{follow_results, results, wait, FeedOptions};
pub use steps::{ingest, init, poll, submit};

/// What a command works on: the store itself (through the same API core
/// the HTTP API runs), or a running API over HTTP (`--api`).
pub struct Ctx {
    pub tenant: TenantId,
    pub json: bool,
    target: Target,
}

enum Target {
    Local { app: Box<App>, api: Box<Api> },
    Remote(Remote),
}

/// A running API (`batchq serve`, or the deployed one) the command calls.
pub struct Remote {
    pub http: reqwest::Client,
    /// The API's base URL, without a trailing slash.
    pub base: String,
    pub auth: Auth,
}

impl Remote {
    /// `BASE{path}` as a URL.
    pub fn url(&self, path: &str, query: &str) -> Result<reqwest::Url, Failure> {
        let raw = if query.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{query}", self.base)
        };
        reqwest::Url::parse(&raw).map_err(|e| format!("--api {}: not a URL: {e}", self.base).into())
    }
}

impl Ctx {
    /// Works on the configured store; creates it first when `create` (the
    /// embedded store's data directory: `init` and `serve`).
    pub async fn local(config: Config, json: bool, tenant: TenantId, create: bool) -> Result<Self, Failure> {
        let store = config.store.clone();
        if store == StoreChoice::Aws {
            probe_endpoint(&config).await?;
        }
        let app = App::open(config, create).await.map_err(|e| open_failure(e, &store))?;
        let app = app.with_configured_tables().await?;
        let api = app.api();
        Ok(Self {
            tenant,
            json,
            target: Target::Local {
                app: Box::new(app),
                api: Box::new(api),
            },
        })
    }

    /// The failure of a store that answers no more (a dead endpoint, AWS
    /// refusing, a data directory gone): where the store is and what to do.
    /// `cause` is what the store said, when known.
    pub fn storage_unavailable(&self, cause: Option<&str>) -> Failure {
        match &self.target {
            Target::Local { app, .. } => storage_unavailable(&app.config, cause),
            Target::Remote(r) => Failure::new(
                Exit::StorageUnavailable,
                format!(
                    "the API at {} cannot reach its storage{}; check the server (its log says why)",
                    r.base,
                    cause.map(|c| format!(": {c}")).unwrap_or_default()
                ),
            ),
        }
    }

    /// A store error as a failure: a backend that failed (network,
    /// service, disk) is the store being unavailable; anything else is
    /// reported as it is.
    pub fn store_failure(&self, e: StoreError) -> Failure {
        match e {
            StoreError::Backend { .. } => self.storage_unavailable(Some(&e.to_string())),
            other => Failure::from(other),
        }
    }

    /// Works through the API at `base`; credentials are resolved (and AWS
    /// ones loaded) now, so a missing profile is reported before any call.
    pub async fn through_api(base: &str, mode: AuthMode, json: bool, tenant: TenantId) -> Result<Self, Failure> {
        let base = base.trim_end_matches('/').to_owned();
        let probe =
            reqwest::Url::parse(&format!("{base}/v1/stats")).map_err(|e| format!("--api {base}: not a URL: {e}"))?;
        let auth = Auth::resolve(mode, &probe, std::env::var("BATCHQ_API_KEY").ok()).await?;
        Ok(Self {
            tenant,
            json,
            target: Target::Remote(Remote {
                http: batchq_core::tls::http_client_builder()
                    .build()
                    .map_err(|e| Failure::from(format!("HTTP client: {e}")))?,
                base,
                auth,
            }),
        })
    }

    /// The app, for commands that work on the store itself.
    pub fn app(&self) -> Result<&App, Failure> {
        match &self.target {
            Target::Local { app, .. } => Ok(app),
            Target::Remote(_) => Err("this command works on the store itself; run it without --api".into()),
        }
    }

    /// The API core over the store (`serve` hands it its requests).
    pub fn api(&self) -> Result<&Api, Failure> {
        match &self.target {
            Target::Local { api, .. } => Ok(api.as_ref()),
            Target::Remote(_) => Err("this command works on the store itself; run it without --api".into()),
        }
    }

    /// The running API this command talks to, with `--api`.
    pub fn remote(&self) -> Option<&Remote> {
        match &self.target {
            Target::Remote(r) => Some(r),
            Target::Local { .. } => None,
        }
    }

    /// A client for every configured provider instance.
    /// A client for every configured provider instance. The error names
    /// the provider and the variable to set (`provider openai: no API key
    /// configured: set OPENAI_API_KEY or BATCHQ_OPENAI_API_KEY_SECRET_ARN`).
    pub async fn providers(&self) -> Result<Providers, Failure> {
        self.app()?.providers().await.map_err(Failure::from)
    }

    pub async fn submitter(&self) -> Result<Submitter, Failure> {
        Ok(self.app()?.submitter(self.providers().await?))
    }

    /// Calls the API (the core in this process, or the running one with
    /// `--api`); a 4xx/5xx becomes a failure with the API's message.
    pub async fn call(&self, req: ApiRequest) -> Result<Value, Failure> {
        let (status, body) = match &self.target {
            Target::Local { api, .. } => {
                let resp: ApiResponse = api.handle(&self.tenant, req).await;
                (resp.status, resp.body)
            }
            Target::Remote(remote) => {
                let url = remote.url(&req.path, &req.query)?;
                let method = reqwest::Method::from_bytes(req.method.as_str().as_bytes())
                    .map_err(|e| format!("{}: {e}", req.method.as_str()))?;
                let content_type = req.content_type.clone().unwrap_or_else(|| "application/json".into());
                let call = remote
                    .http
                    .request(method, url.clone())
                    .header("content-type", content_type.as_str());
                let call = remote
                    .auth
                    .apply(call, req.method.as_str(), &url, &content_type, &req.body)
                    .await?;
                let resp = call
                    .body(req.body.clone())
                    .send()
                    .await
                    .map_err(|e| format!("{} {url}: {e}", req.method.as_str()))?;
                let status = resp.status().as_u16();
                let bytes = resp.bytes().await.map_err(|e| format!("{url}: {e}"))?;
                let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if enqueue::store_unavailable(status, &v) {
                    let message = enqueue::answer_message(&v, &bytes);
                    return Err(self.storage_unavailable(Some(&format!("HTTP 503: {message}"))));
                }
                if matches!(status, 401 | 403) {
                    let message = enqueue::answer_message(&v, &bytes);
                    return Err(format!("{url}: HTTP {status}: {message} ({})", remote.auth.refusal_hint()).into());
                }
                if v.is_null() && status < 400 {
                    return Err(format!("{url}: HTTP {status}: the answer is not JSON").into());
                }
                (status, v)
            }
        };
        if status == 503 && matches!(self.target, Target::Local { .. }) {
            // The API core logged the store's own error; this names the store.
            return Err(self.storage_unavailable(None));
        }
        if status >= 400 {
            let msg = body["error"]["message"]
                .as_str()
                .or_else(|| body["message"].as_str())
                .unwrap_or("request failed")
                .to_owned();
            return Err(Failure::from(msg));
        }
        Ok(body)
    }
}

/// The failure of a store that cannot be opened; a data directory another
/// process holds says how to reach that process's API instead.
fn open_failure(e: OpenError, store: &StoreChoice) -> Failure {
    let message = e.to_string();
    let hint = match (&e, store) {
        (OpenError::DataDir(_), StoreChoice::Embedded { dir }) => serve_marker::hint(dir),
        _ => None,
    };
    let message = match hint {
        Some(hint) => format!("{message}; {hint}"),
        None => message,
    };
    let exit = match &e {
        OpenError::DataDir(DataDirError::NewerSchema { .. }) => Exit::Failure,
        _ => Exit::StorageUnavailable,
    };
    Failure::new(exit, message)
}

/// How long the AWS endpoint may take to accept a connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// With `AWS_ENDPOINT_URL` set (an emulator), checks that something listens
/// there before any AWS call: the SDK would otherwise retry a dead endpoint
/// for tens of seconds and then report a generic dispatch failure.
async fn probe_endpoint(config: &Config) -> Result<(), Failure> {
    let Some(raw) = config.aws_endpoint_url.as_deref() else {
        return Ok(());
    };
    let Ok(url) = reqwest::Url::parse(raw) else {
        return Ok(()); // the configuration already checked it; the SDK will say
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Ok(());
    };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(storage_unavailable(config, Some(&format!("cannot connect: {e}")))),
        Err(_) => Err(storage_unavailable(
            config,
            Some(&format!("no answer within {}s", PROBE_TIMEOUT.as_secs())),
        )),
    }
}

/// The failure of a store that cannot be reached: where it is (the AWS
/// endpoint, AWS itself, or the data directory), why, and what to do.
pub fn storage_unavailable(config: &Config, cause: Option<&str>) -> Failure {
    let cause = cause.map(|c| format!(": {c}")).unwrap_or_default();
    let message = match (&config.store, config.aws_endpoint_url.as_deref()) {
        (StoreChoice::Embedded { dir }, _) => format!(
            "the embedded store in {} is unavailable{cause}. Check the directory (BATCHQ_STORE names it)",
            dir.display()
        ),
        (StoreChoice::Aws, Some(endpoint)) => format!(
            "cannot reach the store at {endpoint} (AWS_ENDPOINT_URL){cause}. Start the emulator there \
             (`make demo-aws` runs the demo with one) or fix AWS_ENDPOINT_URL; without AWS, unset it and use \
             the embedded store (BATCHQ_STORE=embedded:DIR)"
        ),
        (StoreChoice::Aws, None) => format!(
            "cannot reach the store in AWS (region {}, tables {} and {}, bucket {}){cause}. Check the network, \
             the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, `aws sso login`) and AWS_REGION; for an \
             emulator set AWS_ENDPOINT_URL; without AWS, use the embedded store (BATCHQ_STORE=embedded:DIR)",
            config.aws_region.as_deref().unwrap_or("us-east-1"),
            config.requests_table,
            config.jobs_table,
            config.bucket
        ),
    };
    Failure::new(Exit::StorageUnavailable, message)
}
