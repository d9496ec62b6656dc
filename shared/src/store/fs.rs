//! [`ObjectStore`] on a directory: the embedded store's objects (large
//! bodies and responses, job input files, copied result files) as files.
//!
//! A key maps to the path of its `/`-separated segments under the root; a
//! key with an empty, `.` or `..` segment, or that starts with `/`, is
//! refused, so no key reaches outside the root. Writes go to a temp file in
//! `ROOT/.tmp` (same filesystem), which is synced, renamed over the target
//! and its directory synced: an object is there whole or not at all, and
//! nothing is visible under a key before its write finished. Temp files of
//! earlier processes (a write interrupted by a crash) are removed at open.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::dir_lock::{DataDirError, LockGuard};
use super::{ByteStream, ObjectInfo, ObjectStore, ObjectWriter, StoreError, WriterStats};
use crate::keys::ObjectExpiry;

/// Chunk size of [`ObjectStore::open`]'s stream.
const READ_CHUNK: usize = 256 * 1024;

/// The directory under the root holding writes in progress.
const TMP_DIR: &str = ".tmp";

/// When this process first opened an object store: temp files older than
/// this, or named by another pid, are left from an earlier process.
static STARTED: OnceLock<SystemTime> = OnceLock::new();

/// Names temp files apart within this process.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Objects as files under a root directory.
#[derive(Debug)]
pub struct FsObjects {
    root: PathBuf,
    part_bytes: usize,
    /// The data directory's lock, held as long as this lives.
    _lock: Option<Arc<LockGuard>>,
}

fn backend(op: &'static str) -> impl Fn(std::io::Error) -> StoreError {
    move |e| StoreError::backend(op, e)
}

/// Runs blocking file work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    op: &'static str,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::backend(op, e))?
}

/// Syncs a directory, so the entries just made in it (a rename) are durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// How much older than this process's start a temporary file of its pid
/// must be to be another process's (see [`FsObjects::open`]).
const CLOCK_MARGIN: std::time::Duration = std::time::Duration::from_secs(2);

impl FsObjects {
    /// The writers' default buffer bound (as the S3 adapter's default part size).
    pub const DEFAULT_PART_BYTES: u64 = 8 * 1024 * 1024;

    /// Opens (creating) the object store under `root`; a writer buffers at
    /// most `part_bytes` before writing them out. Temp files left by an
    /// earlier process are removed. Prefer
    /// [`DataDir`](super::data_dir::DataDir), which also locks the directory.
    pub fn open(root: &Path, part_bytes: u64) -> Result<Self, DataDirError> {
        Self::open_locked(root, part_bytes, None)
    }

