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

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use thiserror::Error;

use crate::job::ProviderKind;
use crate::money::Money;
use crate::request::{Endpoint, Usage};

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
}

impl TokenPrices {
    /// The price a cached input token is billed at.
    pub fn cached_input_or_input(&self) -> Money {
        self.cached_input.unwrap_or(self.input)
    }

    /// Exact cost of `usage` at these prices. `None` when the usage cannot be
    /// priced: more cached than input tokens, output tokens on a model with no
    /// output price, or an overflow.
    pub fn cost(&self, usage: &Usage) -> Option<Money> {
        let uncached = usage.input_tokens.checked_sub(usage.cached_input_tokens)?;
        let output_price = match self.output {
            Some(p) => p.picodollars(),
            None if usage.output_tokens == 0 => 0,
            None => return None,
        };
        let total = i128::from(uncached)
            .checked_mul(self.input.picodollars())?
            .checked_add(
                i128::from(usage.cached_input_tokens).checked_mul(self.cached_input_or_input().picodollars())?,
            )?
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

/// A price file that cannot be used. Always says which field (and which
/// model) is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PricingError {
    /// Not JSON, or a duplicate key (the message has line and column).
    #[error("price file cannot be read: {0}")]
    Json(String),
    /// A top-level field or a provider key is wrong.
    #[error("price file: {field}: {problem}")]
    File { field: String, problem: String },
    /// A model entry is wrong; `field` is its path inside the entry (`batch.input`).
    #[error("price file: {provider} model {model:?}: {field}: {problem}")]
    Model {
        provider: String,
        model: String,
        field: String,
        problem: String,
    },
}

/// The price table: real-time and batch prices per provider and model.
#[derive(Clone, Debug)]
pub struct PriceBook {
    source: String,
    as_of: String,
    openai: HashMap<String, ModelPrice>,
    azure_openai: HashMap<String, ModelPrice>,
}

const BUNDLED_JSON: &str = include_str!("../data/prices.json");

impl PriceBook {
    /// The table shipped in the repo (`shared/data/prices.json`, via
    /// `include_str!`). Panics only if the shipped file is broken (a unit test
    /// guards it). Parses on every call: build it once and keep it.
    pub fn bundled() -> PriceBook {
        match Self::from_json(BUNDLED_JSON) {
            Ok(book) => book,
            Err(e) => panic!("shared/data/prices.json is broken: {e}"),
        }
    }

    /// Parses a price file (format in the module documentation).
    pub fn from_json(text: &str) -> Result<PriceBook, PricingError> {
        let root: Node = serde_json::from_str(text).map_err(|e| PricingError::Json(e.to_string()))?;
        let Node::Map(top) = root else {
            return Err(file_err("(root)", format!("must be an object, got {}", root.kind())));
        };
        let mut source = None;
        let mut as_of = None;
        let mut providers = None;
        for (key, value) in top {
            match key.as_str() {
                "source" => source = Some(non_empty_str(&key, value)?),
                "as_of" => {
                    let s = non_empty_str(&key, value)?;
                    if !is_iso_date(&s) {
                        return Err(file_err("as_of", format!("must be a date YYYY-MM-DD, got {s:?}")));
                    }
                    as_of = Some(s);
                }
                "unit" => {
                    let s = non_empty_str(&key, value)?;
                    if s != "USD per 1M tokens" {
                        return Err(file_err("unit", format!("must be \"USD per 1M tokens\", got {s:?}")));
                    }
                }
                "notes" => {}
                "providers" => providers = Some(value),
                _ => {
                    return Err(file_err(
                        &key,
                        "unknown field; expected source, as_of, unit, notes or providers",
                    ))
                }
            }
        }
        let source = source.ok_or_else(|| file_err("source", "missing (the URL the prices were taken from)"))?;
        let as_of = as_of.ok_or_else(|| file_err("as_of", "missing (the date the prices were read, YYYY-MM-DD)"))?;
        let providers = providers.ok_or_else(|| file_err("providers", "missing"))?;
        let Node::Map(providers) = providers else {
            return Err(file_err(
                "providers",
                format!("must be an object, got {}", providers.kind()),
            ));
        };

        let mut book = PriceBook {
            source,
            as_of,
            openai: HashMap::new(),
            azure_openai: HashMap::new(),
        };
        let mut seen = HashSet::new();
        for (name, models) in providers {
            let field = format!("providers.{name}");
            let kind = ProviderKind::parse(&name)
                .ok_or_else(|| file_err(&field, "unknown provider; expected \"openai\" or \"azure_openai\""))?;
            if !seen.insert(kind) {
                return Err(file_err(&field, "the same provider is listed twice"));
            }
            let Node::Map(models) = models else {
                return Err(file_err(
                    &field,
                    format!("must be an object of models, got {}", models.kind()),
                ));
            };
            let table = match kind {
                ProviderKind::OpenAi => &mut book.openai,
                ProviderKind::AzureOpenAi => &mut book.azure_openai,
            };
            for (model, entry) in models {
                let price = parse_model(kind, &model, entry)?;
                table.insert(model, price);
            }
        }
        Ok(book)
    }

