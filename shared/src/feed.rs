//! The results feed: every request that reaches a terminal status
//! (completed, failed, cancelled) gets one [`FeedEntry`] in its tenant's
//! feed, in the order the stores committed those transitions, readable
//! page by page after a [`FeedCursor`] (`GET /v1/results`, `batchq results
//! --follow`, the webhooks to callers).
//!
//! A store appends the entry in the same atomic write as the terminal
//! transition itself ([`FeedDraft::of`] says which updates append one), so
//! a crash or a replayed update never loses or doubles one: a replay is
//! refused by the request's condition and appends nothing. Each store
//! numbers a tenant's entries with a sequence that only grows and never
//! lets an entry become visible below a number it already handed out; a
//! cursor is that number, bound to its tenant.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::ids::{CustomId, JobId, ModelName, ProviderName, RequestKey, TenantId};
use crate::request::RequestStatus;
use crate::time::Timestamp;
use crate::transition::RequestUpdate;

/// Most entries one feed page returns.
pub const MAX_PAGE: u32 = 5000;
/// Entries a page returns when the caller names no limit.
pub const DEFAULT_PAGE: u32 = 1000;

const CURSOR_PREFIX: &str = "fc1";

/// Opaque, durable, per-tenant position in the feed: `after=<cursor>`
/// returns what came after it. Clients see it as a string.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FeedCursor(String);

/// A string that is not a feed cursor, or one of another tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a results cursor of this tenant")]
pub struct BadCursor;

/// Eight hex digits of the tenant's digest: binds a cursor to its tenant.
fn tenant_tag(tenant: &TenantId) -> String {
    let d = Sha256::digest(tenant.as_str().as_bytes());
    d[..4].iter().map(|b| format!("{b:02x}")).collect()
}

impl FeedCursor {
    /// The cursor of `tenant`'s entry number `seq`.
    pub fn new(tenant: &TenantId, seq: u64) -> Self {
        Self(format!("{CURSOR_PREFIX}.{}.{seq}", tenant_tag(tenant)))
    }

    /// The sequence number this cursor names, if it is `tenant`'s.
    pub fn seq_for(&self, tenant: &TenantId) -> Result<u64, BadCursor> {
        let (tag, seq) = Self::parts(&self.0)?;
        if tag != tenant_tag(tenant) {
            return Err(BadCursor);
        }
        Ok(seq)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn parts(s: &str) -> Result<(&str, u64), BadCursor> {
        let mut it = s.split('.');
        let (Some(CURSOR_PREFIX), Some(tag), Some(seq), None) = (it.next(), it.next(), it.next(), it.next()) else {
            return Err(BadCursor);
        };
        if tag.len() != 8 || !tag.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(BadCursor);
        }
        if seq.is_empty() || seq.len() > 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadCursor);
        }
        Ok((tag, seq.parse().map_err(|_| BadCursor)?))
    }
}

impl fmt::Display for FeedCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for FeedCursor {
    type Err = BadCursor;

    /// Checks the form only; [`FeedCursor::seq_for`] checks the tenant.
    fn from_str(s: &str) -> Result<Self, BadCursor> {
        Self::parts(s)?;
        Ok(Self(s.to_owned()))
    }
}

impl Serialize for FeedCursor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// What a feed entry reports: the request's terminal status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedEvent {
    Completed,
    Failed,
    Cancelled,
}

impl FeedEvent {
    /// The event of a terminal status (`None`: not terminal).
    pub fn of(status: RequestStatus) -> Option<Self> {
        match status {
            RequestStatus::Completed => Some(Self::Completed),
            RequestStatus::Failed => Some(Self::Failed),
            RequestStatus::Cancelled => Some(Self::Cancelled),
            RequestStatus::Queued | RequestStatus::Claimed => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "completed" => Some(Self::Completed),
            "failed" => Some(Self::Failed),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }

    pub fn status(self) -> RequestStatus {
        match self {
            Self::Completed => RequestStatus::Completed,
            Self::Failed => RequestStatus::Failed,
            Self::Cancelled => RequestStatus::Cancelled,
        }
    }
}

/// One finished request in its tenant's feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FeedEntry {
    /// Position of this entry: `after=<this>` returns what came after it.
    pub cursor: FeedCursor,
    pub tenant: TenantId,
    pub custom_id: CustomId,
    pub event: FeedEvent,
    pub finished_at: Timestamp,
    /// The job that finished it (none for a cancelled request).
    pub job: Option<JobId>,
    pub model: ModelName,
    pub provider: ProviderName,
}

