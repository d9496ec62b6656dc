//! The daily report: one tenant's requests, jobs, failures and their
//! reasons, spend, savings and slowest batches of one UTC day, each beside
//! the day before.
//!
//! It reads only the public API (`GET /v1/activity`, `/v1/jobs`,
//! `/v1/savings`) through an [`ApiReader`], so the same report is built
//! from the API core in this process ([`LocalApi`]: `batchq report`, the
//! scheduled run in the poll function) or from a running API over HTTP
//! (`batchq report --api`), and it is tenant-scoped as the API is. Its
//! figures are the API's own: requests from the activity counters, spend
//! and savings from the savings totals (a job's requests count on the day
//! the job was submitted), jobs from the job rows.
//!
//! [`render`] writes it as text, Markdown, JSON or a self-contained HTML page.

pub mod publish;
pub mod render;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::activity::{ActivityTotals, Hour};
use crate::api::query::percent_encode;
use crate::api::{Api, ApiRequest};
use crate::ids::TenantId;
use crate::money::Money;

/// Jobs created this many days before the previous day are not looked at:
/// a batch ends (or is given up) within days of its submission.
pub const JOB_LOOKBACK_DAYS: i64 = 7;
/// Batches listed as the slowest of a day.
pub const SLOWEST: usize = 5;
/// `GET /v1/jobs` page size the report asks for.
const JOBS_PAGE: u32 = 200;

/// Why a report could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("not a day as YYYY-MM-DD: {0:?}")]
    BadDay(String),
    /// The API refused or failed a read.
    #[error("{path}: {message}")]
    Api { path: String, message: String },
    /// The API answered with JSON the report cannot read.
    #[error("{path}: unexpected answer: {message}")]
    Shape { path: String, message: String },
}

/// Reads the API: `GET path?query`, the JSON of a 2xx answer.
#[async_trait]
pub trait ApiReader: Send + Sync {
    async fn get(&self, path: &str, query: &str) -> Result<Value, ReportError>;
}

/// The API core in this process, answering for one tenant.
pub struct LocalApi<'a> {
    pub api: &'a Api,
    pub tenant: TenantId,
}

#[async_trait]
impl ApiReader for LocalApi<'_> {
    async fn get(&self, path: &str, query: &str) -> Result<Value, ReportError> {
        let resp = self
            .api
            .handle(&self.tenant, ApiRequest::get(path).with_query(query))
            .await;
        if resp.status >= 400 {
            return Err(ReportError::Api {
                path: path.to_owned(),
                message: format!(
                    "HTTP {}: {}",
                    resp.status,
                    resp.body["error"]["message"].as_str().unwrap_or("request failed")
                ),
            });
        }
        Ok(resp.body)
    }
}

/// A batch and how long it took from submission to its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlowBatch {
    pub job_id: String,
    pub model: String,
    pub status: String,
    pub submitted_at: String,
    pub finished_at: String,
    pub seconds: i64,
}

/// The figures of one day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DayFigures {
    pub day: String,
    /// Requests enqueued, completed, failed, cancelled and retried that day.
    pub requests: ActivityTotals,
    /// Failed requests by error code.
    pub failures: BTreeMap<String, i64>,
    /// Jobs submitted that day, by their status now.
    pub jobs_submitted: BTreeMap<String, u64>,
    /// Jobs that ended that day, by status.
    pub jobs_finished: BTreeMap<String, u64>,
    /// What the day's completed requests cost at batch prices (USD).
    pub spend_usd: String,
    /// What they would have cost in real time, and the difference.
    pub realtime_usd: String,
    pub saved_usd: String,
    /// What batchq's own AWS use cost that day (`/v1/savings`'s
    /// `aws_overhead_usd`), and the saving less it.
    pub aws_overhead_usd: String,
    pub net_saved_usd: String,
    /// Completed requests the savings count, and those without a price.
    pub priced_requests: u64,
    pub unpriced_requests: u64,
    /// Batches that ended that day, longest first.
    pub slowest: Vec<SlowBatch>,
}

