//! Webhooks: Standard Webhooks signing (`signature`), used both for the
//! events batchq sends to callers and to check the events providers send us.

pub mod signature;
