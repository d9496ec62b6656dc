//! The webhook store port ([`WebhookStore`], in `port.rs`) and its adapters:
//! [`memory::MemoryWebhooks`] and `sqlite::SqliteWebhooks` (with the
//! `embedded` feature). Both keep
//! endpoints, each endpoint's feed position and deliveries in their own
//! tables, apart from the request rows (whose terminal transitions append
//! the feed these read).

pub mod memory;
mod port;
#[cfg(feature = "embedded")]
pub mod sqlite;

pub use port::*;

#[cfg(test)]
mod tests;
