//! `/v1/webhooks/…`: a tenant's webhook endpoints and their deliveries.
//!
//! - `POST /v1/webhooks/endpoints` `{"url", "events"?, "mode"?, "secret"?,
//!   "description"?, "enabled"?}` → 201 with the endpoint and its `secret`
//!   (the only time it is shown; generated when not given).
//! - `GET /v1/webhooks/endpoints`, `GET /v1/webhooks/endpoints/{id}`.
//! - `PATCH /v1/webhooks/endpoints/{id}` with any of `url`, `events`, `mode`,
//!   `enabled`, `description`, `secret`, `rotate_secret: true` (a new secret
//!   is answered once).
//! - `DELETE /v1/webhooks/endpoints/{id}`: the endpoint and its deliveries.
//! - `GET /v1/webhooks/deliveries?status=&endpoint=&after=&limit=`, newest first.
//! - `POST /v1/webhooks/deliveries/{id}/replay`: a failed or delivered
//!   delivery is sent again (same `webhook-id`, fresh schedule).

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::parse::{check_content_type, decode_document, type_name};
use super::query::Query;
use super::{Api, ApiRequest, ApiResponse};
use crate::ids::TenantId;
use crate::store::webhooks::WebhookStore;
use crate::views;
use crate::webhook::delivery::{Delivery, DeliveryId, DeliveryStatus};
use crate::webhook::endpoint::{
    parse_events, DeliveryMode, Endpoint, EndpointId, EndpointUrl, EventType, MAX_ENDPOINTS_PER_TENANT,
};
use crate::webhook::signature::{SignatureError, WebhookSecret};
use crate::webhook::target::{self, TargetPolicy};

/// `GET /v1/webhooks/deliveries` page size: default and maximum.
pub const DELIVERIES_PAGE_DEFAULT: u32 = 100;
pub const DELIVERIES_PAGE_MAX: u32 = 1000;
/// Longest endpoint description.
pub const DESCRIPTION_MAX_LEN: usize = 500;

/// What the webhook routes work with.
#[derive(Clone)]
pub struct WebhookApi {
    pub store: Arc<dyn WebhookStore>,
    pub target: TargetPolicy,
}

const CREATE_FIELDS: &[&str] = &["url", "events", "mode", "secret", "description", "enabled"];
const PATCH_FIELDS: &[&str] = &[
    "url",
    "events",
    "mode",
    "secret",
    "rotate_secret",
    "description",
    "enabled",
];

fn endpoint_view(e: &Endpoint) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(e.id));
    m.insert("url".into(), json!(e.url.as_str()));
    m.insert(
        "events".into(),
        json!(e.events.iter().map(|e| e.as_str()).collect::<Vec<_>>()),
    );
    m.insert("mode".into(), json!(e.mode.as_str()));
    m.insert("enabled".into(), json!(e.enabled));
    m.insert("description".into(), json!(e.description));
    m.insert("created_at".into(), views::time(e.created_at));
    m.insert("updated_at".into(), views::time(e.updated_at));
    m
}

fn with_secret(e: &Endpoint) -> Value {
    let mut m = endpoint_view(e);
    m.insert("secret".into(), json!(e.secret.to_whsec()));
    Value::Object(m)
}

fn delivery_view(d: &Delivery) -> Value {
    json!({
        "id": d.id,
        "endpoint_id": d.endpoint,
        "event_id": d.event_id,
        "event_type": d.event_type.map(|t| t.as_str()).unwrap_or("request.batch"),
        "status": d.status.as_str(),
        "attempts": d.attempts,
        "created_at": views::time(d.created_at),
        "next_attempt_at": if d.status == DeliveryStatus::Pending { views::time(d.next_attempt_at) } else { Value::Null },
        "last_attempt_at": views::opt_time(d.last_attempt_at),
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "delivered_at": views::opt_time(d.delivered_at),
    })
}

fn object(req: &ApiRequest, known: &[&str]) -> Result<Map<String, Value>, ApiError> {
    check_content_type(req.content_type.as_deref(), &["application/json"])?;
    let Value::Object(map) = decode_document(&req.body)? else {
        return Err(ApiError::bad_request(
            None,
            "not_an_object",
            "the body must be a JSON object",
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            Some(unknown),
            "unknown_field",
            format!("unknown field; fields are {}", known.join(", ")),
        ));
    }
    Ok(map)
}

