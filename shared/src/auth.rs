//! Who is calling: the tenant a request acts for, derived from the edge's
//! credentials and never from anything in a request body.
//!
//! * `batchq serve` checks bearer keys from `BATCHQ_API_KEYS` ([`ApiKeys`]).
//! * In Lambda, API Gateway has already authenticated the caller; the tenant
//!   comes from its authorizer context: the IAM principal
//!   ([`tenant_from_iam`]) or a JWT claim ([`tenant_from_claim`]).

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ids::TenantId;

/// Why `BATCHQ_API_KEYS` was refused. Entries are named by position (1-based)
/// and tenant; the messages never contain a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeysError {
    #[error("entry {entry} is not tenant:key")]
    NotAPair { entry: usize },
    #[error("entry {entry}: the tenant is not valid ({reason})")]
    BadTenant { entry: usize, reason: String },
    #[error("entry {entry} (tenant {tenant}): keys must be at least {MIN_KEY_LEN} characters without spaces")]
    WeakKey { entry: usize, tenant: TenantId },
    #[error("entry {entry} (tenant {tenant}) repeats the key of tenant {other}; keys must be unique")]
    RepeatedKey {
        entry: usize,
        tenant: TenantId,
        other: TenantId,
    },
    #[error("at least one tenant:key pair")]
    Empty,
}

/// Shortest API key accepted in `BATCHQ_API_KEYS`.
/// Why a caller is not let in. The API's edge answers 401 for
/// [`AuthError::Unauthenticated`] and 403 (`no_tenant`) for
/// [`AuthError::NoTenant`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials, or credentials that are not valid.
    #[error("{0}")]
    Unauthenticated(String),
    /// An authenticated identity that cannot be a tenant.
    #[error("{0}")]
    NoTenant(String),
}

pub const MIN_KEY_LEN: usize = 16;

/// The API keys of the local server: `tenant:key` pairs. Only SHA-256
/// digests of the keys are kept, so the keys themselves cannot leak through
/// a `Debug` print or a core dump of this value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiKeys {
    entries: Vec<(TenantId, [u8; 32])>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeys({} keys, <redacted>)", self.entries.len())
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl ApiKeys {
    /// Parses `tenant:key[,tenant:key...]`. A tenant may have several keys
    /// (for rotation); a key may belong to one tenant only. Errors describe
    /// the entry by position and never contain a key.
    pub fn parse(raw: &str) -> Result<Self, ApiKeysError> {
        let mut entries: Vec<(TenantId, [u8; 32])> = Vec::new();
        for (i, entry) in raw.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            let n = i + 1;
            let Some((tenant, key)) = entry.split_once(':') else {
                return Err(ApiKeysError::NotAPair { entry: n });
            };
            let tenant = TenantId::parse(tenant.trim()).map_err(|e| ApiKeysError::BadTenant {
                entry: n,
                reason: e.message,
            })?;
            if key.chars().count() < MIN_KEY_LEN || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ApiKeysError::WeakKey { entry: n, tenant });
            }
            let d = digest(key);
            if let Some((other, _)) = entries.iter().find(|(_, e)| *e == d) {
                return Err(ApiKeysError::RepeatedKey {
                    entry: n,
                    tenant,
                    other: other.clone(),
                });
            }
            entries.push((tenant, d));
        }
        if entries.is_empty() {
            return Err(ApiKeysError::Empty);
        }
        Ok(Self { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The configured tenants, each once.
    pub fn tenants(&self) -> Vec<TenantId> {
        let mut out: Vec<TenantId> = Vec::new();
        for (t, _) in &self.entries {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
        out
    }

    /// The tenant whose key is presented in an `Authorization: Bearer KEY`
    /// header. Every configured key is compared, in constant time, so
    /// neither timing nor the position of a match tells anything about the
    /// keys.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<TenantId, AuthError> {
        let Some(value) = authorization else {
            return Err(AuthError::Unauthenticated(
                "authentication required: send Authorization: Bearer <api key>".into(),
            ));
        };
        let token = match value.trim().split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(AuthError::Unauthenticated(
                    "the Authorization header must be `Bearer <api key>`".into(),
                ))
            }
        };
        let presented = digest(token);
        let mut found: Option<&TenantId> = None;
        for (tenant, d) in &self.entries {
            if bool::from(d.ct_eq(&presented)) {
                found = Some(tenant);
            }
        }
        found
            .cloned()
            .ok_or_else(|| AuthError::Unauthenticated("the API key is not valid".into()))
    }
}

fn forbidden(message: String) -> AuthError {
    AuthError::NoTenant(message)
}

