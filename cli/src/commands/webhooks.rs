//! `batchq webhooks add|list|show|update|remove|deliveries|replay`: the
//! tenant's webhook endpoints and deliveries, through the same routes as
//! the HTTP API (`/v1/webhooks/...`), locally or with `--api`.

use batchq_core::api::query::percent_encode;
use batchq_core::api::{ApiRequest, Method};
use serde_json::{json, Map, Value};

use super::Ctx;
use crate::output::{emit, text, Align, Table};
use crate::Failure;

/// What to change on an endpoint (`add` sets, `update` changes what is given).
#[derive(Debug, Default, Clone)]
pub struct EndpointFields {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub mode: Option<String>,
    pub secret: Option<String>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub rotate_secret: bool,
}

impl EndpointFields {
    fn body(&self) -> Value {
        let mut m = Map::new();
        if let Some(u) = &self.url {
            m.insert("url".into(), json!(u));
        }
        if let Some(e) = &self.events {
            m.insert("events".into(), json!(e));
        }
        if let Some(mode) = &self.mode {
            m.insert("mode".into(), json!(mode));
        }
        if let Some(s) = &self.secret {
            m.insert("secret".into(), json!(s));
        }
        if let Some(d) = &self.description {
            m.insert("description".into(), json!(d));
        }
        if let Some(en) = self.enabled {
            m.insert("enabled".into(), json!(en));
        }
        if self.rotate_secret {
            m.insert("rotate_secret".into(), json!(true));
        }
        Value::Object(m)
    }
}

fn endpoint_path(id: &str) -> String {
    format!("/v1/webhooks/endpoints/{}", percent_encode(id))
}

fn with_body(method: Method, path: String, body: &Value) -> ApiRequest {
    let mut req = ApiRequest::post(path, "application/json", body.to_string());
    req.method = method;
    req
}

fn endpoint_text(v: &Value) -> String {
    let events: Vec<String> = v["events"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    let mut out = vec![
        format!("{}  {}", text(&v["id"]), text(&v["url"])),
        format!(
            "  events {}  mode {}  {}",
            events.join(","),
            text(&v["mode"]),
            if v["enabled"] == json!(true) {
                "enabled"
            } else {
                "disabled"
            }
        ),
    ];
    if !v["description"].is_null() {
        out.push(format!("  {}", text(&v["description"])));
    }
    if let Some(secret) = v["secret"].as_str() {
        out.push(format!("  secret {secret}  (shown once: keep it to verify signatures)"));
    }
    out.join("\n")
}

pub async fn add(ctx: &Ctx, fields: &EndpointFields) -> Result<(), Failure> {
    let v = ctx
        .call(with_body(Method::Post, "/v1/webhooks/endpoints".into(), &fields.body()))
        .await?;
    emit(ctx.json, &v, || endpoint_text(&v))
}

pub async fn list(ctx: &Ctx) -> Result<(), Failure> {
    let v = ctx.call(ApiRequest::get("/v1/webhooks/endpoints")).await?;
    emit(ctx.json, &v, || {
        let list = v["endpoints"].as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            return "no webhook endpoints".into();
        }
        let mut table = Table::new(&[
            ("id", Align::Left),
            ("url", Align::Left),
            ("events", Align::Left),
            ("mode", Align::Left),
            ("enabled", Align::Left),
        ]);
        for e in &list {
            let events: Vec<String> = e["events"]
                .as_array()
                .map(|a| a.iter().map(text).collect())
                .unwrap_or_default();
            table.row(vec![
                text(&e["id"]),
                text(&e["url"]),
                events.join(","),
                text(&e["mode"]),
                text(&e["enabled"]),
            ]);
        }
        table.render()
    })
}

pub async fn show(ctx: &Ctx, id: &str) -> Result<(), Failure> {
    let v = ctx.call(ApiRequest::get(endpoint_path(id))).await?;
    emit(ctx.json, &v, || endpoint_text(&v))
}

pub async fn update(ctx: &Ctx, id: &str, fields: &EndpointFields) -> Result<(), Failure> {
    let v = ctx
        .call(with_body(Method::Patch, endpoint_path(id), &fields.body()))
        .await?;
    emit(ctx.json, &v, || endpoint_text(&v))
}

pub async fn remove(ctx: &Ctx, id: &str) -> Result<(), Failure> {
    let v = ctx.call(ApiRequest::delete(endpoint_path(id))).await?;
    emit(ctx.json, &v, || format!("removed {}", text(&v["id"])))
}

pub async fn deliveries(ctx: &Ctx, status: Option<&str>, endpoint: Option<&str>, limit: u32) -> Result<(), Failure> {
    let mut query = vec![format!("limit={}", limit.clamp(1, 1000))];
    if let Some(s) = status {
        query.push(format!("status={}", percent_encode(s)));
    }
    if let Some(e) = endpoint {
        query.push(format!("endpoint={}", percent_encode(e)));
    }
    let v = ctx
        .call(ApiRequest::get("/v1/webhooks/deliveries").with_query(query.join("&")))
        .await?;
    emit(ctx.json, &v, || {
        let list = v["deliveries"].as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            return "no deliveries".into();
        }
        let mut table = Table::new(&[
            ("delivery", Align::Left),
            ("event", Align::Left),
            ("type", Align::Left),
            ("status", Align::Left),
            ("attempts", Align::Right),
            ("last error", Align::Left),
        ]);
        for d in &list {
            table.row(vec![
                text(&d["id"]),
                text(&d["event_id"]),
                text(&d["event_type"]),
                text(&d["status"]),
                text(&d["attempts"]),
                text(&d["last_error"]),
            ]);
        }
        table.render()
    })
}

pub async fn replay(ctx: &Ctx, id: &str) -> Result<(), Failure> {
    let path = format!("/v1/webhooks/deliveries/{}/replay", percent_encode(id));
    let v = ctx.call(ApiRequest::new(Method::Post, path)).await?;
    emit(ctx.json, &v, || {
        format!("{} pending again (event {})", text(&v["id"]), text(&v["event_id"]))
    })
}
