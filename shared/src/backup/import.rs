//! `import(ports, dir)`: checks an export whole, then writes it into the
//! target through the ports: objects, jobs, budgets and savings, then each
//! request inserted as queued and moved along its exported life by the
//! domain's own transitions ([`super::replay`]). The target's counters come
//! out exact by construction, and no store needs a raw-write API.
//!
//! Running it again is harmless: an existing job is kept, an existing
//! budget is kept, savings count once per export, and a request already
//! stored continues its replay from the state the target holds (none when
//! it is there already). A request the target holds elsewhere than on its
//! exported path (the target moved it on, e.g. submitted it again) is left
//! alone and reported.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::replay::{self, Position};
use super::{
    BackupError, Counts, Manifest, Record, RequestRecord, FORMAT_NAME, FORMAT_VERSION, MANIFEST_FILE, ROWS_FILE,
};
use crate::ids::{JobId, RequestKey};
use crate::ports::Ports;
use crate::request::{InsertOutcome, NewRequest, Request};
use crate::store::{Applied, SavingsRow};
use crate::time::Timestamp;

/// Requests inserted and replayed together.
const CHUNK: usize = 100;
/// Bytes read from an object file per write.
const OBJECT_CHUNK: usize = 1 << 20;

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub export_id: String,
    /// The imported requests by the status the target now holds them in
    /// (those on their exported path: all of them, but `off_path`).
    pub requests_by_status: BTreeMap<String, u64>,
    /// Requests written now.
    pub requests_created: u64,
    /// Requests the target held already, at their exported state.
    pub requests_present: u64,
    /// Requests the target held part way along their path, moved on now.
    pub requests_continued: u64,
    /// Transitions applied.
    pub steps: u64,
    /// Requests left as the target holds them, each with why.
    pub off_path: Vec<String>,
    pub jobs_created: u64,
    pub jobs_present: u64,
    pub objects_copied: u64,
    pub objects_present: u64,
    pub object_bytes: u64,
    pub budgets_saved: u64,
    pub budgets_kept: u64,
    pub savings_rows: u64,
}

/// Reads `rows.jsonl` line by line.
struct Lines {
    path: PathBuf,
    reader: BufReader<File>,
    n: u64,
    buf: String,
}

impl Lines {
    fn open(dir: &Path) -> Result<Self, BackupError> {
        let path = dir.join(ROWS_FILE);
        let file = File::open(&path).map_err(BackupError::io(&path))?;
        Ok(Self {
            path,
            reader: BufReader::new(file),
            n: 0,
            buf: String::new(),
        })
    }

    fn bad(&self, reason: impl Into<String>) -> BackupError {
        BackupError::BadLine {
            path: self.path.clone(),
            line: self.n,
            reason: reason.into(),
        }
    }

    fn next_record(&mut self) -> Result<Option<Record>, BackupError> {
        loop {
            self.buf.clear();
            let read = self
                .reader
                .read_line(&mut self.buf)
                .map_err(BackupError::io(&self.path))?;
            if read == 0 {
                return Ok(None);
            }
            self.n += 1;
            if self.buf.trim().is_empty() {
                continue;
            }
            return Record::parse(&self.buf).map(Some).map_err(|e| self.bad(e));
        }
    }
}

/// Reads and checks `manifest.json`: the format and its version.
pub fn read_manifest(dir: &Path) -> Result<Manifest, BackupError> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BackupError::NotAnExport {
            path: dir.into(),
            reason: format!("no {MANIFEST_FILE} (an export writes it last: this one did not finish)"),
        },
        _ => BackupError::io(&path)(e),
    })?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| BackupError::NotAnExport {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if value["format"].as_str() != Some(FORMAT_NAME) {
        return Err(BackupError::NotAnExport {
            path,
            reason: format!("its format is not {FORMAT_NAME:?}"),
        });
    }
    // The version first: a later format may change everything else.
    let version = value["version"].as_u64().unwrap_or(0);
    if version != u64::from(FORMAT_VERSION) {
        return Err(BackupError::UnsupportedVersion {
            path,
            found: u32::try_from(version).unwrap_or(u32::MAX),
        });
    }
    serde_json::from_value(value).map_err(|e| BackupError::NotAnExport {
        path,
        reason: e.to_string(),
    })
}

