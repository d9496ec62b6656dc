//! Transactions: one TransactWriteItems call retried on the shared policy
//! ([`crate::retry`]), and the one routine that packs per-request units of
//! actions into transactions (≤ 100 actions, ≤ 3 MB, the counter items of a
//! chunk merged) and settles each unit on its own condition. Both `insert`
//! and `apply` go through it.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::TransactWriteItem;

use super::counters::{activity_pk, shard_of, CounterDeltas};
use super::item::{err_msg, n, s};
use super::schema::{PK, SK};
use super::{DynamoStore, Item};
use crate::activity::{ActivityCount, Hour};
use crate::counters::{Counter, Delta};
use crate::feed::FeedDraft;
use crate::ids::RequestKey;
use crate::ids::TenantId;
use crate::overhead::AWS_LIST;
use crate::retry::{GaveUp, RetryPolicy, Verdict};
use crate::store::StoreError;

/// Most actions DynamoDB accepts in one TransactWriteItems call.
const TXN_MAX_ACTIONS: usize = 100;
/// Keep each transaction well below DynamoDB's 4 MB request limit.
const TXN_MAX_BYTES: usize = 3 * 1024 * 1024;

/// How DynamoDB calls are retried on contention and throttling: 8 retries,
/// from 20 ms doubling to at most 1 s, with full jitter.
pub(super) const RETRY: RetryPolicy = RetryPolicy::new(8, Duration::from_millis(20), Duration::from_secs(1));

/// Why one action of a cancelled transaction did not apply.
#[derive(Debug)]
pub(super) struct CancelReason {
    /// None when the action was fine (another one cancelled the transaction).
    code: Option<String>,
    /// The item as it was, for an action asking for it on a failed condition
    /// (`ALL_OLD`): what a lost condition is judged by, without a read.
    item: Option<Item>,
}

impl CancelReason {
    fn condition_failed(&self) -> bool {
        self.code.as_deref() == Some("ConditionalCheckFailed")
    }
}

/// The outcome of one transaction.
enum TxnOutcome {
    Committed,
    /// Cancelled; one reason per action.
    Cancelled(Vec<CancelReason>),
}

/// A failed attempt of one transaction.
enum TxnError {
    /// Cancelled; `retryable` when only contention or throughput did it.
    Cancelled {
        reasons: Vec<CancelReason>,
        retryable: bool,
    },
    /// Another transaction held an item (TransactionInProgress).
    InProgress(String),
    Other(String),
}

/// One request's part of a transaction: its actions (the first one carries
/// the request's condition), their size, and the counters they move.
pub(super) struct TxnUnit {
    pub actions: Vec<TransactWriteItem>,
    /// A generous estimate of the unit's size in the request.
    pub bytes: usize,
    pub counters: Vec<Delta>,
    /// The request; a chunk's counter shard is its first unit's.
    pub key: RequestKey,
    /// The feed entry the unit appends (a terminal transition): numbered
    /// and written per transaction, with its tenant's sequence item.
    pub feed: Option<FeedDraft>,
}

/// Transactions in a row cancelled only because another writer moved a
/// tenant's feed sequence first, before a call gives up.
const FEED_RACES_MAX: u32 = 64;

/// How one unit ended.
pub(super) enum UnitOutcome {
    Committed,
    /// Its condition failed; the item as it was (`None`: there was none).
    Refused(Option<Item>),
}

/// Whether a call's transactions carry the process's AWS usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Charge {
    /// Each transaction takes the usage tally and adds its price to the
    /// activity item of its first unit's tenant and hour (an item it
    /// writes anyway: no action more).
    Overhead,
    None,
}

impl DynamoStore {
    /// The overhead counter change a transaction of `chunk` carries: what
    /// the tally holds, priced, on the first activity item the chunk moves.
    fn overhead_delta(&self, chunk: &[(usize, TxnUnit)]) -> Vec<Delta> {
        let Some(usage) = &self.usage else { return Vec::new() };
        let Some((tenant, hour)) = chunk.iter().flat_map(|(_, u)| &u.counters).find_map(|(c, _)| match c {
            Counter::Activity(t, h, _) => Some((t.clone(), *h)),
            _ => None,
        }) else {
            return Vec::new();
        };
        let picos = usage.take_cost().picodollars();
        if picos <= 0 {
            return Vec::new();
        }
        vec![(
            Counter::Activity(tenant, hour, ActivityCount::AwsOverhead),
            i64::try_from(picos).unwrap_or(i64::MAX),
        )]
    }