    pub(super) fn open_locked(
        root: &Path,
        part_bytes: u64,
        lock: Option<Arc<LockGuard>>,
    ) -> Result<Self, DataDirError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| DataDirError::Io { path, source }
        };
        let tmp = root.join(TMP_DIR);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let root = std::fs::canonicalize(root).map_err(io(root))?;
        let started = *STARTED.get_or_init(SystemTime::now);
        let ours = format!("{}-", std::process::id());
        for entry in std::fs::read_dir(&tmp).map_err(io(&tmp))? {
            let entry = entry.map_err(io(&tmp))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // A file's time comes from the kernel's coarse clock, which can
            // lag `SystemTime::now` by a few milliseconds: a file this process
            // created just after it started could look older than the start.
            // Only a file older by more than the margin is another process's
            // (one that had our pid before); one kept by the margin is
            // removed at a later open.
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t + CLOCK_MARGIN < started);
            if old || !name.starts_with(&ours) {
                let path = entry.path();
                let _ = std::fs::remove_file(&path).or_else(|_| std::fs::remove_dir_all(&path));
            }
        }
        Ok(Self {
            root,
            part_bytes: part_bytes.max(1) as usize,
            _lock: lock,
        })
    }

    /// The (absolute) root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of `key`, refusing a key that would leave the root.
    pub fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        let refuse = |why: &str| StoreError::Backend {
            op: "object key",
            message: format!("{key:?} is not a valid object key: {why}"),
        };
        if key.is_empty() {
            return Err(refuse("empty"));
        }
        if key.starts_with('/') {
            return Err(refuse("absolute"));
        }
        let mut path = self.root.clone();
        for (i, seg) in key.split('/').enumerate() {
            match seg {
                "" => return Err(refuse("empty segment")),
                "." | ".." => return Err(refuse("relative segment")),
                TMP_DIR if i == 0 => return Err(refuse("reserved for writes in progress")),
                s if s.contains('\0') || s.contains('\\') => return Err(refuse("bad character")),
                s => path.push(s),
            }
        }
        Ok(path)
    }

    /// Deletes the objects `rules` expire by `now` (by the file's last
    /// write, as S3 counts from an object's creation) and the directories
    /// that leaves empty; returns the objects deleted. The embedded store's
    /// counterpart of the bucket's lifecycle rules.
    pub async fn expire(&self, rules: Vec<ObjectExpiry>, now: SystemTime) -> Result<u64, StoreError> {
        let root = self.root.clone();
        blocking("expire objects", move || {
            let mut deleted = 0;
            for rule in rules {
                let Some(cutoff) = now.checked_sub(rule.after) else {
                    continue;
                };
                let dir = root.join(rule.prefix.trim_end_matches('/'));
                deleted += expire_under(&dir, cutoff).map_err(backend("expire objects"))?;
            }
            Ok(deleted)
        })
        .await
    }

    /// Every key stored, sorted (for tests).
    pub fn keys(&self) -> Vec<String> {
        fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if prefix.is_empty() && name == TMP_DIR {
                    continue;
                }
                let key = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path(), &key, out),
                    Ok(t) if t.is_file() => out.push(key),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, "", &mut out);
        out.sort();
        out
    }

    fn temp_path(&self) -> PathBuf {
        let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        self.root
            .join(TMP_DIR)
            .join(format!("{}-{seq}-{:08x}.tmp", std::process::id(), fastrand::u32(..)))
    }
}