/// The request as it was first enqueued: its key and content hash derive
/// from the exported fields and body (a finished request whose body was
/// gone keeps its exported hash, with an empty body); its weight is the
/// exported one (the estimate may have changed since).
pub fn rebuild(rec: &RequestRecord) -> Result<NewRequest, String> {
    let r = &rec.request;
    let derived = RequestKey::derive(&r.tenant, &r.custom_id);
    if derived != r.key {
        return Err(format!(
            "key {} does not derive from tenant {} and custom id {}",
            r.key, r.tenant, r.custom_id
        ));
    }
    let new = match &rec.body {
        Some(body) => {
            let new = NewRequest::new(
                r.tenant.clone(),
                r.custom_id.clone(),
                r.endpoint,
                r.model.clone(),
                body.clone(),
            )
            .sent_to(r.provider.clone());
            if new.content_hash != r.content_hash {
                return Err(format!("{}: the body does not match its content hash", r.custom_id));
            }
            new
        }
        None if r.status.is_terminal() => NewRequest {
            key: r.key.clone(),
            tenant: r.tenant.clone(),
            custom_id: r.custom_id.clone(),
            provider: r.provider.clone(),
            provider_named: true,
            endpoint: r.endpoint,
            model: r.model.clone(),
            body_json: String::new(),
            content_hash: r.content_hash.clone(),
            weight: r.weight,
            estimated_cost_nanos: r.estimated_cost_nanos,
        },
        None => return Err(format!("{}: an unfinished request without its body", r.custom_id)),
    };
    Ok(NewRequest {
        weight: r.weight,
        estimated_cost_nanos: r.estimated_cost_nanos,
        ..new
    })
}

/// The job earlier attempts are claimed for during a replay: fixed by the
/// export, so a re-run finds a row a crash left mid-cycle on its path.
fn cycle_job(manifest: &Manifest) -> Result<JobId, BackupError> {
    JobId::parse(format!("job_{}", manifest.export_id)).map_err(|e| BackupError::NotAnExport {
        path: MANIFEST_FILE.into(),
        reason: format!("export_id: {}", e.message),
    })
}

/// Imports the export in `dir` into the stores behind `ports`. Checks it
/// whole first (version, completeness, every line, conflicts with what the
/// target holds) and writes nothing when a check fails. Run it while no
/// batchq works on the target (no `serve`, no schedule).
pub async fn import(ports: &Ports, dir: &Path) -> Result<ImportReport, BackupError> {
    let manifest = read_manifest(dir)?;
    let cycle = cycle_job(&manifest)?;
    check(ports, dir, &manifest, &cycle).await?;

    let mut report = ImportReport {
        export_id: manifest.export_id.clone(),
        ..ImportReport::default()
    };
    copy_objects(ports, dir, &manifest, &mut report).await?;
    import_rest(ports, dir, &manifest, &mut report).await?;
    import_requests(ports, dir, &cycle, &mut report).await?;
    Ok(report)
}

/// Every check, before anything is written.
async fn check(ports: &Ports, dir: &Path, manifest: &Manifest, cycle: &JobId) -> Result<(), BackupError> {
    for o in &manifest.objects {
        let path = super::object_path(dir, &o.key)?;
        let len = std::fs::metadata(&path).map_err(BackupError::io(&path))?.len();
        if len != o.bytes {
            return Err(BackupError::Incomplete(format!(
                "{} holds {len} bytes, the manifest says {}",
                path.display(),
                o.bytes
            )));
        }
    }
    let mut found = Counts {
        objects: manifest.counts.objects,
        object_bytes: manifest.counts.object_bytes,
        ..Counts::default()
    };
    let mut conflicts = 0u64;
    let mut first = None;
    let mut lines = Lines::open(dir)?;
    let mut chunk: Vec<Request> = Vec::new();
    loop {
        let record = lines.next_record()?;
        let end = record.is_none();
        match record {
            Some(Record::Request(rec)) => {
                let new = rebuild(&rec).map_err(|e| lines.bad(e))?;
                replay::plan(&new, &rec.request, rec.result.as_ref(), cycle)
                    .map_err(|e| lines.bad(format!("{}: {e}", rec.request.custom_id)))?;
                found.count_request(&rec.request);
                chunk.push(rec.request);
            }
            Some(Record::Job(_)) => found.jobs += 1,
            Some(Record::Budget { .. }) => found.budgets += 1,
            Some(Record::Savings { .. }) => found.savings += 1,
            None => {}
        }
        if chunk.len() >= CHUNK || (end && !chunk.is_empty()) {
            let keys: Vec<RequestKey> = chunk.iter().map(|r| r.key.clone()).collect();
            let stored = ports.requests.get_many(&keys).await?;
            for r in chunk.drain(..) {
                if let Some(s) = stored.get(&r.key) {
                    if s.content_hash != r.content_hash || s.provider != r.provider {
                        conflicts += 1;
                        first.get_or_insert_with(|| format!("tenant {} custom id {}", r.tenant, r.custom_id));
                    }
                }
            }
        }
        if end {
            break;
        }
    }
    if found != manifest.counts {
        return Err(BackupError::Incomplete(format!(
            "{ROWS_FILE} holds {} requests, {} jobs, {} budgets and {} savings rows; the manifest says {}, {}, {} and {}",
            found.requests,
            found.jobs,
            found.budgets,
            found.savings,
            manifest.counts.requests,
            manifest.counts.jobs,
            manifest.counts.budgets,
            manifest.counts.savings
        )));
    }
    if conflicts > 0 {
        return Err(BackupError::Conflicts {
            count: conflicts,
            first: first.unwrap_or_default(),
        });
    }
    Ok(())
}

