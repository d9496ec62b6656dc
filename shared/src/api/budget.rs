//! Spend budgets at the API ([`crate::spend`]): an enqueue that would take
//! the tenant past a daily or monthly limit is refused with 429
//! `budget_exceeded` before anything is written; one that takes it past
//! 80% of a limit fires a warning (a log line and the `BudgetWarnings`
//! metric); `GET /v1/stats` shows where the tenant stands.

use serde_json::{json, Value};

use super::error::{ApiError, BudgetRefusal};
use super::parse::ParsedLine;
use super::Api;
use crate::ids::TenantId;
use crate::job::ProviderKind;
use crate::money::Money;
use crate::spend::{self, Period, Standing};
use crate::store::StatusCounts;

impl Api {
    /// A valid line's estimated batch cost in nanodollars. A model with no
    /// price has none: refused (400 `unpriced_model`) when the tenant has a
    /// budget, which could not count it; else 0.
    pub(super) fn estimate(&self, tenant: &TenantId, kind: ProviderKind, line: &ParsedLine) -> Result<u64, ApiError> {
        let price = self.prices.lookup(kind, line.model.as_str());
        match spend::estimate(price, line.weight, line.max_output_tokens) {
            Some(n) => Ok(n),
            None if self.limits.budgets.for_tenant(tenant).any() => Err(ApiError::bad_request(
                Some("body.model"),
                "unpriced_model",
                format!(
                    "model {:?} has no price in the price table, so its cost cannot count against tenant {tenant}'s budget; \
                     add it to the price table (BATCHQ_PRICING_FILE) or use a priced model",
                    line.model.as_str()
                ),
            )),
            None => Ok(0),
        }
    }

    /// Where `tenant` stands against each period it has a limit for.
    pub(super) async fn standings(&self, tenant: &TenantId, counts: &StatusCounts) -> Result<Vec<Standing>, ApiError> {
        let limits = self.limits.budgets.for_tenant(tenant);
        if !limits.any() {
            return Ok(Vec::new());
        }
        let today = self.ports.clock.now().utc_date();
        let rows = self
            .ports
            .savings
            .savings(tenant, &Period::Monthly.first_day(&today), &today)
            .await?;
        let committed = spend::nanos(counts.committed_nanos.max(0));
        Ok(Period::ALL
            .iter()
            .filter_map(|&period| {
                let limit = limits.get(period)?;
                let first = period.first_day(&today);
                let spent = rows
                    .iter()
                    .filter(|r| r.day.as_str() >= first.as_str() && r.day.as_str() <= today.as_str())
                    .fold(Money::ZERO, |sum, r| sum + r.totals.batch_cost);
                Some(Standing {
                    period,
                    limit,
                    spent,
                    committed,
                })
            })
            .collect())
    }

    /// Refuses an enqueue adding `adding` that would pass a limit; answers
    /// the periods whose 80% warning it crosses (fired once it is written).
    pub(super) async fn check_budget(
        &self,
        tenant: &TenantId,
        counts: &StatusCounts,
        adding: Money,
    ) -> Result<Vec<Standing>, ApiError> {
        let standings = self.standings(tenant, counts).await?;
        if let Some(s) = standings.iter().find(|s| s.refuses(adding)) {
            return Err(ApiError::BudgetExceeded(Box::new(BudgetRefusal {
                tenant: tenant.clone(),
                standing: *s,
                adding,
            })));
        }
        Ok(standings.into_iter().filter(|s| s.crosses_warning(adding)).collect())
    }

    /// The warning for each period an enqueue took past 80% of its limit.
    pub(super) fn warn_budget(&self, tenant: &TenantId, crossed: &[Standing], adding: Money) {
        for s in crossed {
            let used = s.used() + adding;
            tracing::warn!(
                tenant = %tenant,
                period = s.period.as_str(),
                limit_usd = %s.limit.to_decimal_string(),
                spent_usd = %s.spent.to_decimal_string(),
                committed_usd = %(s.committed + adding).to_decimal_string(),
                used_fraction = used.picodollars() as f64 / s.limit.picodollars().max(1) as f64,
                "budget warning: the tenant's spend passed 80% of its budget"
            );
            self.metrics.record(crate::metrics::budget_warning(s.period.as_str()));
        }
    }

    /// `budget` of `GET /v1/stats`: each period, `null` when not limited.
    pub(super) async fn budget_view(&self, tenant: &TenantId, counts: &StatusCounts) -> Result<Value, ApiError> {
        let standings = self.standings(tenant, counts).await?;
        let view = |p: Period| match standings.iter().find(|s| s.period == p) {
            None => Value::Null,
            Some(s) => json!({
                "limit_usd": s.limit.to_decimal_string(),
                "spent_usd": s.spent.to_decimal_string(),
                "committed_usd": s.committed.to_decimal_string(),
                "used_fraction": finite(s.used_fraction()),
            }),
        };
        Ok(json!({"daily": view(Period::Daily), "monthly": view(Period::Monthly)}))
    }
}

/// JSON has no infinity: a zero limit with anything used reads as a large number.
fn finite(f: f64) -> f64 {
    if f.is_finite() {
        f
    } else {
        f64::MAX
    }
}
