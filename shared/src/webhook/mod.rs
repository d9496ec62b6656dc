//! Webhooks to callers, and the Standard Webhooks signatures they (and the
//! providers' webhooks to batchq) are signed with.
//!
//! A tenant registers [`endpoint::Endpoint`]s (URL, events, mode, secret).
//! The dispatcher (`pipeline::dispatch`) turns the tenant's results feed and its
//! finished jobs into durable [`delivery::Delivery`] rows, POSTs each signed
//! ([`signature`]) to its endpoint, retries failures on a
//! [`delivery::RetrySchedule`] spanning at least a day, and keeps the ones
//! that never succeeded as `failed` for listing and replay. [`target`]
//! refuses endpoints in private address space. [`event`] describes the
//! payloads; the storage port is `store::webhooks::WebhookStore`.

pub mod delivery;
pub mod endpoint;
pub mod event;
pub mod signature;
pub mod target;
