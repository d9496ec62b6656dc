//! `POST /v1/requests/bulk`: a JSONL body of up to [`MAX_BULK_LINES`]
//! requests, one outcome per line.
//!
//! The lines are parsed in parts, and each part's insert runs while the next
//! part is parsed: parsing (JSON, the canonical body, its hash, the token
//! estimate) and the store's write take about the same time, and on a
//! machine with two cores they overlap instead of adding up. That needs the
//! quota and budget checks answered before the first insert, from figures
//! known before parsing:
//!
//! - the quota from upper bounds: every line a request, and every body as
//!   long as its whole line (a canonical body is compact JSON of the body
//!   the line carries, never longer than the line);
//! - a budget needs each line's estimated cost, so a tenant with a budget,
//!   or a call the upper bounds do not clear, is parsed whole first, checked
//!   with exact figures, and then inserted part by part.
//!
//! Either way nothing is written when the call is refused, parts are
//! inserted in order (a custom_id repeated in a later part finds the earlier
//! one's row), and one part's insert finishes before the next one starts.
//!
//! [`MAX_BULK_LINES`]: super::MAX_BULK_LINES

use serde_json::{json, Value};

use super::error::ApiError;
use super::parse;
use super::query::Query;
use super::requests::conflict;
use super::{Api, ApiRequest, ApiResponse};
use crate::ids::{CustomId, TenantId};
use crate::request::{InsertOutcome, NewRequest, RequestStatus};
use crate::spend;
use crate::store::StoreError;
use crate::time::Timestamp;

/// Lines parsed, then inserted, as one part when the checks passed before
/// parsing. Smaller parts overlap more of the parsing with the writing but
/// cost a store transaction each (an fsync on the embedded store).
pub const STREAM_PART_LINES: usize = 500;

impl Api {
    /// `POST /v1/requests/bulk`: one outcome per non-blank line. Bad lines
    /// are rejected with their number; good ones are stored all the same.
    pub(super) async fn bulk(&self, tenant: &TenantId, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
        Query::parse(&req.query, &[])?;
        parse::check_content_type(req.content_type.as_deref(), parse::JSONL_TYPES)?;
        self.check_payload_size(req)?;
        let lines = parse::bulk_lines(&req.body);
        if lines.is_empty() {
            return Err(ApiError::bad_request(
                None,
                "empty_body",
                "the bulk body has no lines; send one JSON request object per line",
            ));
        }
        if lines.len() > self.limits.max_bulk_lines {
            return Err(ApiError::too_large(
                None,
                "too_many_lines",
                format!(
                    "the bulk body has {} lines; at most {} are accepted per call",
                    lines.len(),
                    self.limits.max_bulk_lines
                ),
            ));
        }

        let mut outcomes: Vec<LineOutcome> = Vec::with_capacity(lines.len());
        let mut inserts = Inserts::new(self, self.ports.clock.now());
        if self.admits_unparsed(tenant, &lines).await? {
            for part in lines.chunks(STREAM_PART_LINES) {
                let good = self.parse_part(tenant, part, &mut outcomes);
                // This part's insert waits for the previous one's, which ran
                // while this part was parsed.
                inserts.send(&mut outcomes, good).await?;
            }
        } else {
            let good = self.parse_part(tenant, &lines, &mut outcomes);
            if !good.is_empty() {
                let adding_bytes = good.iter().map(|(_, n)| n.body_bytes()).sum();
                let cost = spend::nanos(good.iter().map(|(_, n)| n.estimated_cost_nanos as i64).sum());
                inserts.crossed = self.check_limits(tenant, good.len() as u64, adding_bytes, cost).await?;
                inserts.cost = cost;
            }
            let mut rest = good;
            while !rest.is_empty() {
                let tail = rest.split_off(rest.len().min(super::INSERT_CHUNK));
                inserts.send(&mut outcomes, std::mem::replace(&mut rest, tail)).await?;
            }
        }
        inserts.settle(&mut outcomes).await?;
        if outcomes.iter().any(|l| l.outcome == Outcome::Created) {
            // The call's own AWS use (its last transaction's units, its time)
            // is folded now rather than by the process's next call.
            let hour = crate::activity::Hour::of(self.ports.clock.now());
            if let Err(e) = self.ports.requests.settle_overhead(tenant, hour).await {
                tracing::warn!(error = %e, "could not record the call's AWS overhead; the next call carries it");
            }
        }

        let count = |o: Outcome| outcomes.iter().filter(|l| l.outcome == o).count();
        if count(Outcome::Rejected) == outcomes.len() {
            // Nothing was handed to the store.
            let first = outcomes.first().and_then(|o| o.error.as_ref().map(|e| (o.line, e)));
            let (n, e) = first.ok_or(ApiError::Internal)?;
            let err = ApiError::BadRequest {
                code: "no_valid_lines",
                message: format!("no line could be enqueued ({} rejected); line {n}: {e}", outcomes.len()),
                field: e.field().map(|f| format!("line {n}: {f}")),
            };
            let mut body = err.body();
            body["results"] = Value::Array(outcomes.iter().map(LineOutcome::to_json).collect());
            return Ok(ApiResponse::json(400, body));
        }
        if count(Outcome::Created) > 0 {
            self.warn_budget(tenant, &inserts.crossed, inserts.cost);
        }
        let summary = json!({
            "lines": outcomes.len(),
            "created": count(Outcome::Created),
            "existing": count(Outcome::Existing),
            "conflict": count(Outcome::Conflict),
            "rejected": count(Outcome::Rejected),
        });
        tracing::info!(
            lines = outcomes.len(),
            created = count(Outcome::Created),
            rejected = count(Outcome::Rejected),
            "bulk enqueue"
        );
        Ok(ApiResponse::json(
            200,
            json!({
                "summary": summary,
                "results": outcomes.iter().map(LineOutcome::to_json).collect::<Vec<_>>(),
            }),
        ))
    }

