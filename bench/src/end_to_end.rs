//! The end-to-end run: enqueue, submit, poll, ingest through the real
//! function binaries, phase by phase, metered.

use batchq_bench::cost::{self};
use batchq_bench::data;
use batchq_bench::meter::Meter;
use batchq_core::app::App;
use serde_json::Value;
use std::time::{Duration, Instant};

use crate::{Env, Sizes};

use crate::events::{api_event, api_get_event, as_json, fresh_app, s3_event, scheduled_event, status_of};
use crate::report::Phase;

/// Runs a phase: `f` does the work and returns (requests, invocations as (ms, memory MB), API units).
pub(crate) struct PhaseClock {
    pub(crate) name: String,
    pub(crate) t: Instant,
    pub(crate) meter: Meter,
    pub(crate) fake_calls: usize,
}

impl PhaseClock {
    pub(crate) async fn start(env: &Env, name: &str) -> Result<Self, String> {
        Ok(Self {
            name: name.to_owned(),
            meter: env.meter().await?,
            fake_calls: env.fake.log().len(),
            t: Instant::now(),
        })
    }

    pub(crate) async fn finish(
        self,
        env: &Env,
        requests: u64,
        invocations: &[(Duration, u32)],
        api_units: u64,
    ) -> Result<Phase, String> {
        let wall_s = self.t.elapsed().as_secs_f64();
        let meter = env.meter().await?.since(&self.meter);
        Ok(Phase {
            name: self.name,
            requests,
            wall_s,
            invocations: invocations.len() as u64,
            lambda_ms: invocations.iter().map(|(d, _)| d.as_secs_f64() * 1000.0).sum(),
            lambda_mb_ms: invocations
                .iter()
                .map(|(d, m)| cost::billed_mb_ms(d.as_secs_f64() * 1000.0, *m))
                .sum(),
            api_gateway_units: api_units,
            provider_calls: (env.fake.log().len() - self.fake_calls) as u64,
            meter,
        })
    }
}

