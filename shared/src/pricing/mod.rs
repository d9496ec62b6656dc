//! Model prices and exact, integer cost arithmetic.
//!
//! A [`PriceBook`] maps `(provider, model)` to a [`ModelPrice`]: the real-time
//! and the Batch API price of input, cached input, cache-written input and
//! output tokens. Prices are held as whole picodollars per token (see
//! [`crate::money`]): a price quoted in USD per 1M tokens, times 10^6, is
//! exactly picodollars per token, so a cost is `tokens × price` in `i128` with
//! no rounding and no floating point anywhere.
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
//!     },
//!     "anthropic": {
//!       "source": "https://platform.claude.com/docs/en/about-claude/pricing",
//!       "as_of": "2026-11-30",
//!       "notes": ["free text, ignored"],
//!       "models": {
//!         "claude-haiku-4-5": {
//!           "realtime": { "input": "1", "cached_input": "0.10", "cache_write": "1.25", "output": "5" },
//!           "batch":    { "input": "0.50", "cached_input": "0.05", "cache_write": "0.625", "output": "2.50" }
//!         }
//!       }
//!     }
//!   }
//! }
//! ```
//!
//! - `source` (URL of the published prices) and `as_of` (`YYYY-MM-DD`) are
//!   required; they are the defaults for every provider. `unit`, when present,
//!   must read `USD per 1M tokens`; `notes` is free text. Any other top-level
//!   key is an error.
//! - `providers` keys are `openai`, `azure_openai` (alias `azure`),
//!   `anthropic`, `groq` or `together`. A provider's value takes one of two
//!   forms. Short: its models by exact model name (`openai` above); its
//!   prices were read where and when the file-level `source` and `as_of` say.
//!   Long, recognised by a `models` key: `models` holds the models by name,
//!   and optional `source`, `as_of` (same rules as the file-level fields,
//!   each replacing the default) and `notes` say where and when *this*
//!   provider's prices were read ([`PriceBook::source_for`],
//!   [`PriceBook::as_of_for`]); any other key is an error. Model names may
//!   contain `/` (`openai/gpt-oss-120b` on Groq). Duplicate keys anywhere are
//!   an error.
//! - Every model has both `realtime` and `batch`, written out explicitly (the
//!   batch price is never derived from the real-time one), and an optional
//!   `note`.
//! - A tier has `input` (required), `cached_input` (optional: cached tokens are
//!   then billed at `input`), `cache_write` (optional: input tokens written to
//!   the prompt cache, Anthropic's 5-minute write; without it they are billed
//!   at `input`) and `output` (optional: a model without an output price, such
//!   as an embedding model, can only price usages with no output tokens).
//!   `output` is either in both tiers or in neither.
//! - Prices are decimal **strings** in USD per 1M tokens (`"0.150"`, `"10"`,
//!   `"0"`): no JSON numbers, no sign, no exponent, at most 6 significant decimal
//!   places (anything finer is not a whole number of picodollars per token and
//!   is refused; trailing zeros beyond that are fine).
//! - Sanity checks refuse a `cached_input` above its tier's `input`, and a batch
//!   price above the real-time price of the same field (`cache_write`
//!   included; a cache write may cost more than `input`).
//! - An error names the field: `source`, `providers.anthropic.as_of`, or the
//!   provider, the model and the field's path in the entry
//!   (`batch.cache_write`).
//! - `"0"` is a known price (moderation is free); a model that is not listed is
//!   unknown and is never priced as zero.
//!
//! # Model names
//!
//! [`PriceBook::lookup`] looks in the provider's own table and tries, in
//! order: the exact name; for a dated snapshot the name without its date
//! suffix, `-YYYY-MM-DD` (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`) or
//! `-YYYYMMDD` (`claude-3-5-haiku-20241022` → `claude-3-5-haiku`); for a
//! fine-tuned model (`ft:gpt-4o-mini-2024-07-18:org:suffix:id`) the entry
//! `ft:<base>` and then `ft:<base without date>`. A fine-tuned model never falls
//! back to its base model's price (fine-tuned inference costs more). Exact
//! entries win over families, so a snapshot priced apart (`gpt-4o-2024-05-13`)
//! is listed by its full name, and aliases (`claude-3-5-haiku-latest`) are
//! listed as entries of their own. Nothing else is guessed: other suffixes
//! (`gpt-3.5-turbo-1106`), other case, another provider's entry, or an Azure
//! deployment name with no `azure_openai` entry give `None`.
//!
//! # Cost
//!
//! [`Usage`](crate::request::Usage) counts all input tokens in `input_tokens`,
//! cache reads (`cached_input_tokens`) and cache writes (`cache_write_tokens`)
//! included, and reasoning tokens as a subset of the output tokens, so
//!
//! ```text
//! cost = (input − cached − cache_write) × input_price + cached × cached_input_price
//!        + cache_write × cache_write_price + output × output_price
//! ```
//!
//! and reasoning tokens are not added again. A usage with more cached and
//! cache-written tokens than input tokens is not priced. Anthropic's 1-hour
//! cache write (2× input, against 1.25× for the 5-minute one) is not told
//! apart in `Usage`: it is priced as a 5-minute write.

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
