//! Request items: the state, body and result items of a request, mapped
//! to and from their domain types. Item shapes are fixed by the tables'
//! indexes and by rows already stored: change them only with a migration.

use super::counters::job_part;
use super::item::{expires_from, n, s, Reader};
use super::schema::*;
use super::Item;
use crate::ids::{ContentHash, CustomId, JobId, ModelName, ProviderName, RequestKey, TenantId};
use crate::money::Money;
use crate::request::{Endpoint, Payload, Request, RequestResult, RequestStatus, Usage};
use crate::store::StoreError;
use crate::time::Timestamp;
use crate::tokens::Weight;

pub(super) fn request_to_item(r: &Request) -> Item {
    let mut item = Item::new();
    item.insert(PK.into(), s(r.key.as_str()));
    item.insert(SK.into(), s(SK_STATE));
    item.insert("tenant".into(), s(r.tenant.as_str()));
    item.insert("custom_id".into(), s(r.custom_id.as_str()));
    item.insert("provider_name".into(), s(r.provider.as_str()));
    item.insert("endpoint".into(), s(r.endpoint.as_str()));
    item.insert("model".into(), s(r.model.as_str()));
    item.insert("status".into(), s(r.status.as_str()));
    item.insert("attempts".into(), n(r.attempts));
    item.insert("content_hash".into(), s(r.content_hash.as_str()));
    item.insert("body_bytes".into(), n(r.body_bytes));
    item.insert("est_tokens".into(), n(r.weight.tokens));
    if r.weight.inputs != 1 {
        item.insert("inputs".into(), n(r.weight.inputs));
    }
    if r.estimated_cost_nanos != 0 {
        item.insert("est_cost_nanos".into(), n(r.estimated_cost_nanos));
    }
    item.insert("created_at".into(), n(r.created_at.millis()));
    item.insert("updated_at".into(), n(r.updated_at.millis()));
    if let Some(job) = &r.job_id {
        item.insert("job_id".into(), s(job.as_str()));
        item.insert("job_part".into(), s(job_part(job, &r.key)));
    }
    if let Some(e) = &r.last_error {
        item.insert("last_error".into(), s(serde_json::to_string(e).unwrap_or_default()));
    }
    if let Some(e) = r.expires_at {
        item.insert(EXPIRES_AT.into(), n(e.millis().div_euclid(1000)));
    }
    if r.status == RequestStatus::Queued {
        item.insert("queue".into(), s(r.queue_group().key()));
        item.insert("queue_order".into(), s(queue_order(r.created_at, &r.key)));
    }
    item
}

/// Sort key of the queue index: creation time first, so retried requests keep
/// their place at the front; the request key breaks ties.
pub(super) fn queue_order(created_at: Timestamp, key: &RequestKey) -> String {
    format!("{:015}#{}", created_at.millis().max(0), key)
}

pub(super) fn request_from_item(item: &Item) -> Result<Request, StoreError> {
    let r = Reader::new(item, "request");
    let body_bytes = r.req_n("body_bytes")?;
    Ok(Request {
        key: r.parse(PK, |v| RequestKey::parse(v).map_err(|e| e.message))?,
        tenant: r.parse("tenant", |v| TenantId::parse(v).map_err(|e| e.message))?,
        custom_id: r.parse("custom_id", |v| CustomId::parse(v).map_err(|e| e.message))?,
        provider: match r.opt_s("provider_name")? {
            Some(v) => ProviderName::parse(v).map_err(|e| r.corrupt(e.message))?,
            None => ProviderName::default_name(),
        },
        endpoint: r.parse("endpoint", |v| Endpoint::parse(v).map_err(|e| e.message))?,
        model: r.parse("model", |v| ModelName::parse(v).map_err(|e| e.message))?,
        status: r.parse("status", |v| v.parse::<RequestStatus>())?,
        attempts: r.req_n("attempts")?,
        job_id: r
            .opt_s("job_id")?
            .map(|v| JobId::parse(v).map_err(|e| r.corrupt(e.message)))
            .transpose()?,
        content_hash: ContentHash::from_stored(r.req_s("content_hash")?.to_owned()),
        body_bytes,
        weight: match r.opt_n("est_tokens")? {
            Some(tokens) => Weight {
                tokens,
                inputs: r.opt_n("inputs")?.unwrap_or(1),
            },
            // Written before weights were kept.
            None => Weight::from_body_bytes(body_bytes),
        },
        // Absent: written before estimates were kept, or an unpriced model.
        estimated_cost_nanos: r.opt_n("est_cost_nanos")?.unwrap_or(0),
        created_at: Timestamp::from_millis(r.req_n("created_at")?),
        updated_at: Timestamp::from_millis(r.req_n("updated_at")?),
        last_error: r.json("last_error")?,
        expires_at: expires_from(&r)?,
    })
}