pub(crate) fn line_of(custom_id: &str, body: &str) -> String {
    format!(r#"{{"custom_id":"{custom_id}","method":"POST","url":"/v1/chat/completions","body":{body}}}"#)
}

pub(crate) struct E2e {
    pub(crate) phases: Vec<Phase>,
    pub(crate) completed: u64,
    pub(crate) saved_usd: f64,
    pub(crate) input_bytes: u64,
    pub(crate) result_bytes: u64,
    pub(crate) body_bytes: u64,
    /// batchq's own figure of its AWS overhead for the run, dollars:
    /// `aws_overhead_usd` of `/v1/savings` (the whole run's tenant).
    pub(crate) recorded_overhead_usd: Option<f64>,
    /// Of it, what batchq folded at enqueue: `enqueue_aws_overhead_usd`.
    pub(crate) recorded_enqueue_usd: Option<f64>,
}

pub(crate) async fn end_to_end(env: &Env, sizes: &Sizes) -> Result<E2e, String> {
    let app = fresh_app(&env.endpoint, "e2e").await?;
    let enqueue = env.start(&app, "batchq-enqueue", "e2e").await?;
    let submit = env.start(&app, "batchq-submit", "e2e").await?;
    let poll = env.start(&app, "batchq-poll", "e2e").await?;
    let ingest = env.start(&app, "batchq-ingest", "e2e").await?;
    let mut rng = fastrand::Rng::with_seed(42);
    // A small-model workload: review classification on gpt-4o-mini, a quarter on gpt-4.1-nano.
    let lines: Vec<String> = (0..sizes.requests)
        .map(|i| {
            let model = if i % 4 == 3 { "gpt-4.1-nano" } else { "gpt-4o-mini" };
            let size = data::size_between(&mut rng, 512, 8192);
            line_of(&format!("e2e-{i}"), &data::chat_body(&mut rng, model, size))
        })
        .collect();
    let body_bytes: u64 = lines.iter().map(|l| l.len() as u64).sum();
    let mut phases = Vec::new();

    // Enqueue, one request per call.
    let clock = PhaseClock::start(env, "enqueue (single)").await?;
    let mut inv = Vec::new();
    let mut units = 0;
    for line in &lines[..sizes.single] {
        units += cost::api_units(line.len() as u64);
        let (resp, took) = enqueue
            .invoke(api_event("/v1/requests", "application/json", line))
            .await?;
        let (status, body) = status_of(&resp);
        if status != 202 {
            return Err(format!("enqueue answered {status}: {body}"));
        }
        inv.push((took, 256));
    }
    phases.push(clock.finish(env, sizes.single as u64, &inv, units).await?);

    // Enqueue in bulk, in chunks that fit API Gateway's payload limit.
    let clock = PhaseClock::start(env, "enqueue (bulk)").await?;
    let mut inv = Vec::new();
    let mut units = 0;
    let rest = &lines[sizes.single..];
    let mut start = 0;
    while start < rest.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < rest.len() && end - start < 5_000 && bytes + rest[end].len() < 4_500_000 {
            bytes += rest[end].len() + 1;
            end += 1;
        }
        let body = rest[start..end].join("\n");
        units += cost::api_units(body.len() as u64);
        let (resp, took) = enqueue
            .invoke(api_event("/v1/requests/bulk", "application/x-ndjson", &body))
            .await?;
        let (status, out) = status_of(&resp);
        let created = out["summary"]["created"].as_u64().unwrap_or(0);
        if status != 200 || created != (end - start) as u64 {
            return Err(format!("bulk enqueue answered {status}: {}", out["summary"]));
        }
        inv.push((took, 256));
        start = end;
    }
    phases.push(clock.finish(env, rest.len() as u64, &inv, units).await?);

    // Submit: every group is due (BATCHQ_SUBMIT_MIN_REQUESTS=1).
    let clock = PhaseClock::start(env, "submit").await?;
    let mut inv = Vec::new();
    let mut claimed = 0;
    let mut input_bytes = 0;
    for _ in 0..10 {
        let (resp, took) = submit.invoke(scheduled_event()).await?;
        inv.push((took, 512));
        let report = as_json(&resp);
        let n = report["claimed"].as_u64().unwrap_or(0);
        for job in report["jobs"].as_array().into_iter().flatten() {
            input_bytes += job["bytes"].as_u64().unwrap_or(0);
        }
        claimed += n;
        if n == 0 || claimed >= sizes.requests as u64 {
            break;
        }
    }
    if claimed != sizes.requests as u64 {
        return Err(format!("submit claimed {claimed} of {} requests", sizes.requests));
    }
    phases.push(clock.finish(env, sizes.requests as u64, &inv, 0).await?);

    // Poll: the fake finishes a batch at its first retrieve; poll copies the files.
    let clock = PhaseClock::start(env, "poll").await?;
    let mut inv = Vec::new();
    let mut copied = Vec::new();
    for _ in 0..20 {
        let (resp, took) = poll.invoke(scheduled_event()).await?;
        inv.push((took, 512));
        let report = as_json(&resp);
        for k in report["copied"].as_array().into_iter().flatten() {
            copied.push(k.as_str().unwrap_or_default().to_owned());
        }
        if report["checked"].as_u64().unwrap_or(0) == 0 || report["errors"].as_array().is_some_and(|e| !e.is_empty()) {
            break;
        }
    }
    phases.push(clock.finish(env, sizes.requests as u64, &inv, 0).await?);

    // Sizes of the copies, outside any phase (these calls are the bench's own).
    let mut result_bytes = 0;
    let mut objects = Vec::new();
    for key in &copied {
        let head = s3_client(&app)?
            .head_object()
            .bucket(&app.config.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| format!("head {key}: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        let size = head.content_length().unwrap_or(0) as u64;
        result_bytes += size;
        objects.push((key.clone(), size));
    }

    // Ingest: one S3 notification per result file.
    let clock = PhaseClock::start(env, "ingest").await?;
    let mut inv = Vec::new();
    let mut completed = 0;
    let mut saved = 0f64;
    for (key, size) in &objects {
        let (resp, took) = ingest.invoke(s3_event(&app.config.bucket, key, *size)).await?;
        inv.push((took, 512));
        for r in as_json(&resp)["ingested"].as_array().into_iter().flatten() {
            completed += r["completed"].as_u64().unwrap_or(0);
            let money = |v: &Value| {
                v.as_f64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .unwrap_or(0.0)
            };
            saved += (money(&r["totals"]["realtime_cost"]) - money(&r["totals"]["batch_cost"])) / 1e12;
        }
    }
    phases.push(clock.finish(env, sizes.requests as u64, &inv, 0).await?);

    // batchq's own account of the run's AWS use (read after the run; the
    // read is not in any phase).
    let (resp, _) = enqueue.invoke(api_get_event("/v1/savings", "group_by=model")).await?;
    let (status, body) = status_of(&resp);
    let dollars = |v: &Value| v.as_str().and_then(|s| s.parse::<f64>().ok());
    let (recorded_overhead_usd, recorded_enqueue_usd) = if status == 200 {
        (
            dollars(&body["total"]["aws_overhead_usd"]),
            dollars(&body["enqueue_aws_overhead_usd"]),
        )
    } else {
        eprintln!("bench: /v1/savings answered {status}: {body}");
        (None, None)
    };

    for f in [enqueue, submit, poll, ingest] {
        f.stop().await;
    }
    Ok(E2e {
        phases,
        completed,
        saved_usd: saved,
        input_bytes,
        result_bytes,
        body_bytes,
        recorded_overhead_usd,
        recorded_enqueue_usd,
    })
}

/// The S3 client of an app on the AWS stores (the emulator's).
pub(crate) fn s3_client(app: &App) -> Result<&aws_sdk_s3::Client, String> {
    Ok(app
        .aws()
        .ok_or("the bench's emulator app is not on the AWS stores")?
        .objects
        .client())
}

pub(crate) async fn upload(app: &App, key: &str, data: &[u8]) -> Result<(), String> {
    let s3 = s3_client(app)?;
    let err = |e: String| format!("upload {key}: {e}");
    let up = s3
        .create_multipart_upload()
        .bucket(&app.config.bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| err(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
    let id = up.upload_id().unwrap_or_default().to_owned();
    let mut parts = Vec::new();
    for (i, chunk) in data.chunks(16 << 20).enumerate() {
        let n = i as i32 + 1;
        let out = s3
            .upload_part()
            .bucket(&app.config.bucket)
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .body(aws_sdk_s3::primitives::ByteStream::from(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| err(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        parts.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(n)
                .set_e_tag(out.e_tag)
                .build(),
        );
    }
    s3.complete_multipart_upload()
        .bucket(&app.config.bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map_err(|e| err(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
    Ok(())
}