/// The report of one tenant and day, with the day before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DailyReport {
    pub tenant: String,
    pub day: DayFigures,
    pub previous: DayFigures,
}

/// The day before `day` (`YYYY-MM-DD`).
pub fn previous_day(day: &str) -> Result<String, ReportError> {
    let h = Hour::day_start(day).map_err(|_| ReportError::BadDay(day.to_owned()))?;
    Ok(h.plus(-24).day())
}

/// Checks a `YYYY-MM-DD` day.
pub fn parse_day(day: &str) -> Result<String, ReportError> {
    Hour::day_start(day).map_err(|_| ReportError::BadDay(day.chars().take(40).collect()))?;
    Ok(day.to_owned())
}

fn shape(path: &str, message: impl Into<String>) -> ReportError {
    ReportError::Shape {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn int(v: &Value, path: &str, field: &str) -> Result<i64, ReportError> {
    v[field]
        .as_i64()
        .ok_or_else(|| shape(path, format!("{field} is not a number")))
}

fn usd(v: &Value, path: &str, field: &str) -> Result<Money, ReportError> {
    v[field]
        .as_str()
        .and_then(Money::parse_decimal)
        .ok_or_else(|| shape(path, format!("{field} is not a decimal amount")))
}

fn seconds_between(from: &str, to: &str) -> Option<i64> {
    let a = OffsetDateTime::parse(from, &Rfc3339).ok()?;
    let b = OffsetDateTime::parse(to, &Rfc3339).ok()?;
    Some((b - a).whole_seconds())
}

/// Builds the report of `day` (`YYYY-MM-DD`) for the tenant `api` answers for.
pub async fn build(api: &dyn ApiReader, day: &str) -> Result<DailyReport, ReportError> {
    let day = parse_day(day)?;
    let prev = previous_day(&day)?;
    let (mut today, tenant) = figures_of(api, &day).await?;
    let (mut before, _) = figures_of(api, &prev).await?;
    jobs_into(api, &mut today, &mut before).await?;
    Ok(DailyReport {
        tenant,
        day: today,
        previous: before,
    })
}

/// The request and money figures of one day (jobs come later), and the
/// tenant the API answered for.
async fn figures_of(api: &dyn ApiReader, day: &str) -> Result<(DayFigures, String), ReportError> {
    let first = Hour::day_start(day).map_err(|_| ReportError::BadDay(day.to_owned()))?;
    let path = "/v1/activity";
    let a = api.get(path, &format!("from={first}&to={}", first.plus(23))).await?;
    let t = &a["total"];
    let requests = ActivityTotals {
        enqueued: int(t, path, "enqueued")?,
        completed: int(t, path, "completed")?,
        failed: int(t, path, "failed")?,
        cancelled: int(t, path, "cancelled")?,
        retried: int(t, path, "retried")?,
    };
    let mut failures = BTreeMap::new();
    for f in a["failures"]
        .as_array()
        .ok_or_else(|| shape(path, "no failures list"))?
    {
        let code = f["code"]
            .as_str()
            .ok_or_else(|| shape(path, "a failure without code"))?;
        failures.insert(code.to_owned(), int(f, path, "count")?);
    }
    let path = "/v1/savings";
    let s = api.get(path, &format!("from={day}&to={day}&group_by=day")).await?;
    let total = &s["total"];
    let spend = usd(total, path, "batch_cost_usd")?;
    let realtime = usd(total, path, "realtime_cost_usd")?;
    let saved = usd(total, path, "saved_usd")?;
    let overhead = usd(total, path, "aws_overhead_usd")?;
    let net = usd(total, path, "net_saved_usd")?;
    let tenant = a["tenant"].as_str().unwrap_or_default().to_owned();
    let figures = DayFigures {
        day: day.to_owned(),
        requests,
        failures,
        spend_usd: spend.to_decimal_string(),
        realtime_usd: realtime.to_decimal_string(),
        saved_usd: saved.to_decimal_string(),
        aws_overhead_usd: overhead.to_decimal_string(),
        net_saved_usd: net.to_decimal_string(),
        priced_requests: total["requests"].as_u64().unwrap_or(0),
        unpriced_requests: total["unpriced_requests"].as_u64().unwrap_or(0),
        ..DayFigures::default()
    };
    Ok((figures, tenant))
}

/// Pages through the tenant's jobs (newest first) back to
/// [`JOB_LOOKBACK_DAYS`] before the earlier day and counts them into both
/// days.
async fn jobs_into(api: &dyn ApiReader, today: &mut DayFigures, before: &mut DayFigures) -> Result<(), ReportError> {
    let path = "/v1/jobs";
    let oldest = Hour::day_start(&before.day)
        .map_err(|_| ReportError::BadDay(before.day.clone()))?
        .plus(-24 * JOB_LOOKBACK_DAYS)
        .day();
    let mut slow: [Vec<SlowBatch>; 2] = [Vec::new(), Vec::new()];
    let mut cursor: Option<String> = None;
    'pages: loop {
        let query = match &cursor {
            None => format!("limit={JOBS_PAGE}"),
            Some(c) => format!("limit={JOBS_PAGE}&cursor={}", percent_encode(c)),
        };
        let page = api.get(path, &query).await?;
        let jobs = page["jobs"].as_array().ok_or_else(|| shape(path, "no jobs list"))?;
        for j in jobs {
            let created = j["created_at"].as_str().unwrap_or("");
            if created.get(..10).is_some_and(|d| d < oldest.as_str()) {
                break 'pages;
            }
            let status = j["status"].as_str().unwrap_or("unknown").to_owned();
            let submitted = j["submitted_at"].as_str();
            let finished = j["finished_at"].as_str();
            for (i, fig) in [&mut *today, &mut *before].into_iter().enumerate() {
                if submitted.and_then(|s| s.get(..10)) == Some(fig.day.as_str()) {
                    *fig.jobs_submitted.entry(status.clone()).or_default() += 1;
                }
                if finished.and_then(|s| s.get(..10)) == Some(fig.day.as_str()) {
                    *fig.jobs_finished.entry(status.clone()).or_default() += 1;
                    if let (Some(s), Some(f)) = (submitted, finished) {
                        if let Some(seconds) = seconds_between(s, f) {
                            slow[i].push(SlowBatch {
                                job_id: j["id"].as_str().unwrap_or("").to_owned(),
                                model: j["model"].as_str().unwrap_or("").to_owned(),
                                status: status.clone(),
                                submitted_at: s.to_owned(),
                                finished_at: f.to_owned(),
                                seconds,
                            });
                        }
                    }
                }
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    for (i, fig) in [today, before].into_iter().enumerate() {
        let mut s = std::mem::take(&mut slow[i]);
        s.sort_by(|a, b| b.seconds.cmp(&a.seconds).then_with(|| a.job_id.cmp(&b.job_id)));
        s.truncate(SLOWEST);
        fig.slowest = s;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_day_crosses_months_and_years() {
        assert_eq!(previous_day("2026-12-01").unwrap(), "2026-11-30");
        assert_eq!(previous_day("2027-01-01").unwrap(), "2026-12-31");
        assert_eq!(previous_day("2024-03-01").unwrap(), "2024-02-29");
        assert!(previous_day("2026-02-30").is_err());
        assert!(parse_day("yesterday").is_err());
    }

    #[test]
    fn a_batch_takes_the_seconds_from_submission_to_its_end() {
        assert_eq!(
            seconds_between("2026-12-01T10:00:00.000Z", "2026-12-01T12:30:05.000Z"),
            Some(2 * 3600 + 30 * 60 + 5)
        );
        assert_eq!(seconds_between("x", "2026-12-01T12:30:05.000Z"), None);
    }
}
