//! poll: what the provider's answers teach the model's enqueued-token
//! budget (a refusal lowers it, an accepted batch may raise it).

use std::time::Duration;

use super::Poller;
use crate::budget::TokenBudget;
use crate::job::Job;
use crate::pipeline::PipelineError;

impl Poller {
    /// Updates the model's enqueued-token budget with `learn`.
    pub(super) async fn learn_budget(
        &self,
        job: &Job,
        learn: impl FnOnce(&TokenBudget, Duration) -> TokenBudget,
    ) -> Result<(), PipelineError> {
        let now = self.core.now();
        let config = &self.core.config;
        let configured = config.limits.enqueued_token_limit(job.model.as_str());
        let current = self
            .core
            .ports
            .jobs
            .token_budgets()
            .await?
            .remove(&job.model)
            .unwrap_or_else(|| TokenBudget::initial(job.model.clone(), configured, now));
        let next = learn(&current, config.policy.token_limit_hold);
        if next != current {
            if next.refusals_in_row > 0 {
                tracing::warn!(
                    job = %job.id,
                    model = %job.model,
                    batch_tokens = job.tokens,
                    in_flight_tokens = job.tokens_in_flight_before,
                    budget = next.limit,
                    stated_limit = next.stated_limit,
                    refusals_in_row = next.refusals_in_row,
                    "the provider refused a batch for the model's enqueued-token limit; budget lowered"
                );
            } else if next.limit != current.limit {
                tracing::info!(model = %job.model, budget = next.limit, "batch accepted; enqueued-token budget raised");
            }
            self.core.ports.jobs.save_token_budget(&next).await?;
        }
        Ok(())
    }

    /// The provider took the job's batch into its queue: the model's budget
    /// may grow (learnt once, by the run that recorded the move).
    pub(super) async fn learn_accepted(&self, job: &Job) -> Result<(), PipelineError> {
        let now = self.core.now();
        let configured = self.core.config.limits.enqueued_token_limit(job.model.as_str());
        self.learn_budget(job, |b, _| b.accepted(configured, now)).await
    }
}
