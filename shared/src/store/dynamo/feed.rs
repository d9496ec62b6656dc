//! The results feed ([`crate::feed`]) on the jobs table, read without an
//! index:
//!
//! * `feedseq#{tenant}` / `seq`: the tenant's sequence item, `seq` = the
//!   number of its newest entry;
//! * `feed#{tenant}` / `{seq, 20 digits}`: the entries one transaction
//!   appended, `first ..= seq` (`first` and the list `entries`, in order),
//!   expiring (TTL) with their requests. Items written before entries were
//!   grouped hold one entry in their own attributes: a group of one.
//!
//! Writing: every transaction that finishes requests of a tenant appends
//! their entries numbered `old + 1 ..= old + k` and moves the tenant's
//! sequence item from `old` to `old + k`, conditioned on it still being
//! `old` ([`DynamoStore::commit_units`] builds these per transaction, once
//! per tenant, whatever number of requests it finishes). The condition
//! serialises a tenant's appends: two concurrent transactions cannot both
//! move it from `old`; the loser is cancelled, reads the item again and
//! renumbers. So number `n` is written by exactly one committed
//! transaction, and that transaction committed before any transaction
//! that moved the sequence past `n`.
//!
//! Reading: a strongly consistent GetItem of the sequence item gives `S`;
//! every transaction that wrote an entry numbered `<= S` has committed by
//! then (they form one chain of conditions ending at `S`, and transactions
//! are serialisable with GetItem), and nothing can write a number `<= S`
//! later. A group is keyed by its *last* number: each committed
//! transaction's group lies wholly at or below `S` (its last number is a
//! value the sequence took) or wholly above it (a later transaction's
//! first number is above `S`). So a strongly consistent Query of
//! `after < sk <= S` returns exactly the groups holding an entry in
//! `after < n <= S` (the one holding `after + 1` ends at or above it), of
//! which the entries above `after` are returned; groups above `S` that a
//! Query (read-committed) might see are not. Hence a cursor handed out is
//! never overtaken by a late commit below it, and a cursor inside a group
//! (a page that ended within one) resumes after its entry: exactly once
//! per entry for a reader that keeps it.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};

use super::item::{n, s, Reader};
use super::query::QuerySpec;
use super::schema::*;
use super::{DynamoStore, Item};
use crate::feed::{self, FeedCursor, FeedDraft, FeedEntry, FeedEvent, FeedPage};
use crate::ids::{CustomId, JobId, ModelName, ProviderName, TenantId};
use crate::store::StoreError;
use crate::time::Timestamp;

const SEQ_SK: &str = "seq";
const SEQ_ATTR: &str = "seq";

fn seq_pk(t: &TenantId) -> String {
    format!("feedseq#{t}")
}

fn feed_pk(t: &TenantId) -> String {
    format!("feed#{t}")
}

/// The sort key of the group whose last entry is `seq`: zero-padded, so
/// text order is number order.
fn feed_sk(seq: u64) -> String {
    format!("{seq:020}")
}

impl DynamoStore {
    /// The number of `tenant`'s newest entry (0: none yet), strongly consistent.
    pub(super) async fn feed_seq(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        let item = self.get_item(&self.jobs_table, &seq_pk(tenant), SEQ_SK).await?;
        match item {
            None => Ok(0),
            Some(item) => Ok(Reader::new(&item, "feed sequence").opt_n::<u64>(SEQ_ATTR)?.unwrap_or(0)),
        }
    }

    /// The action that moves `tenant`'s sequence item from `old` to `new`,
    /// only if it still is `old`.
    pub(super) fn feed_seq_action(&self, tenant: &TenantId, old: u64, new: u64) -> TransactWriteItem {
        let mut values = HashMap::from([(":new".to_owned(), n(new))]);
        let cond = if old == 0 {
            "attribute_not_exists(#seq)".to_owned()
        } else {
            values.insert(":old".into(), n(old));
            "#seq = :old".to_owned()
        };
        let update = Update::builder()
            .table_name(&self.jobs_table)
            .key(PK, s(seq_pk(tenant)))
            .key(SK, s(SEQ_SK))
            .update_expression("SET #seq = :new")
            .condition_expression(cond)
            .expression_attribute_names("#seq", SEQ_ATTR)
            .set_expression_attribute_values(Some(values))
            .build()
            .expect("update has table, key and expression");
        TransactWriteItem::builder().update(update).build()
    }

    /// The action that writes the entries `drafts` of `tenant`, numbered
    /// `first ..`, as one item: one write of their size instead of one item
    /// (at least 1 KB: 2 write units in a transaction) per entry.
    pub(super) fn feed_group_action(&self, tenant: &TenantId, drafts: &[FeedDraft], first: u64) -> TransactWriteItem {
        let last = first + drafts.len() as u64 - 1;
        let mut item: Item = HashMap::from([
            (PK.to_owned(), s(feed_pk(tenant))),
            (SK.to_owned(), s(feed_sk(last))),
            (FIRST_ATTR.to_owned(), n(first)),
            (
                ENTRIES_ATTR.to_owned(),
                AttributeValue::L(drafts.iter().map(|d| AttributeValue::M(entry_attrs(d))).collect()),
            ),
        ]);
        // The group goes with the last of its requests (they finished in
        // one transaction, at one time).
        if let Some(exp) = drafts.iter().filter_map(|d| self.expiry(d.finished_at)).max() {
            item.insert(EXPIRES_AT.into(), n(exp));
        }
        let put = Put::builder()
            .table_name(&self.jobs_table)
            .set_item(Some(item))
            .build()
            .expect("put has table and item");
        TransactWriteItem::builder().put(put).build()
    }

