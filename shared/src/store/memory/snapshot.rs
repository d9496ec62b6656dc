//! Every stored row as text, for "nothing changed" comparisons in tests
//! (the emulator-backed harness scans both tables for the same purpose).

use std::collections::BTreeMap;

use super::MemoryStore;

impl MemoryStore {
    /// Each row (request state, body, result; counters; job; job tenant;
    /// budget; savings total) under a key naming it, as its `Debug` text,
    /// maps and sets in sorted order. Consistent (no listing lag).
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        let state = self.lock();
        let mut out = BTreeMap::new();
        for (key, row) in &state.requests {
            out.insert(format!("request|{key}|state"), format!("{:?}", row.state.current));
            out.insert(format!("request|{key}|body"), format!("{:?}", row.body));
            if let Some(r) = &row.result {
                out.insert(format!("request|{key}|result"), format!("{r:?}"));
            }
        }
        for (tenant, counts) in &state.counters.tenants {
            let by_status: BTreeMap<&str, i64> = counts.by_status.iter().map(|(s, n)| (s.as_str(), *n)).collect();
            out.insert(
                format!("counter|tenant|{tenant}"),
                format!(
                    "{by_status:?} pending_bytes={} committed_nanos={}",
                    counts.pending_bytes, counts.committed_nanos
                ),
            );
        }
        for (group, n) in &state.counters.queues {
            out.insert(format!("counter|queue|{}", group.key()), n.to_string());
        }
        for (tenant, models) in &state.counters.tenant_queued {
            out.insert(format!("counter|tenant_queued|{tenant}"), format!("{models:?}"));
        }
        for (tenant, hours) in &state.counters.activity {
            for (hour, counts) in hours {
                out.insert(format!("counter|activity|{tenant}|{hour}"), format!("{counts:?}"));
            }
        }
        for (tenant, entries) in &state.feed {
            for e in entries {
                out.insert(format!("feed|{tenant}|{}", e.cursor), format!("{e:?}"));
            }
        }
        for (id, job) in &state.jobs {
            out.insert(format!("job|{id}"), format!("{:?}", job.current));
        }
        for (tenant, jobs) in &state.tenant_jobs {
            for (_, id) in jobs {
                out.insert(format!("tenant_job|{tenant}|{id}"), String::new());
            }
        }
        for (model, budget) in &state.budgets {
            out.insert(format!("budget|{model}"), format!("{budget:?}"));
        }
        for (tenant, rows) in &state.savings {
            for (sk, e) in rows {
                let mut sources: Vec<&String> = e.sources.iter().collect();
                sources.sort();
                out.insert(format!("savings|{tenant}|{sk}"), format!("{:?} {sources:?}", e.totals));
            }
        }
        out
    }
}
