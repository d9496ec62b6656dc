//! Model-name normalisation: the dated-snapshot suffix a family's price
//! covers (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`).

/// `name` without a trailing `-YYYY-MM-DD`, if it has one.
pub fn strip_snapshot_date(name: &str) -> Option<&str> {
    let split = name.len().checked_sub(11)?;
    let (family, suffix) = (name.get(..split)?, name.get(split..)?);
    let date = suffix.strip_prefix('-')?;
    (!family.is_empty() && is_iso_date(date)).then_some(family)
}

/// `YYYY-MM-DD` with a month 01–12 and a day 01–31.
pub fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) || !digits(5..7) || !digits(8..10) {
        return false;
    }
    let month = (b[5] - b'0') * 10 + (b[6] - b'0');
    let day = (b[8] - b'0') * 10 + (b[9] - b'0');
    (1..=12).contains(&month) && (1..=31).contains(&day)
}