/// Moves a finished temp file over `target`: creates the target's
/// directories, renames, and syncs the directories whose entries changed.
fn publish(root: &Path, temp: &Path, target: &Path) -> std::io::Result<()> {
    let parent = target.parent().expect("a key's path is under the root");
    for attempt in 0..3 {
        let existed = parent.is_dir();
        std::fs::create_dir_all(parent)?;
        match std::fs::rename(temp, target) {
            Ok(()) => {
                sync_dir(parent)?;
                if !existed {
                    // New directories are entries of their parents, up to the root.
                    let mut dir = parent;
                    while let Some(up) = dir.parent().filter(|_| dir != root) {
                        sync_dir(up)?;
                        dir = up;
                    }
                }
                return Ok(());
            }
            // A delete removed the (then empty) directory meanwhile: again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < 2 => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}

/// Writes `data` to a new temp file, synced.
fn write_temp(temp: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(temp)?;
    f.write_all(data)?;
    f.sync_all()
}

/// The size of the regular file at `path` (`None`: no such object).
fn file_size(path: &Path) -> std::io::Result<Option<u64>> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(Some(m.len())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes files under `dir` last written before `cutoff`, and the
/// directories below `dir` that leaves empty. A missing `dir` is nothing to do.
fn expire_under(dir: &Path, cutoff: SystemTime) -> std::io::Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut deleted = 0;
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            deleted += expire_under(&path, cutoff)?;
            // Only an empty directory goes; one a write just filled stays.
            if std::fs::remove_dir(&path).is_ok() {
                continue;
            }
        } else if kind.is_file() && entry.metadata()?.modified()? < cutoff {
            match std::fs::remove_file(&path) {
                Ok(()) => deleted += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(deleted)
}

#[async_trait]
impl ObjectStore for FsObjects {
    async fn put(&self, key: &str, body: Bytes, _content_type: &str) -> Result<(), StoreError> {
        let target = self.path_of(key)?;
        let temp = self.temp_path();
        let root = self.root.clone();
        blocking("put", move || {
            let done = write_temp(&temp, &body).and_then(|()| publish(&root, &temp, &target));
            if done.is_err() {
                let _ = std::fs::remove_file(&temp);
            }
            done.map_err(backend("put"))
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let path = self.path_of(key)?;
        blocking("get", move || match std::fs::read(&path) {
            Ok(data) => Ok(Some(Bytes::from(data))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            // A key naming a directory (a prefix of other keys) is no object.
            Err(_) if path.is_dir() => Ok(None),
            Err(e) => Err(backend("get")(e)),
        })
        .await
    }

    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Option<Bytes>, StoreError> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.path_of(key)?;
        blocking("get range", move || {
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(_) if path.is_dir() => return Ok(None),
                Err(e) => return Err(backend("get range")(e)),
            };
            file.seek(SeekFrom::Start(start)).map_err(backend("get range"))?;
            let mut data = Vec::with_capacity(end.saturating_sub(start) as usize);
            file.take(end.saturating_sub(start))
                .read_to_end(&mut data)
                .map_err(backend("get range"))?;
            Ok(Some(Bytes::from(data)))
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let path = self.path_of(key)?;
        let key = key.to_owned();
        blocking("head", move || {
            Ok(file_size(&path)
                .map_err(backend("head"))?
                .map(|bytes| ObjectInfo { key, bytes }))
        })
        .await
    }

    async fn open(&self, key: &str) -> Result<(ObjectInfo, ByteStream), StoreError> {
        let path = self.path_of(key)?;
        let owned = key.to_owned();
        let (file, bytes) = blocking("open", move || {
            let not_found = || StoreError::NotFound {
                entity: "object",
                id: owned.clone(),
            };
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
                Err(e) => return Err(backend("open")(e)),
            };
            let meta = file.metadata().map_err(backend("open"))?;
            if !meta.is_file() {
                return Err(not_found());
            }
            Ok((file, meta.len()))
        })
        .await?;
        let info = ObjectInfo {
            key: key.to_owned(),
            bytes,
        };
        // One chunk at a time, read on the blocking pool: never the whole file.
        let stream = futures::stream::unfold(Some(file), |file| async move {
            let mut file = file?;
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; READ_CHUNK];
                let mut filled = 0;
                while filled < buf.len() {
                    match file.read(&mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(backend("read object")(e)),
                    }
                }
                buf.truncate(filled);
                Ok((file, buf))
            })
            .await
            .map_err(|e| StoreError::backend("read object", e))
            .and_then(|r| r);
            match read {
                Ok((_, buf)) if buf.is_empty() => None,
                Ok((file, buf)) => Some((Ok(Bytes::from(buf)), Some(file))),
                Err(e) => Some((Err(e), None)),
            }
        });
        Ok((info, stream.boxed()))
    }

    async fn writer(&self, key: &str, _content_type: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        let target = self.path_of(key)?;
        let temp = self.temp_path();
        let path = temp.clone();
        let file = blocking("writer", move || File::create(&path).map_err(backend("writer"))).await?;
        Ok(Box::new(FsWriter {
            key: key.to_owned(),
            root: self.root.clone(),
            target,
            temp,
            file: Some(file),
            buf: Vec::new(),
            part_bytes: self.part_bytes,
            stats: WriterStats::default(),
            done: false,
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        let root = self.root.clone();
        blocking("delete", move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(_) if path.is_dir() => return Ok(()),
                Err(e) => return Err(backend("delete")(e)),
            }
            // Empty directories left behind go too (a body's `bodies/{key}/`).
            let mut dir = path.parent();
            while let Some(d) = dir.filter(|d| *d != root && d.starts_with(&root)) {
                if std::fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        })
        .await
    }

    /// A `file://` URL of the object's absolute path: it works only on the
    /// machine (and for the users) that can read the data directory; `ttl`
    /// is not enforced.
    async fn presign_get(&self, key: &str, _ttl: Duration) -> Result<String, StoreError> {
        let path = self.path_of(key)?;
        Ok(format!("file://{}", path.display()))
    }
}

/// Buffers at most one part, then appends it to the temp file; nothing is
/// visible under the key until `finish` renames the temp file over it.
struct FsWriter {
    key: String,
    root: PathBuf,
    target: PathBuf,
    temp: PathBuf,
    /// The temp file; out only while a part is being written.
    file: Option<File>,
    buf: Vec<u8>,
    part_bytes: usize,
    stats: WriterStats,
    /// Finished or aborted: the temp file is gone or renamed.
    done: bool,
}

impl FsWriter {
    /// Appends the buffer to the temp file.
    async fn flush_part(&mut self) -> Result<(), StoreError> {
        let mut file = self.file.take().ok_or_else(|| StoreError::Backend {
            op: "write object",
            message: "an earlier write of this object failed".into(),
        })?;
        let buf = std::mem::take(&mut self.buf);
        let (file, mut buf) = blocking("write object", move || {
            file.write_all(&buf).map_err(backend("write object"))?;
            Ok((file, buf))
        })
        .await?;
        buf.clear();
        self.buf = buf;
        self.file = Some(file);
        self.stats.parts_uploaded += 1;
        Ok(())
    }
}

#[async_trait]
impl ObjectWriter for FsWriter {
    async fn write(&mut self, mut data: &[u8]) -> Result<(), StoreError> {
        while !data.is_empty() {
            let take = (self.part_bytes - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.stats.bytes_written += take as u64;
            self.stats.max_buffered = self.stats.max_buffered.max(self.buf.len() as u64);
            if self.buf.len() == self.part_bytes {
                self.flush_part().await?;
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<ObjectInfo, StoreError> {
        // One part or none written yet: a single write, as the other writers.
        if self.stats.parts_uploaded > 0 && !self.buf.is_empty() {
            self.flush_part().await?;
        }
        let mut file = self.file.take().ok_or_else(|| StoreError::Backend {
            op: "finish object",
            message: "an earlier write of this object failed".into(),
        })?;
        let rest = std::mem::take(&mut self.buf);
        let (root, temp, target) = (self.root.clone(), self.temp.clone(), self.target.clone());
        blocking("finish object", move || {
            file.write_all(&rest)
                .and_then(|()| file.sync_all())
                .and_then(|()| {
                    drop(file);
                    publish(&root, &temp, &target)
                })
                .map_err(backend("finish object"))
        })
        .await?;
        self.done = true;
        Ok(ObjectInfo {
            key: self.key.clone(),
            bytes: self.stats.bytes_written,
        })
    }

    async fn abort(mut self: Box<Self>) -> Result<(), StoreError> {
        self.file = None;
        let temp = self.temp.clone();
        self.done = true;
        blocking("abort object", move || match std::fs::remove_file(&temp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(backend("abort object")(e)),
            _ => Ok(()),
        })
        .await
    }

    fn stats(&self) -> WriterStats {
        self.stats
    }
}

impl Drop for FsWriter {
    /// A writer dropped unfinished (its task cancelled, an error on the
    /// way) leaves no temp file behind.
    fn drop(&mut self) {
        if !self.done {
            self.file = None;
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_root() -> PathBuf {
        std::env::temp_dir().join(format!("batchq-fs-{}", uuid::Uuid::new_v4().simple()))
    }

    fn tmp_files(o: &FsObjects) -> Vec<String> {
        std::fs::read_dir(o.root().join(TMP_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[tokio::test]
    async fn expiry_deletes_each_prefixs_objects_past_its_age_and_the_directories_it_empties() {
        let root = temp_root();
        let o = FsObjects::open(&root, 1024).unwrap();
        let day = Duration::from_secs(86_400);
        let now = SystemTime::now();
        let aged = |key: &str, age: Duration| {
            let file = File::options().write(true).open(o.path_of(key).unwrap()).unwrap();
            file.set_modified(now - age).unwrap();
        };
        for key in [
            "inputs/job_old.jsonl",
            "inputs/job_new.jsonl",
            "results/job_old/output.jsonl",
            "results/job_new/output.jsonl",
            "responses/r1/job_old.json",
            "bodies/r2/hash.json",
        ] {
            o.put(key, Bytes::from_static(b"{}"), "application/json").await.unwrap();
        }
        aged("inputs/job_old.jsonl", day * 8);
        aged("inputs/job_new.jsonl", day * 6);
        aged("results/job_old/output.jsonl", day * 31);
        aged("results/job_new/output.jsonl", day * 29);
        aged("responses/r1/job_old.json", day * 31);
        aged("bodies/r2/hash.json", day * 59);

        // With no retention, result files (which results point into),
        // responses and bodies are kept whatever their age.
        let deleted = o.expire(crate::keys::object_expiry(None), now).await.unwrap();
        assert_eq!(deleted, 1);
        assert_eq!(
            o.keys(),
            vec![
                "bodies/r2/hash.json",
                "inputs/job_new.jsonl",
                "responses/r1/job_old.json",
                "results/job_new/output.jsonl",
                "results/job_old/output.jsonl",
            ]
        );

        // A 30-day retention: the response goes, and a result file a day
        // after (its requests finished after it was copied); a body stays
        // until 60 days.
        let deleted = o.expire(crate::keys::object_expiry(Some(day * 30)), now).await.unwrap();
        assert_eq!(deleted, 1);
        assert!(o.keys().contains(&"results/job_old/output.jsonl".to_string()));
        aged("results/job_old/output.jsonl", day * 32);
        let deleted = o.expire(crate::keys::object_expiry(Some(day * 30)), now).await.unwrap();
        assert_eq!(deleted, 1);
        assert!(
            !o.root().join("results/job_old").exists(),
            "the emptied directory went too"
        );
        assert_eq!(
            o.keys(),
            vec![
                "bodies/r2/hash.json",
                "inputs/job_new.jsonl",
                "results/job_new/output.jsonl"
            ]
        );
        aged("bodies/r2/hash.json", day * 61);
        assert_eq!(
            o.expire(crate::keys::object_expiry(Some(day * 30)), now).await.unwrap(),
            1
        );
        assert_eq!(o.keys(), vec!["inputs/job_new.jsonl", "results/job_new/output.jsonl"]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn keys_that_would_leave_the_root_are_refused() {
        let root = temp_root();
        let o = FsObjects::open(&root, 1024).unwrap();
        for bad in ["", "/etc/passwd", "a/../../x", "a//b", "./a", "a/.", ".tmp/x", "a/"] {
            assert!(o.path_of(bad).is_err(), "{bad:?} accepted");
            assert!(o.put(bad, Bytes::from_static(b"x"), "text/plain").await.is_err());
        }
        assert_eq!(o.path_of("a/b.json").unwrap(), o.root().join("a").join("b.json"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn an_aborted_or_dropped_write_leaves_no_object_and_no_temp_file() {
        let root = temp_root();
        let o = FsObjects::open(&root, 4).unwrap();
        let mut w = o.writer("out/a.jsonl", "application/jsonl").await.unwrap();
        w.write(b"0123456789").await.unwrap();
        assert!(w.stats().parts_uploaded >= 2);
        assert_eq!(w.stats().max_buffered, 4);
        w.abort().await.unwrap();
        let mut w = o.writer("out/b.jsonl", "application/jsonl").await.unwrap();
        w.write(b"0123456789").await.unwrap();
        drop(w);
        assert_eq!(o.head("out/a.jsonl").await.unwrap(), None);
        assert_eq!(o.head("out/b.jsonl").await.unwrap(), None);
        assert!(o.keys().is_empty(), "{:?}", o.keys());
        assert!(tmp_files(&o).is_empty(), "{:?}", tmp_files(&o));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn temp_files_of_an_earlier_process_are_removed_at_open_and_ours_kept() {
        let root = temp_root();
        let o = FsObjects::open(&root, 1024).unwrap();
        let tmp = o.root().join(TMP_DIR);
        // A write interrupted by a crash of another process (another pid).
        std::fs::write(tmp.join("999999999-0-deadbeef.tmp"), b"half").unwrap();
        let mut w = o.writer("out/live.jsonl", "application/jsonl").await.unwrap();
        w.write(b"live").await.unwrap();
        let again = FsObjects::open(&root, 1024).unwrap();
        assert_eq!(tmp_files(&again).len(), 1, "only the live writer's temp file stays");
        w.finish().await.unwrap();
        assert_eq!(
            again.get("out/live.jsonl").await.unwrap(),
            Some(Bytes::from_static(b"live"))
        );
        assert!(again.keys() == vec!["out/live.jsonl".to_owned()]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn a_deleted_objects_empty_directory_goes_and_presign_names_the_file() {
        let root = temp_root();
        let o = FsObjects::open(&root, 1024).unwrap();
        o.put("bodies/k/h.json", Bytes::from_static(b"{}"), "application/json")
            .await
            .unwrap();
        let url = o.presign_get("bodies/k/h.json", Duration::from_secs(60)).await.unwrap();
        assert_eq!(url, format!("file://{}", o.root().join("bodies/k/h.json").display()));
        o.delete("bodies/k/h.json").await.unwrap();
        assert!(!o.root().join("bodies").exists());
        o.delete("bodies/k/h.json").await.unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }
}
