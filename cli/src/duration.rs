//! The one duration syntax of the command line: every flag that takes a
//! duration (`serve --submit-every`, `serve --poll-every`, `wait --timeout`,
//! `analyze --min-wait`) and `analyze`'s `latency_tolerance` values read it
//! here. A whole number and a unit: `500ms`, `30s`, `15m`, `2h`, `1d`, `1w`;
//! a bare number is seconds.

use std::time::Duration;

/// The units, with their length in milliseconds.
const UNITS: [(&str, u64); 6] = [
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
    ("w", 7 * 86_400_000),
];

/// What the syntax is, for error messages and `--help`.
pub const SYNTAX: &str =
    "a whole number and a unit: ms, s, m, h, d or w (500ms, 30s, 15m, 2h, 1d); a bare number is seconds";

/// Parses a duration. The error says what was wrong and what is accepted;
/// clap puts the flag's name in front of it (`invalid value '5y' for '--timeout <DURATION>': …`).
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("{s:?} is not a duration; write {SYNTAX}"));
    }
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is too long"))?;
    let unit = unit.trim();
    let per = if unit.is_empty() {
        1_000
    } else {
        UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, ms)| *ms)
            .ok_or_else(|| format!("{s:?}: unknown unit {unit:?}; write {SYNTAX}"))?
    };
    n.checked_mul(per)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_and_a_bare_number_of_seconds_parse() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("1w"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse(" 2 h "), Ok(Duration::from_secs(7200)));
    }

    #[test]
    fn a_wrong_duration_says_what_is_accepted() {
        for bad in ["soon", "h", "", "-5s", "1.5h"] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("ms, s, m, h, d or w"), "{bad}: {e}");
        }
        assert!(parse("5y").unwrap_err().contains("unknown unit \"y\""));
        assert!(parse("99999999999999999999d").unwrap_err().contains("too long"));
        assert!(parse("999999999999999999w").unwrap_err().contains("too long"));
    }
}