/// Streams each exported object to the target, unless it holds one of
/// the same size under that key already.
async fn copy_objects(
    ports: &Ports,
    dir: &Path,
    manifest: &Manifest,
    report: &mut ImportReport,
) -> Result<(), BackupError> {
    for o in &manifest.objects {
        if ports.objects.head(&o.key).await?.is_some_and(|i| i.bytes == o.bytes) {
            report.objects_present += 1;
            continue;
        }
        let path = super::object_path(dir, &o.key)?;
        let mut file = File::open(&path).map_err(BackupError::io(&path))?;
        let content_type = if o.key.ends_with(".jsonl") {
            "application/jsonl"
        } else {
            "application/octet-stream"
        };
        let mut writer = ports.objects.writer(&o.key, content_type).await?;
        let mut buf = vec![0u8; OBJECT_CHUNK];
        loop {
            let n = match file.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    writer.abort().await?;
                    return Err(BackupError::io(&path)(e));
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = writer.write(&buf[..n]).await {
                let _ = writer.abort().await;
                return Err(e.into());
            }
        }
        let info = writer.finish().await?;
        report.objects_copied += 1;
        report.object_bytes += info.bytes;
    }
    Ok(())
}

/// Jobs (as exported; an existing id is kept), their tenants, budgets (an
/// existing one is kept: the target may have learnt since) and savings
/// (counted once per export).
async fn import_rest(
    ports: &Ports,
    dir: &Path,
    manifest: &Manifest,
    report: &mut ImportReport,
) -> Result<(), BackupError> {
    let budgets = ports.jobs.token_budgets().await?;
    let source = format!("import:{}", manifest.export_id);
    let mut savings: Vec<SavingsRow> = Vec::new();
    let mut lines = Lines::open(dir)?;
    while let Some(record) = lines.next_record()? {
        match record {
            Record::Job(rec) => {
                let job = match ports.jobs.create_job(&rec.job).await {
                    Ok(()) => {
                        report.jobs_created += 1;
                        rec.job
                    }
                    Err(e) if e.is_condition_failed() => {
                        report.jobs_present += 1;
                        ports.jobs.get_job(&rec.job.id).await?.unwrap_or(rec.job)
                    }
                    Err(e) => return Err(e.into()),
                };
                if !rec.tenants.is_empty() {
                    ports.jobs.add_job_tenants(&job, &rec.tenants).await?;
                }
            }
            Record::Budget { budget } => {
                if budgets.contains_key(&budget.model) {
                    report.budgets_kept += 1;
                } else {
                    ports.jobs.save_token_budget(&budget).await?;
                    report.budgets_saved += 1;
                }
            }
            Record::Savings { savings: row } => {
                savings.push(row);
                if savings.len() >= CHUNK {
                    report.savings_rows += savings.len() as u64;
                    ports.savings.add_savings(&source, std::mem::take(&mut savings)).await?;
                }
            }
            Record::Request(_) => {}
        }
    }
    if !savings.is_empty() {
        report.savings_rows += savings.len() as u64;
        ports.savings.add_savings(&source, savings).await?;
    }
    Ok(())
}

