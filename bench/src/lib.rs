//! batchq's benchmark suite (`make bench`): see docs/performance.md.
//!
//! - [`hot`]: the two hot paths against the `IgnoredAny` floor;
//! - [`lambda`]: the function binaries under a stand-in Lambda Runtime API
//!   (start-to-ready time, per-invocation duration, peak RSS);
//! - [`meter`]: calls and DynamoDB capacity counted by the emulator;
//! - [`cost`]: the list-price model of the AWS overhead;
//! - [`data`]: generated requests and result files of realistic shape;
//! - [`goals`]: issue #20's goals, judged on the figures.

pub mod cost;
pub mod data;
pub mod goals;
pub mod hot;
pub mod lambda;
pub mod meter;
