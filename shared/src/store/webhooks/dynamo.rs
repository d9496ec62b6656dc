//! The webhook store on DynamoDB, in its own table (`BATCHQ_WEBHOOKS_TABLE`;
//! key `pk`, `sk`; no index). Items, each small but the delivery:
//!
//! * `endpoint` / `{endpoint id}`: an endpoint (`json`, with its secret),
//!   `tenant`, `enabled`, and its positions: `feed` (feed cursor) and
//!   `jobs` (job mark). Every endpoint shares this one partition: a tenant
//!   has at most 20 and a pass reads them all anyway.
//! * `d#{delivery id}` / `d`: a delivery (`json`, body included), `tenant`,
//!   `endpoint`, `st` (status), `list_sk`.
//! * `due#{endpoint id}` / `{next attempt, 15 digits}#{delivery id}`: there
//!   while the delivery is pending; a pass reads the due ones of an endpoint
//!   in order from here (`created`: when the delivery was made, for the
//!   oldest-undelivered figure).
//! * `list#{tenant}` / `{created, 15 digits}#{index, 3 digits}#{delivery id}`:
//!   the tenant's listing, newest first, with `st` and `endpoint` to filter
//!   on.
//!
//! `materialise` is one TransactWriteItems: the endpoint's position moved
//! from what the caller read (conditioned on it) and three puts per new
//! delivery, at most [`MATERIALISE_MAX`] deliveries (more are written in
//! parts, each conditioned on the position, the last one moving it). Saving
//! a delivery after an attempt is one transaction of its item (conditioned
//! on the status and attempts read), its due item and its listing item.
//! Concurrent deliver runs are kept apart by the function's reserved
//! concurrency of 1 (see `docs/architecture.md`), not by leases here.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, KeySchemaElement, KeyType,
    KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TransactWriteItem, Update,
};

use crate::feed::FeedCursor;
use crate::ids::TenantId;
use crate::store::webhooks::{EndpointState, JobMark, WebhookStore, MATERIALISE_MAX};
use crate::store::StoreError;
use crate::time::Timestamp;
use crate::webhook::delivery::{Delivery, DeliveryId, DeliveryStatus};
use crate::webhook::endpoint::{Endpoint, EndpointId};

type Item = HashMap<String, AttributeValue>;

const PK: &str = "pk";
const SK: &str = "sk";
const ENDPOINTS_PK: &str = "endpoint";
const DELIVERY_SK: &str = "d";
/// The table's TTL attribute (epoch seconds): a delivered or failed
/// delivery and its listing item go `retention` after they ended.
const EXPIRES_AT: &str = "expires_at";

/// Attempts at a transaction cancelled only by contention or throttling.
const CONTENTION_RETRIES: u32 = 8;

#[derive(Clone)]
pub struct DynamoWebhooks {
    client: aws_sdk_dynamodb::Client,
    table: String,
    retention: Option<Duration>,
}

impl std::fmt::Debug for DynamoWebhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoWebhooks").field("table", &self.table).finish()
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

fn delivery_key(id: &DeliveryId) -> Item {
    key(format!("d#{id}"), DELIVERY_SK)
}

fn due_key(d: &Delivery) -> Item {
    key(
        format!("due#{}", d.endpoint),
        format!("{:015}#{}", d.next_attempt_at.millis().max(0), d.id),
    )
}

fn list_pk(t: &TenantId) -> String {
    format!("list#{t}")
}

fn backend(op: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::backend(op, e)
}

fn sdk_err<E: std::error::Error + 'static, R: std::fmt::Debug + 'static>(
    op: &'static str,
) -> impl Fn(aws_sdk_dynamodb::error::SdkError<E, R>) -> StoreError {
    move |e| StoreError::backend(op, crate::error::chain(&e))
}

fn corrupt(entity: &'static str, item: &Item, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        entity,
        id: item
            .get(PK)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_else(|| "?".into()),
        reason: reason.to_string(),
    }
}

