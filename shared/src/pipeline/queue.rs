//! The queue as it stands: per queue group, how many requests wait and how
//! long the oldest has (poll's run report carries it; metrics read it).

use crate::ports::Ports;
use crate::store::StoreError;

/// One queue group's level: how many wait, and for how long the oldest has.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueueLevel {
    pub group: String,
    pub queued: u64,
    pub oldest_age_seconds: Option<u64>,
}

/// The queue per group, read from the store now.
pub async fn queue_levels(ports: &Ports) -> Result<Vec<QueueLevel>, StoreError> {
    let now = ports.clock.now();
    let mut out = Vec::new();
    for g in ports.requests.queue_groups().await? {
        let first = ports.requests.queued(&g.group, None, 1).await?;
        out.push(QueueLevel {
            group: g.group.key(),
            queued: g.queued,
            oldest_age_seconds: first.items.first().map(|r| now.since(r.created_at).as_secs()),
        });
    }
    Ok(out)
}
