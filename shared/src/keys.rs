//! The S3 key layout, in one place.
//!
//! | prefix | what | written by | lifetime |
//! |---|---|---|---|
//! | `inputs/{job}.jsonl` | a job's batch input file | submit | until the job is done (+ lifecycle rule) |
//! | `results/{job}/output.jsonl` | provider output file copy; results point into it | poll | with its requests (+ a day) |
//! | `results/{job}/errors.jsonl` | provider error file copy | poll | with its requests (+ a day) |
//! | `bodies/{request}/{content_hash}.json` | request bodies too large for DynamoDB | enqueue | with the request |
//! | `responses/{request}/{job}.json` | responses too large for DynamoDB | ingest | with the request |
//!
//! Every key is deterministic from ids, so a re-run writes the same object
//! instead of a new one; bodies are content-addressed, so a conflicting
//! re-post never overwrites an accepted body.

use std::time::Duration;

use crate::ids::{ContentHash, JobId, RequestKey};

const DAY: Duration = Duration::from_secs(86_400);

/// How long after enqueue a request's body is kept whatever happens, on top
/// of the retention: a request still unfinished this long after enqueue (far
/// beyond any batch window and its retries) would lose its body and end
/// failed. DynamoDB's body item expires then; `bodies/` objects that nothing
/// deleted (a body written just before its enqueue failed) go after it.
pub const BODY_HORIZON: Duration = Duration::from_secs(30 * 86_400);

/// Days a job's input file is kept (`inputs/`). Poll reads it again when the
/// batch fails validation, up to the batch deadline after submission.
pub const INPUT_RETENTION_DAYS: u64 = 7;

/// How much longer than the retention a copied result file (`results/`) is
/// kept: results point into it (`placement::InlineLimits::place_answer`),
/// and a request finishes after the copy (ingest runs within minutes; poll
/// ingests a file a lease after its copy at the latest).
pub const RESULT_FILE_MARGIN: Duration = DAY;

/// One prefix's expiry: objects under `prefix` older than `after` go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectExpiry {
    pub prefix: &'static str,
    pub after: Duration,
}

/// When objects expire, per prefix, given the retention of finished rows
/// (`None`: keep everything). In AWS the bucket's lifecycle rules apply
/// these (the template's defaults are these figures); the embedded store's
/// `batchq serve` sweeps its files by them every hour. Finished requests'
/// bodies are deleted at once; `bodies/` expiry takes what a crash left.
/// Result file copies hold their requests' answers, so they go only after
/// the rows that point into them.
pub fn object_expiry(retention: Option<Duration>) -> Vec<ObjectExpiry> {
    let mut out = vec![ObjectExpiry {
        prefix: "inputs/",
        after: DAY * INPUT_RETENTION_DAYS as u32,
    }];
    if let Some(retention) = retention {
        out.push(ObjectExpiry {
            prefix: RESULTS_PREFIX,
            after: retention + RESULT_FILE_MARGIN,
        });
        out.push(ObjectExpiry {
            prefix: "responses/",
            after: retention,
        });
        out.push(ObjectExpiry {
            prefix: "bodies/",
            after: retention + BODY_HORIZON,
        });
    }
    out
}

pub const RESULTS_PREFIX: &str = "results/";

pub fn job_input(job: &JobId) -> String {
    format!("inputs/{job}.jsonl")
}

pub fn job_output(job: &JobId) -> String {
    format!("{RESULTS_PREFIX}{job}/output.jsonl")
}

pub fn job_errors(job: &JobId) -> String {
    format!("{RESULTS_PREFIX}{job}/errors.jsonl")
}

pub fn body(request: &RequestKey, hash: &ContentHash) -> String {
    format!("bodies/{request}/{hash}.json")
}

/// A new chunk object of request bodies (under `bodies/`, so the bucket's
/// body rule expires it and the roles that read bodies read it). Never
/// reused: a chunk is written once and never overwritten.
pub fn body_chunk() -> String {
    format!("bodies/chunks/{}.jsonl", uuid::Uuid::now_v7().simple())
}

pub fn response(request: &RequestKey, job: &JobId) -> String {
    format!("responses/{request}/{job}.json")
}

/// Which result file of which job a `results/` key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultFile {
    Output(JobId),
    Errors(JobId),
}

/// Parses a `results/{job}/output.jsonl` or `…/errors.jsonl` key (as it
/// arrives, URL-decoded, in an S3 event).
pub fn parse_result_key(key: &str) -> Option<ResultFile> {
    let rest = key.strip_prefix(RESULTS_PREFIX)?;
    let (job, file) = rest.split_once('/')?;
    let job = JobId::parse(job).ok()?;
    match file {
        "output.jsonl" => Some(ResultFile::Output(job)),
        "errors.jsonl" => Some(ResultFile::Errors(job)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_keys_parse_back_to_their_job() {
        let j = JobId::generate();
        assert_eq!(parse_result_key(&job_output(&j)), Some(ResultFile::Output(j.clone())));
        assert_eq!(parse_result_key(&job_errors(&j)), Some(ResultFile::Errors(j.clone())));
        assert_eq!(parse_result_key(&job_input(&j)), None);
        assert_eq!(parse_result_key("results/job_x/output.jsonl"), None);
        assert_eq!(parse_result_key(&format!("results/{j}/other.jsonl")), None);
    }
}
