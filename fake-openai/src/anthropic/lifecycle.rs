//! A message batch's progression: in progress, canceling, ended with its
//! result lines (answered, errored, canceled or expired), shuffled.

use serde_json::json;
use std::time::Duration;

use super::messages::{invalid_params, respond_message};
use super::{MsgBatch, Phase};
use crate::lifecycle::half_done;
use crate::responses::hash64;
use crate::state::{now_s, Inner};

/// Whether `steps` of `step_ms` have passed since the batch was created.
fn elapsed(b: &MsgBatch, step_ms: u64, steps: u64) -> bool {
    step_ms == 0 || b.created.elapsed() >= Duration::from_millis(step_ms * steps)
}

/// Moves a batch as far as its clock and faults allow. Called on retrieve.
pub(crate) fn advance(inner: &mut Inner, id: &str) {
    let step_ms = inner.config.step_ms;
    let Some(b) = inner.anthropic.by_id.get_mut(id).filter(|b| !b.gone) else {
        return;
    };
    b.polls += 1;
    if b.faults.vanish_after_polls.is_some_and(|n| b.polls > n) {
        b.gone = true;
        return;
    }
    match b.phase {
        Phase::InProgress => {
            b.in_progress_polls += 1;
            // The whole run of an OpenAI batch: validating, in progress, finalizing.
            if b.in_progress_polls > b.faults.stay_in_progress_polls && elapsed(b, step_ms, 3) {
                finish(b, &|_| true, "expired");
            }
        }
        Phase::Canceling => {
            b.canceling_polls += 1;
            if b.canceling_polls > b.faults.stay_cancelling_polls {
                let id = b.id.clone();
                finish(b, &half_done(id), "canceled");
            }
        }
        Phase::Ended => {}
    }
}

/// Ends a batch: requests for which `done` holds are answered (or fail per
/// the faults, or are refused for their params); the rest end `not_done`
/// (`canceled` or `expired`). Every count is set; results are shuffled.
pub(crate) fn finish(b: &mut MsgBatch, done: &dyn Fn(&str) -> bool, not_done: &str) {
    let f = &b.faults;
    let mut counts = [0u64; 4];
    let mut lines: Vec<(u64, String)> = Vec::new();
    for (i, (custom_id, params)) in b.requests.iter().enumerate() {
        let h = hash64(&[custom_id.as_bytes()]);
        let result = if f.lose_custom_ids.contains(custom_id) {
            // No line at all; the counts still sum to the total.
            counts[1] += 1;
            continue;
        } else if !done(custom_id) {
            counts[if not_done == "canceled" { 2 } else { 3 }] += 1;
            json!({"type": not_done})
        } else if f.all_lines_fail
            || f.fail_prefix.as_deref().is_some_and(|p| custom_id.starts_with(p))
            || (f.fail_percent > 0 && h % 100 < f.fail_percent as u64)
        {
            counts[1] += 1;
            let (kind, message) = match f.fail_status.unwrap_or(500) {
                400 => (
                    "invalid_request_error",
                    "Invalid request: the model rejected this input.",
                ),
                429 => ("rate_limit_error", "Rate limited while processing this request."),
                529 => ("overloaded_error", "Overloaded"),
                _ => ("api_error", "Internal server error"),
            };
            errored(kind, message, h)
        } else if let Some(why) = invalid_params(params) {
            counts[1] += 1;
            errored("invalid_request_error", &why, h)
        } else {
            counts[0] += 1;
            json!({"type": "succeeded", "message": respond_message(custom_id, params)})
        };
        let shuffle = hash64(&[b.id.as_bytes(), &(i as u64).to_le_bytes()]);
        lines.push((shuffle, json!({"custom_id": custom_id, "result": result}).to_string()));
    }
    lines.sort();
    b.results = lines.into_iter().map(|(_, l)| l).collect();
    b.counts = counts;
    b.phase = Phase::Ended;
    b.ended_ms = Some(now_s() * 1000);
}

fn errored(kind: &str, message: &str, h: u64) -> serde_json::Value {
    json!({"type": "errored", "error": {"type": "error", "error": {"type": kind, "message": message},
                                       "request_id": format!("req_01{h:022x}")}})
}

/// Expires an in-progress batch now: about half its requests are answered,
/// the rest `expired`. False if it is not in progress.
pub(crate) fn expire(inner: &mut Inner, id: &str) -> bool {
    match inner.anthropic.by_id.get_mut(id).filter(|b| !b.gone) {
        Some(b) if b.phase == Phase::InProgress => {
            let half = half_done(id.to_owned());
            finish(b, &half, "expired");
            true
        }
        _ => false,
    }
}

/// Ends an unfinished batch now, whatever its clock and the `stay_*`
/// faults: an in-progress one with every request answered, a canceling one
/// with about half `canceled`. False if it has ended or is unknown.
pub(crate) fn complete(inner: &mut Inner, id: &str) -> bool {
    let Some(b) = inner.anthropic.by_id.get_mut(id).filter(|b| !b.gone) else {
        return false;
    };
    match b.phase {
        Phase::InProgress => finish(b, &|_| true, "expired"),
        Phase::Canceling => finish(b, &half_done(id.to_owned()), "canceled"),
        Phase::Ended => return false,
    }
    true
}
