//! Per-model enqueued-token limits. The real API counts the prompt tokens of
//! every batch of a model that is `validating` or `in_progress` against an
//! organization-wide limit for that model; a batch that would go over it is
//! accepted by create and then fails validation with `token_limit_exceeded`.

use serde_json::{json, Value};

use crate::config::Faults;
use crate::state::{BatchRec, Inner};

/// Whether a batch's tokens count against its model's limit now. A vanished
/// batch never advances again, so counting it would block its model for good.
fn holds_tokens(rec: &BatchRec) -> bool {
    !rec.vanished && matches!(rec.obj["status"].as_str(), Some("validating" | "in_progress"))
}

/// Tokens a model's batches hold now.
pub(crate) fn enqueued(inner: &Inner, model: &str) -> u64 {
    inner
        .by_id
        .values()
        .filter(|r| r.model == model && holds_tokens(r))
        .map(|r| r.tokens)
        .sum()
}

/// Tokens queued ahead of a validating batch: its model's batches in
/// progress, and those still validating that were created before it (a later
/// one does not push an earlier one out).
pub(crate) fn queued_ahead(inner: &Inner, id: &str) -> u64 {
    let Some(me) = inner.by_id.get(id) else { return 0 };
    inner
        .by_id
        .iter()
        .filter(|(other, r)| {
            other.as_str() != id
                && r.model == me.model
                && holds_tokens(r)
                && (r.obj["status"] == "in_progress" || r.seq < me.seq)
        })
        .map(|(_, r)| r.tokens)
        .sum()
}

/// Raises the model's recorded peak to what it holds now. Called at create:
/// a new batch is the only thing that adds to a model's count.
pub(crate) fn note_peak(inner: &mut Inner, model: &str) {
    let now = enqueued(inner, model);
    let peak = inner.peak_enqueued.entry(model.to_owned()).or_insert(0);
    *peak = (*peak).max(now);
}

/// The model's limit in the current configuration (an account setting, so
/// not the faults a batch was created under); None is unlimited.
pub(crate) fn limit(faults: &Faults, model: &str) -> Option<u64> {
    faults
        .enqueued_token_limits
        .get(model)
        .copied()
        .or(faults.default_enqueued_token_limit)
}

/// The batch error the API gives a batch over the limit, word for word.
pub(crate) fn exceeded(model: &str, limit: u64) -> Value {
    json!({
        "code": "token_limit_exceeded",
        "message": format!(
            "Enqueued token limit reached for {model} in organization org-fake. Limit: {} enqueued tokens. \
             Please try again once some in_progress batches have been completed.",
            thousands(limit)
        ),
        "param": null,
        "line": null,
    })
}

/// `2000000` as `2,000,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_groups_by_three() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(90_000), "90,000");
        assert_eq!(thousands(2_000_000), "2,000,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }
}
