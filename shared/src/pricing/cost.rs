//! Cost arithmetic: a usage times per-token prices, exact, in picodollars.

use crate::money::Money;
use crate::request::Usage;

/// What one request cost at batch prices and what it would have cost in real time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    pub batch: Money,
    pub realtime: Money,
}

impl Cost {
    /// Real-time cost minus batch cost. Can be negative: for some models the
    /// Batch API gives no cached-input discount, so a mostly cached prompt can
    /// cost more in a batch than in real time.
    pub fn saved(&self) -> Money {
        self.realtime - self.batch
    }
}

/// The prices of one tier (real time or batch), in picodollars per token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenPrices {
    /// Price of one uncached input token.
    pub input: Money,
    /// Price of one cached input token; `None` bills cached tokens at `input`.
    pub cached_input: Option<Money>,
    /// Price of one output token (reasoning tokens included); `None` when the
    /// model has no output price, such as an embedding model.
    pub output: Option<Money>,
    /// Price of one input token written to the prompt cache (Anthropic's
    /// 5-minute write); `None` bills cache writes at `input`.
    pub cache_write: Option<Money>,
}

impl TokenPrices {
    /// The price a cached input token is billed at.
    pub fn cached_input_or_input(&self) -> Money {
        self.cached_input.unwrap_or(self.input)
    }

    /// The price a cache-written input token is billed at.
    pub fn cache_write_or_input(&self) -> Money {
        self.cache_write.unwrap_or(self.input)
    }

    /// Exact cost of `usage` at these prices:
    ///
    /// ```text
    /// (input − cached − cache_write) × input + cached × cached_input
    ///   + cache_write × cache_write_price + output × output
    /// ```
    ///
    /// `None` when the usage cannot be priced: more cached and cache-written
    /// than input tokens, output tokens on a model with no output price, or
    /// an overflow.
    pub fn cost(&self, usage: &Usage) -> Option<Money> {
        let uncached = usage
            .input_tokens
            .checked_sub(usage.cached_input_tokens)?
            .checked_sub(usage.cache_write_tokens)?;
        let output_price = match self.output {
            Some(p) => p.picodollars(),
            None if usage.output_tokens == 0 => 0,
            None => return None,
        };
        let term = |tokens: u64, price: Money| i128::from(tokens).checked_mul(price.picodollars());
        let total = term(uncached, self.input)?
            .checked_add(term(usage.cached_input_tokens, self.cached_input_or_input())?)?
            .checked_add(term(usage.cache_write_tokens, self.cache_write_or_input())?)?
            .checked_add(i128::from(usage.output_tokens).checked_mul(output_price)?)?;
        Some(Money::from_picodollars(total))
    }
}

/// The price of one model: per token, in real time and through the Batch API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelPrice {
    /// The table entry this price is listed under (`gpt-4o-mini` when looking
    /// up `gpt-4o-mini-2024-07-18`).
    pub model: String,
    pub realtime: TokenPrices,
    pub batch: TokenPrices,
    /// Free-text note from the price file.
    pub note: Option<String>,
}

impl ModelPrice {
    /// Both costs of `usage`; `None` when it cannot be priced (see [`TokenPrices::cost`]).
    pub fn cost(&self, usage: &Usage) -> Option<Cost> {
        Some(Cost {
            batch: self.batch.cost(usage)?,
            realtime: self.realtime.cost(usage)?,
        })
    }
}
