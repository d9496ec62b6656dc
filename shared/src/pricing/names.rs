//! Model-name normalisation: the dated-snapshot suffix a family's price
//! covers (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`,
//! `claude-3-5-haiku-20241022` → `claude-3-5-haiku`).

/// `name` without a trailing snapshot date, if it has one: `-YYYY-MM-DD`
/// (OpenAI) or `-YYYYMMDD` (Anthropic). Anything else (`-1106`, `-latest`,
/// an impossible date) is kept, so the name stays unknown.
pub fn strip_snapshot_date(name: &str) -> Option<&str> {
    strip_suffix_date(name, 10, is_iso_date).or_else(|| strip_suffix_date(name, 8, is_compact_date))
}

/// `name` without a trailing `-` and `len` characters that `is_date` accepts.
fn strip_suffix_date(name: &str, len: usize, is_date: fn(&str) -> bool) -> Option<&str> {
    let split = name.len().checked_sub(len + 1)?;
    let (family, suffix) = (name.get(..split)?, name.get(split..)?);
    let date = suffix.strip_prefix('-')?;
    (!family.is_empty() && is_date(date)).then_some(family)
}

/// `YYYY-MM-DD` with a month 01–12 and a day 01–31.
pub fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10 && b[4] == b'-' && b[7] == b'-' && is_date_digits(&b[0..4], &b[5..7], &b[8..10])
}

/// `YYYYMMDD` with a month 01–12 and a day 01–31.
fn is_compact_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 8 && is_date_digits(&b[0..4], &b[4..6], &b[6..8])
}

fn is_date_digits(year: &[u8], month: &[u8], day: &[u8]) -> bool {
    let digits = |part: &[u8]| part.iter().all(u8::is_ascii_digit);
    if !(digits(year) && digits(month) && digits(day)) {
        return false;
    }
    let two = |part: &[u8]| (part[0] - b'0') * 10 + (part[1] - b'0');
    (1..=12).contains(&two(month)) && (1..=31).contains(&two(day))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_and_compact_snapshot_dates_are_stripped() {
        assert_eq!(strip_snapshot_date("gpt-4o-mini-2024-07-18"), Some("gpt-4o-mini"));
        assert_eq!(
            strip_snapshot_date("claude-3-5-haiku-20241022"),
            Some("claude-3-5-haiku")
        );
        assert_eq!(strip_snapshot_date("claude-opus-4-1-20250805"), Some("claude-opus-4-1"));
        assert_eq!(
            strip_snapshot_date("claude-haiku-4-5-20251001"),
            Some("claude-haiku-4-5")
        );
    }

    #[test]
    fn other_suffixes_are_kept() {
        for name in [
            "gpt-3.5-turbo-1106",
            "claude-3-5-haiku-latest",
            "claude-3-5-haiku-20241322", // month 13
            "claude-3-5-haiku-20241000", // day 00
            "claude-3-5-haiku-2024102",  // seven digits
            "claude-3-5-haiku20241022",  // no dash
            "-20241022",
            "20241022",
            "gpt-4o-mini-2024-07-1x",
            "",
        ] {
            assert_eq!(strip_snapshot_date(name), None, "{name:?}");
        }
    }

    #[test]
    fn dates_are_checked_field_by_field() {
        assert!(is_iso_date("2025-11-13"));
        assert!(!is_iso_date("20251113"));
        assert!(!is_iso_date("2025-13-01"));
        assert!(is_compact_date("20251113"));
        assert!(!is_compact_date("2025-11-13"));
        assert!(!is_compact_date("2025111x"));
    }
}
