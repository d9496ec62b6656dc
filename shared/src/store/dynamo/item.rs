//! Attribute helpers: building attribute values and reading them back
//! into domain types, with a corrupt item named in the error.

use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;

use super::schema::{EXPIRES_AT, PK};
use super::{DynamoStore, Item};
use crate::store::StoreError;
use crate::time::Timestamp;

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) struct Reader<'a> {
    item: &'a Item,
    entity: &'static str,
}

impl<'a> Reader<'a> {
    pub(super) fn new(item: &'a Item, entity: &'static str) -> Self {
        Self { item, entity }
    }

    pub(super) fn id(&self) -> String {
        self.item
            .get(PK)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_else(|| "?".into())
    }

    pub(super) fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Corrupt {
            entity: self.entity,
            id: self.id(),
            reason,
        }
    }

    pub(super) fn opt_s(&self, name: &str) -> Result<Option<&'a str>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v.as_str())),
            Some(_) => Err(self.corrupt(format!("{name} is not a string"))),
        }
    }

    pub(super) fn flag(&self, name: &str) -> bool {
        self.item
            .get(name)
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false)
    }

    pub(super) fn req_s(&self, name: &str) -> Result<&'a str, StoreError> {
        self.opt_s(name)?
            .ok_or_else(|| self.corrupt(format!("{name} is missing")))
    }

    pub(super) fn opt_n<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => v
                .parse::<T>()
                .map(Some)
                .map_err(|_| self.corrupt(format!("{name}={v} is not a valid number"))),
            Some(_) => Err(self.corrupt(format!("{name} is not a number"))),
        }
    }

    pub(super) fn req_n<T: std::str::FromStr>(&self, name: &str) -> Result<T, StoreError> {
        self.opt_n(name)?
            .ok_or_else(|| self.corrupt(format!("{name} is missing")))
    }

    pub(super) fn parse<T>(&self, name: &str, f: impl FnOnce(&str) -> Result<T, String>) -> Result<T, StoreError> {
        let raw = self.req_s(name)?;
        f(raw).map_err(|e| self.corrupt(format!("{name}: {e}")))
    }

    pub(super) fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match self.opt_s(name)? {
            None => Ok(None),
            Some(raw) => serde_json::from_str(raw)
                .map(Some)
                .map_err(|e| self.corrupt(format!("{name}: {e}"))),
        }
    }
}

pub(super) fn err_msg<E: std::error::Error + 'static, R: std::fmt::Debug + 'static>(e: SdkError<E, R>) -> String {
    crate::error::chain(&e)
}

/// Epoch seconds (DynamoDB TTL's unit) `retention` after `at`.
pub(super) fn expiry_secs(at: Timestamp, retention: Duration) -> i64 {
    at.millis().div_euclid(1000) + retention.as_secs() as i64
}

pub(super) fn expires_from(r: &Reader<'_>) -> Result<Option<Timestamp>, StoreError> {
    Ok(r.opt_n::<i64>(EXPIRES_AT)?
        .map(|s| Timestamp::from_millis(s.saturating_mul(1000))))
}

impl DynamoStore {
    /// The expiry of a row finishing at `now`.
    pub(super) fn expiry(&self, now: Timestamp) -> Option<i64> {
        self.retention.map(|r| expiry_secs(now, r))
    }
}
