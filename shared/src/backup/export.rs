//! `export(ports, dir)`: lists everything through the ports and writes it
//! as the directory [`super`] describes.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use futures::StreamExt;

use super::{
    BackupError, Counts, JobRecord, Manifest, ObjectEntry, Record, RequestRecord, ALL_DAYS, FORMAT_NAME,
    FORMAT_VERSION, MANIFEST_FILE, OBJECTS_DIR, ROWS_FILE,
};
use crate::ids::{RequestKey, TenantId};
use crate::job::Job;
use crate::keys;
use crate::ports::Ports;
use crate::request::{Payload, Request, RequestResult, RequestStatus};
use crate::store::StoreError;

/// Rows read per listing page.
const PAGE: u32 = 100;

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    pub manifest: Manifest,
    /// Rows left out, each with why (an unfinished request whose body is
    /// lost cannot be sent by any store).
    pub skipped: Vec<String>,
    /// Finished requests exported without their body (the store deletes a
    /// finished request's body object).
    pub bodies_gone: u64,
}

struct Writer {
    dir: PathBuf,
    rows: BufWriter<File>,
    counts: Counts,
    objects: Vec<ObjectEntry>,
    seen: HashSet<RequestKey>,
    tenants: BTreeSet<TenantId>,
    skipped: Vec<String>,
    bodies_gone: u64,
}

impl Writer {
    fn line(&mut self, record: &Record) -> Result<(), BackupError> {
        let path = self.dir.join(ROWS_FILE);
        serde_json::to_writer(&mut self.rows, record).map_err(|e| BackupError::io(&path)(std::io::Error::other(e)))?;
        self.rows.write_all(b"\n").map_err(BackupError::io(&path))
    }
}

/// Writes everything `ports` lists into `dir` (created; it must be new or
/// empty). The store should be quiet meanwhile (no `serve`, no schedule):
/// the listings are read one after another, not as one snapshot.
pub async fn export(ports: &Ports, dir: &Path) -> Result<ExportReport, BackupError> {
    prepare_dir(dir)?;
    let rows = File::create(dir.join(ROWS_FILE)).map_err(BackupError::io(dir.join(ROWS_FILE)))?;
    let mut w = Writer {
        dir: dir.to_path_buf(),
        rows: BufWriter::new(rows),
        counts: Counts::default(),
        objects: Vec::new(),
        seen: HashSet::new(),
        tenants: BTreeSet::new(),
        skipped: Vec::new(),
        bodies_gone: 0,
    };
    let exported_at = ports.clock.now();
    let export_id = uuid::Uuid::now_v7().simple().to_string();

    // Jobs, each after the requests whose latest job it is.
    let mut cursor = None;
    loop {
        let page = ports.jobs.list_jobs(None, cursor, PAGE).await?;
        for listed in page.items {
            // The listing may come from an index: read the row itself.
            let job = ports.jobs.get_job(&listed.id).await?.unwrap_or(listed);
            export_job(ports, &mut w, job).await?;
        }
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }

    // Queued requests: a request re-queued or never claimed has no job.
    for group in ports.requests.queue_groups().await? {
        let mut cursor = None;
        loop {
            let page = ports.requests.queued(&group.group, cursor, PAGE).await?;
            export_requests(ports, &mut w, page.items).await?;
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
    }

    let mut budgets: Vec<_> = ports.jobs.token_budgets().await?.into_values().collect();
    budgets.sort_by(|a, b| a.model.cmp(&b.model));
    for budget in budgets {
        w.line(&Record::Budget { budget })?;
        w.counts.budgets += 1;
    }

    let tenants = std::mem::take(&mut w.tenants);
    for tenant in &tenants {
        for row in ports.savings.savings(tenant, ALL_DAYS.0, ALL_DAYS.1).await? {
            w.line(&Record::Savings { savings: row })?;
            w.counts.savings += 1;
        }
    }

    w.rows.flush().map_err(BackupError::io(dir.join(ROWS_FILE)))?;
    w.rows
        .get_ref()
        .sync_all()
        .map_err(BackupError::io(dir.join(ROWS_FILE)))?;
    let manifest = Manifest {
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        export_id,
        exported_at,
        counts: w.counts.clone(),
        objects: w.objects.clone(),
    };
    // Written last: a directory without a manifest is an export that did not finish.
    let text = serde_json::to_string_pretty(&manifest).expect("a manifest serializes");
    std::fs::write(dir.join(MANIFEST_FILE), text + "\n").map_err(BackupError::io(dir.join(MANIFEST_FILE)))?;
    Ok(ExportReport {
        manifest,
        skipped: w.skipped,
        bodies_gone: w.bodies_gone,
    })
}

fn prepare_dir(dir: &Path) -> Result<(), BackupError> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(BackupError::io(dir))?;
        if entries.next().is_some() {
            return Err(BackupError::NotEmpty { path: dir.into() });
        }
    }
    std::fs::create_dir_all(dir.join(OBJECTS_DIR)).map_err(BackupError::io(dir))
}

