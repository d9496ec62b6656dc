//! Named step boundaries where a test can stop a step, as if the function
//! had been killed there. Production wiring uses [`NoCrashes`].

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A boundary between two externally visible effects of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrashPoint {
    /// submit: the job row exists, no request is claimed yet.
    SubmitAfterJobCreated,
    /// submit: requests are claimed, no input file is written.
    SubmitAfterClaim,
    /// submit: part of the input file is streamed, the upload is not finished.
    SubmitMidInputWrite,
    /// submit: the input file is in S3, the job still says `preparing`.
    SubmitAfterInputWritten,
    /// submit: the job says `staged`, nothing is uploaded.
    SubmitAfterStaged,
    /// submit: the file is at the provider, its id not recorded.
    SubmitAfterUpload,
    /// submit: the provider batch exists, its id not recorded.
    SubmitAfterCreate,
    /// poll: the job says `ingesting`, no result file copied.
    PollAfterMarkIngesting,
    /// poll: the output file is copied, the error file not yet.
    PollAfterCopyOutput,
    /// poll: both copies are in S3 and provider files deleted, `copied_at` not recorded.
    PollAfterCopies,
    /// poll: a failed batch's requests are re-queued or failed, the job is still open.
    PollAfterFailedRequests,
    /// ingest: the first chunk of lines is applied, the rest not.
    IngestMidFile,
    /// ingest: every line is applied, the file's totals not added.
    IngestBeforeTotals,
    /// ingest: totals added, the job not closed.
    IngestAfterTotals,
    /// closing a job: requests the provider lost are re-queued, the job is not `done`.
    CloseAfterLeftovers,
}

impl CrashPoint {
    pub const ALL: [CrashPoint; 15] = [
        Self::SubmitAfterJobCreated,
        Self::SubmitAfterClaim,
        Self::SubmitMidInputWrite,
        Self::SubmitAfterInputWritten,
        Self::SubmitAfterStaged,
        Self::SubmitAfterUpload,
        Self::SubmitAfterCreate,
        Self::PollAfterMarkIngesting,
        Self::PollAfterCopyOutput,
        Self::PollAfterCopies,
        Self::PollAfterFailedRequests,
        Self::IngestMidFile,
        Self::IngestBeforeTotals,
        Self::IngestAfterTotals,
        Self::CloseAfterLeftovers,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SubmitAfterJobCreated => "submit.after_job_created",
            Self::SubmitAfterClaim => "submit.after_claim",
            Self::SubmitMidInputWrite => "submit.mid_input_write",
            Self::SubmitAfterInputWritten => "submit.after_input_written",
            Self::SubmitAfterStaged => "submit.after_staged",
            Self::SubmitAfterUpload => "submit.after_upload",
            Self::SubmitAfterCreate => "submit.after_create",
            Self::PollAfterMarkIngesting => "poll.after_mark_ingesting",
            Self::PollAfterCopyOutput => "poll.after_copy_output",
            Self::PollAfterCopies => "poll.after_copies",
            Self::PollAfterFailedRequests => "poll.after_failed_requests",
            Self::IngestMidFile => "ingest.mid_file",
            Self::IngestBeforeTotals => "ingest.before_totals",
            Self::IngestAfterTotals => "ingest.after_totals",
            Self::CloseAfterLeftovers => "close.after_leftovers",
        }
    }
}

impl fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decides whether a step stops at a point.
pub trait CrashPoints: Send + Sync {
    fn should_crash(&self, point: CrashPoint) -> bool;
}

/// Never stops (production).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCrashes;

impl CrashPoints for NoCrashes {
    fn should_crash(&self, _: CrashPoint) -> bool {
        false
    }
}

/// Stops the first time `point` is reached, then never again.
#[derive(Debug)]
pub struct CrashOnce {
    point: CrashPoint,
    fired: AtomicBool,
    hits: AtomicU64,
}

impl CrashOnce {
    pub fn new(point: CrashPoint) -> Self {
        Self {
            point,
            fired: AtomicBool::new(false),
            hits: AtomicU64::new(0),
        }
    }

    /// Whether the crash happened (a test whose point is never reached proves nothing).
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// How often the point was reached.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

impl CrashPoints for CrashOnce {
    fn should_crash(&self, point: CrashPoint) -> bool {
        if point != self.point {
            return false;
        }
        self.hits.fetch_add(1, Ordering::SeqCst);
        !self.fired.swap(true, Ordering::SeqCst)
    }
}
