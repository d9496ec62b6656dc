//! The data directory of the embedded store: one directory holds all of
//! batchq's state when it runs as one process (`batchq serve`).
//!
//! ```text
//! DIR/
//!   lock              exclusive lock of the process using DIR; holds its pid
//!   batchq.sqlite3    the rows (SqliteStore), with its -wal and -shm files
//!   objects/          the objects (FsObjects); objects/.tmp/ holds writes in progress
//! ```
//!
//! [`DataDir::open`] takes the lock (`File::try_lock`, an OS-level lock
//! released when the process exits, however it exits) and keeps it as long
//! as the `DataDir`, or any store built from it, lives. A second process,
//! or a second open in the same process, is refused with the pid holding it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::dir_lock::{io, lock};
pub use super::dir_lock::{DataDirError, LockGuard, LOCK_FILE};
use super::fs::FsObjects;
use super::placed::PlacedStore;
use super::sqlite::{SqliteOptions, SqliteStore};
use super::ObjectStore;
use crate::placement::InlineLimits;

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "batchq.sqlite3";
/// The objects directory's name inside the data directory.
pub const OBJECTS_DIR: &str = "objects";

/// An open data directory: its row store and object store, and its lock.
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
    rows: SqliteStore,
    objects: Arc<FsObjects>,
}

impl DataDir {
    /// Opens the data directory at `path` with the default options
    /// (`synchronous=FULL`, rows kept for good, 8 MiB writer parts).
    /// `create`: lay it out when missing; otherwise a missing directory is
    /// an error telling to run `batchq init`.
    pub fn open(path: impl AsRef<Path>, create: bool) -> Result<Self, DataDirError> {
        Self::open_with(path, create, SqliteOptions::default(), FsObjects::DEFAULT_PART_BYTES)
    }

    /// As [`DataDir::open`], with the store's options and the object
    /// writers' buffer bound (`part_bytes`).
    pub fn open_with(
        path: impl AsRef<Path>,
        create: bool,
        options: SqliteOptions,
        part_bytes: u64,
    ) -> Result<Self, DataDirError> {
        let path = path.as_ref().to_owned();
        if !path.is_dir() {
            if !create {
                return Err(DataDirError::Missing { path });
            }
            std::fs::create_dir_all(&path).map_err(io(&path))?;
        }
        let lock = Arc::new(lock(&path)?);
        let objects = Arc::new(FsObjects::open_locked(
            &path.join(OBJECTS_DIR),
            part_bytes,
            Some(lock.clone()),
        )?);
        let rows = SqliteStore::open_locked(&path.join(DATABASE_FILE), options, Some(lock))?;
        Ok(Self { path, rows, objects })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The row store (a clone sharing the connection and the lock).
    pub fn rows(&self) -> SqliteStore {
        self.rows.clone()
    }

    /// The object store under `DIR/objects`.
    pub fn objects(&self) -> Arc<FsObjects> {
        self.objects.clone()
    }

    /// The store as the core uses it: rows in SQLite, bodies and responses
    /// over `limits` as files under `DIR/objects`.
    pub fn store(&self, limits: InlineLimits) -> PlacedStore<SqliteStore> {
        let objects: Arc<dyn ObjectStore> = self.objects.clone();
        self.rows.clone().placed(objects, limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("batchq-datadir-{name}-{}", uuid::Uuid::new_v4().simple()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_second_open_of_a_data_dir_in_use_is_refused_naming_it_and_the_pid() {
        let dir = temp_dir("inuse");
        let first = DataDir::open(&dir, true).unwrap();
        let err = DataDir::open(&dir, true).unwrap_err();
        assert!(matches!(err, DataDirError::InUse { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&dir.display().to_string()), "{text}");
        assert!(text.contains(&format!("(pid {})", std::process::id())), "{text}");
        assert!(text.contains("stop it first"), "{text}");
        // A store built from it keeps the lock after the DataDir is gone.
        let rows = first.rows();
        drop(first);
        assert!(matches!(DataDir::open(&dir, true), Err(DataDirError::InUse { .. })));
        drop(rows);
        DataDir::open(&dir, false).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn opening_a_missing_data_dir_without_create_says_to_run_init() {
        let dir = temp_dir("missing");
        let err = DataDir::open(&dir, false).unwrap_err();
        assert!(matches!(err, DataDirError::Missing { .. }), "{err:?}");
        assert!(err.to_string().contains("batchq init"), "{err}");
        assert!(!dir.exists());
    }

    #[test]
    fn open_lays_out_the_database_objects_and_lock_with_our_pid() {
        let dir = temp_dir("layout");
        let d = DataDir::open(&dir, true).unwrap();
        assert!(dir.join(DATABASE_FILE).is_file());
        assert!(dir.join(OBJECTS_DIR).is_dir());
        let pid = std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        drop(d);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
