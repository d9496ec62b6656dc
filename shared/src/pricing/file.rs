//! The price file (`shared/data/prices.json`): reading it into a
//! [`PriceBook`], refusing anything ambiguous (format in the module
//! documentation of `pricing`).

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::book::{PriceBook, Provenance};
use super::cost::{ModelPrice, TokenPrices};
use super::error::{FieldError, PriceError, PricingError, PRICE_DECIMALS};
use super::names::is_iso_date;
use crate::job::ProviderKind;
use crate::money::Money;

impl PriceBook {
    /// Parses a price file (format in the module documentation of `pricing`).
    pub fn from_json(text: &str) -> Result<PriceBook, PricingError> {
        parse_book(text)
    }
}

fn parse_book(text: &str) -> Result<PriceBook, PricingError> {
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
            "as_of" => as_of = Some(iso_date(&key, value)?),
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
        tables: HashMap::new(),
        provenance: HashMap::new(),
    };
    let mut seen = HashSet::new();
    for (name, section) in providers {
        let field = format!("providers.{name}");
        let kind = ProviderKind::parse(&name).ok_or_else(|| {
            file_err(
                &field,
                "unknown provider; expected one of openai, azure_openai, anthropic, groq, together",
            )
        })?;
        if !seen.insert(kind) {
            return Err(file_err(&field, "the same provider is listed twice"));
        }
        let section = parse_provider_section(&field, section)?;
        if let Some(provenance) = section.provenance(&book.source, &book.as_of) {
            book.provenance.insert(kind, provenance);
        }
        let table = book.tables.entry(kind).or_default();
        for (model, entry) in section.models {
            let price = parse_model(kind, &model, entry)?;
            table.insert(model, price);
        }
    }
    Ok(book)
}

/// One provider's section: its models, and where and when its prices were
/// read when that differs from the file-level `source` and `as_of`.
struct ProviderSection {
    source: Option<String>,
    as_of: Option<String>,
    models: Vec<(String, Node)>,
}

impl ProviderSection {
    /// The section's own provenance, the file-level fields filling what it leaves out.
    fn provenance(&self, source: &str, as_of: &str) -> Option<Provenance> {
        if self.source.is_none() && self.as_of.is_none() {
            return None;
        }
        Some(Provenance {
            source: self.source.clone().unwrap_or_else(|| source.to_owned()),
            as_of: self.as_of.clone().unwrap_or_else(|| as_of.to_owned()),
        })
    }
}

/// A provider's value is either its models by name (short form) or an object
/// with a `models` key and optional `source`, `as_of` and `notes` (long form).
fn parse_provider_section(field: &str, node: Node) -> Result<ProviderSection, PricingError> {
    let Node::Map(entries) = node else {
        return Err(file_err(
            field,
            format!("must be an object of models, got {}", node.kind()),
        ));
    };
    if !entries.iter().any(|(key, _)| key == "models") {
        return Ok(ProviderSection {
            source: None,
            as_of: None,
            models: entries,
        });
    }
    let (mut source, mut as_of, mut models) = (None, None, None);
    for (key, value) in entries {
        let path = format!("{field}.{key}");
        match key.as_str() {
            "source" => source = Some(non_empty_str(&path, value)?),
            "as_of" => as_of = Some(iso_date(&path, value)?),
            "notes" => {}
            "models" => match value {
                Node::Map(m) => models = Some(m),
                other => {
                    return Err(file_err(
                        &path,
                        format!("must be an object of models, got {}", other.kind()),
                    ))
                }
            },
            _ => {
                return Err(file_err(
                    &path,
                    "unknown field; a provider with a models key may only have source, as_of, notes and models",
                ))
            }
        }
    }
    Ok(ProviderSection {
        source,
        as_of,
        models: models.unwrap_or_default(),
    })
}

fn iso_date(field: &str, node: Node) -> Result<String, PricingError> {
    let s = non_empty_str(field, node)?;
    if !is_iso_date(&s) {
        return Err(file_err(field, format!("must be a date YYYY-MM-DD, got {s:?}")));
    }
    Ok(s)
}

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
            "realtime" => realtime = Some(parse_tier(&key, value).map_err(|e| err(&e.field, e.problem))?),
            "batch" => batch = Some(parse_tier(&key, value).map_err(|e| err(&e.field, e.problem))?),
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
        ("cache_write", realtime.cache_write, batch.cache_write),
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

/// Parses one tier; an error names the field's path in the entry.
fn parse_tier(tier: &str, node: Node) -> Result<TokenPrices, FieldError> {
    let Node::Map(fields) = node else {
        return Err(FieldError::new(tier, format!("must be an object, got {}", node.kind())));
    };
    let (mut input, mut cached_input, mut output, mut cache_write) = (None, None, None, None);
    for (key, value) in fields {
        let path = format!("{tier}.{key}");
        let slot = match key.as_str() {
            "input" => &mut input,
            "cached_input" => &mut cached_input,
            "output" => &mut output,
            "cache_write" => &mut cache_write,
            _ => {
                return Err(FieldError::new(
                    path,
                    "unknown field; expected input, cached_input, cache_write or output",
                ))
            }
        };
        let text = match value {
            Node::Str(s) => s,
            other => {
                return Err(FieldError::new(
                    path,
                    format!(
                        "must be a decimal string in USD per 1M tokens such as \"0.150\", got {}",
                        other.kind()
                    ),
                ))
            }
        };
        *slot = Some(parse_price(&text).map_err(|e| FieldError::new(path, e.to_string()))?);
    }
    let input = input.ok_or_else(|| FieldError::new(format!("{tier}.input"), "missing"))?;
    if let Some(cached) = cached_input {
        if cached > input {
            return Err(FieldError::new(
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
        cache_write,
    })
}

/// `"0.150"` (USD per 1M tokens) → 150_000 picodollars per token, exactly.
pub fn parse_price(text: &str) -> Result<Money, PriceError> {
    let bad = || PriceError::NotDecimal(text.to_owned());
    if text.starts_with('-') {
        return Err(PriceError::Negative(text.to_owned()));
    }
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_only(whole) || !digits_only(frac) || (text.contains('.') && frac.is_empty()) {
        return Err(bad());
    }
    let (kept, extra) = frac.split_at(frac.len().min(PRICE_DECIMALS));
    if extra.bytes().any(|b| b != b'0') {
        return Err(PriceError::TooPrecise {
            text: text.to_owned(),
            places: frac.trim_end_matches('0').len(),
        });
    }
    let too_large = || PriceError::TooLarge(text.to_owned());
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