    /// Whether the tenant's quota admits the call before its lines are
    /// parsed, from upper bounds (see the module's doc). Never with a
    /// budget: that check needs each line's estimated cost.
    async fn admits_unparsed(&self, tenant: &TenantId, lines: &[parse::BulkLine<'_>]) -> Result<bool, ApiError> {
        if self.limits.budgets.for_tenant(tenant).any() {
            return Ok(false);
        }
        let counts = self.ports.requests.counts(tenant).await?;
        let pending = counts.pending().max(0) as u64;
        let pending_bytes = counts.pending_bytes.max(0) as u64;
        let most_bytes: u64 = lines.iter().map(|l| l.bytes.len() as u64).sum();
        Ok(pending + lines.len() as u64 <= self.limits.tenant_max_pending
            && pending_bytes + most_bytes <= self.limits.tenant_max_pending_bytes)
    }

    /// Parses `lines`, adds one outcome per line to `outcomes` (rejected, or
    /// pending its insert) and answers the valid ones with their slots.
    fn parse_part(
        &self,
        tenant: &TenantId,
        lines: &[parse::BulkLine<'_>],
        outcomes: &mut Vec<LineOutcome>,
    ) -> Vec<(usize, NewRequest)> {
        let mut good = Vec::with_capacity(lines.len());
        for (line, parsed) in lines.iter().zip(self.parse_bulk_lines(tenant, lines)) {
            match parsed {
                Ok(new) => {
                    good.push((outcomes.len(), new));
                    outcomes.push(LineOutcome::pending(line.number));
                }
                Err((label, e)) => outcomes.push(LineOutcome::rejected(line.number, label, e)),
            }
        }
        good
    }

    /// Parses and validates the lines of a bulk body, in order. A large body
    /// is split between two threads when the machine has more than one
    /// core: parsing, canonicalising and hashing 4 KB bodies is most of a
    /// bulk enqueue's own time.
    fn parse_bulk_lines(&self, tenant: &TenantId, lines: &[parse::BulkLine<'_>]) -> Vec<Result<NewRequest, LineError>> {
        let one = |line: &parse::BulkLine<'_>| self.parse_bulk_line(tenant, line);
        if cores() < 2 || lines.len() < PARALLEL_PARSE_MIN_LINES {
            return lines.iter().map(one).collect();
        }
        let (first, second) = lines.split_at(lines.len() / 2);
        std::thread::scope(|scope| {
            let other = scope.spawn(|| second.iter().map(one).collect::<Vec<_>>());
            let mut out: Vec<_> = first.iter().map(one).collect();
            match other.join() {
                Ok(rest) => out.extend(rest),
                Err(panic) => std::panic::resume_unwind(panic),
            }
            out
        })
    }

    fn parse_bulk_line(&self, tenant: &TenantId, line: &parse::BulkLine<'_>) -> Result<NewRequest, LineError> {
        let value = parse::decode_line(line.bytes).map_err(|e| (None, e))?;
        let label = parse::custom_id_of(&value);
        parse::parse_line(value, self.limits.max_body_bytes)
            .and_then(|p| self.new_request(tenant, p))
            .map_err(|e| (label, e))
    }
}

/// The parts of one bulk call handed to the store: at most one insert in
/// flight, running on its own task while the caller parses the next part.
struct Inserts {
    store: std::sync::Arc<dyn crate::store::RequestStore>,
    /// The process's AWS usage (the stored bytes of what is inserted).
    usage: std::sync::Arc<crate::overhead::UsageTally>,
    now: Timestamp,
    in_flight: Option<InFlight>,
    /// The budget periods whose warning the call crosses, and the cost it
    /// adds (only known when the lines were parsed before the checks).
    crossed: Vec<spend::Standing>,
    cost: crate::money::Money,
}

struct InFlight {
    slots: Vec<usize>,
    task: tokio::task::JoinHandle<Result<Vec<InsertOutcome>, StoreError>>,
}

impl Inserts {
    fn new(api: &Api, now: Timestamp) -> Self {
        Self {
            store: api.ports.requests.clone(),
            usage: api.ports.usage.clone(),
            now,
            in_flight: None,
            crossed: Vec::new(),
            cost: crate::money::Money::ZERO,
        }
    }

    /// Settles the insert in flight, then starts this part's.
    async fn send(&mut self, outcomes: &mut [LineOutcome], part: Vec<(usize, NewRequest)>) -> Result<(), ApiError> {
        self.settle(outcomes).await?;
        if part.is_empty() {
            return Ok(());
        }
        let (slots, news): (Vec<usize>, Vec<NewRequest>) = part.into_iter().unzip();
        let stored: u64 = news.iter().map(crate::overhead::stored_bytes).sum();
        self.usage.record(|u| u.dynamodb_bytes += stored);
        let (store, now) = (self.store.clone(), self.now);
        self.in_flight = Some(InFlight {
            slots,
            task: tokio::spawn(async move { store.insert(news, now).await }),
        });
        Ok(())
    }

    /// Waits for the insert in flight, if any, and records its outcomes.
    async fn settle(&mut self, outcomes: &mut [LineOutcome]) -> Result<(), ApiError> {
        let Some(InFlight { slots, task }) = self.in_flight.take() else {
            return Ok(());
        };
        let results = task.await.map_err(|e| {
            tracing::error!(error = %e, "a bulk insert task did not finish");
            ApiError::Internal
        })??;
        if results.len() != slots.len() {
            tracing::error!(
                sent = slots.len(),
                got = results.len(),
                "insert answered a different number of outcomes"
            );
            return Err(ApiError::Internal);
        }
        for (slot, result) in slots.into_iter().zip(results) {
            outcomes[slot].settle(result);
        }
        Ok(())
    }
}

/// The cores this process may use, asked once: the answer reads the
/// cgroup's files on Linux, too much to repeat on every bulk call.
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// A bulk body with fewer lines is parsed on the calling thread alone.
const PARALLEL_PARSE_MIN_LINES: usize = 64;

/// Why a bulk line was rejected, with its custom_id when it had a valid one.
type LineError = (Option<CustomId>, ApiError);
/// What happened to one line of a bulk enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Valid, not yet handed to the store.
    Pending,
    Created,
    Existing,
    Conflict,
    Rejected,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Created => "created",
            Self::Existing => "existing",
            Self::Conflict => "conflict",
            Self::Rejected => "rejected",
        }
    }
}

