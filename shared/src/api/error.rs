//! Why the API refused or failed a request, and the one place that maps each
//! reason to an HTTP status and the error body
//! `{"error": {"code", "message", "field"}}`.

use serde_json::{json, Value};
use thiserror::Error;

use crate::auth::AuthError;
use crate::error::ValidationError;
use crate::store::StoreError;

/// A refusal (4xx) or a failure (5xx). Refusals say exactly what is wrong and
/// where; failures say nothing about internals (those go to the log).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApiError {
    /// 400: the input is malformed or breaks a rule.
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        /// Dotted path of the offending field (`body.model`), when about one.
        field: Option<String>,
    },
    /// 401: no credentials, or credentials that match no tenant.
    #[error("{message}")]
    Unauthorized { message: String },
    /// 403: authenticated, but the identity cannot act as a tenant.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// 404: no such route or no such request / job.
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// 405: the route exists but not with this method.
    #[error("method {method} is not allowed on this route; allowed: {}", allowed.join(", "))]
    MethodNotAllowed {
        method: String,
        allowed: &'static [&'static str],
    },
    /// 409: the request exists in a state that forbids this.
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    /// 413: the payload, a body or the number of lines is over a limit.
    #[error("{message}")]
    TooLarge {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    /// 415: the Content-Type is missing or not one this route reads.
    #[error("{message}")]
    UnsupportedMediaType { message: String },
    /// 429: the tenant's quota would be exceeded; nothing was written.
    #[error("{message}")]
    QuotaExceeded { message: String, field: Option<String> },
    /// 429: the enqueue would take the tenant's spend past a budget;
    /// nothing was written.
    #[error("{0}")]
    BudgetExceeded(Box<BudgetRefusal>),
    /// 503: the storage backend failed; retrying is safe.
    #[error(
        "batchq's storage is unavailable right now; retry later (re-sending a request with the same custom_id is safe)"
    )]
    Unavailable,
    /// 500: a bug or corrupt data; details are in the log only.
    #[error("internal error; it has been logged")]
    Internal,
}

/// Why an enqueue was refused for a budget: the tenant, where it stands
/// against the period's limit, and what the call would have added.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "tenant {tenant} has spent {} and committed {} (queued and in flight) of its {} budget of {} USD; adding {} would pass it",
    standing.spent.to_decimal_string(), standing.committed.to_decimal_string(), standing.period.as_str(),
    standing.limit.to_decimal_string(), adding.to_decimal_string()
)]
pub struct BudgetRefusal {
    pub tenant: crate::ids::TenantId,
    pub standing: crate::spend::Standing,
    pub adding: crate::money::Money,
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated(message) => Self::Unauthorized { message },
            AuthError::NoTenant(message) => Self::Forbidden {
                code: "no_tenant",
                message,
            },
        }
    }
}

impl ApiError {
    pub fn bad_request(field: Option<&str>, code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
            field: field.map(str::to_owned),
        }
    }

    pub fn too_large(field: Option<&str>, code: &'static str, message: impl Into<String>) -> Self {
        Self::TooLarge {
            code,
            message: message.into(),
            field: field.map(str::to_owned),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound {
            code: "not_found",
            message: message.into(),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest { .. } => 400,
            Self::Unauthorized { .. } => 401,
            Self::Forbidden { .. } => 403,
            Self::QuotaExceeded { .. } | Self::BudgetExceeded(_) => 429,
            Self::NotFound { .. } => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::Conflict { .. } => 409,
            Self::TooLarge { .. } => 413,
            Self::UnsupportedMediaType { .. } => 415,
            Self::Internal => 500,
            Self::Unavailable => 503,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::NotFound { code, .. }
            | Self::Forbidden { code, .. }
            | Self::Conflict { code, .. }
            | Self::TooLarge { code, .. } => code,
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Unauthorized { .. } => "unauthorized",
            Self::QuotaExceeded { .. } => "quota_exceeded",
            Self::BudgetExceeded(_) => "budget_exceeded",
            Self::UnsupportedMediaType { .. } => "unsupported_media_type",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            Self::BadRequest { field, .. }
            | Self::Conflict { field, .. }
            | Self::TooLarge { field, .. }
            | Self::QuotaExceeded { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// `{"code", "message", "field"}`: the inside of the error body, also
    /// used for one rejected line of a bulk enqueue.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "code": self.code(),
            "message": self.to_string(),
            "field": self.field(),
        });
        if let Self::BudgetExceeded(refusal) = self {
            let BudgetRefusal {
                tenant,
                standing,
                adding,
            } = refusal.as_ref();
            v["budget"] = json!({
                "tenant": tenant,
                "period": standing.period.as_str(),
                "limit_usd": standing.limit.to_decimal_string(),
                "spent_usd": standing.spent.to_decimal_string(),
                "committed_usd": standing.committed.to_decimal_string(),
                "adding_usd": adding.to_decimal_string(),
            });
        }
        v
    }

    /// The full error body `{"error": {...}}`.
    pub fn body(&self) -> Value {
        json!({ "error": self.to_json() })
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::BadRequest {
            code: e.code,
            message: e.message,
            field: Some(e.field),
        }
    }
}

impl From<StoreError> for ApiError {
    /// Store failures are logged here, with their detail, and answered
    /// without it.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::TooLarge { what, bytes, limit } => Self::too_large(
                None,
                "too_large",
                format!("{what} is {bytes} bytes; at most {limit} can be stored"),
            ),
            StoreError::Backend { .. } => {
                tracing::error!(error = %e, "storage backend failed");
                Self::Unavailable
            }
            other => {
                tracing::error!(error = %other, "storage returned an unexpected error");
                Self::Internal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_become_400s_naming_their_field() {
        let e: ApiError = ValidationError::new("body.model", "empty", "body.model must be a non-empty string").into();
        assert_eq!(e.status(), 400);
        assert_eq!(
            e.body(),
            json!({"error": {"code": "empty", "message": "body.model must be a non-empty string", "field": "body.model"}})
        );
    }

    #[test]
    fn backend_failures_never_leak_their_detail() {
        let e: ApiError = StoreError::backend("dynamodb PutItem", "secret-table-name: throttled").into();
        assert_eq!(e.status(), 503);
        let body = e.body().to_string();
        assert!(!body.contains("secret-table-name"), "{body}");
        assert!(!body.contains("dynamodb"), "{body}");

        let e: ApiError = StoreError::Corrupt {
            entity: "request",
            id: "abc".into(),
            reason: "missing attr status".into(),
        }
        .into();
        assert_eq!(e.status(), 500);
        assert!(!e.body().to_string().contains("missing attr"));
    }

    #[test]
    fn method_not_allowed_lists_what_is_allowed() {
        let e = ApiError::MethodNotAllowed {
            method: "PUT".into(),
            allowed: &["GET", "DELETE"],
        };
        assert_eq!(e.status(), 405);
        assert_eq!(e.field(), None);
        assert!(e.to_string().contains("GET, DELETE"));
        assert_eq!(e.body()["error"]["field"], Value::Null);
    }
}