fn wrong_type(field: &str, expected: &str, v: &Value) -> ApiError {
    ApiError::bad_request(
        Some(field),
        "wrong_type",
        format!("{field} must be {expected}, not {}", type_name(v)),
    )
}

fn string_field<'a>(map: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, ApiError> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(wrong_type(field, "a string", v)),
    }
}

fn bool_field(map: &Map<String, Value>, field: &str) -> Result<Option<bool>, ApiError> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(wrong_type(field, "true or false", v)),
    }
}

fn events_field(map: &Map<String, Value>) -> Result<Option<std::collections::BTreeSet<EventType>>, ApiError> {
    match map.get("events") {
        None => Ok(None),
        Some(Value::Array(items)) => {
            let names = items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(wrong_type("events", "a list of event names", other)),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(parse_events(&names)?))
        }
        Some(v) => Err(wrong_type("events", "a list of event names", v)),
    }
}

fn mode_field(map: &Map<String, Value>) -> Result<Option<DeliveryMode>, ApiError> {
    string_field(map, "mode")?
        .map(|s| {
            DeliveryMode::parse(s).ok_or_else(|| {
                ApiError::bad_request(Some("mode"), "unsupported", "mode must be per_request or per_job")
            })
        })
        .transpose()
}

fn secret_field(map: &Map<String, Value>) -> Result<Option<WebhookSecret>, ApiError> {
    string_field(map, "secret")?
        .map(|s| {
            WebhookSecret::parse(s)
                .map_err(|e: SignatureError| ApiError::bad_request(Some("secret"), "invalid", e.to_string()))
        })
        .transpose()
}

fn description_field(map: &Map<String, Value>) -> Result<Option<Option<String>>, ApiError> {
    match map.get("description") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if s.chars().count() <= DESCRIPTION_MAX_LEN => Ok(Some(Some(s.clone()))),
        Some(Value::String(_)) => Err(ApiError::bad_request(
            Some("description"),
            "too_long",
            format!("description is longer than {DESCRIPTION_MAX_LEN} characters"),
        )),
        Some(v) => Err(wrong_type("description", "a string", v)),
    }
}

impl Api {
    fn webhook_api(&self) -> Result<&WebhookApi, ApiError> {
        self.webhooks.as_deref().ok_or_else(|| ApiError::NotFound {
            code: "webhooks_not_configured",
            message: "webhooks are not configured on this deployment".into(),
        })
    }

    async fn checked_url(&self, raw: &str) -> Result<EndpointUrl, ApiError> {
        let url = EndpointUrl::parse(raw)?;
        target::check(&url, self.webhook_api()?.target)
            .await
            .map_err(|e| ApiError::from(crate::error::ValidationError::from(e)))?;
        Ok(url)
    }

