//! S3 object store against the emulator, through the real SDK.

use batchq_core::jsonl::{Line, LineReader};
use batchq_core::store::{ObjectStore, StoreError};
use batchq_tests::TestEnv;
use sha2::{Digest, Sha256};

/// Deterministic line `i` of a synthetic JSONL file, 40–2,000 bytes long.
fn line(i: u64) -> String {
    let pad = "x".repeat(((i * 7919) % 1960) as usize);
    format!("{{\"custom_id\":\"line-{i}\",\"pad\":\"{pad}\"}}")
}

#[tokio::test]
async fn thirty_mb_jsonl_streams_through_a_bounded_buffer_and_reads_back_identical() {
    let env = TestEnv::new().await;
    let part = env.config.limits.s3_part_bytes;
    let key = "inputs/streaming-test.jsonl";

    let mut writer = env.s3.writer(key, "application/jsonl").await.unwrap();
    let mut total = 0u64;
    let mut lines = 0u64;
    let mut written_hash = Sha256::new();
    while total < 30 * 1024 * 1024 {
        let mut l = line(lines);
        l.push('\n');
        writer.write(l.as_bytes()).await.unwrap();
        written_hash.update(l.as_bytes());
        total += l.len() as u64;
        lines += 1;
    }
    let stats = writer.stats();
    let info = writer.finish().await.unwrap();
    assert_eq!(info.bytes, total);
    // The buffer never held more than one part; every full part was uploaded.
    assert!(
        stats.max_buffered <= part,
        "buffered {} > part {part}",
        stats.max_buffered
    );
    assert_eq!(stats.parts_uploaded, total / part, "full parts uploaded while writing");
    assert!(stats.parts_uploaded >= 5);

    let (head, stream) = env.s3.open(key).await.unwrap();
    assert_eq!(head.bytes, total);
    let mut reader = LineReader::new(stream, 1 << 20);
    let mut i = 0u64;
    let mut read_hash = Sha256::new();
    while let Some(l) = reader.next_line().await.unwrap() {
        match l {
            Line::Data { number, bytes } => {
                assert_eq!(number, i + 1);
                assert_eq!(bytes, line(i).as_bytes(), "line {number} differs");
                read_hash.update(&bytes);
                read_hash.update(b"\n");
            }
            other => panic!("unexpected {other:?}"),
        }
        i += 1;
    }
    assert_eq!(i, lines);
    assert_eq!(read_hash.finalize(), written_hash.finalize());
}

#[tokio::test]
async fn small_object_is_one_put_and_nothing_is_visible_before_finish() {
    let env = TestEnv::new().await;
    let key = "results/small.jsonl";
    let mut writer = env.s3.writer(key, "application/jsonl").await.unwrap();
    writer.write(b"{\"a\":1}\n").await.unwrap();
    assert_eq!(env.s3.head(key).await.unwrap(), None, "not visible before finish");
    let stats = writer.stats();
    writer.finish().await.unwrap();
    assert_eq!(stats.parts_uploaded, 0);
    assert_eq!(env.s3.get(key).await.unwrap().unwrap(), &b"{\"a\":1}\n"[..]);
}

#[tokio::test]
async fn aborted_multipart_write_leaves_no_object() {
    let env = TestEnv::new().await;
    let key = "inputs/aborted.jsonl";
    let mut writer = env.s3.writer(key, "application/jsonl").await.unwrap();
    let chunk = vec![b'x'; 1024 * 1024];
    for _ in 0..6 {
        writer.write(&chunk).await.unwrap();
    }
    assert_eq!(writer.stats().parts_uploaded, 1);
    writer.abort().await.unwrap();
    assert_eq!(env.s3.head(key).await.unwrap(), None);
    let uploads = env
        .s3_client
        .list_multipart_uploads()
        .bucket(&env.config.bucket)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "the multipart upload was aborted");
}

#[tokio::test]
async fn missing_objects_are_none_or_not_found() {
    let env = TestEnv::new().await;
    assert_eq!(env.s3.get("nope").await.unwrap(), None);
    assert_eq!(env.s3.head("nope").await.unwrap(), None);
    assert!(matches!(env.s3.open("nope").await, Err(StoreError::NotFound { .. })));
    env.s3
        .put("k", bytes::Bytes::from_static(b"v"), "text/plain")
        .await
        .unwrap();
    let url = env
        .s3
        .presign_get("k", std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert!(url.contains("X-Amz-Signature"), "{url}");
    env.s3.delete("k").await.unwrap();
    assert_eq!(env.s3.get("k").await.unwrap(), None);
}

/// The range reads of a chunk of bodies: S3 (the emulator, a `Range`
/// header), the data directory's files and memory answer the same bytes.
#[tokio::test]
async fn a_range_read_answers_exactly_those_bytes_on_s3_files_and_memory() {
    let env = TestEnv::new().await;
    let dir = std::env::temp_dir().join(format!("batchq-range-{}", uuid::Uuid::new_v4().simple()));
    let fs = batchq_core::store::fs::FsObjects::open(&dir, 5 << 20).unwrap();
    let memory = batchq_core::store::memory::MemoryObjects::default();
    let stores: [(&str, &dyn ObjectStore); 3] = [("s3", env.s3.as_ref()), ("files", &fs), ("memory", &memory)];
    let text: String = (0..2000).map(line).collect::<Vec<_>>().join("\n");
    let key = "bodies/chunks/range-test.jsonl";
    for (name, store) in stores {
        store
            .put(key, bytes::Bytes::from(text.clone()), "application/x-ndjson")
            .await
            .unwrap();
        for (start, end) in [
            (0u64, 1u64),
            (17, 4_000),
            (1_000_000, 1_000_123),
            (text.len() as u64 - 5, text.len() as u64),
        ] {
            let got = store.get_range(key, start, end).await.unwrap().unwrap();
            assert_eq!(
                &got[..],
                &text.as_bytes()[start as usize..end as usize],
                "{name} {start}..{end}"
            );
        }
        // Past the end: what there is.
        let tail = store
            .get_range(key, text.len() as u64 - 3, text.len() as u64 + 100)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&tail[..], &text.as_bytes()[text.len() - 3..], "{name}");
        assert_eq!(
            store.get_range("bodies/chunks/none.jsonl", 0, 10).await.unwrap(),
            None,
            "{name}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