    pub(super) async fn read_feed(
        &self,
        tenant: &TenantId,
        after: Option<&FeedCursor>,
        limit: u32,
    ) -> Result<FeedPage, StoreError> {
        let from = match after {
            None => 0,
            Some(c) => c.seq_for(tenant).map_err(|_| StoreError::BadCursor(c.to_string()))?,
        };
        let limit = feed::page_size(limit);
        // First the sequence: everything up to it has committed.
        let upto = self.feed_seq(tenant).await?;
        let mut entries = Vec::new();
        let mut cursor = None;
        while from < upto && entries.len() < limit {
            let values = HashMap::from([
                (":pk".to_owned(), s(feed_pk(tenant))),
                (":from".to_owned(), s(feed_sk(from + 1))),
                (":upto".to_owned(), s(feed_sk(upto))),
            ]);
            let (items, next) = self
                .query_page(QuerySpec {
                    cursor: cursor.take(),
                    limit: Some((limit - entries.len()) as u32),
                    ..QuerySpec::new(
                        &self.jobs_table,
                        None,
                        "pk = :pk AND sk BETWEEN :from AND :upto",
                        values,
                    )
                })
                .await?;
            for item in &items {
                for entry in entries_of_item(tenant, item)? {
                    if entry.seq > from && entry.seq <= upto {
                        entries.push(entry.entry);
                    }
                }
            }
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        entries.truncate(limit);
        Ok(feed::page_of(entries, after))
    }
}

const FIRST_ATTR: &str = "first";
const ENTRIES_ATTR: &str = "entries";

/// One entry's attributes (an item's own, before entries were grouped).
fn entry_attrs(d: &FeedDraft) -> Item {
    let mut item: Item = HashMap::from([
        ("custom_id".to_owned(), s(d.custom_id.as_str())),
        ("event".to_owned(), s(d.event.as_str())),
        ("finished_at".to_owned(), n(d.finished_at.millis())),
        ("model".to_owned(), s(d.model.as_str())),
        ("provider".to_owned(), s(d.provider.as_str())),
    ]);
    if let Some(j) = &d.job {
        item.insert("job_id".into(), s(j.as_str()));
    }
    item
}

/// An entry read, with its number.
struct Numbered {
    seq: u64,
    entry: FeedEntry,
}

/// The entries of a feed item, in order: a group's, or the one entry of an
/// item written before entries were grouped.
fn entries_of_item(tenant: &TenantId, item: &Item) -> Result<Vec<Numbered>, StoreError> {
    let r = Reader::new(item, "feed entry");
    let last = r.parse(SK, |v| v.parse::<u64>().map_err(|e| e.to_string()))?;
    let Some(list) = item.get(ENTRIES_ATTR) else {
        return Ok(vec![Numbered {
            seq: last,
            entry: entry_from_attrs(tenant, item)?.numbered(last),
        }]);
    };
    let list = list
        .as_l()
        .map_err(|_| r.corrupt(format!("{ENTRIES_ATTR} is not a list")))?;
    let first = r.opt_n::<u64>(FIRST_ATTR)?.unwrap_or(last);
    if list.is_empty() || first + list.len() as u64 - 1 != last {
        return Err(r.corrupt(format!("a group of {} entries from {first} keyed {last}", list.len())));
    }
    list.iter()
        .zip(first..)
        .map(|(v, seq)| {
            let attrs = v
                .as_m()
                .map_err(|_| r.corrupt(format!("an entry of {ENTRIES_ATTR} is not a map")))?;
            Ok(Numbered {
                seq,
                entry: entry_from_attrs(tenant, attrs)?.numbered(seq),
            })
        })
        .collect()
}

fn entry_from_attrs(tenant: &TenantId, item: &Item) -> Result<FeedDraft, StoreError> {
    let r = Reader::new(item, "feed entry");
    let draft = FeedDraft {
        tenant: tenant.clone(),
        custom_id: r.parse("custom_id", |v| CustomId::parse(v).map_err(|e| e.message))?,
        event: r.parse("event", |v| {
            FeedEvent::parse(v).ok_or_else(|| format!("unknown event {v:?}"))
        })?,
        finished_at: Timestamp::from_millis(r.req_n("finished_at")?),
        job: r
            .opt_s("job_id")?
            .map(|v| JobId::parse(v).map_err(|e| r.corrupt(e.message)))
            .transpose()?,
        model: r.parse("model", |v| ModelName::parse(v).map_err(|e| e.message))?,
        provider: r.parse("provider", |v| ProviderName::parse(v).map_err(|e| e.message))?,
    };
    Ok(draft)
}
