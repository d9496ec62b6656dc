//! The note `batchq serve` leaves in an embedded data directory while it
//! runs: the address it serves. A command refused the directory (another
//! process holds its lock) reads it to say how to reach that server instead
//! (`--api`).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// The note's file name in the data directory.
pub const FILE: &str = "serve.json";

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Records that this process serves `api` from `dir` (best effort: a
/// missing note only makes a refusal less helpful).
pub fn write(dir: &Path, api: &str) {
    let note = json!({"pid": std::process::id(), "api": api});
    if let Err(e) = std::fs::write(path(dir), format!("{note}\n")) {
        tracing::warn!(error = %e, "cannot write {FILE} in the data directory");
    }
}

/// Removes the note this process wrote.
pub fn remove(dir: &Path) {
    let _ = std::fs::remove_file(path(dir));
}

/// How to reach the server holding `dir`, when its note names one.
pub fn hint(dir: &Path) -> Option<String> {
    let note: Value = serde_json::from_slice(&std::fs::read(path(dir)).ok()?).ok()?;
    let api = note["api"].as_str()?;
    let pid = note["pid"].as_u64()?;
    Some(format!(
        "batchq serve (pid {pid}) serves {api}: pass --api {api} to enqueue, wait, status, stats, jobs or savings through it"
    ))
}
