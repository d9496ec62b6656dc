//! The pipeline's steps run by hand: init, submit, poll, ingest.

use crate::exit::Exit;
use crate::output::emit;
use crate::Failure;
use batchq_core::app::{AwsStores, Backend};
use batchq_core::pipeline::SubmitOptions;
use serde_json::json;

use super::Ctx;

pub async fn init(ctx: &Ctx) -> Result<(), Failure> {
    let app = ctx.app()?;
    match &app.backend {
        Backend::Embedded(e) => {
            // Opening the app created the directory and its database.
            let dir = e.dir.path().display().to_string();
            let v = json!({"store": "embedded", "dir": dir});
            emit(ctx.json, &v, || format!("ready: embedded store in {dir}"))?;
            Ok(())
        }
        Backend::Aws(aws) => init_aws(ctx, aws).await,
    }
}

async fn init_aws(ctx: &Ctx, aws: &AwsStores) -> Result<(), Failure> {
    let app = ctx.app()?;
    aws.store.create_tables().await.map_err(|e| ctx.store_failure(e))?;
    if let Some(w) = &aws.webhooks {
        w.create_table().await.map_err(|e| ctx.store_failure(e))?;
    }
    let bucket = &app.config.bucket;
    let s3 = aws.objects.client();
    // us-east-1 answers 200 to creating a bucket one already owns, so ask first.
    let exists = s3.head_bucket().bucket(bucket).send().await.is_ok();
    let created_bucket = if exists {
        false
    } else {
        match s3.create_bucket().bucket(bucket).send().await {
            Ok(_) => true,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_bucket_already_owned_by_you()) =>
            {
                false
            }
            Err(e) => {
                let cause = format!("create bucket {bucket}: {}", batchq_core::error::chain(&e));
                return Err(match e {
                    aws_sdk_s3::error::SdkError::DispatchFailure(_) | aws_sdk_s3::error::SdkError::TimeoutError(_) => {
                        ctx.storage_unavailable(Some(&cause))
                    }
                    _ => cause.into(),
                });
            }
        }
    };
    let cfg = &app.config;
    let v = json!({
        "store": "aws",
        "requests_table": cfg.requests_table,
        "jobs_table": cfg.jobs_table,
        "bucket": bucket,
        "bucket_created": created_bucket,
    });
    emit(ctx.json, &v, || {
        format!(
            "ready: tables {} and {}, bucket {} ({})",
            cfg.requests_table,
            cfg.jobs_table,
            bucket,
            if created_bucket { "created" } else { "already there" }
        )
    })?;
    Ok(())
}

