//! Model prices and exact, integer cost arithmetic.
//!
//! A [`PriceBook`] maps `(provider, model)` to a [`ModelPrice`]: the real-time
//! and the Batch API price of input, cached input and output tokens. Prices are
//! held as whole picodollars per token (see [`crate::money`]): a price quoted in
//! USD per 1M tokens, times 10^6, is exactly picodollars per token, so a cost is
//! `tokens × price` in `i128` with no rounding and no floating point anywhere.
//!
//! # The price file (`shared/data/prices.json`)
//!
//! The bundled table ([`PriceBook::bundled`]) is compiled in from
//! `shared/data/prices.json`. It is meant to be edited by hand:
//!
//! ```json
//! {
//!   "source": "https://platform.openai.com/docs/pricing",
//!   "as_of": "2025-11-13",
//!   "unit": "USD per 1M tokens",
//!   "notes": ["free text, ignored"],
//!   "providers": {
//!     "openai": {
//!       "gpt-4o-mini": {
//!         "realtime": { "input": "0.15", "cached_input": "0.075", "output": "0.60" },
//!         "batch":    { "input": "0.075", "output": "0.30" }
//!       },
//!       "gpt-4o-2024-05-13": { "note": "free text", "realtime": { ... }, "batch": { ... } },
//!       "ft:gpt-4o-mini-2024-07-18": { "realtime": { ... }, "batch": { ... } }
//!     }
//!   }
//! }
//! ```
//!
//! - `source` (URL of the published prices) and `as_of` (`YYYY-MM-DD`) are
//!   required; `unit`, when present, must read `USD per 1M tokens`; `notes` is
//!   free text. Any other top-level key is an error.
//! - `providers` keys are `openai` or `azure_openai` (alias `azure`). Each holds
//!   models by exact model name. Duplicate keys anywhere are an error.
//! - Every model has both `realtime` and `batch`, written out explicitly (the
//!   batch price is never derived from the real-time one), and an optional
//!   `note`.
//! - A tier has `input` (required), `cached_input` (optional: cached tokens are
//!   then billed at `input`) and `output` (optional: a model without an output
//!   price, such as an embedding model, can only price usages with no output
//!   tokens). `output` is either in both tiers or in neither.
//! - Prices are decimal **strings** in USD per 1M tokens (`"0.150"`, `"10"`,
//!   `"0"`): no JSON numbers, no sign, no exponent, at most 6 significant decimal
//!   places (anything finer is not a whole number of picodollars per token and
//!   is refused; trailing zeros beyond that are fine).
//! - Sanity checks refuse a `cached_input` above its tier's `input`, and a batch
//!   price above the real-time price of the same field.
//! - `"0"` is a known price (moderation is free); a model that is not listed is
//!   unknown and is never priced as zero.
//!
//! # Model names
//!
//! [`PriceBook::lookup`] tries, in order: the exact name; for a dated snapshot
//! (`gpt-4o-mini-2024-07-18`) the name without its `-YYYY-MM-DD` suffix; for a
//! fine-tuned model (`ft:gpt-4o-mini-2024-07-18:org:suffix:id`) the entry
//! `ft:<base>` and then `ft:<base without date>`. A fine-tuned model never falls
//! back to its base model's price (fine-tuned inference costs more). Exact
//! entries win over families, so a snapshot priced apart (`gpt-4o-2024-05-13`)
//! is listed by its full name. Nothing else is guessed: other suffixes
//! (`gpt-3.5-turbo-1106`), other case, or an Azure deployment name with no
//! `azure_openai` entry give `None`.
//!
//! # Cost
//!
//! OpenAI reports cached tokens as a subset of the input (prompt) tokens and
//! reasoning tokens as a subset of the output (completion) tokens, so
//!
//! ```text
//! cost = (input − cached) × input_price + cached × cached_input_price + output × output_price
//! ```
//!
//! and reasoning tokens are not added again.

mod book;
mod cost;
mod error;
mod file;
mod names;

pub use book::{PriceBook, Provenance};
pub use cost::{Cost, ModelPrice, TokenPrices};
pub use error::{FieldError, PriceError, PricingError};

#[cfg(test)]
mod tests;
