//! Job items: a job row mapped to and from its item.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;

use super::item::expires_from;
use super::item::{expiry_secs, n, s, Reader};
use super::schema::*;
use super::Item;
use crate::ids::{JobId, ModelName, ProviderBatchId, ProviderFileId, ProviderName, TenantId};
use crate::job::{CostTotals, Job, JobError, JobStatus, ProviderBatchStatus, ProviderKind, RequestCounts};
use crate::money::Money;
use crate::request::Endpoint;
use crate::request::Usage;
use crate::store::StoreError;
use crate::time::Timestamp;
pub(super) fn job_to_item(j: &Job, retention: Option<Duration>) -> Item {
    let mut item = Item::new();
    item.insert(PK.into(), s(format!("job#{}", j.id)));
    item.insert(SK.into(), s(SK_JOB));
    item.insert("kind".into(), s("job"));
    // Open: poll and submit list it (a given-up job stays listed while
    // poll watches its batch for late answers).
    if !j.status.is_terminal() || j.watch_until.is_some() {
        item.insert("open".into(), s("1"));
    }
    item.insert("id".into(), s(j.id.as_str()));
    item.insert("provider".into(), s(j.provider.as_str()));
    item.insert("provider_name".into(), s(j.provider_name.as_str()));
    item.insert("endpoint".into(), s(j.endpoint.as_str()));
    item.insert("model".into(), s(j.model.as_str()));
    item.insert("status".into(), s(j.status.as_str()));
    if let Some(p) = &j.provider_status {
        item.insert("provider_status".into(), s(p.as_str()));
    }
    item.insert("input_key".into(), s(j.input_key.clone()));
    item.insert("input_lines".into(), n(j.input_lines));
    item.insert("input_bytes".into(), n(j.input_bytes));
    item.insert("est_tokens".into(), n(j.tokens));
    item.insert("inputs".into(), n(j.inputs));
    item.insert("tokens_in_flight_before".into(), n(j.tokens_in_flight_before));
    item.insert("budget_refusals_seen".into(), n(j.budget_refusals_seen));
    let ids: [(&str, Option<&str>); 4] = [
        ("provider_file_id", j.provider_file_id.as_ref().map(|v| v.as_str())),
        ("provider_batch_id", j.provider_batch_id.as_ref().map(|v| v.as_str())),
        ("output_file_id", j.output_file_id.as_ref().map(|v| v.as_str())),
        ("error_file_id", j.error_file_id.as_ref().map(|v| v.as_str())),
    ];
    for (name, v) in ids {
        if let Some(v) = v {
            item.insert(name.into(), s(v));
        }
    }
    item.insert("counts_total".into(), n(j.request_counts.total));
    item.insert("counts_completed".into(), n(j.request_counts.completed));
    item.insert("counts_failed".into(), n(j.request_counts.failed));
    if !j.errors.is_empty() {
        item.insert("errors".into(), s(serde_json::to_string(&j.errors).unwrap_or_default()));
    }
    let t = &j.totals;
    item.insert("input_tokens".into(), n(t.usage.input_tokens));
    item.insert("cached_input_tokens".into(), n(t.usage.cached_input_tokens));
    item.insert("output_tokens".into(), n(t.usage.output_tokens));
    item.insert("reasoning_tokens".into(), n(t.usage.reasoning_tokens));
    item.insert("cache_write_tokens".into(), n(t.usage.cache_write_tokens));
    item.insert("batch_cost".into(), n(t.batch_cost.picodollars()));
    item.insert("realtime_cost".into(), n(t.realtime_cost.picodollars()));
    item.insert("unpriced_requests".into(), n(t.unpriced_requests));
    item.insert("created_at".into(), n(j.created_at.millis()));
    item.insert("updated_at".into(), n(j.updated_at.millis()));
    if j.ingested_output {
        item.insert("ingested_output".into(), AttributeValue::Bool(true));
    }
    if j.ingested_errors {
        item.insert("ingested_errors".into(), AttributeValue::Bool(true));
    }
    item.insert("result_lines".into(), n(j.result_lines));
    if j.aws_overhead != Money::ZERO {
        item.insert("aws_overhead".into(), n(j.aws_overhead.picodollars()));
        item.insert("aws_overhead_ingest".into(), n(j.aws_overhead_ingest.picodollars()));
    }
    if let Some(w) = j.watch_until {
        item.insert("watch_until".into(), n(w.millis()));
    }
    if j.late_used > 0 || j.double_spent > 0 {
        item.insert("late_used".into(), n(j.late_used));
        item.insert("double_spent".into(), n(j.double_spent));
        item.insert("double_spent_cost".into(), n(j.double_spent_cost.picodollars()));
    }
    if !j.duplicate_batches.is_empty() {
        item.insert(
            "duplicate_batches".into(),
            AttributeValue::Ss(j.duplicate_batches.iter().map(|b| b.to_string()).collect()),
        );
    }
    for (name, v) in [
        ("submitted_at", j.submitted_at),
        ("finished_at", j.finished_at),
        ("lease_until", j.lease_until),
        ("copied_at", j.copied_at),
    ] {
        if let Some(v) = v {
            item.insert(name.into(), n(v.millis()));
        }
    }
    item.insert("version".into(), n(j.version));
    if !j.tenants.is_empty() {
        item.insert(
            "tenants".into(),
            AttributeValue::Ss(j.tenants.iter().map(|t| t.to_string()).collect()),
        );
    }
    item.insert("tenant_count".into(), n(j.tenant_count));
    if let (true, None, Some(r)) = (j.status.is_terminal(), j.watch_until, retention) {
        item.insert(
            EXPIRES_AT.into(),
            n(expiry_secs(j.finished_at.unwrap_or(j.updated_at), r)),
        );
    }
    item
}

