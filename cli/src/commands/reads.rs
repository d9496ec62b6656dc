//! The read commands: status, stats, jobs, savings.

use crate::output::{emit, text, usd, Align, Table};
use crate::Failure;
use batchq_core::api::query::percent_encode;
use batchq_core::api::ApiRequest;

use serde_json::Value;

use super::Ctx;

pub async fn status(ctx: &Ctx, custom_id: &str) -> Result<(), Failure> {
    let path = format!("/v1/requests/{}", percent_encode(custom_id));
    let v = ctx.call(ApiRequest::get(path)).await?;
    emit(ctx.json, &v, || {
        let mut out = vec![
            format!("{}  {}", text(&v["custom_id"]), text(&v["status"])),
            format!(
                "  {} {} {}  attempts {}  job {}",
                text(&v["provider"]),
                text(&v["url"]),
                text(&v["model"]),
                text(&v["attempts"]),
                text(&v["job_id"])
            ),
            format!(
                "  created {}  updated {}",
                text(&v["created_at"]),
                text(&v["updated_at"])
            ),
        ];
        if !v["last_error"].is_null() {
            out.push(format!(
                "  last error: {}: {}",
                text(&v["last_error"]["code"]),
                text(&v["last_error"]["message"])
            ));
        }
        let r = &v["result"];
        if !r.is_null() {
            out.push(format!(
                "  result: HTTP {}  cost {} (real time {}, saved {})",
                text(&r["status_code"]),
                usd(&r["cost"]["batch"]),
                usd(&r["cost"]["realtime"]),
                usd(&r["cost"]["saved"])
            ));
        }
        out.join("\n")
    })?;
    Ok(())
}

pub async fn stats(ctx: &Ctx) -> Result<(), Failure> {
    let v = ctx.call(ApiRequest::get("/v1/stats")).await?;
    emit(ctx.json, &v, || {
        let by = &v["requests"]["by_status"];
        let mut out = vec![format!(
            "requests: {} queued, {} in flight, {} completed, {} failed, {} cancelled",
            text(&by["queued"]),
            text(&by["claimed"]),
            text(&by["completed"]),
            text(&by["failed"]),
            text(&by["cancelled"])
        )];
        if let Some(age) = v["queue"]["oldest_queued_age_seconds"].as_u64() {
            out.push(format!("oldest queued request: {age}s"));
        }
        out.push(format!("open jobs: {}", text(&v["jobs"]["open"])));
        out.join("\n")
    })?;
    Ok(())
}

pub async fn jobs(ctx: &Ctx, limit: u32) -> Result<(), Failure> {
    let v = ctx
        .call(ApiRequest::get("/v1/jobs").with_query(format!("limit={}", limit.clamp(1, 200))))
        .await?;
    emit(ctx.json, &v, || {
        let jobs = v["jobs"].as_array().cloned().unwrap_or_default();
        if jobs.is_empty() {
            return "no jobs yet".into();
        }
        let mut table = Table::new(&[
            ("job", Align::Left),
            ("status", Align::Left),
            ("provider", Align::Left),
            ("model", Align::Left),
            ("total", Align::Right),
            ("done", Align::Right),
            ("failed", Align::Right),
            ("batch cost", Align::Right),
            ("saved", Align::Right),
            ("AWS overhead", Align::Right),
            ("net saved", Align::Right),
        ]);
        for j in &jobs {
            let c = &j["request_counts"];
            table.row(vec![
                text(&j["id"]),
                text(&j["status"]),
                text(&j["provider"]),
                text(&j["model"]),
                text(&c["total"]),
                text(&c["completed"]),
                text(&c["failed"]),
                usd(&j["totals"]["batch_cost"]),
                usd(&j["totals"]["saved"]),
                usd(&j["aws_overhead_usd"]),
                usd(&j["net_saved_usd"]),
            ]);
        }
        table.render()
    })?;
    Ok(())
}

pub async fn savings(ctx: &Ctx, from: Option<&str>, to: Option<&str>, group_by: &str) -> Result<(), Failure> {
    let mut query = format!("group_by={group_by}");
    for (name, v) in [("from", from), ("to", to)] {
        if let Some(v) = v {
            query.push_str(&format!("&{name}={}", percent_encode(v)));
        }
    }
    let v = ctx.call(ApiRequest::get("/v1/savings").with_query(query)).await?;
    emit(ctx.json, &v, || savings_table(&v, group_by))?;
    Ok(())
}

/// A table of the groups, a total line, and (per day) a bar of the saving.
pub(crate) fn savings_table(v: &Value, group_by: &str) -> String {
    let groups = v["groups"].as_array().cloned().unwrap_or_default();
    if groups.is_empty() {
        return "no completed requests in this period".into();
    }
    let saved = |g: &Value| -> i128 {
        g["saved_usd"]
            .as_str()
            .and_then(batchq_core::money::Money::parse_decimal)
            .map(|m| m.picodollars())
            .unwrap_or(0)
    };
    let max = groups.iter().map(saved).max().unwrap_or(0);
    let mut table = Table::new(&[
        (group_by, Align::Left),
        ("requests", Align::Right),
        ("batch cost", Align::Right),
        ("real-time cost", Align::Right),
        ("saved", Align::Right),
        ("AWS overhead", Align::Right),
        ("net saved", Align::Right),
        (if group_by == "day" { "saved per day" } else { "" }, Align::Left),
    ]);
    for g in &groups {
        let bar = if group_by == "day" && max > 0 {
            "#".repeat((saved(g).max(0) * 30 / max) as usize)
        } else {
            String::new()
        };
        table.row(vec![
            text(&g[group_by]),
            text(&g["requests"]),
            usd(&g["batch_cost_usd"]),
            usd(&g["realtime_cost_usd"]),
            usd(&g["saved_usd"]),
            usd(&g["aws_overhead_usd"]),
            usd(&g["net_saved_usd"]),
            bar,
        ]);
    }
    let t = &v["total"];
    table.row(vec![
        "total".into(),
        text(&t["requests"]),
        usd(&t["batch_cost_usd"]),
        usd(&t["realtime_cost_usd"]),
        usd(&t["saved_usd"]),
        usd(&t["aws_overhead_usd"]),
        usd(&t["net_saved_usd"]),
    ]);
    let mut out = vec![table.render()];
    if let Some(enqueue) = v["enqueue_aws_overhead_usd"].as_str() {
        out.push(format!(
            "the total's AWS overhead includes ${enqueue} of enqueue calls, not in the {group_by} groups"
        ));
    }
    if t["unpriced_requests"].as_u64().unwrap_or(0) > 0 {
        out.push(format!(
            "{} requests used models without a known price; their cost is not included",
            text(&t["unpriced_requests"])
        ));
    }
    out.join("\n")
}
