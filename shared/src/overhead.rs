//! batchq's own AWS bill: what its runs use of AWS (a usage tally) and what
//! that costs at AWS's list prices (a price table), so the saving it reports
//! can be shown next to what earning it cost (`aws_overhead_usd`,
//! `net_saved_usd`).
//!
//! The tally is filled by the adapters (the DynamoDB client adds the
//! capacity units each call's answer reports, the S3 client counts its
//! requests by price class) and by the Lambda handlers (their billed
//! duration and one request each; one API Gateway request per enqueue
//! call). The domain only reads it: a run takes what the process used since
//! the last run took it and folds its price into a write it makes anyway
//! (docs/api.md, "AWS overhead"). The memory and embedded stores add
//! nothing: running on them costs no AWS.
//!
//! Storage is not metered per call: it is estimated as one month of the
//! bytes written (DynamoDB: each request's body, its result and a 1 KB state
//! item; S3: input files for [`AwsPrices::input_retention_days`], result
//! copies for [`AwsPrices::result_retention_days`]), the same model as the
//! bench's (`bench/src/cost.rs`, which prices its counts with this table).

use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::money::Money;

/// AWS list prices in dollars (us-east-1, on demand, arm64, no free tier).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AwsPrices {
    /// HTTP API, per request, each metered in [`AwsPrices::api_gateway_unit_bytes`] steps.
    pub api_gateway_per_request: f64,
    pub api_gateway_unit_bytes: u64,
    pub lambda_per_request: f64,
    /// Lambda duration, arm64, per GB-second (billed per ms at the function's memory).
    pub lambda_per_gb_s: f64,
    /// DynamoDB on demand, per write request unit.
    pub dynamodb_per_wru: f64,
    /// DynamoDB on demand, per read request unit.
    pub dynamodb_per_rru: f64,
    pub dynamodb_per_gb_month: f64,
    /// S3 PUT, COPY, POST and LIST requests (and multipart calls), each.
    pub s3_per_put: f64,
    /// S3 GET, HEAD and every other billed request, each (DELETE is free).
    pub s3_per_get: f64,
    pub s3_per_gb_month: f64,
    /// Days an input file is kept (the template's lifecycle rule).
    pub input_retention_days: f64,
    /// Days a result copy is kept (the template's lifecycle rule).
    pub result_retention_days: f64,
    /// The state item a request keeps in DynamoDB, besides its body and result.
    pub state_item_bytes: u64,
}

/// AWS's list prices, us-east-1, on demand, arm64.
pub const AWS_LIST: AwsPrices = AwsPrices {
    api_gateway_per_request: 1.00 / 1e6,
    api_gateway_unit_bytes: 512 * 1024,
    lambda_per_request: 0.20 / 1e6,
    lambda_per_gb_s: 0.000_013_333_4,
    dynamodb_per_wru: 0.625 / 1e6,
    dynamodb_per_rru: 0.125 / 1e6,
    dynamodb_per_gb_month: 0.25,
    s3_per_put: 0.005 / 1000.0,
    s3_per_get: 0.0004 / 1000.0,
    s3_per_gb_month: 0.023,
    input_retention_days: 7.0,
    result_retention_days: 30.0,
    state_item_bytes: 1024,
};

const GB: f64 = 1024.0 * 1024.0 * 1024.0;
const DAYS_PER_MONTH: f64 = 30.0;

impl AwsPrices {
    /// API Gateway metering units of one request of `bytes`.
    pub fn api_units(&self, bytes: u64) -> u64 {
        bytes.div_ceil(self.api_gateway_unit_bytes).max(1)
    }
}