    async fn endpoint_of(&self, tenant: &TenantId, raw_id: &str) -> Result<Endpoint, ApiError> {
        let id = EndpointId::parse(raw_id)?;
        self.webhook_api()?
            .store
            .get_endpoint(tenant, &id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no webhook endpoint with id {:?}", id.as_str())))
    }

    /// `POST /v1/webhooks/endpoints`.
    pub(super) async fn create_endpoint(&self, tenant: &TenantId, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
        Query::parse(&req.query, &[])?;
        let wh = self.webhook_api()?;
        let map = object(req, CREATE_FIELDS)?;
        let raw_url = string_field(&map, "url")?
            .ok_or_else(|| ApiError::bad_request(Some("url"), "missing", "url is required"))?;
        let events = events_field(&map)?.unwrap_or_else(|| EventType::ALL.into_iter().collect());
        let mode = mode_field(&map)?.unwrap_or_default();
        let secret = secret_field(&map)?.unwrap_or_else(WebhookSecret::generate);
        let description = description_field(&map)?.flatten();
        let enabled = bool_field(&map, "enabled")?.unwrap_or(true);
        let url = self.checked_url(raw_url).await?;
        if wh.store.list_endpoints(tenant).await?.len() >= MAX_ENDPOINTS_PER_TENANT {
            return Err(ApiError::Conflict {
                code: "too_many_endpoints",
                message: format!("a tenant may have at most {MAX_ENDPOINTS_PER_TENANT} webhook endpoints"),
                field: None,
            });
        }
        // The endpoint gets the events of requests that finish from now on
        // (the dispatcher also skips anything that finished before it was
        // created): it starts at the feed's end rather than reading the
        // tenant's whole history to skip it. The end is read before the
        // clock, so every entry behind it finished before `created_at`.
        let start = self.ports.requests.feed_end(tenant).await?;
        let now = self.ports.clock.now();
        let endpoint = Endpoint {
            id: EndpointId::generate(),
            tenant: tenant.clone(),
            url,
            events,
            mode,
            secret,
            enabled,
            description,
            created_at: now,
            updated_at: now,
        };
        wh.store.create_endpoint(&endpoint, start.as_ref()).await?;
        tracing::info!(endpoint = %endpoint.id, "webhook endpoint created");
        Ok(ApiResponse::json(201, with_secret(&endpoint)))
    }

    /// `GET /v1/webhooks/endpoints`.
    pub(super) async fn list_endpoints(&self, tenant: &TenantId, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
        Query::parse(&req.query, &[])?;
        let list = self.webhook_api()?.store.list_endpoints(tenant).await?;
        Ok(ApiResponse::json(
            200,
            json!({"endpoints": list.iter().map(|e| Value::Object(endpoint_view(e))).collect::<Vec<_>>()}),
        ))
    }

    /// `GET /v1/webhooks/endpoints/{id}`.
    pub(super) async fn get_endpoint(
        &self,
        tenant: &TenantId,
        raw_id: &str,
        req: &ApiRequest,
    ) -> Result<ApiResponse, ApiError> {
        Query::parse(&req.query, &[])?;
        let e = self.endpoint_of(tenant, raw_id).await?;
        Ok(ApiResponse::json(200, Value::Object(endpoint_view(&e))))
    }

    /// `PATCH /v1/webhooks/endpoints/{id}`.
    pub(super) async fn update_endpoint(
        &self,
        tenant: &TenantId,
        raw_id: &str,
        req: &ApiRequest,
    ) -> Result<ApiResponse, ApiError> {
        Query::parse(&req.query, &[])?;
        let mut e = self.endpoint_of(tenant, raw_id).await?;
        let map = object(req, PATCH_FIELDS)?;
        // Everything is checked before anything is written.
        let url = match string_field(&map, "url")? {
            Some(raw) => Some(self.checked_url(raw).await?),
            None => None,
        };
        let events = events_field(&map)?;
        let mode = mode_field(&map)?;
        let secret = secret_field(&map)?;
        let rotate = bool_field(&map, "rotate_secret")?.unwrap_or(false);
        if rotate && secret.is_some() {
            return Err(ApiError::bad_request(
                Some("rotate_secret"),
                "invalid",
                "give either secret or rotate_secret, not both",
            ));
        }
        let description = description_field(&map)?;
        let enabled = bool_field(&map, "enabled")?;
        let new_secret = secret.or_else(|| rotate.then(WebhookSecret::generate));
        let show_secret = new_secret.is_some();
        if let Some(u) = url {
            e.url = u;
        }
        if let Some(ev) = events {
            e.events = ev;
        }
        if let Some(m) = mode {
            e.mode = m;
        }
        if let Some(s) = new_secret {
            e.secret = s;
        }
        if let Some(d) = description {
            e.description = d;
        }
        if let Some(en) = enabled {
            e.enabled = en;
        }
        e.updated_at = self.ports.clock.now();
        self.webhook_api()?.store.update_endpoint(&e).await?;
        let body = if show_secret {
            with_secret(&e)
        } else {
            Value::Object(endpoint_view(&e))
        };
        Ok(ApiResponse::json(200, body))
    }

    /// `DELETE /v1/webhooks/endpoints/{id}`.
    pub(super) async fn delete_endpoint(
        &self,
        tenant: &TenantId,
        raw_id: &str,
        req: &ApiRequest,
    ) -> Result<ApiResponse, ApiError> {
        Query::parse(&req.query, &[])?;
        let id = EndpointId::parse(raw_id)?;
        if !self.webhook_api()?.store.delete_endpoint(tenant, &id).await? {
            return Err(ApiError::not_found(format!(
                "no webhook endpoint with id {:?}",
                id.as_str()
            )));
        }
        Ok(ApiResponse::json(200, json!({"id": id, "deleted": true})))
    }

    /// `GET /v1/webhooks/deliveries`.
    pub(super) async fn list_deliveries(&self, tenant: &TenantId, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
        let q = Query::parse(&req.query, &["status", "endpoint", "after", "limit"])?;
        let limit = q.number("limit", DELIVERIES_PAGE_DEFAULT, 1, DELIVERIES_PAGE_MAX)?;
        let status = q
            .get("status")
            .map(|s| {
                DeliveryStatus::parse(s).ok_or_else(|| {
                    ApiError::bad_request(
                        Some("status"),
                        "unsupported",
                        "status must be pending, delivered or failed",
                    )
                })
            })
            .transpose()?;
        let endpoint = q
            .get("endpoint")
            .map(|s| {
                EndpointId::parse(s).map_err(|mut e| {
                    e.field = "endpoint".into();
                    ApiError::from(e)
                })
            })
            .transpose()?;
        let after = q
            .get("after")
            .map(|s| {
                DeliveryId::parse(s).map_err(|mut e| {
                    e.field = "after".into();
                    ApiError::from(e)
                })
            })
            .transpose()?;
        let list = self
            .webhook_api()?
            .store
            .list_deliveries(tenant, status, endpoint.as_ref(), after.as_ref(), limit)
            .await?;
        let next = (list.len() == limit as usize)
            .then(|| list.last().map(|d| d.id.clone()))
            .flatten();
        Ok(ApiResponse::json(
            200,
            json!({"deliveries": list.iter().map(delivery_view).collect::<Vec<_>>(), "next_after": next}),
        ))
    }

    /// `POST /v1/webhooks/deliveries/{id}/replay`.
    pub(super) async fn replay_delivery(
        &self,
        tenant: &TenantId,
        raw_id: &str,
        req: &ApiRequest,
    ) -> Result<ApiResponse, ApiError> {
        Query::parse(&req.query, &[])?;
        let id = DeliveryId::parse(raw_id)?;
        let store = &self.webhook_api()?.store;
        let d = store
            .get_delivery(tenant, &id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no webhook delivery with id {:?}", id.as_str())))?;
        if d.status == DeliveryStatus::Pending {
            return Err(ApiError::Conflict {
                code: "already_pending",
                message: "the delivery is pending: it is sent at its next attempt".into(),
                field: None,
            });
        }
        let again = d.replayed(self.ports.clock.now());
        store.save_delivery(&again).await?;
        tracing::info!(delivery = %again.id, "webhook delivery replayed");
        Ok(ApiResponse::json(202, delivery_view(&again)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{json, Value};

    use crate::api::{Api, ApiRequest, Method};
    use crate::config::Config;
    use crate::ids::TenantId;
    use crate::ports::Ports;
    use crate::store::memory::{MemoryObjects, MemoryStore};
    use crate::store::webhooks::memory::MemoryWebhooks;
    use crate::store::webhooks::WebhookStore;
    use crate::store::ObjectStore;
    use crate::time::{ManualClock, Timestamp};
    use crate::webhook::signature::WebhookSecret;
    use crate::webhook::target::TargetPolicy;

    fn api(allow_private: bool) -> (Api, Arc<MemoryWebhooks>) {
        let config = Config::from_lookup(&|_| None).unwrap();
        let objects: Arc<dyn ObjectStore> = Arc::new(MemoryObjects::new(5 * 1024 * 1024));
        let store = Arc::new(MemoryStore::new().placed(objects.clone(), crate::app::embedded_inline_limits()));
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_790_000_000_000)));
        let hooks = Arc::new(MemoryWebhooks::new());
        let api = Api::new(Ports::over(store, objects, clock), &config.limits)
            .with_webhooks(hooks.clone(), TargetPolicy { allow_private });
        (api, hooks)
    }

    fn tenant(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    fn with_body(method: Method, path: &str, body: Value) -> ApiRequest {
        let mut r = ApiRequest::post(path, "application/json", body.to_string());
        r.method = method;
        r
    }

    #[tokio::test]
    async fn an_endpoint_is_created_with_its_secret_shown_once_and_listed_without_it() {
        let (api, _) = api(true);
        let t = tenant("acme");
        let created = api
            .handle(
                &t,
                with_body(
                    Method::Post,
                    "/v1/webhooks/endpoints",
                    json!({"url": "http://127.0.0.1:9/h"}),
                ),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
        let secret = created.body["secret"].as_str().unwrap();
        WebhookSecret::parse(secret).unwrap();
        assert_eq!(created.body["events"].as_array().unwrap().len(), 4);
        assert_eq!(created.body["mode"], "per_request");
        let id = created.body["id"].as_str().unwrap();
        let list = api.handle(&t, ApiRequest::get("/v1/webhooks/endpoints")).await;
        assert_eq!(list.body["endpoints"][0]["id"], id);
        assert!(list.body["endpoints"][0].get("secret").is_none());
        let one = api
            .handle(&t, ApiRequest::get(format!("/v1/webhooks/endpoints/{id}")))
            .await;
        assert_eq!(one.status, 200);
        assert!(one.body.get("secret").is_none());
        // Another tenant sees nothing of it.
        let other = api
            .handle(
                &tenant("globex"),
                ApiRequest::get(format!("/v1/webhooks/endpoints/{id}")),
            )
            .await;
        assert_eq!(other.status, 404);
        let other_list = api
            .handle(&tenant("globex"), ApiRequest::get("/v1/webhooks/endpoints"))
            .await;
        assert_eq!(other_list.body["endpoints"], json!([]));
    }

    #[tokio::test]
    async fn bad_input_is_refused_with_400_naming_the_field_and_nothing_is_written() {
        let (api, hooks) = api(false);
        let t = tenant("acme");
        for (body, field) in [
            (json!({}), "url"),
            (json!({"url": 5}), "url"),
            (json!({"url": "ftp://example.com/"}), "url"),
            (json!({"url": "http://127.0.0.1:8080/h"}), "url"),
            (json!({"url": "http://169.254.169.254/latest"}), "url"),
            (json!({"url": "http://[::1]/h"}), "url"),
            (
                json!({"url": "https://93.184.216.34/h", "events": ["request.done"]}),
                "events",
            ),
            (json!({"url": "https://93.184.216.34/h", "events": []}), "events"),
            (json!({"url": "https://93.184.216.34/h", "mode": "batch"}), "mode"),
            (
                json!({"url": "https://93.184.216.34/h", "secret": "whsec_!!"}),
                "secret",
            ),
            (json!({"url": "https://93.184.216.34/h", "enabled": "yes"}), "enabled"),
            (json!({"url": "https://93.184.216.34/h", "colour": "red"}), "colour"),
        ] {
            let resp = api
                .handle(&t, with_body(Method::Post, "/v1/webhooks/endpoints", body.clone()))
                .await;
            assert_eq!(resp.status, 400, "{body}: {}", resp.body);
            assert_eq!(resp.body["error"]["field"], field, "{body}: {}", resp.body);
        }
        assert!(hooks.list_endpoints(&t).await.unwrap().is_empty());
        let bad_id = api.handle(&t, ApiRequest::get("/v1/webhooks/endpoints/nope")).await;
        assert_eq!(bad_id.status, 400);
        let bad_status = api
            .handle(&t, ApiRequest::get("/v1/webhooks/deliveries").with_query("status=lost"))
            .await;
        assert_eq!(
            (bad_status.status, bad_status.body["error"]["field"].clone()),
            (400, json!("status"))
        );
    }

    #[tokio::test]
    async fn patch_changes_only_what_is_given_and_a_rotated_secret_is_shown_once() {
        let (api, hooks) = api(true);
        let t = tenant("acme");
        let created = api
            .handle(
                &t,
                with_body(
                    Method::Post,
                    "/v1/webhooks/endpoints",
                    json!({"url": "http://127.0.0.1:9/h", "events": ["job.finished"]}),
                ),
            )
            .await;
        let id = created.body["id"].as_str().unwrap().to_owned();
        let path = format!("/v1/webhooks/endpoints/{id}");
        let off = api
            .handle(&t, with_body(Method::Patch, &path, json!({"enabled": false})))
            .await;
        assert_eq!(off.status, 200, "{}", off.body);
        assert_eq!(off.body["enabled"], false);
        assert_eq!(off.body["events"], json!(["job.finished"]));
        assert!(off.body.get("secret").is_none());
        let refused = api
            .handle(
                &t,
                with_body(Method::Patch, &path, json!({"mode": "sometimes", "enabled": true})),
            )
            .await;
        assert_eq!(refused.status, 400);
        let stored = hooks
            .get_endpoint(&t, &crate::webhook::endpoint::EndpointId::parse(&id).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert!(!stored.enabled, "a refused PATCH wrote nothing");
        let rotated = api
            .handle(&t, with_body(Method::Patch, &path, json!({"rotate_secret": true})))
            .await;
        let new_secret = rotated.body["secret"].as_str().unwrap();
        assert_ne!(new_secret, created.body["secret"].as_str().unwrap());
        let gone = api.handle(&t, ApiRequest::delete(path.clone())).await;
        assert_eq!(gone.status, 200);
        assert_eq!(api.handle(&t, ApiRequest::get(path)).await.status, 404);
    }

    #[tokio::test]
    async fn failed_deliveries_are_listed_by_status_and_a_replay_makes_one_pending_once() {
        use crate::webhook::delivery::{Delivery, RetrySchedule};
        use crate::webhook::endpoint::{EndpointId, EventType};

        let (api, hooks) = api(true);
        let t = tenant("acme");
        let created = api
            .handle(
                &t,
                with_body(
                    Method::Post,
                    "/v1/webhooks/endpoints",
                    json!({"url": "http://127.0.0.1:9/h"}),
                ),
            )
            .await;
        let endpoint = EndpointId::parse(created.body["id"].as_str().unwrap()).unwrap();
        let now = Timestamp::from_millis(1_790_000_000_000);
        let d = Delivery::new(
            endpoint.clone(),
            t.clone(),
            crate::webhook::event::EventId::for_test("evt_1"),
            Some(EventType::RequestCompleted),
            "{}".into(),
            now,
        );
        hooks.materialise(&endpoint, None, None, vec![d.clone()]).await.unwrap();
        let give_up = RetrySchedule {
            delays: vec![],
            min_span: std::time::Duration::ZERO,
        };
        hooks
            .save_delivery(&d.attempt_failed(now, Some(500), "HTTP 500".into(), &give_up))
            .await
            .unwrap();

        let failed = api
            .handle(
                &t,
                ApiRequest::get("/v1/webhooks/deliveries").with_query("status=failed"),
            )
            .await;
        assert_eq!(failed.status, 200, "{}", failed.body);
        let listed = failed.body["deliveries"].as_array().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["last_status_code"], 500);
        let id = listed[0]["id"].as_str().unwrap();
        let replay = format!("/v1/webhooks/deliveries/{id}/replay");
        let other = api
            .handle(&tenant("globex"), ApiRequest::new(Method::Post, replay.clone()))
            .await;
        assert_eq!(other.status, 404, "another tenant's delivery");
        let again = api.handle(&t, ApiRequest::new(Method::Post, replay.clone())).await;
        assert_eq!(again.status, 202, "{}", again.body);
        assert_eq!(again.body["status"], "pending");
        assert_eq!(again.body["event_id"], "evt_1");
        let twice = api.handle(&t, ApiRequest::new(Method::Post, replay)).await;
        assert_eq!(
            (twice.status, twice.body["error"]["code"].clone()),
            (409, json!("already_pending"))
        );
        let none_failed = api
            .handle(
                &t,
                ApiRequest::get("/v1/webhooks/deliveries").with_query("status=failed"),
            )
            .await;
        assert_eq!(none_failed.body["deliveries"], json!([]));
    }

    #[tokio::test]
    async fn routes_without_a_webhook_store_answer_404_not_configured() {
        let config = Config::from_lookup(&|_| None).unwrap();
        let objects: Arc<dyn ObjectStore> = Arc::new(MemoryObjects::new(5 * 1024 * 1024));
        let store = Arc::new(MemoryStore::new().placed(objects.clone(), crate::app::embedded_inline_limits()));
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
        let api = Api::new(Ports::over(store, objects, clock), &config.limits);
        let resp = api
            .handle(&tenant("acme"), ApiRequest::get("/v1/webhooks/endpoints"))
            .await;
        assert_eq!(resp.status, 404);
        assert_eq!(resp.body["error"]["code"], "webhooks_not_configured");
    }
}
