//! The one-shot commands. Reads go through the same API core the HTTP API
//! uses (`batchq_core::api`), so `batchq status` prints what
//! `GET /v1/requests/{id}` answers.

use batchq_core::api::{Api, ApiRequest, ApiResponse};
use batchq_core::app::{App, OpenError};
use batchq_core::config::{Config, StoreChoice};
use batchq_core::ids::TenantId;
use batchq_core::pipeline::Submitter;
use batchq_core::provider::Providers;
use serde_json::Value;

use crate::remote::{Auth, AuthMode};
use crate::serve_marker;
use crate::Failure;

mod backup;
mod enqueue;
mod reads;
mod result_line;
mod results;
mod steps;

pub use backup::{export, import};
pub use enqueue::enqueue;
pub use reads::{jobs, savings, stats, status};
pub use results::{results, wait};
pub use steps::{ingest, init, poll, submit};

/// What a command works on: the store itself (through the same API core
/// the HTTP API runs), or a running API over HTTP (`--api`).
pub struct Ctx {
    pub tenant: TenantId,
    pub json: bool,
    target: Target,
}

enum Target {
    Local { app: Box<App>, api: Api },
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
        let app = App::open(config, create)
            .await
            .map_err(|e| Failure::from(with_serve_hint(e, &store)))?
            .with_configured_tables()
            .await?;
        let api = app.api();
        Ok(Self {
            tenant,
            json,
            target: Target::Local {
                app: Box::new(app),
                api,
            },
        })
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
                http: reqwest::Client::new(),
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
            Target::Local { api, .. } => Ok(api),
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
    pub async fn providers(&self) -> Result<Providers, Failure> {
        self.app()?.providers().await.map_err(|e| {
            let e = e.to_string();
            if e.contains("OPENAI_API_KEY") {
                format!("provider: {e}").into()
            } else {
                format!("provider: {e} (set OPENAI_API_KEY or BATCHQ_OPENAI_API_KEY_SECRET_ARN, or the key variable the provider table names)").into()
            }
        })
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
        if status >= 400 {
            let msg = body["error"]["message"]
                .as_str()
                .or_else(|| body["message"].as_str())
                .unwrap_or("request failed")
                .to_owned();
            return Err(Failure { message: msg, code: 1 });
        }
        Ok(body)
    }
}

/// The message of a store that cannot be opened; a data directory another
/// process holds says how to reach that process's API instead.
fn with_serve_hint(e: OpenError, store: &StoreChoice) -> String {
    let message = e.to_string();
    let hint = match (&e, store) {
        (OpenError::DataDir(_), StoreChoice::Embedded { dir }) => serve_marker::hint(dir),
        _ => None,
    };
    match hint {
        Some(hint) => format!("{message}; {hint}"),
        None => message,
    }
}