fn opt_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn req_s<'a>(entity: &'static str, item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    opt_s(item, name).ok_or_else(|| corrupt(entity, item, format!("{name} is missing")))
}

fn endpoint_of(item: &Item) -> Result<Endpoint, StoreError> {
    serde_json::from_str(req_s("webhook endpoint", item, "json")?).map_err(|e| corrupt("webhook endpoint", item, e))
}

fn state_of(item: &Item) -> Result<EndpointState, StoreError> {
    Ok(EndpointState {
        endpoint: endpoint_of(item)?,
        cursor: opt_s(item, "feed")
            .map(|c| {
                c.parse::<FeedCursor>()
                    .map_err(|e| corrupt("webhook endpoint", item, e))
            })
            .transpose()?,
        jobs: opt_s(item, "jobs")
            .map(|m| JobMark::decode(m).map_err(|e| corrupt("webhook endpoint", item, e)))
            .transpose()?,
    })
}

fn delivery_of(item: &Item) -> Result<Delivery, StoreError> {
    serde_json::from_str(req_s("webhook delivery", item, "json")?).map_err(|e| corrupt("webhook delivery", item, e))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| backend("webhook item", e))
}

fn put(table: &str, item: Item, condition: Option<&str>) -> TransactWriteItem {
    TransactWriteItem::builder()
        .put(
            Put::builder()
                .table_name(table)
                .set_item(Some(item))
                .set_condition_expression(condition.map(str::to_owned))
                .build()
                .expect("table and item set"),
        )
        .build()
}

fn delete(table: &str, key: Item) -> TransactWriteItem {
    TransactWriteItem::builder()
        .delete(
            Delete::builder()
                .table_name(table)
                .set_key(Some(key))
                .build()
                .expect("table and key set"),
        )
        .build()
}

/// Why a transaction did not commit.
enum Cancelled {
    /// The action at this index failed its condition; the item as it was
    /// when it asked for it.
    Condition { at: usize, item: Option<Item> },
}

/// Which of an endpoint's positions a write is conditioned on.
#[derive(Clone, Copy)]
enum Position {
    Feed,
    Jobs,
}

impl Position {
    fn attr(self) -> &'static str {
        match self {
            Self::Feed => "feed",
            Self::Jobs => "jobs",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::Feed => "feed cursor",
            Self::Jobs => "job mark",
        }
    }
}

