//! The Anthropic adapter: its HTTP client for the Message Batches API
//! ([`AnthropicClient`]), its batch format ([`AnthropicFormat`]) and the
//! wire types between them. Anthropic has no files and tags no batch with
//! its job; the client fits the API onto the pipeline's protocol (see
//! `client`).

pub mod client;
pub mod format;
pub mod wire;

pub use client::AnthropicClient;
pub use format::AnthropicFormat;
