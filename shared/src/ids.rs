//! Identifier newtypes. Every id that crosses a boundary (API, store, provider)
//! is validated once, at construction, and is a distinct type afterwards.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ValidationError;

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// Maximum length of a caller's custom_id. OpenAI documents no limit we could
/// confirm; compatible providers (Together) cap at 64, and we never send the
/// caller's id to the provider anyway (see [`RequestKey`]), so 64 is a choice
/// for storage and log hygiene, not a provider rule.
pub const CUSTOM_ID_MAX_LEN: usize = 64;
/// Maximum length of a tenant id: room for the longest IAM tenant,
/// `ACCOUNT:role:NAME` = 12 + 6 + 64 (IAM user and role names run to 64
/// characters; see `auth::tenant_from_iam`).
pub const TENANT_ID_MAX_LEN: usize = 82;

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
}

fn validate_id(field: &'static str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(
            field,
            "empty",
            format!("{field} must not be empty"),
        ));
    }
    // Characters first: past this check every character is one byte, so
    // the length below counts characters.
    if let Some(bad) = value.chars().find(|c| !is_id_char(*c)) {
        return Err(ValidationError::new(
            field,
            "invalid_characters",
            format!("{field} contains {bad:?}; only ASCII letters, digits and - _ . : are allowed"),
        ));
    }
    if value.len() > max {
        return Err(ValidationError::new(
            field,
            "too_long",
            format!("{field} is {} characters; at most {max} are allowed", value.len()),
        ));
    }
    Ok(())
}

string_id!(
    /// The tenant (team or account) a request belongs to. Derived from
    /// authentication at the edge, never from a request body.
    TenantId
);

impl TenantId {
    pub fn parse(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        validate_id("tenant", &value, TENANT_ID_MAX_LEN)?;
        Ok(Self(value))
    }

    /// The tenant used when authentication is off (local development).
    pub fn default_tenant() -> Self {
        Self("default".to_owned())
    }
}

string_id!(
    /// The caller's own id for a request, unique per tenant.
    CustomId
);

impl CustomId {
    pub fn parse(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        validate_id("custom_id", &value, CUSTOM_ID_MAX_LEN)?;
        Ok(Self(value))
    }

    /// A fresh id for callers that did not supply one.
    pub fn generate() -> Self {
        Self(format!("req_{}", uuid::Uuid::now_v7().simple()))
    }
}

string_id!(
    /// batchq's own key for a request: a deterministic digest of
    /// (tenant, custom_id). It is the DynamoDB partition key and the
    /// `custom_id` batchq sends to the provider, so two tenants using the same
    /// custom_id never collide inside one provider batch, and re-posting a
    /// request always lands on the same row.
    RequestKey
);

impl RequestKey {
    /// 128 bits of SHA-256 over `tenant \0 custom_id`, as 32 lowercase hex digits.
    pub fn derive(tenant: &TenantId, custom_id: &CustomId) -> Self {
        let mut h = Sha256::new();
        h.update(tenant.as_str().as_bytes());
        h.update([0u8]);
        h.update(custom_id.as_str().as_bytes());
        Self(hex_lower(&h.finalize()[..16]))
    }

    /// Accepts a key read back from the provider or the store.
    pub fn parse(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        if value.len() == 32 && value.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(value))
        } else {
            Err(ValidationError::new(
                "request_key",
                "invalid",
                "request key must be 32 lowercase hex digits",
            ))
        }
    }
}

string_id!(
    /// One batchq job = at most one provider batch. Time-ordered (UUIDv7) so
    /// listings sort by creation.
    JobId
);

impl JobId {
    pub fn generate() -> Self {
        Self(format!("job_{}", uuid::Uuid::now_v7().simple()))
    }

    pub fn parse(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        let ok = value
            .strip_prefix("job_")
            .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()));
        if ok {
            Ok(Self(value))
        } else {
            Err(ValidationError::new(
                "job_id",
                "invalid",
                "job id must look like job_<32 hex digits>",
            ))
        }
    }
}

string_id!(
    /// A file id issued by the provider (`file-…`).
    ProviderFileId
);

impl ProviderFileId {
    /// Providers have been seen sending `""` instead of null for an absent
    /// file; both mean "no file".
    pub fn from_wire(value: Option<String>) -> Option<Self> {
        value.filter(|v| !v.trim().is_empty()).map(Self)
    }

    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
}

string_id!(
    /// A batch id issued by the provider (`batch_…`).
    ProviderBatchId
);

impl ProviderBatchId {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
}

string_id!(
    /// The name of one provider instance in the provider table (`openai`,
    /// `claude`, `groq-eu`): which account and API a request is sent to.
    ProviderName
);

impl ProviderName {
    pub const MAX_LEN: usize = 32;