impl DynamoWebhooks {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            retention: None,
        }
    }

    /// Ended deliveries get an `expires_at` `retention` after they ended
    /// (`None`: kept for good).
    pub fn with_retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table (on demand, key `pk`/`sk`, TTL on `expires_at`)
    /// unless it exists. Idempotent.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type")
        };
        let k = |name: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(t)
                .build()
                .expect("name and type")
        };
        match self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(k(PK, KeyType::Hash))
            .key_schema(k(SK, KeyType::Range))
            .attribute_definitions(attr(PK))
            .attribute_definitions(attr(SK))
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|se| se.is_resource_in_use_exception()) => {}
            Err(e) => return Err(backend("dynamodb CreateTable", crate::error::chain(&e))),
        }
        crate::store::dynamo::tables::wait_active(&self.client, &self.table).await?;
        crate::store::dynamo::tables::enable_ttl(&self.client, &self.table).await
    }

    fn expiry(&self, d: &Delivery) -> Option<i64> {
        if d.status == DeliveryStatus::Pending {
            return None;
        }
        let ended = d.delivered_at.or(d.last_attempt_at).unwrap_or(d.created_at);
        self.retention
            .map(|r| ended.millis().div_euclid(1000) + r.as_secs() as i64)
    }

    /// Runs one transaction, again after a pause while only contention or
    /// throttling cancels it.
    async fn transact(&self, actions: Vec<TransactWriteItem>) -> Result<Result<(), Cancelled>, StoreError> {
        let mut attempt = 0;
        loop {
            let e = match self
                .client
                .transact_write_items()
                .set_transact_items(Some(actions.clone()))
                .send()
                .await
            {
                Ok(_) => return Ok(Ok(())),
                Err(e) => e,
            };
            let retry = match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    let reasons = c.cancellation_reasons();
                    if let Some(at) = reasons.iter().position(|r| r.code() == Some("ConditionalCheckFailed")) {
                        return Ok(Err(Cancelled::Condition {
                            at,
                            item: reasons[at].item.clone(),
                        }));
                    }
                    reasons.iter().filter_map(|r| r.code()).all(|c| {
                        matches!(
                            c,
                            "None" | "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
                        )
                    })
                }
                Some(se) => se.is_transaction_in_progress_exception(),
                None => false,
            };
            if !retry || attempt >= CONTENTION_RETRIES {
                return Err(backend("dynamodb TransactWriteItems", crate::error::chain(&e)));
            }
            attempt += 1;
            let wait = 20u64 << attempt.min(6);
            tokio::time::sleep(Duration::from_millis(fastrand::u64(wait / 2..=wait))).await;
        }
    }

    /// Reads the items of `keys` (strongly consistent), 100 a call,
    /// unprocessed keys again; missing ones are absent.
    async fn batch_get(&self, keys: Vec<Item>, projection: Option<&str>) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            let mut pending = chunk.to_vec();
            let mut attempt = 0u32;
            while !pending.is_empty() {
                let ka = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .set_projection_expression(projection.map(str::to_owned))
                    .build()
                    .expect("keys set");
                let res = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, ka)
                    .send()
                    .await
                    .map_err(sdk_err("dynamodb BatchGetItem"))?;
                out.extend(
                    res.responses
                        .unwrap_or_default()
                        .remove(&self.table)
                        .unwrap_or_default(),
                );
                if let Some(ka) = res.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                    pending = ka.keys;
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20u64 << attempt.min(6))).await;
                }
            }
        }
        Ok(out)
    }

    async fn get(&self, k: Item) -> Result<Option<Item>, StoreError> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(k))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_err("dynamodb GetItem"))?
            .item)
    }

    /// Every item of a partition (small ones: the endpoints).
    async fn query_partition(&self, pk: &str) -> Result<Vec<Item>, StoreError> {
        let mut all = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_err("dynamodb Query"))?;
            all.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return Ok(all),
            }
        }
    }

    /// The three items of a new delivery, the `index`th of its write.
    fn delivery_puts(&self, d: &Delivery, index: usize) -> Result<Vec<TransactWriteItem>, StoreError> {
        let list_sk = format!("{:015}#{index:03}#{}", d.created_at.millis().max(0), d.id);
        let mut item = delivery_key(&d.id);
        item.insert("json".into(), s(to_json(d)?));
        item.insert("tenant".into(), s(d.tenant.as_str()));
        item.insert("endpoint".into(), s(d.endpoint.as_str()));
        item.insert("st".into(), s(d.status.as_str()));
        item.insert("attempts".into(), n(d.attempts));
        item.insert("list_sk".into(), s(list_sk.clone()));
        let mut listed = key(list_pk(&d.tenant), list_sk);
        listed.insert("st".into(), s(d.status.as_str()));
        listed.insert("endpoint".into(), s(d.endpoint.as_str()));
        listed.insert("id".into(), s(d.id.as_str()));
        let mut out = vec![put(&self.table, item, Some("attribute_not_exists(pk)"))];
        if d.status == DeliveryStatus::Pending {
            let mut due = due_key(d);
            due.insert("created".into(), n(d.created_at.millis()));
            out.push(put(&self.table, due, None));
        }
        out.push(put(&self.table, listed, None));
        Ok(out)
    }

    /// The endpoint's action in a materialising write: move `position`
    /// from `expected` to `next` (conditioned on `expected`), or check it
    /// is still `expected`, or (no position) check the endpoint exists.
    fn position_action(
        &self,
        endpoint: &EndpointId,
        position: Option<(Position, Option<&str>, Option<&str>)>,
    ) -> TransactWriteItem {
        let k = key(ENDPOINTS_PK, endpoint.as_str());
        let mut values: Item = HashMap::new();
        let mut names = HashMap::new();
        let mut condition = "attribute_exists(pk)".to_owned();
        let mut update = None;
        if let Some((p, expected, next)) = position {
            names.insert("#pos".to_owned(), p.attr().to_owned());
            match expected {
                Some(e) => {
                    values.insert(":expected".into(), s(e));
                    condition.push_str(" AND #pos = :expected");
                }
                None => condition.push_str(" AND attribute_not_exists(#pos)"),
            }
            if let Some(next) = next {
                values.insert(":next".into(), s(next));
                update = Some("SET #pos = :next");
            }
        }
        let values = (!values.is_empty()).then_some(values);
        let names = (!names.is_empty()).then_some(names);
        match update {
            Some(u) => TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(k))
                        .update_expression(u)
                        .condition_expression(condition)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values)
                        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                        .build()
                        .expect("update set"),
                )
                .build(),
            None => TransactWriteItem::builder()
                .condition_check(
                    ConditionCheck::builder()
                        .table_name(&self.table)
                        .set_key(Some(k))
                        .condition_expression(condition)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values)
                        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                        .build()
                        .expect("check set"),
                )
                .build(),
        }
    }

    /// Stores the new ones of `deliveries` with the position move, in one
    /// transaction per [`MATERIALISE_MAX`] deliveries (the move with the
    /// last, each conditioned on the position).
    async fn write_deliveries(
        &self,
        endpoint: &EndpointId,
        position: Option<(Position, Option<&str>, Option<&str>)>,
        deliveries: Vec<Delivery>,
    ) -> Result<u32, StoreError> {
        // A stored delivery is left as it is: leave it out of the write
        // (its put is conditioned on there being none, so a race with
        // another writer cancels the write rather than overwrite it).
        let mut seen = HashSet::new();
        let deliveries: Vec<Delivery> = deliveries.into_iter().filter(|d| seen.insert(d.id.clone())).collect();
        let ids: Vec<DeliveryId> = deliveries.iter().map(|d| d.id.clone()).collect();
        let known: HashSet<DeliveryId> = self.known_deliveries(&ids).await?.into_iter().collect();
        let fresh: Vec<Delivery> = deliveries.into_iter().filter(|d| !known.contains(&d.id)).collect();
        let parts: Vec<&[Delivery]> = if fresh.is_empty() {
            vec![&[]]
        } else {
            fresh.chunks(MATERIALISE_MAX).collect()
        };
        let last = parts.len() - 1;
        let mut new = 0;
        for (i, part) in parts.into_iter().enumerate() {
            let pos = position.map(|(p, expected, next)| (p, expected, if i == last { next } else { None }));
            let mut actions = vec![self.position_action(endpoint, pos)];
            for (k, d) in part.iter().enumerate() {
                actions.extend(self.delivery_puts(d, k)?);
            }
            match self.transact(actions).await? {
                Ok(()) => new += part.len() as u32,
                Err(Cancelled::Condition { at: 0, item }) => {
                    return Err(match (item, position) {
                        (None, _) => StoreError::NotFound {
                            entity: "webhook endpoint",
                            id: endpoint.to_string(),
                        },
                        (Some(item), Some((p, expected, _))) => StoreError::ConditionFailed {
                            entity: "webhook endpoint",
                            id: endpoint.to_string(),
                            expected: format!("{} {}", p.what(), expected.unwrap_or("(none)")),
                            actual: Some(opt_s(&item, p.attr()).unwrap_or("(none)").to_owned()),
                        },
                        (Some(_), None) => StoreError::ConditionFailed {
                            entity: "webhook endpoint",
                            id: endpoint.to_string(),
                            expected: "the endpoint".into(),
                            actual: None,
                        },
                    })
                }
                Err(Cancelled::Condition { .. }) => {
                    return Err(StoreError::ConditionFailed {
                        entity: "webhook delivery",
                        id: endpoint.to_string(),
                        expected: "no delivery with this id".into(),
                        actual: Some("stored by another writer".into()),
                    })
                }
            }
        }
        Ok(new)
    }

    /// The items of `pk` (newest first when `!forward`) whose sort key is
    /// below `before`, filtered, a page at a time.
    #[allow(clippy::too_many_arguments)]
    async fn query_page(
        &self,
        pk: &str,
        before: Option<&str>,
        upto: Option<&str>,
        forward: bool,
        filter: Option<(&str, Item, HashMap<String, String>)>,
        limit: Option<i32>,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        let mut values: Item = HashMap::from([(":pk".to_owned(), s(pk))]);
        let mut cond = "pk = :pk".to_owned();
        if let Some(b) = before {
            values.insert(":b".into(), s(b));
            cond.push_str(" AND sk < :b");
        }
        if let Some(u) = upto {
            values.insert(":u".into(), s(u));
            cond.push_str(" AND sk <= :u");
        }
        let (filter_expr, names) = match filter {
            Some((f, v, names)) => {
                values.extend(v);
                (Some(f.to_owned()), (!names.is_empty()).then_some(names))
            }
            None => (None, None),
        };
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(cond)
            .set_expression_attribute_values(Some(values))
            .set_expression_attribute_names(names)
            .set_filter_expression(filter_expr)
            .scan_index_forward(forward)
            .set_limit(limit)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(sdk_err("dynamodb Query"))?;
        Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
    }

    /// The deliveries of `ids`, in that order (gone ones left out).
    async fn deliveries(&self, ids: &[DeliveryId]) -> Result<Vec<Delivery>, StoreError> {
        let items = self.batch_get(ids.iter().map(delivery_key).collect(), None).await?;
        let mut by_id = HashMap::new();
        for item in &items {
            let d = delivery_of(item)?;
            by_id.insert(d.id.clone(), d);
        }
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    /// The creation time of the oldest pending delivery of `endpoint`: its
    /// due items, all pages (small items: a backlog of 100,000 reads about
    /// 6 MB, eventually consistent).
    async fn oldest_pending_of(&self, endpoint: &EndpointId) -> Result<Option<Timestamp>, StoreError> {
        let pk = format!("due#{endpoint}");
        let mut oldest: Option<i64> = None;
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(&pk))
                .projection_expression("#created")
                .expression_attribute_names("#created", "created")
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_err("dynamodb Query"))?;
            for item in out.items.unwrap_or_default() {
                if let Some(c) = item
                    .get("created")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<i64>().ok())
                {
                    oldest = Some(oldest.map_or(c, |o| o.min(c)));
                }
            }
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return Ok(oldest.map(Timestamp::from_millis)),
            }
        }
    }
}

