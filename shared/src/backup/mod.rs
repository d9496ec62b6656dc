//! `batchq export` / `batchq import`: a whole store moved through the ports
//! only, so it works from and into any store (DynamoDB and S3, the embedded
//! store, the in-memory one).
//!
//! An export is a directory:
//!
//! * `manifest.json`: [`Manifest`] (format version, export id, when, counts,
//!   and the objects copied with their sizes);
//! * `rows.jsonl`: one [`Record`] a line: every request with its body and
//!   result (bodies and responses kept as objects are read and written
//!   inline, so the target places them by its own limits), every job with
//!   the tenants found in it, every token budget, every savings total;
//! * `objects/<key>`: the objects unfinished jobs still need (their input
//!   file, and result files not yet ingested), streamed, never whole in memory.
//!
//! What an export holds: every job the store lists; every request whose
//! latest job is one of them, and every queued request. A request never
//! claimed that ended without a job (cancelled while queued) is reachable
//! through no listing, and is history only: it is not exported (nor is a
//! finished request whose job the store's retention already deleted).
//!
//! Import replays each request's life through the domain's transitions
//! ([`replay`]), so the target's counters come out exact by construction:
//! see [`import::import`].

pub mod export;
pub mod import;
pub mod replay;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::budget::TokenBudget;
use crate::ids::TenantId;
use crate::job::Job;
use crate::request::{Request, RequestResult};
use crate::store::{SavingsRow, StoreError};
use crate::time::Timestamp;

pub use export::export;
pub use import::import;

/// The export format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// `manifest.json`'s `format`, naming what the directory is.
pub const FORMAT_NAME: &str = "batchq-export";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const ROWS_FILE: &str = "rows.jsonl";
pub const OBJECTS_DIR: &str = "objects";

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// Names this export: an import counts its savings once per export id.
    pub export_id: String,
    pub exported_at: Timestamp,
    pub counts: Counts,
    /// The objects under `objects/`, with their sizes.
    pub objects: Vec<ObjectEntry>,
}

/// What an export holds (and an import found), by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub requests: u64,
    /// Requests by exported status name.
    pub requests_by_status: BTreeMap<String, u64>,
    pub jobs: u64,
    pub budgets: u64,
    pub savings: u64,
    pub objects: u64,
    pub object_bytes: u64,
}

impl Counts {
    fn count_request(&mut self, r: &Request) {
        self.requests += 1;
        *self.requests_by_status.entry(r.status.to_string()).or_default() += 1;
    }
}

/// One object copied into the export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    pub key: String,
    pub bytes: u64,
}

/// One line of `rows.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Record {
    Request(RequestRecord),
    Job(JobRecord),
    Budget { budget: TokenBudget },
    Savings { savings: SavingsRow },
}

/// A request, its body and its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub request: Request,
    /// The body JSON; `null` for a finished request whose body object the
    /// store had already deleted (it is imported with its hash, no body).
    pub body: Option<String>,
    /// The stored result, its response inline.
    pub result: Option<RequestResult>,
}

/// A job and every tenant known to hold requests of it (its own list and
/// the tenants of the requests exported with it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job: Job,
    pub tenants: Vec<TenantId>,
}

impl Record {
    /// Reads one line, by the key that names its kind.
    pub fn parse(line: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let has = |k: &str| value.get(k).is_some();
        let out = if has("request") {
            Record::Request(serde_json::from_value(value).map_err(|e| format!("request: {e}"))?)
        } else if has("job") {
            Record::Job(serde_json::from_value(value).map_err(|e| format!("job: {e}"))?)
        } else if let Some(b) = value.get("budget") {
            Record::Budget {
                budget: serde_json::from_value(b.clone()).map_err(|e| format!("budget: {e}"))?,
            }
        } else if let Some(s) = value.get("savings") {
            Record::Savings {
                savings: serde_json::from_value(s.clone()).map_err(|e| format!("savings: {e}"))?,
            }
        } else {
            return Err("a line that is no request, job, budget or savings record".into());
        };
        Ok(out)
    }
}

/// Why an export or an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not empty: export writes into a new or empty directory")]
    NotEmpty { path: PathBuf },
    #[error("{path}: not a batchq export: {reason}")]
    NotAnExport { path: PathBuf, reason: String },
    #[error("{path}: export format version {found}; this batchq reads version {FORMAT_VERSION} only")]
    UnsupportedVersion { path: PathBuf, found: u32 },
    #[error("{path} line {line}: {reason}")]
    BadLine { path: PathBuf, line: u64, reason: String },
    #[error("the export is incomplete: {0}")]
    Incomplete(String),
    #[error(
        "the target already holds {count} request(s) with the same key and other content (first: {first}); nothing was written"
    )]
    Conflicts { count: u64, first: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BackupError {
    fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

/// The days every savings total falls in (`YYYY-MM-DD` compares as text).
const ALL_DAYS: (&str, &str) = ("0000-00-00", "9999-12-31");

/// Where object `key` lives in an export: under `objects/`, refusing a key
/// that would leave it.
fn object_path(dir: &std::path::Path, key: &str) -> Result<PathBuf, BackupError> {
    let safe = !key.is_empty()
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if !safe {
        return Err(BackupError::NotAnExport {
            path: dir.into(),
            reason: format!("object key {key:?} is not a plain relative path"),
        });
    }
    Ok(dir.join(OBJECTS_DIR).join(key))
}
