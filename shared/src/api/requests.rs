//! The request routes: enqueue one, enqueue a JSONL file, read one, cancel one.

use serde_json::{json, Value};

use super::error::ApiError;
use super::parse::{self, ParsedLine};
use super::query::Query;
use super::{Api, ApiRequest, ApiResponse};
use crate::ids::{CustomId, RequestKey, TenantId};
use crate::money::Money;
use crate::request::{InsertOutcome, NewRequest, Payload, Request, RequestResult, RequestStatus};
use crate::spend::{self, Standing};
use crate::store::StoreError;
use crate::transition::RequestUpdate;
use crate::views::{self, ResponseBody};

impl Api {
    /// Refuses, with 429 and before anything is written, an enqueue that
    /// would take the tenant past its quota of unfinished requests or bytes.
    /// The check reads the tenant's counters; concurrent enqueues may pass
    /// it together, so the quota can be overshot by one call's worth.
    ///
    /// Then the tenant's spend budgets ([`crate::spend`]): `cost` more
    /// committed must not pass a limit. Answers the budget periods whose
    /// 80% warning this enqueue crosses.
    pub(super) async fn check_limits(
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
        let stored = crate::overhead::stored_bytes(&new);
        self.ports.usage.record(|u| u.dynamodb_bytes += stored);
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

    pub(super) fn check_payload_size(&self, req: &ApiRequest) -> Result<(), ApiError> {
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
            Some(Payload::Inline(text)) => inline_response(r, text),
            // A response kept as a range of a shared object cannot be
            // presigned alone: it is read and embedded.
            Some(payload @ Payload::Chunk { key, .. }) => {
                match crate::store::placed::payload_text(self.ports.objects.as_ref(), payload).await? {
                    Some(text) => inline_response(r, &text),
                    None => {
                        tracing::error!(key = %r.key, object = %key, "response chunk is missing");
                        ResponseBody::None
                    }
                }
            }
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
    pub(super) fn new_request(&self, tenant: &TenantId, line: ParsedLine) -> Result<NewRequest, ApiError> {
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

fn unknown(custom_id: &CustomId) -> ApiError {
    ApiError::not_found(format!("no request with custom_id {:?}", custom_id.as_str()))
}

pub(super) fn conflict(existing: &Request) -> ApiError {
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

/// The request a `/v1/requests/{custom_id}` route addresses: the route takes
/// no query parameters, and the key is derived from the tenant and the id.
fn addressed(tenant: &TenantId, raw_id: &str, req: &ApiRequest) -> Result<(CustomId, RequestKey), ApiError> {
    Query::parse(&req.query, &[])?;
    let custom_id = CustomId::parse(raw_id)?;
    let key = RequestKey::derive(tenant, &custom_id);
    Ok((custom_id, key))
}

/// An inline response as JSON, or as a string when it is not JSON (stored
/// by ingest from the provider's file; never expected).
fn inline_response(r: &RequestResult, text: &str) -> ResponseBody {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => ResponseBody::Inline(v),
        Err(_) => {
            tracing::warn!(key = %r.key, "stored inline response is not JSON; returned as a string");
            ResponseBody::Inline(Value::String(text.to_owned()))
        }
    }
}
