//! What the fake remembers: its files, batches, request log and submissions.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::config::{FakeConfig, Faults};

/// One request the fake received.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: String,
    pub route: String,
    pub status: u16,
}

/// One created batch and the custom_ids its input held.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Submission {
    pub batch_id: String,
    pub input_file_id: String,
    pub endpoint: String,
    pub model: Option<String>,
    pub custom_ids: Vec<String>,
    /// Its prompt tokens, as counted against its model's enqueued-token
    /// limit: the sum over its lines of what `respond` reports as prompt
    /// (or input) tokens.
    pub tokens: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct FileRec {
    pub(crate) meta: Value,
    pub(crate) path: PathBuf,
    pub(crate) bytes: u64,
    /// For the listing lag.
    pub(crate) created: Instant,
}

#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub(crate) custom_id: String,
    pub(crate) body: Value,
}

#[derive(Debug, Clone)]
pub(crate) struct BatchRec {
    pub(crate) obj: Value,
    /// Creation order, for who is ahead in a model's token queue.
    pub(crate) seq: u64,
    pub(crate) created: Instant,
    /// The model of its lines ("" when they name none) and their prompt
    /// tokens, read at create for the enqueued-token limits.
    pub(crate) model: String,
    pub(crate) tokens: u64,
    pub(crate) polls: u32,
    pub(crate) in_progress_polls: u32,
    pub(crate) finalizing_polls: u32,
    pub(crate) cancelling_polls: u32,
    pub(crate) faults: Faults,
    pub(crate) lines: Vec<Line>,
    pub(crate) cancel_requested: bool,
    pub(crate) vanished: bool,
    /// Its end was announced to the webhook endpoint (`webhooks`).
    pub(crate) notified: bool,
}

pub(crate) struct Inner {
    pub(crate) config: FakeConfig,
    pub(crate) dir: PathBuf,
    pub(crate) files: HashMap<String, FileRec>,
    pub(crate) file_order: Vec<String>,
    pub(crate) batches: BTreeMap<u64, String>,
    pub(crate) by_id: HashMap<String, BatchRec>,
    pub(crate) log: Vec<LogEntry>,
    pub(crate) ledger: Vec<Submission>,
    pub(crate) next: u64,
    /// Calls per route so far, for the `*_every` rates.
    pub(crate) route_calls: HashMap<String, u32>,
    /// Model → the most tokens its batches ever held at once.
    pub(crate) peak_enqueued: HashMap<String, u64>,
    /// Anthropic's message batches.
    pub(crate) anthropic: MsgBatches,
}

pub(crate) struct Shared {
    pub(crate) inner: Mutex<Inner>,
    /// Every webhook delivery attempt (`webhooks`).
    pub(crate) webhook_log: Mutex<Vec<WebhookAttempt>>,
    pub(crate) dir: PathBuf,
    pub(crate) owns_dir: bool,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    OpenAi,
    Azure,
}

pub(crate) fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

// ---- Anthropic message batches (served by `crate::anthropic`)

/// Where a message batch is in its processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    InProgress,
    Canceling,
    Ended,
}

/// One message batch.
#[derive(Debug, Clone)]
pub(crate) struct MsgBatch {
    pub(crate) id: String,
    /// Unix milliseconds.
    pub(crate) created_ms: i64,
    /// For the clock (`step_ms`) and the listing lag.
    pub(crate) created: Instant,
    /// (custom_id, params) in input order.
    pub(crate) requests: Vec<(String, Value)>,
    pub(crate) phase: Phase,
    pub(crate) cancel_initiated_ms: Option<i64>,
    pub(crate) ended_ms: Option<i64>,
    /// succeeded, errored, canceled, expired (0 until ended).
    pub(crate) counts: [u64; 4],
    /// The result lines, once ended.
    pub(crate) results: Vec<String>,
    pub(crate) polls: u32,
    pub(crate) in_progress_polls: u32,
    pub(crate) canceling_polls: u32,
    pub(crate) faults: Faults,
    /// Deleted, or gone per `vanish_after_polls`: answered 404.
    pub(crate) gone: bool,
}

/// Every message batch, by id and in creation order.
#[derive(Debug, Default)]
pub(crate) struct MsgBatches {
    pub(crate) by_id: HashMap<String, MsgBatch>,
    pub(crate) order: BTreeMap<u64, String>,
}

/// One delivery attempt the fake made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WebhookAttempt {
    /// The `webhook-id` header (the same on every attempt of one event).
    pub webhook_id: String,
    /// The event's `id` (`evt_…`).
    pub event_id: String,
    /// `batch.completed`, …
    pub event_type: String,
    pub batch_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The answer's status; `None`: no answer (refused, timed out).
    pub status: Option<u16>,
}
