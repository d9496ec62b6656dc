//! Reads: single items, batches of request items, Query pages and the
//! opaque cursors handed out for them.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use super::item::{err_msg, s};
use super::schema::*;
use super::transact::RETRY;
use super::{DynamoStore, Item};
use crate::ids::RequestKey;
use crate::store::StoreError;

impl DynamoStore {
    pub(super) async fn get_item(&self, table: &str, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::backend("dynamodb GetItem", err_msg(e)))?;
        Ok(out.item)
    }

    /// Reads the `sk` item of each request (strongly consistent), 100 keys a
    /// call, retrying unprocessed keys after the shared policy's backoff. Missing items are absent.
    pub(super) async fn batch_get(&self, keys: &[RequestKey], sk: &str) -> Result<Vec<Item>, StoreError> {
        let unique: Vec<&RequestKey> = keys.iter().collect::<HashSet<_>>().into_iter().collect();
        let mut out = Vec::with_capacity(unique.len());
        for chunk in unique.chunks(100) {
            let mut pending: Vec<Item> = chunk
                .iter()
                .map(|k| HashMap::from([(PK.to_owned(), s(k.as_str())), (SK.to_owned(), s(sk))]))
                .collect();
            let mut attempt = 0;
            while !pending.is_empty() {
                let ka = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .expect("keys set");
                let res = self
                    .client
                    .batch_get_item()
                    .request_items(&self.requests_table, ka)
                    .send()
                    .await
                    .map_err(|e| StoreError::backend("dynamodb BatchGetItem", err_msg(e)))?;
                out.extend(
                    res.responses
                        .unwrap_or_default()
                        .remove(&self.requests_table)
                        .unwrap_or_default(),
                );
                if let Some(ka) = res.unprocessed_keys.and_then(|mut u| u.remove(&self.requests_table)) {
                    pending = ka.keys;
                    tokio::time::sleep(RETRY.delay(attempt, None)).await;
                    attempt += 1;
                }
            }
        }
        Ok(out)
    }

    pub(super) async fn query_page(&self, q: QuerySpec<'_>) -> Result<(Vec<Item>, Option<String>), StoreError> {
        let start = q.cursor.as_deref().map(decode_cursor).transpose()?;
        let out = self
            .client
            .query()
            .table_name(q.table)
            .set_index_name(q.index.map(str::to_owned))
            .key_condition_expression(q.key_cond)
            .set_expression_attribute_values(Some(q.values))
            .set_expression_attribute_names(q.names)
            .scan_index_forward(q.forward)
            .set_exclusive_start_key(start)
            .set_limit(q.limit.map(|l| l.clamp(1, 1000) as i32))
            .set_filter_expression(q.filter.map(str::to_owned))
            .consistent_read(q.index.is_none())
            .send()
            .await
            .map_err(|e| StoreError::backend("dynamodb Query", err_msg(e)))?;
        let next = out.last_evaluated_key.as_ref().map(encode_cursor);
        Ok((out.items.unwrap_or_default(), next))
    }

    /// Every page of a query (for small, bounded result sets: counters, open jobs).
    pub(super) async fn query_all(&self, q: QuerySpec<'_>) -> Result<Vec<Item>, StoreError> {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let page = QuerySpec {
                cursor,
                values: q.values.clone(),
                names: q.names.clone(),
                ..q
            };
            let (items, next) = self.query_page(page).await?;
            all.extend(items);
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok(all),
            }
        }
    }
}

/// One Query call's parameters.
pub(super) struct QuerySpec<'a> {
    pub(super) table: &'a str,
    pub(super) index: Option<&'a str>,
    pub(super) key_cond: &'a str,
    pub(super) values: HashMap<String, AttributeValue>,
    pub(super) names: Option<HashMap<String, String>>,
    pub(super) forward: bool,
    pub(super) cursor: Option<String>,
    pub(super) limit: Option<u32>,
    pub(super) filter: Option<&'a str>,
}

impl<'a> QuerySpec<'a> {
    pub(super) fn new(
        table: &'a str,
        index: Option<&'a str>,
        key_cond: &'a str,
        values: HashMap<String, AttributeValue>,
    ) -> Self {
        Self {
            table,
            index,
            key_cond,
            values,
            names: None,
            forward: true,
            cursor: None,
            limit: None,
            filter: None,
        }
    }
}
pub(super) fn encode_cursor(key: &Item) -> String {
    let mut map = serde_json::Map::new();
    for (k, v) in key {
        let j = match v {
            AttributeValue::S(x) => serde_json::json!({ "S": x }),
            AttributeValue::N(x) => serde_json::json!({ "N": x }),
            _ => continue,
        };
        map.insert(k.clone(), j);
    }
    serde_json::Value::Object(map).to_string()
}

pub(super) fn decode_cursor(c: &str) -> Result<Item, StoreError> {
    let bad = || StoreError::Corrupt {
        entity: "cursor",
        id: c.chars().take(40).collect(),
        reason: "not a cursor this store issued".into(),
    };
    let v: serde_json::Value = serde_json::from_str(c).map_err(|_| bad())?;
    let obj = v.as_object().ok_or_else(bad)?;
    let mut item = Item::new();
    for (k, v) in obj {
        let av = if let Some(x) = v.get("S").and_then(|x| x.as_str()) {
            s(x)
        } else if let Some(x) = v.get("N").and_then(|x| x.as_str()) {
            AttributeValue::N(x.to_owned())
        } else {
            return Err(bad());
        };
        item.insert(k.clone(), av);
    }
    Ok(item)
}
