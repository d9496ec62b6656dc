//! What running batchq costs on AWS, from counted calls and measured
//! invocation times, at list prices (us-east-1, on-demand, no free tier):
//! the bench's own model, independent of batchq's measure of itself, but
//! priced with the same table (`batchq_core::overhead::AWS_LIST`).
//!
//! | item | price |
//! |---|---|
//! | API Gateway HTTP API | $1.00 per million requests, each metered in 512 KB steps |
//! | Lambda requests | $0.20 per million invocations |
//! | Lambda duration, arm64 | $0.0000133334 per GB-second, billed per ms at the function's memory (template: enqueue 256 MB, others 512 MB) |
//! | DynamoDB on-demand | $0.625 per million write request units, $0.125 per million read request units |
//! | DynamoDB storage | $0.25 per GB-month (counted for one month of the request's items) |
//! | S3 requests | $0.005 per 1,000 PUT/COPY/POST/LIST, $0.0004 per 1,000 GET and others; DELETE free |
//! | S3 storage | $0.023 per GB-month: input files kept 7 days, result copies 30 days (template defaults) |
//!
//! Left out as too small to show: Secrets Manager (one read per cold start),
//! EventBridge schedules (free), CloudWatch Logs (warnings only at the
//! default level), data transfer (none leaves the region but the provider
//! calls, billed by the provider's side).

use serde::Serialize;

use batchq_core::overhead::AWS_LIST;

// One price table with batchq's own overhead figures (batchq_core::overhead).
pub const API_GATEWAY_PER_REQUEST: f64 = AWS_LIST.api_gateway_per_request;
pub const API_GATEWAY_UNIT_BYTES: u64 = AWS_LIST.api_gateway_unit_bytes;
pub const LAMBDA_PER_REQUEST: f64 = AWS_LIST.lambda_per_request;
pub const LAMBDA_PER_GB_S_ARM: f64 = AWS_LIST.lambda_per_gb_s;
pub const DYNAMODB_PER_WRU: f64 = AWS_LIST.dynamodb_per_wru;
pub const DYNAMODB_PER_RRU: f64 = AWS_LIST.dynamodb_per_rru;
pub const DYNAMODB_PER_GB_MONTH: f64 = AWS_LIST.dynamodb_per_gb_month;
pub const S3_PER_PUT: f64 = AWS_LIST.s3_per_put;
pub const S3_PER_GET: f64 = AWS_LIST.s3_per_get;
pub const S3_PER_GB_MONTH: f64 = AWS_LIST.s3_per_gb_month;
pub const INPUT_RETENTION_DAYS: f64 = AWS_LIST.input_retention_days;
pub const RESULT_RETENTION_DAYS: f64 = AWS_LIST.result_retention_days;

/// Everything the model needs, summed over the measured run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub requests: u64,
    pub api_gateway_units: u64,
    pub lambda_invocations: u64,
    /// Σ over invocations of billed ms × memory (MB), i.e. MB-ms.
    pub lambda_mb_ms: f64,
    pub wcu: f64,
    pub rcu: f64,
    pub s3_put_class: u64,
    pub s3_get_class: u64,
    pub input_bytes: u64,
    pub result_bytes: u64,
    /// Bytes the requests keep in DynamoDB (bodies, results, state).
    pub dynamodb_bytes: u64,
}

/// Dollars per 1,000 requests, by item.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overhead {
    pub api_gateway: f64,
    pub lambda_requests: f64,
    pub lambda_duration: f64,
    pub dynamodb_writes: f64,
    pub dynamodb_reads: f64,
    pub dynamodb_storage: f64,
    pub s3_requests: f64,
    pub s3_storage: f64,
    pub total: f64,
}

const GB: f64 = 1024.0 * 1024.0 * 1024.0;

impl Overhead {
    pub fn per_1000(c: &Counts) -> Self {
        let k = c.requests as f64 / 1000.0;
        let mut o = Overhead {
            api_gateway: c.api_gateway_units as f64 * API_GATEWAY_PER_REQUEST / k,
            lambda_requests: c.lambda_invocations as f64 * LAMBDA_PER_REQUEST / k,
            lambda_duration: c.lambda_mb_ms / 1024.0 / 1000.0 * LAMBDA_PER_GB_S_ARM / k,
            dynamodb_writes: c.wcu * DYNAMODB_PER_WRU / k,
            dynamodb_reads: c.rcu * DYNAMODB_PER_RRU / k,
            dynamodb_storage: c.dynamodb_bytes as f64 / GB * DYNAMODB_PER_GB_MONTH / k,
            s3_requests: (c.s3_put_class as f64 * S3_PER_PUT + c.s3_get_class as f64 * S3_PER_GET) / k,
            s3_storage: (c.input_bytes as f64 * INPUT_RETENTION_DAYS / 30.0
                + c.result_bytes as f64 * RESULT_RETENTION_DAYS / 30.0)
                / GB
                * S3_PER_GB_MONTH
                / k,
            total: 0.0,
        };
        o.total = o.api_gateway
            + o.lambda_requests
            + o.lambda_duration
            + o.dynamodb_writes
            + o.dynamodb_reads
            + o.dynamodb_storage
            + o.s3_requests
            + o.s3_storage;
        o
    }
}

/// API Gateway metering units of one request of `bytes`.
pub fn api_units(bytes: u64) -> u64 {
    bytes.div_ceil(API_GATEWAY_UNIT_BYTES).max(1)
}

/// Lambda's billed MB-ms of one invocation.
pub fn billed_mb_ms(ms: f64, memory_mb: u32) -> f64 {
    ms.ceil().max(1.0) * memory_mb as f64
}
