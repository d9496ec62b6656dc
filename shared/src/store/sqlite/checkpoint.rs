//! WAL checkpoints off the writer's path. SQLite's default copies the WAL
//! into the database inside whichever commit passes 1,000 pages: during a
//! bulk enqueue that was every few commits, a twelfth of the writer's time
//! spent while the caller waits. Here the writer connection only
//! checkpoints as a backstop (a much larger WAL), and a thread with its own
//! connection runs passive checkpoints, which never block the writer or
//! readers, soon after commits: the copying runs on another core while the
//! next transaction is built.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::store::dir_lock::DataDirError;

/// Pages the writer's own (automatic) checkpoint waits for: a backstop
/// for when the checkpoint thread falls behind, about 64 MB of WAL.
pub(super) const BACKSTOP_PAGES: u32 = 16_384;

/// How long the thread waits for a commit before checkpointing anyway.
const IDLE: Duration = Duration::from_secs(1);

/// The shortest time between two checkpoints. Each one syncs the database
/// file; after every small commit (one enqueue each) that doubled the
/// syncs, while a checkpoint that waits a moment copies a page written by
/// several commits once. 500 ms rather than 100: during a bulk enqueue a
/// checkpoint then covers about ten commits, whose key and index pages
/// it copies once instead of two or three times (the probe: 7.3 against
/// 7.7 KB written per request); the WAL stays far below the writer's
/// backstop (a few tens of MB at 20,000 requests/s).
const MIN_GAP: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Signal {
    /// Commits since the last checkpoint started.
    dirty: bool,
    stop: bool,
}

/// The checkpoint thread; stopped (after a last checkpoint) and joined on
/// drop, so its connection is closed before the directory's lock is
/// released.
pub(super) struct Checkpointer {
    signal: Arc<(Mutex<Signal>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread on its own connection to `path` (opened with the
    /// writer's `synchronous` setting, which decides whether a checkpoint
    /// syncs the database file).
    pub(super) fn start(path: &Path, synchronous: &str) -> Result<Self, DataDirError> {
        let fail = |message: String| DataDirError::Database {
            path: path.to_owned(),
            message,
        };
        let conn = Connection::open(path).map_err(|e| fail(e.to_string()))?;
        conn.busy_timeout(Duration::from_secs(5))
            .and_then(|()| conn.execute_batch(&format!("PRAGMA synchronous={synchronous};")))
            .map_err(|e| fail(e.to_string()))?;
        let signal: Arc<(Mutex<Signal>, Condvar)> = Arc::default();
        let theirs = signal.clone();
        let thread = std::thread::Builder::new()
            .name("batchq-checkpoint".into())
            .spawn(move || run(conn, &theirs))
            .map_err(|e| fail(format!("cannot start the WAL checkpoint thread: {e}")))?;
        Ok(Self {
            signal,
            thread: Some(thread),
        })
    }

    /// Tells the thread a write transaction committed.
    pub(super) fn committed(&self) {
        let (lock, wake) = &*self.signal;
        let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
        if !s.dirty {
            s.dirty = true;
            wake.notify_one();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        {
            let (lock, wake) = &*self.signal;
            lock.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
            wake.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(conn: Connection, signal: &(Mutex<Signal>, Condvar)) {
    let (lock, wake) = signal;
    loop {
        let stop = {
            let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
            while !s.dirty && !s.stop {
                let (next, timeout) = wake.wait_timeout(s, IDLE).unwrap_or_else(|p| p.into_inner());
                s = next;
                if timeout.timed_out() {
                    break;
                }
            }
            s.dirty = false;
            s.stop
        };
        // PASSIVE: copies what no reader still needs, waits for no one. A
        // failure (busy, I/O) leaves the WAL to the next round or to the
        // writer's backstop; nothing is lost either way.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed; the next one will retry");
        }
        if stop {
            return;
        }
        let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
        let until = std::time::Instant::now() + MIN_GAP;
        while !s.stop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            s = wake.wait_timeout(s, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}
