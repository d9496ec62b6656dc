//! The webhook store port ([`WebhookStore`], in `port.rs`) and its adapters:
//! [`memory::MemoryWebhooks`], `sqlite::SqliteWebhooks` (with the
//! `embedded` feature) and [`dynamo::DynamoWebhooks`] (its own table). Each keeps
//! endpoints, each endpoint's feed position and deliveries in their own
//! tables, apart from the request rows (whose terminal transitions append
//! the feed these read).

pub mod dynamo;
pub mod memory;
mod port;
#[cfg(feature = "embedded")]
pub mod sqlite;

pub use port::*;