#[async_trait]
impl WebhookStore for DynamoWebhooks {
    async fn create_endpoint(&self, endpoint: &Endpoint, cursor: Option<&FeedCursor>) -> Result<(), StoreError> {
        let mut item = key(ENDPOINTS_PK, endpoint.id.as_str());
        item.insert("json".into(), s(to_json(endpoint)?));
        item.insert("tenant".into(), s(endpoint.tenant.as_str()));
        item.insert("enabled".into(), AttributeValue::Bool(endpoint.enabled));
        if let Some(c) = cursor {
            item.insert("feed".into(), s(c.as_str()));
        }
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::ConditionFailed {
                    entity: "webhook endpoint",
                    id: endpoint.id.to_string(),
                    expected: "no endpoint".into(),
                    actual: Some("exists".into()),
                })
            }
            Err(e) => Err(backend("dynamodb PutItem", crate::error::chain(&e))),
        }
    }

    async fn get_endpoint(&self, tenant: &TenantId, id: &EndpointId) -> Result<Option<Endpoint>, StoreError> {
        match self.get(key(ENDPOINTS_PK, id.as_str())).await? {
            Some(item) if opt_s(&item, "tenant") == Some(tenant.as_str()) => Ok(Some(endpoint_of(&item)?)),
            _ => Ok(None),
        }
    }

    async fn list_endpoints(&self, tenant: &TenantId) -> Result<Vec<Endpoint>, StoreError> {
        let mut out = Vec::new();
        for item in self.query_partition(ENDPOINTS_PK).await? {
            if opt_s(&item, "tenant") == Some(tenant.as_str()) {
                out.push(endpoint_of(&item)?);
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    async fn enabled_endpoints(&self) -> Result<Vec<EndpointState>, StoreError> {
        let mut out = Vec::new();
        for item in self.query_partition(ENDPOINTS_PK).await? {
            if item.get("enabled").and_then(|v| v.as_bool().ok()) == Some(&true) {
                out.push(state_of(&item)?);
            }
        }
        out.sort_by(|a, b| (a.endpoint.created_at, &a.endpoint.id).cmp(&(b.endpoint.created_at, &b.endpoint.id)));
        Ok(out)
    }

    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(ENDPOINTS_PK, endpoint.id.as_str())))
            .update_expression("SET #json = :j, #enabled = :e")
            .condition_expression("attribute_exists(pk) AND #tenant = :t")
            .expression_attribute_names("#json", "json")
            .expression_attribute_names("#enabled", "enabled")
            .expression_attribute_names("#tenant", "tenant")
            .expression_attribute_values(":j", s(to_json(endpoint)?))
            .expression_attribute_values(":e", AttributeValue::Bool(endpoint.enabled))
            .expression_attribute_values(":t", s(endpoint.tenant.as_str()))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::NotFound {
                    entity: "webhook endpoint",
                    id: endpoint.id.to_string(),
                })
            }
            Err(e) => Err(backend("dynamodb UpdateItem", crate::error::chain(&e))),
        }
    }

    async fn delete_endpoint(&self, tenant: &TenantId, id: &EndpointId) -> Result<bool, StoreError> {
        // The endpoint first: from then on no pass materialises or sends
        // for it (their writes are conditioned on it), so what follows only
        // clears what it left.
        match self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(ENDPOINTS_PK, id.as_str())))
            .condition_expression("#tenant = :t")
            .expression_attribute_names("#tenant", "tenant")
            .expression_attribute_values(":t", s(tenant.as_str()))
            .send()
            .await
        {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(backend("dynamodb DeleteItem", crate::error::chain(&e))),
        }
        let filter = || {
            Some((
                "#endpoint = :e",
                HashMap::from([(":e".to_owned(), s(id.as_str()))]),
                HashMap::from([("#endpoint".to_owned(), "endpoint".to_owned())]),
            ))
        };
        let mut start = None;
        loop {
            let (items, next) = self
                .query_page(&list_pk(tenant), None, None, false, filter(), None, start)
                .await?;
            for item in &items {
                let Some(did) = opt_s(item, "id") else { continue };
                let did = DeliveryId::parse(did).map_err(|e| corrupt("webhook delivery", item, e.message))?;
                let mut actions = Vec::new();
                if let Some(d) = self.get(delivery_key(&did)).await? {
                    let d = delivery_of(&d)?;
                    if d.status == DeliveryStatus::Pending {
                        actions.push(delete(&self.table, due_key(&d)));
                    }
                }
                actions.push(delete(&self.table, delivery_key(&did)));
                let mut listed = key(list_pk(tenant), req_s("webhook delivery", item, SK)?);
                listed.retain(|k, _| k == PK || k == SK);
                actions.push(delete(&self.table, listed));
                if self.transact(actions).await?.is_err() {
                    return Err(backend(
                        "dynamodb TransactWriteItems",
                        "deleting a delivery was refused",
                    ));
                }
            }
            match next {
                Some(k) => start = Some(k),
                None => return Ok(true),
            }
        }
    }

    async fn materialise(
        &self,
        endpoint: &EndpointId,
        expected: Option<&FeedCursor>,
        next: Option<&FeedCursor>,
        deliveries: Vec<Delivery>,
    ) -> Result<u32, StoreError> {
        let position = next.map(|n| (Position::Feed, expected.map(FeedCursor::as_str), Some(n.as_str())));
        self.write_deliveries(endpoint, position, deliveries).await
    }

    async fn materialise_jobs(
        &self,
        endpoint: &EndpointId,
        expected: Option<&JobMark>,
        next: Option<&JobMark>,
        deliveries: Vec<Delivery>,
    ) -> Result<u32, StoreError> {
        let expected = expected.map(JobMark::encode);
        let next = next.map(JobMark::encode);
        let position = Some((Position::Jobs, expected.as_deref(), next.as_deref()));
        self.write_deliveries(endpoint, position, deliveries).await
    }

    async fn known_deliveries(&self, ids: &[DeliveryId]) -> Result<Vec<DeliveryId>, StoreError> {
        let unique: Vec<DeliveryId> = ids.iter().cloned().collect::<HashSet<_>>().into_iter().collect();
        let items = self
            .batch_get(unique.iter().map(delivery_key).collect(), Some("pk"))
            .await?;
        let found: HashSet<String> = items.iter().filter_map(|i| opt_s(i, PK).map(str::to_owned)).collect();
        Ok(ids
            .iter()
            .filter(|id| found.contains(&format!("d#{id}")))
            .cloned()
            .collect())
    }

    async fn due(&self, endpoint: &EndpointId, now: Timestamp, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        // Every due sort key of a time up to `now` sorts below this one.
        let upto = format!("{:015}#~", now.millis().max(0));
        let (items, _) = self
            .query_page(
                &format!("due#{endpoint}"),
                None,
                Some(&upto),
                true,
                None,
                Some(limit.clamp(1, 1000) as i32),
                None,
            )
            .await?;
        let ids = items
            .iter()
            .map(|item| {
                let sk = req_s("webhook due item", item, SK)?;
                let id = sk.split_once('#').map_or("", |(_, id)| id);
                DeliveryId::parse(id).map_err(|e| corrupt("webhook due item", item, e.message))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self
            .deliveries(&ids)
            .await?
            .into_iter()
            .filter(|d| d.status == DeliveryStatus::Pending)
            .collect())
    }

    async fn oldest_pending(&self, endpoint: &EndpointId) -> Result<Option<Timestamp>, StoreError> {
        self.oldest_pending_of(endpoint).await
    }

    async fn save_delivery(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let Some(item) = self.get(delivery_key(&delivery.id)).await? else {
            return Err(StoreError::NotFound {
                entity: "webhook delivery",
                id: delivery.id.to_string(),
            });
        };
        let stored = delivery_of(&item)?;
        let list_sk = req_s("webhook delivery", &item, "list_sk")?.to_owned();
        let mut next = item.clone();
        next.insert("json".into(), s(to_json(delivery)?));
        next.insert("st".into(), s(delivery.status.as_str()));
        next.insert("attempts".into(), n(delivery.attempts));
        let expiry = self.expiry(delivery);
        match expiry {
            Some(e) => next.insert(EXPIRES_AT.into(), n(e)),
            None => next.remove(EXPIRES_AT),
        };
        // Conditioned on what was read: a second writer of the same
        // delivery (which the one deliver run at a time rules out) would
        // be refused, not interleaved.
        let saved = TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(next))
                    .condition_expression("#st = :st AND #attempts = :a")
                    .expression_attribute_names("#st", "st")
                    .expression_attribute_names("#attempts", "attempts")
                    .expression_attribute_values(":st", s(stored.status.as_str()))
                    .expression_attribute_values(":a", n(stored.attempts))
                    .build()
                    .expect("put set"),
            )
            .build();
        let mut actions = vec![saved];
        let same_due = stored.status == delivery.status && stored.next_attempt_at == delivery.next_attempt_at;
        if stored.status == DeliveryStatus::Pending && !same_due {
            actions.push(delete(&self.table, due_key(&stored)));
        }
        if delivery.status == DeliveryStatus::Pending && !same_due {
            let mut due = due_key(delivery);
            due.insert("created".into(), n(delivery.created_at.millis()));
            actions.push(put(&self.table, due, None));
        }
        let mut listed = key(list_pk(&delivery.tenant), list_sk);
        listed.insert("st".into(), s(delivery.status.as_str()));
        listed.insert("endpoint".into(), s(delivery.endpoint.as_str()));
        listed.insert("id".into(), s(delivery.id.as_str()));
        if let Some(e) = expiry {
            listed.insert(EXPIRES_AT.into(), n(e));
        }
        actions.push(put(&self.table, listed, None));
        match self.transact(actions).await? {
            Ok(()) => Ok(()),
            Err(Cancelled::Condition { .. }) => Err(StoreError::ConditionFailed {
                entity: "webhook delivery",
                id: delivery.id.to_string(),
                expected: format!("{} after {} attempts", stored.status, stored.attempts),
                actual: None,
            }),
        }
    }

    async fn get_delivery(&self, tenant: &TenantId, id: &DeliveryId) -> Result<Option<Delivery>, StoreError> {
        match self.get(delivery_key(id)).await? {
            Some(item) if opt_s(&item, "tenant") == Some(tenant.as_str()) => Ok(Some(delivery_of(&item)?)),
            _ => Ok(None),
        }
    }

    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        status: Option<DeliveryStatus>,
        endpoint: Option<&EndpointId>,
        after: Option<&DeliveryId>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let before = match after {
            Some(id) => match self.get(delivery_key(id)).await? {
                Some(item) if opt_s(&item, "tenant") == Some(tenant.as_str()) => {
                    Some(req_s("webhook delivery", &item, "list_sk")?.to_owned())
                }
                _ => return Ok(Vec::new()),
            },
            None => None,
        };
        let mut conds = Vec::new();
        let mut values = HashMap::new();
        let mut names = HashMap::new();
        if let Some(st) = status {
            conds.push("#st = :st");
            values.insert(":st".to_owned(), s(st.as_str()));
            names.insert("#st".to_owned(), "st".to_owned());
        }
        if let Some(e) = endpoint {
            conds.push("#endpoint = :e");
            values.insert(":e".to_owned(), s(e.as_str()));
            names.insert("#endpoint".to_owned(), "endpoint".to_owned());
        }
        let filter = conds.join(" AND ");
        let limit = limit as usize;
        let mut ids = Vec::new();
        let mut start = None;
        while ids.len() < limit {
            let f = (!conds.is_empty()).then(|| (filter.as_str(), values.clone(), names.clone()));
            let (items, next) = self
                .query_page(
                    &list_pk(tenant),
                    before.as_deref(),
                    None,
                    false,
                    f,
                    Some((limit - ids.len()).clamp(1, 1000) as i32),
                    start,
                )
                .await?;
            for item in &items {
                let id = req_s("webhook listing", item, "id")?;
                ids.push(DeliveryId::parse(id).map_err(|e| corrupt("webhook listing", item, e.message))?);
            }
            match next {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        ids.truncate(limit);
        self.deliveries(&ids).await
    }
}