/// One line's outcome, as reported back.
struct LineOutcome {
    line: usize,
    custom_id: Option<CustomId>,
    outcome: Outcome,
    status: Option<RequestStatus>,
    error: Option<ApiError>,
}

impl LineOutcome {
    fn pending(line: usize) -> Self {
        Self {
            line,
            custom_id: None,
            outcome: Outcome::Pending,
            status: None,
            error: None,
        }
    }

    fn rejected(line: usize, custom_id: Option<CustomId>, error: ApiError) -> Self {
        Self {
            line,
            custom_id,
            outcome: Outcome::Rejected,
            status: None,
            error: Some(error),
        }
    }

    fn settle(&mut self, result: InsertOutcome) {
        let (outcome, r) = match result {
            InsertOutcome::Created(r) => (Outcome::Created, r),
            InsertOutcome::Existing(r) => (Outcome::Existing, r),
            InsertOutcome::Conflict(r) => {
                self.error = Some(conflict(&r));
                (Outcome::Conflict, r)
            }
        };
        self.outcome = outcome;
        self.status = Some(r.status);
        self.custom_id = Some(r.custom_id);
    }

    fn to_json(&self) -> Value {
        json!({
            "line": self.line,
            "custom_id": self.custom_id,
            "outcome": self.outcome.as_str(),
            "status": self.status.map(|s| s.as_str()),
            "error": self.error.as_ref().map(ApiError::to_json),
        })
    }
}
