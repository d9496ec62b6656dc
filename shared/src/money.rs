//! Money in integers. One unit is a picodollar (1e-12 USD): a price quoted in
//! micro-dollars per million tokens is exactly picodollars per token, so
//! `tokens × price` needs no rounding anywhere.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(i128);

impl Money {
    pub const ZERO: Money = Money(0);
    pub const PICOS_PER_DOLLAR: i128 = 1_000_000_000_000;

    pub const fn from_picodollars(p: i128) -> Self {
        Self(p)
    }

    pub const fn picodollars(self) -> i128 {
        self.0
    }

    /// Exact decimal string in dollars with 12 fractional digits trimmed to at
    /// least two (`"0.0015"`, `"12.00"`, `"-0.000000000001"`).
    pub fn to_decimal_string(self) -> String {
        let neg = self.0 < 0;
        let abs = self.0.unsigned_abs();
        let whole = abs / Self::PICOS_PER_DOLLAR as u128;
        let frac = abs % Self::PICOS_PER_DOLLAR as u128;
        let mut frac_s = format!("{frac:012}");
        while frac_s.len() > 2 && frac_s.ends_with('0') {
            frac_s.pop();
        }
        format!("{}{whole}.{frac_s}", if neg { "-" } else { "" })
    }

    /// Parses the form [`Money::to_decimal_string`] writes (and plain integers).
    pub fn parse_decimal(s: &str) -> Option<Self> {
        let (neg, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        if whole.is_empty() || frac.len() > 12 || !whole.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let whole: i128 = whole.parse().ok()?;
        let frac: i128 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<12}").parse().ok()?
        };
        let v = whole.checked_mul(Self::PICOS_PER_DOLLAR)?.checked_add(frac)?;
        Some(Self(if neg { -v } else { v }))
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0 + rhs.0)
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        self.0 += rhs.0;
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0 - rhs.0)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}", self.to_decimal_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_are_exact() {
        assert_eq!(Money::from_picodollars(0).to_decimal_string(), "0.00");
        assert_eq!(Money::from_picodollars(1).to_decimal_string(), "0.000000000001");
        assert_eq!(Money::from_picodollars(1_500_000_000).to_decimal_string(), "0.0015");
        assert_eq!(
            Money::from_picodollars(12 * Money::PICOS_PER_DOLLAR).to_decimal_string(),
            "12.00"
        );
        assert_eq!(Money::from_picodollars(-1).to_decimal_string(), "-0.000000000001");
    }

    #[test]
    fn decimal_strings_parse_back() {
        for p in [0i128, 1, -1, 1_500_000_000, 123_456_789_012_345, -98_765_432_100_000] {
            let m = Money::from_picodollars(p);
            assert_eq!(Money::parse_decimal(&m.to_decimal_string()), Some(m));
        }
        assert_eq!(
            Money::parse_decimal("3"),
            Some(Money::from_picodollars(3 * Money::PICOS_PER_DOLLAR))
        );
        assert_eq!(Money::parse_decimal("1.0000000000001"), None);
        assert_eq!(Money::parse_decimal("1e3"), None);
    }
}