impl FeedEntry {
    /// The request this entry is about.
    pub fn key(&self) -> RequestKey {
        RequestKey::derive(&self.tenant, &self.custom_id)
    }
}

/// One page of a tenant's feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedPage {
    pub entries: Vec<FeedEntry>,
    /// The last entry's cursor, or the `after` given when the page is
    /// empty (`None`: empty page of a feed read from its start).
    pub next: Option<FeedCursor>,
}

/// An entry as a store appends it, before it has a number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedDraft {
    pub tenant: TenantId,
    pub custom_id: CustomId,
    pub event: FeedEvent,
    pub finished_at: Timestamp,
    pub job: Option<JobId>,
    pub model: ModelName,
    pub provider: ProviderName,
}

impl FeedDraft {
    /// The entry `u` appends when it applies: one for every move into a
    /// terminal status (none for any other move).
    pub fn of(u: &RequestUpdate) -> Option<Self> {
        if u.from.is_terminal() {
            return None;
        }
        Some(Self {
            tenant: u.tenant.clone(),
            custom_id: u.custom_id.clone(),
            event: FeedEvent::of(u.to)?,
            finished_at: u.now,
            job: u.claim_for.clone().or_else(|| u.expected_job.clone()),
            model: u.group.model.clone(),
            provider: u.group.provider.clone(),
        })
    }

    /// The entry numbered `seq` in its tenant's feed.
    pub fn numbered(self, seq: u64) -> FeedEntry {
        FeedEntry {
            cursor: FeedCursor::new(&self.tenant, seq),
            tenant: self.tenant,
            custom_id: self.custom_id,
            event: self.event,
            finished_at: self.finished_at,
            job: self.job,
            model: self.model,
            provider: self.provider,
        }
    }
}

/// A page's size: `limit` within 1..=[`MAX_PAGE`].
pub fn page_size(limit: u32) -> usize {
    limit.clamp(1, MAX_PAGE) as usize
}

/// The page of `entries` (numbered, ascending, all with numbers above
/// `after`'s) as a store answers it: `next` the last one's cursor, or
/// `after` itself when there are none.
pub fn page_of(entries: Vec<FeedEntry>, after: Option<&FeedCursor>) -> FeedPage {
    let next = entries.last().map(|e| e.cursor.clone()).or_else(|| after.cloned());
    FeedPage { entries, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    #[test]
    fn a_cursor_reads_back_its_number_for_its_own_tenant_only() {
        let c = FeedCursor::new(&t("acme"), 42);
        let parsed: FeedCursor = c.to_string().parse().unwrap();
        assert_eq!(parsed.seq_for(&t("acme")), Ok(42));
        assert_eq!(parsed.seq_for(&t("globex")), Err(BadCursor));
    }

    #[test]
    fn strings_that_are_not_cursors_are_refused() {
        for s in [
            "",
            "fc1",
            "fc1.0000000g.1",
            "fc1.00000000.",
            "fc1.00000000.-1",
            "fc2.00000000.1",
            "fc1.00000000.1.2",
            "fc1.00000000.99999999999999999999999",
        ] {
            assert_eq!(s.parse::<FeedCursor>(), Err(BadCursor), "{s:?}");
        }
    }

    #[test]
    fn an_empty_page_hands_back_the_cursor_it_was_read_after() {
        let after = FeedCursor::new(&t("acme"), 7);
        assert_eq!(page_of(Vec::new(), Some(&after)).next, Some(after));
        assert_eq!(page_of(Vec::new(), None).next, None);
    }
}
