//! The job rows, the (tenant, job) items that let a tenant list and read
//! its jobs, and the per-model token budgets.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use futures::StreamExt;

use super::item::{err_msg, expiry_secs, n, s, Reader};
use super::job_item::{job_from_item, job_to_item};
use super::query::QuerySpec;
use super::schema::*;
use super::{DynamoStore, Item};
use crate::budget::TokenBudget;
use crate::ids::{JobId, ModelName, TenantId};
use crate::job::Job;
use crate::store::{JobStore, Page, StoreError};
use crate::time::Timestamp;

/// How long after its job's creation a tenant's job item is kept, on top
/// of the retention: longer than any job stays open (its deadline, the
/// cancel grace and the watch of a given-up batch).
const JOB_TENANT_HORIZON: Duration = Duration::from_secs(7 * 86_400);

/// A tenant's jobs, newest first: one small item per (tenant, job).
fn tenant_jobs_pk(t: &TenantId) -> String {
    format!("jobs#tenant#{t}")
}

fn tenant_job_sk(job: &Job) -> String {
    format!("{:015}#{}", job.created_at.millis().max(0), job.id)
}

/// Per-model enqueued-token budgets (sort key: the model).
const BUDGET_PK: &str = "budget#tokens";

impl DynamoStore {
    /// Writes one item of the jobs table as it is (no condition).
    async fn put_job_item(&self, item: Item) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.jobs_table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| StoreError::backend("dynamodb PutItem", err_msg(e)))?;
        Ok(())
    }
}

