//! The exclusive lock of a data directory, and why a data directory (or a
//! store in it) cannot be opened: what the embedded stores
//! ([`super::sqlite`], [`super::fs`]) and [`super::data_dir`] share.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "lock";

/// Why a data directory (or the store in it) could not be opened.
#[derive(Debug, Error)]
pub enum DataDirError {
    #[error("{} does not exist; run `batchq init` to create it (or `batchq serve`, which creates it)", .path.display())]
    Missing { path: PathBuf },
    #[error("{} is in use by another batchq process{}; stop it first", .path.display(), match .pid {
        Some(p) => format!(" (pid {p})"),
        None => String::new(),
    })]
    InUse { path: PathBuf, pid: Option<u32> },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database {}: {message}", .path.display())]
    Database { path: PathBuf, message: String },
    #[error(
        "database {} has schema version {found}, newer than this batchq knows ({known}); run a newer batchq",
        .path.display()
    )]
    NewerSchema { path: PathBuf, found: i64, known: i64 },
}

pub(crate) fn io(path: &Path) -> impl Fn(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The exclusive lock on `DIR/lock`; released when the last holder drops it.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

/// Takes the exclusive lock of `dir` and writes our pid into the lock file.
pub(crate) fn lock(dir: &Path) -> Result<LockGuard, DataDirError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(DataDirError::InUse {
                path: dir.to_owned(),
                pid: text.trim().parse().ok(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
    }
    file.set_len(0).map_err(io(&path))?;
    file.seek(SeekFrom::Start(0)).map_err(io(&path))?;
    writeln!(file, "{}", std::process::id()).map_err(io(&path))?;
    file.sync_all().map_err(io(&path))?;
    Ok(LockGuard { _file: file })
}
