//! A 150 MB input file streams from S3 (the emulator) to the provider (the
//! fake) without being held in memory: the client only ever holds one chunk.

use std::sync::Arc;

use batchq_core::config::Config;
use batchq_core::provider::openai::OpenAiClient;
use batchq_core::provider::{ObjectSource, Provider};
use batchq_core::store::ObjectStore;
use batchq_tests::TestEnv;
use fake_openai::{FakeConfig, FakeServer};
use sha2::{Digest, Sha256};

#[tokio::test]
async fn upload_of_150_mb_streams_from_s3_with_bounded_chunks() {
    let env = TestEnv::new().await;
    let fake = FakeServer::start(FakeConfig::default()).await.unwrap();

    // Write 150 MB of JSONL lines with the streaming writer.
    let key = "inputs/big.jsonl";
    let target: u64 = 150 * 1024 * 1024;
    let mut writer = env.s3.writer(key, "application/jsonl").await.unwrap();
    let mut hash = Sha256::new();
    let mut written = 0u64;
    let mut i = 0u64;
    let pad = "p".repeat(2900);
    while written < target {
        let line = format!(
            "{{\"custom_id\":\"r{i:08}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"{pad}\"}}]}}}}\n"
        );
        writer.write(line.as_bytes()).await.unwrap();
        hash.update(line.as_bytes());
        written += line.len() as u64;
        i += 1;
    }
    writer.finish().await.unwrap();
    let expected_hash: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();

    let base = fake.base_url();
    let cfg = Config::from_lookup(&|k| (k == "OPENAI_BASE_URL").then(|| base.clone())).unwrap();
    let client = OpenAiClient::new(&cfg.provider, "sk-fake").unwrap();
    let objects: Arc<dyn ObjectStore> = env.s3.clone();
    let source = ObjectSource {
        objects,
        key: key.into(),
        filename: "big.jsonl".into(),
    };
    let (file, stats) = client.upload_file(&source).await.unwrap();

    assert_eq!(stats.bytes_sent, written);
    assert!(stats.chunks > 100, "streamed in many chunks, got {}", stats.chunks);
    // The largest piece ever handed over is a small fraction of the file.
    assert!(
        stats.max_chunk <= 1024 * 1024,
        "largest chunk {} bytes",
        stats.max_chunk
    );
    eprintln!(
        "uploaded {} bytes in {} chunks, largest {} bytes",
        stats.bytes_sent, stats.chunks, stats.max_chunk
    );
    assert_eq!(fake.file_digest(&file.id), Some((written, expected_hash)));
}