pub(super) fn payload_attrs(item: &mut Item, prefix: &str, p: &Payload) {
    match p {
        Payload::Inline(json) => {
            item.insert(prefix.to_owned(), s(json.clone()));
        }
        Payload::S3 { key, bytes } => {
            item.insert(format!("{prefix}_s3"), s(key.clone()));
            item.insert(format!("{prefix}_bytes"), n(bytes));
        }
        Payload::Chunk { key, offset, len } => {
            item.insert(format!("{prefix}_chunk"), s(key.clone()));
            item.insert(format!("{prefix}_off"), n(offset));
            item.insert(format!("{prefix}_len"), n(len));
        }
    }
}

pub(super) fn payload_from(r: &Reader<'_>, prefix: &str) -> Result<Option<Payload>, StoreError> {
    if let Some(json) = r.opt_s(prefix)? {
        return Ok(Some(Payload::Inline(json.to_owned())));
    }
    if let Some(key) = r.opt_s(&format!("{prefix}_s3"))? {
        return Ok(Some(Payload::S3 {
            key: key.to_owned(),
            bytes: r.opt_n(&format!("{prefix}_bytes"))?.unwrap_or(0),
        }));
    }
    if let Some(key) = r.opt_s(&format!("{prefix}_chunk"))? {
        let field = |name: &str| -> Result<u64, StoreError> {
            r.opt_n(&format!("{prefix}_{name}"))?
                .ok_or_else(|| StoreError::Corrupt {
                    entity: "request body",
                    id: key.to_owned(),
                    reason: format!("a chunk payload without {prefix}_{name}"),
                })
        };
        return Ok(Some(Payload::Chunk {
            key: key.to_owned(),
            offset: field("off")?,
            len: field("len")?,
        }));
    }
    Ok(None)
}

/// The write-once body item of a request, its payload placed; it expires
/// (`expires_at`, epoch seconds) when given.
pub(super) fn body_to_item(state: &Request, body: &Payload, expires_at: Option<i64>) -> Item {
    let mut item = Item::new();
    item.insert(PK.into(), s(state.key.as_str()));
    item.insert(SK.into(), s(SK_BODY));
    item.insert("content_hash".into(), s(state.content_hash.as_str()));
    payload_attrs(&mut item, "body", body);
    if let Some(e) = expires_at {
        item.insert(EXPIRES_AT.into(), n(e));
    }
    item
}

pub(super) fn result_to_item(res: &RequestResult) -> Item {
    let mut item = Item::new();
    item.insert(PK.into(), s(res.key.as_str()));
    item.insert(SK.into(), s(SK_RESULT));
    // Not `job_id`: that name would put result items into job-index.
    item.insert("result_job".into(), s(res.job_id.as_str()));
    item.insert("recorded_at".into(), n(res.recorded_at.millis()));
    if let Some(code) = res.status_code {
        item.insert("status_code".into(), n(code));
    }
    if let Some(p) = &res.response {
        payload_attrs(&mut item, "response", p);
    }
    if let Some(e) = &res.error {
        item.insert("error".into(), s(serde_json::to_string(e).unwrap_or_default()));
    }
    if let Some(u) = &res.usage {
        item.insert("usage".into(), s(serde_json::to_string(u).unwrap_or_default()));
    }
    if let Some(c) = res.batch_cost {
        item.insert("batch_cost".into(), n(c.picodollars()));
    }
    if let Some(c) = res.realtime_cost {
        item.insert("realtime_cost".into(), n(c.picodollars()));
    }
    if let Some(id) = &res.request_id {
        item.insert("request_id".into(), s(id));
    }
    item
}

pub(super) fn result_from_item(item: &Item) -> Result<RequestResult, StoreError> {
    let r = Reader::new(item, "result");
    Ok(RequestResult {
        key: r.parse(PK, |v| RequestKey::parse(v).map_err(|e| e.message))?,
        job_id: r.parse("result_job", |v| JobId::parse(v).map_err(|e| e.message))?,
        status_code: r.opt_n("status_code")?,
        response: payload_from(&r, "response")?,
        error: r.json("error")?,
        usage: r.json::<Usage>("usage")?,
        batch_cost: r.opt_n::<i128>("batch_cost")?.map(Money::from_picodollars),
        realtime_cost: r.opt_n::<i128>("realtime_cost")?.map(Money::from_picodollars),
        recorded_at: Timestamp::from_millis(r.req_n("recorded_at")?),
        request_id: r.opt_s("request_id")?.map(str::to_owned),
    })
}