pub(super) fn job_from_item(item: &Item) -> Result<Job, StoreError> {
    let r = Reader::new(item, "job");
    let ts = |name: &str| -> Result<Option<Timestamp>, StoreError> { Ok(r.opt_n(name)?.map(Timestamp::from_millis)) };
    let file = |name: &str| -> Result<Option<ProviderFileId>, StoreError> {
        Ok(ProviderFileId::from_wire(r.opt_s(name)?.map(str::to_owned)))
    };
    Ok(Job {
        id: r.parse("id", |v| JobId::parse(v).map_err(|e| e.message))?,
        provider: r.parse("provider", |v| {
            ProviderKind::parse(v).ok_or_else(|| format!("unknown provider {v}"))
        })?,
        provider_name: match r.opt_s("provider_name")? {
            Some(v) => ProviderName::parse(v).map_err(|e| r.corrupt(e.message))?,
            None => ProviderName::default_name(),
        },
        endpoint: r.parse("endpoint", |v| Endpoint::parse(v).map_err(|e| e.message))?,
        model: r.parse("model", |v| ModelName::parse(v).map_err(|e| e.message))?,
        status: r.parse("status", |v| v.parse::<JobStatus>())?,
        provider_status: r.opt_s("provider_status")?.map(ProviderBatchStatus::parse),
        input_key: r.req_s("input_key")?.to_owned(),
        input_lines: r.req_n("input_lines")?,
        input_bytes: r.req_n("input_bytes")?,
        tokens: r.opt_n("est_tokens")?.unwrap_or(0),
        inputs: r.opt_n("inputs")?.unwrap_or(0),
        tokens_in_flight_before: r.opt_n("tokens_in_flight_before")?.unwrap_or(0),
        budget_refusals_seen: r.opt_n("budget_refusals_seen")?.unwrap_or(0),
        provider_file_id: file("provider_file_id")?,
        provider_batch_id: r.opt_s("provider_batch_id")?.map(ProviderBatchId::new),
        output_file_id: file("output_file_id")?,
        error_file_id: file("error_file_id")?,
        request_counts: RequestCounts {
            total: r.req_n("counts_total")?,
            completed: r.req_n("counts_completed")?,
            failed: r.req_n("counts_failed")?,
        },
        errors: r.json::<Vec<JobError>>("errors")?.unwrap_or_default(),
        totals: CostTotals {
            usage: usage_of(&r)?,
            batch_cost: Money::from_picodollars(r.req_n("batch_cost")?),
            realtime_cost: Money::from_picodollars(r.req_n("realtime_cost")?),
            unpriced_requests: r.req_n("unpriced_requests")?,
        },
        created_at: Timestamp::from_millis(r.req_n("created_at")?),
        updated_at: Timestamp::from_millis(r.req_n("updated_at")?),
        submitted_at: ts("submitted_at")?,
        finished_at: ts("finished_at")?,
        lease_until: ts("lease_until")?,
        copied_at: ts("copied_at")?,
        ingested_output: r.flag("ingested_output"),
        ingested_errors: r.flag("ingested_errors"),
        result_lines: r.opt_n("result_lines")?.unwrap_or(0),
        aws_overhead: Money::from_picodollars(r.opt_n("aws_overhead")?.unwrap_or(0)),
        aws_overhead_ingest: Money::from_picodollars(r.opt_n("aws_overhead_ingest")?.unwrap_or(0)),
        watch_until: ts("watch_until")?,
        late_used: r.opt_n("late_used")?.unwrap_or(0),
        double_spent: r.opt_n("double_spent")?.unwrap_or(0),
        double_spent_cost: Money::from_picodollars(r.opt_n("double_spent_cost")?.unwrap_or(0)),
        duplicate_batches: match item.get("duplicate_batches") {
            None => Vec::new(),
            Some(AttributeValue::Ss(v)) => {
                let mut v: Vec<ProviderBatchId> = v.iter().cloned().map(ProviderBatchId::new).collect();
                v.sort();
                v
            }
            Some(_) => return Err(r.corrupt("duplicate_batches is not a string set".into())),
        },
        version: r.req_n("version")?,
        tenants: match item.get("tenants") {
            None => Vec::new(),
            Some(AttributeValue::Ss(v)) => {
                let mut v = v
                    .iter()
                    .map(|t| TenantId::parse(t.clone()).map_err(|e| r.corrupt(e.message)))
                    .collect::<Result<Vec<_>, _>>()?;
                v.sort();
                v
            }
            Some(_) => return Err(r.corrupt("tenants is not a string set".into())),
        },
        tenant_count: r.opt_n("tenant_count")?.unwrap_or(0),
        expires_at: expires_from(&r)?,
    })
}

/// Token counts stored as `input_tokens`, `cached_input_tokens`,
/// `output_tokens` and `reasoning_tokens` (job and savings items).
pub(super) fn usage_of(r: &Reader<'_>) -> Result<Usage, StoreError> {
    Ok(Usage {
        input_tokens: r.req_n("input_tokens")?,
        cached_input_tokens: r.req_n("cached_input_tokens")?,
        output_tokens: r.req_n("output_tokens")?,
        reasoning_tokens: r.req_n("reasoning_tokens")?,
        cache_write_tokens: r.opt_n("cache_write_tokens")?.unwrap_or(0),
    })
}

// ---------------------------------------------------------------- counters