/// What runs used of AWS, added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct AwsUsage {
    /// API Gateway metering units (one per enqueue call of up to 512 KB).
    pub api_units: u64,
    pub lambda_requests: u64,
    /// Σ billed ms × memory MB of the Lambda invocations.
    pub lambda_mb_ms: u64,
    /// DynamoDB write and read units, as the calls' answers report them.
    pub wcu: f64,
    pub rcu: f64,
    pub s3_put_class: u64,
    pub s3_get_class: u64,
    /// Bytes written to DynamoDB to be kept (bodies, results, state items).
    pub dynamodb_bytes: u64,
    /// Bytes of input files written to S3.
    pub s3_input_bytes: u64,
    /// Bytes of result copies written to S3.
    pub s3_result_bytes: u64,
}

impl AwsUsage {
    pub fn add(&mut self, o: &AwsUsage) {
        self.api_units += o.api_units;
        self.lambda_requests += o.lambda_requests;
        self.lambda_mb_ms += o.lambda_mb_ms;
        self.wcu += o.wcu;
        self.rcu += o.rcu;
        self.s3_put_class += o.s3_put_class;
        self.s3_get_class += o.s3_get_class;
        self.dynamodb_bytes += o.dynamodb_bytes;
        self.s3_input_bytes += o.s3_input_bytes;
        self.s3_result_bytes += o.s3_result_bytes;
    }

    pub fn is_zero(&self) -> bool {
        *self == AwsUsage::default()
    }

    /// One Lambda invocation of `ms` measured handler time at `memory_mb`:
    /// billed rounded up to the millisecond, at least 1 ms.
    pub fn lambda_invocation(ms: f64, memory_mb: u32) -> AwsUsage {
        AwsUsage {
            lambda_requests: 1,
            lambda_mb_ms: (ms.ceil().max(1.0) as u64) * u64::from(memory_mb),
            ..AwsUsage::default()
        }
    }

    /// The dollars of each item at `p`.
    pub fn priced(&self, p: &AwsPrices) -> PricedUsage {
        let s3_storage_months = (self.s3_input_bytes as f64 * p.input_retention_days
            + self.s3_result_bytes as f64 * p.result_retention_days)
            / DAYS_PER_MONTH;
        PricedUsage {
            api_gateway: self.api_units as f64 * p.api_gateway_per_request,
            lambda_requests: self.lambda_requests as f64 * p.lambda_per_request,
            lambda_duration: self.lambda_mb_ms as f64 / 1024.0 / 1000.0 * p.lambda_per_gb_s,
            dynamodb_writes: self.wcu * p.dynamodb_per_wru,
            dynamodb_reads: self.rcu * p.dynamodb_per_rru,
            dynamodb_storage: self.dynamodb_bytes as f64 / GB * p.dynamodb_per_gb_month,
            s3_requests: self.s3_put_class as f64 * p.s3_per_put + self.s3_get_class as f64 * p.s3_per_get,
            s3_storage: s3_storage_months / GB * p.s3_per_gb_month,
        }
    }

    /// What this usage costs at `p`, to the picodollar.
    pub fn cost(&self, p: &AwsPrices) -> Money {
        self.priced(p).total_money()
    }
}

/// Dollars by item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PricedUsage {
    pub api_gateway: f64,
    pub lambda_requests: f64,
    pub lambda_duration: f64,
    pub dynamodb_writes: f64,
    pub dynamodb_reads: f64,
    pub dynamodb_storage: f64,
    pub s3_requests: f64,
    pub s3_storage: f64,
}

impl PricedUsage {
    pub fn total(&self) -> f64 {
        self.api_gateway
            + self.lambda_requests
            + self.lambda_duration
            + self.dynamodb_writes
            + self.dynamodb_reads
            + self.dynamodb_storage
            + self.s3_requests
            + self.s3_storage
    }

    pub fn total_money(&self) -> Money {
        usd(self.total())
    }
}

/// Dollars as money, rounded to the picodollar.
pub fn usd(dollars: f64) -> Money {
    Money::from_picodollars((dollars * Money::PICOS_PER_DOLLAR as f64).round() as i128)
}