    /// Takes the usage tally and adds its price to `tenant`'s overhead of
    /// `hour` in one update of its activity item (shard 0; a read sums the
    /// shards). What a failed update took goes back to the tally.
    pub(super) async fn settle_overhead_now(&self, tenant: &TenantId, hour: Hour) -> Result<(), StoreError> {
        let Some(usage) = &self.usage else { return Ok(()) };
        let taken = usage.take();
        let picos = taken.cost(&AWS_LIST).picodollars();
        if picos <= 0 {
            usage.give_back(&taken);
            return Ok(());
        }
        let res = self
            .client
            .update_item()
            .table_name(&self.jobs_table)
            .key(PK, s(activity_pk(tenant, 0)))
            .key(SK, s(hour.to_string()))
            .update_expression("ADD #o :o")
            .expression_attribute_names("#o", ActivityCount::AwsOverhead.name())
            .expression_attribute_values(":o", n(i64::try_from(picos).unwrap_or(i64::MAX)))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) => {
                usage.give_back(&taken);
                Err(StoreError::backend("dynamodb UpdateItem", err_msg(e)))
            }
        }
    }

    /// Runs one transaction, retrying contention and throttling (another
    /// transaction touching the same counter item) on [`RETRY`].
    async fn transact(&self, actions: Vec<TransactWriteItem>) -> Result<TxnOutcome, StoreError> {
        let attempt = |_| {
            let actions = actions.clone();
            async move {
                let e = match self
                    .client
                    .transact_write_items()
                    .set_transact_items(Some(actions))
                    .send()
                    .await
                {
                    Ok(_) => return Ok(()),
                    Err(e) => e,
                };
                let in_progress = e
                    .as_service_error()
                    .is_some_and(|se| se.is_transaction_in_progress_exception());
                match e.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                        let reasons: Vec<CancelReason> = c
                            .cancellation_reasons()
                            .iter()
                            .map(|r| CancelReason {
                                code: r.code().filter(|c| *c != "None").map(str::to_owned),
                                item: r.item.clone(),
                            })
                            .collect();
                        // Contention and throughput: the same transaction
                        // again, after a pause, may well pass.
                        let retryable = reasons.iter().filter_map(|r| r.code.as_deref()).all(|c| {
                            matches!(
                                c,
                                "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
                            )
                        });
                        Err(TxnError::Cancelled { reasons, retryable })
                    }
                    _ if in_progress => Err(TxnError::InProgress(err_msg(e))),
                    _ => Err(TxnError::Other(err_msg(e))),
                }
            }
        };
        let judge = |e: &TxnError| match e {
            TxnError::Cancelled { retryable: true, .. } | TxnError::InProgress(_) => Verdict::Retry { asked: None },
            _ => Verdict::Fatal,
        };
        match RETRY.run(attempt, judge, |_, wait, _| tokio::time::sleep(wait)).await {
            Ok(()) => Ok(TxnOutcome::Committed),
            Err(GaveUp {
                last: TxnError::Cancelled { reasons, .. },
                ..
            }) => Ok(TxnOutcome::Cancelled(reasons)),
            Err(GaveUp {
                last: TxnError::InProgress(m) | TxnError::Other(m),
                ..
            }) => Err(StoreError::backend("dynamodb TransactWriteItems", m)),
        }
    }

    /// Writes `units` in as few transactions as the limits allow, the
    /// counter changes of each transaction merged into one update per
    /// counter item. A unit whose condition fails is settled as refused and
    /// the rest of its transaction goes round again without it; `settle`
    /// hears of each unit (by its index in `units`) as soon as it is
    /// settled, and an error from it stops the writing.
    pub(super) async fn commit_units(
        &self,
        units: Vec<TxnUnit>,
        charge: Charge,
        mut settle: impl FnMut(usize, UnitOutcome) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut pending: VecDeque<(usize, TxnUnit)> = units.into_iter().enumerate().collect();
        // Each tenant's feed sequence as last read or written by this call.
        let mut seqs: HashMap<TenantId, u64> = HashMap::new();
        let mut feed_races = 0;
        while !pending.is_empty() {
            // Take a chunk within the action and size limits of a transaction.
            let shard = shard_of(&pending[0].1.key);
            let mut chunk = Vec::new();
            let mut deltas = CounterDeltas::default();
            // Entries per tenant, in unit order; one sequence action each.
            let mut feeds: Vec<(TenantId, Vec<FeedDraft>)> = Vec::new();
            let mut count = 0;
            let mut bytes = 0;
            while let Some((_, unit)) = pending.front() {
                let more = CounterDeltas::of(&unit.counters, shard);
                // A tenant's entries are one item, with its sequence item.
                let feed_actions = match &unit.feed {
                    Some(d) if !feeds.iter().any(|(t, _)| *t == d.tenant) => 2,
                    _ => 0,
                };
                let feed_count = 2 * feeds.len();
                let too_many =
                    count + unit.actions.len() + deltas.len() + deltas.new_items_in(&more) + feed_count + feed_actions
                        > TXN_MAX_ACTIONS;
                if !chunk.is_empty() && (too_many || bytes + unit.bytes > TXN_MAX_BYTES) {
                    break;
                }
                bytes += unit.bytes;
                count += unit.actions.len();
                deltas.merge(more);
                if let Some(d) = &unit.feed {
                    match feeds.iter_mut().find(|(t, _)| *t == d.tenant) {
                        Some((_, ds)) => ds.push(d.clone()),
                        None => feeds.push((d.tenant.clone(), vec![d.clone()])),
                    }
                }
                chunk.push(pending.pop_front().expect("front exists"));
            }
            if charge == Charge::Overhead {
                deltas.merge(CounterDeltas::of(&self.overhead_delta(&chunk), shard));
            }
            let mut txn = Vec::new();
            for (_, unit) in &chunk {
                txn.extend(unit.actions.iter().cloned());
            }
            txn.extend(deltas.into_actions(&self.jobs_table));
            // The feed last: its sequence actions' places tell a lost race.
            let mut seq_actions = Vec::new();
            let mut moved = Vec::new();
            for (tenant, drafts) in &feeds {
                let old = match seqs.get(tenant) {
                    Some(n) => *n,
                    None => {
                        let n = self.feed_seq(tenant).await?;
                        seqs.insert(tenant.clone(), n);
                        n
                    }
                };
                let new = old + drafts.len() as u64;
                txn.push(self.feed_group_action(tenant, drafts, old + 1));
                seq_actions.push(txn.len());
                txn.push(self.feed_seq_action(tenant, old, new));
                moved.push((tenant.clone(), new));
            }
            match self.transact(txn).await? {
                TxnOutcome::Committed => {
                    seqs.extend(moved);
                    feed_races = 0;
                    for (i, _) in chunk {
                        settle(i, UnitOutcome::Committed)?;
                    }
                }
                TxnOutcome::Cancelled(reasons) => {
                    // Another writer moved a tenant's sequence: read it again.
                    let mut raced = false;
                    for (at, (tenant, _)) in seq_actions.iter().zip(&feeds) {
                        if reasons.get(*at).is_some_and(CancelReason::condition_failed) {
                            seqs.remove(tenant);
                            raced = true;
                        }
                    }
                    let mut pos = 0;
                    let mut retry = Vec::new();
                    let mut any_failed = false;
                    for (i, unit) in chunk {
                        let reason = reasons.get(pos);
                        pos += unit.actions.len();
                        match reason {
                            Some(r) if r.condition_failed() => {
                                any_failed = true;
                                settle(i, UnitOutcome::Refused(r.item.clone()))?;
                            }
                            _ => retry.push((i, unit)),
                        }
                    }
                    if raced && !any_failed {
                        feed_races += 1;
                        if feed_races > FEED_RACES_MAX {
                            return Err(StoreError::backend(
                                "dynamodb TransactWriteItems",
                                "a tenant's feed sequence kept moving under this writer",
                            ));
                        }
                        tokio::time::sleep(RETRY.delay(feed_races.min(6), None)).await;
                    } else if !any_failed {
                        return Err(StoreError::backend(
                            "dynamodb TransactWriteItems",
                            format!("transaction cancelled: {reasons:?}"),
                        ));
                    }
                    retry.extend(pending);
                    pending = retry.into();
                }
            }
        }
        Ok(())
    }
}
