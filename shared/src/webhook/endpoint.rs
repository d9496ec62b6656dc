//! A tenant's webhook endpoint: where events go, which ones, how (one
//! request per message or batched per job), signed with which secret.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::signature::WebhookSecret;
use crate::error::ValidationError;
use crate::ids::TenantId;
use crate::time::Timestamp;

/// Longest accepted endpoint URL.
pub const URL_MAX_LEN: usize = 2048;
/// Most endpoints one tenant may register.
pub const MAX_ENDPOINTS_PER_TENANT: usize = 20;

/// An endpoint's id, `whep_` + 26 hex digits (a v7 UUID: ordered by creation).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EndpointId(String);

impl EndpointId {
    pub fn generate() -> Self {
        Self(format!("whep_{}", uuid::Uuid::now_v7().simple()))
    }

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let ok = s
            .strip_prefix("whep_")
            .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new(
                "endpoint_id",
                "invalid",
                "an endpoint id is whep_ followed by 32 hex digits",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The events an endpoint may subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "request.completed")]
    RequestCompleted,
    #[serde(rename = "request.failed")]
    RequestFailed,
    #[serde(rename = "request.cancelled")]
    RequestCancelled,
    #[serde(rename = "job.finished")]
    JobFinished,
}

impl EventType {
    pub const ALL: [EventType; 4] = [
        Self::RequestCompleted,
        Self::RequestFailed,
        Self::RequestCancelled,
        Self::JobFinished,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestCompleted => "request.completed",
            Self::RequestFailed => "request.failed",
            Self::RequestCancelled => "request.cancelled",
            Self::JobFinished => "job.finished",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// Whether this is one of the three request events.
    pub fn is_request(self) -> bool {
        !matches!(self, Self::JobFinished)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How request events are sent: one message per request, or the events of
/// one job that a delivery pass finds together in one `request.batch`
/// message (fewer, larger POSTs). `job.finished` is always its own message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    #[default]
    PerRequest,
    PerJob,
}

impl DeliveryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerRequest => "per_request",
            Self::PerJob => "per_job",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "per_request" => Some(Self::PerRequest),
            "per_job" => Some(Self::PerJob),
            _ => None,
        }
    }
}

/// An `http` or `https` URL with a host, no credentials, at most
/// [`URL_MAX_LEN`] characters. Whether its host is an allowed target is
/// [`super::target`]'s question (it needs DNS).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EndpointUrl(String);

impl EndpointUrl {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let bad = |code, msg: &str| Err(ValidationError::new("url", code, msg.to_owned()));
        if s.len() > URL_MAX_LEN {
            return bad("too_long", "url is longer than 2048 characters");
        }
        let Ok(url) = reqwest::Url::parse(s) else {
            return bad("invalid", "url is not an absolute URL");
        };
        if !matches!(url.scheme(), "http" | "https") {
            return bad("unsupported", "url must be http:// or https://");
        }
        if url.host().is_none() {
            return bad("invalid", "url has no host");
        }
        if !url.username().is_empty() || url.password().is_some() {
            return bad(
                "invalid",
                "url must not carry credentials; authenticate with the signature",
            );
        }
        if url.fragment().is_some() {
            return bad("invalid", "url must not have a #fragment");
        }
        Ok(Self(url.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn url(&self) -> reqwest::Url {
        reqwest::Url::parse(&self.0).expect("an EndpointUrl was parsed when made")
    }
}

/// A registered endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: EndpointId,
    pub tenant: TenantId,
    pub url: EndpointUrl,
    pub events: BTreeSet<EventType>,
    pub mode: DeliveryMode,
    #[serde(with = "secret_text")]
    pub secret: WebhookSecret,
    pub enabled: bool,
    pub description: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Endpoint {
    pub fn wants(&self, e: EventType) -> bool {
        self.events.contains(&e)
    }

    /// Whether any request event is subscribed (the feed is read only then).
    pub fn wants_requests(&self) -> bool {
        self.events.iter().any(|e| e.is_request())
    }
}

/// The secret as its `whsec_` text in stored rows.
mod secret_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::webhook::signature::WebhookSecret;

    pub fn serialize<S: Serializer>(s: &WebhookSecret, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&s.to_whsec())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<WebhookSecret, D::Error> {
        let text = String::deserialize(de)?;
        WebhookSecret::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Parses the `events` list: known names, at least one, no repeats needed.
pub fn parse_events(values: &[String]) -> Result<BTreeSet<EventType>, ValidationError> {
    if values.is_empty() {
        return Err(ValidationError::new(
            "events",
            "empty",
            "events must name at least one event",
        ));
    }
    values
        .iter()
        .map(|v| {
            EventType::parse(v).ok_or_else(|| {
                ValidationError::new(
                    "events",
                    "unsupported",
                    format!(
                        "unknown event {:?}; events are request.completed, request.failed, request.cancelled and job.finished",
                        v.chars().take(64).collect::<String>()
                    ),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_must_be_http_or_https_with_a_host_and_no_credentials() {
        assert!(EndpointUrl::parse("https://example.com/hooks").is_ok());
        assert!(EndpointUrl::parse("http://127.0.0.1:8080/x").is_ok());
        for bad in [
            "ftp://example.com/",
            "example.com/hooks",
            "https://user:pw@example.com/",
            "https://example.com/#frag",
            "",
            "file:///etc/passwd",
        ] {
            let e = EndpointUrl::parse(bad).unwrap_err();
            assert_eq!(e.field, "url", "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(URL_MAX_LEN));
        assert_eq!(EndpointUrl::parse(&long).unwrap_err().code, "too_long");
    }

    #[test]
    fn events_parse_by_their_wire_names_and_unknown_or_none_are_refused() {
        let set = parse_events(&["job.finished".into(), "request.failed".into(), "request.failed".into()]).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(parse_events(&[]).unwrap_err().field, "events");
        assert_eq!(parse_events(&["request.done".into()]).unwrap_err().code, "unsupported");
        for e in EventType::ALL {
            assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
        }
    }

    #[test]
    fn endpoint_ids_round_trip_and_other_strings_are_refused() {
        let id = EndpointId::generate();
        assert_eq!(EndpointId::parse(id.as_str()).unwrap(), id);
        assert!(EndpointId::parse("whep_xyz").is_err());
        assert!(EndpointId::parse("../x").is_err());
    }

    #[test]
    fn a_stored_endpoint_keeps_its_secret_through_serde() {
        let e = Endpoint {
            id: EndpointId::generate(),
            tenant: TenantId::default_tenant(),
            url: EndpointUrl::parse("https://example.com/").unwrap(),
            events: EventType::ALL.into_iter().collect(),
            mode: DeliveryMode::PerJob,
            secret: WebhookSecret::generate(),
            enabled: true,
            description: None,
            created_at: Timestamp::from_millis(1),
            updated_at: Timestamp::from_millis(2),
        };
        let back: Endpoint = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }
}