    /// Lowercase ASCII letters, digits, `-` and `_`, starting with a letter.
    pub fn parse(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        let ok = value.len() <= Self::MAX_LEN
            && value.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'));
        if ok {
            Ok(Self(value))
        } else {
            Err(ValidationError::new(
                "provider",
                "invalid",
                format!(
                    "provider name {:?} must be 1 to {} lowercase letters, digits, - or _, starting with a letter",
                    value.chars().take(40).collect::<String>(),
                    Self::MAX_LEN
                ),
            ))
        }
    }

    /// The name rows written before provider instances existed read as
    /// (they all went to the one provider, OpenAI by default).
    pub fn default_name() -> Self {
        Self("openai".to_owned())
    }
}

string_id!(
    /// A model name as the caller wrote it in `body.model`.
    ModelName
);

impl ModelName {
    pub const MAX_LEN: usize = 256;

    pub fn parse(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        if value.trim().is_empty() {
            return Err(ValidationError::new(
                "body.model",
                "empty",
                "body.model must be a non-empty string",
            ));
        }
        if value.len() > Self::MAX_LEN {
            return Err(ValidationError::new(
                "body.model",
                "too_long",
                format!("body.model is longer than {} characters", Self::MAX_LEN),
            ));
        }
        if value.chars().any(|c| c.is_control()) {
            return Err(ValidationError::new(
                "body.model",
                "invalid_characters",
                "body.model contains control characters",
            ));
        }
        Ok(Self(value))
    }
}

/// SHA-256 of a request's content (method, url, canonical body), used to tell
/// an idempotent re-post from a conflicting one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContentHash(String);

impl ContentHash {
    pub fn of_parts(parts: &[&[u8]]) -> Self {
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        Self(hex_lower(&h.finalize()))
    }

    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 0xf) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_key_is_deterministic_and_tenant_scoped() {
        let a = TenantId::parse("team-a").unwrap();
        let b = TenantId::parse("team-b").unwrap();
        let id = CustomId::parse("req-1").unwrap();
        assert_eq!(RequestKey::derive(&a, &id), RequestKey::derive(&a, &id));
        assert_ne!(RequestKey::derive(&a, &id), RequestKey::derive(&b, &id));
        let k = RequestKey::derive(&a, &id);
        assert_eq!(k.as_str().len(), 32);
        assert_eq!(RequestKey::parse(k.as_str()).unwrap(), k);
    }

    #[test]
    fn tenant_and_custom_id_boundaries_do_not_alias() {
        // ("ab", "c") and ("a", "bc") must not share a key.
        let k1 = RequestKey::derive(&TenantId::parse("ab").unwrap(), &CustomId::parse("c").unwrap());
        let k2 = RequestKey::derive(&TenantId::parse("a").unwrap(), &CustomId::parse("bc").unwrap());
        assert_ne!(k1, k2);
    }

    #[test]
    fn custom_id_rules_name_the_field() {
        assert!(CustomId::parse("ok-1_2.3:4").is_ok());
        let e = CustomId::parse("").unwrap_err();
        assert_eq!((e.field.as_str(), e.code), ("custom_id", "empty"));
        let e = CustomId::parse("a b").unwrap_err();
        assert_eq!(e.code, "invalid_characters");
        let e = CustomId::parse("x".repeat(65)).unwrap_err();
        assert_eq!(e.code, "too_long");
        assert!(CustomId::parse("x".repeat(64)).is_ok());
    }

    #[test]
    fn tenant_ids_hold_the_longest_iam_tenant_and_no_more() {
        let longest = format!("123456789012:role:{}", "r".repeat(64));
        assert_eq!(longest.len(), TENANT_ID_MAX_LEN);
        assert!(TenantId::parse(longest.clone()).is_ok());
        let e = TenantId::parse(longest + "x").unwrap_err();
        assert_eq!((e.field.as_str(), e.code), ("tenant", "too_long"));
        assert_eq!(TenantId::parse("a/b").unwrap_err().code, "invalid_characters");
    }

    #[test]
    fn generated_ids_parse_back() {
        let j = JobId::generate();
        assert_eq!(JobId::parse(j.as_str()).unwrap(), j);
        assert!(CustomId::parse(CustomId::generate().into_string()).is_ok());
        assert!(JobId::parse("job_xyz").is_err());
    }

    #[test]
    fn empty_file_id_from_provider_means_absent() {
        assert_eq!(ProviderFileId::from_wire(Some(String::new())), None);
        assert_eq!(ProviderFileId::from_wire(None), None);
        assert_eq!(
            ProviderFileId::from_wire(Some("file-1".into())),
            Some(ProviderFileId::new("file-1"))
        );
    }

    #[test]
    fn content_hash_separates_parts() {
        assert_ne!(
            ContentHash::of_parts(&[b"ab", b"c"]),
            ContentHash::of_parts(&[b"a", b"bc"])
        );
    }
}