pub async fn submit(ctx: &Ctx, force: bool) -> Result<(), Failure> {
    let report = ctx.submitter().await?.run(SubmitOptions { force }).await?;
    let v = serde_json::to_value(&report)?;
    emit(ctx.json, &v, || {
        let mut lines = Vec::new();
        for j in report.resumed.iter().chain(&report.jobs) {
            lines.push(format!(
                "job {}  {}  {} requests  {}  batch {}",
                j.job_id,
                j.group,
                j.requests,
                j.status,
                j.provider_batch_id.as_deref().unwrap_or("-")
            ));
        }
        for g in report.waiting.iter().chain(&report.held) {
            lines.push(format!("{}: {} queued, {}", g.group, g.queued, g.note));
        }
        lines.extend(report.errors.iter().map(|e| format!("error: {e}")));
        lines.extend(
            report
                .abandoned
                .iter()
                .map(|a| format!("abandoned (job failed, requests released): {a}")),
        );
        if lines.is_empty() {
            lines.push("nothing to submit".into());
        }
        lines.join("\n")
    })?;
    match step_failure("submit", &report.errors, &report.abandoned) {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

pub async fn poll(ctx: &Ctx) -> Result<(), Failure> {
    let providers = ctx.providers().await?;
    let poller = ctx.app()?.poller(providers);
    let report = poller.run().await?;
    let ingester = ctx.app()?.ingester();
    let mut ingested = Vec::new();
    // One file that cannot be ingested does not stop the others (the next
    // poll ingests it again); it is reported and fails the run.
    let mut ingest_errors: Vec<String> = Vec::new();
    let mut not_ingested: Vec<&str> = Vec::new();
    for key in &report.copied {
        match ingester.ingest_key(key).await {
            Ok(r) => ingested.push(serde_json::to_value(r)?),
            Err(e) => {
                ingest_errors.push(format!("ingest {key}: {e}"));
                not_ingested.push(key);
            }
        }
    }
    let v = json!({"poll": report, "ingested": ingested, "ingest_errors": ingest_errors});
    emit(ctx.json, &v, || {
        let mut lines: Vec<String> = report
            .changed
            .iter()
            .map(|c| format!("job {}: {} -> {}", c.job_id, c.from, c.to))
            .collect();
        lines.extend(report.copied.iter().map(|k| {
            if not_ingested.contains(&k.as_str()) {
                format!("copied {k} (not ingested, see the error below)")
            } else {
                format!("copied and ingested {k}")
            }
        }));
        lines.extend(
            report
                .errors
                .iter()
                .chain(&ingest_errors)
                .map(|e| format!("error: {e}")),
        );
        if lines.is_empty() {
            lines.push(format!("{} open jobs checked, nothing changed", report.checked));
        }
        lines.join("\n")
    })?;
    let errors: Vec<String> = report.errors.iter().chain(&ingest_errors).cloned().collect();
    match step_failure("poll", &errors, &[]) {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

/// The failure of a step whose report lists errors or abandoned jobs: what
/// went wrong, named, with the first error in full (the report printed on
/// stdout has them all). `None` when the step did all its work.
pub(crate) fn step_failure(step: &str, errors: &[String], abandoned: &[String]) -> Option<Failure> {
    if errors.is_empty() && abandoned.is_empty() {
        return None;
    }
    let count = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut what = Vec::new();
    if !errors.is_empty() {
        what.push(count(errors.len(), "error", "errors"));
    }
    if !abandoned.is_empty() {
        what.push(count(abandoned.len(), "job abandoned", "jobs abandoned"));
    }
    let what = what.join(", ");
    // Reports carry errors as text; a refused key is the provider error
    // `Unauthorized`, displayed as `<op>: authentication failed: <message>`.
    let message = match errors
        .iter()
        .chain(abandoned)
        .find(|e| e.contains("authentication failed"))
    {
        Some(auth) => format!(
            "{step}: the provider refused the key: {auth} ({what}; check OPENAI_API_KEY, or the secret \
             BATCHQ_OPENAI_API_KEY_SECRET_ARN names)"
        ),
        None => {
            let first = errors
                .first()
                .or(abandoned.first())
                .map(String::as_str)
                .unwrap_or_default();
            format!("{step}: {what}; first: {first}")
        }
    };
    Some(Failure::new(Exit::Partial, message))
}

pub async fn ingest(ctx: &Ctx, url: &str) -> Result<(), Failure> {
    let app = ctx.app()?;
    let key = match (&app.backend, url.strip_prefix("s3://")) {
        (Backend::Aws(_), Some(rest)) => {
            let (bucket, key) = rest
                .split_once('/')
                .ok_or_else(|| format!("{url:?}: expected s3://BUCKET/KEY"))?;
            if bucket != app.config.bucket {
                return Err(format!("bucket {bucket} is not batchq's bucket {}", app.config.bucket).into());
            }
            key
        }
        (Backend::Aws(_), None) => return Err(format!("{url:?}: expected s3://BUCKET/KEY").into()),
        // The embedded store's objects are named by their key alone.
        (Backend::Embedded(_), Some(_)) => {
            return Err(
                format!("{url:?}: the embedded store names result files by key: results/JOB/output.jsonl").into(),
            )
        }
        (Backend::Embedded(_), None) => url,
    };
    let report = app.ingester().ingest_key(key).await?;
    let v = serde_json::to_value(&report)?;
    emit(ctx.json, &v, || {
        format!(
            "{}: {} lines: {} completed, {} failed, {} re-queued, {} replayed, {} not in the job, {} malformed{}",
            report.key,
            report.lines,
            report.completed,
            report.failed,
            report.requeued,
            report.replayed,
            report.not_in_job,
            report.malformed,
            if report.closed { "; job done" } else { "" }
        )
    })?;
    Ok(())
}
