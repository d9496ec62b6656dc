//! Spend budgets: per-tenant daily and monthly limits in US dollars
//! (`BATCHQ_TENANT_DAILY_BUDGET_USD`, `BATCHQ_TENANT_MONTHLY_BUDGET_USD`).
//!
//! What counts against a limit is the money spent (the batch cost of the
//! tenant's results counted in that UTC day or month, from the savings
//! totals) plus what is committed: the estimated batch cost of the tenant's
//! queued and in-flight requests. Each request's estimate is fixed at
//! enqueue ([`estimate`]) and stored on its row; the tenant's committed sum
//! is a counter ([`crate::counters::Counter::Committed`]) moved in the same
//! atomic write as the row that enters or leaves the unfinished statuses.
//!
//! The estimate: the request's estimated input tokens
//! ([`crate::tokens`]) at the model's batch input price, plus its output
//! limit (`max_completion_tokens`, `max_tokens` or `max_output_tokens` in
//! the body, else [`DEFAULT_OUTPUT_TOKENS`]) at the batch output price,
//! rounded up to a whole nanodollar. A model with no known price cannot be
//! estimated: a tenant with a budget is refused such a request (it is never
//! counted as free); a tenant without one may send it (its estimate is 0).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::ids::TenantId;
use crate::money::Money;
use crate::pricing::ModelPrice;
use crate::tokens::Weight;

/// Output tokens assumed for a request whose body sets no output limit.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 1024;
/// Share of a limit whose crossing fires the budget warning.
pub const WARN_FRACTION: f64 = 0.8;
/// Picodollars in one nanodollar (the committed counter's unit).
const PICOS_PER_NANO: i128 = 1000;

/// A budget period (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    Daily,
    Monthly,
}

impl Period {
    pub const ALL: [Period; 2] = [Period::Daily, Period::Monthly];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Monthly => "monthly",
        }
    }

    /// The first day (`YYYY-MM-DD`) of the period holding `today`.
    pub fn first_day(self, today: &str) -> String {
        match self {
            Self::Daily => today.to_owned(),
            Self::Monthly => format!("{}-01", &today[..7.min(today.len())]),
        }
    }
}

/// One tenant's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub daily: Option<Money>,
    pub monthly: Option<Money>,
}

impl Limits {
    pub fn get(&self, p: Period) -> Option<Money> {
        match p {
            Period::Daily => self.daily,
            Period::Monthly => self.monthly,
        }
    }

    pub fn any(&self) -> bool {
        self.daily.is_some() || self.monthly.is_some()
    }
}

/// One period's limit as configured: for every tenant, or per tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeriodSetting {
    /// The limit of tenants not listed (`*`, or a bare amount).
    pub default: Option<Money>,
    pub tenants: BTreeMap<TenantId, Money>,
}

impl PeriodSetting {
    /// Reads `10.00` (every tenant) or `acme=10.00,team-b=2.5,*=1` (per
    /// tenant; `*` every other tenant). Amounts are non-negative decimal
    /// dollars.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let mut out = Self::default();
        if raw.is_empty() {
            return Ok(out);
        }
        let amount = |s: &str| -> Result<Money, String> {
            match Money::parse_decimal(s.trim()) {
                Some(m) if m >= Money::ZERO => Ok(m),
                _ => Err(format!("{:?} is not an amount in dollars such as 10.00", s.trim())),
            }
        };
        if !raw.contains('=') {
            out.default = Some(amount(raw)?);
            return Ok(out);
        }
        for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (tenant, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not tenant=amount"))?;
            let value = amount(value)?;
            match tenant.trim() {
                "*" => out.default = Some(value),
                t => {
                    let t = TenantId::parse(t).map_err(|e| format!("{t:?}: {}", e.message))?;
                    if out.tenants.insert(t.clone(), value).is_some() {
                        return Err(format!("tenant {t} is listed twice"));
                    }
                }
            }
        }
        Ok(out)
    }

    pub fn for_tenant(&self, t: &TenantId) -> Option<Money> {
        self.tenants.get(t).copied().or(self.default)
    }
}

/// The configured budgets of every tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Budgets {
    pub daily: PeriodSetting,
    pub monthly: PeriodSetting,
}

impl Budgets {
    pub fn for_tenant(&self, t: &TenantId) -> Limits {
        Limits {
            daily: self.daily.for_tenant(t),
            monthly: self.monthly.for_tenant(t),
        }
    }
}

/// The output limit a request body sets, if any.
pub fn max_output_tokens(body: &Value) -> Option<u64> {
    ["max_completion_tokens", "max_tokens", "max_output_tokens"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_u64))
}

