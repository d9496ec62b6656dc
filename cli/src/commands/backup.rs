//! `batchq export DIR` and `batchq import DIR`: move a whole store (to AWS,
//! back, or into a backup). The work is `batchq_core::backup`'s; this prints
//! one summary line (or `--json`).

use std::collections::BTreeMap;
use std::path::Path;

use batchq_core::backup;
use serde_json::json;

use super::Ctx;
use crate::exit::Exit;
use crate::output::emit;
use crate::Failure;

/// `3 queued, 2 completed` from counts by status.
fn by_status(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(status, n)| format!("{n} {status}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn export(ctx: &Ctx, dir: &Path) -> Result<(), Failure> {
    let report = backup::export(&ctx.app()?.ports, dir).await?;
    let m = &report.manifest;
    let c = &m.counts;
    let v = json!({
        "dir": dir.display().to_string(),
        "export_id": m.export_id,
        "exported_at": m.exported_at.to_rfc3339(),
        "requests": c.requests,
        "requests_by_status": c.requests_by_status,
        "jobs": c.jobs,
        "objects": c.objects,
        "object_bytes": c.object_bytes,
        "budgets": c.budgets,
        "savings_rows": c.savings,
        "finished_without_body": report.bodies_gone,
        "skipped": report.skipped,
    });
    emit(ctx.json, &v, || {
        let mut out = vec![format!(
            "exported {} requests ({}), {} jobs, {} objects ({} bytes), {} budgets, {} savings rows to {}",
            c.requests,
            by_status(&c.requests_by_status),
            c.jobs,
            c.objects,
            c.object_bytes,
            c.budgets,
            c.savings,
            dir.display()
        )];
        out.extend(report.skipped.iter().map(|s| format!("  skipped {s}")));
        out.join("\n")
    })?;
    partly_failed("export", &report.skipped)
}

pub async fn import(ctx: &Ctx, dir: &Path) -> Result<(), Failure> {
    let r = backup::import(&ctx.app()?.ports, dir).await?;
    let imported: u64 = r.requests_by_status.values().sum();
    let v = json!({
        "dir": dir.display().to_string(),
        "export_id": r.export_id,
        "requests": imported,
        "requests_by_status": r.requests_by_status,
        "requests_created": r.requests_created,
        "requests_present": r.requests_present,
        "requests_continued": r.requests_continued,
        "transitions": r.steps,
        "jobs_created": r.jobs_created,
        "jobs_present": r.jobs_present,
        "objects_copied": r.objects_copied,
        "objects_present": r.objects_present,
        "object_bytes": r.object_bytes,
        "budgets_saved": r.budgets_saved,
        "budgets_kept": r.budgets_kept,
        "savings_rows": r.savings_rows,
        "left_alone": r.off_path,
    });
    emit(ctx.json, &v, || {
        let mut out = vec![format!(
            "imported {imported} requests ({}; {} new, {} already there), {} jobs ({} new), {} objects ({} bytes copied), {} budgets saved, {} savings rows from {}",
            by_status(&r.requests_by_status),
            r.requests_created,
            r.requests_present,
            r.jobs_created + r.jobs_present,
            r.jobs_created,
            r.objects_copied + r.objects_present,
            r.object_bytes,
            r.budgets_saved,
            r.savings_rows,
            dir.display()
        )];
        out.extend(r.off_path.iter().map(|s| format!("  left alone: {s}")));
        out.join("\n")
    })?;
    partly_failed("import", &r.off_path)
}

/// Exit status `Partial` when some rows were left out (listed in the report).
fn partly_failed(what: &str, left: &[String]) -> Result<(), Failure> {
    match left.first() {
        None => Ok(()),
        Some(first) => Err(Failure::new(
            Exit::Partial,
            format!("{what}: {} request(s) left out, first: {first}", left.len()),
        )),
    }
}
