//! The price table: prices per provider and model, looked up by model name.

use std::collections::HashMap;

use super::cost::{Cost, ModelPrice};
use super::names;
use crate::job::ProviderKind;
use crate::request::Usage;

/// The price table: real-time and batch prices per provider and model.
#[derive(Clone, Debug)]
pub struct PriceBook {
    pub(super) source: String,
    pub(super) as_of: String,
    pub(super) tables: HashMap<ProviderKind, HashMap<String, ModelPrice>>,
    /// Providers whose prices were read elsewhere or on another day than the
    /// file-level `source` and `as_of` say.
    pub(super) provenance: HashMap<ProviderKind, Provenance>,
}

/// Where and when a provider's prices were read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    /// URL of the published prices.
    pub source: String,
    /// The date the prices were read or published (`YYYY-MM-DD`).
    pub as_of: String,
}

pub(super) const BUNDLED_JSON: &str = include_str!("../../data/prices.json");

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

    /// Where the prices were taken from (a URL).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The date the prices were read (`YYYY-MM-DD`).
    pub fn as_of(&self) -> &str {
        &self.as_of
    }

    /// Where `provider`'s prices were taken from: its own `source` in the
    /// price file, else the file-level one.
    pub fn source_for(&self, provider: ProviderKind) -> &str {
        self.provenance
            .get(&provider)
            .map_or(self.source.as_str(), |p| p.source.as_str())
    }

    /// The date `provider`'s prices were read: its own `as_of`, else the
    /// file-level one.
    pub fn as_of_for(&self, provider: ProviderKind) -> &str {
        self.provenance
            .get(&provider)
            .map_or(self.as_of.as_str(), |p| p.as_of.as_str())
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
            return table.get(&format!("ft:{}", names::strip_snapshot_date(base)?));
        }
        table.get(names::strip_snapshot_date(model)?)
    }

    /// What `usage` cost on `model` at batch prices and would have cost in real
    /// time. `None` when the model is unknown (the caller reports it as
    /// "unpriced", never as zero) or the usage cannot be priced (see
    /// [`TokenPrices::cost`]).
    pub fn cost(&self, provider: ProviderKind, model: &str, usage: &Usage) -> Option<Cost> {
        self.lookup(provider, model)?.cost(usage)
    }

    fn table(&self, provider: ProviderKind) -> &HashMap<String, ModelPrice> {
        static EMPTY: std::sync::OnceLock<HashMap<String, ModelPrice>> = std::sync::OnceLock::new();
        self.tables
            .get(&provider)
            .unwrap_or_else(|| EMPTY.get_or_init(HashMap::new))
    }
}
