//! `GET /v1/savings`: what the tenant's completed requests cost at batch
//! prices, what they would have cost in real time, and the difference, per
//! day, per model or per provider instance. Every amount is an exact decimal string in US dollars.
//!
//! The figures come from running totals kept at ingest (one per tenant,
//! day, provider instance and model); a job's requests count on the UTC day the job was
//! submitted.
//!
//! Next to the saving, `aws_overhead_usd` is what batchq's own AWS use cost
//! ([`crate::overhead`]) and `net_saved_usd` the saving less it: the
//! submit, poll and ingest runs of the results' jobs (in the same totals as
//! the results), and the tenant's enqueue calls (hourly activity counters,
//! on the UTC day of the call; in the day groups and the total, not in the
//! model and provider groups, which say so as `enqueue_aws_overhead_usd`).
//! On the memory and embedded stores both are 0: no AWS is used.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::error::ApiError;
use super::query::Query;
use super::{Api, ApiRequest, ApiResponse};
use crate::activity::Hour;
use crate::ids::TenantId;
use crate::money::Money;
use crate::store::SavingsTotals;
use crate::views;

/// Bounds used when `from` / `to` are not given: every day.
const FIRST_DAY: &str = "0000-01-01";
const LAST_DAY: &str = "9999-12-31";
const EPOCH_DAY: &str = "1970-01-01";

/// The JSON of one group (or the total).
pub fn totals_view(t: &SavingsTotals) -> Value {
    json!({
        "requests": t.requests,
        "unpriced_requests": t.unpriced_requests,
        "tokens": views::usage(&t.usage),
        "batch_cost_usd": t.batch_cost.to_decimal_string(),
        "realtime_cost_usd": t.realtime_cost.to_decimal_string(),
        "saved_usd": t.saved().to_decimal_string(),
        "aws_overhead_usd": t.aws_overhead.to_decimal_string(),
        "net_saved_usd": (t.saved() - t.aws_overhead).to_decimal_string(),
    })
}

/// Checks a `YYYY-MM-DD` day (a real calendar day).
fn day(q: &Query, name: &str) -> Result<Option<String>, ApiError> {
    let Some(raw) = q.get(name) else { return Ok(None) };
    let bad = || {
        ApiError::bad_request(
            Some(name),
            "invalid_date",
            format!(
                "{name} must be a day as YYYY-MM-DD, not {:?}",
                raw.chars().take(40).collect::<String>()
            ),
        )
    };
    let b = raw.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) || !digits(5..7) || !digits(8..10) {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| raw[r].parse::<u8>().map_err(|_| bad());
    let year: i32 = raw[0..4].parse().map_err(|_| bad())?;
    let month = time::Month::try_from(num(5..7)?).map_err(|_| bad())?;
    time::Date::from_calendar_date(year, month, num(8..10)?).map_err(|_| bad())?;
    Ok(Some(raw.to_owned()))
}