async fn export_job(ports: &Ports, w: &mut Writer, job: Job) -> Result<(), BackupError> {
    let mut tenants: BTreeSet<TenantId> = job.tenants.iter().cloned().collect();
    let mut cursor = None;
    loop {
        let page = ports.requests.by_job(&job.id, cursor, PAGE).await?;
        tenants.extend(page.items.iter().map(|r| r.tenant.clone()));
        export_requests(ports, w, page.items).await?;
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    if !job.status.is_terminal() {
        // What closing the job reads, and result files not ingested yet.
        let mut needed = vec![job.input_key.clone()];
        if !job.ingested_output {
            needed.push(keys::job_output(&job.id));
        }
        if !job.ingested_errors {
            needed.push(keys::job_errors(&job.id));
        }
        for key in needed {
            copy_object(ports, w, &key).await?;
        }
    }
    w.tenants.extend(tenants.iter().cloned());
    w.line(&Record::Job(JobRecord {
        job,
        tenants: tenants.into_iter().collect(),
    }))?;
    w.counts.jobs += 1;
    Ok(())
}

/// Streams `key` (when it exists) to `objects/<key>`.
async fn copy_object(ports: &Ports, w: &mut Writer, key: &str) -> Result<(), BackupError> {
    if ports.objects.head(key).await?.is_none() {
        return Ok(());
    }
    let path = super::object_path(&w.dir, key)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(BackupError::io(parent))?;
    }
    let (_, mut stream) = ports.objects.open(key).await?;
    let mut file = BufWriter::new(File::create(&path).map_err(BackupError::io(&path))?);
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        file.write_all(&chunk).map_err(BackupError::io(&path))?;
    }
    file.flush().map_err(BackupError::io(&path))?;
    w.objects.push(ObjectEntry {
        key: key.to_owned(),
        bytes,
    });
    w.counts.objects += 1;
    w.counts.object_bytes += bytes;
    Ok(())
}

/// Writes the requests of one listing page (each once), read again from
/// their rows, with their bodies and results.
async fn export_requests(ports: &Ports, w: &mut Writer, listed: Vec<Request>) -> Result<(), BackupError> {
    let keys: Vec<RequestKey> = listed
        .into_iter()
        .map(|r| r.key)
        .filter(|k| !w.seen.contains(k))
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let states = ports.requests.get_many(&keys).await?;
    let mut bodies = ports.requests.bodies(&keys).await?;
    for key in keys {
        let Some(state) = states.get(&key) else {
            continue;
        };
        let result = match state.status {
            RequestStatus::Completed | RequestStatus::Failed => {
                ports.requests.get_with_result(&key).await?.and_then(|(_, r)| r)
            }
            _ => None,
        };
        let result = match result {
            Some(r) => Some(inline_response(ports, r).await?),
            None => None,
        };
        let body = bodies.remove(&key);
        if body.is_none() {
            if !state.status.is_terminal() {
                w.skipped.push(format!(
                    "{} ({}, tenant {}): its body is lost",
                    state.custom_id, state.status, state.tenant
                ));
                continue;
            }
            w.bodies_gone += 1;
        }
        w.seen.insert(key.clone());
        w.tenants.insert(state.tenant.clone());
        w.counts.count_request(state);
        w.line(&Record::Request(RequestRecord {
            request: state.clone(),
            body,
            result,
        }))?;
    }
    Ok(())
}

/// The result with a response kept as an object read into the line.
async fn inline_response(ports: &Ports, mut r: RequestResult) -> Result<RequestResult, BackupError> {
    if let Some(payload @ (Payload::S3 { key, .. } | Payload::Chunk { key, .. })) = &r.response {
        let text = crate::store::placed::payload_text(ports.objects.as_ref(), payload)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                entity: "response object",
                id: key.clone(),
            })?;
        r.response = Some(Payload::Inline(text));
    }
    Ok(r)
}