    /// Where the prices were taken from (a URL).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The date the prices were read (`YYYY-MM-DD`).
    pub fn as_of(&self) -> &str {
        &self.as_of
    }

    /// Every entry listed for `provider`, in no particular order.
    pub fn models(&self, provider: ProviderKind) -> impl Iterator<Item = &ModelPrice> {
        self.table(provider).values()
    }

    /// Price of a model, resolving dated snapshots (`gpt-4o-mini-2024-07-18` →
    /// `gpt-4o-mini`) and fine-tuned names (`ft:gpt-4o-mini-2024-07-18:org::id`
    /// → the `ft:gpt-4o-mini-2024-07-18` entry if listed, else `None`). Exact
    /// names win over families. Never guesses: unknown → `None`.
    pub fn lookup(&self, provider: ProviderKind, model: &str) -> Option<&ModelPrice> {
        let table = self.table(provider);
        if let Some(price) = table.get(model) {
            return Some(price);
        }
        if let Some(rest) = model.strip_prefix("ft:") {
            let base = rest.split(':').next().unwrap_or_default();
            if base.is_empty() {
                return None;
            }
            if let Some(price) = table.get(&format!("ft:{base}")) {
                return Some(price);
            }
            return table.get(&format!("ft:{}", strip_snapshot_date(base)?));
        }
        table.get(strip_snapshot_date(model)?)
    }

    /// What `usage` cost on `model` at batch prices and would have cost in real
    /// time. `None` when the model is unknown (the caller reports it as
    /// "unpriced", never as zero) or the usage cannot be priced (see
    /// [`TokenPrices::cost`]).
    pub fn cost(&self, provider: ProviderKind, model: &str, usage: &Usage) -> Option<Cost> {
        self.lookup(provider, model)?.cost(usage)
    }