#[async_trait]
impl JobStore for DynamoStore {
    async fn create_job(&self, job: &Job) -> Result<(), StoreError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.jobs_table)
            .set_item(Some(job_to_item(job, self.retention)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::ConditionFailed {
                    entity: "job",
                    id: job.id.to_string(),
                    expected: "no row".into(),
                    actual: Some("exists".into()),
                })
            }
            Err(e) => Err(StoreError::backend("dynamodb PutItem", err_msg(e))),
        }
    }

    async fn get_job(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        self.get_item(&self.jobs_table, &format!("job#{id}"), SK_JOB)
            .await?
            .map(|i| job_from_item(&i))
            .transpose()
    }

    async fn save_job(&self, prev: &Job, next: Job) -> Result<Job, StoreError> {
        let next = prev.succeeded_by(next)?;
        let res = self
            .client
            .put_item()
            .table_name(&self.jobs_table)
            .set_item(Some(job_to_item(&next, self.retention)))
            .condition_expression("#status = :status AND version = :version")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", s(prev.status.as_str()))
            .expression_attribute_values(":version", n(prev.version))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match res {
            Ok(_) => Ok(next),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                let actual = match self.get_job(&prev.id).await? {
                    Some(cur) => Some(format!("{} v{}", cur.status, cur.version)),
                    None => None,
                };
                Err(StoreError::ConditionFailed {
                    entity: "job",
                    id: prev.id.to_string(),
                    expected: format!("{} v{}", prev.status, prev.version),
                    actual,
                })
            }
            Err(e) => Err(StoreError::backend("dynamodb PutItem", err_msg(e))),
        }
    }

    async fn open_jobs(&self) -> Result<Vec<Job>, StoreError> {
        // OPEN is a DynamoDB reserved word, hence the name placeholder.
        let values = HashMap::from([(":o".to_owned(), s("1"))]);
        let names = HashMap::from([("#open".to_owned(), "open".to_owned())]);
        let items = self
            .query_all(QuerySpec {
                names: Some(names),
                ..QuerySpec::new(&self.jobs_table, Some(OPEN_INDEX), "#open = :o", values)
            })
            .await?;
        items.iter().map(job_from_item).collect()
    }

    async fn token_budgets(&self) -> Result<HashMap<ModelName, TokenBudget>, StoreError> {
        let values = HashMap::from([(":pk".to_owned(), s(BUDGET_PK))]);
        let items = self
            .query_all(QuerySpec::new(&self.jobs_table, None, "pk = :pk", values))
            .await?;
        let mut out = HashMap::new();
        for item in &items {
            let r = Reader::new(item, "token budget");
            let ts = |name: &str| -> Result<Option<Timestamp>, StoreError> {
                Ok(r.opt_n(name)?.map(Timestamp::from_millis))
            };
            let budget = TokenBudget {
                model: r.parse(SK, |v| ModelName::parse(v).map_err(|e| e.message))?,
                limit: r.opt_n("limit")?,
                stated_limit: r.opt_n("stated_limit")?,
                stated_at: ts("stated_at")?,
                refusals_in_row: r.opt_n("refusals_in_row")?.unwrap_or(0),
                refusals_total: r.opt_n("refusals_total")?.unwrap_or(0),
                blocked_until: ts("blocked_until")?,
                updated_at: Timestamp::from_millis(r.req_n("updated_at")?),
            };
            out.insert(budget.model.clone(), budget);
        }
        Ok(out)
    }

    async fn save_token_budget(&self, b: &TokenBudget) -> Result<(), StoreError> {
        let mut item = HashMap::from([
            (PK.to_owned(), s(BUDGET_PK)),
            (SK.to_owned(), s(b.model.as_str())),
            ("refusals_in_row".to_owned(), n(b.refusals_in_row)),
            ("updated_at".to_owned(), n(b.updated_at.millis())),
        ]);
        for (name, v) in [("limit", b.limit), ("stated_limit", b.stated_limit)] {
            if let Some(v) = v {
                item.insert(name.to_owned(), n(v));
            }
        }
        item.insert("refusals_total".to_owned(), n(b.refusals_total));
        for (name, v) in [("stated_at", b.stated_at), ("blocked_until", b.blocked_until)] {
            if let Some(v) = v {
                item.insert(name.to_owned(), n(v.millis()));
            }
        }
        self.put_job_item(item).await
    }

    async fn add_job_tenants(&self, job: &Job, tenants: &[TenantId]) -> Result<(), StoreError> {
        // The item lives as long as the job can: created + the longest a
        // job stays open (deadline, grace, watch: days) + the retention.
        let expires = self
            .retention
            .map(|r| expiry_secs(job.created_at, r + JOB_TENANT_HORIZON));
        let puts = futures::stream::iter(tenants.iter().cloned())
            .map(|tenant| {
                let mut item = HashMap::from([
                    (PK.to_owned(), s(tenant_jobs_pk(&tenant))),
                    (SK.to_owned(), s(tenant_job_sk(job))),
                    ("job_id".to_owned(), s(job.id.as_str())),
                ]);
                if let Some(e) = expires {
                    item.insert(EXPIRES_AT.to_owned(), n(e));
                }
                self.put_job_item(item)
            })
            .buffer_unordered(16);
        futures::pin_mut!(puts);
        while let Some(done) = puts.next().await {
            done?;
        }
        Ok(())
    }

    async fn job_has_tenant(&self, job: &Job, tenant: &TenantId) -> Result<bool, StoreError> {
        if let Some(known) = job.holds_tenant(tenant) {
            return Ok(known);
        }
        Ok(self
            .get_item(&self.jobs_table, &tenant_jobs_pk(tenant), &tenant_job_sk(job))
            .await?
            .is_some())
    }

    async fn list_jobs(
        &self,
        tenant: Option<&TenantId>,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Job>, StoreError> {
        if let Some(t) = tenant {
            // The tenant's own partition, newest first, then each job.
            let values = HashMap::from([(":pk".to_owned(), s(tenant_jobs_pk(t)))]);
            let (items, next) = self
                .query_page(QuerySpec {
                    forward: false,
                    cursor,
                    limit: Some(limit),
                    ..QuerySpec::new(&self.jobs_table, None, "pk = :pk", values)
                })
                .await?;
            let ids = items
                .iter()
                .map(|item| Reader::new(item, "tenant job").parse("job_id", |v| JobId::parse(v).map_err(|e| e.message)))
                .collect::<Result<Vec<_>, _>>()?;
            let jobs = futures::future::try_join_all(ids.iter().map(|id| self.get_job(id))).await?;
            return Ok(Page {
                // A job deleted by its TTL before its tenant item: gone.
                items: jobs.into_iter().flatten().collect(),
                next,
            });
        }
        let values = HashMap::from([(":k".to_owned(), s("job"))]);
        let names = HashMap::from([("#kind".to_owned(), "kind".to_owned())]);
        let (items, next) = self
            .query_page(QuerySpec {
                names: Some(names),
                forward: false,
                cursor,
                limit: Some(limit),
                ..QuerySpec::new(&self.jobs_table, Some(JOBS_INDEX), "#kind = :k", values)
            })
            .await?;
        Ok(Page {
            items: items.iter().map(job_from_item).collect::<Result<_, _>>()?,
            next,
        })
    }
}

// ---------------------------------------------------------------- SavingsStore
