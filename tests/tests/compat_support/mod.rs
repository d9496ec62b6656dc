//! What the provider contract tests share: the fake started, an in-memory
//! upload source, a provider config pointed at the fake, input files
//! written by the provider's own format, and result files read by it.

#![allow(dead_code)]

use std::time::Duration;

use async_trait::async_trait;
use batchq_core::config::{Config, ProviderConfig};
use batchq_core::ids::{CustomId, JobId, ProviderFileId, RequestKey, TenantId};
use batchq_core::provider::{CreateBatch, Provider, ProviderError, ResultLine, UploadSource};
use batchq_core::request::Endpoint;
use batchq_core::store::{ByteStream, StoreError};
use bytes::Bytes;
use fake_openai::{FakeConfig, FakeHandle, FakeServer};
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};

/// The fake provider, started with its defaults.
pub async fn fake() -> FakeHandle {
    FakeServer::start(FakeConfig::default()).await.unwrap()
}

/// An in-memory upload source.
pub struct MemSource(pub Vec<u8>);

#[async_trait]
impl UploadSource for MemSource {
    fn filename(&self) -> &str {
        "input.jsonl"
    }
    async fn open(&self) -> Result<(u64, ByteStream), StoreError> {
        let chunks: Vec<Result<Bytes, StoreError>> = self
            .0
            .chunks(64 * 1024)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Ok((self.0.len() as u64, futures::stream::iter(chunks).boxed()))
    }
}

/// The provider config of `kind` at `base`, with 3 retries, no listing lag
/// and `extra` settings on top.
pub fn provider_config(kind: &str, base: &str, extra: &[(&str, &str)]) -> ProviderConfig {
    let mut vars: Vec<(String, String)> = vec![
        ("BATCHQ_PROVIDER".into(), kind.into()),
        ("OPENAI_BASE_URL".into(), base.into()),
        ("OPENAI_API_KEY".into(), "sk-fake".into()),
        ("BATCHQ_HTTP_MAX_RETRIES".into(), "3".into()),
        ("BATCHQ_PROVIDER_LIST_LAG_SECS".into(), "0".into()),
    ];
    for (k, v) in extra {
        vars.retain(|(n, _)| n != k);
        vars.push((k.to_string(), v.to_string()));
    }
    Config::from_lookup(&move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
        .unwrap()
        .provider
}

/// Fast backoff for tests.
pub const BACKOFF: (Duration, Duration) = (Duration::from_millis(1), Duration::from_millis(5));

/// A request's key and body.
pub struct Req {
    pub key: RequestKey,
    pub body: Value,
}

/// `n` chat requests for `model`, with keys derived from `req-0000`….
pub fn requests(n: usize, model: &str) -> Vec<Req> {
    let tenant = TenantId::parse("t1").unwrap();
    (0..n)
        .map(|i| Req {
            key: RequestKey::derive(&tenant, &CustomId::parse(format!("req-{i:04}")).unwrap()),
            body: json!({"model": model, "messages": [{"role": "user", "content": format!("Classify review {i}")}]}),
        })
        .collect()
}

/// The input file of `reqs` as the provider's format writes it.
pub fn input_file(provider: &dyn Provider, reqs: &[Req]) -> Vec<u8> {
    let url = provider.endpoint_url(Endpoint::ChatCompletions);
    let mut out = Vec::new();
    for r in reqs {
        let body = r.body.to_string();
        let before = out.len();
        provider.format().write_input_line(&mut out, &r.key, url, &body);
        assert_eq!(
            (out.len() - before) as u64,
            provider.format().input_line_len(url, body.len() as u64)
        );
    }
    out
}

/// `n` requests for `model` uploaded as an input file: its id and the requests.
pub async fn upload(client: &dyn Provider, n: usize, model: &str) -> (String, Vec<Req>) {
    let reqs = requests(n, model);
    let (file, _) = client.upload_file(&MemSource(input_file(client, &reqs))).await.unwrap();
    (file.id, reqs)
}

/// Deletes the file `id`; a second delete finds it gone.
pub async fn delete_twice(client: &dyn Provider, id: &ProviderFileId) {
    client.delete_file(id).await.unwrap();
    assert!(matches!(
        client.delete_file(id).await,
        Err(ProviderError::NotFound { what: "file", .. })
    ));
}

pub fn create_req(file: &str) -> CreateBatch {
    CreateBatch {
        job_id: JobId::generate(),
        input_file_id: ProviderFileId::new(file),
        input_key: String::new(),
        lines: 0,
        taken: Vec::new(),
        endpoint: Endpoint::ChatCompletions,
        not_before: 0,
    }
}

/// A file's lines, raw.
pub async fn download(provider: &dyn Provider, id: &ProviderFileId) -> Vec<Vec<u8>> {
    let bytes: Vec<Bytes> = provider.file_content(id).await.unwrap().try_collect().await.unwrap();
    bytes
        .concat()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// A result file read line by line with the provider's format.
pub async fn results(provider: &dyn Provider, id: &ProviderFileId) -> Vec<ResultLine> {
    download(provider, id)
        .await
        .iter()
        .enumerate()
        .map(|(i, l)| {
            provider
                .format()
                .read_result_line(Endpoint::ChatCompletions, i as u64 + 1, l)
                .unwrap()
        })
        .collect()
}
