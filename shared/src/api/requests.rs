//! The request routes: enqueue one, enqueue a JSONL file, read one, cancel one.

use serde_json::{json, Value};

use super::error::ApiError;
use super::parse::{self, ParsedLine};
use super::query::Query;
use super::views::{self, ResponseBody};
use super::{Api, ApiRequest, ApiResponse};
use crate::ids::{CustomId, RequestKey, TenantId};
use crate::money::Money;
use crate::request::{InsertOutcome, NewRequest, Payload, Request, RequestResult, RequestStatus};
use crate::spend::{self, Standing};
use crate::store::StoreError;
use crate::transition::RequestUpdate;

impl Api {
    /// Refuses, with 429 and before anything is written, an enqueue that
    /// would take the tenant past its quota of unfinished requests or bytes.
    /// The check reads the tenant's counters; concurrent enqueues may pass
    /// it together, so the quota can be overshot by one call's worth.
    ///
    /// Then the tenant's spend budgets ([`crate::spend`]): `cost` more
    /// committed must not pass a limit. Answers the budget periods whose
    /// 80% warning this enqueue crosses.
    async fn check_limits(
        &self,
        tenant: &TenantId,
        requests: u64,
        bytes: u64,
        cost: Money,
    ) -> Result<Vec<Standing>, ApiError> {
        let counts = self.ports.requests.counts(tenant).await?;
        let pending = counts.pending().max(0) as u64;
        let pending_bytes = counts.pending_bytes.max(0) as u64;
        let (max, max_bytes) = (self.limits.tenant_max_pending, self.limits.tenant_max_pending_bytes);
        if pending + requests > max {
            return Err(ApiError::QuotaExceeded {
                message: format!(
                    "tenant {tenant} has {pending} unfinished requests; adding {requests} would pass its quota of {max}. Retry once some have finished"
                ),
                field: None,
            });
        }
        if pending_bytes + bytes > max_bytes {
            return Err(ApiError::QuotaExceeded {
                message: format!(
                    "tenant {tenant} has {pending_bytes} bytes of unfinished request bodies; adding {bytes} would pass its quota of {max_bytes}. Retry once some have finished"
                ),
                field: None,
            });
        }
        self.check_budget(tenant, &counts, cost).await
    }

    /// `POST /v1/requests`: 202 created, 200 when the same request is
    /// already there, 409 when the custom_id holds a different one.
    pub(super) async fn create(&self, tenant: &TenantId, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
        Query::parse(&req.query, &[])?;
        parse::check_content_type(req.content_type.as_deref(), parse::JSON_TYPES)?;
        self.check_payload_size(req)?;
        let value = parse::decode_document(&req.body)?;
        let line = parse::parse_line(value, self.limits.max_body_bytes)?;
        let new = self.new_request(tenant, line)?;
        let cost = spend::nanos(new.estimated_cost_nanos as i64);
        let crossed = self.check_limits(tenant, 1, new.body_bytes(), cost).await?;
        let outcome = self
            .ports
            .requests
            .insert(vec![new], self.ports.clock.now())
            .await?
            .pop()
            .ok_or(ApiError::Internal)?;
        match outcome {
            InsertOutcome::Created(r) => {
                tracing::info!(key = %r.key, url = %r.endpoint, model = %r.model, body_bytes = r.body_bytes, "request queued");
                self.warn_budget(tenant, &crossed, cost);
                Ok(ApiResponse::json(202, Value::Object(views::request(&r)))
                    .with_header("Location", format!("/v1/requests/{}", r.custom_id)))
            }
            InsertOutcome::Existing(r) => Ok(ApiResponse::json(200, Value::Object(views::request(&r)))),
            InsertOutcome::Conflict(r) => Err(conflict(&r)),
        }
    }

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
        let mut good: Vec<(usize, NewRequest)> = Vec::new();
        for (line, parsed) in lines.iter().zip(self.parse_bulk_lines(tenant, &lines)) {
            match parsed {
                Ok(new) => {
                    good.push((outcomes.len(), new));
                    outcomes.push(LineOutcome::pending(line.number));
                }
                Err((label, e)) => outcomes.push(LineOutcome::rejected(line.number, label, e)),
            }
        }