/// The tenant of a caller API Gateway authenticated with IAM (SigV4), by
/// the kind of principal, so principals of different kinds never share one:
///
/// | principal | tenant |
/// |---|---|
/// | `arn:aws:iam::ACCOUNT:user/PATH/NAME` | `ACCOUNT:user:NAME` |
/// | `arn:aws:iam::ACCOUNT:role/PATH/NAME` | `ACCOUNT:role:NAME` |
/// | `arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION` | `ACCOUNT:role:NAME` (every session of the role) |
/// | `arn:aws:iam::ACCOUNT:root` | `ACCOUNT:root` |
///
/// IAM allows a user and a role of the same name in one account, and they
/// are different principals with different permissions: a bare
/// `ACCOUNT:NAME` would let each read the other's requests. The separator is
/// `:` because it is already a tenant id character and can never occur in
/// an IAM name, so `ACCOUNT:root` cannot be a user's or a role's tenant
/// either. The path is left out: a name is unique in its account whatever
/// the path. Names with characters a tenant id cannot hold (IAM also allows
/// `+ = , @`) are refused with 403, never folded together.
pub fn tenant_from_iam(account_id: Option<&str>, user_arn: Option<&str>) -> Result<TenantId, AuthError> {
    let (Some(account), Some(arn)) = (account_id, user_arn) else {
        return Err(AuthError::Unauthenticated(
            "the request carries no IAM identity; the API must be called with SigV4".into(),
        ));
    };
    let resource = arn.splitn(6, ':').nth(5).unwrap_or_default();
    let (kind, name) = match resource.split_once('/') {
        Some(("assumed-role", rest)) => ("role", rest.split('/').next().unwrap_or_default()),
        Some(("user", rest)) => ("user", rest.rsplit('/').next().unwrap_or_default()),
        Some(("role", rest)) => ("role", rest.rsplit('/').next().unwrap_or_default()),
        None if resource == "root" => ("root", ""),
        _ => ("", ""),
    };
    let tenant = match kind {
        "root" => format!("{account}:root"),
        "user" | "role" if !name.is_empty() => {
            // TenantId allows `:`, IAM names never hold one; refuse it rather
            // than let a name reach into the tenant's structure.
            if name.contains(':') {
                return Err(forbidden(format!(
                    "the IAM principal {arn:?} cannot be a tenant: its name contains ':'"
                )));
            }
            format!("{account}:{kind}:{name}")
        }
        _ => {
            return Err(forbidden(format!(
                "the IAM principal {arn:?} is not a user or role batchq can map to a tenant"
            )))
        }
    };
    TenantId::parse(tenant).map_err(|e| {
        forbidden(format!(
            "the IAM principal {arn:?} cannot be a tenant: {} (use a user or role name of letters, digits and - _ .)",
            e.message
        ))
    })
}

