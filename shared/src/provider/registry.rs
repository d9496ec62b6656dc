//! The providers one batchq serves: each configured provider instance by
//! name, and each provider kind's batch file format. The wiring fills them
//! from the provider table; the pipeline looks a job's provider up by the
//! name its queue group carries, and its file format by its kind.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{BatchFormat, FileLimits, Provider};
use crate::ids::ProviderName;
use crate::job::ProviderKind;

/// The configured provider instances, by name.
#[derive(Clone, Default)]
pub struct Providers {
    by_name: BTreeMap<ProviderName, Arc<dyn Provider>>,
    /// Limits an instance's configuration puts on its batch files.
    limits: BTreeMap<ProviderName, FileLimits>,
}

impl Providers {
    pub fn new() -> Self {
        Self::default()
    }

    /// The same set with `provider` serving as `name`.
    pub fn with(mut self, name: ProviderName, provider: Arc<dyn Provider>) -> Self {
        self.by_name.insert(name, provider);
        self
    }

    /// The same set with the batch files of `name` kept within `limits`.
    pub fn with_file_limits(mut self, name: ProviderName, limits: FileLimits) -> Self {
        self.limits.insert(name, limits);
        self
    }

    /// The limits configured for `name`'s batch files (none: no cap).
    pub fn file_limits(&self, name: &ProviderName) -> FileLimits {
        self.limits.get(name).copied().unwrap_or(FileLimits {
            max_lines: u64::MAX,
            max_bytes: u64::MAX,
            max_inputs: u64::MAX,
        })
    }

    pub fn get(&self, name: &ProviderName) -> Option<&Arc<dyn Provider>> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &ProviderName> {
        self.by_name.keys()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ProviderName, &Arc<dyn Provider>)> {
        self.by_name.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The same set with every provider's failed calls counted in `tally`.
    pub fn tallied(mut self, tally: &Arc<super::tally::ErrorTally>) -> Self {
        for p in self.by_name.values_mut() {
            *p = Arc::new(super::tally::Tallied::new(p.clone(), tally.clone()));
        }
        self
    }
}

impl From<Arc<dyn Provider>> for Providers {
    /// One provider under the default name (no provider table).
    fn from(provider: Arc<dyn Provider>) -> Self {
        Self::new().with(ProviderName::default_name(), provider)
    }
}

/// Each provider kind's batch file format. Reading a result file needs the
/// format only, never a key.
#[derive(Clone, Default)]
pub struct Formats {
    by_kind: HashMap<ProviderKind, Arc<dyn BatchFormat>>,
}

impl Formats {
    pub fn new() -> Self {
        Self::default()
    }

    /// The same set with `format` serving `kind`.
    pub fn with(mut self, kind: ProviderKind, format: Arc<dyn BatchFormat>) -> Self {
        self.by_kind.insert(kind, format);
        self
    }

    pub fn get(&self, kind: ProviderKind) -> Option<&dyn BatchFormat> {
        self.by_kind.get(&kind).map(|f| f.as_ref())
    }
}