/// A process's running tally of the AWS it used: the adapters and handlers
/// add to it, each run takes what is there. Shared by every clone of the
/// ports (one per process). A tally made with [`Default`] is off: it counts
/// nothing (the memory and embedded stores use no AWS); the AWS wiring
/// makes one with [`UsageTally::on_aws`].
#[derive(Debug, Default)]
pub struct UsageTally {
    on: bool,
    used: Mutex<AwsUsage>,
    /// Everything ever added, never taken (what tests check the meter against).
    lifetime: Mutex<AwsUsage>,
    /// The Lambda invocation running now, whose bill so far a take
    /// includes (see [`UsageTally::begin_invocation`]).
    running: Mutex<Option<Running>>,
}

/// A Lambda invocation in progress and what of its bill was already taken.
#[derive(Debug, Clone, Copy)]
struct Running {
    started: std::time::Instant,
    memory_mb: u32,
    api_units: u64,
    /// Milliseconds of it already taken (whole ms: Lambda bills the
    /// invocation's time rounded up, so the rest is billed at its end).
    charged_ms: u64,
    /// Its request (and API Gateway units) already taken.
    request_charged: bool,
}

impl Running {
    /// The bill of this invocation from what was taken up to `elapsed_ms`
    /// (whole milliseconds), marked as taken.
    fn charge_to(&mut self, elapsed_ms: u64) -> AwsUsage {
        let mut u = AwsUsage::default();
        if !self.request_charged {
            u.lambda_requests = 1;
            u.api_units = self.api_units;
            self.request_charged = true;
        }
        let ms = elapsed_ms.saturating_sub(self.charged_ms);
        u.lambda_mb_ms = ms * u64::from(self.memory_mb);
        self.charged_ms += ms;
        u
    }
}

impl UsageTally {
    /// A tally that counts: the process runs on AWS.
    pub fn on_aws() -> Self {
        Self {
            on: true,
            ..Self::default()
        }
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    fn used(&self) -> std::sync::MutexGuard<'_, AwsUsage> {
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, u: &AwsUsage) {
        if self.on {
            self.used().add(u);
            self.lifetime.lock().unwrap_or_else(|p| p.into_inner()).add(u);
        }
    }

    /// Adds to the tally with `f`.
    pub fn record(&self, f: impl FnOnce(&mut AwsUsage)) {
        let mut u = AwsUsage::default();
        f(&mut u);
        self.add(&u);
    }

    /// Puts back what a take took, when the write it was for failed.
    pub fn give_back(&self, u: &AwsUsage) {
        if self.on {
            self.used().add(u);
        }
    }