impl Api {
    /// `GET /v1/savings?from=YYYY-MM-DD&to=YYYY-MM-DD&group_by=day|model|provider`.
    pub(super) async fn savings_report(&self, tenant: &TenantId, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
        let q = Query::parse(&req.query, &["from", "to", "group_by"])?;
        let from = day(&q, "from")?;
        let to = day(&q, "to")?;
        if let (Some(f), Some(t)) = (&from, &to) {
            if f > t {
                return Err(ApiError::bad_request(
                    Some("from"),
                    "invalid_range",
                    format!("from ({f}) is after to ({t})"),
                ));
            }
        }
        let group_by = match q.get("group_by").unwrap_or("day") {
            g @ ("day" | "model" | "provider") => g,
            other => {
                return Err(ApiError::bad_request(
                    Some("group_by"),
                    "invalid_value",
                    format!(
                        "group_by must be day, model or provider, not {:?}",
                        other.chars().take(40).collect::<String>()
                    ),
                ))
            }
        };
        let rows = self
            .ports
            .savings
            .savings(
                tenant,
                from.as_deref().unwrap_or(FIRST_DAY),
                to.as_deref().unwrap_or(LAST_DAY),
            )
            .await?;
        let mut groups: BTreeMap<String, SavingsTotals> = BTreeMap::new();
        let mut total = SavingsTotals::default();
        for row in &rows {
            let key = match group_by {
                "day" => row.day.clone(),
                "provider" => row.provider.to_string(),
                _ => row.model.to_string(),
            };
            groups.entry(key).or_default().add(&row.totals);
            total.add(&row.totals);
        }
        let enqueue = self
            .enqueue_overhead_by_day(
                tenant,
                from.as_deref().unwrap_or(FIRST_DAY),
                to.as_deref().unwrap_or(LAST_DAY),
            )
            .await?;
        let mut enqueue_total = Money::ZERO;
        for (day, m) in &enqueue {
            enqueue_total += *m;
            if group_by == "day" {
                groups.entry(day.clone()).or_default().aws_overhead += *m;
            }
        }
        total.aws_overhead += enqueue_total;
        let groups: Vec<Value> = groups
            .iter()
            .map(|(key, t)| {
                let mut v = totals_view(t);
                v[group_by] = Value::String(key.clone());
                v
            })
            .collect();
        let mut body = json!({
            "tenant": tenant,
            "from": from,
            "to": to,
            "group_by": group_by,
            "groups": groups,
            "total": totals_view(&total),
        });
        if group_by != "day" {
            body["enqueue_aws_overhead_usd"] = Value::String(enqueue_total.to_decimal_string());
        }
        Ok(ApiResponse::json(200, body))
    }

    /// The AWS overhead of the tenant's enqueue calls per UTC day of
    /// `from..=to` (its hourly activity counters); days without any left out.
    async fn enqueue_overhead_by_day(
        &self,
        tenant: &TenantId,
        from: &str,
        to: &str,
    ) -> Result<BTreeMap<String, Money>, ApiError> {
        // No counter predates the epoch: the open range starts there. Off
        // AWS nothing is ever counted: no read.
        let from = from.max(EPOCH_DAY);
        if from > to || !self.ports.usage.is_on() {
            return Ok(BTreeMap::new());
        }
        let bad = |_| ApiError::Internal;
        let (first, last) = (
            Hour::day_start(from).map_err(bad)?,
            Hour::day_start(to).map_err(bad)?.plus(23),
        );
        let rows = self.ports.requests.activity(tenant, first, last).await?;
        let mut out: BTreeMap<String, Money> = BTreeMap::new();
        for (hour, counts) in rows.hours.range(first..=last) {
            if counts.aws_overhead_picos != 0 {
                *out.entry(hour.day()).or_default() += Money::from_picodollars(i128::from(counts.aws_overhead_picos));
            }
        }
        Ok(out)
    }

    /// All-time totals of a tenant (for `GET /v1/stats`).
    pub(super) async fn savings_total(&self, tenant: &TenantId) -> Result<SavingsTotals, ApiError> {
        let mut total = SavingsTotals::default();
        for row in self.ports.savings.savings(tenant, FIRST_DAY, LAST_DAY).await? {
            total.add(&row.totals);
        }
        // As `GET /v1/savings`'s total: with the enqueue calls' overhead.
        for m in self
            .enqueue_overhead_by_day(tenant, FIRST_DAY, LAST_DAY)
            .await?
            .values()
        {
            total.aws_overhead += *m;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(raw: &str) -> Query {
        Query::parse(raw, &["from"]).unwrap()
    }

    #[test]
    fn days_must_be_real_calendar_days() {
        assert_eq!(
            day(&q("from=2026-11-25"), "from").unwrap().as_deref(),
            Some("2026-11-25")
        );
        assert_eq!(
            day(&q("from=2024-02-29"), "from").unwrap().as_deref(),
            Some("2024-02-29")
        );
        assert_eq!(day(&q(""), "from").unwrap(), None);
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-11-31",
            "26-11-25",
            "2026-1-25",
            "2026/11/25",
            "today",
            "+026-11-25",
        ] {
            let e = day(&q(&format!("from={bad}")), "from").unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
            assert_eq!(e.field(), Some("from"));
        }
    }
}
