//! An offline fake of the OpenAI Files + Batch API, and Azure OpenAI's variant
//! (`/openai/...`, `api-key` header, `api-version` query). It follows the
//! documented behaviour, failures included: validation failures with line
//! numbers, expiry and cancellation with partial results, per-line errors in
//! the error file, shuffled output, `""` file ids, vanishing batches,
//! per-model enqueued-token limits (`token_limit_exceeded`), the embeddings
//! input cap, lists that lag behind creation, rate limiting with
//! `Retry-After`, lost responses, results lost for some lines, and downloads
//! cut short. Used in-process by tests (`FakeServer::start`) and standalone
//! (`fake-openai --port N`).
//!
//! The same process serves Anthropic's Message Batches API at
//! `/v1/messages/batches` (`x-api-key` and `anthropic-version` headers,
//! Anthropic's error shape, `msgbatch_…` ids, `in_progress` → `canceling` →
//! `ended`, results as shuffled JSONL of `succeeded` / `errored` /
//! `canceled` / `expired` lines), with the same clock, admin routes and
//! fault knobs; see the `anthropic` module.
//!
//! Error codes: `token_limit_exceeded` and `batch_expired` / `batch_cancelled`
//! are documented; the validation codes (`invalid_json_line`,
//! `duplicate_custom_id`, `mismatched_model`, …) are our best reading and
//! could not all be confirmed against the live service.

mod admin;
mod anthropic;
mod api_error;
mod batches;
mod config;
mod files;
mod groq;
mod lifecycle;
mod limits;
pub mod responses;
mod routes;
mod server;
mod state;
mod together;
pub mod webhooks;

pub use anthropic::messages::{invalid_params, prompt_tokens as anthropic_prompt_tokens};
pub use anthropic::respond_message;
pub use config::WebhookConfig;
pub use config::{FakeConfig, Faults};
pub use responses::respond;
pub use server::{FakeHandle, FakeServer};
pub use state::WebhookAttempt;
pub use state::{LogEntry, Submission};

/// Endpoints a batch may target.
pub const ENDPOINTS: &[&str] = &[
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
];