    /// Everything this tally was ever given, taken or not.
    pub fn lifetime(&self) -> AwsUsage {
        *self.lifetime.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What was used since the last take; the tally starts again from zero.
    /// When an invocation is running (see [`Self::begin_invocation`]), its
    /// request and its time so far are part of what is taken, so the write
    /// a take is folded into carries the invocation that makes it, not only
    /// the ones before (a process's last invocation would otherwise never
    /// be counted).
    pub fn take(&self) -> AwsUsage {
        let elapsed = self.running().map(|r| r.started.elapsed());
        self.take_after(elapsed)
    }

    /// [`Self::take`] with the running invocation's time so far given.
    fn take_after(&self, elapsed: Option<std::time::Duration>) -> AwsUsage {
        if let (true, Some(elapsed)) = (self.on, elapsed) {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(r) = running.as_mut() {
                let so_far = r.charge_to(elapsed.as_millis() as u64);
                self.add(&so_far);
            }
        }
        std::mem::take(&mut *self.used())
    }

    fn running(&self) -> Option<Running> {
        *self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A Lambda invocation starts: until [`Self::end_invocation`], a take
    /// includes its bill so far. One invocation at a time is followed (Lambda
    /// runs one per process); one that starts while another runs is billed
    /// whole at its end. Returns whether this one is followed.
    pub fn begin_invocation(&self, memory_mb: u32, api_units: u64) -> bool {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.is_some() {
            return false;
        }
        *running = Some(Running {
            started: std::time::Instant::now(),
            memory_mb,
            api_units,
            charged_ms: 0,
            request_charged: false,
        });
        true
    }

    /// The followed invocation ended after `ms`: adds what of its bill no
    /// take has included (Lambda bills the whole time rounded up to the
    /// millisecond, at least 1 ms, so the parts add up to that).
    pub fn end_invocation(&self, ms: f64) {
        let taken = self.running.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut r) = taken {
            let rest = r.charge_to(ms.ceil().max(1.0) as u64);
            self.add(&rest);
        }
    }

    /// What was used since the last take, left in the tally.
    pub fn peek(&self) -> AwsUsage {
        *self.used()
    }

    /// Takes the tally and prices it at the list prices; what is taken is
    /// gone, so a run's usage is folded into exactly one write.
    pub fn take_cost(&self) -> Money {
        self.take().cost(&AWS_LIST)
    }
}

/// The variable Lambda sets to the function's configured memory, in MB.
pub const LAMBDA_MEMORY_VAR: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";

/// A Lambda function's own bill: each invocation's handler time, rounded
/// up to the millisecond, at the function's memory, and one request (and,
/// for the HTTP API, one API Gateway request per 512 KB of its body).
#[derive(Debug, Clone)]
pub struct LambdaMeter {
    usage: Arc<UsageTally>,
    memory_mb: u32,
}

impl LambdaMeter {
    /// `memory_mb`: the function's configured memory ([`LAMBDA_MEMORY_VAR`],
    /// read by the caller); unknown, its duration counts nothing.
    pub fn new(usage: Arc<UsageTally>, memory_mb: Option<u32>) -> Self {
        Self {
            usage,
            memory_mb: memory_mb.unwrap_or(0),
        }
    }

