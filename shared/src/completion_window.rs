//! Which `completion_window` each provider kind accepts, checked when the
//! configuration is read (a refused window would otherwise surface only
//! at the first batch create, as an HTTP 400).

use crate::job::ProviderKind;
use crate::request::Endpoint;

/// Hours of `window` written as `<n>h` or `<n>d` (e.g. `24h`, `7d`).
fn hours(window: &str) -> Option<u64> {
    let (n, unit) = window.split_at(window.len().checked_sub(1)?);
    let n: u64 = n.parse().ok()?;
    match unit {
        "h" => Some(n),
        "d" => n.checked_mul(24),
        _ => None,
    }
}

/// Whether `kind` accepts `window` as a batch's `completion_window`; the
/// error says what it does accept. OpenAI, Azure OpenAI and Together take
/// `24h` only; Groq takes any duration from `24h` to `7d`; Anthropic sends
/// no window (its batches run up to 24 h), so only the default `24h` is
/// meaningful there.
pub fn check_completion_window(kind: ProviderKind, window: &str) -> Result<(), String> {
    match kind {
        ProviderKind::Groq => match hours(window) {
            Some(h) if (24..=7 * 24).contains(&h) => Ok(()),
            _ => Err(format!(
                "completion window {window:?} is not accepted by groq: give a duration from 24h to 7d \
                 (such as 24h, 48h, 3d or 7d)"
            )),
        },
        _ if window == "24h" => Ok(()),
        _ => Err(format!(
            "completion window {window:?} is not accepted by {}: it takes 24h only",
            kind.as_str()
        )),
    }
}

/// Whether `kind`'s batch API runs requests for `endpoint`: Groq and
/// Together batch chat completions only (Groq's audio endpoints are not
/// batchq endpoints); Anthropic batches its Messages API.
pub fn supports_endpoint(kind: ProviderKind, endpoint: Endpoint) -> bool {
    kind.endpoints().contains(&endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groq_takes_windows_from_a_day_to_a_week() {
        for ok in ["24h", "48h", "72h", "2d", "7d", "168h"] {
            assert_eq!(check_completion_window(ProviderKind::Groq, ok), Ok(()), "{ok}");
        }
        for bad in ["23h", "8d", "169h", "1w", "", "h", "-1d", "24"] {
            let err = check_completion_window(ProviderKind::Groq, bad).unwrap_err();
            assert!(err.contains("24h to 7d"), "{bad}: {err}");
        }
    }

    #[test]
    fn other_kinds_take_24h_only() {
        for kind in [
            ProviderKind::OpenAi,
            ProviderKind::AzureOpenAi,
            ProviderKind::Together,
            ProviderKind::Anthropic,
        ] {
            assert_eq!(check_completion_window(kind, "24h"), Ok(()));
            let err = check_completion_window(kind, "48h").unwrap_err();
            assert!(err.contains(kind.as_str()) && err.contains("24h only"), "{err}");
        }
    }

    #[test]
    fn groq_and_together_batch_chat_completions_only() {
        for kind in [ProviderKind::Groq, ProviderKind::Together] {
            assert!(supports_endpoint(kind, Endpoint::ChatCompletions));
            assert!(!supports_endpoint(kind, Endpoint::Embeddings));
        }
        assert!(supports_endpoint(ProviderKind::OpenAi, Endpoint::Embeddings));
    }
}
