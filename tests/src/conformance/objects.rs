//! The object store: small puts and gets, streaming reads and writes.

use bytes::Bytes;
use futures::StreamExt;

use batchq_core::store::StoreError;

use super::*;

/// The part size both object stores under test are built with (S3's smallest).
const PART: u64 = 5 * 1024 * 1024;

pub async fn objects_are_put_read_measured_streamed_and_deleted(s: StoreUnderTest) {
    let o = &s.objects;
    assert_eq!(o.get("nope/x.json").await.unwrap(), None);
    assert_eq!(o.head("nope/x.json").await.unwrap(), None);
    let missing = o.open("nope/x.json").await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{:?}",
        missing.err()
    );

    let data = Bytes::from((0..200_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    o.put("a/b.bin", data.clone(), "application/octet-stream")
        .await
        .unwrap();
    assert_eq!(o.get("a/b.bin").await.unwrap(), Some(data.clone()));
    assert_eq!(
        o.head("a/b.bin").await.unwrap().map(|i| (i.key, i.bytes)),
        Some(("a/b.bin".into(), 200_000))
    );
    let (info, mut stream) = o.open("a/b.bin").await.unwrap();
    assert_eq!(info.bytes, 200_000);
    let mut read = Vec::new();
    while let Some(chunk) = stream.next().await {
        read.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(read, data);
    // A put replaces.
    o.put("a/b.bin", Bytes::from_static(b"new"), "text/plain")
        .await
        .unwrap();
    assert_eq!(o.get("a/b.bin").await.unwrap(), Some(Bytes::from_static(b"new")));
    let url = o
        .presign_get("a/b.bin", std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert!(url.contains("a/b.bin"), "{url}");
    o.delete("a/b.bin").await.unwrap();
    assert_eq!(o.get("a/b.bin").await.unwrap(), None);
    o.delete("a/b.bin").await.unwrap();
}

pub async fn a_written_object_appears_only_when_finished_and_an_aborted_one_never(s: StoreUnderTest) {
    let o = &s.objects;
    let mut w = o.writer("out/small.jsonl", "application/jsonl").await.unwrap();
    w.write(b"{\"a\":1}\n").await.unwrap();
    w.write(b"{\"a\":2}\n").await.unwrap();
    assert_eq!(
        o.head("out/small.jsonl").await.unwrap(),
        None,
        "nothing visible before finish"
    );
    assert_eq!(w.stats().bytes_written, 16);
    let info = w.finish().await.unwrap();
    assert_eq!((info.key.as_str(), info.bytes), ("out/small.jsonl", 16));
    assert_eq!(
        o.get("out/small.jsonl").await.unwrap(),
        Some(Bytes::from_static(b"{\"a\":1}\n{\"a\":2}\n"))
    );

    let mut w = o.writer("out/aborted.jsonl", "application/jsonl").await.unwrap();
    w.write(&vec![b'x'; PART as usize + 10]).await.unwrap();
    w.abort().await.unwrap();
    assert_eq!(o.head("out/aborted.jsonl").await.unwrap(), None);

    let empty = o.writer("out/empty.jsonl", "application/jsonl").await.unwrap();
    assert_eq!(empty.finish().await.unwrap().bytes, 0);
    assert_eq!(o.head("out/empty.jsonl").await.unwrap().map(|i| i.bytes), Some(0));
}

pub async fn a_large_written_object_goes_up_in_parts_with_a_bounded_buffer(s: StoreUnderTest) {
    let o = &s.objects;
    let mut w = o.writer("out/large.bin", "application/octet-stream").await.unwrap();
    let chunk: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    for _ in 0..11 {
        w.write(&chunk).await.unwrap();
    }
    let stats = w.stats();
    assert_eq!(stats.bytes_written, 11 * 1024 * 1024);
    assert!(
        stats.max_buffered <= PART,
        "buffer {} over one part",
        stats.max_buffered
    );
    assert!(stats.parts_uploaded >= 2, "{stats:?}");
    let info = w.finish().await.unwrap();
    assert_eq!(info.bytes, 11 * 1024 * 1024);
    let back = o.get("out/large.bin").await.unwrap().unwrap();
    assert_eq!(back.len(), 11 * 1024 * 1024);
    assert_eq!(&back[..1024 * 1024], &chunk[..]);
    assert_eq!(&back[10 * 1024 * 1024..], &chunk[..]);
}
