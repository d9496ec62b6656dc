//! The S3 key layout, in one place.
//!
//! | prefix | what | written by | lifetime |
//! |---|---|---|---|
//! | `inputs/{job}.jsonl` | a job's batch input file | submit | until the job is done (+ lifecycle rule) |
//! | `results/{job}/output.jsonl` | provider output file copy | poll | ingested, then lifecycle rule |
//! | `results/{job}/errors.jsonl` | provider error file copy | poll | ingested, then lifecycle rule |
//! | `bodies/{request}/{content_hash}.json` | request bodies too large for DynamoDB | enqueue | with the request |
//! | `responses/{request}/{job}.json` | responses too large for DynamoDB | ingest | with the request |
//!
//! Every key is deterministic from ids, so a re-run writes the same object
//! instead of a new one; bodies are content-addressed, so a conflicting
//! re-post never overwrites an accepted body.

use crate::ids::{ContentHash, JobId, RequestKey};

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
