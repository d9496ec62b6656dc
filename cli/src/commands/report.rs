//! `batchq report`: the daily report (`batchq_core::report`), built from the
//! API this command talks to (the core in this process, or `--api`), so it
//! is the tenant's report either way.

use async_trait::async_trait;
use batchq_core::activity::Hour;
use batchq_core::api::ApiRequest;
use batchq_core::report::{self, render, ApiReader, DailyReport, ReportError};
use batchq_core::time::{Clock, SystemClock};
use serde_json::Value;

use super::Ctx;
use crate::exit::Exit;
use crate::output::{out, Align, Table};
use crate::Failure;

/// The API the command talks to, as the report reads it.
struct Reader<'a>(&'a Ctx);

#[async_trait]
impl ApiReader for Reader<'_> {
    async fn get(&self, path: &str, query: &str) -> Result<Value, ReportError> {
        self.0
            .call(ApiRequest::get(path).with_query(query))
            .await
            .map_err(|f| ReportError::Api {
                path: path.to_owned(),
                message: f.message,
            })
    }
}

pub async fn report(ctx: &Ctx, day: Option<&str>, format: &str) -> Result<(), Failure> {
    let day = match day {
        Some(d) => report::parse_day(d).map_err(|e| Failure::new(Exit::Usage, format!("--day: {e}")))?,
        None => Hour::of(SystemClock.now()).plus(-24).day(),
    };
    let r = report::build(&Reader(ctx), &day)
        .await
        .map_err(|e| Failure::from(e.to_string()))?;
    let format = if ctx.json { "json" } else { format };
    out(&match format {
        "json" => render::json(&r),
        "markdown" => render::markdown(&r),
        "html" => render::html(&r),
        _ => text(&r),
    })
}

/// The report as aligned tables.
fn text(r: &DailyReport) -> String {
    let mut figures = Table::new(&[
        ("figure", Align::Left),
        (r.day.day.as_str(), Align::Right),
        (r.previous.day.as_str(), Align::Right),
        ("change", Align::Right),
    ]);
    for row in render::rows(r) {
        figures.row(vec![row.figure, row.day, row.previous, row.change]);
    }
    let mut parts = vec![render::title(r), String::new(), figures.render()];
    let failures = render::failure_rows(r);
    parts.push(String::new());
    if failures.is_empty() {
        parts.push("failures: none".into());
    } else {
        let mut t = Table::new(&[
            ("failure reason", Align::Left),
            (r.day.day.as_str(), Align::Right),
            (r.previous.day.as_str(), Align::Right),
        ]);
        for (code, d, p) in failures {
            t.row(vec![code, d.to_string(), p.to_string()]);
        }
        parts.push(t.render());
    }
    parts.push(String::new());
    if r.day.slowest.is_empty() {
        parts.push("slowest batches: no batch finished this day".into());
    } else {
        let mut t = Table::new(&[
            ("slowest batch", Align::Left),
            ("model", Align::Left),
            ("status", Align::Left),
            ("submitted", Align::Left),
            ("took", Align::Right),
        ]);
        for b in &r.day.slowest {
            t.row(vec![
                b.job_id.clone(),
                b.model.clone(),
                b.status.clone(),
                b.submitted_at.clone(),
                render::duration(b.seconds),
            ]);
        }
        parts.push(t.render());
        if let Some(prev) = r.previous.slowest.first() {
            parts.push(format!(
                "the slowest batch of {} took {}",
                r.previous.day,
                render::duration(prev.seconds)
            ));
        }
    }
    parts.join("\n")
}