/// A request's estimated batch cost in nanodollars (rounded up); `None`
/// when the model has no price.
pub fn estimate(price: Option<&ModelPrice>, weight: Weight, max_output: Option<u64>) -> Option<u64> {
    let p = price?.batch;
    let input = i128::from(weight.tokens).checked_mul(p.input.picodollars())?;
    let output = match p.output {
        Some(o) => i128::from(max_output.unwrap_or(DEFAULT_OUTPUT_TOKENS)).checked_mul(o.picodollars())?,
        None => 0,
    };
    let picos = input.checked_add(output)?.max(0);
    u64::try_from((picos + PICOS_PER_NANO - 1) / PICOS_PER_NANO).ok()
}

/// Nanodollars as money.
pub fn nanos(n: i64) -> Money {
    Money::from_picodollars(i128::from(n) * PICOS_PER_NANO)
}

/// Where a tenant stands against one period's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub period: Period,
    pub limit: Money,
    pub spent: Money,
    pub committed: Money,
}

impl Standing {
    pub fn used(&self) -> Money {
        self.spent + self.committed
    }

    /// `(spent + committed) / limit` (a zero limit used at all is 1 or more).
    pub fn used_fraction(&self) -> f64 {
        fraction(self.used(), self.limit)
    }

    /// Whether adding `more` passes the limit.
    pub fn refuses(&self, more: Money) -> bool {
        self.used() + more > self.limit
    }

    /// Whether adding `more` takes the use from below the warning share of
    /// the limit to at or above it (one warning per crossing).
    pub fn crosses_warning(&self, more: Money) -> bool {
        more > Money::ZERO
            && fraction(self.used(), self.limit) < WARN_FRACTION
            && fraction(self.used() + more, self.limit) >= WARN_FRACTION
    }
}

fn fraction(used: Money, limit: Money) -> f64 {
    if limit <= Money::ZERO {
        return if used > Money::ZERO { f64::INFINITY } else { 0.0 };
    }
    used.picodollars() as f64 / limit.picodollars() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::TokenPrices;

    fn money(s: &str) -> Money {
        Money::parse_decimal(s).unwrap()
    }

    #[test]
    fn a_setting_is_one_amount_for_everyone_or_per_tenant_with_a_default() {
        let acme = TenantId::parse("acme").unwrap();
        let other = TenantId::parse("other").unwrap();
        let all = PeriodSetting::parse("10.00").unwrap();
        assert_eq!(all.for_tenant(&acme), Some(money("10")));
        let per = PeriodSetting::parse("acme=2.5, *=1").unwrap();
        assert_eq!(per.for_tenant(&acme), Some(money("2.5")));
        assert_eq!(per.for_tenant(&other), Some(money("1")));
        let only = PeriodSetting::parse("acme=2.5").unwrap();
        assert_eq!(only.for_tenant(&other), None);
        assert_eq!(PeriodSetting::parse("").unwrap(), PeriodSetting::default());
        for bad in ["ten", "acme=", "acme=-1", "acme=1,acme=2", "a b=1", "acme"] {
            assert!(PeriodSetting::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_estimate_prices_input_tokens_and_the_output_limit_at_batch_prices() {
        let per_token = |micro_per_million: i128| Money::from_picodollars(micro_per_million);
        let tier = |input, output| TokenPrices {
            input: per_token(input),
            cached_input: None,
            output,
            cache_write: None,
        };
        let price = ModelPrice {
            model: "m".into(),
            realtime: tier(150_000, Some(per_token(600_000))),
            batch: tier(75_000, Some(per_token(300_000))),
            note: None,
        };
        let w = Weight {
            tokens: 1000,
            inputs: 1,
        };
        // 1000 × 75,000 + 100 × 300,000 picodollars = 105,000,000 = 105,000 nanodollars.
        assert_eq!(estimate(Some(&price), w, Some(100)), Some(105_000));
        assert_eq!(
            estimate(Some(&price), w, None),
            Some((75_000_000 + 1024 * 300_000) / 1000)
        );
        assert_eq!(estimate(None, w, Some(100)), None, "an unpriced model has no estimate");
    }

    #[test]
    fn the_warning_fires_when_the_use_crosses_eighty_percent_and_not_after() {
        let s = |spent: &str| Standing {
            period: Period::Daily,
            limit: money("10"),
            spent: money(spent),
            committed: Money::ZERO,
        };
        assert!(s("7.9").crosses_warning(money("0.1")));
        assert!(!s("7.0").crosses_warning(money("0.5")));
        assert!(
            !s("8.0").crosses_warning(money("0.5")),
            "already past: no second warning"
        );
        assert!(!s("9.9").refuses(money("0.1")), "up to the limit passes");
        assert!(s("9.9").refuses(money("0.11")));
    }

    #[test]
    fn a_month_starts_on_its_first_day() {
        assert_eq!(Period::Monthly.first_day("2026-12-09"), "2026-12-01");
        assert_eq!(Period::Daily.first_day("2026-12-09"), "2026-12-09");
    }
}