    fn table(&self, provider: ProviderKind) -> &HashMap<String, ModelPrice> {
        match provider {
            ProviderKind::OpenAi => &self.openai,
            ProviderKind::AzureOpenAi => &self.azure_openai,
        }
    }
}

/// Token usage from a provider response body (the `body` of a batch output
/// line), per endpoint:
/// - chat completions and completions: `usage.prompt_tokens`,
///   `usage.completion_tokens`, `usage.prompt_tokens_details.cached_tokens`,
///   `usage.completion_tokens_details.reasoning_tokens`;
/// - responses: `usage.input_tokens`, `usage.output_tokens`,
///   `usage.input_tokens_details.cached_tokens`,
///   `usage.output_tokens_details.reasoning_tokens`;
/// - embeddings (and moderations, should they ever report usage):
///   `usage.prompt_tokens`.
///
/// `None` when there is no `usage` object (an error body, a moderation) or its
/// input or output count is missing or not a non-negative integer: an unknown
/// usage is reported as such rather than undercounted. Missing, null or odd
/// detail fields (cached, reasoning) count as 0.
pub fn usage_from_body(endpoint: Endpoint, body: &Value) -> Option<Usage> {
    let usage = body.get("usage").filter(|u| u.is_object())?;
    let count = |key: &str| usage.get(key).and_then(Value::as_u64);
    let detail = |object: &str, key: &str| {
        usage
            .get(object)
            .and_then(|d| d.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    match endpoint {
        Endpoint::ChatCompletions | Endpoint::Completions => Some(Usage {
            input_tokens: count("prompt_tokens")?,
            cached_input_tokens: detail("prompt_tokens_details", "cached_tokens"),
            output_tokens: count("completion_tokens")?,
            reasoning_tokens: detail("completion_tokens_details", "reasoning_tokens"),
        }),
        Endpoint::Responses => Some(Usage {
            input_tokens: count("input_tokens")?,
            cached_input_tokens: detail("input_tokens_details", "cached_tokens"),
            output_tokens: count("output_tokens")?,
            reasoning_tokens: detail("output_tokens_details", "reasoning_tokens"),
        }),
        Endpoint::Embeddings | Endpoint::Moderations => Some(Usage {
            input_tokens: count("prompt_tokens")?,
            ..Usage::default()
        }),
    }
}

// ---------------------------------------------------------------------------
// Parsing helpers.

fn file_err(field: &str, problem: impl Into<String>) -> PricingError {
    PricingError::File {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

fn non_empty_str(field: &str, node: Node) -> Result<String, PricingError> {
    match node {
        Node::Str(s) if !s.trim().is_empty() => Ok(s),
        Node::Str(_) => Err(file_err(field, "must not be empty")),
        other => Err(file_err(field, format!("must be a string, got {}", other.kind()))),
    }
}

fn parse_model(provider: ProviderKind, model: &str, entry: Node) -> Result<ModelPrice, PricingError> {
    let err = |field: &str, problem: String| PricingError::Model {
        provider: provider.as_str().to_owned(),
        model: model.to_owned(),
        field: field.to_owned(),
        problem,
    };
    if model.is_empty() || model.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err("(name)", "a model name must be non-empty, without spaces".into()));
    }
    if model == "ft:" || model.strip_prefix("ft:").is_some_and(|base| base.contains(':')) {
        return Err(err(
            "(name)",
            "a fine-tuned entry is named \"ft:<base model>\", without the org and id parts".into(),
        ));
    }
    let Node::Map(fields) = entry else {
        return Err(err("(entry)", format!("must be an object, got {}", entry.kind())));
    };
    let (mut realtime, mut batch, mut note) = (None, None, None);
    for (key, value) in fields {
        match key.as_str() {
            "realtime" => realtime = Some(parse_tier(&key, value).map_err(|(f, p)| err(&f, p))?),
            "batch" => batch = Some(parse_tier(&key, value).map_err(|(f, p)| err(&f, p))?),
            "note" => match value {
                Node::Str(s) => note = Some(s),
                other => return Err(err("note", format!("must be a string, got {}", other.kind()))),
            },
            _ => return Err(err(&key, "unknown field; expected realtime, batch or note".into())),
        }
    }
    let realtime = realtime.ok_or_else(|| err("realtime", "missing (the real-time price)".into()))?;
    let batch = batch.ok_or_else(|| {
        err(
            "batch",
            "missing (write the Batch API price out; it is never derived)".into(),
        )
    })?;

    if realtime.output.is_some() != batch.output.is_some() {
        return Err(err(
            "output",
            "must be priced in both realtime and batch, or in neither".into(),
        ));
    }
    let pairs = [
        ("input", Some(realtime.input), Some(batch.input)),
        ("cached_input", realtime.cached_input, batch.cached_input),
        ("output", realtime.output, batch.output),
    ];
    for (field, rt, b) in pairs {
        if let (Some(rt), Some(b)) = (rt, b) {
            if b > rt {
                return Err(err(
                    &format!("batch.{field}"),
                    format!(
                        "{} is above the real-time {field} {} (columns swapped?)",
                        per_million(b),
                        per_million(rt)
                    ),
                ));
            }
        }
    }
    Ok(ModelPrice {
        model: model.to_owned(),
        realtime,
        batch,
        note,
    })
}

/// Parses one tier; an error is `(field path, problem)`.
fn parse_tier(tier: &str, node: Node) -> Result<TokenPrices, (String, String)> {
    let Node::Map(fields) = node else {
        return Err((tier.to_owned(), format!("must be an object, got {}", node.kind())));
    };
    let (mut input, mut cached_input, mut output) = (None, None, None);
    for (key, value) in fields {
        let path = format!("{tier}.{key}");
        let slot = match key.as_str() {
            "input" => &mut input,
            "cached_input" => &mut cached_input,
            "output" => &mut output,
            _ => return Err((path, "unknown field; expected input, cached_input or output".into())),
        };
        let text = match value {
            Node::Str(s) => s,
            other => {
                return Err((
                    path,
                    format!(
                        "must be a decimal string in USD per 1M tokens such as \"0.150\", got {}",
                        other.kind()
                    ),
                ))
            }
        };
        *slot = Some(parse_price(&text).map_err(|problem| (path, problem))?);
    }
    let input = input.ok_or_else(|| (format!("{tier}.input"), "missing".to_owned()))?;
    if let Some(cached) = cached_input {
        if cached > input {
            return Err((
                format!("{tier}.cached_input"),
                format!(
                    "{} is above the input price {}",
                    per_million(cached),
                    per_million(input)
                ),
            ));
        }
    }
    Ok(TokenPrices {
        input,
        cached_input,
        output,
    })
}

/// Decimal places of a USD-per-1M-tokens price that are whole picodollars per token.
const PRICE_DECIMALS: usize = 6;

/// `"0.150"` (USD per 1M tokens) → 150_000 picodollars per token, exactly.
fn parse_price(text: &str) -> Result<Money, String> {
    let bad = || format!("{text:?} is not a price; write a plain decimal such as \"0.150\" (USD per 1M tokens)");
    if text.starts_with('-') {
        return Err(format!("{text:?} is negative"));
    }
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_only(whole) || !digits_only(frac) || (text.contains('.') && frac.is_empty()) {
        return Err(bad());
    }
    let (kept, extra) = frac.split_at(frac.len().min(PRICE_DECIMALS));
    if extra.bytes().any(|b| b != b'0') {
        return Err(format!(
            "{text:?} has {} decimal places; at most {PRICE_DECIMALS} are exact \
             (USD per 1M tokens is stored as whole picodollars per token)",
            frac.trim_end_matches('0').len()
        ));
    }
    let too_large = || format!("{text:?} is too large");
    let whole: i128 = whole.parse().map_err(|_| too_large())?;
    let kept: i128 = if kept.is_empty() {
        0
    } else {
        format!("{kept:0<PRICE_DECIMALS$}").parse().map_err(|_| bad())?
    };
    let picos = whole
        .checked_mul(10i128.pow(PRICE_DECIMALS as u32))
        .and_then(|w| w.checked_add(kept))
        .ok_or_else(too_large)?;
    Ok(Money::from_picodollars(picos))
}

/// A per-token price written back as USD per 1M tokens, for messages.
fn per_million(price: Money) -> String {
    // picodollars per token × 10^6 tokens = picodollars per 1M tokens.
    format!(
        "${}",
        Money::from_picodollars(price.picodollars() * 1_000_000).to_decimal_string()
    )
}

/// `name` without a trailing `-YYYY-MM-DD`, if it has one.
fn strip_snapshot_date(name: &str) -> Option<&str> {
    let split = name.len().checked_sub(11)?;
    let (family, suffix) = (name.get(..split)?, name.get(split..)?);
    let date = suffix.strip_prefix('-')?;
    (!family.is_empty() && is_iso_date(date)).then_some(family)
}

/// `YYYY-MM-DD` with a month 01–12 and a day 01–31.
fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) || !digits(5..7) || !digits(8..10) {
        return false;
    }
    let month = (b[5] - b'0') * 10 + (b[6] - b'0');
    let day = (b[8] - b'0') * 10 + (b[9] - b'0');
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

/// A JSON value that keeps object keys in order and refuses duplicate keys
/// (`serde_json::Value` silently keeps the last one, which would hide a
/// model listed twice with different prices).
enum Node {
    Str(String),
    Map(Vec<(String, Node)>),
    Other(&'static str),
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Str(_) => "a string",
            Node::Map(_) => "an object",
            Node::Other(kind) => kind,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Other("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Other("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Other("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Other("a number"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Other("null"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Node::Other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !keys.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OPENAI: ProviderKind = ProviderKind::OpenAi;

    fn usage(input: u64, cached: u64, output: u64, reasoning: u64) -> Usage {
        Usage {
            input_tokens: input,
            cached_input_tokens: cached,
            output_tokens: output,
            reasoning_tokens: reasoning,
        }
    }

    fn pico(p: i128) -> Money {
        Money::from_picodollars(p)
    }

    fn cost_of(model: &str, u: Usage) -> Cost {
        PriceBook::bundled()
            .cost(OPENAI, model, &u)
            .unwrap_or_else(|| panic!("{model} should be priced"))
    }

    // ---- costs against hand-computed figures --------------------------------
    // Prices in USD per 1M tokens × 10^6 = picodollars per token.

    #[test]
    fn gpt_4o_mini_plain() {
        // realtime: in $0.15 → 150_000, out $0.60 → 600_000
        // batch:    in $0.075 → 75_000, out $0.30 → 300_000
        let c = cost_of("gpt-4o-mini", usage(1_000, 0, 500, 0));
        // 1000×150_000 + 500×600_000 = 150_000_000 + 300_000_000 = 450_000_000 = $0.00045
        assert_eq!(c.realtime, pico(450_000_000));
        // 1000×75_000 + 500×300_000 = 75_000_000 + 150_000_000 = 225_000_000 = $0.000225
        assert_eq!(c.batch, pico(225_000_000));
        assert_eq!(c.saved(), pico(225_000_000));
        assert_eq!(c.realtime.to_decimal_string(), "0.00045");
        assert_eq!(c.batch.to_decimal_string(), "0.000225");
    }

    #[test]
    fn gpt_4o_with_cached_input() {
        // realtime: in $2.50 → 2_500_000, cached $1.25 → 1_250_000, out $10 → 10_000_000
        // batch:    in $1.25 → 1_250_000, cached "-" → billed at input, out $5 → 5_000_000
        let c = cost_of("gpt-4o", usage(2_048, 1_024, 300, 0));
        // (2048−1024)×2_500_000 + 1024×1_250_000 + 300×10_000_000
        //   = 2_560_000_000 + 1_280_000_000 + 3_000_000_000 = 6_840_000_000 = $0.00684
        assert_eq!(c.realtime, pico(6_840_000_000));
        // 1024×1_250_000 + 1024×1_250_000 + 300×5_000_000
        //   = 1_280_000_000 + 1_280_000_000 + 1_500_000_000 = 4_060_000_000 = $0.00406
        assert_eq!(c.batch, pico(4_060_000_000));
        // 6_840_000_000 − 4_060_000_000 = 2_780_000_000 = $0.00278
        assert_eq!(c.saved().to_decimal_string(), "0.00278");
    }

    #[test]
    fn o4_mini_reasoning_tokens_are_part_of_output() {
        // realtime: in $1.10 → 1_100_000, cached $0.275 → 275_000, out $4.40 → 4_400_000
        // batch:    in $0.55 → 550_000, cached "-" → 550_000, out $2.20 → 2_200_000
        let c = cost_of("o4-mini", usage(3_000, 2_048, 2_000, 1_500));
        // (3000−2048)×1_100_000 + 2048×275_000 + 2000×4_400_000
        //   = 1_047_200_000 + 563_200_000 + 8_800_000_000 = 10_410_400_000 = $0.0104104
        assert_eq!(c.realtime, pico(10_410_400_000));
        // 3000×550_000 + 2000×2_200_000 = 1_650_000_000 + 4_400_000_000 = 6_050_000_000 = $0.00605
        assert_eq!(c.batch, pico(6_050_000_000));
        assert_eq!(c.realtime.to_decimal_string(), "0.0104104");
        // The 1_500 reasoning tokens are inside the 2_000 output tokens: not billed twice.
        assert_eq!(cost_of("o4-mini", usage(3_000, 2_048, 2_000, 0)), c);
    }

    #[test]
    fn o1_dated_snapshot() {
        // realtime: in $15 → 15_000_000, out $60 → 60_000_000; batch: in $7.50 → 7_500_000, out $30 → 30_000_000
        let c = cost_of("o1-2024-12-17", usage(7, 0, 13, 9));
        // 7×15_000_000 + 13×60_000_000 = 105_000_000 + 780_000_000 = 885_000_000
        assert_eq!(c.realtime, pico(885_000_000));
        // 7×7_500_000 + 13×30_000_000 = 52_500_000 + 390_000_000 = 442_500_000
        assert_eq!(c.batch, pico(442_500_000));
    }

    #[test]
    fn gpt_4_1_nano_a_million_tokens() {
        // realtime: in $0.10 → 100_000, cached $0.025 → 25_000, out $0.40 → 400_000
        // batch:    in $0.05 → 50_000, cached "-" → 50_000, out $0.20 → 200_000
        let c = cost_of("gpt-4.1-nano", usage(1_000_000, 400_000, 1_000_000, 0));
        // 600_000×100_000 + 400_000×25_000 + 1_000_000×400_000
        //   = 60_000_000_000 + 10_000_000_000 + 400_000_000_000 = 470_000_000_000 = $0.47
        assert_eq!(c.realtime, pico(470_000_000_000));
        // 1_000_000×50_000 + 1_000_000×200_000 = 250_000_000_000 = $0.25
        assert_eq!(c.batch, pico(250_000_000_000));
        assert_eq!(c.saved().to_decimal_string(), "0.22");
    }

    #[test]
    fn gpt_4_1_mostly_cached_can_cost_more_in_a_batch() {
        // realtime: in $2 → 2_000_000, cached $0.50 → 500_000; batch: in $1 → 1_000_000, cached "-" → 1_000_000
        let c = cost_of("gpt-4.1", usage(10_000, 10_000, 0, 0));
        // 10_000×500_000 = 5_000_000_000; batch 10_000×1_000_000 = 10_000_000_000
        assert_eq!(c.realtime, pico(5_000_000_000));
        assert_eq!(c.batch, pico(10_000_000_000));
        assert_eq!(c.saved(), pico(-5_000_000_000));
    }

    #[test]
    fn gpt_5_nano_has_a_batch_cached_price() {
        // realtime: in $0.05 → 50_000, cached $0.005 → 5_000, out $0.40 → 400_000
        // batch:    in $0.025 → 25_000, cached $0.0025 → 2_500, out $0.20 → 200_000
        let c = cost_of("gpt-5-nano-2025-08-07", usage(10_000, 8_000, 1_000, 600));
        // 2_000×50_000 + 8_000×5_000 + 1_000×400_000 = 100_000_000 + 40_000_000 + 400_000_000 = 540_000_000
        assert_eq!(c.realtime, pico(540_000_000));
        // 2_000×25_000 + 8_000×2_500 + 1_000×200_000 = 50_000_000 + 20_000_000 + 200_000_000 = 270_000_000
        assert_eq!(c.batch, pico(270_000_000));
    }

    #[test]
    fn gpt_3_5_turbo() {
        // realtime: in $0.50 → 500_000, out $1.50 → 1_500_000; batch: in $0.25 → 250_000, out $0.75 → 750_000
        let c = cost_of("gpt-3.5-turbo", usage(100, 0, 50, 0));
        // 100×500_000 + 50×1_500_000 = 50_000_000 + 75_000_000 = 125_000_000
        assert_eq!(c.realtime, pico(125_000_000));
        // 100×250_000 + 50×750_000 = 25_000_000 + 37_500_000 = 62_500_000
        assert_eq!(c.batch, pico(62_500_000));
    }

    #[test]
    fn embeddings_have_no_output_price() {
        // text-embedding-3-small: realtime $0.02 → 20_000, batch $0.01 → 10_000
        let c = cost_of("text-embedding-3-small", usage(12_345, 0, 0, 0));
        // 12_345×20_000 = 246_900_000; 12_345×10_000 = 123_450_000
        assert_eq!(c.realtime, pico(246_900_000));
        assert_eq!(c.batch, pico(123_450_000));
        // Output tokens on a model with no output price are not priced as zero.
        assert_eq!(
            PriceBook::bundled().cost(OPENAI, "text-embedding-3-small", &usage(1, 0, 1, 0)),
            None
        );
    }

    #[test]
    fn moderation_is_free_and_known() {
        let book = PriceBook::bundled();
        let zero = Cost {
            batch: Money::ZERO,
            realtime: Money::ZERO,
        };
        assert_eq!(
            book.cost(OPENAI, "omni-moderation-latest", &usage(500, 0, 0, 0)),
            Some(zero)
        );
        assert_eq!(
            book.cost(OPENAI, "omni-moderation-2024-09-26", &usage(500, 0, 0, 0)),
            Some(zero)
        );
    }

    #[test]
    fn fine_tuned_models_use_fine_tuned_prices() {
        // ft:gpt-4o-mini-2024-07-18: realtime in $0.30 → 300_000, out $1.20 → 1_200_000;
        // batch in $0.15 → 150_000, out $0.60 → 600_000
        let c = cost_of(
            "ft:gpt-4o-mini-2024-07-18:my-org:custom:abc123",
            usage(1_000, 0, 1_000, 0),
        );
        // 1000×300_000 + 1000×1_200_000 = 1_500_000_000; 1000×150_000 + 1000×600_000 = 750_000_000
        assert_eq!(c.realtime, pico(1_500_000_000));
        assert_eq!(c.batch, pico(750_000_000));
        let book = PriceBook::bundled();
        assert_eq!(
            book.lookup(OPENAI, "ft:gpt-4o-mini-2024-07-18:org::id").unwrap().model,
            "ft:gpt-4o-mini-2024-07-18"
        );
        // Unlisted fine-tunes never fall back to the base model's price.
        assert!(book.lookup(OPENAI, "ft:gpt-4o-2024-08-06:org::id").is_none());
        assert!(book.lookup(OPENAI, "ft:gpt-4o-mini:org::id").is_none());
        assert!(book.lookup(OPENAI, "ft:").is_none());
        assert!(book.lookup(OPENAI, "ft::org::id").is_none());
    }

    #[test]
    fn odd_usages_are_not_priced() {
        let book = PriceBook::bundled();
        // More cached than input tokens: inconsistent, so unpriced rather than guessed.
        assert_eq!(book.cost(OPENAI, "gpt-4o", &usage(10, 11, 0, 0)), None);
        // Huge counts still compute exactly: (2^64−1) × 2_500_000 fits in i128.
        let c = book.cost(OPENAI, "gpt-4o", &usage(u64::MAX, 0, 0, 0)).unwrap();
        assert_eq!(c.realtime.picodollars(), i128::from(u64::MAX) * 2_500_000);
    }

    // ---- lookup --------------------------------------------------------------

    #[test]
    fn dated_snapshots_resolve_to_their_family() {
        let book = PriceBook::bundled();
        for (name, entry) in [
            ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
            ("gpt-4o-2024-08-06", "gpt-4o"),
            ("gpt-4o-2024-11-20", "gpt-4o"),
            ("gpt-4.1-2025-04-14", "gpt-4.1"),
            ("o3-mini-2025-01-31", "o3-mini"),
            ("o4-mini-2025-04-16", "o4-mini"),
            ("gpt-4o-mini", "gpt-4o-mini"),
        ] {
            assert_eq!(
                book.lookup(OPENAI, name).map(|p| p.model.as_str()),
                Some(entry),
                "{name}"
            );
        }
    }

    #[test]
    fn exact_names_win_over_families() {
        // gpt-4o-2024-05-13 is priced apart: $5 / $15 real time, $2.50 / $7.50 batch.
        let book = PriceBook::bundled();
        assert_eq!(
            book.lookup(OPENAI, "gpt-4o-2024-05-13").unwrap().model,
            "gpt-4o-2024-05-13"
        );
        let c = cost_of("gpt-4o-2024-05-13", usage(1_000, 0, 1_000, 0));
        // 1000×5_000_000 + 1000×15_000_000 = 20_000_000_000; 1000×2_500_000 + 1000×7_500_000 = 10_000_000_000
        assert_eq!(c.realtime, pico(20_000_000_000));
        assert_eq!(c.batch, pico(10_000_000_000));
        // gpt-4o family: 1000×2_500_000 + 1000×10_000_000 = 12_500_000_000
        assert_eq!(
            cost_of("gpt-4o-2024-08-06", usage(1_000, 0, 1_000, 0)).realtime,
            pico(12_500_000_000)
        );
    }

    #[test]
    fn unknown_models_are_none() {
        let book = PriceBook::bundled();
        for name in [
            "",
            "gpt-7",
            "GPT-4O",
            "gpt-4o-audio-preview-2024-12-17", // strips to gpt-4o-audio-preview: not listed, not gpt-4o
            "o1-preview-2024-09-12",
            "gpt-3.5-turbo-1106", // priced apart on the page; MMDD suffixes are never stripped
            "gpt-4o-mini-2024-13-45",
            "-2024-07-18",
            "gpt-4o:extended",
        ] {
            assert!(book.lookup(OPENAI, name).is_none(), "{name:?} must be unknown");
            assert_eq!(book.cost(OPENAI, name, &usage(1, 0, 1, 0)), None);
        }
        // No Azure prices are shipped: deployment names are free-form.
        assert!(book.lookup(ProviderKind::AzureOpenAi, "gpt-4o-mini").is_none());
    }

    // ---- the bundled file ------------------------------------------------------

    #[test]
    fn bundled_file_parses_and_lists_the_core_models() {
        let book = PriceBook::from_json(BUNDLED_JSON).expect("bundled prices.json must parse");
        assert!(book.source().starts_with("https://"));
        assert!(is_iso_date(book.as_of()));
        for model in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4.1-nano",
            "o1",
            "o3-mini",
            "o4-mini",
            "gpt-3.5-turbo",
            "text-embedding-3-small",
            "text-embedding-3-large",
            "omni-moderation-latest",
        ] {
            assert!(book.lookup(OPENAI, model).is_some(), "{model} missing from prices.json");
        }
        assert_eq!(book.models(ProviderKind::AzureOpenAi).count(), 0);
    }

    #[test]
    fn bundled_batch_prices_are_half_of_realtime() {
        // The Batch API is 50% off; the file writes both figures out, and this
        // cross-checks them for typos. (Cached input may have no batch figure.)
        for p in PriceBook::bundled().models(OPENAI) {
            let half = |rt: Money| pico(rt.picodollars() / 2);
            assert_eq!(p.realtime.input.picodollars() % 2, 0, "{}", p.model);
            assert_eq!(p.batch.input, half(p.realtime.input), "{} input", p.model);
            assert_eq!(p.batch.output, p.realtime.output.map(half), "{} output", p.model);
            if let (Some(rt), Some(b)) = (p.realtime.cached_input, p.batch.cached_input) {
                assert_eq!(b, half(rt), "{} cached_input", p.model);
            }
        }
    }

    // ---- bad files -------------------------------------------------------------

    fn file_with(model_entry: Value) -> String {
        json!({
            "source": "https://example.com/pricing",
            "as_of": "2025-11-13",
            "providers": { "openai": { "m": model_entry } }
        })
        .to_string()
    }

    fn error_of(text: &str) -> String {
        PriceBook::from_json(text).unwrap_err().to_string()
    }

    fn tier(input: &str, output: &str) -> Value {
        json!({ "input": input, "output": output })
    }

    #[test]
    fn a_minimal_file_parses() {
        let book = PriceBook::from_json(&file_with(json!({
            "realtime": { "input": "0.1500000", "cached_input": "0.075", "output": "10" },
            "batch": tier("0.075", "5"),
            "note": "n"
        })))
        .unwrap();
        let p = book.lookup(OPENAI, "m").unwrap();
        assert_eq!(p.realtime.input, pico(150_000));
        assert_eq!(p.realtime.cached_input, Some(pico(75_000)));
        assert_eq!(p.realtime.output, Some(pico(10_000_000)));
        assert_eq!(p.batch.cached_input_or_input(), pico(75_000));
        assert_eq!(p.note.as_deref(), Some("n"));
    }

    #[test]
    fn prices_must_be_exact_decimal_strings() {
        let e = error_of(&file_with(
            json!({ "realtime": { "input": 0.15 }, "batch": { "input": "0.075" } }),
        ));
        assert!(
            e.contains("\"m\"") && e.contains("realtime.input") && e.contains("decimal string"),
            "{e}"
        );

        let e = error_of(&file_with(
            json!({ "realtime": { "input": "0.1234567" }, "batch": { "input": "0.1" } }),
        ));
        assert!(e.contains("realtime.input") && e.contains("7 decimal places"), "{e}");

        for bad in ["-1", "1e3", ".5", "5.", "", " 1", "0x10", "1.2.3", "+1"] {
            let e = error_of(&file_with(
                json!({ "realtime": { "input": bad }, "batch": { "input": "0" } }),
            ));
            assert!(e.contains("realtime.input"), "{bad:?}: {e}");
        }
        let e = error_of(&file_with(
            json!({ "realtime": { "input": "1".repeat(40) }, "batch": { "input": "0" } }),
        ));
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn model_entries_must_be_complete_and_consistent() {
        let e = error_of(&file_with(json!({ "realtime": tier("1", "2") })));
        assert!(e.contains("\"m\"") && e.contains("batch: missing"), "{e}");

        let e = error_of(&file_with(
            json!({ "realtime": tier("1", "2"), "batch": { "output": "1" } }),
        ));
        assert!(e.contains("batch.input: missing"), "{e}");

        let e = error_of(&file_with(
            json!({ "realtime": tier("1", "2"), "batch": { "input": "0.5", "cached": "0.1", "output": "1" } }),
        ));
        assert!(e.contains("batch.cached") && e.contains("unknown field"), "{e}");

        let e = error_of(&file_with(
            json!({ "realtime": tier("1", "2"), "batch": tier("0.5", "1"), "price": "1" }),
        ));
        assert!(e.contains("price: unknown field"), "{e}");

        let e = error_of(&file_with(
            json!({ "realtime": tier("1", "2"), "batch": tier("2", "1") }),
        ));
        assert!(e.contains("batch.input") && e.contains("above the real-time"), "{e}");

        let e = error_of(&file_with(json!({
            "realtime": { "input": "1", "cached_input": "2", "output": "2" },
            "batch": tier("0.5", "1")
        })));
        assert!(
            e.contains("realtime.cached_input") && e.contains("above the input"),
            "{e}"
        );

        let e = error_of(&file_with(
            json!({ "realtime": tier("1", "2"), "batch": { "input": "0.5" } }),
        ));
        assert!(e.contains("output") && e.contains("both"), "{e}");
    }

    #[test]
    fn file_level_problems_name_the_field() {
        let e = error_of("not json");
        assert!(e.contains("cannot be read"), "{e}");

        let e = error_of(r#"{"as_of": "2025-11-13", "providers": {}}"#);
        assert!(e.contains("source: missing"), "{e}");

        let e = error_of(r#"{"source": "s", "as_of": "Nov 2025", "providers": {}}"#);
        assert!(e.contains("as_of") && e.contains("YYYY-MM-DD"), "{e}");

        let e = error_of(r#"{"source": "s", "as_of": "2025-11-13", "unit": "USD per 1K tokens", "providers": {}}"#);
        assert!(e.contains("unit"), "{e}");

        let e = error_of(r#"{"source": "s", "as_of": "2025-11-13", "providers": {"anthropic": {}}}"#);
        assert!(
            e.contains("providers.anthropic") && e.contains("unknown provider"),
            "{e}"
        );

        let e = error_of(r#"{"source": "s", "as_of": "2025-11-13", "providers": {"openai": {}, "azure": {}}, "x": 1}"#);
        assert!(e.contains("x: unknown field"), "{e}");

        let e = error_of(r#"{"source": "s", "as_of": "2025-11-13", "providers": {"openai": {"ft:a:b": {}}}}"#);
        assert!(e.contains("\"ft:a:b\"") && e.contains("(name)"), "{e}");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let entry = r#"{"realtime": {"input": "1"}, "batch": {"input": "0.5"}}"#;
        let text = format!(
            r#"{{"source": "s", "as_of": "2025-11-13", "providers": {{"openai": {{"m": {entry}, "m": {entry}}}}}}}"#
        );
        let e = error_of(&text);
        assert!(e.contains("duplicate key \"m\""), "{e}");

        let e = error_of(
            r#"{"source": "s", "as_of": "2025-11-13", "providers": {"openai": {"m": {"realtime": {"input": "1", "input": "2"}, "batch": {"input": "0.5"}}}}}"#,
        );
        assert!(e.contains("duplicate key \"input\""), "{e}");
    }

    // ---- usage_from_body ---------------------------------------------------------

    #[test]
    fn chat_completion_usage() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "o4-mini-2025-04-16",
            "usage": {
                "prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                "prompt_tokens_details": { "cached_tokens": 1920, "audio_tokens": 0 },
                "completion_tokens_details": { "reasoning_tokens": 192, "audio_tokens": 0,
                    "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0 }
            }
        });
        assert_eq!(
            usage_from_body(Endpoint::ChatCompletions, &body),
            Some(usage(2006, 1920, 300, 192))
        );
        assert_eq!(
            usage_from_body(Endpoint::Completions, &body),
            Some(usage(2006, 1920, 300, 192))
        );
    }

    #[test]
    fn chat_completion_usage_tolerates_missing_and_odd_details() {
        let plain = json!({ "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 } });
        assert_eq!(
            usage_from_body(Endpoint::ChatCompletions, &plain),
            Some(usage(10, 0, 5, 0))
        );
        let nulls = json!({ "usage": { "prompt_tokens": 10, "completion_tokens": 5,
            "prompt_tokens_details": null, "completion_tokens_details": { "reasoning_tokens": null } } });
        assert_eq!(
            usage_from_body(Endpoint::ChatCompletions, &nulls),
            Some(usage(10, 0, 5, 0))
        );
        let odd = json!({ "usage": { "prompt_tokens": 10, "completion_tokens": 5,
            "prompt_tokens_details": { "cached_tokens": "4" }, "completion_tokens_details": [] } });
        assert_eq!(
            usage_from_body(Endpoint::ChatCompletions, &odd),
            Some(usage(10, 0, 5, 0))
        );
        // Without the main counts the usage is unknown, not zero.
        for body in [
            json!({ "usage": { "prompt_tokens": 10 } }),
            json!({ "usage": { "prompt_tokens": -1, "completion_tokens": 5 } }),
            json!({ "usage": { "prompt_tokens": 1.5, "completion_tokens": 5 } }),
            json!({ "usage": null }),
            json!({ "usage": "10" }),
            json!({ "error": { "message": "bad request" } }),
            json!("not an object"),
        ] {
            assert_eq!(usage_from_body(Endpoint::ChatCompletions, &body), None, "{body}");
        }
    }

    #[test]
    fn responses_usage() {
        let body = json!({
            "id": "resp_1", "object": "response",
            "usage": {
                "input_tokens": 328, "output_tokens": 52, "total_tokens": 380,
                "input_tokens_details": { "cached_tokens": 128 },
                "output_tokens_details": { "reasoning_tokens": 40 }
            }
        });
        assert_eq!(
            usage_from_body(Endpoint::Responses, &body),
            Some(usage(328, 128, 52, 40))
        );
        let bare = json!({ "usage": { "input_tokens": 3, "output_tokens": 2 } });
        assert_eq!(usage_from_body(Endpoint::Responses, &bare), Some(usage(3, 0, 2, 0)));
        // Chat-shaped usage on the responses endpoint is not read as something else.
        let chat = json!({ "usage": { "prompt_tokens": 3, "completion_tokens": 2 } });
        assert_eq!(usage_from_body(Endpoint::Responses, &chat), None);
    }

    #[test]
    fn embeddings_and_moderations_usage() {
        let body = json!({ "object": "list", "data": [], "model": "text-embedding-3-small",
            "usage": { "prompt_tokens": 8, "total_tokens": 8 } });
        assert_eq!(usage_from_body(Endpoint::Embeddings, &body), Some(usage(8, 0, 0, 0)));
        assert_eq!(usage_from_body(Endpoint::Embeddings, &json!({ "usage": {} })), None);
        let moderation = json!({ "id": "modr-1", "model": "omni-moderation-latest", "results": [] });
        assert_eq!(usage_from_body(Endpoint::Moderations, &moderation), None);
    }
}
