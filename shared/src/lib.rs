//! batchq core: the domain model and its state machines, configuration, the
//! storage and provider ports, and their AWS and HTTP adapters. The Lambda
//! functions and the CLI are thin shells around this crate.

pub mod activity;
pub mod api;
pub mod app;
pub mod auth;
pub mod aws;
pub mod backup;
pub mod budget;
pub mod completion_window;
pub mod config;
pub mod counters;
pub mod endpoint;
pub mod error;
pub mod events;
pub mod feed;
pub mod ids;
pub mod job;
pub mod jsonl;
pub mod keys;
pub mod metrics;
pub mod money;
pub mod overhead;
pub mod percent;
pub mod pipeline;
pub mod placement;
pub mod ports;
pub mod pricing;
pub mod provider;
pub mod provider_table;
pub mod report;
pub mod request;
pub mod retry;
pub mod routing;
pub mod spend;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod tokens;
pub mod transition;
pub mod views;
pub mod webhook;

pub use error::{TransitionError, ValidationError};
