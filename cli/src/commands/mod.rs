//! The one-shot commands. Reads go through the same API core the HTTP API
//! uses (`batchq_core::api`), so `batchq status` prints what
//! `GET /v1/requests/{id}` answers.

use batchq_core::api::{Api, ApiRequest, ApiResponse};
use batchq_core::app::App;
use batchq_core::config::Config;
use batchq_core::ids::TenantId;
use batchq_core::pipeline::Submitter;
use batchq_core::provider::Providers;
use serde_json::Value;

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

pub struct Ctx {
    pub app: App,
    pub api: Api,
    pub tenant: TenantId,
    pub json: bool,
}

impl Ctx {
    pub async fn new(config: Config, json: bool, tenant: TenantId) -> Result<Self, Failure> {
        let app = App::from_config(config).await.with_configured_tables().await?;
        let api = app.api();
        Ok(Self { app, api, tenant, json })
    }

    /// A client for every configured provider instance.
    pub async fn providers(&self) -> Result<Providers, Failure> {
        self.app.providers().await.map_err(|e| {
            format!("provider: {e} (set OPENAI_API_KEY or BATCHQ_OPENAI_API_KEY_SECRET_ARN, or the key variable the provider table names)").into()
        })
    }

    pub async fn submitter(&self) -> Result<Submitter, Failure> {
        Ok(self.app.submitter(self.providers().await?))
    }

    /// Calls the API core; a 4xx/5xx becomes a failure with the API's message.
    pub async fn call(&self, req: ApiRequest) -> Result<Value, Failure> {
        let resp: ApiResponse = self.api.handle(&self.tenant, req).await;
        if resp.status >= 400 {
            let msg = resp.body["error"]["message"]
                .as_str()
                .unwrap_or("request failed")
                .to_owned();
            return Err(Failure { message: msg, code: 1 });
        }
        Ok(resp.body)
    }
}
