//! Running savings totals per tenant, day and model, each result file
//! counted once.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::item::{err_msg, n, s, Reader};
use super::job_item::usage_of;
use super::query::QuerySpec;
use super::schema::*;
use super::DynamoStore;
use crate::ids::{ModelName, ProviderName, TenantId};
use crate::money::Money;
use crate::store::{SavingsRow, SavingsStore, SavingsTotals, StoreError};

fn savings_pk(t: &TenantId) -> String {
    format!("savings#{t}")
}

#[async_trait]
impl SavingsStore for DynamoStore {
    async fn add_savings(&self, source: &str, rows: Vec<SavingsRow>) -> Result<(), StoreError> {
        for row in rows {
            let t = &row.totals;
            let values = HashMap::from([
                (":requests".to_owned(), n(t.requests)),
                (":input".to_owned(), n(t.usage.input_tokens)),
                (":cached".to_owned(), n(t.usage.cached_input_tokens)),
                (":output".to_owned(), n(t.usage.output_tokens)),
                (":reasoning".to_owned(), n(t.usage.reasoning_tokens)),
                (":cache_write".to_owned(), n(t.usage.cache_write_tokens)),
                (":batch".to_owned(), n(t.batch_cost.picodollars())),
                (":realtime".to_owned(), n(t.realtime_cost.picodollars())),
                (":unpriced".to_owned(), n(t.unpriced_requests)),
                (":overhead".to_owned(), n(t.aws_overhead.picodollars())),
                (":sources".to_owned(), AttributeValue::Ss(vec![source.to_owned()])),
                (":source".to_owned(), s(source)),
                (":day".to_owned(), s(row.day.clone())),
                (":model".to_owned(), s(row.model.as_str())),
                (":provider".to_owned(), s(row.provider.as_str())),
            ]);
            let res = self
                .client
                .update_item()
                .table_name(&self.jobs_table)
                .key(PK, s(savings_pk(&row.tenant)))
                .key(SK, s(format!("{}#{}#{}", row.day, row.provider, row.model)))
                // Every attribute through a name placeholder: none can clash with a reserved word.
                .update_expression(
                    "SET #day = :day, #model = :model, #provider = :provider \
                     ADD #requests :requests, #input :input, #cached :cached, #output :output, \
                     #reasoning :reasoning, #cache_write :cache_write, #batch :batch, #realtime :realtime, #unpriced :unpriced, #overhead :overhead, \
                     #sources :sources",
                )
                .condition_expression("attribute_not_exists(#sources) OR NOT contains(#sources, :source)")
                .set_expression_attribute_names(Some(HashMap::from(
                    [
                        ("#day", "day"),
                        ("#model", "model"),
                        ("#provider", "provider"),
                        ("#requests", "requests"),
                        ("#input", "input_tokens"),
                        ("#cached", "cached_input_tokens"),
                        ("#output", "output_tokens"),
                        ("#reasoning", "reasoning_tokens"),
                        ("#cache_write", "cache_write_tokens"),
                        ("#batch", "batch_cost"),
                        ("#realtime", "realtime_cost"),
                        ("#unpriced", "unpriced_requests"),
                        ("#overhead", "aws_overhead"),
                        ("#sources", "sources"),
                    ]
                    .map(|(k, v)| (k.to_owned(), v.to_owned())),
                )))
                .set_expression_attribute_values(Some(values))
                .send()
                .await;
            match res {
                Ok(_) => {}
                // Already counted: a replay.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(StoreError::backend("dynamodb UpdateItem", err_msg(e))),
            }
        }
        Ok(())
    }

    async fn savings(&self, tenant: &TenantId, from: &str, to: &str) -> Result<Vec<SavingsRow>, StoreError> {
        let values = HashMap::from([
            (":pk".to_owned(), s(savings_pk(tenant))),
            (":from".to_owned(), s(from)),
            // Every `{to}#{provider}#{model}` sorts below `{to}#` followed by U+FFFF.
            (":to".to_owned(), s(format!("{to}#\u{ffff}"))),
        ]);
        let items = self
            .query_all(QuerySpec::new(
                &self.jobs_table,
                None,
                "pk = :pk AND sk BETWEEN :from AND :to",
                values,
            ))
            .await?;
        items
            .iter()
            .map(|item| {
                let r = Reader::new(item, "savings");
                Ok(SavingsRow {
                    tenant: tenant.clone(),
                    day: r.req_s("day")?.to_owned(),
                    provider: match r.opt_s("provider")? {
                        Some(v) => ProviderName::parse(v).map_err(|e| r.corrupt(e.message))?,
                        None => ProviderName::default_name(),
                    },
                    model: r.parse("model", |v| ModelName::parse(v).map_err(|e| e.message))?,
                    totals: SavingsTotals {
                        requests: r.req_n("requests")?,
                        usage: usage_of(&r)?,
                        batch_cost: Money::from_picodollars(r.req_n("batch_cost")?),
                        realtime_cost: Money::from_picodollars(r.req_n("realtime_cost")?),
                        unpriced_requests: r.req_n("unpriced_requests")?,
                        aws_overhead: Money::from_picodollars(r.opt_n("aws_overhead")?.unwrap_or(0)),
                    },
                })
            })
            .collect()
    }
}
