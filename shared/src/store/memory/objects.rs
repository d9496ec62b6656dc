//! [`ObjectStore`] in memory, with a writer that buffers at most one part
//! and counts parts the way the S3 adapter's multipart writer does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::store::{ByteStream, ObjectInfo, ObjectStore, ObjectWriter, StoreError, WriterStats};

/// Chunk size of [`ObjectStore::open`]'s stream.
const READ_CHUNK: usize = 64 * 1024;

/// The default part size: the smallest S3 accepts (as `config::S3_MIN_PART_BYTES`).
const DEFAULT_PART_BYTES: u64 = 5 * 1024 * 1024;

/// Objects by key. Cheap to clone: clones share the objects.
#[derive(Clone, Debug)]
pub struct MemoryObjects {
    objects: Arc<Mutex<HashMap<String, Bytes>>>,
    part_bytes: usize,
}

impl Default for MemoryObjects {
    fn default() -> Self {
        Self::new(DEFAULT_PART_BYTES)
    }
}

impl MemoryObjects {
    /// `part_bytes` bounds a writer's buffer, as the S3 adapter's part size does.
    pub fn new(part_bytes: u64) -> Self {
        Self {
            objects: Arc::default(),
            part_bytes: part_bytes.max(1) as usize,
        }
    }

    /// Every key stored, sorted (for tests).
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.lock().keys().cloned().collect();
        keys.sort();
        keys
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Bytes>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl ObjectStore for MemoryObjects {
    async fn put(&self, key: &str, body: Bytes, _content_type: &str) -> Result<(), StoreError> {
        self.lock().insert(key.to_owned(), body);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(self.lock().get(key).cloned())
    }

    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Option<Bytes>, StoreError> {
        Ok(self.lock().get(key).map(|b| crate::store::slice_range(b, start, end)))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        Ok(self.lock().get(key).map(|b| ObjectInfo {
            key: key.to_owned(),
            bytes: b.len() as u64,
        }))
    }

    async fn open(&self, key: &str) -> Result<(ObjectInfo, ByteStream), StoreError> {
        let data = self.lock().get(key).cloned().ok_or_else(|| StoreError::NotFound {
            entity: "object",
            id: key.to_owned(),
        })?;
        let info = ObjectInfo {
            key: key.to_owned(),
            bytes: data.len() as u64,
        };
        let chunks: Vec<Result<Bytes, StoreError>> = (0..data.len())
            .step_by(READ_CHUNK)
            .map(|at| Ok(data.slice(at..(at + READ_CHUNK).min(data.len()))))
            .collect();
        Ok((info, futures::stream::iter(chunks).boxed()))
    }

    async fn writer(&self, key: &str, _content_type: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        Ok(Box::new(MemoryWriter {
            objects: self.clone(),
            key: key.to_owned(),
            buf: Vec::new(),
            parts: Vec::new(),
            stats: WriterStats::default(),
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.lock().remove(key);
        Ok(())
    }

    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<String, StoreError> {
        Ok(format!("memory://objects/{key}?expires_in={}", ttl.as_secs()))
    }
}

/// Nothing is visible under the key until `finish`.
struct MemoryWriter {
    objects: MemoryObjects,
    key: String,
    buf: Vec<u8>,
    /// Parts "uploaded" so far (a full buffer each).
    parts: Vec<u8>,
    stats: WriterStats,
}

impl MemoryWriter {
    fn upload_part(&mut self) {
        self.parts.append(&mut self.buf);
        self.stats.parts_uploaded += 1;
    }
}

#[async_trait]
impl ObjectWriter for MemoryWriter {
    async fn write(&mut self, mut data: &[u8]) -> Result<(), StoreError> {
        let part = self.objects.part_bytes;
        while !data.is_empty() {
            let take = (part - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.stats.bytes_written += take as u64;
            self.stats.max_buffered = self.stats.max_buffered.max(self.buf.len() as u64);
            if self.buf.len() == part {
                self.upload_part();
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<ObjectInfo, StoreError> {
        // One part or none uploaded yet: a single put, as the S3 writer does.
        if self.stats.parts_uploaded > 0 && !self.buf.is_empty() {
            self.upload_part();
        }
        let mut all = std::mem::take(&mut self.parts);
        all.append(&mut self.buf);
        let bytes = all.len() as u64;
        self.objects.lock().insert(self.key.clone(), Bytes::from(all));
        Ok(ObjectInfo {
            key: self.key.clone(),
            bytes,
        })
    }

    async fn abort(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }

    fn stats(&self) -> WriterStats {
        self.stats
    }
}