/// The tenant named by a JWT authorizer's claim `claim`.
pub fn tenant_from_claim(value: Option<&str>, claim: &str) -> Result<TenantId, AuthError> {
    let Some(value) = value else {
        return Err(forbidden(format!(
            "the token has no {claim:?} claim, which names the tenant"
        )));
    };
    TenantId::parse(value)
        .map_err(|e| forbidden(format!("the token's {claim:?} claim cannot be a tenant: {}", e.message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    impl AuthError {
        fn status_code(&self) -> u16 {
            match self {
                AuthError::Unauthenticated(_) => 401,
                AuthError::NoTenant(_) => 403,
            }
        }
    }

    #[test]
    fn keys_map_to_their_tenant_and_anything_else_is_401() {
        let keys = ApiKeys::parse("acme:acme-key-0123456789, globex:globex-key-0123456789,acme:acme-key-rotated-0001")
            .unwrap();
        assert_eq!(keys.tenants().len(), 2);
        let t = |h: &str| keys.authenticate(Some(h)).map(|t| t.to_string());
        assert_eq!(t("Bearer acme-key-0123456789").unwrap(), "acme");
        assert_eq!(t("bearer acme-key-rotated-0001").unwrap(), "acme");
        assert_eq!(t("Bearer globex-key-0123456789").unwrap(), "globex");
        for bad in [
            "Bearer acme-key-012345678",
            "Bearer ",
            "Basic acme-key-0123456789",
            "acme-key-0123456789",
            "",
        ] {
            let e = keys.authenticate(Some(bad)).unwrap_err();
            assert_eq!(e.status_code(), 401, "{bad:?}");
            assert!(!e.to_string().contains("acme-key"), "{e}");
        }
        assert_eq!(keys.authenticate(None).unwrap_err().status_code(), 401);
    }

    #[test]
    fn bad_key_lists_are_refused_without_echoing_a_key() {
        for (raw, needle) in [
            ("acme", "entry 1 is not tenant:key"),
            ("acme:short", "at least 16"),
            ("ac me:acme-key-0123456789", "tenant is not valid"),
            (
                "a:same-key-0123456789,b:same-key-0123456789",
                "repeats the key of tenant a",
            ),
            (" , ", "at least one"),
        ] {
            let e = ApiKeys::parse(raw).unwrap_err().to_string();
            assert!(e.contains(needle), "{raw:?}: {e}");
            assert!(!e.contains("0123456789"), "{e}");
        }
        let keys = ApiKeys::parse("acme:acme-key-0123456789").unwrap();
        assert!(!format!("{keys:?}").contains("acme-key"));
    }

    #[test]
    fn iam_principals_become_account_scoped_tenants_by_kind() {
        let t = |arn: &str| tenant_from_iam(Some("123456789012"), Some(arn)).map(|t| t.to_string());
        assert_eq!(
            t("arn:aws:iam::123456789012:user/teams/alice").unwrap(),
            "123456789012:user:alice"
        );
        assert_eq!(
            t("arn:aws:sts::123456789012:assumed-role/billing-batch/i-0abc").unwrap(),
            "123456789012:role:billing-batch"
        );
        // The role itself and any session of it: one tenant.
        assert_eq!(
            t("arn:aws:iam::123456789012:role/service-role/billing-batch").unwrap(),
            "123456789012:role:billing-batch"
        );
        assert_eq!(
            t("arn:aws:sts::123456789012:assumed-role/billing-batch/other-session").unwrap(),
            "123456789012:role:billing-batch"
        );
        assert_eq!(t("arn:aws:iam::123456789012:root").unwrap(), "123456789012:root");
        assert_eq!(
            t("arn:aws-cn:iam::123456789012:user/alice").unwrap(),
            "123456789012:user:alice"
        );
        assert_eq!(
            t("arn:aws:iam::123456789012:user/a+b@c").unwrap_err().status_code(),
            403
        );
        assert_eq!(t("arn:aws:iam::123456789012:user/a:b").unwrap_err().status_code(), 403);
        assert_eq!(t("arn:aws:iam::123456789012:user/").unwrap_err().status_code(), 403);
        assert_eq!(
            t("arn:aws:sts::123456789012:federated-user/bob")
                .unwrap_err()
                .status_code(),
            403
        );
        assert_eq!(tenant_from_iam(None, None).unwrap_err().status_code(), 401);
    }

    /// IAM lets a user and a role share a name; they are different
    /// principals and must not share requests. Neither may be root.
    #[test]
    fn a_user_and_a_role_of_the_same_name_are_different_tenants() {
        let t = |arn: &str| tenant_from_iam(Some("123456789012"), Some(arn)).unwrap();
        let user = t("arn:aws:iam::123456789012:user/deploy");
        let role = t("arn:aws:sts::123456789012:assumed-role/deploy/ci");
        assert_ne!(user, role);
        assert_eq!(role, t("arn:aws:iam::123456789012:role/deploy"));
        let root = t("arn:aws:iam::123456789012:root");
        for named_root in [
            "arn:aws:iam::123456789012:user/root",
            "arn:aws:sts::123456789012:assumed-role/root/s",
        ] {
            assert_ne!(t(named_root), root, "{named_root}");
        }
        assert_ne!(
            t("arn:aws:iam::123456789012:user/root"),
            t("arn:aws:iam::123456789012:role/root")
        );
    }

    /// IAM user and role names run to 64 characters; every such name that
    /// is a valid tenant id character string maps.
    #[test]
    fn the_longest_iam_names_still_map() {
        let name = "r".repeat(64);
        let role = tenant_from_iam(
            Some("123456789012"),
            Some(&format!("arn:aws:sts::123456789012:assumed-role/{name}/s")),
        )
        .unwrap();
        assert_eq!(role.as_str(), format!("123456789012:role:{name}"));
    }

    #[test]
    fn a_jwt_claim_names_the_tenant() {
        assert_eq!(tenant_from_claim(Some("team-7"), "sub").unwrap().as_str(), "team-7");
        assert_eq!(
            tenant_from_claim(Some("auth0|7"), "sub").unwrap_err().status_code(),
            403
        );
        assert_eq!(tenant_from_claim(None, "tenant").unwrap_err().status_code(), 403);
    }
}