async fn import_requests(
    ports: &Ports,
    dir: &Path,
    cycle: &JobId,
    report: &mut ImportReport,
) -> Result<(), BackupError> {
    let mut lines = Lines::open(dir)?;
    let mut chunk: Vec<RequestRecord> = Vec::new();
    loop {
        let record = lines.next_record()?;
        let end = record.is_none();
        if let Some(Record::Request(rec)) = record {
            chunk.push(rec);
        }
        if chunk.len() >= CHUNK || (end && !chunk.is_empty()) {
            replay_chunk(ports, std::mem::take(&mut chunk), cycle, report).await?;
        }
        if end {
            return Ok(());
        }
    }
}

/// Inserts a chunk of requests (each at its exported creation time) and
/// moves each along its path from where the target holds it, a step of
/// every request per `apply_many`.
async fn replay_chunk(
    ports: &Ports,
    chunk: Vec<RequestRecord>,
    cycle: &JobId,
    report: &mut ImportReport,
) -> Result<(), BackupError> {
    // Checked before anything was written: these cannot fail now.
    let mut planned = Vec::with_capacity(chunk.len());
    for rec in chunk {
        let new = rebuild(&rec).map_err(BackupError::Incomplete)?;
        let path = replay::plan(&new, &rec.request, rec.result.as_ref(), cycle)
            .map_err(|e| BackupError::Incomplete(e.to_string()))?;
        planned.push((rec, new, path));
    }
    let mut by_time: BTreeMap<Timestamp, Vec<usize>> = BTreeMap::new();
    for (i, (rec, _, _)) in planned.iter().enumerate() {
        by_time.entry(rec.request.created_at).or_default().push(i);
    }
    // The row the target holds for each request (`None`: other content).
    let mut stored: HashMap<usize, (Option<Request>, bool)> = HashMap::new();
    for (at, idx) in by_time {
        let news: Vec<NewRequest> = idx.iter().map(|&i| planned[i].1.clone()).collect();
        let outcomes = ports.requests.insert(news, at).await?;
        for (i, outcome) in idx.into_iter().zip(outcomes) {
            let state = match outcome {
                InsertOutcome::Created(s) => (Some(s), true),
                InsertOutcome::Existing(s) => (Some(s), false),
                InsertOutcome::Conflict(_) => (None, false),
            };
            stored.insert(i, state);
        }
    }

    // Where each request stands: (request, next step).
    let mut remaining: Vec<(usize, usize)> = Vec::new();
    for (i, (rec, _, path)) in planned.iter().enumerate() {
        let r = &rec.request;
        let (state, created) = stored.remove(&i).unwrap_or((None, false));
        let Some(state) = state else {
            report.off_path.push(format!(
                "{} (tenant {}): stored with other content",
                r.custom_id, r.tenant
            ));
            continue;
        };
        match path.position(&state) {
            Position::At { done } => {
                if created {
                    report.requests_created += 1;
                } else if done == path.steps.len() {
                    report.requests_present += 1;
                } else {
                    report.requests_continued += 1;
                }
                remaining.push((i, done));
            }
            Position::Off => report.off_path.push(format!(
                "{} (tenant {}): the target holds it {}{}, not on its exported path to {}",
                r.custom_id,
                r.tenant,
                state.status,
                state.job_id.as_ref().map(|j| format!(" in {j}")).unwrap_or_default(),
                r.status
            )),
        }
    }

    // A step of every request per call, until each is at its exported state.
    loop {
        let batch: Vec<usize> = (0..remaining.len())
            .filter(|&k| remaining[k].1 < planned[remaining[k].0].2.steps.len())
            .collect();
        if batch.is_empty() {
            break;
        }
        let updates = batch
            .iter()
            .map(|&k| {
                let (i, next) = remaining[k];
                planned[i].2.steps[next].0.clone()
            })
            .collect();
        let results = ports.requests.apply_many(updates).await?;
        for (&k, res) in batch.iter().zip(results) {
            let i = remaining[k].0;
            match res {
                Ok(Applied::Now) | Ok(Applied::Already) => {
                    report.steps += 1;
                    remaining[k].1 += 1;
                }
                Err(e) => {
                    let r = &planned[i].0.request;
                    report
                        .off_path
                        .push(format!("{} (tenant {}): {e}", r.custom_id, r.tenant));
                    // Off its path now: no further step.
                    remaining[k].1 = usize::MAX;
                }
            }
        }
    }
    for (i, next) in remaining {
        if next == usize::MAX {
            continue;
        }
        *report
            .requests_by_status
            .entry(planned[i].0.request.status.to_string())
            .or_default() += 1;
    }
    Ok(())
}