        if good.is_empty() {
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

        let adding_bytes = good.iter().map(|(_, n)| n.body_bytes()).sum();
        let cost = spend::nanos(good.iter().map(|(_, n)| n.estimated_cost_nanos as i64).sum());
        let crossed = self.check_limits(tenant, good.len() as u64, adding_bytes, cost).await?;
        let now = self.ports.clock.now();
        let mut rest = good;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(super::INSERT_CHUNK));
            let chunk = std::mem::replace(&mut rest, tail);
            let (slots, news): (Vec<usize>, Vec<NewRequest>) = chunk.into_iter().unzip();
            let results = self.ports.requests.insert(news, now).await?;
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
        }

        let count = |o: Outcome| outcomes.iter().filter(|l| l.outcome == o).count();
        if count(Outcome::Created) > 0 {
            self.warn_budget(tenant, &crossed, cost);
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

    /// `GET /v1/requests/{custom_id}`.
    pub(super) async fn get_request(
        &self,
        tenant: &TenantId,
        raw_id: &str,
        req: &ApiRequest,
    ) -> Result<ApiResponse, ApiError> {
        let (custom_id, key) = addressed(tenant, raw_id, req)?;
        let (request, result) = self
            .ports
            .requests
            .get_with_result(&key)
            .await?
            .filter(|(r, _)| r.tenant == *tenant)
            .ok_or_else(|| unknown(&custom_id))?;
        Ok(ApiResponse::json(200, self.request_view(&request, result).await?))
    }

    /// A request as `GET /v1/requests/{custom_id}` shows it: its state,
    /// its job's status while claimed, and its result once stored (a large
    /// response as a short-lived URL). `GET /v1/results` shows the same.
    pub(super) async fn request_view(
        &self,
        request: &Request,
        result: Option<RequestResult>,
    ) -> Result<Value, ApiError> {
        let mut view = views::request(request);
        let job_status = match (&request.status, &request.job_id) {
            (RequestStatus::Claimed, Some(job_id)) => self.ports.jobs.get_job(job_id).await?.map(|j| j.status.as_str()),
            _ => None,
        };
        view.insert("job_status".into(), json!(job_status));
        let result_view = match result {
            Some(r) => {
                let body = self.response_body(&r).await?;
                views::result(&r, body)
            }
            None => Value::Null,
        };
        view.insert("result".into(), result_view);
        Ok(Value::Object(view))
    }

    /// `DELETE /v1/requests/{custom_id}`: queued → cancelled. Cancelling a
    /// cancelled request again is a no-op (200); a request already taken by
    /// a job cannot be cancelled (409).
    pub(super) async fn cancel(
        &self,
        tenant: &TenantId,
        raw_id: &str,
        req: &ApiRequest,
    ) -> Result<ApiResponse, ApiError> {
        let (custom_id, key) = addressed(tenant, raw_id, req)?;
        let request = self
            .ports
            .requests
            .get(&key)
            .await?
            .filter(|r| r.tenant == *tenant)
            .ok_or_else(|| unknown(&custom_id))?;
        match request.status {
            RequestStatus::Cancelled => return Ok(ApiResponse::json(200, Value::Object(views::request(&request)))),
            RequestStatus::Queued => {}
            _ => return Err(not_cancellable(&request)),
        }
        match self
            .ports
            .requests
            .apply(RequestUpdate::cancel(&request, self.ports.clock.now()))
            .await
        {
            Ok(_) => {}
            // Lost a race (a submit claimed it, or another cancel won): the
            // state read below says which.
            Err(StoreError::ConditionFailed { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let now = self.ports.requests.get(&key).await?.ok_or(ApiError::Internal)?;
        if now.status == RequestStatus::Cancelled {
            tracing::info!(key = %now.key, "request cancelled");
            Ok(ApiResponse::json(200, Value::Object(views::request(&now))))
        } else {
            Err(not_cancellable(&now))
        }
    }

    fn check_payload_size(&self, req: &ApiRequest) -> Result<(), ApiError> {
        if req.body.len() > self.limits.max_payload_bytes {
            return Err(ApiError::too_large(
                None,
                "payload_too_large",
                format!(
                    "the payload is {} bytes; at most {} are accepted",
                    req.body.len(),
                    self.limits.max_payload_bytes
                ),
            ));
        }
        Ok(())
    }

    /// The stored response: embedded when inline, else a presigned URL.
    async fn response_body(&self, r: &RequestResult) -> Result<ResponseBody, ApiError> {
        Ok(match &r.response {
            None => ResponseBody::None,
            Some(Payload::Inline(text)) => match serde_json::from_str::<Value>(text) {
                Ok(v) => ResponseBody::Inline(v),
                Err(_) => {
                    // Stored by ingest from the provider's file; never expected.
                    tracing::warn!(key = %r.key, "stored inline response is not JSON; returned as a string");
                    ResponseBody::Inline(Value::String(text.clone()))
                }
            },
            Some(Payload::S3 { key, bytes }) => {
                let ttl = self.limits.result_url_ttl;
                let url = self.ports.objects.presign_get(key, ttl).await?;
                ResponseBody::Url {
                    url,
                    bytes: *bytes,
                    expires_at: self.ports.clock.now().plus(ttl),
                }
            }
        })
    }
}

impl Api {
    /// The request a valid line makes, routed to its provider instance; a
    /// line no configured provider can take is refused naming the field.
    /// Parses and validates the lines of a bulk body, in order. A large body
    /// is split between two threads when the machine has more than one
    /// core: parsing, canonicalising and hashing 4 KB bodies is most of a
    /// bulk enqueue's own time, and nothing else runs during it.
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

    fn new_request(&self, tenant: &TenantId, line: ParsedLine) -> Result<NewRequest, ApiError> {
        let routed = self
            .routing
            .route(line.endpoint, &line.model, line.provider.as_deref())?;
        let provider = routed.name.clone();
        let estimate = self.estimate(tenant, routed.kind, &line)?;
        let named = line.provider.is_some();
        let new = NewRequest::weighed(
            tenant.clone(),
            line.custom_id,
            line.endpoint,
            line.model,
            line.body_json,
            line.weight,
        )
        .estimated(estimate);
        Ok(if named {
            new.sent_to(provider)
        } else {
            new.routed_to(provider)
        })
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

fn unknown(custom_id: &CustomId) -> ApiError {
    ApiError::not_found(format!("no request with custom_id {:?}", custom_id.as_str()))
}

fn conflict(existing: &Request) -> ApiError {
    ApiError::Conflict {
        code: "conflict",
        message: format!(
            "custom_id {:?} is already used by a request with different content (url, body); use a new custom_id",
            existing.custom_id.as_str()
        ),
        field: Some("custom_id".into()),
    }
}

fn not_cancellable(r: &Request) -> ApiError {
    let job = r.job_id.as_ref().map(|j| format!(" (job {j})")).unwrap_or_default();
    ApiError::Conflict {
        code: "not_cancellable",
        message: format!(
            "request {:?} is {}{job}; only queued requests can be cancelled",
            r.custom_id.as_str(),
            r.status
        ),
        field: None,
    }
}

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

/// The request a `/v1/requests/{custom_id}` route addresses: the route takes
/// no query parameters, and the key is derived from the tenant and the id.
fn addressed(tenant: &TenantId, raw_id: &str, req: &ApiRequest) -> Result<(CustomId, RequestKey), ApiError> {
    Query::parse(&req.query, &[])?;
    let custom_id = CustomId::parse(raw_id)?;
    let key = RequestKey::derive(tenant, &custom_id);
    Ok((custom_id, key))
}