    /// Runs one invocation's handler and adds its bill; `api_bytes`: the
    /// body of the HTTP request it answers, when API Gateway sent it.
    /// A take of the tally while the handler runs includes the
    /// invocation's bill so far ([`UsageTally::begin_invocation`]).
    pub async fn invocation<F: std::future::Future>(&self, api_bytes: Option<u64>, handler: F) -> F::Output {
        let api_units = api_bytes.map_or(0, |bytes| AWS_LIST.api_units(bytes));
        let followed = self.usage.begin_invocation(self.memory_mb, api_units);
        let started = std::time::Instant::now();
        let out = handler.await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if followed {
            self.usage.end_invocation(ms);
        } else {
            let mut bill = AwsUsage::lambda_invocation(ms, self.memory_mb);
            bill.api_units = api_units;
            self.usage.add(&bill);
        }
        out
    }
}

/// A rough AWS overhead of one request over its whole life, for `batchq
/// analyze` (before any request was sent): a body of `body_bytes` and a
/// result of `result_bytes`, enqueued one per call or in bulk. The units
/// follow from DynamoDB's rules and batchq's writes (docs/performance.md
/// has them measured phase by phase):
///
/// - enqueue, one per call: the body item and the state item in a
///   transaction (2 units per KB each), the queue-index entry, and the
///   call's own counter items; in bulk: the body goes into a chunk object
///   shared by up to 4 MB of bodies (an S3 PUT each) and the state item
///   (under 1 KB) points into it, the counter items are shared by the call;
/// - claim: the state item in a transaction, the queue-index entry out and
///   the job-index entry in, plus a share of the transaction's counters;
/// - finish: the state item and the result item (a pointer into the result
///   file copy) in a transaction, the job-index entry, plus a share of the
///   transaction's counter and feed items;
///
/// storage as [`AwsUsage::priced`] counts it ([`stored_bytes`]).
pub fn estimate_per_request(p: &AwsPrices, body_bytes: u64, result_bytes: u64, single: bool) -> Money {
    estimate_usage(p, body_bytes, result_bytes, single).cost(p)
}

/// The usage behind [`estimate_per_request`].
pub fn estimate_usage(p: &AwsPrices, body_bytes: u64, result_bytes: u64, single: bool) -> AwsUsage {
    let kb = |b: u64| b.div_ceil(1024).max(1) as f64;
    let enqueue_wcu = if single {
        // body item and state item (transactional), queue index, counters.
        2.0 * kb(body_bytes) + 2.0 + 1.0 + 6.0
    } else {
        // state item with the chunk pointer (transactional), queue index,
        // the call's counters shared (the chunk's PUT, shared by up to
        // 4 MB of bodies, is a few billionths of a dollar a request).
        2.0 + 1.0 + 0.1
    };
    // claim, then finish.
    let wcu = enqueue_wcu + (2.0 + 2.0 + 0.1) + (2.0 + 2.0 + 1.0 + 0.5);
    // reads: the body at submit (the chunk range in bulk) and the state at
    // finish, eventually consistent.
    let rcu = if single {
        0.5 * (body_bytes.div_ceil(4096).max(1) as f64) + 1.0
    } else {
        0.5 + 1.0
    };
    AwsUsage {
        api_units: u64::from(single),
        wcu,
        rcu,
        dynamodb_bytes: body_bytes + p.state_item_bytes,
        s3_input_bytes: body_bytes,
        s3_result_bytes: result_bytes,
        ..AwsUsage::default()
    }
}

/// The bytes a new request keeps in DynamoDB, as its storage is estimated:
/// its body and its state item. (A body a bulk call wrote into a chunk
/// object is in S3 instead, at a tenth of the price: this overstates it.)
pub fn stored_bytes(r: &crate::request::NewRequest) -> u64 {
    r.body_bytes() + AWS_LIST.state_item_bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_item_is_priced_at_its_list_price() {
        let u = AwsUsage {
            api_units: 1_000_000,
            lambda_requests: 1_000_000,
            lambda_mb_ms: 1024 * 1000,
            wcu: 1e6,
            rcu: 1e6,
            s3_put_class: 1000,
            s3_get_class: 1000,
            dynamodb_bytes: 1 << 30,
            s3_input_bytes: 0,
            s3_result_bytes: 1 << 30,
        };
        let p = u.priced(&AWS_LIST);
        assert_eq!(p.api_gateway, 1.0);
        assert_eq!(p.lambda_requests, 0.2);
        assert_eq!(p.lambda_duration, 0.000_013_333_4);
        assert_eq!(p.dynamodb_writes, 0.625);
        assert_eq!(p.dynamodb_reads, 0.125);
        assert_eq!(p.dynamodb_storage, 0.25);
        assert!((p.s3_requests - 0.0054).abs() < 1e-12);
        assert!((p.s3_storage - 0.023).abs() < 1e-12);
    }

    #[test]
    fn an_input_file_is_charged_its_retention_as_a_share_of_a_month() {
        let u = AwsUsage {
            s3_input_bytes: 30 << 30,
            ..AwsUsage::default()
        };
        assert!((u.priced(&AWS_LIST).s3_storage - 7.0 * 0.023).abs() < 1e-9);
    }

    #[test]
    fn lambda_time_is_billed_rounded_up_to_the_millisecond() {
        assert_eq!(AwsUsage::lambda_invocation(2.1, 512).lambda_mb_ms, 3 * 512);
        assert_eq!(AwsUsage::lambda_invocation(0.0, 256).lambda_mb_ms, 256);
    }

    #[test]
    fn a_tally_that_is_off_counts_nothing() {
        let t = UsageTally::default();
        t.record(|u| u.wcu += 3.0);
        assert!(t.take().is_zero());
    }

    #[test]
    fn a_take_empties_the_tally_so_usage_is_folded_once() {
        let t = UsageTally::on_aws();
        t.record(|u| u.wcu += 3.0);
        t.add(&AwsUsage {
            s3_put_class: 2,
            ..AwsUsage::default()
        });
        let first = t.take();
        assert_eq!(first.wcu, 3.0);
        assert_eq!(first.s3_put_class, 2);
        assert!(t.take().is_zero());
        assert_eq!(t.take_cost(), Money::ZERO);
    }

    #[test]
    fn an_invocation_taken_while_it_runs_bills_only_the_rest_at_its_end() {
        let t = UsageTally::on_aws();
        assert!(t.begin_invocation(512, 2));
        t.record(|u| u.wcu += 3.0);
        let first = t.take_after(Some(std::time::Duration::from_micros(5_700)));
        assert_eq!(first.wcu, 3.0);
        assert_eq!((first.lambda_requests, first.api_units), (1, 2));
        assert_eq!(first.lambda_mb_ms, 5 * 512);
        // A second take: only the time since, no second request.
        let second = t.take_after(Some(std::time::Duration::from_micros(9_100)));
        assert_eq!((second.lambda_requests, second.api_units), (0, 0));
        assert_eq!(second.lambda_mb_ms, 4 * 512);
        t.end_invocation(12.2);
        let rest = t.take();
        assert_eq!((rest.lambda_requests, rest.api_units), (0, 0));
        assert_eq!(rest.lambda_mb_ms, 4 * 512, "13 ms billed, 9 taken before");
        // The parts add up to what the invocation is billed, once.
        let whole = t.lifetime();
        assert_eq!(whole.lambda_mb_ms, AwsUsage::lambda_invocation(12.2, 512).lambda_mb_ms);
        assert_eq!((whole.lambda_requests, whole.api_units), (1, 2));
    }

    #[test]
    fn an_invocation_nothing_took_is_billed_whole_at_its_end_and_the_next_is_followed() {
        let t = UsageTally::on_aws();
        assert!(t.begin_invocation(256, 1));
        assert!(!t.begin_invocation(256, 1), "one at a time is followed");
        t.end_invocation(0.3);
        let u = t.take();
        assert_eq!((u.lambda_requests, u.api_units, u.lambda_mb_ms), (1, 1, 256));
        assert!(t.begin_invocation(256, 0));
        t.end_invocation(2.5);
        assert_eq!(t.take().lambda_mb_ms, 3 * 256);
        // A take with nothing running adds no time.
        assert!(t.take_after(None).is_zero());
    }

    #[test]
    fn a_tally_that_is_off_bills_no_invocation() {
        let t = UsageTally::default();
        t.begin_invocation(512, 1);
        assert!(t.take_after(Some(std::time::Duration::from_millis(5))).is_zero());
        t.end_invocation(7.0);
        assert!(t.take().is_zero());
    }

    #[test]
    fn a_bulk_request_is_estimated_without_the_body_item_a_single_one_writes() {
        // A 4.3 KB body, as the bench's requests average.
        let single = estimate_usage(&AWS_LIST, 4_300, 2_000, true);
        let bulk = estimate_usage(&AWS_LIST, 4_300, 2_000, false);
        assert!((single.wcu - bulk.wcu - (2.0 * 5.0 + 6.0 - 0.1)).abs() < 1e-9);
        // What `make bench` measured per request over its life (section 3 of
        // docs/performance.md): about 12.7 units in bulk, 28.4 singly.
        assert!((12.0..=13.5).contains(&bulk.wcu), "{bulk:?}");
        assert!((27.0..=30.0).contains(&single.wcu), "{single:?}");
    }

    #[test]
    fn a_larger_request_is_estimated_to_cost_more_and_single_enqueue_more_than_bulk() {
        let small = estimate_per_request(&AWS_LIST, 500, 200, false);
        let big = estimate_per_request(&AWS_LIST, 8000, 4000, false);
        assert!(big > small);
        assert!(estimate_per_request(&AWS_LIST, 500, 200, true) > small);
    }
}
