//! Adapters of the webhook store port ([`crate::webhook::store::WebhookStore`]):
//! [`memory::MemoryWebhooks`] and [`sqlite::SqliteWebhooks`]. Both keep
//! endpoints, each endpoint's feed position and deliveries in their own
//! tables, apart from the request rows (whose terminal transitions append
//! the feed these read).

pub mod memory;
pub mod sqlite;

#[cfg(test)]
mod tests;
