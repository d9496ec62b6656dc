//! S3 adapter of [`ObjectStore`]: small gets and puts, streaming reads, and a
//! multipart writer whose buffer never exceeds one part.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::StreamExt;

use super::{ByteStream, ObjectInfo, ObjectStore, ObjectWriter, StoreError, WriterStats};

#[derive(Clone, Debug)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    part_bytes: usize,
}

impl S3Store {
    /// `part_bytes` is the multipart part size (at least 5 MiB for real S3)
    /// and the writer's buffer bound.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>, part_bytes: u64) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            part_bytes: part_bytes as usize,
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }
}

fn sdk_err<E: std::error::Error + 'static>(op: &'static str, e: aws_sdk_s3::error::SdkError<E>) -> StoreError {
    StoreError::backend(op, crate::error::chain(&e))
}

/// Turns the SDK's body into a stream of chunks.
fn into_stream(body: SdkByteStream) -> ByteStream {
    futures::stream::unfold(Some(body), |state| async move {
        let mut body = state?;
        match body.next().await {
            Some(Ok(chunk)) => Some((Ok(chunk), Some(body))),
            Some(Err(e)) => Some((Err(StoreError::backend("s3 GetObject body", e)), None)),
            None => None,
        }
    })
    .boxed()
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(SdkByteStream::from(body))
            .send()
            .await
            .map_err(|e| sdk_err("s3 PutObject", e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => {
                let data = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| StoreError::backend("s3 GetObject body", e))?;
                Ok(Some(data.into_bytes()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(sdk_err("s3 GetObject", e)),
        }
    }

    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Option<Bytes>, StoreError> {
        if end <= start {
            return Ok(self.head(key).await?.map(|_| Bytes::new()));
        }
        let range = format!("bytes={start}-{}", end - 1);
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(range)
            .send()
            .await
        {
            Ok(out) => {
                let data = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| StoreError::backend("s3 GetObject body", e))?;
                Ok(Some(data.into_bytes()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            // A range wholly past the object's end.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => Ok(Some(Bytes::new())),
            Err(e) => Err(sdk_err("s3 GetObject", e)),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => Ok(Some(ObjectInfo {
                key: key.to_owned(),
                bytes: out.content_length().unwrap_or(0).max(0) as u64,
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(sdk_err("s3 HeadObject", e)),
        }
    }

    async fn open(&self, key: &str) -> Result<(ObjectInfo, ByteStream), StoreError> {
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => {
                let info = ObjectInfo {
                    key: key.to_owned(),
                    bytes: out.content_length().unwrap_or(0).max(0) as u64,
                };
                Ok((info, into_stream(out.body)))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Err(StoreError::NotFound {
                entity: "object",
                id: key.to_owned(),
            }),
            Err(e) => Err(sdk_err("s3 GetObject", e)),
        }
    }

    async fn writer(&self, key: &str, content_type: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        Ok(Box::new(S3Writer {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            content_type: content_type.to_owned(),
            part_bytes: self.part_bytes,
            buf: Vec::new(),
            upload_id: None,
            parts: Vec::new(),
            stats: WriterStats::default(),
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sdk_err("s3 DeleteObject", e))?;
        Ok(())
    }

    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<String, StoreError> {
        let conf = PresigningConfig::expires_in(ttl).map_err(|e| StoreError::backend("s3 presign", e))?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(conf)
            .await
            .map_err(|e| sdk_err("s3 presign", e))?;
        Ok(req.uri().to_owned())
    }
}

/// Buffers up to one part; a small object becomes one PutObject, a large one
/// a multipart upload, so memory stays at one part whatever the object size.
struct S3Writer {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    content_type: String,
    part_bytes: usize,
    buf: Vec<u8>,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    stats: WriterStats,
}

impl S3Writer {
    async fn upload_part(&mut self) -> Result<(), StoreError> {
        if self.upload_id.is_none() {
            let out = self
                .client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .content_type(&self.content_type)
                .send()
                .await
                .map_err(|e| sdk_err("s3 CreateMultipartUpload", e))?;
            let id = out
                .upload_id
                .ok_or_else(|| StoreError::backend("s3 CreateMultipartUpload", "no upload id returned"))?;
            self.upload_id = Some(id);
        }
        let upload_id = self.upload_id.clone().unwrap_or_default();
        let part_number = self.parts.len() as i32 + 1;
        let body = Bytes::from(std::mem::take(&mut self.buf));
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .part_number(part_number)
            .body(SdkByteStream::from(body))
            .send()
            .await
            .map_err(|e| sdk_err("s3 UploadPart", e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(part_number)
                .set_e_tag(out.e_tag)
                .set_checksum_crc32(out.checksum_crc32)
                .set_checksum_crc64_nvme(out.checksum_crc64_nvme)
                .build(),
        );
        self.stats.parts_uploaded += 1;
        Ok(())
    }

    async fn abort_upload(&mut self) -> Result<(), StoreError> {
        if let Some(id) = self.upload_id.take() {
            self.client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(id)
                .send()
                .await
                .map_err(|e| sdk_err("s3 AbortMultipartUpload", e))?;
        }
        Ok(())
    }

    async fn finish_inner(&mut self) -> Result<(), StoreError> {
        if self.upload_id.is_none() {
            let body = Bytes::from(std::mem::take(&mut self.buf));
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .content_type(&self.content_type)
                .body(SdkByteStream::from(body))
                .send()
                .await
                .map_err(|e| sdk_err("s3 PutObject", e))?;
            return Ok(());
        }
        if !self.buf.is_empty() {
            self.upload_part().await?;
        }
        let upload_id = self.upload_id.clone().unwrap_or_default();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut self.parts)))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk_err("s3 CompleteMultipartUpload", e))?;
        self.upload_id = None;
        Ok(())
    }
}

#[async_trait]
impl ObjectWriter for S3Writer {
    async fn write(&mut self, mut data: &[u8]) -> Result<(), StoreError> {
        while !data.is_empty() {
            if self.buf.capacity() == 0 {
                self.buf.reserve_exact(self.part_bytes.min(data.len().max(64 * 1024)));
            }
            let take = (self.part_bytes - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.stats.bytes_written += take as u64;
            self.stats.max_buffered = self.stats.max_buffered.max(self.buf.len() as u64);
            if self.buf.len() == self.part_bytes {
                if let Err(e) = self.upload_part().await {
                    let _ = self.abort_upload().await;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<ObjectInfo, StoreError> {
        if let Err(e) = self.finish_inner().await {
            let _ = self.abort_upload().await;
            return Err(e);
        }
        Ok(ObjectInfo {
            key: self.key.clone(),
            bytes: self.stats.bytes_written,
        })
    }

    async fn abort(mut self: Box<Self>) -> Result<(), StoreError> {
        self.abort_upload().await
    }

    fn stats(&self) -> WriterStats {
        self.stats
    }
}
